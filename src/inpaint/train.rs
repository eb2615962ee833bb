//! Training the inpainting GAN on defect-free images with random square holes.
//!
//! Runs through the DTGAN trainer's loop ([`crate::dtgan::train::drive`]): same run folder
//! layout, checkpoints that resume exactly, metrics lines (`l1_inside` is the refined output's
//! L1 in the hole, `val_l1_inside` the same on the validation crops), sample grids, pause /
//! resume / stop.
//!
//! Where the training images include real templates (DeepPCB), each checkpoint also fills the
//! boxes of their defect images cut into some of them (`val_box_error`,
//! [`InpaintTrainer::box_error`]), and `best` is the checkpoint with the lowest such error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use image::{DynamicImage, Rgb, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::apply::Filler;
use super::attention::flow_image;
use super::config::InpaintConfig;
use super::data::{
    Batch, Example, ImageSampler, Source, batch, check_sizes, collect_context, collect_images,
    keep_with_room,
};
use super::eval::{DEFAULT_MARGIN, Tally, box_hole, evenly_spread, gray};
use super::nets::{GENERATOR_PREFIX, InpaintGan, InpaintOutput, paste};
use crate::dtgan::adam::Adam;
use crate::dtgan::data::tensor_image;
use crate::dtgan::model::{
    CHECKPOINT_FORMAT, CheckpointParts, TrainState, matches_all, read_checkpoint,
    restore_checkpoint, restore_vars, restore_vars_where, save_checkpoint,
};
use crate::dtgan::run::{
    HeldOut, RunDir, RunInfo, RunKind, TrainControl, TrainEvent, TrainOutcome,
};
use crate::dtgan::train::{
    Schedule, Session, StepLosses, TrainError, Validation, check_run_folder, derive_seed, drive,
    hold_out, prepare_run_files,
};
use crate::imaging::io::load_rgb8;
use crate::imaging::rect::Rect;
use crate::nn::NnError;
use crate::nn::device::{DeviceChoice, select_device};
use crate::project::{Project, Role};

/// Most validation crops shown in a sample grid.
const MAX_GRID_ROWS: usize = 6;

/// What to train.
#[derive(Debug, Clone)]
pub struct InpaintTrainRequest {
    /// The project folder.
    pub project: PathBuf,
    /// Groups whose defect-free images to train on (empty: all).
    pub groups: Vec<String>,
    /// Groups whose real defect images to learn from too, away from their defects (`Some(empty)`:
    /// every group's; `None`: none). Their crops never touch a defect's box grown by
    /// [`CONTEXT_MARGIN`](super::data::CONTEXT_MARGIN), so what the twins will fill stays unseen.
    pub context: Option<Vec<String>>,
    /// The run folder (created).
    pub run: PathBuf,
    /// The configuration; when resuming, only `steps` is taken from here.
    pub config: InpaintConfig,
    /// Continue the run in `run` from its last checkpoint.
    pub resume: bool,
    /// Stop (with a checkpoint) after this many minutes of this session.
    pub max_minutes: Option<f64>,
    /// Where to compute.
    pub device: DeviceChoice,
    /// Start a new run from the networks of this checkpoint, or of this run folder's best
    /// checkpoint (else its last), instead of fresh weights: a warm start with its own configuration (batch size, learning
    /// rates, crop size). The generator must have the same width, channels and activation; the
    /// critics are taken too when their shapes match (same crop size), else start fresh. The
    /// optimiser state starts fresh.
    pub init_from: Option<PathBuf>,
}

/// Parses the inpainting configuration in a checkpoint's metadata.
pub fn inpaint_config(
    path: &Path,
    meta: &std::collections::HashMap<String, String>,
) -> Result<InpaintConfig, NnError> {
    let text = meta
        .get("config")
        .ok_or_else(|| NnError::CheckpointFormat {
            path: path.to_path_buf(),
            msg: "no configuration in the metadata".into(),
        })?;
    serde_json::from_str(text).map_err(|e| NnError::CheckpointFormat {
        path: path.to_path_buf(),
        msg: format!("not an inpainting checkpoint ({e})"),
    })
}

