//! The worker's model jobs: a training thread it owns and controls, run files, generation
//! (with the loaded generator cached), batches, and saving generated images into the project.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context as _;
use image::{DynamicImage, GrayImage, RgbImage};

use super::Worker;
use crate::dtgan::batch::{BatchRequest, generate_batch};
use crate::dtgan::generate::{Composite, DefectGenerator};
use crate::dtgan::run::{RunWatch, TrainControl, TrainEvent, TrainOutcome};
use crate::dtgan::train::{TrainRequest, train};
use crate::eval::experiment::{EvalRequest, evaluate};
use crate::imaging::io::{save_mask, save_png};
use crate::inpaint::apply::{
    ApplyRequest, ApplySummary, InpaintError, TwinMaker, plan_twins, record_twin, set_twin_status,
};
use crate::inpaint::train::{InpaintTrainRequest, train_inpaint};
use crate::project::{ImageEntry, Project, Provenance, RelPath, Role, TwinStatus};
use crate::protocol::{Event, JobKind, TrainingControl};

/// Model state kept by the worker between commands.
#[derive(Default)]
pub(super) struct Models {
    training: Option<(TrainControl, JoinHandle<()>)>,
    evaluation: Option<(TrainControl, JoinHandle<()>)>,
    generator: Option<(PathBuf, DefectGenerator)>,
    /// Twins being made.
    inpainting: Option<Inpainting>,
    /// The run opened with LoadRun, followed live while another process may write it.
    following: Option<RunWatch>,
}

/// Twins the making thread may have ready before it waits for the worker to record them.
const TWIN_QUEUE: usize = 4;

/// From the twin-making thread to the worker.
pub(super) enum TwinMsg {
    /// A twin whose image is written; the worker records it.
    Made {
        /// The defect image it is the twin of.
        defect: String,
        /// Its manifest entry.
        twin: Box<ImageEntry>,
    },
    /// The thread's last word: how many twins it made, or why it stopped.
    Ended(Result<usize, InpaintError>),
}

/// A running twin-making job.
pub(super) struct Inpainting {
    control: TrainControl,
    thread: JoinHandle<()>,
    messages: crossbeam_channel::Receiver<TwinMsg>,
    /// The project it works for.
    root: PathBuf,
    /// The inpainting run it uses.
    run: PathBuf,
    /// What was skipped, counted when it started.
    summary: ApplySummary,
    /// Why a made twin could not be recorded (the job is stopped then).
    failure: Option<String>,
}

/// How often a followed run folder is checked for new metrics and samples.
pub(super) const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(1000);

impl Models {
    fn training_running(&self) -> bool {
        self.training
            .as_ref()
            .is_some_and(|(_, t)| !t.is_finished())
    }

    fn evaluation_running(&self) -> bool {
        self.evaluation
            .as_ref()
            .is_some_and(|(_, t)| !t.is_finished())
    }

    /// Asks the running evaluation to stop (between classifier steps).
    pub(super) fn cancel_evaluation(&self) {
        if let Some((control, _)) = &self.evaluation {
            control.stop();
        }
    }

    /// Asks the twin-making thread to stop after the twin in hand.
    pub(super) fn cancel_inpainting(&self) {
        if let Some(i) = &self.inpainting {
            i.control.stop();
        }
    }

    /// Passes pause / resume / stop to the running training, if any.
    pub(super) fn control(&self, c: TrainingControl) {
        if let Some((control, _)) = &self.training {
            match c {
                TrainingControl::Pause => control.pause(),
                TrainingControl::Resume => control.resume(),
                TrainingControl::Stop => control.stop(),
            }
        }
    }

    /// Stops a running training (it saves a checkpoint) and waits for it.
    pub(super) fn shutdown(&mut self) {
        if let Some((control, thread)) = self.training.take() {
            control.stop();
            let _ = thread.join();
        }
        if let Some((control, thread)) = self.evaluation.take() {
            control.stop();
            let _ = thread.join();
        }
    }
}

/// Starts `job` on a low-priority thread named `name`, with a fresh pause / stop control that the
/// caller keeps to steer it; `what` names the job in the error if the thread cannot start.
fn spawn_controlled(
    name: &str,
    what: &str,
    job: impl FnOnce(&TrainControl) + Send + 'static,
) -> anyhow::Result<(TrainControl, JoinHandle<()>)> {
    let control = TrainControl::new();
    let thread_control = control.clone();
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            crate::nn::threads::lower_priority();
            job(&thread_control);
        })
        .with_context(|| format!("starting the {what} thread"))?;
    Ok((control, thread))
}

