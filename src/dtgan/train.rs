//! The training loop: Wasserstein GAN with spectral norm, n_critic critic steps per generator
//! step, checkpoints that resume exactly, metrics, sample grids, pause / resume / stop.
//!
//! Every random draw of step `s` comes from a generator seeded with `(seed, s)`, so the RNG
//! state of a run is its step count, and a resumed run continues the very same curve.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use image::{DynamicImage, Rgb, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::adam::Adam;
use super::config::TrainConfig;
use super::data::{
    DataError, LoadedPair, Sampler, batch_tensors, center_crop, collect_pairs, load_pair,
    tensor_image,
};
use super::model::{
    CHECKPOINT_FORMAT, CheckpointParts, Dtgan, TrainState, checkpoint_config, masked_l1,
    read_checkpoint, restore_checkpoint, save_checkpoint,
};
use super::run::{
    RunDir, RunInfo, RunKind, StepMetrics, StopReason, TrainControl, TrainEvent, TrainOutcome,
    read_metrics,
};
use crate::imaging::augment::Triple;
use crate::nn::NnError;
use crate::nn::device::{DeviceChoice, select_device};
use crate::project::Project;

/// Most validation pairs shown in a sample grid.
const MAX_GRID_ROWS: usize = 8;

/// Why training could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration is unusable.
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// Validating a checkpoint failed.
    #[error("validation failed: {0}")]
    Validation(String),
    /// The project could not be read.
    #[error(transparent)]
    Project(#[from] crate::project::ProjectError),
    /// The training data is missing or unreadable.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Device or checkpoint trouble.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A run file could not be written or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The run folder already holds a run.
    #[error(
        "{} already holds a training run; pass --resume to continue it or choose another folder",
        .0.display()
    )]
    RunExists(PathBuf),
    /// Resuming was asked for but there is nothing to resume.
    #[error("{}: no checkpoint to resume from (last.safetensors is missing)", .0.display())]
    NothingToResume(PathBuf),
    /// A run was resumed with another class than it was started with.
    #[error("{} was trained on class `{was}`, not `{asked}`", run.display())]
    ClassMismatch {
        /// The run folder.
        run: PathBuf,
        /// The run's class.
        was: String,
        /// The class asked for.
        asked: String,
    },
    /// An inpainting run was resumed with other groups than it was started with.
    #[error("{} was trained on group(s) {was:?} (empty: all), not {asked:?}", run.display())]
    GroupMismatch {
        /// The run folder.
        run: PathBuf,
        /// The run's groups (empty: all).
        was: Vec<String>,
        /// The groups asked for.
        asked: Vec<String>,
    },
    /// A loss became NaN or infinite; the last checkpoint on disk is still the last good one.
    #[error(
        "{what} became {value} at step {step}; training stopped, the last good checkpoint ({}) is kept. Try a lower learning rate.",
        last_good.display()
    )]
    NonFinite {
        /// Which loss.
        what: &'static str,
        /// Its value.
        value: f64,
        /// The step.
        step: u64,
        /// The checkpoint left untouched.
        last_good: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// The project folder.
    pub project: PathBuf,
    /// The defect class.
    pub class: String,
    /// The run folder (created).
    pub run: PathBuf,
    /// The configuration; when resuming, only `steps` is taken from here.
    pub config: TrainConfig,
    /// Continue the run in `run` from its last checkpoint.
    pub resume: bool,
    /// Stop (with a checkpoint) after this many minutes of this session.
    pub max_minutes: Option<f64>,
    /// Where to compute.
    pub device: DeviceChoice,
}

/// Loss values of one generator step (and the critic steps before it).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepLosses {
    /// Generator total.
    pub loss_g: f64,
    /// Critic total (mean over the critic steps).
    pub loss_d: f64,
    /// Generator adversarial term.
    pub l_gan: f64,
    /// L1 inside the mask.
    pub l1_inside: f64,
    /// L1 outside the mask.
    pub l1_outside: f64,
    /// Critic's Wasserstein estimate (mean over the critic steps).
    pub wasserstein: f64,
}