/// An inpainting run in memory.
pub struct InpaintTrainer {
    /// The configuration.
    pub config: InpaintConfig,
    /// The networks.
    pub gan: InpaintGan,
    opt_g: Adam,
    opt_d: Adam,
    /// Where the run stands.
    pub state: TrainState,
    sampler: ImageSampler,
    val: Vec<Example>,
    val_boxes: Vec<BoxCase>,
    run: RunDir,
}

/// A real template and the boxes of its defect image's regions (grown by [`DEFAULT_MARGIN`]):
/// for a DeepPCB import the holes `inpaint eval`'s template self-test cuts (from the regions
/// rather than `boxes/*.txt`). Read at each validation, not kept in memory.
struct BoxCase {
    /// The template's id.
    id: String,
    template: PathBuf,
    boxes: Vec<Rect>,
}

/// Up to `n` box cases, evenly spread over those of `images` that are real templates of defect
/// images with regions of the template's size; with `pinned` (a resumed run's templates, by
/// id) and as many asked for as it names, those of them still there instead.
fn box_cases(
    project: &Project,
    images: &[Source],
    n: usize,
    pinned: Option<&[String]>,
) -> Vec<BoxCase> {
    let manifest = &project.manifest;
    let all: Vec<BoxCase> = images
        .iter()
        .filter_map(|s| {
            let template = manifest
                .image(&s.id)
                .filter(|e| e.role == Role::Template && e.is_real_template())?;
            let defect = template
                .twin_of
                .as_deref()
                .and_then(|d| manifest.image(d))
                .filter(|d| !d.regions.is_empty())?;
            let (w, h) = (template.width, template.height);
            ((defect.width, defect.height) == (w, h)).then(|| BoxCase {
                id: s.id.clone(),
                template: s.path.clone(),
                boxes: defect
                    .regions
                    .iter()
                    .map(|r| r.bbox.grown_clipped(DEFAULT_MARGIN, w, h))
                    .collect(),
            })
        })
        .collect();
    match pinned {
        Some(ids) if n > 0 && ids.len() == n => {
            let mut by_id: BTreeMap<String, BoxCase> =
                all.into_iter().map(|c| (c.id.clone(), c)).collect();
            ids.iter().filter_map(|id| by_id.remove(id)).collect()
        }
        _ => evenly_spread(all, n),
    }
}

/// `images` split into training and validation images: the validation ones are `pinned` (a
/// resumed run's, by id, in their order; those no longer in the project dropped) or, without
/// it or when none of them is left, `want` of them evenly spread ([`hold_out`]).
fn held_out_images(
    images: Vec<Source>,
    want: usize,
    pinned: Option<&[String]>,
) -> (Vec<Source>, Vec<Source>) {
    let Some(ids) = pinned.filter(|ids| images.iter().any(|s| ids.contains(&s.id))) else {
        return hold_out(images, want);
    };
    let (mut val, train): (Vec<Source>, Vec<Source>) =
        images.into_iter().partition(|s| ids.contains(&s.id));
    val.sort_by_key(|s| ids.iter().position(|id| *id == s.id));
    (train, val)
}

fn scalar(t: &Tensor) -> candle_core::Result<f64> {
    t.to_dtype(DType::F64)?.to_scalar::<f64>()
}

/// Mean of `|a - b| * weight` over the pixels where `weight > 0` (and channels).
fn weighted_l1(
    a: &Tensor,
    b: &Tensor,
    weight: &Tensor,
    region: &Tensor,
) -> candle_core::Result<Tensor> {
    let c = a.dim(1)? as f64;
    let n = (region.sum_all()? * c)?.maximum(1.0)?;
    (a - b)?.abs()?.broadcast_mul(weight)?.sum_all()? / n
}

