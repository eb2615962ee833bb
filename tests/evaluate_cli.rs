//! `evaluate` end to end on the real public data, with tiny models: the report folder is well
//! formed, a seed reproduces its numbers, the transfer mode trains on the source groups only, and
//! bad requests fail with errors that name the problem.

mod common;

use std::path::Path;

use common::{data_dir, stderr_of, studio};

/// The report.md an evaluation wrote to `out`.
fn report_md(out: &Path) -> String {
    std::fs::read_to_string(out.join("report.md")).expect("report.md")
}

fn results(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("results.json")).expect("results.json"))
        .expect("results.json is JSON")
}

/// `evaluate` on the magnetic tiles with the tiny preset; returns the report folder.
fn tiles(dir: &Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let data = data_dir().join("magnetic_tile");
    let d = data.to_str().expect("utf-8");
    let out = dir.join(name);
    let o = out.to_str().expect("utf-8");
    let mut args = vec![
        "evaluate",
        "--train",
        d,
        "--test",
        d,
        "--minor",
        "crack",
        "--out",
        o,
        "--preset",
        "tiny",
        "--seeds",
        "2",
        "--k",
        "4",
        "--synthetic",
        "12",
    ];
    args.extend_from_slice(extra);
    let run = studio(&args, dir);
    assert!(run.status.success(), "evaluate failed: {}", stderr_of(&run));
    let table = String::from_utf8_lossy(&run.stdout);
    assert!(table.contains("K real + synthetic"), "{table}");
    out
}