impl Worker {
    pub(super) fn start_training(&mut self, req: TrainRequest) -> anyhow::Result<()> {
        self.spawn_training(move |control, on_event| {
            train(&req, control, on_event).map_err(|e| e.to_string())
        })
    }

    pub(super) fn start_inpaint_training(
        &mut self,
        req: InpaintTrainRequest,
    ) -> anyhow::Result<()> {
        self.spawn_training(move |control, on_event| {
            train_inpaint(&req, control, on_event).map_err(|e| e.to_string())
        })
    }

    /// Runs the recall experiment on its own thread, forwarding its events.
    pub(super) fn start_evaluation(&mut self, req: EvalRequest) -> anyhow::Result<()> {
        if self.models.evaluation_running() {
            anyhow::bail!("an evaluation is already running; cancel it first");
        }
        if self.models.training_running() {
            anyhow::bail!(
                "a training run is going; the evaluation trains its own models, so stop it first"
            );
        }
        let sink = self.sink.clone();
        let job = spawn_controlled("studio-evaluation", "evaluation", move |control| {
            let result = evaluate(&req, control, &mut |ev| {
                sink.lossy(Event::Evaluation(ev));
            });
            sink.send(Event::EvaluationEnded {
                out: req.out.clone(),
                result: result.map(Box::new).map_err(|e| e.to_string()),
            });
        })?;
        self.models.evaluation = Some(job);
        Ok(())
    }

    /// Runs a training of any kind on its own thread (one at a time), forwarding its events.
    fn spawn_training<F>(&mut self, run: F) -> anyhow::Result<()>
    where
        F: FnOnce(&TrainControl, &mut dyn FnMut(TrainEvent)) -> Result<TrainOutcome, String>
            + Send
            + 'static,
    {
        if self.models.training_running() {
            anyhow::bail!("a training run is already going; stop it first");
        }
        if self.models.evaluation_running() {
            anyhow::bail!("an evaluation is running; wait for it or cancel it first");
        }
        // The trainer reports its own progress; a followed folder would repeat it.
        self.models.following = None;
        let sink = self.sink.clone();
        let job = spawn_controlled("studio-trainer", "training", move |control| {
            let outcome = run(control, &mut |ev| {
                sink.lossy(Event::Training(ev));
            });
            sink.send(Event::TrainingEnded(outcome));
        })?;
        self.models.training = Some(job);
        Ok(())
    }

    /// Starts making inpainted twins on their own thread. The thread writes the twins' images
    /// and hands each twin to the worker ([`Worker::on_twin`]), which records it in the open
    /// project and saves the manifest: the project has one writer, and the worker keeps serving
    /// the other panes meanwhile.
    pub(super) fn apply_inpaint(&mut self, mut req: ApplyRequest) -> anyhow::Result<()> {
        if self.models.inpainting.is_some() {
            anyhow::bail!("twins are being made already; wait for them or cancel");
        }
        let project = self.project.as_ref().context("no project is open")?;
        req.project = project.root.clone();
        let mut summary = ApplySummary::default();
        let todo = plan_twins(project, &req, &mut summary);
        let snapshot = project.clone();
        let (tx, rx) = crossbeam_channel::bounded(TWIN_QUEUE);
        let sink = self.sink.clone();
        let (run, root) = (req.run.clone(), req.project.clone());
        let (control, thread) = spawn_controlled("studio-inpaint", "inpainting", move |control| {
            let made = TwinMaker::new(&req, snapshot).and_then(|maker| {
                maker.make_all(
                    &todo,
                    &mut |d, t| sink.progress(JobKind::Inpaint, d, t),
                    &|| control.is_stopped(),
                    &mut |defect, twin| {
                        tx.send(TwinMsg::Made {
                            defect: defect.to_owned(),
                            twin: Box::new(twin),
                        })
                        .map_err(|_| InpaintError::Cancelled)
                    },
                )
            });
            let _ = tx.send(TwinMsg::Ended(made));
        })?;
        self.models.inpainting = Some(Inpainting {
            control,
            thread,
            messages: rx,
            root,
            run,
            summary,
            failure: None,
        });
        Ok(())
    }

    /// What the twin-making thread sends, if one runs (else a channel that never delivers).
    pub(super) fn twin_messages(&self) -> crossbeam_channel::Receiver<TwinMsg> {
        self.models
            .inpainting
            .as_ref()
            .map_or_else(crossbeam_channel::never, |i| i.messages.clone())
    }

