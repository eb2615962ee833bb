//! The minority-class recall experiment (the paper's Figure 9), built in.
//!
//! An N-class patch task with one minor class. The classifier's training data is the *target*
//! part of the training set (its groups minus the source groups), in which the minor class keeps
//! only K real patches; the test set is separate. Five training sets differ only in their
//! minor-class patches:
//!
//! | case | minor-class patches |
//! |---|---|
//! | a | none |
//! | b | the K real ones |
//! | c | S synthetic ones (default 40 K) |
//! | d | the K real + the S synthetic |
//! | e | the K real, oversampled with classical augmentation to S |
//!
//! The synthetic patches come from a DTGAN trained on the minor class in the *source* groups
//! (where it is plentiful), painting that defect at new places, with new masks (real source masks,
//! stamped with random flips, turns and scales), into defect-free images of the target groups.
//! Without source groups the DTGAN trains on the K real images alone (few-shot); their twins are
//! real templates where the data has them, otherwise a classical fill of their boxes
//! ([`super::fill`]). Each case trains and tests a classifier once per seed; the K real
//! patches, the synthetic and the augmented ones are drawn once (from the master seed) and shared
//! by every seed, which varies the classifier's weights, order and flips.
//!
//! Realism: a two-sample classifier test (C2ST) between real test patches of the minor class and
//! synthetic ones, and a KID on the penultimate features of the case (b) classifier (trained on
//! real data only).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use image::{GrayImage, RgbImage};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::classifier::{Classifier, ClassifierConfig, Example, PATCH, dihedral, guessing_loss};
use super::fill::fill_boxes;
use super::metrics::{Confusion, MeanSd, kid};
use super::patches::{GOOD, Patch, Selection, patch_around, project_patches};
use crate::dtgan::config::{Preset, TrainConfig};
use crate::dtgan::generate::{Composite, DefectGenerator, mask_bbox};
use crate::dtgan::masks::stamp_mask;
use crate::dtgan::run::{RunDir, TrainControl};
use crate::dtgan::train::{TrainRequest, derive_seed};
use crate::imaging::augment::{AugmentConfig, Triple, augment_seeded};
use crate::imaging::boxes::{box_rects_from_mask, connected_components};
use crate::imaging::clahe::luma;
use crate::imaging::io::{load_mask, load_rgb8, save_png};
use crate::imaging::rect::Rect;
use crate::nn::device::{DeviceChoice, select_device};
use crate::project::import::{ImportRequest, import, link_image};
use crate::project::{ImageEntry, Project, RelPath, Role, TwinStatus};

/// The five training sets.
pub const CASES: [(&str, &str); 5] = [
    ("a", "no minor-class images"),
    ("b", "K real"),
    ("c", "synthetic only"),
    ("d", "K real + synthetic"),
    ("e", "K real + classical augmentation"),
];

/// Sizes of the models and trainings of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// The preset this came from.
    pub preset: Preset,
    /// The defect classifier.
    pub classifier: ClassifierConfig,
    /// At most this many training patches per class (besides the minor class), drawn once.
    pub max_per_class: usize,
    /// The DTGAN's training configuration (its `steps` is the step budget).
    pub dtgan: TrainConfig,
    /// Which pixels of a generated tile the synthetic patches take.
    #[serde(default)]
    pub composite: Composite,
    /// Candidate places drawn per synthetic defect where real defects have real or inpainted
    /// twins to match; the best-matching are painted (see [`CANDIDATES_PER_DEFECT`]).
    #[serde(default = "default_candidates")]
    pub candidates: usize,
    /// Skip a synthetic defect that changes a two-level pattern's connected parts, or turns the
    /// pixels under its mask, otherwise than the real defect it copies did (see `Effect`;
    /// reports from before this field: false).
    #[serde(default)]
    pub same_effect: bool,
    /// Add, for every synthetic defect, the defect-free patch it was painted into to the
    /// `good` class of the cases that use synthetic defects (c and d): the classifier then sees
    /// each place with and without the defect, and cannot learn the places as the defect (on
    /// by default since 2026-11-29; reports from before this field: false).
    #[serde(default)]
    pub paired_negatives: bool,
    /// At most this many paired negatives, spread evenly over the synthetic defects (None: one
    /// per synthetic defect). Where the `good` class is small, as many defect-free patches as
    /// synthetic defects can outweigh it and cost the minor class recall.
    #[serde(default)]
    pub paired_negatives_max: Option<usize>,
}

fn default_candidates() -> usize {
    CANDIDATES_PER_DEFECT
}

impl EvalConfig {
    /// The configuration of a preset.
    pub fn preset(preset: Preset) -> Self {
        let mut dtgan = TrainConfig::preset(preset);
        let (classifier, max_per_class) = match preset {
            Preset::Tiny => {
                dtgan.steps = 4;
                dtgan.checkpoint_every = 2;
                dtgan.sample_every = 1000;
                (
                    ClassifierConfig {
                        width: 4,
                        epochs: 1,
                        batch_size: 16,
                        lr: 3e-3,
                        balanced: false,
                        tta: false,
                        max_pool: false,
                    },
                    20,
                )
            }
            Preset::Cpu => {
                dtgan.steps = 3000;
                (
                    ClassifierConfig {
                        width: 12,
                        epochs: 24,
                        batch_size: 32,
                        lr: 1e-2,
                        balanced: false,
                        tta: true,
                        max_pool: false,
                    },
                    300,
                )
            }
            Preset::Paper => (
                ClassifierConfig {
                    width: 32,
                    epochs: 30,
                    batch_size: 64,
                    lr: 1e-3,
                    balanced: false,
                    tta: true,
                    max_pool: false,
                },
                5000,
            ),
        };
        Self {
            preset,
            classifier,
            max_per_class,
            dtgan,
            composite: Composite::default(),
            candidates: CANDIDATES_PER_DEFECT,
            same_effect: true,
            paired_negatives: true,
            paired_negatives_max: None,
        }
    }
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// Training data: a project, or a folder in an import layout (imported into `out/data`).
    pub train: PathBuf,
    /// Test data (may be the same folder with other groups).
    pub test: PathBuf,
    /// Only these groups of the training data (all when empty).
    pub train_groups: Vec<String>,
    /// Only these groups of the test data (all when empty). When `test` is `train` and neither
    /// list is given, about 30 % of the groups are held out for testing (seeded).
    pub test_groups: Vec<String>,
    /// Training groups in which the minor class is plentiful: the DTGAN learns it there, and the
    /// classifier never sees them. Empty: few-shot (the DTGAN learns from the K real images).
    pub source_groups: Vec<String>,
    /// The minor class.
    pub minor: String,
    /// Real minor-class patches the classifier may see.
    pub k: usize,
    /// Synthetic (and augmented) minor-class patches; default 40 K.
    pub synthetic: Option<usize>,
    /// Classifier trainings per case.
    pub seeds: usize,
    /// Master seed.
    pub seed: u64,
    /// Model sizes.
    pub config: EvalConfig,
    /// Limit of the DTGAN training, in minutes (it stops with a checkpoint).
    pub max_minutes: Option<f64>,
    /// A trained DTGAN to use instead of training one: a checkpoint file, or a run folder (its
    /// best checkpoint, else its last).
    pub dtgan_run: Option<PathBuf>,
    /// The report folder.
    pub out: PathBuf,
    /// Where to compute.
    pub device: DeviceChoice,
}

/// What an evaluation reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalEvent {
    /// A stage started.
    Stage(String),
    /// Progress within the stage.
    Progress {
        /// Units done.
        done: usize,
        /// Units in all.
        total: usize,
    },
    /// One classifier was tested.
    CaseDone(SeedResult),
}