#[test]
fn a_tiny_run_writes_a_well_formed_report_and_a_seed_reproduces_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tiles(dir.path(), "report", &[]);
    let r = results(&out);
    assert_eq!(r["minor"], "crack");
    assert_eq!(r["data"]["mode"], "few-shot");
    // The K real cracks' twins are their boxes filled from the borders, which say nothing about
    // where cracks belong: each synthetic crack is stamped as drawn, none ranked or skipped.
    let y = &r["data"]["synthesis"];
    assert_eq!(y["candidates"], 0, "{y}");
    assert!(y["worst_match"].is_null(), "{y}");
    assert_eq!(y["faint_used"], 0, "{y}");
    assert!(y["painted"].as_u64().is_some_and(|p| p > 0), "{y}");
    let classes: Vec<&str> = r["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert_eq!(
        classes,
        ["good", "blowhole", "break", "crack", "fray", "uneven"]
    );
    // Test and training groups are disjoint (the held-out split of one folder).
    let groups = |key: &str| -> Vec<String> {
        r["data"][key]
            .as_array()
            .expect("groups")
            .iter()
            .filter_map(|g| g.as_str().map(str::to_owned))
            .collect()
    };
    let (train, test) = (groups("target_groups"), groups("test_groups"));
    assert!(!test.is_empty() && !train.is_empty());
    assert!(
        test.iter().all(|g| !train.contains(g)),
        "{test:?} vs {train:?}"
    );
    let cases = r["cases"].as_array().expect("cases");
    let letters: Vec<&str> = cases.iter().filter_map(|c| c["case"].as_str()).collect();
    assert_eq!(letters, ["a", "b", "c", "d", "e"]);
    let minor_counts: Vec<u64> = cases
        .iter()
        .filter_map(|c| c["minor_train"].as_u64())
        .collect();
    assert_eq!(minor_counts, [0, 4, 12, 16, 12]);
    for c in cases {
        assert_eq!(c["per_seed"].as_array().expect("seeds").len(), 2);
        for key in ["recall", "accuracy"] {
            let mean = c[key]["mean"].as_f64().expect("mean");
            assert!((0.0..=1.0).contains(&mean), "{key} {mean}");
        }
        // Confusion matrices are 6 x 6 and hold every test patch.
        let m = c["per_seed"][0]["confusion"]["counts"]
            .as_array()
            .expect("matrix");
        assert_eq!(m.len(), 6);
        let total: u64 = m
            .iter()
            .flat_map(|row| row.as_array().expect("row").iter())
            .filter_map(|v| v.as_u64())
            .sum();
        let tested: u64 = r["data"]["test_counts"]
            .as_object()
            .expect("counts")
            .values()
            .filter_map(|v| v.as_u64())
            .sum();
        assert_eq!(total, tested);
    }
    // Case (a) never saw the class: it cannot find it.
    assert_eq!(cases[0]["recall"]["mean"].as_f64(), Some(0.0));
    let report = report_md(&out);
    // Every classifier's last-epoch training loss is recorded beside the loss of guessing, and
    // the report names exactly the ones that stayed near guessing (above 0.8 of it, the
    // documented `DID_NOT_LEARN`).
    for c in cases {
        for s in c["per_seed"].as_array().expect("seeds") {
            let t = s["train_loss"].as_f64().expect("train_loss");
            let g = s["guessing_loss"].as_f64().expect("guessing_loss");
            assert!(t > 0.0 && g > 0.0, "{s}");
            let named = format!(
                "case {} seed {} (training loss",
                c["case"].as_str().expect("case"),
                s["seed"]
            );
            assert_eq!(
                report.contains(&named),
                t > 0.8 * g,
                "{named}: {t} vs {g}\n{report}"
            );
        }
    }
    assert!(
        report.contains("| a | no minor-class images | 0 |"),
        "{report}"
    );
    assert!(report.contains("C2ST"), "{report}");
    assert!(report.contains("few-shot"), "{report}");
    let plot = image::open(out.join("plot.png")).expect("plot.png decodes");
    assert_eq!((plot.width(), plot.height()), (960, 540));
    for sub in ["synthetic", "augmented", "real-k"] {
        let n = std::fs::read_dir(out.join("patches").join(sub))
            .expect("patches")
            .count();
        assert_eq!(n, if sub == "real-k" { 4 } else { 12 }, "{sub}");
    }

    // The same seed gives the same numbers (timings aside).
    let again = results(&tiles(dir.path(), "again", &[]));
    assert_eq!(again["cases"], r["cases"]);
    assert_eq!(again["realism"], r["realism"]);
    // Another seed draws other patches.
    let other = results(&tiles(dir.path(), "other", &["--seed", "3"]));
    assert_ne!(other["cases"], r["cases"]);

    // Paired negatives (the default): the patch under each synthetic crack, before painting,
    // joins the good class of cases c and d, and of those only.
    let paired_out = out.clone();
    let plain_out = tiles(dir.path(), "plain", &["--paired-negatives", "false"]);
    let plain = results(&plain_out);
    let cases_of = |r: &serde_json::Value| r["cases"].as_array().expect("cases").clone();
    let (base, with) = (cases_of(&plain), cases_of(&r));
    let negatives = |cases: &[serde_json::Value]| -> Vec<u64> {
        cases
            .iter()
            .filter_map(|c| c["negatives"].as_u64())
            .collect()
    };
    assert_eq!(negatives(&with), [0, 0, 12, 12, 0]);
    assert_eq!(negatives(&base), [0, 0, 0, 0, 0]);
    assert!(!plain_out.join("patches").join("paired-negatives").exists());
    for i in [0, 1, 4] {
        assert_eq!(with[i]["per_seed"], base[i]["per_seed"], "case {i}");
    }
    let png = |root: &Path, sub: &str, i: usize| {
        let p = root.join("patches").join(sub).join(format!("{i:05}.png"));
        image::open(p).expect("patch decodes").to_luma8()
    };
    let mut changed = 0;
    for i in 0..12 {
        let (defect, clean) = (
            png(&paired_out, "synthetic", i),
            png(&paired_out, "paired-negatives", i),
        );
        assert_eq!(defect.dimensions(), clean.dimensions());
        changed += defect
            .pixels()
            .zip(clean.pixels())
            .filter(|(a, b)| a != b)
            .count();
        // The same synthetic defects as without the option.
        assert_eq!(defect, png(&plain_out, "synthetic", i));
    }
    assert!(
        changed > 0,
        "the negatives are the synthetic patches themselves"
    );
    let report = report_md(&paired_out);
    assert!(
        report.contains("| c | synthetic only (+ 12 paired negatives) | 12 |"),
        "{report}"
    );
    assert!(report.contains("Paired negatives:"), "{report}");
    let report = report_md(&plain_out);
    assert!(
        report.contains("| c | synthetic only | 12 |") && !report.contains("Paired negatives:"),
        "{report}"
    );

    // At most 5 pairs: those of synthetic defects 0, 2, 4, 7 and 9 of the 12, spread evenly.
    let few_out = tiles(dir.path(), "few", &["--paired-negatives-max", "5"]);
    let few = results(&few_out);
    assert_eq!(negatives(&cases_of(&few)), [0, 0, 5, 5, 0]);
    for (kept, i) in [0, 2, 4, 7, 9].into_iter().enumerate() {
        assert_eq!(
            png(&few_out, "paired-negatives", kept),
            png(&paired_out, "paired-negatives", i)
        );
    }
    let n = std::fs::read_dir(few_out.join("patches").join("paired-negatives"))
        .expect("paired negatives")
        .count();
    assert_eq!(n, 5);
    let report = report_md(&few_out);
    assert!(
        report.contains("under 5 of the synthetic defects") && report.contains("(5 patches)"),
        "{report}"
    );

    // Max pooling reaches every classifier, and the report says which pooling it used.
    assert_eq!(r["config"]["classifier"]["max_pool"], false);
    let pooled_out = tiles(dir.path(), "pooled", &["--max-pool", "true"]);
    let pooled = results(&pooled_out);
    assert_eq!(pooled["config"]["classifier"]["max_pool"], true);
    let changed = cases_of(&pooled)
        .iter()
        .zip(&with)
        .filter(|(p, m)| p["per_seed"] != m["per_seed"])
        .count();
    assert!(
        changed > 0,
        "the pooling changed no classifier's predictions"
    );
    let report = report_md(&pooled_out);
    assert!(
        report.contains("features pooled by their mean and maximum"),
        "{report}"
    );
}

