//! A real window: under Xvfb the studio binary, started with no arguments on a fresh data folder
//! (as `cargo run --release` does on first start), makes the demo project, opens it and saves a
//! screenshot, which must show the panes (not a blank window).
//!
//! Needs `Xvfb` (scripts/test.sh installs it on Debian); uses `$DISPLAY` instead when set.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Xvfb(Option<Child>, String);

impl Drop for Xvfb {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a private Xvfb (or uses `$DISPLAY` if one is set).
fn display() -> Xvfb {
    if let Ok(d) = std::env::var("DISPLAY")
        && !d.is_empty()
    {
        return Xvfb(None, d);
    }
    for n in 90..120 {
        if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
            || Path::new(&format!("/tmp/.X{n}-lock")).exists()
        {
            continue;
        }
        let child = Command::new("Xvfb")
            .args([format!(":{n}"), "-screen".into(), "0".into(), "1400x900x24".into(), "-nolisten".into(), "tcp".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb is needed for this test: run scripts/test.sh, which installs it, or `apt-get install xvfb`");
        let socket = format!("/tmp/.X11-unix/X{n}");
        let start = Instant::now();
        while !Path::new(&socket).exists() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "Xvfb :{n} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        return Xvfb(Some(child), format!(":{n}"));
    }
    panic!("no free X display number between :90 and :119");
}

#[test]
fn studio_window_shows_the_demo_project() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let shot = dir.path().join("shot.png");
    let x = display();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dtgan-studio"))
        .env("DISPLAY", &x.1)
        .env_remove("WAYLAND_DISPLAY")
        .env("DTGAN_STUDIO_HOME", &home)
        .env("DTGAN_STUDIO_SCREENSHOT", &shot)
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the studio");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(150) {
            let _ = child.kill();
            panic!("the studio did not save its screenshot and close within 150 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().expect("output");
    assert!(
        status.success(),
        "studio exited with {status}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let demo = home.join("demo");
    assert!(
        demo.join("studio.json").is_file(),
        "first start made the demo project"
    );
    let last = std::fs::read_to_string(home.join("last_project")).expect("last project remembered");
    assert_eq!(
        Path::new(last.trim_end()),
        demo,
        "and remembers it for the next start"
    );
    let img = image::open(&shot).expect("screenshot written").to_rgb8();
    assert!(
        img.width() >= 800 && img.height() >= 500,
        "window too small: {:?}",
        img.dimensions()
    );
    if let Ok(copy) = std::env::var("DTGAN_STUDIO_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, copy).expect("keep screenshot");
    }
    // Both halves (browser left, painter right) must hold real content: many colours, contrast.
    let (w, h) = img.dimensions();
    for (name, x0, x1) in [("browser", 0, w / 2), ("painter", w / 2, w)] {
        let mut colours = std::collections::HashSet::new();
        let (mut sum, mut sum2, mut n) = (0f64, 0f64, 0f64);
        for y in (h / 10..h * 9 / 10).step_by(2) {
            for x in (x0..x1).step_by(2) {
                let p = img.get_pixel(x, y).0;
                colours.insert(p);
                let l = f64::from(p[0]) + f64::from(p[1]) + f64::from(p[2]);
                sum += l;
                sum2 += l * l;
                n += 1.0;
            }
        }
        let std = (sum2 / n - (sum / n).powi(2)).max(0.0).sqrt();
        assert!(
            colours.len() > 200,
            "{name} half looks blank: {} colours",
            colours.len()
        );
        assert!(std > 20.0, "{name} half has no contrast (std {std:.1})");
    }
}
