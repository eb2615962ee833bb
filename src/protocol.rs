//! The channel protocol between the UI thread and the worker thread.
//!
//! The UI sends [`Command`]s (imperative) on a bounded channel; the worker answers with [`Event`]s
//! (past tense) on another bounded channel. Results and failures are always delivered (blocking
//! send on the worker side, which never holds the UI); frequent progress goes with `try_send` and
//! may be dropped, and the dropped count is reported in [`Event::ProgressDropped`].
//! The UI never blocks: it only uses `try_send` and `try_recv`.

use std::path::PathBuf;
use std::sync::Arc;

use image::{GrayImage, RgbImage};

use crate::dtgan::batch::BatchRequest;
use crate::dtgan::generate::Composite;
use crate::dtgan::run::{RunKind, StepMetrics, TrainEvent, TrainOutcome};
use crate::dtgan::train::TrainRequest;
use crate::eval::experiment::{EvalEvent, EvalRequest, EvalResults};
use crate::inpaint::apply::ApplyRequest;
use crate::inpaint::train::InpaintTrainRequest;
use crate::project::import::ImportRequest;
use crate::project::{Project, Provenance, TwinStatus};

/// Capacity of the command channel (UI -> worker).
pub const COMMAND_CAPACITY: usize = 64;
/// Capacity of the event channel (worker -> UI).
pub const EVENT_CAPACITY: usize = 256;

/// Identifies a job in progress and failure events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// Opening a project.
    Open,
    /// Making the demo project.
    Demo,
    /// Importing images.
    Import,
    /// Loading one image for the painter.
    LoadImage,
    /// Saving masks.
    SaveMasks,
    /// Deriving box masks for the whole project.
    DeriveBoxes,
    /// Training the defect-transfer GAN.
    Train,
    /// Reading a training run's files.
    LoadRun,
    /// Generating one image.
    Generate,
    /// Generating a batch.
    Batch,
    /// Saving a generated image into the project.
    SaveSynthetic,
    /// Making inpainted twins.
    Inpaint,
    /// Loading a twin for seam QA.
    LoadTwin,
    /// Setting twins' review status.
    ReviewTwins,
    /// The minority-class recall experiment.
    Evaluate,
}

/// Pause, resume or stop the running training (obeyed between steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainingControl {
    /// Pause after the current step.
    Pause,
    /// Continue.
    Resume,
    /// Save a checkpoint and stop.
    Stop,
}

/// A generated image to add to the project's synthetic set.
#[derive(Debug)]
pub struct SyntheticImage {
    /// The defect class.
    pub class: String,
    /// The generated image.
    pub image: RgbImage,
    /// Its mask.
    pub mask: GrayImage,
    /// How it was made.
    pub provenance: Provenance,
}