impl StepLosses {
    fn add(&mut self, o: &StepLosses) {
        self.loss_g += o.loss_g;
        self.loss_d += o.loss_d;
        self.l_gan += o.l_gan;
        self.l1_inside += o.l1_inside;
        self.l1_outside += o.l1_outside;
        self.wasserstein += o.wasserstein;
    }
}

/// A run in memory: networks, optimizers, data, validation crops.
pub struct Trainer {
    /// The configuration.
    pub config: TrainConfig,
    /// The networks.
    pub nets: Dtgan,
    opt_g: Adam,
    opt_d: Adam,
    /// Where the run stands.
    pub state: TrainState,
    sampler: Sampler,
    val: Vec<Triple>,
    /// The run's files.
    pub run: RunDir,
}

fn scalar(t: &Tensor) -> candle_core::Result<f64> {
    t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()
}

/// Sum of the squares of every variable in `map` (NaN or infinite if any value is).
fn sum_of_squares(map: &candle_nn::VarMap) -> candle_core::Result<f64> {
    let data = map
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
    let mut total = 0.0;
    for var in data.values() {
        total += scalar(&var.as_tensor().sqr()?.sum_all()?)?;
    }
    Ok(total)
}

/// Seed number `n` derived from `seed` with the SplitMix64 finaliser, so neighbouring numbers
/// get unrelated streams.
pub fn derive_seed(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator of step `step`'s random draws.
fn step_rng(seed: u64, step: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive_seed(seed, step))
}

impl Trainer {
    /// Prepares a new run, or reloads one to resume.
    pub fn open(req: &TrainRequest) -> Result<Self, TrainError> {
        let run = RunDir::new(&req.run);
        let resuming = check_run_folder(&run, req.resume)?;
        let device = select_device(req.device)?;
        let project = Project::open(&req.project)?;
        let pairs = collect_pairs(&project, &req.class)?;

        let (config, ckpt) = if resuming {
            let path = run.last();
            let (tensors, meta) = read_checkpoint(&path)?;
            let mut cfg = checkpoint_config(&path, &meta)?;
            cfg.steps = req.config.steps;
            if let Ok(text) = std::fs::read_to_string(run.info())
                && let Ok(info) = serde_json::from_str::<RunInfo>(&text)
                && info.class != req.class
            {
                return Err(TrainError::ClassMismatch {
                    run: run.root.clone(),
                    was: info.class,
                    asked: req.class.clone(),
                });
            }
            (cfg, Some((path, (tensors, meta))))
        } else {
            (req.config.clone(), None)
        };
        config.validate().map_err(TrainError::Config)?;

        let (train_pairs, val_pairs) = hold_out(pairs, config.val_pairs);
        // Validation crops at the training crops' mean scale.
        let out = config.model.image_size;
        let (lo, hi) = config.crop_side_scale;
        let side = (out as f32 * (lo + hi) / 2.0).round() as usize;
        let val = val_pairs
            .iter()
            .map(|p| load_pair(p).and_then(|l: LoadedPair| center_crop(&l, side, out)))
            .collect::<Result<Vec<_>, _>>()?;

        let nets = Dtgan::new(&config.model, &device, config.seed)?;
        let mut opt_g = Adam::new(&nets.gen_vars, config.lr_g, config.beta1, config.beta2)?;
        let mut opt_d = Adam::new(&nets.critic_vars, config.lr_d, config.beta1, config.beta2)?;
        let state = match ckpt {
            None => TrainState {
                format: CHECKPOINT_FORMAT,
                step: 0,
                best: None,
                best_metric: None,
                elapsed_s: 0.0,
            },
            Some((path, contents)) => restore_checkpoint(
                &path,
                &contents,
                &[
                    ("", &nets.gen_vars),
                    ("", &nets.critic_vars),
                    ("sn.", &nets.buffers),
                ],
                &mut [("adam_g.", &mut opt_g), ("adam_d.", &mut opt_d)],
            )?,
        };

        let mut sampler = Sampler::new(train_pairs);
        if state.step == 0 {
            // Layer-sequential calibration of the generator's gains on a real batch (step 0's
            // draws, so it is reproducible).
            let mut rng = step_rng(config.seed, 0);
            let triples = (0..config.batch_size.max(4))
                .map(|_| sampler.sample(&config, &mut rng))
                .collect::<Result<Vec<_>, _>>()?;
            let (twin, _, mask) = batch_tensors(&triples, &device)?;
            nets.generator.calibrate(&twin, &mask)?;
        }
        let info = RunInfo {
            project: std::fs::canonicalize(&req.project).unwrap_or_else(|_| req.project.clone()),
            class: req.class.clone(),
            kind: RunKind::Dtgan,
            groups: Vec::new(),
            init_from: None,
            context: None,
            held_out: None,
        };
        prepare_run_files(&run, &config, &info, resuming.then_some(state.step))?;
        Ok(Self {
            config,
            nets,
            opt_g,
            opt_d,
            state,
            sampler,
            val,
            run,
        })
    }