/// Inpainting losses of one stage's output: discounted L1 in the hole, L1 outside.
fn stage_losses(out: &Tensor, b: &Batch) -> candle_core::Result<(Tensor, Tensor)> {
    let outside = b.mask.ones_like()?.sub(&b.mask)?;
    let hole = weighted_l1(out, &b.image, &b.discount, &b.mask)?;
    let out_l1 = weighted_l1(out, &b.image, &outside, &outside)?;
    Ok((hole, out_l1))
}

impl InpaintTrainer {
    /// Prepares a new run, or reloads one to resume.
    pub fn open(req: &InpaintTrainRequest) -> Result<Self, TrainError> {
        if req.resume && req.init_from.is_some() {
            return Err(TrainError::Config(
                "a warm start (--init-from) begins a new run; it cannot resume one".into(),
            ));
        }
        let run = RunDir::new(&req.run);
        let resuming = check_run_folder(&run, req.resume)?;
        let device = select_device(req.device)?;
        let project = Project::open(&req.project)?;
        // A resumed run keeps its groups: given none, it takes them from run.json; given others,
        // it refuses (its data, validation split and curve would change).
        let mut groups = req.groups.clone();
        let mut context = req.context.clone();
        let mut init_from = None;
        let mut pinned: Option<HeldOut> = None;
        if resuming
            && let Ok(text) = std::fs::read_to_string(run.info())
            && let Ok(info) = serde_json::from_str::<RunInfo>(&text)
        {
            init_from = info.init_from;
            pinned = info.held_out;
            if groups.is_empty() {
                groups = info.groups;
            } else if groups != info.groups {
                return Err(TrainError::GroupMismatch {
                    run: run.root.clone(),
                    was: info.groups,
                    asked: groups,
                });
            }
            match (&context, info.context) {
                (None, was) => context = was,
                (Some(asked), was) if was.as_ref() != Some(asked) => {
                    return Err(TrainError::Config(format!(
                        "{}: the run learned from the defect images of {}; it cannot resume with {}",
                        run.root.display(),
                        describe_context(was.as_deref()),
                        describe_context(Some(asked))
                    )));
                }
                _ => {}
            }
        }
        let images =
            collect_images(&project, &groups).map_err(|e| TrainError::Config(e.to_string()))?;
        let (config, ckpt) = if resuming {
            let path = run.last();
            let contents = read_checkpoint(&path)?;
            let mut cfg = inpaint_config(&path, &contents.1)?;
            cfg.steps = req.config.steps;
            // How checkpoints are scored does not change the training: a resumed run takes it
            // from the request (`--val-box-pairs 0` turns it off for an older run).
            cfg.val_box_pairs = req.config.val_box_pairs;
            (cfg, Some((path, contents)))
        } else {
            (req.config.clone(), None)
        };
        config.validate().map_err(TrainError::Config)?;
        check_sizes(&images, config.model.image_size)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        // A resumed run validates on the images it validated on before, whatever the project
        // gained or lost since (runs from before these were recorded draw them again).
        let val_boxes = box_cases(
            &project,
            &images,
            config.val_box_pairs,
            pinned.as_ref().map(|p| &p.box_templates[..]),
        );
        let (mut train_imgs, val_imgs) = held_out_images(
            images,
            config.val_images,
            pinned.as_ref().map(|p| &p.images[..]),
        );
        let held_out = HeldOut {
            images: val_imgs.iter().map(|s| s.id.clone()).collect(),
            box_templates: val_boxes.iter().map(|c| c.id.clone()).collect(),
        };
        // Context images only train: the validation crops stay defect-free images, so the
        // validation curve means the same with or without them.
        if let Some(cg) = &context {
            let mut more =
                collect_context(&project, cg).map_err(|e| TrainError::Config(e.to_string()))?;
            check_sizes(&more, config.model.image_size)
                .map_err(|e| TrainError::Config(e.to_string()))?;
            let s = config.model.image_size as f32;
            let largest = (s * config.crop_side_scale.1).round() as u32;
            keep_with_room(&mut more, largest).map_err(|e| TrainError::Config(e.to_string()))?;
            if more.is_empty() {
                return Err(TrainError::Config(format!(
                    "no defect image of {} has room for a {largest} px crop between its defects",
                    describe_context(Some(cg))
                )));
            }
            train_imgs.extend(more);
        }
        // Fixed validation crops and holes, drawn from their own stream. The holes are placed
        // uniformly whatever `hole_draws` is, so that runs stay comparable.
        let mut val_sampler = ImageSampler::new(val_imgs);
        let mut vrng = ChaCha8Rng::seed_from_u64(derive_seed(config.seed, u64::MAX));
        let val_config = InpaintConfig {
            hole_draws: 1,
            ..config.clone()
        };
        let val = (0..config.val_images.max(1))
            .map(|_| val_sampler.sample(&val_config, &mut vrng))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TrainError::Config(e.to_string()))?;

