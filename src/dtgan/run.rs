//! The files of a training run, and the events and controls a running training exposes.
//!
//! ```text
//! RUN/config.json        the configuration (also inside every checkpoint)
//! RUN/run.json           project folder and class
//! RUN/metrics.jsonl      one StepMetrics object per logged step
//! RUN/last.safetensors   the latest checkpoint
//! RUN/best.safetensors   the checkpoint with the lowest validation L1 inside the mask
//! RUN/samples/step_NNNNNNN.png   twin | mask | generated | real, one row per validation pair
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};

/// Paths inside a run folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    /// The run folder.
    pub root: PathBuf,
}

impl RunDir {
    /// The run in `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    /// `run.json`.
    pub fn info(&self) -> PathBuf {
        self.root.join("run.json")
    }
    /// `metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    /// The latest checkpoint.
    pub fn last(&self) -> PathBuf {
        self.root.join("last.safetensors")
    }
    /// The best checkpoint so far.
    pub fn best(&self) -> PathBuf {
        self.root.join("best.safetensors")
    }
    /// The sample-grid folder.
    pub fn samples(&self) -> PathBuf {
        self.root.join("samples")
    }
    /// The sample grid of `step`.
    pub fn sample(&self, step: u64) -> PathBuf {
        self.samples().join(format!("step_{step:07}.png"))
    }

    /// Every sample grid of the run, as (step, path), by step.
    pub fn list_samples(&self) -> Vec<(u64, PathBuf)> {
        let Ok(dir) = std::fs::read_dir(self.samples()) else {
            return Vec::new();
        };
        let mut out: Vec<(u64, PathBuf)> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let step = name
                    .strip_prefix("step_")?
                    .strip_suffix(".png")?
                    .parse()
                    .ok()?;
                Some((step, e.path()))
            })
            .collect();
        out.sort();
        out
    }
}

/// Which network a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// The defect-transfer GAN (of one class).
    #[default]
    Dtgan,
    /// The inpainting GAN (of one or more groups' defect-free images).
    Inpaint,
}

/// What `run.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The project trained on.
    pub project: PathBuf,
    /// The class trained (DTGAN runs; empty for inpainting runs).
    #[serde(default)]
    pub class: String,
    /// Which network.
    #[serde(default)]
    pub kind: RunKind,
    /// The groups whose defect-free images an inpainting run trains on (empty: every group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The checkpoint a warm-started run took its first weights from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// The groups whose real defect images an inpainting run also learned from, away from their
    /// defects (`Some(empty)`: every group's); `None`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<String>>,
    /// What an inpainting run validates on, kept so that a resumed run validates on the same
    /// images even when the project has gained or lost some since; `None` for runs from before
    /// it was recorded (and DTGAN runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<HeldOut>,
}

/// The images an inpainting run validates on, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldOut {
    /// The defect-free images its validation crops are cut from (never trained on).
    pub images: Vec<String>,
    /// The real templates whose defect images' boxes score its checkpoints.
    pub box_templates: Vec<String>,
}

/// One line of `metrics.jsonl`: means over the steps since the previous line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Generator steps done.
    pub step: u64,
    /// Total generator loss.
    pub loss_g: f64,
    /// Critic loss (negative Wasserstein estimate plus drift).
    pub loss_d: f64,
    /// Adversarial term of the generator, `-E[D(fake)]`.
    pub l_gan: f64,
    /// L1 inside the mask (training batch).
    pub l1_inside: f64,
    /// L1 outside the mask (training batch).
    pub l1_outside: f64,
    /// `E[D(real)] - E[D(fake)]`, the critic's Wasserstein estimate.
    pub wasserstein: f64,
    /// Steps per second over the interval.
    pub it_per_s: f64,
    /// Seconds of training so far (across resumes).
    pub elapsed_s: f64,
    /// L1 inside the mask on the validation pairs, when measured at this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_l1_inside: Option<f64>,
    /// Inpainting runs on real templates: the hole pixel error of their defect images' boxes
    /// cut into them and filled (see `InpaintTrainer::box_error`); only at checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_box_error: Option<f64>,
}

/// Reads `metrics.jsonl`; lines that do not parse (a line cut by a crash) are skipped.
pub fn read_metrics(path: &Path) -> std::io::Result<Vec<StepMetrics>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// A run folder's files at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSnapshot {
    /// Every complete metrics line.
    pub metrics: Vec<StepMetrics>,
    /// Every sample grid, by step.
    pub samples: Vec<(u64, PathBuf)>,
    /// Which network the run trains (from `run.json`; DTGAN when unknown).
    pub kind: RunKind,
}