    /// Training pairs and validation pairs.
    pub fn pair_counts(&self) -> (usize, usize) {
        (self.sampler.pairs().len(), self.val.len())
    }

    fn device(&self) -> &Device {
        &self.nets.device
    }

    fn batch(&mut self, rng: &mut ChaCha8Rng) -> Result<(Tensor, Tensor, Tensor), TrainError> {
        let triples = (0..self.config.batch_size)
            .map(|_| self.sampler.sample(&self.config, rng))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(batch_tensors(&triples, &self.nets.device)?)
    }

    fn check(&self, what: &'static str, value: f64) -> Result<f64, TrainError> {
        if value.is_finite() {
            Ok(value)
        } else {
            Err(TrainError::NonFinite {
                what,
                value,
                step: self.state.step + 1,
                last_good: self.run.last(),
            })
        }
    }

    /// One generator step, preceded by `n_critic` critic steps; advances `state.step`.
    pub fn step(&mut self) -> Result<StepLosses, TrainError> {
        let mut rng = step_rng(self.config.seed, self.state.step + 1);
        let n_critic = self.config.n_critic;
        let mut losses = StepLosses::default();
        let mut last_batch = None;
        for _ in 0..n_critic {
            let (twin, real, mask) = self.batch(&mut rng)?;
            let fake = self.nets.generator.forward(&twin, &mask, true)?.detach();
            let d_real = self.nets.critic.forward(&real, &mask, true)?;
            let d_fake = self.nets.critic.forward(&fake, &mask, true)?;
            let w = (d_real.mean_all()? - d_fake.mean_all()?)?;
            let drift = (d_real.sqr()?.mean_all()? * self.config.drift)?;
            let loss_d = (drift - &w)?;
            losses.loss_d += self.check("critic loss", scalar(&loss_d)?)? / n_critic as f64;
            losses.wasserstein += scalar(&w)? / n_critic as f64;
            self.opt_d.backward_step(&loss_d)?;
            last_batch = Some((twin, real, mask));
        }
        let Some((twin, real, mask)) = last_batch else {
            return Err(TrainError::Config("n_critic must be at least 1".into()));
        };
        let fake = self.nets.generator.forward(&twin, &mask, true)?;
        let gan = self
            .nets
            .critic
            .forward(&fake, &mask, true)?
            .mean_all()?
            .neg()?;
        let (l1_in, l1_out) = masked_l1(&fake, &real, &mask)?;
        let w = &self.config.loss;
        let loss_g = (((&gan * w.c_gan)? + (&l1_in * w.c1)?)? + (&l1_out * w.c2)?)?;
        losses.loss_g = self.check("generator loss", scalar(&loss_g)?)?;
        losses.l_gan = scalar(&gan)?;
        losses.l1_inside = scalar(&l1_in)?;
        losses.l1_outside = scalar(&l1_out)?;
        self.opt_g.backward_step(&loss_g)?;
        // The output clamp turns NaN into finite values, so a poisoned generator would not show
        // in its loss: check the weights themselves (cheap next to the convolutions).
        self.check("a generator weight", sum_of_squares(&self.nets.gen_vars)?)?;
        self.check("a critic weight", sum_of_squares(&self.nets.critic_vars)?)?;
        self.state.step += 1;
        Ok(losses)
    }

