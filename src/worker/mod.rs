//! The one background thread: runs [`Command`]s, reports [`Event`]s.
//!
//! The UI owns the sending end of a bounded command channel and the receiving end of a bounded
//! event channel. Results and failures are sent blocking (the UI drains events every frame, so
//! this waits at most a frame); progress is sent with `try_send` and dropped when the channel is
//! full, counting what was dropped. After every event the worker calls the waker (the app passes
//! a closure that requests a repaint), so the worker needs no egui.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender, bounded};

use crate::demo::{DemoConfig, make_demo};
use crate::project::Project;
use crate::project::import::import;
use crate::project::masks::{derive_box_masks, load_image_with_masks, store_masks};
use crate::protocol::{COMMAND_CAPACITY, Command, EVENT_CAPACITY, Event, JobKind};
use crate::settings::Settings;

mod model;

/// Called after each event so the UI wakes up.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// The UI's side of the worker: its channels and its thread.
pub struct WorkerHandle {
    /// Commands to the worker.
    pub commands: Sender<Command>,
    /// Events from the worker.
    pub events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Starts the worker thread. With `settings`, opened projects are remembered there.
    pub fn spawn(waker: Waker, settings: Option<Settings>) -> std::io::Result<Self> {
        let (cmd_tx, cmd_rx) = bounded(COMMAND_CAPACITY);
        let (ev_tx, ev_rx) = bounded(EVENT_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("studio-worker".into())
            .spawn(move || {
                crate::nn::threads::lower_priority();
                Worker::new(ev_tx, waker, settings).run(&cmd_rx)
            })?;
        Ok(Self {
            commands: cmd_tx,
            events: ev_rx,
            thread: Some(thread),
        })
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        // The worker finishes the commands queued before Shutdown (a last mask save, say). The
        // queue may be full, so keep offering Shutdown, and drain events meanwhile so that the
        // worker never waits on a full event channel.
        let Some(t) = self.thread.take() else { return };
        let mut asked = false;
        while !t.is_finished() {
            if !asked {
                asked = self.commands.try_send(Command::Shutdown).is_ok();
            }
            while self.events.try_recv().is_ok() {}
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = t.join();
    }
}

/// Sends events to the UI: results blocking, progress lossy.
#[derive(Clone)]
pub struct EventSink {
    tx: Sender<Event>,
    waker: Waker,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    /// A sink on `tx` that calls `waker` after each event.
    pub fn new(tx: Sender<Event>, waker: Waker) -> Self {
        Self {
            tx,
            waker,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Delivers an event that must not be lost (results, failures).
    pub fn send(&self, event: Event) {
        // A closed channel means the UI is gone; nothing is left to tell.
        let _ = self.tx.send(event);
        (self.waker)();
    }

    /// Delivers an event if there is room; otherwise counts it as dropped.
    pub fn lossy(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let _ = self.tx.try_send(Event::ProgressDropped(n));
        }
        (self.waker)();
    }

    /// Delivers progress if there is room; otherwise counts it as dropped.
    pub fn progress(&self, job: JobKind, done: usize, total: usize) {
        if self
            .tx
            .try_send(Event::Progressed { job, done, total })
            .is_err()
        {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let _ = self.tx.try_send(Event::ProgressDropped(n));
        }
        (self.waker)();
    }
}

struct Worker {
    sink: EventSink,
    project: Option<Project>,
    settings: Option<Settings>,
    models: model::Models,
}

impl Worker {
    fn new(tx: Sender<Event>, waker: Waker, settings: Option<Settings>) -> Self {
        Self {
            sink: EventSink::new(tx, waker),
            project: None,
            settings,
            models: model::Models::default(),
        }
    }

    /// Makes `project` the open one, remembers it for the next start and tells the UI.
    fn set_project(&mut self, project: Project) {
        if self
            .inpainting_root()
            .is_some_and(|root| root != project.root)
        {
            // Twins are recorded in the project they were made for: finish with it first.
            self.stop_inpainting();
        }
        if let Some(s) = &self.settings
            && let Err(e) = s.remember_project(&project.root)
        {
            tracing::warn!(
                "cannot remember the last project in {}: {e}",
                s.home.display()
            );
        }
        self.project = Some(project);
        self.publish_project();
    }

    fn run(mut self, commands: &Receiver<Command>) {
        // A followed run is polled on a clock, not only when no command came for a while: a
        // steady stream of commands (live generation) must not stall its updates.
        let mut next_poll = Instant::now() + model::FOLLOW_POLL;
        loop {
            let clock = if self.following_run() {
                crossbeam_channel::at(next_poll)
            } else {
                crossbeam_channel::never()
            };
            let twins = self.twin_messages();
            let cmd = crossbeam_channel::select! {
                recv(commands) -> cmd => match cmd {
                    Ok(cmd) => Some(cmd),
                    Err(_) => break,
                },
                recv(twins) -> msg => {
                    self.on_twin(msg.ok());
                    None
                }
                recv(clock) -> _ => None,
            };
            if self.following_run() && Instant::now() >= next_poll {
                if let Err(e) = self.poll_followed_run() {
                    tracing::debug!("polling the followed run: {e}");
                }
                next_poll = Instant::now() + model::FOLLOW_POLL;
            }
            let Some(cmd) = cmd else {
                continue;
            };
            if matches!(cmd, Command::Shutdown) {
                break;
            }
            let job = job_of(&cmd);
            if let Err(e) = self.handle(cmd) {
                self.sink.send(Event::JobFailed {
                    job,
                    message: crate::describe(&e),
                });
            }
        }
        // Twins in hand are recorded, and a running training saves a checkpoint, before the
        // worker ends.
        self.stop_inpainting();
        self.models.shutdown();
    }

    fn project_mut(&mut self) -> anyhow::Result<&mut Project> {
        self.project.as_mut().context("no project is open")
    }

    fn publish_project(&self) {
        if let Some(p) = &self.project {
            self.sink.send(Event::ProjectOpened(Arc::new(p.clone())));
        }
    }

    fn handle(&mut self, cmd: Command) -> anyhow::Result<()> {
        match cmd {
            Command::OpenProject(dir) => {
                let project = Project::open_or_create(&dir)
                    .with_context(|| format!("opening project {}", dir.display()))?;
                self.set_project(project);
            }
            Command::MakeDemo { out, seed } => {
                let sink = self.sink.clone();
                let cfg = DemoConfig {
                    seed,
                    ..DemoConfig::default()
                };
                let project =
                    make_demo(&out, &cfg, &move |d, t| sink.progress(JobKind::Demo, d, t))
                        .with_context(|| format!("making the demo project in {}", out.display()))?;
                self.set_project(project);
                self.finished(
                    JobKind::Demo,
                    format!("demo project written to {}", out.display()),
                );
            }
            Command::Import(req) => {
                let sink = self.sink.clone();
                let project = self.project_mut()?;
                let summary = import(project, &req, &move |d, t| {
                    sink.progress(JobKind::Import, d, t)
                })
                .with_context(|| format!("importing {}", req.from.display()))?;
                for skipped in &summary.skipped {
                    tracing::warn!("import skipped {}: {}", skipped.path, skipped.reason);
                }
                self.publish_project();
                self.finished(JobKind::Import, summary.to_string());
            }
            Command::LoadImage { id } => {
                let project = self.project.as_ref().context("no project is open")?;
                let loaded = load_image_with_masks(project, &id)?;
                self.sink.send(Event::ImageLoaded {
                    id,
                    image: Arc::new(loaded.image),
                    mask: loaded.mask,
                    box_mask: loaded.box_mask,
                });
            }
            Command::SaveMasks { id, mask, box_mask } => {
                store_masks(self.project_mut()?, &id, &mask, &box_mask)?;
                self.sink.send(Event::MasksSaved { id });
                self.publish_project();
            }
            Command::DeriveBoxes { margin } => {
                let sink = self.sink.clone();
                let project = self.project_mut()?;
                let n = derive_box_masks(project, margin, &move |d, t| {
                    sink.progress(JobKind::DeriveBoxes, d, t)
                })?;
                self.publish_project();
                self.finished(
                    JobKind::DeriveBoxes,
                    format!("{n} box masks derived (margin {margin} px)"),
                );
            }
            Command::StartTraining(req) => self.start_training(*req)?,
            Command::StartInpaintTraining(req) => self.start_inpaint_training(*req)?,
            Command::ControlTraining(c) => self.models.control(c),
            Command::ApplyInpaint(req) => self.apply_inpaint(*req)?,
            Command::CancelInpaint => self.models.cancel_inpainting(),
            Command::LoadTwin { id } => self.load_twin(&id)?,
            Command::SetTwinStatus { ids, status } => self.set_twin_status(&ids, status)?,
            Command::LoadRun(run) => self.load_run(run)?,
            Command::Generate {
                run,
                image,
                mask,
                composite,
                ticket,
            } => self.generate(&run, &image, &mask, composite, ticket)?,
            Command::GenerateBatch(req) => self.generate_batch(&req)?,
            Command::SaveSynthetic(s) => {
                self.save_synthetic(&s.class, &s.image, &s.mask, s.provenance)?
            }
            Command::StartEvaluation(req) => self.start_evaluation(*req)?,
            Command::CancelEvaluation => self.models.cancel_evaluation(),
            Command::LoadEvaluation(dir) => {
                let result = crate::eval::report::read_results(&dir)
                    .map(Box::new)
                    .map_err(|e| e.to_string());
                self.sink.send(Event::EvaluationEnded { out: dir, result });
            }
            Command::Shutdown => {}
        }
        Ok(())
    }

    fn finished(&self, job: JobKind, message: String) {
        self.sink.send(Event::JobFinished { job, message });
    }
}

fn job_of(cmd: &Command) -> JobKind {
    match cmd {
        Command::OpenProject(_) | Command::Shutdown => JobKind::Open,
        Command::MakeDemo { .. } => JobKind::Demo,
        Command::Import(_) => JobKind::Import,
        Command::LoadImage { .. } => JobKind::LoadImage,
        Command::SaveMasks { .. } => JobKind::SaveMasks,
        Command::DeriveBoxes { .. } => JobKind::DeriveBoxes,
        Command::StartTraining(_)
        | Command::StartInpaintTraining(_)
        | Command::ControlTraining(_) => JobKind::Train,
        Command::ApplyInpaint(_) | Command::CancelInpaint => JobKind::Inpaint,
        Command::LoadTwin { .. } => JobKind::LoadTwin,
        Command::SetTwinStatus { .. } => JobKind::ReviewTwins,
        Command::LoadRun(_) => JobKind::LoadRun,
        Command::Generate { .. } => JobKind::Generate,
        Command::GenerateBatch(_) => JobKind::Batch,
        Command::SaveSynthetic(_) => JobKind::SaveSynthetic,
        Command::StartEvaluation(_) | Command::CancelEvaluation | Command::LoadEvaluation(_) => {
            JobKind::Evaluate
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn next_event(h: &WorkerHandle) -> Event {
        h.events
            .recv_timeout(Duration::from_secs(20))
            .expect("an event in time")
    }

    #[test]
    fn failures_are_reported_and_the_worker_lives_on() {
        let h = WorkerHandle::spawn(Arc::new(|| {}), None).expect("spawn");
        h.commands
            .send(Command::LoadImage { id: "x".into() })
            .expect("send");
        match next_event(&h) {
            Event::JobFailed { job, message } => {
                assert_eq!(job, JobKind::LoadImage);
                assert!(message.contains("no project"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let dir = tempfile::tempdir().expect("tempdir");
        h.commands
            .send(Command::OpenProject(dir.path().to_path_buf()))
            .expect("send");
        assert!(matches!(next_event(&h), Event::ProjectOpened(p) if p.root == dir.path()));
    }

    #[test]
    fn dropping_the_handle_finishes_queued_saves_even_with_a_full_queue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = WorkerHandle::spawn(Arc::new(|| {}), None).expect("spawn");
        h.commands
            .send(Command::OpenProject(dir.path().to_path_buf()))
            .expect("send");
        // Fill the queue to the brim with work that fails (no such image) and must not hang.
        while h
            .commands
            .try_send(Command::LoadImage {
                id: "missing".into(),
            })
            .is_ok()
        {}
        drop(h); // returns only once the thread has ended
        assert!(dir.path().join(crate::project::MANIFEST_FILE).is_file());
    }

    #[test]
    fn progress_is_dropped_not_blocking_when_the_ui_is_slow() {
        let (tx, rx) = bounded(4);
        let sink = EventSink::new(tx, Arc::new(|| {}));
        for i in 0..100 {
            sink.progress(JobKind::Import, i, 100);
        }
        assert_eq!(rx.len(), 4);
        assert!(sink.dropped.load(Ordering::Relaxed) >= 96);
    }

    /// The tiny evaluation request on the magnetic tiles of `shared/data`.
    fn tiny_evaluation(out: &std::path::Path) -> crate::eval::experiment::EvalRequest {
        let data = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data/magnetic_tile");
        assert!(data.is_dir(), "shared data missing: {}", data.display());
        crate::eval::experiment::EvalRequest {
            train: data.clone(),
            test: data,
            train_groups: Vec::new(),
            test_groups: Vec::new(),
            source_groups: Vec::new(),
            minor: "crack".into(),
            k: 3,
            synthetic: Some(6),
            seeds: 1,
            seed: 0,
            config: crate::eval::experiment::EvalConfig::preset(crate::dtgan::Preset::Tiny),
            max_minutes: None,
            dtgan_run: None,
            out: out.to_path_buf(),
            device: crate::nn::device::DeviceChoice::Cpu,
        }
    }

    #[test]
    fn an_evaluation_runs_on_its_own_thread_reports_and_its_report_loads_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("report");
        let h = WorkerHandle::spawn(Arc::new(|| {}), None).expect("spawn");
        h.commands
            .send(Command::StartEvaluation(Box::new(tiny_evaluation(&out))))
            .expect("send");
        // The worker stays free for other jobs while the evaluation runs.
        h.commands
            .send(Command::LoadImage { id: "x".into() })
            .expect("send");
        let (mut stages, mut cases) = (0, 0);
        let ended = loop {
            match h
                .events
                .recv_timeout(Duration::from_secs(120))
                .expect("an event")
            {
                Event::Evaluation(crate::eval::experiment::EvalEvent::Stage(_)) => stages += 1,
                Event::Evaluation(crate::eval::experiment::EvalEvent::CaseDone(_)) => cases += 1,
                Event::EvaluationEnded { out: o, result } => break (o, result),
                _ => {}
            }
        };
        assert_eq!(ended.0, out);
        let results = ended.1.expect("evaluation succeeds");
        assert_eq!(results.cases.len(), 5);
        assert!(stages >= 5, "{stages} stages");
        assert_eq!(cases, 5);
        h.commands
            .send(Command::LoadEvaluation(out.clone()))
            .expect("send");
        let loaded = loop {
            if let Event::EvaluationEnded { result, .. } = next_event(&h) {
                break result.expect("results.json reads");
            }
        };
        // JSON keeps a float to within a unit in the last place, and NaN is not equal to itself:
        // compare the counts exactly and the scores closely.
        assert_eq!(loaded.classes, results.classes);
        assert_eq!(loaded.cases.len(), results.cases.len());
        for (a, b) in loaded.cases.iter().zip(&results.cases) {
            assert_eq!((&a.case, a.minor_train), (&b.case, b.minor_train));
            assert!((a.recall.mean - b.recall.mean).abs() < 1e-12);
            assert!((a.accuracy.mean - b.accuracy.mean).abs() < 1e-12);
            assert_eq!(a.per_seed[0].confusion, b.per_seed[0].confusion);
        }
        // A folder without a report is an error naming the file.
        h.commands
            .send(Command::LoadEvaluation(dir.path().to_path_buf()))
            .expect("send");
        loop {
            if let Event::EvaluationEnded { result, .. } = next_event(&h) {
                let e = result.expect_err("no report there");
                assert!(e.contains("results.json"), "{e}");
                break;
            }
        }
    }

    #[test]
    fn a_cancelled_evaluation_ends_with_cancelled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = WorkerHandle::spawn(Arc::new(|| {}), None).expect("spawn");
        let mut req = tiny_evaluation(&dir.path().join("report"));
        req.seeds = 50;
        h.commands
            .send(Command::StartEvaluation(Box::new(req)))
            .expect("send");
        h.commands.send(Command::CancelEvaluation).expect("send");
        let result = loop {
            if let Event::EvaluationEnded { result, .. } = h
                .events
                .recv_timeout(Duration::from_secs(120))
                .expect("an event")
            {
                break result;
            }
        };
        assert_eq!(result.err().as_deref(), Some("cancelled"));
        assert!(!dir.path().join("report").join("results.json").exists());
    }

    /// A 64 px demo project whose defect images have no twins, and a tiny inpainting run (two
    /// steps: twins need a model, not a good one).
    fn project_needing_twins(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let root = dir.join("project");
        let cfg = DemoConfig::small(3, 1, 3);
        let mut project = make_demo(&root, &cfg, &|_, _| {}).expect("demo");
        for e in &mut project.manifest.images {
            e.twin = None;
        }
        project.save().expect("save");
        let groups: Vec<String> = project
            .manifest
            .images
            .iter()
            .filter(|e| e.role == crate::project::Role::Good)
            .map(|e| e.group.clone())
            .collect();
        let mut config = crate::inpaint::config::InpaintConfig::preset(crate::dtgan::Preset::Tiny);
        config.steps = 2;
        config.checkpoint_every = 2;
        config.log_every = 1;
        let run = dir.join("inpaint-run");
        crate::inpaint::train::train_inpaint(
            &crate::inpaint::train::InpaintTrainRequest {
                context: None,
                project: root.clone(),
                groups,
                run: run.clone(),
                config,
                resume: false,
                max_minutes: None,
                device: crate::nn::device::DeviceChoice::Cpu,
                init_from: None,
            },
            &crate::dtgan::run::TrainControl::new(),
            &mut |_| {},
        )
        .expect("tiny inpainting run");
        (root, run)
    }

    fn apply_request(root: &std::path::Path, run: &std::path::Path) -> Command {
        Command::ApplyInpaint(Box::new(crate::inpaint::apply::ApplyRequest {
            run: run.to_path_buf(),
            also: Vec::new(),
            project: root.to_path_buf(),
            class: None,
            redo_accepted: false,
            device: crate::nn::device::DeviceChoice::Cpu,
            ensemble: false,
            peel: 0,
            exemplar: None,
        }))
    }

    fn inpainted(p: &Project) -> Vec<&crate::project::ImageEntry> {
        p.manifest
            .images
            .iter()
            .filter(|e| e.inpaint.is_some())
            .collect()
    }

    #[test]
    fn twins_are_made_on_their_own_thread_and_recorded_by_the_worker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (root, run) = project_needing_twins(dir.path());
        let defects = Project::open(&root)
            .expect("open")
            .manifest
            .images
            .iter()
            .filter(|e| e.role == crate::project::Role::Defect)
            .map(|e| e.id.clone())
            .collect::<Vec<_>>();
        let h = WorkerHandle::spawn(Arc::new(|| {}), None).expect("spawn");
        h.commands
            .send(Command::OpenProject(root.clone()))
            .expect("send");
        h.commands.send(apply_request(&root, &run)).expect("send");
        // Other work is served while twins are made; a second apply is refused.
        h.commands
            .send(Command::LoadImage {
                id: defects[0].clone(),
            })
            .expect("send");
        h.commands.send(apply_request(&root, &run)).expect("send");
        let (mut loaded, mut refused, mut counts) = (false, false, Vec::new());
        let finished = loop {
            match next_event(&h) {
                Event::ProjectOpened(p) => counts.push(inpainted(&p).len()),
                Event::ImageLoaded { id, .. } => loaded |= id == defects[0],
                Event::JobFailed { job, message } => {
                    assert_eq!(job, JobKind::Inpaint, "{message}");
                    assert!(message.contains("already"), "{message}");
                    refused = true;
                }
                Event::JobFinished {
                    job: JobKind::Inpaint,
                    message,
                } => break message,
                _ => {}
            }
        };
        assert!(loaded && refused, "loaded {loaded}, refused {refused}");
        // The project is published after each twin, one more each time.
        assert_eq!(counts.first(), Some(&0));
        assert_eq!(counts.last(), Some(&defects.len()), "{counts:?}");
        assert!(counts.windows(2).all(|w| w[1] <= w[0] + 1), "{counts:?}");
        assert!(
            finished.starts_with(&format!("{} twins made", defects.len())),
            "{finished}"
        );
        let on_disk = Project::open(&root).expect("reopen");
        let twins = inpainted(&on_disk);
        assert_eq!(twins.len(), defects.len());
        for t in twins {
            assert_eq!(
                t.twin_status,
                Some(crate::project::TwinStatus::PendingReview)
            );
            assert!(on_disk.abs(&t.path).is_file());
        }
    }

    #[test]
    fn cancelled_twin_making_keeps_every_twin_it_wrote() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (root, run) = project_needing_twins(dir.path());
        let h = WorkerHandle::spawn(Arc::new(|| {}), None).expect("spawn");
        h.commands
            .send(Command::OpenProject(root.clone()))
            .expect("send");
        h.commands.send(apply_request(&root, &run)).expect("send");
        h.commands.send(Command::CancelInpaint).expect("send");
        let message = loop {
            match next_event(&h) {
                Event::JobFinished {
                    job: JobKind::Inpaint,
                    message,
                } => break message,
                Event::JobFailed {
                    job: JobKind::Inpaint,
                    message,
                } => {
                    panic!("{message}")
                }
                _ => {}
            }
        };
        assert!(
            message.contains("cancelled") || message.contains("twins made"),
            "{message}"
        );
        // Every twin image written is in the manifest (timing decides how many there are).
        let on_disk = Project::open(&root).expect("reopen");
        fn files_under(dir: &std::path::Path) -> usize {
            std::fs::read_dir(dir).map_or(0, |d| {
                d.flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() { files_under(&p) } else { 1 }
                    })
                    .sum()
            })
        }
        assert_eq!(inpainted(&on_disk).len(), files_under(&root.join("twins")));
    }
}