    /// Records a twin the thread made, or ends the job when the thread is done (`None`: it
    /// stopped without a word).
    pub(super) fn on_twin(&mut self, msg: Option<TwinMsg>) {
        match msg {
            Some(TwinMsg::Made { defect, twin }) => {
                if let Some(job) = &mut self.models.inpainting {
                    job.summary.count_copies(&twin);
                }
                if let Err(e) = self.record_made_twin(&defect, *twin)
                    && let Some(job) = &mut self.models.inpainting
                {
                    // Stop making twins that cannot be kept; the end reports why.
                    job.control.stop();
                    job.failure.get_or_insert(crate::describe(&e));
                }
            }
            Some(TwinMsg::Ended(result)) => self.end_inpainting(Some(result)),
            None => self.end_inpainting(None),
        }
    }

    fn record_made_twin(&mut self, defect: &str, twin: ImageEntry) -> anyhow::Result<()> {
        let Some(job) = &self.models.inpainting else {
            return Ok(());
        };
        let project = self.project.as_mut().context("no project is open")?;
        if project.root != job.root {
            // Another project was opened: the twin's image is written, its record is not.
            anyhow::bail!(
                "the twin of {defect} belongs to {}, which is no longer open",
                job.root.display()
            );
        }
        record_twin(project, defect, twin)?;
        project.save()?;
        self.publish_project();
        Ok(())
    }

    /// Stops the twin-making thread after the twin in hand and records what it made.
    pub(super) fn stop_inpainting(&mut self) {
        self.models.cancel_inpainting();
        while self.models.inpainting.is_some() {
            let msg = self.twin_messages().recv().ok();
            self.on_twin(msg);
        }
    }

    /// The root of the project twins are being made for, if any.
    pub(super) fn inpainting_root(&self) -> Option<&Path> {
        self.models.inpainting.as_ref().map(|i| i.root.as_path())
    }

    fn end_inpainting(&mut self, result: Option<Result<usize, InpaintError>>) {
        let Some(job) = self.models.inpainting.take() else {
            return;
        };
        let _ = job.thread.join();
        let mut s = job.summary;
        let project = self.project.as_ref().filter(|p| p.root == job.root);
        let (job_kind, run) = (JobKind::Inpaint, job.run.display());
        if let Some(failure) = job.failure {
            self.sink.send(Event::JobFailed {
                job: job_kind,
                message: format!("inpainting with {run}: {failure}"),
            });
            return;
        }
        match result {
            Some(Ok(made)) => {
                s.made = made;
                if let Some(p) = project {
                    s.score_seams(p);
                }
                self.sink.send(Event::JobFinished {
                    job: job_kind,
                    message: format!(
                        "{} twins made, pending review ({} with a real template, {} accepted before); {} above the seam threshold {:.2}{}",
                        s.made,
                        s.real_twin,
                        s.accepted,
                        s.flagged,
                        s.threshold,
                        s.copies_line().map(|l| format!("; {l}")).unwrap_or_default()
                    ),
                });
            }
            Some(Err(InpaintError::Cancelled)) => self.sink.send(Event::JobFinished {
                job: job_kind,
                message: "twin making cancelled; the twins made so far are kept".into(),
            }),
            Some(Err(e)) => self.sink.send(Event::JobFailed {
                job: job_kind,
                message: format!("inpainting with {run}: {e}"),
            }),
            None => self.sink.send(Event::JobFailed {
                job: job_kind,
                message: format!("inpainting with {run}: the thread stopped unexpectedly"),
            }),
        }
    }

    /// Sends a twin with its defect image and box mask.
    pub(super) fn load_twin(&mut self, id: &str) -> anyhow::Result<()> {
        let project = self.project.as_ref().context("no project is open")?;
        let twin = project
            .manifest
            .image(id)
            .with_context(|| format!("no image `{id}` in the project"))?;
        let defect_id = twin
            .twin_of
            .as_deref()
            .with_context(|| format!("`{id}` is not the twin of a defect image"))?;
        let defect = project.manifest.image(defect_id).with_context(|| {
            format!("`{id}` names defect image `{defect_id}`, which is missing")
        })?;
        let twin_img = crate::imaging::io::load_rgb8(&project.abs(&twin.path))?;
        let defect_img = crate::imaging::io::load_rgb8(&project.abs(&defect.path))?;
        let box_mask = match (&defect.box_mask, &defect.mask) {
            (Some(b), _) => crate::imaging::io::load_mask(&project.abs(b))?,
            (None, Some(m)) => crate::imaging::boxes::box_mask_from_mask(
                &crate::imaging::io::load_mask(&project.abs(m))?,
                project.manifest.box_margin,
            ),
            (None, None) => GrayImage::new(defect_img.width(), defect_img.height()),
        };
        self.sink.send(Event::TwinLoaded {
            id: id.to_string(),
            defect: std::sync::Arc::new(defect_img),
            twin: std::sync::Arc::new(twin_img),
            box_mask,
        });
        Ok(())
    }