    /// The generator's output on the validation crops (inference mode), with the inputs.
    fn validation_outputs(&self) -> Result<Option<(Tensor, Tensor, Tensor, Tensor)>, TrainError> {
        if self.val.is_empty() {
            return Ok(None);
        }
        let (twin, real, mask) = batch_tensors(&self.val, self.device())?;
        let fake = self.nets.generator.forward(&twin, &mask, false)?;
        Ok(Some((twin, real, mask, fake)))
    }

    /// L1 inside the mask on the validation crops (lower is better).
    pub fn validate(&self) -> Result<Option<f64>, TrainError> {
        let Some((_, real, mask, fake)) = self.validation_outputs()? else {
            return Ok(None);
        };
        let (inside, _) = masked_l1(&fake, &real, &mask)?;
        Ok(Some(scalar(&inside)?))
    }

    /// Writes the sample grid of the current step and returns its path.
    pub fn write_sample(&self) -> Result<Option<PathBuf>, TrainError> {
        let Some((twin, real, mask, fake)) = self.validation_outputs()? else {
            return Ok(None);
        };
        let rows = self.val.len().min(MAX_GRID_ROWS);
        let s = self.config.model.image_size as u32;
        let gap = 2;
        let mut grid = RgbImage::from_pixel(
            4 * s + 3 * gap,
            rows as u32 * (s + gap) - gap,
            Rgb([40, 40, 40]),
        );
        let mask_rgb = (mask.repeat((1, 3, 1, 1))? * 2.0)?.affine(1.0, -1.0)?;
        for r in 0..rows {
            let twin_tile = tensor_image(&twin, r)?;
            let mut fake_tile = tensor_image(&fake, r)?;
            super::generate::gray_like(&mut fake_tile, &twin_tile);
            let tiles = [
                twin_tile,
                tensor_image(&mask_rgb, r)?,
                fake_tile,
                tensor_image(&real, r)?,
            ];
            for (c, tile) in tiles.iter().enumerate() {
                let (x, y) = (c as u32 * (s + gap), r as u32 * (s + gap));
                image::imageops::replace(&mut grid, tile, i64::from(x), i64::from(y));
            }
        }
        let path = self.run.sample(self.state.step);
        crate::imaging::io::save_png(&path, &DynamicImage::ImageRgb8(grid)).map_err(|e| {
            TrainError::Io {
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        Ok(Some(path))
    }

    /// Saves the checkpoint as `path`.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let parts = CheckpointParts::dtgan(
            &self.nets,
            &self.opt_g,
            &self.opt_d,
            &self.state,
            &self.config,
        );
        save_checkpoint(path, &parts)?;
        Ok(())
    }
}

/// Splits `items` into (training, validation): up to `want` validation items, evenly spread,
/// when a fifth of them can be spared; otherwise everything trains and the first `want` items
/// also validate.
pub fn hold_out<T: Clone>(items: Vec<T>, want: usize) -> (Vec<T>, Vec<T>) {
    let n_val = want.min(items.len() / 5);
    match items.len().checked_div(n_val) {
        None => {
            let val = items.iter().take(want).cloned().collect();
            (items, val)
        }
        Some(every) => {
            let (v, t): (Vec<_>, Vec<_>) = items
                .into_iter()
                .enumerate()
                .partition(|(i, _)| i % every == 0 && i / every < n_val);
            (
                t.into_iter().map(|(_, p)| p).collect(),
                v.into_iter().map(|(_, p)| p).collect(),
            )
        }
    }
}

/// Drops metrics lines after `step` (they belong to steps a resumed run will redo).
fn truncate_metrics(path: &Path, step: u64) -> Result<(), TrainError> {
    if !path.exists() {
        return Ok(());
    }
    let kept: Vec<String> = read_metrics(path)
        .map_err(io_err(path))?
        .into_iter()
        .filter(|m| m.step <= step)
        .filter_map(|m| serde_json::to_string(&m).ok())
        .collect();
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    crate::fsutil::write_atomic(path, text.as_bytes()).map_err(io_err(path))
}

fn append_metrics(path: &Path, m: &StepMetrics) -> Result<(), TrainError> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    let line = serde_json::to_string(m).unwrap_or_default();
    writeln!(f, "{line}").map_err(io_err(path))
}