/// What the UI asks the worker to do.
#[derive(Debug)]
pub enum Command {
    /// Open the project in this folder (made empty if it has no manifest).
    OpenProject(PathBuf),
    /// Write the demo project to `out` (replacing nothing that exists) and open it.
    MakeDemo {
        /// Target folder.
        out: PathBuf,
        /// Random seed.
        seed: u64,
    },
    /// Import images into the open project.
    Import(ImportRequest),
    /// Load one image and its masks at full resolution for the painter.
    LoadImage {
        /// Image id.
        id: String,
    },
    /// Save an image's pixel mask and box mask (atomic writes) and update the manifest.
    SaveMasks {
        /// Image id.
        id: String,
        /// The pixel mask (0/255).
        mask: GrayImage,
        /// The box mask (0/255).
        box_mask: GrayImage,
    },
    /// Derive box masks from the pixel masks of every image that has one.
    DeriveBoxes {
        /// Margin in pixels around each region.
        margin: u32,
    },
    /// Start a training run on its own thread (one at a time).
    StartTraining(Box<TrainRequest>),
    /// Start an inpainting run on its own thread (one training of either kind at a time); it
    /// reports through the same events as a DTGAN run.
    StartInpaintTraining(Box<InpaintTrainRequest>),
    /// Control the running training.
    ControlTraining(TrainingControl),
    /// Make inpainted twins for the open project's defect images (pending review), on a thread
    /// of their own: the project is updated and published after each twin, progress comes as
    /// `Progressed { job: Inpaint }`, the end as `JobFinished` / `JobFailed`.
    ApplyInpaint(Box<ApplyRequest>),
    /// Stop making twins after the one in hand (those made are kept).
    CancelInpaint,
    /// Load a twin, its defect image and box mask for seam QA.
    LoadTwin {
        /// The twin's id.
        id: String,
    },
    /// Set the review status of these twins (by twin id) and save the manifest.
    SetTwinStatus {
        /// Twin ids.
        ids: Vec<String>,
        /// The new status.
        status: TwinStatus,
    },
    /// Read a run's metrics, sample grids and configuration.
    LoadRun(PathBuf),
    /// Paint a defect into `image` at `mask` with the generator of `run`.
    Generate {
        /// Run folder or checkpoint.
        run: PathBuf,
        /// The defect-free image.
        image: Arc<RgbImage>,
        /// The mask (0/255).
        mask: GrayImage,
        /// Which pixels change.
        composite: Composite,
        /// Echoed in the answer, so stale results can be told apart.
        ticket: u64,
    },
    /// Make a batch of generated images (files, masks, manifest).
    GenerateBatch(Box<BatchRequest>),
    /// Add a generated image and its mask to the open project's synthetic set.
    SaveSynthetic(Box<SyntheticImage>),
    /// Start the minority-class recall experiment on its own thread (one at a time, not while a
    /// training runs); it reports [`Event::Evaluation`] and ends with
    /// [`Event::EvaluationEnded`].
    StartEvaluation(Box<EvalRequest>),
    /// Stop the running evaluation (the DTGAN keeps its checkpoint; nothing is reported).
    CancelEvaluation,
    /// Read a report folder's `results.json`; answered with [`Event::EvaluationEnded`].
    LoadEvaluation(PathBuf),
    /// Finish and end the thread.
    Shutdown,
}

/// What the worker reports.
#[derive(Debug)]
pub enum Event {
    /// A project was opened, or its manifest changed: this is the new state.
    ProjectOpened(Arc<Project>),
    /// An image is decoded and ready for the painter.
    ImageLoaded {
        /// Image id.
        id: String,
        /// The image.
        image: Arc<RgbImage>,
        /// Its pixel mask, or an empty one.
        mask: GrayImage,
        /// Its box mask, or an empty one.
        box_mask: GrayImage,
    },
    /// An image's masks were written.
    MasksSaved {
        /// Image id.
        id: String,
    },
    /// A long job advanced (may be dropped under load).
    Progressed {
        /// Which job.
        job: JobKind,
        /// Units done.
        done: usize,
        /// Units in all.
        total: usize,
    },
    /// Progress events were dropped because the UI was slow; how many so far.
    ProgressDropped(u64),
    /// A job finished well; the message is for the status line.
    JobFinished {
        /// Which job.
        job: JobKind,
        /// What was done, in words.
        message: String,
    },
    /// News from the running training (metrics and samples may be dropped when the UI is slow;
    /// `metrics.jsonl` keeps them all).
    Training(TrainEvent),
    /// The training thread ended: how, or why it failed.
    TrainingEnded(Result<TrainOutcome, String>),
    /// A run's files, read.
    RunLoaded {
        /// The run folder.
        run: PathBuf,
        /// Every metrics line.
        metrics: Vec<StepMetrics>,
        /// Every sample grid, by step.
        samples: Vec<(u64, PathBuf)>,
        /// Which network the run trains.
        kind: RunKind,
    },
    /// A twin and what it was made from, for seam QA.
    TwinLoaded {
        /// The twin's id.
        id: String,
        /// The defect image ("before").
        defect: Arc<RgbImage>,
        /// The inpainted twin ("after").
        twin: Arc<RgbImage>,
        /// The filled region (0/255).
        box_mask: GrayImage,
    },
    /// A generated image.
    Generated {
        /// The request's ticket.
        ticket: u64,
        /// The result.
        image: RgbImage,
        /// Time the generator took, milliseconds.
        millis: f64,
        /// SHA-256 of the checkpoint used.
        checkpoint_sha256: String,
    },
    /// News from the running evaluation (progress may be dropped when the UI is slow).
    Evaluation(EvalEvent),
    /// An evaluation ended, or a report folder was read.
    EvaluationEnded {
        /// The report folder.
        out: PathBuf,
        /// The results, or why there are none.
        result: Result<Box<EvalResults>, String>,
    },
    /// A job failed; the worker lives on.
    JobFailed {
        /// Which job.
        job: JobKind,
        /// The error, with the file it concerns.
        message: String,
    },
}
