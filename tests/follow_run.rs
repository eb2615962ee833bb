//! The training monitor follows a run folder that another process is writing: a headless
//! `train` (as on a GPU server writing to a shared drive) and a studio worker that opened the
//! same folder, which keeps sending its growing curves and sample grids.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{small_demo, studio_command, tiny_train_args};
use dtgan_studio::protocol::{Command, Event};
use dtgan_studio::worker::WorkerHandle;

const STEPS: u64 = 200;

#[test]
fn monitor_follows_a_run_written_by_another_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proj = small_demo(dir.path());
    let p = proj.to_str().expect("utf-8 temp path");

    let run = dir.path().join("shared-drive").join("run");
    let steps = STEPS.to_string();
    let mut args = tiny_train_args(p, run.to_str().expect("utf-8"));
    args.extend_from_slice(&["--steps", &steps]);
    let mut trainer = studio_command(&args, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the training process");

    // Open the folder as soon as the other process has created it.
    let deadline = Instant::now() + Duration::from_secs(600);
    while !run.join("run.json").exists() {
        assert!(Instant::now() < deadline, "the run folder never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let worker = WorkerHandle::spawn(Arc::new(|| {}), None).expect("worker");
    worker
        .commands
        .send(Command::LoadRun(run.clone()))
        .expect("send");

    // (last logged step, sample grids) of every update the worker sends.
    let mut updates: Vec<(u64, usize)> = Vec::new();
    let mut trainer_done = false;
    loop {
        assert!(
            Instant::now() < deadline,
            "no final update; got {updates:?}"
        );
        if !trainer_done {
            trainer_done = trainer.try_wait().expect("wait").is_some();
        }
        match worker.events.recv_timeout(Duration::from_millis(200)) {
            Ok(Event::RunLoaded {
                run: r,
                metrics,
                samples,
                ..
            }) => {
                assert_eq!(r, run);
                let steps: Vec<u64> = metrics.iter().map(|m| m.step).collect();
                assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
                updates.push((steps.last().copied().unwrap_or(0), samples.len()));
                if steps.last() == Some(&STEPS) {
                    break;
                }
            }
            Ok(Event::JobFailed { message, .. }) => panic!("worker failed: {message}"),
            Ok(_) | Err(_) => {}
        }
    }
    assert!(trainer.wait().expect("wait").success(), "training failed");
    // Live: the monitor saw the run part-way, then more of it, before the end.
    assert!(
        updates.len() >= 3,
        "expected several live updates, got {updates:?}"
    );
    assert!(
        updates.first().is_some_and(|&(s, _)| s < STEPS),
        "the first update came only at the end: {updates:?}"
    );
    assert!(
        updates.windows(2).all(|w| w[0] <= w[1]),
        "steps and sample counts never go back: {updates:?}"
    );
    let (_, samples) = updates.last().copied().unwrap_or_default();
    assert!(
        samples > updates[0].1,
        "sample grids appeared while following: {updates:?}"
    );
}