/// How often a run logs, checkpoints and writes samples, and where it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Steps to train in all.
    pub steps: u64,
    /// Metrics every this many steps.
    pub log_every: u64,
    /// Checkpoint (and validation) every this many steps.
    pub checkpoint_every: u64,
    /// Sample grid every this many steps.
    pub sample_every: u64,
}

/// A GAN run in memory, as the shared training loop ([`drive`]) sees it: the DTGAN
/// [`Trainer`] and the inpainting trainer both implement it, so pause / resume / stop, time
/// limits, metrics, checkpoints (`last` and `best`) and sample grids work the same for both.
pub trait Session {
    /// Where the run stands.
    fn state(&self) -> &TrainState;
    /// Where the run stands, to update the elapsed time.
    fn state_mut(&mut self) -> &mut TrainState;
    /// Logging, checkpoint and sample intervals, and the step count.
    fn schedule(&self) -> Schedule;
    /// The run's files.
    fn run_dir(&self) -> &RunDir;
    /// Training and validation examples.
    fn counts(&self) -> (usize, usize);
    /// One generator step and the critic steps before it; advances `state().step`.
    fn step(&mut self) -> Result<StepLosses, TrainError>;
    /// The validation measures, when there is validation data.
    fn validate(&self) -> Result<Option<Validation>, TrainError>;
    /// Saves the whole run (weights, optimizers, state, configuration) as `path`.
    fn save(&self, path: &Path) -> Result<(), TrainError>;
    /// Writes the sample grid of the current step and returns its path.
    fn write_sample(&self) -> Result<Option<PathBuf>, TrainError>;

    /// Measures validation, saves `best` if its score improved, then `last`. Returns the
    /// measures.
    ///
    /// A best score of another measure (a run resumed after its validation changed, or saved
    /// before the box error existed) does not count: the first checkpoint scored the new way
    /// becomes `best`, and the old `best` is kept as `best-<measure>.safetensors`. When the
    /// validation fails, `last` is saved before the error is returned.
    fn checkpoint(&mut self) -> Result<Option<Validation>, TrainError> {
        let val = match self.validate() {
            Ok(v) => v,
            Err(e) => {
                // Keep the steps since the last checkpoint.
                self.save(&self.run_dir().last())?;
                return Err(e);
            }
        };
        if let Some(v) = val {
            let score = v.score();
            let state = self.state();
            let was = state.best_metric.as_deref().unwrap_or(Validation::L1);
            let same = was == v.metric();
            if score.is_finite() && (!same || state.best.is_none_or(|(b, _)| score < b)) {
                let best = self.run_dir().best();
                if !same && best.exists() {
                    // Chosen by another measure: kept beside the new one, not overwritten.
                    let kept = self.run_dir().root.join(format!("best-{was}.safetensors"));
                    std::fs::rename(&best, &kept).map_err(|source| TrainError::Io {
                        path: kept.clone(),
                        source,
                    })?;
                }
                let step = state.step;
                let state = self.state_mut();
                state.best = Some((score, step));
                state.best_metric = Some(v.metric().to_string());
                self.save(&best)?;
            }
        }
        self.save(&self.run_dir().last())?;
        Ok(val)
    }
}

