//! The command line as scripts use it: demo, info --json, masks boxes, and clear failures.

mod common;

use common::{small_demo, stderr_of, studio, tiny_train_args};

#[test]
fn demo_then_info_json_then_box_masks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proj = dir.path().join("demo");
    let p = proj.to_str().expect("utf-8 temp path");
    let out = studio(&["demo", "--out", p, "--seed", "3"], dir.path());
    assert!(out.status.success(), "demo failed: {}", stderr_of(&out));

    let out = studio(&["info", "--project", p, "--json"], dir.path());
    assert!(out.status.success(), "info failed: {}", stderr_of(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info --json is JSON");
    let images = info["images"].as_u64().expect("images");
    let by_role = &info["by_role"];
    let sum: u64 = ["good", "defect", "template"]
        .iter()
        .map(|r| by_role[r].as_u64().expect("role count"))
        .sum();
    assert_eq!(sum, images, "roles add up");
    assert!(by_role["good"].as_u64() > Some(0) && by_role["defect"].as_u64() > Some(0));
    assert_eq!(
        by_role["defect"], by_role["template"],
        "every demo defect has its twin"
    );
    assert!(
        info["by_class"].as_object().is_some_and(|m| m.len() >= 4),
        "four classes or more"
    );
    assert!(
        info["by_group"].as_object().is_some_and(|m| m.len() >= 2),
        "two products or more"
    );
    for key in ["with_mask", "with_box", "with_twin"] {
        assert_eq!(info[key], by_role["defect"], "{key}");
    }

    let out = studio(
        &["masks", "boxes", "--project", p, "--margin", "2"],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "masks boxes failed: {}",
        stderr_of(&out)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(proj.join("studio.json")).expect("manifest"))
            .expect("json");
    assert_eq!(
        manifest["box_margin"], 2,
        "the margin becomes the project's"
    );
}

#[test]
fn failures_exit_non_zero_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nowhere");
    let m = missing.to_str().expect("utf-8");
    for args in [
        vec!["info", "--project", m],
        vec!["open", m],
        vec!["import", "--project", m, "--from", m],
        vec!["masks", "boxes", "--project", m],
    ] {
        let out = studio(&args, dir.path());
        assert!(!out.status.success(), "{args:?} should fail");
        let err = stderr_of(&out);
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line expected, got {err:?}"
        );
        assert!(
            err.starts_with("error: ") && err.contains("nowhere"),
            "{args:?}: {err}"
        );
    }
    // A manifest that escapes the project is refused, naming the manifest.
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).expect("mkdir");
    std::fs::write(
        bad.join("studio.json"),
        r#"{"format":1,"name":"x","images":[{"id":"a","path":"../etc/passwd","role":"good","group":"g","width":1,"height":1}]}"#,
    )
    .expect("write");
    let out = studio(
        &["info", "--project", bad.to_str().expect("utf-8")],
        dir.path(),
    );
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(err.contains("studio.json") && err.contains(".."), "{err}");
}

#[test]
fn export_imagefolder_then_refuse_a_non_empty_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proj = small_demo(dir.path());
    let p = proj.to_str().expect("utf-8 temp path");

    let export_dir = dir.path().join("export");
    let e = export_dir.to_str().expect("utf-8");
    let args = [
        "export",
        "--project",
        p,
        "--format",
        "imagefolder",
        "--out",
        e,
    ];
    let out = studio(&args, dir.path());
    assert!(out.status.success(), "export failed: {}", stderr_of(&out));

    // Class folders hold exactly the manifest's good images and defect images per class.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(proj.join("studio.json")).expect("manifest"))
            .expect("json");
    let mut want = std::collections::BTreeMap::<String, usize>::new();
    for img in manifest["images"].as_array().expect("images") {
        let class = match img["role"].as_str().expect("role") {
            "good" => "good",
            "defect" => img["class"].as_str().expect("demo defects have a class"),
            _ => continue,
        };
        *want.entry(class.to_owned()).or_default() += 1;
    }
    let mut got = std::collections::BTreeMap::<String, usize>::new();
    for entry in std::fs::read_dir(&export_dir).expect("list export") {
        let entry = entry.expect("entry");
        if entry.path().is_dir() {
            let n = std::fs::read_dir(entry.path()).expect("list class").count();
            got.insert(entry.file_name().to_string_lossy().into_owned(), n);
        }
    }
    assert_eq!(got, want);
    let total: usize = want.values().sum();
    let index = std::fs::read_to_string(export_dir.join("index.csv")).expect("index.csv");
    assert_eq!(
        index.lines().count(),
        total + 1,
        "header plus one row per image"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("exported {total} images")),
        "{stdout}"
    );

    // The same folder again: refused in one line naming it, nothing touched.
    let before = std::fs::read(export_dir.join("index.csv")).expect("index");
    let out = studio(&args, dir.path());
    assert!(!out.status.success(), "a non-empty --out must be refused");
    let err = stderr_of(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(
        err.starts_with("error: ") && err.contains(e) && err.contains("not empty"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(export_dir.join("index.csv")).expect("index"),
        before
    );
}

#[test]
fn train_then_generate_then_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proj = small_demo(dir.path());
    let p = proj.to_str().expect("utf-8 temp path");

    let run = dir.path().join("run");
    let r = run.to_str().expect("utf-8");
    let train = |extra: &[&str]| {
        let mut args = tiny_train_args(p, r);
        args.extend_from_slice(extra);
        studio(&args, dir.path())
    };
    let out = train(&["--steps", "6"]);
    assert!(out.status.success(), "train failed: {}", stderr_of(&out));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert!(!lines.is_empty());
    for key in ["step", "l1_inside", "l1_outside", "loss_g", "loss_d"] {
        assert!(
            lines.iter().all(|l| l[key].is_number()),
            "{key} in every line"
        );
    }
    // A second start into the same folder is refused; --resume continues it.
    let out = train(&["--steps", "8"]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("--resume"), "{}", stderr_of(&out));
    let out = train(&["--steps", "8", "--resume"]);
    assert!(out.status.success(), "resume failed: {}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("step 8"));

    let gen_out = dir.path().join("gen");
    let images = proj.join("images").join("oled-stripe").join("good");
    let args = [
        "generate",
        "--run",
        r,
        "--images",
        images.to_str().expect("utf-8"),
        "--random",
        "3",
        "--out",
        gen_out.to_str().expect("utf-8"),
        "--seed",
        "4",
    ];
    let out = studio(&args, dir.path());
    assert!(out.status.success(), "generate failed: {}", stderr_of(&out));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gen_out.join("generation.json")).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        manifest["checkpoint_sha256"].as_str().map(str::len),
        Some(64)
    );
    for item in manifest["items"].as_array().expect("items") {
        let f = gen_out.join(item["image"].as_str().expect("path"));
        assert!(f.is_file(), "{}", f.display());
    }

    let other = dir.path().join("run2");
    let args = [
        "train",
        "--project",
        p,
        "--class",
        "nosuch",
        "--preset",
        "tiny",
        "--out",
        other.to_str().expect("utf-8"),
    ];
    let out = studio(&args, dir.path());
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains("nosuch") && err.contains("no defect image shows it"),
        "{err}"
    );
}