        let gan = InpaintGan::new(&config.model, &device, config.seed)?;
        let mut opt_g = Adam::new(&gan.gen_vars, config.lr_g, config.beta1, config.beta2)?;
        let mut opt_d = Adam::new(&gan.critic_vars, config.lr_d, config.beta1, config.beta2)?;
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
                    ("", &gan.gen_vars),
                    ("", &gan.critic_vars),
                    ("sn.", &gan.buffers),
                ],
                &mut [("adam_g.", &mut opt_g), ("adam_d.", &mut opt_d)],
            )?,
        };
        let mut sampler = ImageSampler::new(train_imgs);
        let warm = match &req.init_from {
            Some(path) => Some(warm_start(&gan, path, &groups, context.as_deref())?),
            None => None,
        };
        if !resuming && warm.is_none() {
            let mut rng = step_rng(config.seed, 0);
            let examples = (0..config.batch_size.max(4))
                .map(|_| sampler.sample(&config, &mut rng))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TrainError::Config(e.to_string()))?;
            let b = batch(&examples, config.loss.gamma, &device)?;
            gan.net.calibrate(&b.image, &b.mask)?;
        }
        let info = RunInfo {
            project: std::fs::canonicalize(&req.project).unwrap_or_else(|_| req.project.clone()),
            class: String::new(),
            kind: RunKind::Inpaint,
            groups,
            init_from: warm.or(init_from),
            context,
            held_out: Some(held_out),
        };
        prepare_run_files(&run, &config, &info, resuming.then_some(state.step))?;
        Ok(Self {
            config,
            gan,
            opt_g,
            opt_d,
            state,
            sampler,
            val,
            val_boxes,
            run,
        })
    }

    fn device(&self) -> &Device {
        &self.gan.device
    }

    fn draw(&mut self, rng: &mut ChaCha8Rng) -> Result<Batch, TrainError> {
        let examples = (0..self.config.batch_size)
            .map(|_| self.sampler.sample(&self.config, rng))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TrainError::Config(e.to_string()))?;
        Ok(batch(&examples, self.config.loss.gamma, &self.gan.device)?)
    }

    fn corners(&self, b: &Batch) -> Vec<(usize, usize)> {
        let s = self.config.model.image_size;
        b.holes
            .iter()
            .map(|&h| self.gan.critic.local_corner(s, h))
            .collect()
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

    /// One generator step after `n_critic` critic steps.
    pub fn step(&mut self) -> Result<StepLosses, TrainError> {
        let mut rng = step_rng(self.config.seed, self.state.step + 1);
        let n_critic = self.config.n_critic;
        let mut losses = StepLosses::default();
        let mut last = None;
        for _ in 0..n_critic {
            let b = self.draw(&mut rng)?;
            let corners = self.corners(&b);
            let out = self.gan.net.forward(&b.image, &b.mask, true)?;
            let fake = out.completed(&b.image, &b.mask)?.detach();
            let d_real = self.gan.critic.forward(&b.image, &b.mask, &corners, true)?;
            let d_fake = self.gan.critic.forward(&fake, &b.mask, &corners, true)?;
            let w = (d_real.mean_all()? - d_fake.mean_all()?)?;
            let drift = (d_real.sqr()?.mean_all()? * self.config.drift)?;
            let loss_d = (drift - &w)?;
            losses.loss_d += self.check("critic loss", scalar(&loss_d)?)? / n_critic as f64;
            losses.wasserstein += scalar(&w)? / n_critic as f64;
            self.opt_d.backward_step(&loss_d)?;
            last = Some((b, corners));
        }
        let Some((b, corners)) = last else {
            return Err(TrainError::Config("n_critic must be at least 1".into()));
        };
        let out = self.gan.net.forward(&b.image, &b.mask, true)?;
        let completed = out.completed(&b.image, &b.mask)?;
        let gan = self
            .gan
            .critic
            .forward(&completed, &b.mask, &corners, true)?
            .mean_all()?
            .neg()?;
        let (hole1, out1) = stage_losses(&out.coarse, &b)?;
        let (hole2, out2) = stage_losses(&out.refined, &b)?;
        let w = self.config.loss;
        let loss_g =
            ((((hole1 + &hole2)? * w.hole)? + ((out1 + &out2)? * w.outside)?)? + (&gan * w.gan)?)?;
        losses.loss_g = self.check("generator loss", scalar(&loss_g)?)?;
        losses.l_gan = scalar(&gan)?;
        // Plain (undiscounted) L1 of the refined output in the hole, for the curves.
        let plain = weighted_l1(&out.refined, &b.image, &b.mask, &b.mask)?;
        losses.l1_inside = scalar(&plain)?;
        losses.l1_outside = scalar(&out2)?;
        self.opt_g.backward_step(&loss_g)?;
        self.state.step += 1;
        Ok(losses)
    }

    fn validation_outputs(&self) -> Result<Option<(Batch, InpaintOutput)>, TrainError> {
        if self.val.is_empty() {
            return Ok(None);
        }
        let b = batch(&self.val, self.config.loss.gamma, self.device())?;
        let out = self.gan.net.forward(&b.image, &b.mask, false)?;
        Ok(Some((b, out)))
    }

    /// Mean L1 in the holes of the validation crops (refined output), and the box error
    /// ([`InpaintTrainer::box_error`]) where there are box cases.
    pub fn validate(&self) -> Result<Option<Validation>, TrainError> {
        let Some((b, out)) = self.validation_outputs()? else {
            return Ok(None);
        };
        let l1 = weighted_l1(&out.refined, &b.image, &b.mask, &b.mask)?;
        Ok(Some(Validation {
            l1_inside: scalar(&l1)?,
            box_error: self.box_error()?,
        }))
    }

    /// The hole pixel error (binarised at 128, as `inpaint eval` counts it) of up to
    /// `val_box_pairs` real templates with their defect images' boxes (+ 4 px, as `inpaint
    /// eval` grows them) cut out and filled in the windows `inpaint apply` uses; `None` without
    /// such templates.
    ///
    /// Most of these templates are also trained on (with random square holes): held out, too
    /// few would be left to rank checkpoints. On DeepPCB, the eight held-out pairs' 62 boxes
    /// ranked ten checkpoints with a Spearman correlation of 0.45 against the unseen pairs'
    /// error, 64 trained-on pairs (the default) 0.78, and the validation L1 on eight random
    /// holes -0.3 (on five). See the README's *Choosing the checkpoint*.
    pub fn box_error(&self) -> Result<Option<f64>, TrainError> {
        if self.val_boxes.is_empty() {
            return Ok(None);
        }
        let filler = Filler {
            nets: vec![&self.gan.net],
            device: self.device(),
            side: self.config.model.image_size as u32,
            ensemble: false,
            peel: 0,
        };
        let mut tally = Tally::default();
        for c in &self.val_boxes {
            let template =
                load_rgb8(&c.template).map_err(|e| TrainError::Validation(e.to_string()))?;
            let (w, h) = template.dimensions();
            let hole = box_hole(w, h, &c.boxes);
            let filled = filler
                .fill(&template, &hole)
                .map_err(|e| TrainError::Validation(e.to_string()))?;
            tally.add(&gray(&filled), &gray(&template), &hole);
        }
        Ok(Some(tally.score().hole_pixel_error))
    }

    /// Writes a grid: input with hole | coarse | refined (completed) | attention flow | truth.
    pub fn write_sample(&self) -> Result<Option<PathBuf>, TrainError> {
        let Some((b, out)) = self.validation_outputs()? else {
            return Ok(None);
        };
        let rows = self.val.len().min(MAX_GRID_ROWS);
        let s = self.config.model.image_size as u32;
        let gap = 2;
        let cols = 5;
        let mut grid = RgbImage::from_pixel(
            cols * s + (cols - 1) * gap,
            rows as u32 * (s + gap) - gap,
            Rgb([40, 40, 40]),
        );
        // The hole in mid gray: visible on black and on white.
        let holed = paste(&b.mask.zeros_like()?, &b.image, &b.mask)?;
        let coarse = paste(&out.coarse, &b.image, &b.mask)?;
        let refined = out.completed(&b.image, &b.mask)?;
        let flows = flow_image(&out.attention, &out.feature_mask, 2, 8)?;
        for (r, flow) in flows.iter().enumerate().take(rows) {
            let flow = image::imageops::resize(flow, s, s, image::imageops::FilterType::Nearest);
            let tiles = [
                tensor_image(&holed, r)?,
                tensor_image(&coarse, r)?,
                tensor_image(&refined, r)?,
                flow,
                tensor_image(&b.image, r)?,
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
        let parts = CheckpointParts {
            vars: vec![
                ("", &self.gan.gen_vars),
                ("", &self.gan.critic_vars),
                ("sn.", &self.gan.buffers),
            ],
            opts: vec![("adam_g.", &self.opt_g), ("adam_d.", &self.opt_d)],
            state: &self.state,
            config: serde_json::to_string(&self.config).unwrap_or_default(),
        };
        save_checkpoint(path, &parts)?;
        Ok(())
    }

    /// Training and validation images.
    pub fn counts(&self) -> (usize, usize) {
        (self.sampler.images().len(), self.val.len())
    }

    /// Of the training images, the defect images learned from away from their defects.
    pub fn context_images(&self) -> usize {
        self.sampler
            .images()
            .iter()
            .filter(|s| !s.avoid.is_empty())
            .count()
    }
}

/// "group(s) A, B", "every group", or "no group", for context groups.
pub fn describe_context(context: Option<&[String]>) -> String {
    match context {
        None => "no group".into(),
        Some([]) => "every group".into(),
        Some(g) => format!("group(s) {}", g.join(", ")),
    }
}

/// Loads the networks of the checkpoint at `path` into `gan` for a warm start, and returns the
/// checkpoint's canonical path (recorded in `run.json`). The generator must match exactly; the
/// critics are loaded only when every one of their tensors matches, so that a new crop size
/// (whose critics' fully connected layers differ) starts them fresh instead of failing.
///
/// The source run's groups (from the `run.json` beside the checkpoint) must be among this run's
/// `groups` (empty: every group): otherwise `inpaint eval` would count images the model has
/// seen as unseen. Likewise the groups whose defect images it learned from must be among this
/// run's `context` groups.
fn warm_start(
    gan: &InpaintGan,
    path: &Path,
    groups: &[String],
    context: Option<&[String]>,
) -> Result<PathBuf, TrainError> {
    let path = crate::dtgan::generate::resolve_checkpoint(path)
        .map_err(|e| TrainError::Config(e.to_string()))?;
    let (tensors, meta) = read_checkpoint(&path)?;
    let source = inpaint_config(&path, &meta)?;
    let (a, b) = (&source.model, &gan.model);
    if (a.width, a.channels, a.activation) != (b.width, b.channels, b.activation) {
        return Err(TrainError::Config(format!(
            "{}: its generator (width {}, {} channels, {:?}) differs from this run's (width {}, {} channels, {:?})",
            path.display(),
            a.width,
            a.channels,
            a.activation,
            b.width,
            b.channels,
            b.activation
        )));
    }
    let info = path
        .parent()
        .map(|dir| RunDir::new(dir).info())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| serde_json::from_str::<RunInfo>(&text).ok());
    let Some(info) = info else {
        return Err(TrainError::Config(format!(
            "{}: no readable run.json beside it, so the groups it was trained on are unknown",
            path.display()
        )));
    };
    let context_left_out = match (info.context.as_deref(), context) {
        (None, _) | (_, Some([])) => false,
        (Some(_), None) | (Some([]), Some(_)) => true,
        (Some(was), Some(now)) => was.iter().any(|g| !now.contains(g)),
    };
    if context_left_out {
        return Err(TrainError::Config(format!(
            "{}: learned from the defect images of {}, which this run's context ({}) leaves out; \
             add them, or evaluation would count images it has seen as unseen",
            path.display(),
            describe_context(info.context.as_deref()),
            describe_context(context)
        )));
    }
    // Groups the source was trained on that this run leaves out (empty lists: every group).
    let left_out: Vec<String> = match (groups.is_empty(), info.groups.is_empty()) {
        (true, _) => Vec::new(),
        (false, true) => vec!["every group".into()],
        (false, false) => info
            .groups
            .into_iter()
            .filter(|g| !groups.contains(g))
            .collect(),
    };
    if !left_out.is_empty() {
        return Err(TrainError::Config(format!(
            "{}: trained on {left_out:?}, which this run (groups {groups:?}) leaves out; \
             train on those groups too, or evaluation would count images it has seen as unseen",
            path.display()
        )));
    }
    let bad = |msg: String| {
        TrainError::Nn(NnError::CheckpointFormat {
            path: path.clone(),
            msg,
        })
    };
    restore_vars(&gan.gen_vars, "", &tensors).map_err(bad)?;
    let is_generator = |name: &str| {
        name.strip_prefix(GENERATOR_PREFIX)
            .is_some_and(|rest| rest.starts_with('.'))
    };
    restore_vars_where(&gan.buffers, "sn.", &tensors, is_generator).map_err(bad)?;
    if matches_all(&gan.critic_vars, "", &tensors) && matches_all(&gan.buffers, "sn.", &tensors) {
        restore_vars(&gan.critic_vars, "", &tensors).map_err(bad)?;
        restore_vars_where(&gan.buffers, "sn.", &tensors, |n| !is_generator(n)).map_err(bad)?;
    }
    Ok(std::fs::canonicalize(&path).unwrap_or(path))
}

fn step_rng(seed: u64, step: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive_seed(seed ^ 0x001a_9a17, step))
}

impl Session for InpaintTrainer {
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
        InpaintTrainer::counts(self)
    }
    fn step(&mut self) -> Result<StepLosses, TrainError> {
        InpaintTrainer::step(self)
    }
    fn validate(&self) -> Result<Option<Validation>, TrainError> {
        InpaintTrainer::validate(self)
    }
    fn save(&self, path: &Path) -> Result<(), TrainError> {
        InpaintTrainer::save(self, path)
    }
    fn write_sample(&self) -> Result<Option<PathBuf>, TrainError> {
        InpaintTrainer::write_sample(self)
    }
}

/// Trains until the configured step count, the time limit, or a stop; reports events.
pub fn train_inpaint(
    req: &InpaintTrainRequest,
    control: &TrainControl,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<TrainOutcome, TrainError> {
    let mut t = InpaintTrainer::open(req)?;
    drive(&mut t, req.max_minutes, control, on_event)
}