/// What a checkpoint's validation measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Validation {
    /// Mean L1 inside the masks (DTGAN) or holes (inpainting) of the validation examples.
    pub l1_inside: f64,
    /// Inpainting runs on real templates: the hole pixel error of their defect images' boxes
    /// cut into them and filled as `inpaint apply` fills them.
    pub box_error: Option<f64>,
}

impl Validation {
    /// [`Validation::metric`] of the L1.
    pub const L1: &str = "l1_inside";
    /// [`Validation::metric`] of the box error.
    pub const BOX_ERROR: &str = "box_error";

    /// Only the L1.
    pub fn l1(l1_inside: f64) -> Self {
        Self {
            l1_inside,
            box_error: None,
        }
    }

    /// What `best` is chosen by (lower is better): the box error where there is one, because
    /// it ranks checkpoints as the error on unseen real pairs does and the L1 on a few random
    /// holes does not; else the L1.
    pub fn score(&self) -> f64 {
        self.box_error.unwrap_or(self.l1_inside)
    }

    /// The name of what [`Validation::score`] measures.
    pub fn metric(&self) -> &'static str {
        if self.box_error.is_some() {
            Self::BOX_ERROR
        } else {
            Self::L1
        }
    }
}

impl Session for Trainer {
    fn state(&self) -> &TrainState {
        &self.state
    }
    fn state_mut(&mut self) -> &mut TrainState {
        &mut self.state
    }
    fn schedule(&self) -> Schedule {
        Schedule {
            steps: self.config.steps,
            log_every: self.config.log_every,
            checkpoint_every: self.config.checkpoint_every,
            sample_every: self.config.sample_every,
        }
    }
    fn run_dir(&self) -> &RunDir {
        &self.run
    }
    fn counts(&self) -> (usize, usize) {
        self.pair_counts()
    }
    fn step(&mut self) -> Result<StepLosses, TrainError> {
        Trainer::step(self)
    }
    fn validate(&self) -> Result<Option<Validation>, TrainError> {
        Ok(Trainer::validate(self)?.map(Validation::l1))
    }
    fn save(&self, path: &Path) -> Result<(), TrainError> {
        Trainer::save(self, path)
    }
    fn write_sample(&self) -> Result<Option<PathBuf>, TrainError> {
        Trainer::write_sample(self)
    }
}

/// Checks a run folder before a run starts in it: `Ok(true)` when an existing run will be
/// resumed, `Ok(false)` for a new run; refuses to start over an existing run or to resume
/// nothing.
pub fn check_run_folder(run: &RunDir, resume: bool) -> Result<bool, TrainError> {
    let resuming = resume && run.last().exists();
    if resume && !resuming {
        return Err(TrainError::NothingToResume(run.root.clone()));
    }
    if !resuming && (run.last().exists() || run.metrics().exists()) {
        return Err(TrainError::RunExists(run.root.clone()));
    }
    Ok(resuming)
}

/// Writes `config.json` and `run.json`, makes the samples folder, and, when resuming from
/// `step`, drops the metrics lines of the steps that will be redone.
pub fn prepare_run_files(
    run: &RunDir,
    config: &impl serde::Serialize,
    info: &RunInfo,
    resumed_at: Option<u64>,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(run.samples()).map_err(io_err(&run.samples()))?;
    let cfg_json = serde_json::to_vec_pretty(config).unwrap_or_default();
    crate::fsutil::write_atomic(&run.config(), &cfg_json).map_err(io_err(&run.config()))?;
    let info_json = serde_json::to_vec_pretty(info).unwrap_or_default();
    crate::fsutil::write_atomic(&run.info(), &info_json).map_err(io_err(&run.info()))?;
    if let Some(step) = resumed_at {
        truncate_metrics(&run.metrics(), step)?;
    }
    Ok(())
}

