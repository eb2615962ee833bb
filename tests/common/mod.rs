//! Helpers shared by the integration tests: the command line's, and the panes' harness.

// Each test crate uses its own subset of these.
#![allow(dead_code)]

pub mod panes;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The public data in `shared/data` (next to the project, as in CI). A missing folder fails the
/// test rather than letting it pass silently.
pub fn data_dir() -> PathBuf {
    let near = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let candidates = [near, PathBuf::from("/work/shared/data")];
    candidates
        .iter()
        .find(|p| p.join("README.md").is_file())
        .cloned()
        .unwrap_or_else(|| panic!("shared data not found: looked in {candidates:?}"))
}

/// The studio binary with `args`, its settings folder in `home`.
pub fn studio_command(args: &[&str], home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dtgan-studio"));
    c.args(args).env("DTGAN_STUDIO_HOME", home);
    c
}

/// A finished command's stderr, as text.
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the studio binary to completion.
pub fn studio(args: &[&str], home: &Path) -> Output {
    studio_command(args, home)
        .output()
        .expect("run dtgan-studio")
}

/// Writes a small demo project (64 px images, 2 good images per product, one defect per class)
/// to `dir/demo` and returns its folder.
pub fn small_demo(dir: &Path) -> PathBuf {
    let proj = dir.join("demo");
    let p = proj.to_str().expect("utf-8 temp path");
    let args = [
        "demo",
        "--out",
        p,
        "--size",
        "64",
        "--good-per-group",
        "2",
        "--defects-per-class",
        "1",
    ];
    let out = studio(&args, dir);
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    proj
}

/// `train` on the small demo's `mura` class with the `tiny` preset into `run`; add the rest.
pub fn tiny_train_args<'a>(project: &'a str, run: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--project",
        project,
        "--class",
        "mura",
        "--preset",
        "tiny",
        "--out",
        run,
    ]
}