/// Follows a run folder that another process may be writing (a headless `train` on a GPU
/// server, over a shared drive): [`RunWatch::poll`] re-reads it whenever its files changed.
///
/// Change is detected from the metrics file's length and modification time, the set of sample
/// grids and the last checkpoint's time, so a poll of an idle run reads no file contents. A
/// metrics line caught half-written is skipped and read on the next poll; a metrics file that
/// shrank (the writer resumed from an earlier checkpoint) is simply read again from the start.
#[derive(Debug)]
pub struct RunWatch {
    dir: RunDir,
    seen: Option<RunFingerprint>,
}

#[derive(Debug, Clone, PartialEq)]
struct RunFingerprint {
    metrics: Option<(u64, Option<std::time::SystemTime>)>,
    samples: Vec<u64>,
    checkpoint: Option<std::time::SystemTime>,
}

impl RunWatch {
    /// Starts watching `run`; the first poll reports what is there.
    pub fn new(run: impl Into<PathBuf>) -> Self {
        Self {
            dir: RunDir::new(run),
            seen: None,
        }
    }

    /// The watched folder.
    pub fn dir(&self) -> &RunDir {
        &self.dir
    }

    /// Whether the folder looks like a training run (even one whose first step is not logged
    /// yet).
    pub fn is_run(&self) -> bool {
        [
            self.dir.metrics(),
            self.dir.last(),
            self.dir.info(),
            self.dir.config(),
        ]
        .iter()
        .any(|p| p.exists())
    }

    fn fingerprint(&self) -> RunFingerprint {
        let modified = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.len(), m.modified().ok()))
        };
        RunFingerprint {
            metrics: modified(&self.dir.metrics()),
            samples: self
                .dir
                .list_samples()
                .into_iter()
                .map(|(s, _)| s)
                .collect(),
            checkpoint: modified(&self.dir.last()).and_then(|(_, t)| t),
        }
    }

    /// The run's files if they changed since the last poll (always on the first poll).
    pub fn poll(&mut self) -> std::io::Result<Option<RunSnapshot>> {
        let now = self.fingerprint();
        if self.seen.as_ref() == Some(&now) {
            return Ok(None);
        }
        let metrics = match read_metrics(&self.dir.metrics()) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let samples = self.dir.list_samples();
        let kind = std::fs::read_to_string(self.dir.info())
            .ok()
            .and_then(|t| serde_json::from_str::<RunInfo>(&t).ok())
            .map(|i| i.kind)
            .unwrap_or_default();
        self.seen = Some(now);
        Ok(Some(RunSnapshot {
            metrics,
            samples,
            kind,
        }))
    }
}

/// What a training run reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// Training started or resumed.
    Started {
        /// The run folder.
        run: PathBuf,
        /// Step it starts from.
        step: u64,
        /// Step it will stop at.
        steps: u64,
        /// Training pairs.
        pairs: usize,
        /// Validation pairs.
        val_pairs: usize,
    },
    /// A metrics line was written.
    Metrics(StepMetrics),
    /// A sample grid was written.
    Sample {
        /// Its step.
        step: u64,
        /// The PNG.
        path: PathBuf,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Its step.
        step: u64,
        /// The file.
        path: PathBuf,
    },
    /// Paused between steps.
    Paused {
        /// Steps done.
        step: u64,
    },
    /// Running again.
    Resumed {
        /// Steps done.
        step: u64,
    },
}

/// Why a run ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The configured number of steps is done.
    Finished,
    /// Stop was asked for.
    Stopped,
    /// The time limit was reached.
    TimeLimit,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// Steps done.
    pub step: u64,
    /// Why it ended.
    pub reason: StopReason,
    /// The last checkpoint.
    pub last: PathBuf,
    /// Best validation score and its step.
    pub best: Option<(f64, u64)>,
    /// What the best score measures ([`Validation::metric`](super::train::Validation::metric)).
    pub best_metric: Option<String>,
}

const RUN: u8 = 0;
const PAUSE: u8 = 1;
const STOP: u8 = 2;

/// Pause / resume / stop for a running training, shared between threads; obeyed between steps.
#[derive(Debug, Clone, Default)]
pub struct TrainControl(Arc<AtomicU8>);

impl TrainControl {
    /// A control in the running state.
    pub fn new() -> Self {
        Self::default()
    }
    /// Pause after the current step.
    pub fn pause(&self) {
        let _ = self
            .0
            .compare_exchange(RUN, PAUSE, Ordering::SeqCst, Ordering::SeqCst);
    }
    /// Continue a paused run.
    pub fn resume(&self) {
        let _ = self
            .0
            .compare_exchange(PAUSE, RUN, Ordering::SeqCst, Ordering::SeqCst);
    }
    /// Save a checkpoint and stop after the current step (also ends a pause).
    pub fn stop(&self) {
        self.0.store(STOP, Ordering::SeqCst);
    }
    /// Whether a pause is asked for.
    pub fn is_paused(&self) -> bool {
        self.0.load(Ordering::SeqCst) == PAUSE
    }
    /// Whether a stop is asked for.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst) == STOP
    }
}