    /// Sets twins' review status and saves the manifest.
    pub(super) fn set_twin_status(
        &mut self,
        ids: &[String],
        status: TwinStatus,
    ) -> anyhow::Result<()> {
        let project = self.project_mut()?;
        let n = set_twin_status(project, ids, status);
        project.save()?;
        self.publish_project();
        tracing::info!("{n} twins set to {status:?}");
        Ok(())
    }

    /// Opens a run folder and follows it: [`Worker::poll_followed_run`] sends its curves and
    /// samples again whenever another process adds to them.
    pub(super) fn load_run(&mut self, run: PathBuf) -> anyhow::Result<()> {
        let watch = RunWatch::new(&run);
        if !watch.is_run() {
            self.models.following = None;
            anyhow::bail!(
                "{} is not a training run (no metrics, checkpoint or run.json)",
                run.display()
            );
        }
        let metrics = watch.dir().metrics();
        self.models.following = Some(watch);
        self.poll_followed_run()
            .with_context(|| format!("reading {}", metrics.display()))
    }

    /// Whether a run folder is being followed (the command loop then wakes up to poll it).
    pub(super) fn following_run(&self) -> bool {
        self.models.following.is_some()
    }

    /// Re-reads the followed run and sends it if its files changed.
    pub(super) fn poll_followed_run(&mut self) -> std::io::Result<()> {
        let Some(watch) = &mut self.models.following else {
            return Ok(());
        };
        if let Some(s) = watch.poll()? {
            self.sink.send(Event::RunLoaded {
                run: watch.dir().root.clone(),
                metrics: s.metrics,
                samples: s.samples,
                kind: s.kind,
            });
        }
        Ok(())
    }

    fn generator(&mut self, run: &Path) -> anyhow::Result<&DefectGenerator> {
        let cached = self
            .models
            .generator
            .as_ref()
            .is_some_and(|(p, _)| p == run);
        if !cached {
            let g = DefectGenerator::load(run, crate::nn::device::DeviceChoice::Auto)
                .with_context(|| format!("loading the generator of {}", run.display()))?;
            self.models.generator = Some((run.to_path_buf(), g));
        }
        self.models
            .generator
            .as_ref()
            .map(|(_, g)| g)
            .context("generator vanished")
    }

    pub(super) fn generate(
        &mut self,
        run: &Path,
        image: &RgbImage,
        mask: &GrayImage,
        composite: Composite,
        ticket: u64,
    ) -> anyhow::Result<()> {
        let g = self.generator(run)?;
        let started = Instant::now();
        let out = g.generate(image, mask, composite)?;
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        let checkpoint_sha256 = g.checkpoint_sha256.clone();
        self.sink.send(Event::Generated {
            ticket,
            image: out,
            millis,
            checkpoint_sha256,
        });
        Ok(())
    }

    pub(super) fn generate_batch(&mut self, req: &BatchRequest) -> anyhow::Result<()> {
        let sink = self.sink.clone();
        let manifest = generate_batch(req, &mut |d, t| sink.progress(JobKind::Batch, d, t))
            .with_context(|| format!("generating into {}", req.out.display()))?;
        self.finished(
            JobKind::Batch,
            format!(
                "{} images written to {}",
                manifest.items.len(),
                req.out.display()
            ),
        );
        Ok(())
    }

    pub(super) fn save_synthetic(
        &mut self,
        class: &str,
        image: &RgbImage,
        mask: &GrayImage,
        provenance: Provenance,
    ) -> anyhow::Result<()> {
        let project = self.project_mut()?;
        let id = next_synthetic_id(project, class);
        let entry = add_synthetic(project, &id, class, image, mask, provenance)?;
        project.manifest.images.push(entry);
        project.save()?;
        self.publish_project();
        self.finished(JobKind::SaveSynthetic, format!("saved {id}"));
        Ok(())
    }
}