/// Why an evaluation failed. Each names the file, folder or setting concerned.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A setting is wrong.
    #[error("{0}")]
    Config(String),
    /// The data is missing something.
    #[error("{0}")]
    Data(String),
    /// A project could not be opened or made.
    #[error(transparent)]
    Project(#[from] crate::project::ProjectError),
    /// An import failed.
    #[error(transparent)]
    Import(#[from] crate::project::import::ImportError),
    /// Patches could not be cut.
    #[error(transparent)]
    Patches(#[from] super::patches::PatchError),
    /// An image could not be read or written.
    #[error(transparent)]
    Image(#[from] crate::imaging::io::ImagingError),
    /// The DTGAN could not be trained.
    #[error("training the DTGAN: {0}")]
    Train(#[from] crate::dtgan::train::TrainError),
    /// The DTGAN could not generate.
    #[error("generating with the DTGAN: {0}")]
    Generate(#[from] crate::dtgan::generate::GenerateError),
    /// A model failed.
    #[error(transparent)]
    Nn(#[from] crate::nn::NnError),
    /// A tensor operation failed.
    #[error("classifier: {0}")]
    Candle(#[from] candle_core::Error),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// One classifier's test result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    /// Case letter.
    pub case: String,
    /// Seed index.
    pub seed: usize,
    /// Minor-class recall.
    pub recall: f64,
    /// Minor-class precision with every test class weighted equally; `None` when the classifier
    /// never predicts the class.
    pub precision: Option<f64>,
    /// Accuracy with every test class weighted equally (mean per-class recall).
    pub accuracy: f64,
    /// Raw confusion matrix on the test set (rows: truth, columns: predicted).
    pub confusion: Confusion,
    /// The classifier's mean training loss over its last epoch (absent in reports from before
    /// 2026-11-29).
    #[serde(default)]
    pub train_loss: Option<f64>,
    /// The training loss of guessing by class frequency on the same training set
    /// ([`guessing_loss`]).
    #[serde(default)]
    pub guessing_loss: Option<f64>,
}

/// A classifier whose last epoch's training loss stays above this share of the loss of
/// guessing by class frequency learnt almost nothing: its training diverged.
pub const DID_NOT_LEARN: f64 = 0.8;

impl SeedResult {
    /// Whether this seed's classifier failed to learn its training set (see [`DID_NOT_LEARN`]).
    /// Its scores still count in the case's means; the report names it.
    pub fn did_not_learn(&self) -> bool {
        matches!((self.train_loss, self.guessing_loss), (Some(t), Some(g)) if t > DID_NOT_LEARN * g)
    }
}

/// One case over all seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// Letter.
    pub case: String,
    /// What it trains on.
    pub name: String,
    /// Minor-class training patches.
    pub minor_train: usize,
    /// Defect-free patches added to the `good` class: the patches under the synthetic defects
    /// (`--paired-negatives`; 0 otherwise and in reports from before it).
    #[serde(default)]
    pub negatives: usize,
    /// Minor-class recall.
    pub recall: MeanSd,
    /// Minor-class precision (over the seeds where it is defined; `n` says how many).
    pub precision: MeanSd,
    /// Class-balanced accuracy.
    pub accuracy: MeanSd,
    /// Every seed.
    pub per_seed: Vec<SeedResult>,
}

/// Realism of the synthetic minor-class patches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Realism {
    /// Accuracy of a classifier telling real test patches of the minor class from synthetic
    /// ones, on a held-out half (0.5 = indistinguishable), over the seeds.
    pub c2st_accuracy: MeanSd,
    /// Patches per side in the C2ST (half train, half test).
    pub c2st_patches: usize,
    /// KID between real test patches of the minor class and the synthetic ones, on the case (b)
    /// classifier's penultimate features, over the seeds.
    pub kid_synthetic: MeanSd,
    /// The same for the classically augmented patches (case e's), for comparison.
    pub kid_augmented: MeanSd,
    /// The same between the real test patches of the minor class and the real test patches of
    /// the other defect classes: what "a different defect" scores.
    pub kid_other_classes: MeanSd,
}

/// Where the data came from and how it was split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// Training data folder.
    pub train: PathBuf,
    /// Test data folder.
    pub test: PathBuf,
    /// Groups the classifier trains on.
    pub target_groups: Vec<String>,
    /// Groups the DTGAN learns the minor class from (empty: few-shot).
    pub source_groups: Vec<String>,
    /// Test groups.
    pub test_groups: Vec<String>,
    /// `transfer` (source groups) or `few-shot`.
    pub mode: String,
    /// How the DTGAN's defect-free twins were made.
    pub twins: String,
    /// Training patches per class (before the minor class is cut to K).
    pub train_counts: BTreeMap<String, usize>,
    /// Test patches per class.
    pub test_counts: BTreeMap<String, usize>,
    /// DTGAN training pairs.
    pub dtgan_pairs: usize,
    /// How the synthetic defects were placed.
    #[serde(default)]
    pub synthesis: SynthesisInfo,
}

/// How the synthetic defects were placed and painted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SynthesisInfo {
    /// Candidate places ranked by how well they match a real defect's surroundings (0: no
    /// twins to match, each attempt painted as drawn).
    pub candidates: usize,
    /// Defects painted, those skipped included.
    pub painted: usize,
    /// Defects skipped as fainter than half the real one (reports from before this field: 0).
    #[serde(default)]
    pub faint: usize,
    /// Defects skipped because they changed the pattern's parts otherwise than the real defect
    /// did (`--same-effect`; reports from before this field: 0).
    #[serde(default)]
    pub other_effect: usize,
    /// Skipped defects (faint or with another effect) that were used all the same, because
    /// too few good ones could be made (a barely trained generator).
    pub faint_used: usize,
    /// The largest mismatch among the places used (fraction of full scale; `None` without
    /// matching).
    pub worst_match: Option<f64>,
}

/// Seconds spent per stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Loading and cutting patches.
    pub data_s: f64,
    /// Training the DTGAN.
    pub dtgan_s: f64,
    /// Generating and augmenting.
    pub synthesis_s: f64,
    /// Training and testing classifiers.
    pub classifiers_s: f64,
    /// The realism scores.
    pub realism_s: f64,
    /// Everything.
    pub total_s: f64,
}

/// Everything `results.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResults {
    /// The minor class.
    pub minor: String,
    /// Every class, in label order.
    pub classes: Vec<String>,
    /// Real minor-class training patches.
    pub k: usize,
    /// Synthetic (and augmented) patches.
    pub synthetic: usize,
    /// Seeds per case.
    pub seeds: usize,
    /// Master seed.
    pub seed: u64,
    /// Sizes.
    pub config: EvalConfig,
    /// Data.
    pub data: DataInfo,
    /// The DTGAN checkpoint used.
    pub dtgan_run: PathBuf,
    /// Its steps.
    pub dtgan_steps: u64,
    /// The five cases.
    pub cases: Vec<CaseResult>,
    /// Realism.
    pub realism: Realism,
    /// Time.
    pub timing: Timing,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EvalError + '_ {
    move |source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens `dir` as a project, or imports it (import layout) into `cache` (reused when there).
pub fn open_data(dir: &Path, cache: &Path) -> Result<Project, EvalError> {
    if dir.join(crate::project::MANIFEST_FILE).is_file() {
        return Ok(Project::open(dir)?);
    }
    let detected = crate::project::detect::detect_layout(dir).ok_or_else(|| {
        EvalError::Data(format!(
            "{}: neither a project (no {}) nor a folder in an import layout (good/, defect/ or \
             pairs/ + boxes/)",
            dir.display(),
            crate::project::MANIFEST_FILE
        ))
    })?;
    if cache.join(crate::project::MANIFEST_FILE).is_file() {
        return Ok(Project::open(cache)?);
    }
    let mut project = Project::open_or_create(cache)?;
    let req = ImportRequest {
        layout: detected.layout,
        from: dir.to_path_buf(),
        masks: detected.masks,
        group: None,
    };
    import(&mut project, &req, &|_, _| {})?;
    Ok(project)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// About `fraction` of the groups, chosen with `seed`, such that every class keeps images on
/// both sides where it has at least two groups.
pub fn split_groups(patches: &[Patch], fraction: f64, seed: u64) -> BTreeSet<String> {
    let mut groups: Vec<String> = patches
        .iter()
        .map(|p| p.group.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    groups.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut count: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut total: BTreeMap<&str, usize> = BTreeMap::new();
    for p in patches {
        *count
            .entry((p.class.as_str(), p.group.as_str()))
            .or_default() += 1;
        *total.entry(p.class.as_str()).or_default() += 1;
    }
    let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
    let mut test = BTreeSet::new();
    for g in &groups {
        let classes: Vec<(&str, usize)> = total
            .keys()
            .filter_map(|c| count.get(&(*c, g.as_str())).map(|n| (*c, *n)))
            .collect();
        let helps = classes
            .iter()
            .any(|(c, _)| (taken.get(c).copied().unwrap_or(0) as f64) < fraction * total[c] as f64);
        let leaves_some = classes
            .iter()
            .all(|(c, n)| taken.get(c).copied().unwrap_or(0) + n < total[c]);
        if helps && leaves_some {
            for (c, n) in classes {
                *taken.entry(c).or_default() += n;
            }
            test.insert(g.clone());
        }
    }
    test
}

fn counts(patches: &[Patch]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in patches {
        *m.entry(p.class.clone()).or_default() += 1;
    }
    m
}

fn check_cancel(control: &TrainControl) -> Result<(), EvalError> {
    if control.is_stopped() {
        Err(EvalError::Cancelled)
    } else {
        Ok(())
    }
}

fn rgb_of(gray: &GrayImage) -> RgbImage {
    image::DynamicImage::ImageLuma8(gray.clone()).to_rgb8()
}

/// Writes a project holding the DTGAN's training pairs: the images `ids` of `src` that show
/// `minor`, with their masks and twins (real or accepted twins; otherwise boxes filled by
/// [`fill_boxes`], recorded as accepted). Returns how the twins were made.
fn dtgan_project(
    src: &Project,
    ids: &BTreeSet<String>,
    minor: &str,
    dst: &Path,
) -> Result<(usize, String), EvalError> {
    if dst.exists() {
        std::fs::remove_dir_all(dst).map_err(io_err(dst))?;
    }
    let mut project = Project::open_or_create(dst)?;
    let by_id: BTreeMap<&str, &ImageEntry> = src
        .manifest
        .images
        .iter()
        .map(|e| (e.id.as_str(), e))
        .collect();
    let (mut real, mut inpainted, mut filled, mut pairs) = (0, 0, 0, 0);
    let link = |project: &Project, rel: &RelPath, dir: &str| -> Result<RelPath, EvalError> {
        let path = src.abs(rel);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image.png".into());
        link_image(project, &path, dir, &name).map_err(|s| EvalError::Data(s.reason))
    };
    for id in ids {
        let Some(e) = by_id.get(id.as_str()) else {
            continue;
        };
        if e.role != Role::Defect || !e.classes().contains(minor) {
            continue;
        }
        let Some(mask) = &e.mask else { continue };
        let n = pairs;
        let dir = format!("p{n:05}");
        let mut entry = (*e).clone();
        entry.path = link(&project, &e.path, &dir)?;
        entry.mask = Some(link(&project, mask, &format!("{dir}/mask"))?);
        entry.box_mask = None;
        let twin_id = format!("{}~twin", e.id);
        let usable = e
            .twin
            .as_deref()
            .and_then(|t| by_id.get(t))
            .filter(|t| t.twin_trains());
        let mut twin = match usable {
            Some(t) => {
                if t.is_real_template() {
                    real += 1;
                } else {
                    inpainted += 1;
                }
                let mut twin = (*t).clone();
                twin.path = link(&project, &t.path, &format!("{dir}/twin"))?;
                twin
            }
            None => {
                filled += 1;
                let image = load_rgb8(&src.abs(&e.path))?;
                let m = load_mask(&src.abs(mask))?;
                let rects = box_rects_from_mask(&m, src.manifest.box_margin);
                let rel = RelPath::new(format!("{dir}/twin.png"))
                    .map_err(|err| EvalError::Data(err.to_string()))?;
                let path = project.ensure_parent(&rel)?;
                save_png(
                    &path,
                    &image::DynamicImage::ImageRgb8(fill_boxes(&image, &rects)),
                )?;
                let mut twin =
                    ImageEntry::new(twin_id.clone(), rel, Role::Template, e.group.clone());
                twin.width = e.width;
                twin.height = e.height;
                twin.twin_status = Some(TwinStatus::Accepted);
                twin
            }
        };
        twin.id = twin_id.clone();
        twin.twin_of = Some(entry.id.clone());
        twin.twin = None;
        twin.mask = None;
        twin.box_mask = None;
        entry.twin = Some(twin_id);
        project.manifest.images.push(entry);
        project.manifest.images.push(twin);
        pairs += 1;
    }
    project.save()?;
    Ok((pairs, twin_description(real, inpainted, filled)))
}

/// How the DTGAN's defect-free twins were made, for the report.
fn twin_description(real: usize, inpainted: usize, filled: usize) -> String {
    if real + inpainted == 0 {
        return "the data has no defect-free twins: boxes filled by straight-line blending \
                from their borders (no inpainting model)"
            .into();
    }
    [
        (real, "real defect-free templates"),
        (inpainted, "inpainted twins accepted in seam QA"),
        (filled, "boxes filled by straight-line blending"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect::<Vec<_>>()
    .join(", ")
}

/// A real defect's mask, cut to its region's box, and (where it has a defect-free twin) the
/// pattern it was painted on.
struct MaskCut {
    mask: GrayImage,
    context: Option<Context>,
}

/// Pixels of defect-free surroundings kept on each side of a real defect's box.
const CONTEXT_MARGIN: u32 = 8;

/// The defect-free pattern around a real defect: its twin cut to the defect's box plus
/// [`CONTEXT_MARGIN`] (an open: the trace it cuts and the background on both sides), the
/// defect's mask in the same frame, and how much the defect changed the pixels under it.
struct Context {
    grey: GrayImage,
    mask: GrayImage,
    /// Mean absolute grey difference between the defect image and its twin under the mask.
    change: f64,
    /// What the defect did to the pattern's connected parts, where the pattern is two-level.
    effect: Option<Effect>,
}

impl Context {
    /// The context of the region `r` of `mask` (whose pixels outside `r` are left out) on `twin`,
    /// of the defect image `defect`.
    fn cut(twin: &GrayImage, defect: &GrayImage, mask: &GrayImage, r: Rect) -> Option<Self> {
        if twin.dimensions() != mask.dimensions() || defect.dimensions() != mask.dimensions() {
            return None;
        }
        let (x0, y0) = (
            r.x.saturating_sub(CONTEXT_MARGIN),
            r.y.saturating_sub(CONTEXT_MARGIN),
        );
        let x1 = (r.x + r.w + CONTEXT_MARGIN).min(twin.width());
        let y1 = (r.y + r.h + CONTEXT_MARGIN).min(twin.height());
        let crop =
            |img: &GrayImage| image::imageops::crop_imm(img, x0, y0, x1 - x0, y1 - y0).to_image();
        let grey = crop(twin);
        let mut frame = GrayImage::new(x1 - x0, y1 - y0);
        let region = image::imageops::crop_imm(mask, r.x, r.y, r.w, r.h).to_image();
        image::imageops::overlay(&mut frame, &region, (r.x - x0) as i64, (r.y - y0) as i64);
        let defect = crop(defect);
        let change = mean_change(&defect, &grey, &frame)?;
        let effect = effect(&grey, &defect, &frame);
        Some(Self {
            grey,
            mask: frame,
            change,
            effect,
        })
    }
}

/// How a defect changed a two-level pattern (copper and substrate, say) around it: the change in
/// the number of bright parts and of dark parts (8-connected, at least [`MIN_PART`] pixels,
/// split at grey 128) in its mask's box plus [`CONTEXT_MARGIN`], and which way the pixels under
/// its mask turned. An open that cuts a trace adds a dark or a bright part (whichever the copper
/// is), a short joins two, a spur or a bite changes neither; a spur adds copper and a bite
/// takes it away, so they turn pixels opposite ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Effect {
    bright: i64,
    dark: i64,
    /// 1 when clearly more pixels under the mask turned bright than dark, -1 for the reverse,
    /// 0 otherwise (the two counts within [`MIN_PART`] of each other).
    turned: i8,
}

/// Parts smaller than this are not counted by [`Effect`]: specks of misalignment between a
/// defect image and its template, or of the generator's noise.
const MIN_PART: u64 = 8;

/// Share of a pattern's pixels that must lie within 48 grey levels of black or white for it to
/// count as two-level (printed circuits do; textures such as magnetic tiles do not).
const TWO_LEVEL_SHARE: f64 = 0.85;

/// [`Effect`] of the change from `before` to `after` (both the size of `mask`); `None` when
/// the mask is empty or `before` is not a two-level pattern there.
fn effect(before: &GrayImage, after: &GrayImage, mask: &GrayImage) -> Option<Effect> {
    let b = mask_bbox(mask)?;
    let (w, h) = mask.dimensions();
    let r = b.grown_clipped(CONTEXT_MARGIN, w, h);
    let crop = |img: &GrayImage| image::imageops::crop_imm(img, r.x, r.y, r.w, r.h).to_image();
    let (before, after) = (crop(before), crop(after));
    let extreme = before
        .as_raw()
        .iter()
        .filter(|&&v| !(48..=207).contains(&v))
        .count();
    if (extreme as f64) < TWO_LEVEL_SHARE * before.as_raw().len() as f64 {
        return None;
    }
    let parts = |img: &GrayImage| {
        let count = |g: &GrayImage| {
            connected_components(g)
                .iter()
                .filter(|c| c.area >= MIN_PART)
                .count() as i64
        };
        let mut dark = img.clone();
        image::imageops::invert(&mut dark);
        (count(img), count(&dark))
    };
    let ((b0, d0), (b1, d1)) = (parts(&before), parts(&after));
    let (mut to_bright, mut to_dark) = (0i64, 0i64);
    for ((&p, &q), &m) in before
        .as_raw()
        .iter()
        .zip(after.as_raw())
        .zip(crop(mask).as_raw())
    {
        if m >= 128 {
            match (p >= 128, q >= 128) {
                (false, true) => to_bright += 1,
                (true, false) => to_dark += 1,
                _ => {}
            }
        }
    }
    let margin = MIN_PART as i64;
    let turned = if to_bright > to_dark + margin {
        1
    } else if to_dark > to_bright + margin {
        -1
    } else {
        0
    };
    Some(Effect {
        bright: b1 - b0,
        dark: d1 - d0,
        turned,
    })
}

/// Mean absolute difference of `a` and `b` (same size as `mask`) over the pixels under `mask`;
/// `None` when the mask is empty.
fn mean_change(a: &GrayImage, b: &GrayImage, mask: &GrayImage) -> Option<f64> {
    let (sum, n) = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .zip(mask.as_raw())
        .filter(|(_, m)| **m >= 128)
        .fold((0u64, 0u64), |(s, n), ((&p, &q), _)| {
            (s + p.abs_diff(q) as u64, n + 1)
        });
    (n > 0).then(|| sum as f64 / n as f64)
}

/// A synthetic defect must change the pixels under its mask at least this fraction as much as
/// the real defect whose mask it took changed them; a fainter one (an open that leaves most of
/// the copper it should cut) is skipped.
const MIN_CHANGE_RATIO: f64 = 0.5;

/// Weight of a pixel under the defect's mask in [`matched_placement`]'s score, against 1 for a
/// pixel of its surroundings: what the defect is painted on matters most (an open needs copper
/// under it), the surroundings decide among places that give it that.
const UNDER_MASK_WEIGHT: u64 = 4;

/// A context pixel's weight in [`matched_placement`]'s score, from its mask value.
fn placement_weight(mask: u8) -> u64 {
    if mask >= 128 { UNDER_MASK_WEIGHT } else { 1 }
}

/// Where in `window` the defect of `ctx` fits best: of the eight flips and quarter turns of the
/// context and every place at least `margin` from the window's edges (searched on a 2-pixel
/// grid, the best then refined to the pixel), the one whose defect-free pattern differs least
/// from the window's (absolute grey differences, those under the mask weighted by
/// [`UNDER_MASK_WEIGHT`]); the defect's mask placed there, window-sized, and its mismatch: that
/// weighted mean difference as a fraction of 255 (0: the same pattern). `None` when the context
/// does not fit.
fn matched_placement(window: &GrayImage, ctx: &Context, margin: u32) -> Option<(GrayImage, f64)> {
    let (w, h) = window.dimensions();
    // (score, turn, x, y) of the best place so far.
    let mut best: Option<(u64, u8, u32, u32)> = None;
    for k in 0..8u8 {
        let grid = (margin..h)
            .step_by(2)
            .flat_map(|y| (margin..w).step_by(2).map(move |x| (x, y)));
        search_places(window, ctx, k, margin, grid, &mut best);
    }
    let (_, k, x, y) = best?;
    let around = (-1..=1)
        .flat_map(|dy| (-1..=1).map(move |dx| (dx, dy)))
        .filter_map(|(dx, dy)| Some((x.checked_add_signed(dx)?, y.checked_add_signed(dy)?)));
    search_places(window, ctx, k, margin, around, &mut best);
    let (score, k, x, y) = best?;
    let mut mask = GrayImage::new(w, h);
    image::imageops::overlay(&mut mask, &dihedral(&ctx.mask, k), x as i64, y as i64);
    let weights: u64 = ctx.mask.as_raw().iter().map(|&m| placement_weight(m)).sum();
    Some((mask, score as f64 / (weights.max(1) * 255) as f64))
}

/// [`matched_placement`]'s search of `places` (top-left corners) for turn `k` of the context,
/// keeping the best in `best`; places closer than `margin` to the window's edges are skipped.
fn search_places(
    window: &GrayImage,
    ctx: &Context,
    k: u8,
    margin: u32,
    places: impl Iterator<Item = (u32, u32)>,
    best: &mut Option<(u64, u8, u32, u32)>,
) {
    let (w, h) = window.dimensions();
    let grey = dihedral(&ctx.grey, k);
    let (cw, ch) = grey.dimensions();
    let weight: Vec<u64> = dihedral(&ctx.mask, k)
        .as_raw()
        .iter()
        .map(|&m| placement_weight(m))
        .collect();
    for (x, y) in places {
        if x < margin || y < margin || x + cw + margin > w || y + ch + margin > h {
            continue;
        }
        let bound = best.map_or(u64::MAX, |b| b.0);
        let mut score = 0u64;
        for j in 0..ch {
            let row = &window.as_raw()[((y + j) * w + x) as usize..][..cw as usize];
            let at = (j * cw) as usize..((j + 1) * cw) as usize;
            score += row
                .iter()
                .zip(&grey.as_raw()[at.clone()])
                .zip(&weight[at])
                .map(|((&a, &b), &wt)| a.abs_diff(b) as u64 * wt)
                .sum::<u64>();
            if score >= bound {
                break;
            }
        }
        if score < bound {
            *best = Some((score, k, x, y));
        }
    }
}

/// Whether a twin shows the defect-free pattern as it is: a real template, or an inpainted twin
/// (not a box filled by [`fill_boxes`]).
fn shows_real_pattern(twin: &ImageEntry) -> bool {
    twin.is_real_template() || twin.inpaint.is_some()
}

/// The minor class's defect masks in `project`, each cut to one region's box; those with a twin
/// that [`shows_real_pattern`] carry its context.
fn minor_mask_cuts(project: &Project, minor: &str) -> Result<Vec<MaskCut>, EvalError> {
    let by_id: BTreeMap<&str, &ImageEntry> = project
        .manifest
        .images
        .iter()
        .map(|e| (e.id.as_str(), e))
        .collect();
    let mut cuts = Vec::new();
    for e in &project.manifest.images {
        if e.role != Role::Defect {
            continue;
        }
        let Some(mask) = &e.mask else { continue };
        let regions: Vec<Rect> = e
            .regions
            .iter()
            .filter(|r| r.class == minor)
            .map(|r| r.bbox)
            .collect();
        if regions.is_empty() {
            continue;
        }
        let m = load_mask(&project.abs(mask))?;
        // Only a twin that shows the real pattern (a template, or an inpainted twin accepted in
        // seam QA) says where such a defect belongs. A box filled by blending is smooth where the
        // defect was, and matching places against it steers defects onto smooth ground (few-shot
        // tile cracks: recall 0.35 -> 0.02 with the same DTGAN, README).
        let twin = match e
            .twin
            .as_deref()
            .and_then(|t| by_id.get(t))
            .filter(|t| shows_real_pattern(t))
        {
            Some(t) => Some((
                crate::imaging::io::load_gray8(&project.abs(&t.path))?,
                crate::imaging::io::load_gray8(&project.abs(&e.path))?,
            )),
            None => None,
        };
        for r in regions {
            let r = r.clipped(m.width(), m.height());
            if r.is_empty() {
                continue;
            }
            let cut = image::imageops::crop_imm(&m, r.x, r.y, r.w, r.h).to_image();
            if mask_bbox(&cut).is_some() {
                let context = twin.as_ref().and_then(|(t, d)| Context::cut(t, d, &m, r));
                cuts.push(MaskCut { mask: cut, context });
            }
        }
    }
    Ok(cuts)
}

/// A defect-free image of the target to paint into, with places defects are found on it.
struct Canvas {
    path: PathBuf,
    places: Vec<Rect>,
}

fn canvases(project: &Project, target: &Selection) -> Vec<Canvas> {
    let m = &project.manifest;
    let by_id: BTreeMap<&str, &ImageEntry> = m.images.iter().map(|e| (e.id.as_str(), e)).collect();
    m.images
        .iter()
        .filter(|e| {
            e.synthetic.is_none()
                && e.is_real_template()
                && matches!(e.role, Role::Good | Role::Template)
                && target.groups.as_ref().is_none_or(|g| g.contains(&e.group))
        })
        .map(|e| Canvas {
            path: project.abs(&e.path),
            places: e
                .twin_of
                .as_deref()
                .and_then(|d| by_id.get(d))
                .map(|d| d.regions.iter().map(|r| r.bbox).collect())
                .unwrap_or_default(),
        })
        .collect()
}

/// Windows searched by [`matched_placement`] per synthetic defect.
const WINDOW_TRIES: usize = 16;

/// Candidate placements drawn per synthetic defect where real defects have twins to match, by
/// default (`evaluate --candidates`): the best-matching twelfth are painted. A poor place makes
/// a defect that looks like another class (an open in a pad is a pin-hole, one across a
/// trace's edge a mousebite, one on the background no defect at all); an absolute limit on the
/// mismatch fits one class and starves another (0.08 of full scale let one DeepPCB open
/// placement in six through, but one short in forty), so the places are ranked instead. On
/// DeepPCB, 12 gave opens and shorts more precision than 6 at about the same recall (README).
const CANDIDATES_PER_DEFECT: usize = 12;

/// Where one synthetic defect goes: a window of a target image and the mask in it, and how it
/// was matched to the real defect's context (where there was one).
struct Placement {
    window: RgbImage,
    mask: GrayImage,
    matched: Option<Matched>,
}

/// A placement matched to a real defect's context.
#[derive(Debug, Clone, Copy)]
struct Matched {
    /// How much the place differs from the context (fraction of full scale).
    mismatch: f64,
    /// How much the real defect changed the pixels under its mask ([`Context::change`]).
    change: f64,
    /// What the real defect did to the pattern's parts ([`Context::effect`]).
    effect: Option<Effect>,
}

/// What became of a painted defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Used.
    Kept,
    /// Changed its pixels less than [`MIN_CHANGE_RATIO`] as much as the real defect did.
    Faint,
    /// Changed the pattern's parts otherwise than the real defect did ([`Effect`]): a short
    /// that does not reach the second trace is a spur, an open that leaves a bridge a bite.
    OtherEffect,
}

/// Places one synthetic defect (drawn with `seed`) in `canvas`; `None` when it does not fit.
fn place(canvas: &Canvas, cuts: &[MaskCut], seed: u64) -> Result<Option<Placement>, EvalError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let image = load_rgb8(&canvas.path)?;
    let (w, h) = image.dimensions();
    let Some(MaskCut { mask: cut, context }) = cuts.choose(&mut rng) else {
        return Ok(None);
    };
    let long = cut.width().max(cut.height());
    let side = (long * 2 + 16).max(128).div_ceil(4) * 4;
    let side = side.min(w.min(h) / 4 * 4);
    if side < 8 {
        return Ok(None);
    }
    let window_at = |rng: &mut ChaCha8Rng| {
        let (cx, cy) = match canvas.places.choose(rng) {
            Some(r) => (
                (r.x + r.w / 2) as i64 + rng.random_range(-8..=8),
                (r.y + r.h / 2) as i64 + rng.random_range(-8..=8),
            ),
            None => (rng.random_range(0..w) as i64, rng.random_range(0..h) as i64),
        };
        let x = (cx - side as i64 / 2).clamp(0, (w - side) as i64) as u32;
        let y = (cy - side as i64 / 2).clamp(0, (h - side) as i64) as u32;
        image::imageops::crop_imm(&image, x, y, side, side).to_image()
    };
    // Where the real defect's defect-free surroundings are known, the defect goes where a
    // window's pattern looks most like them (an open across a trace as wide and as turned as
    // the one it cut, not into a pad or onto the background), the best of [`WINDOW_TRIES`]
    // windows; otherwise at a random place, flip, turn and scale in one window's central half,
    // or anywhere in it if it does not fit there. (The matched path draws this first window
    // too and does not use it: the draw keeps each seed's places as they were measured.)
    let window = window_at(&mut rng);
    if let Some(ctx) = context {
        let windows: Vec<RgbImage> = (0..WINDOW_TRIES).map(|_| window_at(&mut rng)).collect();
        let placed: Vec<_> = windows
            .par_iter()
            .map(|c| matched_placement(&luma(c), ctx, side / 8))
            .collect();
        // The first of equally good windows, whatever the threads' order.
        let best = placed
            .into_iter()
            .zip(windows)
            .filter_map(|(p, c)| p.map(|(m, mismatch)| (mismatch, m, c)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        return Ok(best.map(|(mismatch, mask, window)| Placement {
            window,
            mask,
            matched: Some(Matched {
                mismatch,
                change: ctx.change,
                effect: ctx.effect,
            }),
        }));
    }
    let half = side / 2;
    let mask = stamp_mask(cut, half, half, (0.8, 1.25), &mut rng)
        .map(|m| {
            let mut full = GrayImage::new(side, side);
            image::imageops::overlay(&mut full, &m, (side / 4) as i64, (side / 4) as i64);
            full
        })
        .or_else(|| stamp_mask(cut, side, side, (0.5, 1.0), &mut rng));
    Ok(mask.map(|mask| Placement {
        window,
        mask,
        matched: None,
    }))
}

/// A painted synthetic defect's patch and the same patch before painting.
struct Painted {
    patch: GrayImage,
    before: GrayImage,
}

/// Paints the defect of `p` and cuts its patch; `None` when the mask is empty. A matched
/// placement's defect is judged against the real one it copies (see [`Verdict`]); the effect
/// only when `same_effect`.
fn paint(
    generator: &DefectGenerator,
    p: &Placement,
    composite: Composite,
    same_effect: bool,
) -> Result<Option<(Painted, Verdict)>, EvalError> {
    let Some(bbox) = mask_bbox(&p.mask) else {
        return Ok(None);
    };
    let out = luma(&generator.generate(&p.window, &p.mask, composite)?);
    let before = luma(&p.window);
    let verdict = match p.matched {
        None => Verdict::Kept,
        Some(m) => {
            let change = mean_change(&out, &before, &p.mask);
            if !change.is_some_and(|c| c >= MIN_CHANGE_RATIO * m.change) {
                Verdict::Faint
            } else if same_effect
                && m.effect
                    .is_some_and(|real| effect(&before, &out, &p.mask) != Some(real))
            {
                Verdict::OtherEffect
            } else {
                Verdict::Kept
            }
        }
    };
    let painted = Painted {
        patch: patch_around(&out, bbox),
        before: patch_around(&before, bbox),
    };
    Ok(Some((painted, verdict)))
}

/// `count` classical augmentations of `real` (cycled): random resized crop keeping the centre,
/// rotation, flips, CLAHE, brightness and contrast.
pub fn augment_patches(
    real: &[GrayImage],
    count: usize,
    seed: u64,
) -> Result<Vec<GrayImage>, EvalError> {
    if real.is_empty() {
        return Ok(Vec::new());
    }
    let cfg = AugmentConfig {
        out_size: PATCH,
        crop_scale: (0.6, 1.0),
        ..AugmentConfig::default()
    };
    let centre = Rect::new(PATCH / 4, PATCH / 4, PATCH / 2, PATCH / 2);
    (0..count)
        .map(|i| {
            let p = rgb_of(&real[i % real.len()]);
            let triple = Triple {
                twin: p.clone(),
                defect: p,
                mask: GrayImage::new(PATCH, PATCH),
            };
            augment_seeded(&triple, &cfg, Some(centre), derive_seed(seed, i as u64))
                .map(|t| luma(&t.defect))
                .map_err(|e| EvalError::Data(format!("augmentation: {e}")))
        })
        .collect()
}

/// At most `max` of `items`, spread evenly over them (all of them for `None`).
fn spread<T>(items: Vec<T>, max: Option<usize>) -> Vec<T> {
    let n = items.len();
    match max {
        Some(m) if m < n => {
            let mut keep = vec![false; n];
            for i in 0..m {
                keep[i * n / m] = true;
            }
            items
                .into_iter()
                .zip(keep)
                .filter_map(|(x, k)| k.then_some(x))
                .collect()
        }
        _ => items,
    }
}

fn save_patches(dir: &Path, patches: &[GrayImage]) -> Result<(), EvalError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    for (i, p) in patches.iter().enumerate() {
        save_png(
            &dir.join(format!("{i:05}.png")),
            &image::DynamicImage::ImageLuma8(p.clone()),
        )?;
    }
    Ok(())
}

/// Runs the whole experiment and writes `results.json`, `report.md` and `plot.png` into
/// `req.out` (plus the DTGAN run, the synthetic and augmented patches).
pub fn evaluate(
    req: &EvalRequest,
    control: &TrainControl,
    on_event: &mut dyn FnMut(EvalEvent),
) -> Result<EvalResults, EvalError> {
    let start = Instant::now();
    let mut timing = Timing::default();
    req.config
        .classifier
        .validate()
        .map_err(EvalError::Config)?;
    if req.k == 0 {
        return Err(EvalError::Config("--k must be at least 1".into()));
    }
    if req.seeds == 0 {
        return Err(EvalError::Config("--seeds must be at least 1".into()));
    }
    if req.config.candidates == 0 {
        return Err(EvalError::Config("--candidates must be at least 1".into()));
    }
    if req.config.max_per_class == 0 {
        return Err(EvalError::Config(
            "--max-per-class must be at least 1".into(),
        ));
    }
    let synthetic = req.synthetic.unwrap_or(40 * req.k);
    if synthetic == 0 {
        return Err(EvalError::Config("--synthetic must be at least 1".into()));
    }
    std::fs::create_dir_all(&req.out).map_err(io_err(&req.out))?;
    let device = select_device(req.device)?;

    // --- Data.
    on_event(EvalEvent::Stage("loading and cutting patches".into()));
    let train_project = open_data(&req.train, &req.out.join("data").join("train"))?;
    let same = same_dir(&req.train, &req.test);
    let test_project = if same {
        None
    } else {
        Some(open_data(&req.test, &req.out.join("data").join("test"))?)
    };
    let set = |v: &[String]| -> Option<BTreeSet<String>> {
        (!v.is_empty()).then(|| v.iter().cloned().collect())
    };
    let all_train = project_patches(
        &train_project,
        &Selection {
            groups: set(&req.train_groups),
        },
        derive_seed(req.seed, 10),
    )?;
    let source: BTreeSet<String> = req.source_groups.iter().cloned().collect();
    let (train_patches, test_patches, test_groups) = match &test_project {
        Some(tp) => {
            let test = project_patches(
                tp,
                &Selection {
                    groups: set(&req.test_groups),
                },
                derive_seed(req.seed, 11),
            )?;
            (all_train, test, req.test_groups.clone())
        }
        None => {
            let test_groups: BTreeSet<String> = match set(&req.test_groups) {
                Some(g) => g,
                None if req.train_groups.is_empty() => {
                    let candidates: Vec<Patch> = all_train
                        .iter()
                        .filter(|p| !source.contains(&p.group))
                        .cloned()
                        .collect();
                    split_groups(&candidates, 0.3, derive_seed(req.seed, 12))
                }
                None => {
                    return Err(EvalError::Config(
                        "--train and --test are the same folder: give --test-groups too".into(),
                    ));
                }
            };
            if let Some(g) = test_groups
                .iter()
                .find(|g| source.contains(*g) || req.train_groups.contains(g))
            {
                return Err(EvalError::Config(format!(
                    "group {g} is both a test group and a training or source group"
                )));
            }
            // Test patches are cut with their own seed, like a separate test folder's.
            let test = project_patches(
                &train_project,
                &Selection {
                    groups: Some(test_groups.clone()),
                },
                derive_seed(req.seed, 11),
            )?;
            let train: Vec<Patch> = all_train
                .into_iter()
                .filter(|p| !test_groups.contains(&p.group))
                .collect();
            (train, test, test_groups.into_iter().collect())
        }
    };
    let (target, source_patches): (Vec<Patch>, Vec<Patch>) = train_patches
        .into_iter()
        .partition(|p| !source.contains(&p.group));
    if let Some(g) = source
        .iter()
        .find(|g| !source_patches.iter().any(|p| &p.group == *g))
    {
        return Err(EvalError::Config(format!(
            "source group {g} has no images in {}",
            req.train.display()
        )));
    }
    let mut classes: Vec<String> = target
        .iter()
        .map(|p| p.class.clone())
        .chain(std::iter::once(req.minor.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // `good` first, then the defect classes by name.
    if let Some(i) = classes.iter().position(|c| c == GOOD) {
        let g = classes.remove(i);
        classes.insert(0, g);
    }
    if !target
        .iter()
        .chain(&source_patches)
        .any(|p| p.class == req.minor)
    {
        let known: Vec<&String> = classes.iter().filter(|c| **c != req.minor).collect();
        return Err(EvalError::Data(format!(
            "class {} is not in the training data {} (its classes: {})",
            req.minor,
            req.train.display(),
            known
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let label_of: BTreeMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let minor_label = label_of[req.minor.as_str()];
    let real_minor: Vec<&Patch> = target.iter().filter(|p| p.class == req.minor).collect();
    if real_minor.len() < req.k {
        return Err(EvalError::Data(format!(
            "the training data has {} patches of {} in its target groups; --k {} asks for more",
            real_minor.len(),
            req.minor,
            req.k
        )));
    }
    let test_minor = test_patches.iter().filter(|p| p.class == req.minor).count();
    if test_minor == 0 {
        return Err(EvalError::Data(format!(
            "the test data ({}) has no {} patch",
            req.test.display(),
            req.minor
        )));
    }
    if classes.len() < 2 {
        return Err(EvalError::Data(
            "the task needs at least two classes".into(),
        ));
    }
    if req.config.paired_negatives && !classes.iter().any(|c| c == GOOD) {
        return Err(EvalError::Data(format!(
            "--paired-negatives adds defect-free patches to the {GOOD} class, and the training \
             data {} has none (no good images or templates)",
            req.train.display()
        )));
    }
    let mut pick_rng = ChaCha8Rng::seed_from_u64(derive_seed(req.seed, 13));
    let k_real: Vec<Patch> = real_minor
        .choose_multiple(&mut pick_rng, req.k)
        .map(|p| (*p).clone())
        .collect();
    // Majority classes, capped per class.
    let mut majority: Vec<Example> = Vec::new();
    for c in classes.iter().filter(|c| **c != req.minor) {
        let mut of: Vec<&Patch> = target.iter().filter(|p| &p.class == c).collect();
        of.shuffle(&mut pick_rng);
        majority.extend(
            of.into_iter()
                .take(req.config.max_per_class)
                .map(|p| Example {
                    patch: p.pixels.clone(),
                    label: label_of[c.as_str()],
                }),
        );
    }
    let test: Vec<(&GrayImage, usize)> = test_patches
        .iter()
        .filter_map(|p| label_of.get(p.class.as_str()).map(|l| (&p.pixels, *l)))
        .collect();
    let target_groups: Vec<String> = target
        .iter()
        .map(|p| p.group.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    timing.data_s = start.elapsed().as_secs_f64();
    check_cancel(control)?;

    // --- DTGAN.
    let t0 = Instant::now();
    let ids: BTreeSet<String> = if source.is_empty() {
        k_real.iter().map(|p| p.image.clone()).collect()
    } else {
        source_patches
            .iter()
            .filter(|p| p.class == req.minor)
            .map(|p| p.image.clone())
            .collect()
    };
    let dtgan_data = req.out.join("work").join("dtgan-data");
    let (dtgan_pairs, twins) = dtgan_project(&train_project, &ids, &req.minor, &dtgan_data)?;
    if dtgan_pairs == 0 {
        return Err(EvalError::Data(format!(
            "no {} image with a pixel mask to train the DTGAN on",
            req.minor
        )));
    }
    let dtgan_project = Project::open(&dtgan_data)?;
    let run = match &req.dtgan_run {
        Some(r) => r.clone(),
        None => {
            let run = req.out.join("dtgan");
            let mut config = req.config.dtgan.clone();
            config.seed = req.seed;
            config.val_pairs = config.val_pairs.min(dtgan_pairs / 5);
            let resume = RunDir::new(&run).last().exists();
            on_event(EvalEvent::Stage(format!(
                "training the DTGAN on {dtgan_pairs} {} pairs{}",
                req.minor,
                if resume { " (resuming)" } else { "" }
            )));
            let treq = TrainRequest {
                project: dtgan_data.clone(),
                class: req.minor.clone(),
                run: run.clone(),
                config,
                resume,
                max_minutes: req.max_minutes,
                device: req.device,
            };
            let steps = treq.config.steps as usize;
            crate::dtgan::train::train(&treq, control, &mut |e| {
                if let crate::dtgan::run::TrainEvent::Metrics(m) = e {
                    on_event(EvalEvent::Progress {
                        done: m.step as usize,
                        total: steps,
                    });
                }
            })?;
            check_cancel(control)?;
            run
        }
    };
    timing.dtgan_s = t0.elapsed().as_secs_f64();

    // --- Synthesis.
    let t0 = Instant::now();
    on_event(EvalEvent::Stage(format!(
        "painting {synthetic} synthetic {} defects",
        req.minor
    )));
    // Its own run's last checkpoint: validation (which picks `best`) runs only every
    // `checkpoint_every` steps, so a run cut by the time limit is usually further along in `last`.
    let checkpoint = if req.dtgan_run.is_some() {
        run.clone()
    } else {
        RunDir::new(&run).last()
    };
    let generator = DefectGenerator::load(&checkpoint, req.device)?;
    let used_checkpoint = generator.checkpoint.clone();
    let dtgan_steps = generator.step.unwrap_or(0);
    let cuts = minor_mask_cuts(&dtgan_project, &req.minor)?;
    let target_sel = Selection {
        groups: Some(target_groups.iter().cloned().collect()),
    };
    let pool = canvases(&train_project, &target_sel);
    if pool.is_empty() {
        return Err(EvalError::Data(
            "the target groups have no defect-free image (good image or template) to paint into"
                .into(),
        ));
    }
    let canvas_of = |attempt: u64| {
        &pool[(derive_seed(req.seed ^ 0x5EED, attempt) % pool.len() as u64) as usize]
    };
    let place_seed = |attempt: u64| derive_seed(req.seed, 1_000_000 + attempt);
    // Where real defects have twins, candidate places are drawn first (in parallel) and painted
    // best match first; otherwise each attempt is painted as drawn.
    let matching = cuts.iter().any(|c| c.context.is_some());
    let order: Vec<u64> = if matching {
        let candidates = (synthetic * req.config.candidates) as u64;
        on_event(EvalEvent::Stage(format!(
            "matching {candidates} candidate places for {synthetic} synthetic {} defects",
            req.minor
        )));
        let mut ranked: Vec<(f64, u64)> = (0..candidates)
            .into_par_iter()
            .map(|attempt| {
                check_cancel(control)?;
                Ok(place(canvas_of(attempt), &cuts, place_seed(attempt))?
                    .and_then(|p| Some((p.matched?.mismatch, attempt))))
            })
            .collect::<Result<Vec<_>, EvalError>>()?
            .into_iter()
            .flatten()
            .collect();
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        ranked.into_iter().map(|(_, attempt)| attempt).collect()
    } else {
        (0..(synthetic * 20 + 16) as u64).collect()
    };
    if matching {
        on_event(EvalEvent::Stage(format!(
            "painting {synthetic} synthetic {} defects, best-matching places first",
            req.minor
        )));
    }
    let mut synth = Vec::with_capacity(synthetic);
    // The patch under each synthetic defect before painting, in `synth`'s order.
    let mut sources = Vec::with_capacity(synthetic);
    // Skipped defects (faint, or with another effect), best-matching first: used only if too
    // few good ones can be made.
    let mut skipped = Vec::new();
    let (mut painted, mut faint, mut other_effect) = (0, 0, 0);
    let mut worst_match: Option<f64> = None;
    let mut note_match = |matched: Option<Matched>| {
        if let Some(m) = matched {
            worst_match = Some(worst_match.map_or(m.mismatch, |w: f64| w.max(m.mismatch)));
        }
    };
    for &attempt in &order {
        if synth.len() == synthetic {
            break;
        }
        check_cancel(control)?;
        // Placed again from its seed rather than kept from the ranking: only about one
        // candidate in `candidates` is painted, and keeping every candidate's window would
        // hold thousands of them in memory.
        let Some(p) = place(canvas_of(attempt), &cuts, place_seed(attempt))? else {
            continue;
        };
        painted += 1;
        match paint(&generator, &p, req.config.composite, req.config.same_effect)? {
            Some((painted, Verdict::Kept)) => {
                note_match(p.matched);
                synth.push(painted.patch);
                sources.push(painted.before);
                on_event(EvalEvent::Progress {
                    done: synth.len(),
                    total: synthetic,
                });
            }
            Some((painted, verdict)) => {
                match verdict {
                    Verdict::Faint => faint += 1,
                    _ => other_effect += 1,
                }
                if skipped.len() < synthetic {
                    skipped.push((painted, p.matched));
                }
            }
            None => {}
        }
    }
    let faint_used = synthetic.saturating_sub(synth.len()).min(skipped.len());
    for (painted, matched) in skipped.into_iter().take(faint_used) {
        note_match(matched);
        synth.push(painted.patch);
        sources.push(painted.before);
    }
    if synth.len() < synthetic {
        return Err(EvalError::Data(format!(
            "only {} of {synthetic} synthetic defects fit into the target images ({} places \
             tried)",
            synth.len(),
            order.len()
        )));
    }
    let synthesis = SynthesisInfo {
        candidates: if matching { order.len() } else { 0 },
        painted,
        faint,
        other_effect,
        faint_used,
        worst_match,
    };
    drop(generator);
    let k_pixels: Vec<GrayImage> = k_real.iter().map(|p| p.pixels.clone()).collect();
    let augmented = augment_patches(&k_pixels, synthetic, derive_seed(req.seed, 14))?;
    save_patches(&req.out.join("patches").join("synthetic"), &synth)?;
    save_patches(&req.out.join("patches").join("augmented"), &augmented)?;
    save_patches(&req.out.join("patches").join("real-k"), &k_pixels)?;
    // The paired negatives kept (none when they are off).
    let pairs = if req.config.paired_negatives {
        let kept = spread(sources, req.config.paired_negatives_max);
        save_patches(&req.out.join("patches").join("paired-negatives"), &kept)?;
        kept
    } else {
        Vec::new()
    };
    timing.synthesis_s = t0.elapsed().as_secs_f64();

    // --- Classifiers.
    let t0 = Instant::now();
    let as_minor = |ps: &[GrayImage]| -> Vec<Example> {
        ps.iter()
            .map(|p| Example {
                patch: p.clone(),
                label: minor_label,
            })
            .collect()
    };
    let minor_sets: Vec<Vec<Example>> = vec![
        Vec::new(),
        as_minor(&k_pixels),
        as_minor(&synth),
        [as_minor(&k_pixels), as_minor(&synth)].concat(),
        as_minor(&augmented),
    ];
    // Paired negatives join the cases that hold synthetic defects (c, d).
    let negatives: Vec<Example> = match label_of.get(GOOD) {
        Some(&good) => pairs
            .iter()
            .map(|p| Example {
                patch: p.clone(),
                label: good,
            })
            .collect(),
        None => Vec::new(),
    };
    let extra_sets: [&[Example]; 5] = [&[], &[], &negatives, &negatives, &[]];
    let test_pixels: Vec<&GrayImage> = test.iter().map(|(p, _)| *p).collect();
    let test_labels: Vec<usize> = test.iter().map(|(_, l)| *l).collect();
    let mut results: Vec<Vec<SeedResult>> = vec![Vec::new(); CASES.len()];
    let mut judges: Vec<Classifier> = Vec::new();
    for seed in 0..req.seeds {
        for (ci, (letter, name)) in CASES.iter().enumerate() {
            check_cancel(control)?;
            on_event(EvalEvent::Stage(format!(
                "case {letter} ({name}), seed {}/{}",
                seed + 1,
                req.seeds
            )));
            let train_set: Vec<Example> = majority
                .iter()
                .cloned()
                .chain(minor_sets[ci].iter().cloned())
                .chain(extra_sets[ci].iter().cloned())
                .collect();
            let mut cancelled = false;
            let net = Classifier::train(
                classes.len(),
                &train_set,
                &req.config.classifier,
                derive_seed(req.seed, 100 + seed as u64),
                &device,
                &mut |step, steps, _| {
                    on_event(EvalEvent::Progress {
                        done: step,
                        total: steps,
                    });
                    cancelled = control.is_stopped();
                    !cancelled
                },
            )
            .map_err(EvalError::Config)?;
            if cancelled {
                return Err(EvalError::Cancelled);
            }
            let predicted = if req.config.classifier.tta {
                net.predict_dihedral(&test_pixels)?
            } else {
                net.predict(&test_pixels)?
            };
            let confusion = Confusion::from_pairs(classes.len(), &test_labels, &predicted);
            let r = SeedResult {
                case: letter.to_string(),
                seed,
                recall: confusion.recall(minor_label).unwrap_or(0.0),
                precision: confusion.balanced_precision(minor_label),
                accuracy: confusion.balanced_accuracy(),
                confusion,
                train_loss: net.final_loss(),
                guessing_loss: Some(guessing_loss(
                    classes.len(),
                    &train_set,
                    req.config.classifier.balanced,
                )),
            };
            on_event(EvalEvent::CaseDone(r.clone()));
            results[ci].push(r);
            if *letter == "b" {
                judges.push(net);
            }
        }
    }
    let cases: Vec<CaseResult> = CASES
        .iter()
        .zip(results)
        .zip(minor_sets.iter().zip(extra_sets))
        .map(|(((letter, name), per_seed), (set, extra))| CaseResult {
            case: letter.to_string(),
            name: name.to_string(),
            minor_train: set.len(),
            negatives: extra.len(),
            recall: MeanSd::of(&per_seed.iter().map(|r| r.recall).collect::<Vec<_>>()),
            precision: MeanSd::of(
                &per_seed
                    .iter()
                    .filter_map(|r| r.precision)
                    .collect::<Vec<_>>(),
            ),
            accuracy: MeanSd::of(&per_seed.iter().map(|r| r.accuracy).collect::<Vec<_>>()),
            per_seed,
        })
        .collect();
    timing.classifiers_s = t0.elapsed().as_secs_f64();

    // --- Realism.
    let t0 = Instant::now();
    on_event(EvalEvent::Stage("realism: C2ST and KID".into()));
    let real_test_minor: Vec<&GrayImage> = test_patches
        .iter()
        .filter(|p| p.class == req.minor)
        .map(|p| &p.pixels)
        .collect();
    let other_defects: Vec<&GrayImage> = test_patches
        .iter()
        .filter(|p| p.class != req.minor && p.class != GOOD)
        .map(|p| &p.pixels)
        .collect();
    let realism = realism(
        &real_test_minor,
        &synth,
        &augmented,
        &other_defects,
        &judges,
        req,
        &device,
        control,
    )?;
    timing.realism_s = t0.elapsed().as_secs_f64();
    timing.total_s = start.elapsed().as_secs_f64();

    let results = EvalResults {
        minor: req.minor.clone(),
        classes,
        k: req.k,
        synthetic,
        seeds: req.seeds,
        seed: req.seed,
        config: req.config.clone(),
        data: DataInfo {
            train: req.train.clone(),
            test: req.test.clone(),
            target_groups,
            source_groups: req.source_groups.clone(),
            test_groups,
            mode: if source.is_empty() {
                "few-shot".into()
            } else {
                "transfer".into()
            },
            twins,
            train_counts: counts(&target),
            test_counts: counts(&test_patches),
            dtgan_pairs,
            synthesis,
        },
        dtgan_run: used_checkpoint,
        dtgan_steps,
        cases,
        realism,
        timing,
    };
    super::report::write_report(&req.out, &results)?;
    Ok(results)
}

#[allow(clippy::too_many_arguments)]
fn realism(
    real: &[&GrayImage],
    synth: &[GrayImage],
    augmented: &[GrayImage],
    other: &[&GrayImage],
    judges: &[Classifier],
    req: &EvalRequest,
    device: &Device,
    control: &TrainControl,
) -> Result<Realism, EvalError> {
    let n = real.len().min(synth.len()).min(300);
    let mut accs = Vec::new();
    if n >= 4 {
        for seed in 0..req.seeds {
            check_cancel(control)?;
            let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(req.seed, 200 + seed as u64));
            let mut r: Vec<&GrayImage> = real.to_vec();
            r.shuffle(&mut rng);
            let mut s: Vec<&GrayImage> = synth.iter().collect();
            s.shuffle(&mut rng);
            let half = n / 2;
            let train: Vec<Example> = r[..half]
                .iter()
                .map(|p| Example {
                    patch: (*p).clone(),
                    label: 0,
                })
                .chain(s[..half].iter().map(|p| Example {
                    patch: (*p).clone(),
                    label: 1,
                }))
                .collect();
            let net = Classifier::train(
                2,
                &train,
                &req.config.classifier,
                derive_seed(req.seed, 300 + seed as u64),
                device,
                &mut |_, _, _| !control.is_stopped(),
            )
            .map_err(EvalError::Config)?;
            check_cancel(control)?;
            let test: Vec<&GrayImage> = r[half..n]
                .iter()
                .copied()
                .chain(s[half..n].iter().copied())
                .collect();
            let labels: Vec<usize> = std::iter::repeat_n(0, n - half)
                .chain(std::iter::repeat_n(1, n - half))
                .collect();
            let predicted = net.predict(&test)?;
            accs.push(Confusion::from_pairs(2, &labels, &predicted).balanced_accuracy());
        }
    }
    fn cap(v: Vec<&GrayImage>) -> Vec<&GrayImage> {
        v.into_iter().take(300).collect()
    }
    let synth_refs = cap(synth.iter().collect());
    let aug_refs = cap(augmented.iter().collect());
    let real_refs = cap(real.to_vec());
    let other_refs = cap(other.to_vec());
    let (mut ks, mut ka, mut ko) = (Vec::new(), Vec::new(), Vec::new());
    for judge in judges {
        let fr = judge.features(&real_refs)?;
        if let Some(v) = kid(&fr, &judge.features(&synth_refs)?) {
            ks.push(v);
        }
        if let Some(v) = kid(&fr, &judge.features(&aug_refs)?) {
            ka.push(v);
        }
        if let Some(v) = kid(&fr, &judge.features(&other_refs)?) {
            ko.push(v);
        }
    }
    Ok(Realism {
        c2st_accuracy: MeanSd::of(&accs),
        c2st_patches: n,
        kid_synthetic: MeanSd::of(&ks),
        kid_augmented: MeanSd::of(&ka),
        kid_other_classes: MeanSd::of(&ko),
    })
}

/// Parses a comma-separated group list.
pub fn parse_groups(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    #[test]
    fn a_classifier_that_stays_near_guessing_did_not_learn() {
        let seed = |train_loss, guessing_loss| SeedResult {
            case: "c".into(),
            seed: 3,
            recall: 0.0,
            precision: None,
            accuracy: 0.2,
            confusion: Confusion::new(2),
            train_loss,
            guessing_loss,
        };
        // The diverged training measured on DeepPCB mousebite (about 1.7 against 1.80).
        assert!(seed(Some(1.7), Some(1.8)).did_not_learn());
        assert!(!seed(Some(0.3), Some(1.8)).did_not_learn());
        assert!(
            !seed(Some(1.6), Some(2.0)).did_not_learn(),
            "0.8 of guessing: learnt a little"
        );
        // Reports from before the field say nothing.
        assert!(!seed(None, Some(1.8)).did_not_learn());
    }

    #[test]
    fn paired_negatives_are_spread_evenly_over_the_synthetic_defects() {
        let items: Vec<usize> = (0..10).collect();
        assert_eq!(spread(items.clone(), None), items);
        assert_eq!(spread(items.clone(), Some(10)), items);
        assert_eq!(spread(items.clone(), Some(25)), items);
        assert_eq!(spread(items.clone(), Some(4)), [0, 2, 5, 7]);
        assert_eq!(spread(items.clone(), Some(1)), [0]);
        assert!(spread(items, Some(0)).is_empty());
        let many = spread((0..400).collect::<Vec<usize>>(), Some(100));
        assert_eq!(many.len(), 100);
        assert!(many.windows(2).all(|w| w[1] - w[0] == 4));
    }

    #[test]
    fn a_defect_is_placed_where_the_pattern_matches_its_surroundings() {
        use image::Luma;
        // The real defect: an open cutting a vertical 6-pixel trace on a 60 x 40 template,
        // its box (the cut) at (27, 18), 6 x 4; a second defect's mask lies in the margin.
        let twin = GrayImage::from_fn(60, 40, |x, _| {
            Luma([if (27..33).contains(&x) { 200 } else { 30 }])
        });
        let mut mask = GrayImage::new(60, 40);
        for (x, y) in (27..33).flat_map(|x| (18..22).map(move |y| (x, y))) {
            mask.put_pixel(x, y, Luma([255]));
        }
        mask.put_pixel(20, 14, Luma([255]));
        // The defect image: the cut is background; the other defect darkened its pixel too.
        let mut defect = twin.clone();
        for (x, y, p) in defect.enumerate_pixels_mut() {
            if mask.get_pixel(x, y)[0] == 255 {
                *p = Luma([30]);
            }
        }
        *defect.get_pixel_mut(20, 14) = Luma([0]);
        let ctx = Context::cut(&twin, &defect, &mask, Rect::new(27, 18, 6, 4)).expect("context");
        assert_eq!(ctx.grey.dimensions(), (22, 20));
        assert_eq!(
            ctx.mask.pixels().filter(|p| p[0] == 255).count(),
            24,
            "only this region"
        );
        assert_eq!(ctx.change, 170.0, "copper 200 turned to background 30");
        let small = GrayImage::new(10, 10);
        assert!(Context::cut(&small, &defect, &mask, Rect::new(0, 0, 2, 2)).is_none());
        assert!(Context::cut(&twin, &small, &mask, Rect::new(0, 0, 2, 2)).is_none());
        assert_eq!(mean_change(&twin, &defect, &GrayImage::new(60, 40)), None);

        // A window with noise and one horizontal trace of the same width: the open must cross
        // it, turned a quarter, not land in the noise; the trace is off the search's 2-pixel
        // grid, so only the refinement puts the cut exactly on it.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let window = GrayImage::from_fn(96, 96, |_, y| {
            if (51..57).contains(&y) {
                Luma([200])
            } else {
                Luma([rng.random_range(0..=255)])
            }
        });
        let (placed, mismatch) = matched_placement(&window, &ctx, 12).expect("placement");
        assert!(
            mismatch > 0.1 && mismatch < 0.5,
            "the noise around the trace differs from the background, too much to paint there: \
             {mismatch}"
        );
        let bbox = mask_bbox(&placed).expect("a mask");
        assert_eq!((bbox.y, bbox.h, bbox.w), (51, 6, 4), "{bbox:?}");
        assert!(placed.pixels().filter(|p| p[0] == 255).count() == 24);

        // The same trace on the template's background matches closely enough to paint.
        let clean = GrayImage::from_fn(96, 96, |_, y| {
            Luma([if (51..57).contains(&y) { 200 } else { 30 }])
        });
        let (placed, mismatch) = matched_placement(&clean, &ctx, 12).expect("placement");
        assert!(mismatch < 0.01, "{mismatch}");
        let bbox = mask_bbox(&placed).expect("a mask");
        assert_eq!((bbox.y, bbox.h, bbox.w), (51, 6, 4), "{bbox:?}");

        // A context larger than the window (less its margins) has no place.
        assert!(matched_placement(&GrayImage::new(40, 40), &ctx, 12).is_none());
    }

    /// Two dark vertical traces on white, 40 x 40, and a mask over the gap between them.
    fn traces() -> (GrayImage, GrayImage) {
        let board = GrayImage::from_fn(40, 40, |x, _| {
            Luma([if (8..14).contains(&x) || (26..32).contains(&x) {
                0
            } else {
                255
            }])
        });
        let mask = GrayImage::from_fn(40, 40, |x, y| {
            Luma([if (10..30).contains(&x) && (17..23).contains(&y) {
                255
            } else {
                0
            }])
        });
        (board, mask)
    }

    /// `img` with the pixels in `x0..x1` x `y0..y1` set to `v`.
    fn painted(img: &GrayImage, (x0, x1): (u32, u32), (y0, y1): (u32, u32), v: u8) -> GrayImage {
        let mut out = img.clone();
        for y in y0..y1 {
            for x in x0..x1 {
                out.put_pixel(x, y, Luma([v]));
            }
        }
        out
    }

    #[test]
    fn the_effect_tells_a_short_from_a_spur_a_bite_and_an_open() {
        let (board, mask) = traces();
        let effect_of = |after: &GrayImage| effect(&board, after, &mask);
        // A bridge between the traces joins two dark parts and splits the white gap in two.
        let short = painted(&board, (14, 26), (18, 22), 0);
        assert_eq!(
            effect_of(&short),
            Some(Effect {
                bright: 1,
                dark: -1,
                turned: -1
            })
        );
        // A stub that stops short of the second trace joins nothing: a spur. It adds dark.
        let spur = painted(&board, (14, 22), (18, 22), 0);
        let neither = |turned| {
            Some(Effect {
                bright: 0,
                dark: 0,
                turned,
            })
        };
        assert_eq!(effect_of(&spur), neither(-1));
        // A bite out of the trace's edge cuts nothing either, but takes dark away.
        let bite = painted(&board, (11, 14), (16, 24), 255);
        assert_eq!(effect_of(&bite), neither(1));
        // A cut through a trace splits it and joins the white on both sides.
        let open = painted(&board, (8, 14), (18, 22), 255);
        assert_eq!(
            effect_of(&open),
            Some(Effect {
                bright: -1,
                dark: 1,
                turned: 1
            })
        );
        // A speck smaller than MIN_PART is not a part, nor a clear turn.
        let speck = painted(&board, (18, 20), (19, 21), 0);
        assert_eq!(effect_of(&speck), neither(0));
        // A bigger island is.
        let island = painted(&board, (18, 22), (18, 22), 0);
        assert_eq!(
            effect_of(&island),
            Some(Effect {
                bright: 0,
                dark: 1,
                turned: -1
            })
        );
        // Only a two-level pattern has parts to count; an empty mask has no frame.
        let grey = GrayImage::from_fn(40, 40, |x, y| Luma([100 + ((x * 7 + y * 3) % 50) as u8]));
        assert_eq!(effect(&grey, &grey, &mask), None);
        assert_eq!(effect(&board, &short, &GrayImage::new(40, 40)), None);
    }

    #[test]
    fn twin_description_names_each_kind_of_twin() {
        assert_eq!(twin_description(12, 0, 0), "12 real defect-free templates");
        assert_eq!(
            twin_description(3, 2, 1),
            "3 real defect-free templates, 2 inpainted twins accepted in seam QA, \
             1 boxes filled by straight-line blending"
        );
        assert_eq!(
            twin_description(0, 4, 0),
            "4 inpainted twins accepted in seam QA"
        );
        assert!(twin_description(0, 0, 5).starts_with("the data has no defect-free twins"));
    }

    /// A project with one 40 x 40 defect image of `crack` (a dark cut across a bright vertical
    /// trace), its mask and, with `template`, its real defect-free twin.
    fn one_defect_project(root: &Path, template: bool) -> Project {
        let mut project = Project::open_or_create(root).expect("project");
        let twin = GrayImage::from_fn(40, 40, |x, _| {
            Luma([if (17..23).contains(&x) { 200 } else { 30 }])
        });
        let mut mask = GrayImage::new(40, 40);
        let mut defect = twin.clone();
        for (x, y) in (17..23).flat_map(|x| (18..22).map(move |y| (x, y))) {
            mask.put_pixel(x, y, Luma([255]));
            defect.put_pixel(x, y, Luma([30]));
        }
        let save = |project: &Project, name: &str, img: &GrayImage| {
            let rel = RelPath::new(name).expect("rel");
            let path = project.ensure_parent(&rel).expect("parent");
            save_png(&path, &image::DynamicImage::ImageLuma8(img.clone())).expect("png");
            rel
        };
        let mut e = ImageEntry::new("d", save(&project, "d.png", &defect), Role::Defect, "g");
        (e.width, e.height) = (40, 40);
        e.mask = Some(save(&project, "d_mask.png", &mask));
        e.regions = vec![crate::project::Region {
            class: "crack".into(),
            bbox: Rect::new(17, 18, 6, 4),
        }];
        if template {
            let mut t = ImageEntry::new("t", save(&project, "t.png", &twin), Role::Template, "g");
            (t.width, t.height) = (40, 40);
            t.twin_of = Some("d".into());
            e.twin = Some("t".into());
            project.manifest.images.push(t);
        }
        project.manifest.images.push(e);
        project
    }

    #[test]
    fn only_twins_that_show_the_pattern_guide_placement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids: BTreeSet<String> = ["d".to_string()].into();
        for template in [true, false] {
            let src = one_defect_project(&dir.path().join(format!("src{template}")), template);
            let dst = dir.path().join(format!("dst{template}"));
            let (pairs, how) = dtgan_project(&src, &ids, "crack", &dst).expect("dtgan project");
            assert_eq!(pairs, 1);
            let project = Project::open_or_create(&dst).expect("open");
            let cuts = minor_mask_cuts(&project, "crack").expect("cuts");
            assert_eq!(cuts.len(), 1);
            if template {
                assert_eq!(how, "1 real defect-free templates");
                let ctx = cuts[0].context.as_ref().expect("a real twin gives context");
                assert_eq!(ctx.change, 170.0);
            } else {
                // The box was filled by blending: a twin, but no guide to where cracks belong.
                assert!(
                    how.starts_with("the data has no defect-free twins"),
                    "{how}"
                );
                assert!(cuts[0].context.is_none());
            }
        }
        // An inpainted twin (seam QA passed) shows the pattern; a blended fill does not.
        let mut t = ImageEntry::new(
            "t",
            RelPath::new("t.png").expect("rel"),
            Role::Template,
            "g",
        );
        assert!(shows_real_pattern(&t));
        t.twin_status = Some(TwinStatus::Accepted);
        assert!(!shows_real_pattern(&t));
        t.inpaint = Some(crate::project::manifest::InpaintInfo {
            checkpoint: "0".repeat(64),
            seam: 1.0,
            ..Default::default()
        });
        assert!(shows_real_pattern(&t));
    }

    fn patch(class: &str, group: &str) -> Patch {
        Patch {
            pixels: GrayImage::new(PATCH, PATCH),
            class: class.into(),
            group: group.into(),
            image: format!("{group}/{class}"),
            bbox: Rect::new(0, 0, 8, 8),
        }
    }

    #[test]
    fn held_out_groups_take_about_the_share_and_leave_every_class_some_training_groups() {
        let mut patches = Vec::new();
        for g in 0..10 {
            for _ in 0..10 {
                patches.push(patch("a", &format!("a{g}")));
            }
        }
        for g in 0..3 {
            for _ in 0..5 {
                patches.push(patch("b", &format!("b{g}")));
            }
        }
        // One class in one group only: it cannot be held out.
        patches.push(patch("c", "c0"));
        let test = split_groups(&patches, 0.3, 1);
        let held = |c: &str| test.iter().filter(|g| g.starts_with(c)).count();
        assert!((3..=4).contains(&held("a")), "{test:?}");
        assert_eq!(held("b"), 1, "{test:?}");
        assert_eq!(held("c"), 0, "{test:?}");
        assert_eq!(split_groups(&patches, 0.3, 1), test, "seeded");
    }

    #[test]
    fn augmentation_is_seeded_and_changes_the_patches() {
        let real: Vec<GrayImage> = (0..2)
            .map(|k| {
                GrayImage::from_fn(PATCH, PATCH, |x, y| {
                    Luma([((x * 3 + y * (k + 1)) % 256) as u8])
                })
            })
            .collect();
        let a = augment_patches(&real, 6, 9).expect("augment");
        assert_eq!(a.len(), 6);
        assert_eq!(a, augment_patches(&real, 6, 9).expect("augment"));
        assert_ne!(a, augment_patches(&real, 6, 10).expect("augment"));
        assert!(a.iter().all(|p| p.dimensions() == (PATCH, PATCH)));
        assert!(a.iter().zip(real.iter().cycle()).any(|(p, r)| p != r));
    }
}
