//! `inpaint train`, `inpaint apply` and `inpaint eval` from the command line.

mod common;

use common::{small_demo, stderr_of, studio};

#[test]
fn inpaint_train_apply_eval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proj = small_demo(dir.path());
    let p = proj.to_str().expect("utf-8");
    let run = dir.path().join("inpaint-run");
    let r = run.to_str().expect("utf-8");
    let args = [
        "inpaint",
        "train",
        "--project",
        p,
        "--preset",
        "tiny",
        "--out",
        r,
        "--steps",
        "10",
    ];
    let out = studio(&args, dir.path());
    assert!(out.status.success(), "train failed: {}", stderr_of(&out));
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("run.json")).expect("run.json"))
            .expect("json");
    assert_eq!(info["kind"], "inpaint");
    // A group that does not exist is a clear error naming it.
    let bad = dir.path().join("bad-run");
    let args = [
        "inpaint",
        "train",
        "--project",
        p,
        "--group",
        "no-such-group",
        "--preset",
        "tiny",
        "--out",
        bad.to_str().expect("utf-8"),
    ];
    let out = studio(&args, dir.path());
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("no-such-group"),
        "{}",
        stderr_of(&out)
    );

    // The demo's defect images all have real templates: cut two links so twins are made.
    let manifest_path = proj.join("studio.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("json");
    let mut cut = 0;
    for e in m["images"].as_array_mut().expect("images") {
        if e["role"] == "defect" && cut < 2 {
            e.as_object_mut().expect("object").remove("twin");
            cut += 1;
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&m).expect("json")).expect("write");
    let out = studio(
        &["inpaint", "apply", "--run", r, "--project", p],
        dir.path(),
    );
    assert!(out.status.success(), "apply failed: {}", stderr_of(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 twins made"), "{stdout}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("json");
    let pending = m["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter(|e| e["twin_status"] == "pending_review" && e["inpaint"]["seam"].is_number())
        .count();
    assert_eq!(pending, 2);

    // Evaluation on two real DeepPCB pairs prints one JSON object with every figure.
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/deeppcb");
    let args = [
        "inpaint",
        "eval",
        "--run",
        r,
        "--data",
        data.to_str().expect("utf-8"),
        "--limit",
        "2",
        "--json",
    ];
    let out = studio(&args, dir.path());
    assert!(out.status.success(), "eval failed: {}", stderr_of(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for key in [
        "hole_pixel_error",
        "psnr",
        "selftest_hole_pixel_error",
        "floor_pixel_error",
    ] {
        let v = report[key].as_f64().unwrap_or(f64::NAN);
        assert!(v.is_finite() && v >= 0.0, "{key} = {v}");
    }
    assert_eq!(report["pairs"], 2);
    // The errors by box size: four ranges that hold every box and every box pixel.
    let rows = report["by_size"].as_array().expect("by_size");
    assert_eq!(rows.len(), 4);
    let boxes: u64 = rows.iter().map(|r| r["boxes"].as_u64().unwrap_or(0)).sum();
    assert_eq!(Some(boxes), report["boxes"].as_u64());
    let share: f64 = rows
        .iter()
        .map(|r| r["pixel_share"].as_f64().unwrap_or(0.0))
        .sum();
    assert!((share - 1.0).abs() < 1e-9, "{share}");
    for r in rows.iter().filter(|r| r["boxes"].as_u64() > Some(0)) {
        let e = r["hole_pixel_error"].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&e), "{r}");
    }
    for b in ["copy", "mean_fill"] {
        let e = report["baselines"][b]["hole_pixel_error"]
            .as_f64()
            .unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&e), "{b}: {e}");
    }
    // Copying the defect image leaves its defects: it cannot match the template everywhere.
    assert!(
        report["baselines"]["copy"]["hole_pixel_error"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.01
    );
    // Copying every box from the best place in the image or the pair's other group
    // templates: every part copied, some from the other templates, better than no fill.
    let mut copying = args.to_vec();
    copying.splice(
        copying.len() - 1..,
        ["--exemplar", "1", "--exemplar-references", "--json"],
    );
    let out = studio(&copying, dir.path());
    assert!(out.status.success(), "eval failed: {}", stderr_of(&out));
    let copied: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let parts = copied["parts"].as_u64().unwrap_or(0);
    let from_others = &copied["referenced_parts"];
    assert!(parts > 0);
    assert_eq!(copied["copied_parts"], serde_json::json!([parts, parts]));
    for i in 0..2 {
        assert!(from_others[i].as_u64().unwrap_or(0) > 0, "{copied}");
    }
    assert!(
        copied["hole_pixel_error"].as_f64().unwrap_or(f64::NAN)
            < report["baselines"]["copy"]["hole_pixel_error"]
                .as_f64()
                .unwrap_or(0.0),
        "{copied}"
    );

    let out = studio(&["inpaint", "eval", "--run", r, "--data", p], dir.path());
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("index.csv"), "{}", stderr_of(&out));
}