/// Trains until the configured step count, the time limit, or a stop; reports events.
pub fn train(
    req: &TrainRequest,
    control: &TrainControl,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<TrainOutcome, TrainError> {
    let mut t = Trainer::open(req)?;
    drive(&mut t, req.max_minutes, control, on_event)
}

/// The training loop shared by every kind of run: steps until the schedule's step count, the
/// time limit (minutes of this session), or a stop; pauses between steps when asked; logs,
/// checkpoints and writes samples on schedule; reports events.
pub fn drive(
    t: &mut dyn Session,
    max_minutes: Option<f64>,
    control: &TrainControl,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<TrainOutcome, TrainError> {
    let plan = t.schedule();
    let (pairs, val_pairs) = t.counts();
    on_event(TrainEvent::Started {
        run: t.run_dir().root.clone(),
        step: t.state().step,
        steps: plan.steps,
        pairs,
        val_pairs,
    });
    if t.state().step == 0
        && let Some(path) = t.write_sample()?
    {
        on_event(TrainEvent::Sample { step: 0, path });
    }
    let session = Instant::now();
    let limit = max_minutes.map(|m| Duration::from_secs_f64(m.max(0.0) * 60.0));
    let mut sums = StepLosses::default();
    let mut count = 0u64;
    let mut interval = Instant::now();
    let mut reason = StopReason::Finished;
    while t.state().step < plan.steps {
        if control.is_paused() {
            on_event(TrainEvent::Paused {
                step: t.state().step,
            });
            let paused_at = Instant::now();
            while control.is_paused() {
                std::thread::sleep(Duration::from_millis(50));
            }
            interval += paused_at.elapsed();
            on_event(TrainEvent::Resumed {
                step: t.state().step,
            });
        }
        if control.is_stopped() {
            reason = StopReason::Stopped;
            break;
        }
        if limit.is_some_and(|l| session.elapsed() >= l) {
            reason = StopReason::TimeLimit;
            break;
        }
        let started = Instant::now();
        let losses = t.step()?;
        t.state_mut().elapsed_s += started.elapsed().as_secs_f64();
        sums.add(&losses);
        count += 1;
        let step = t.state().step;
        let val = if step.is_multiple_of(plan.checkpoint_every) {
            let v = t.checkpoint()?;
            on_event(TrainEvent::Checkpoint {
                step,
                path: t.run_dir().last(),
            });
            v
        } else {
            None
        };
        if step.is_multiple_of(plan.log_every) || val.is_some() {
            let n = count as f64;
            let m = StepMetrics {
                step,
                loss_g: sums.loss_g / n,
                loss_d: sums.loss_d / n,
                l_gan: sums.l_gan / n,
                l1_inside: sums.l1_inside / n,
                l1_outside: sums.l1_outside / n,
                wasserstein: sums.wasserstein / n,
                it_per_s: n / interval.elapsed().as_secs_f64().max(1e-9),
                elapsed_s: t.state().elapsed_s,
                val_l1_inside: val.map(|v| v.l1_inside),
                val_box_error: val.and_then(|v| v.box_error),
            };
            append_metrics(&t.run_dir().metrics(), &m)?;
            on_event(TrainEvent::Metrics(m));
            sums = StepLosses::default();
            count = 0;
            interval = Instant::now();
        }
        if step.is_multiple_of(plan.sample_every)
            && let Some(path) = t.write_sample()?
        {
            on_event(TrainEvent::Sample { step, path });
        }
    }
    let step = t.state().step;
    if !step.is_multiple_of(plan.checkpoint_every) || step == 0 {
        t.checkpoint()?;
        on_event(TrainEvent::Checkpoint {
            step,
            path: t.run_dir().last(),
        });
    }
    Ok(TrainOutcome {
        step,
        reason,
        last: t.run_dir().last(),
        best: t.state().best,
        best_metric: t.state().best_metric.clone(),
    })
}