/// `synthetic/<class>/NNNNN`, the first number not taken.
fn next_synthetic_id(project: &Project, class: &str) -> String {
    let prefix = format!("synthetic/{class}/");
    let n = project
        .manifest
        .images
        .iter()
        .filter_map(|e| e.id.strip_prefix(&prefix)?.parse::<u64>().ok())
        .max()
        .map_or(1, |n| n + 1);
    format!("{prefix}{n:05}")
}

/// Writes the image and its mask (atomically) and returns the manifest entry for them.
fn add_synthetic(
    project: &Project,
    id: &str,
    class: &str,
    image: &RgbImage,
    mask: &GrayImage,
    provenance: Provenance,
) -> anyhow::Result<ImageEntry> {
    let path = RelPath::new(format!("{id}.png"))?;
    let mask_path = Project::default_mask_path(id);
    let abs = project.ensure_parent(&path)?;
    save_png(&abs, &DynamicImage::ImageRgb8(image.clone()))?;
    let mask_abs = project.ensure_parent(&mask_path)?;
    save_mask(&mask_abs, mask)?;
    let mut entry = ImageEntry::new(id, path, Role::Defect, "synthetic");
    entry.class = Some(class.to_string());
    (entry.width, entry.height) = image.dimensions();
    entry.mask = Some(mask_path);
    entry.synthetic = Some(provenance);
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::demo::{DemoConfig, make_demo};
    use crate::dtgan::run::TrainEvent;
    use crate::dtgan::train::TrainRequest;
    use crate::dtgan::{Preset, TrainConfig};
    use crate::nn::device::DeviceChoice;
    use crate::project::{Project, Provenance, Role};
    use crate::protocol::{Command, Event, SyntheticImage, TrainingControl};
    use crate::worker::WorkerHandle;

    fn next(h: &WorkerHandle) -> Event {
        h.events
            .recv_timeout(Duration::from_secs(120))
            .expect("an event in time")
    }

    #[test]
    fn training_runs_on_its_own_thread_obeys_stop_and_saves_synthetics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("p");
        let cfg = DemoConfig::small(2, 1, 2);
        make_demo(&root, &cfg, &|_, _| {}).expect("demo");
        let h = WorkerHandle::spawn(Arc::new(|| {}), None).expect("spawn");
        h.commands
            .send(Command::OpenProject(root.clone()))
            .expect("send");
        assert!(matches!(next(&h), Event::ProjectOpened(_)));

        let mut config = TrainConfig::preset(Preset::Tiny);
        config.steps = 10_000;
        config.log_every = 1;
        let req = TrainRequest {
            project: root.clone(),
            class: "line".into(),
            run: dir.path().join("run"),
            config,
            resume: false,
            max_minutes: None,
            device: DeviceChoice::Cpu,
        };
        h.commands
            .send(Command::StartTraining(Box::new(req)))
            .expect("send");
        // The worker stays free for other work while the training runs.
        let mut metrics = 0;
        loop {
            match next(&h) {
                Event::Training(TrainEvent::Metrics(_)) => {
                    metrics += 1;
                    if metrics == 3 {
                        h.commands
                            .send(Command::ControlTraining(TrainingControl::Stop))
                            .expect("send");
                    }
                }
                Event::TrainingEnded(result) => {
                    let outcome = result.expect("stopped cleanly");
                    assert!(outcome.step >= 3 && outcome.step < 10_000, "{outcome:?}");
                    assert!(outcome.last.exists());
                    break;
                }
                _ => {}
            }
        }

        let image = image::RgbImage::from_pixel(64, 64, image::Rgb([1, 2, 3]));
        let mut mask = image::GrayImage::new(64, 64);
        mask.put_pixel(5, 5, image::Luma([255]));
        h.commands
            .send(Command::SaveSynthetic(Box::new(SyntheticImage {
                class: "line".into(),
                image,
                mask,
                provenance: Provenance {
                    source: "x".into(),
                    mask_source: "painted".into(),
                    checkpoint: "abc".into(),
                    seed: 1,
                },
            })))
            .expect("send");
        let project = loop {
            if let Event::ProjectOpened(p) = next(&h) {
                break p;
            }
        };
        let saved = project
            .manifest
            .images
            .iter()
            .find(|e| e.synthetic.is_some())
            .expect("a synthetic entry");
        assert_eq!(
            (saved.role, saved.class.as_deref()),
            (Role::Defect, Some("line"))
        );
        assert_eq!(saved.id, "synthetic/line/00001");
        let reopened = Project::open(&root).expect("reopen");
        assert!(reopened.abs(&saved.path).is_file());
        assert!(reopened.manifest.images.iter().any(|e| e.id == saved.id));
    }
}