#[test]
fn transfer_learns_the_defect_in_the_source_groups_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = data_dir().join("deeppcb");
    let d = data.to_str().expect("utf-8");
    let out = dir.path().join("pcb");
    let o = out.to_str().expect("utf-8");
    let args = [
        "evaluate",
        "--train",
        d,
        "--test",
        d,
        "--minor",
        "pin-hole",
        "--out",
        o,
        "--preset",
        "tiny",
        "--seeds",
        "1",
        "--k",
        "3",
        "--synthetic",
        "6",
        "--source-groups",
        "group44000,group50600",
        "--test-groups",
        "group92000",
        "--train-groups",
        "group44000,group50600,group77000",
    ];
    let run = studio(&args, dir.path());
    assert!(run.status.success(), "evaluate failed: {}", stderr_of(&run));
    let r = results(&out);
    assert_eq!(r["data"]["mode"], "transfer");
    assert_eq!(
        r["data"]["target_groups"],
        serde_json::json!(["group77000"])
    );
    assert_eq!(r["data"]["test_groups"], serde_json::json!(["group92000"]));
    // The pin-holes have twins, so 12 candidate places per synthetic defect were matched
    // against their surroundings, and the best were painted.
    let y = &r["data"]["synthesis"];
    let candidates = y["candidates"].as_u64().expect("candidates");
    let painted = y["painted"].as_u64().expect("painted");
    let worst = y["worst_match"].as_f64().expect("worst match");
    assert!((6..=72).contains(&candidates), "{y}");
    assert!((6..=candidates).contains(&painted), "{y}");
    assert!((0.0..1.0).contains(&worst), "{y}");
    // Every painted defect was kept or skipped (faint, or with another effect on the traces
    // than the real pin-hole's), and skipped ones were used only to make up the count.
    let n = |k: &str| y[k].as_u64().expect(k);
    assert_eq!(
        painted,
        6 - n("faint_used") + n("faint") + n("other_effect"),
        "{y}"
    );
    assert!(n("faint_used") <= n("faint") + n("other_effect"), "{y}");
    assert_eq!(r["config"]["same_effect"], true);
    let report = report_md(&out);
    assert!(report.contains("candidate places matched"), "{report}");
    assert!(
        report.contains(
            "changed the pattern's connected parts, or turned its pixels, otherwise than the real defect (checked)"
        ),
        "{report}"
    );
    // The DTGAN's pairs are the source groups' pin-hole images: 44 pairs show pin-holes there.
    let pairs = r["data"]["dtgan_pairs"].as_u64().expect("pairs");
    let index = std::fs::read_to_string(data.join("index.csv")).expect("index.csv");
    let want = index
        .lines()
        .skip(1)
        .filter(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[1] == "group44000" || c[1] == "group50600") && c[9] != "0"
        })
        .count() as u64;
    assert_eq!(pairs, want);
    assert_eq!(
        r["data"]["twins"],
        format!("{pairs} real defect-free templates")
    );
}

#[test]
fn bad_requests_name_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = data_dir().join("magnetic_tile");
    let d = data.to_str().expect("utf-8");
    let out = dir.path().join("x");
    let o = out.to_str().expect("utf-8");
    let base = [
        "evaluate", "--train", d, "--test", d, "--out", o, "--preset", "tiny",
    ];
    let run = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        let out = studio(&a, dir.path());
        assert!(!out.status.success(), "{extra:?} should fail");
        stderr_of(&out)
    };
    let e = run(&["--minor", "crack", "--k", "5000"]);
    assert!(e.contains("--k 5000") && e.contains("crack"), "{e}");
    let e = run(&["--minor", "scratch"]);
    assert!(e.contains("scratch"), "{e}");
    let e = run(&["--minor", "crack", "--max-per-class", "0"]);
    assert!(e.contains("--max-per-class"), "{e}");
    let e = run(&["--minor", "crack", "--classifier-epochs", "0"]);
    assert!(e.contains("epochs"), "{e}");
    let e = run(&["--minor", "crack", "--tta", "maybe"]);
    assert!(e.contains("--tta") && e.contains("maybe"), "{e}");
    let e = run(&["--minor", "crack", "--candidates", "0"]);
    assert!(e.contains("--candidates"), "{e}");
    let e = run(&["--minor", "crack", "--composite", "dilated:x"]);
    assert!(
        e.contains("--composite") && e.contains("none, mask or dilated:K"),
        "{e}"
    );
    let e = run(&["--minor", "crack", "--train-groups", "Crack_g001"]);
    assert!(e.contains("--test-groups"), "{e}");
    let missing = dir.path().join("nothing-here");
    let m = missing.to_str().expect("utf-8");
    let out = studio(
        &[
            "evaluate", "--train", m, "--test", d, "--minor", "crack", "--out", o,
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("nothing-here"),
        "{}",
        stderr_of(&out)
    );
}
