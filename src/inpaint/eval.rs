//! Measured inpainting quality on DeepPCB-layout pairs.
//!
//! For each pair, every defect box (grown by a margin) is cut out of the defect image and
//! filled; the filled boxes are compared with the real template: the share of hole pixels whose
//! binarised value (at 128) differs ("hole pixel error") and the PSNR in the holes. The same
//! holes cut into the template itself and filled give the self-test, whose ground truth is
//! exact. Template and defect image are misaligned by a pixel or two, so even a perfect fill
//! disagrees somewhat; the same disagreement measured outside the boxes is reported as the
//! floor. Two baselines use the same holes: "copy" (the defect image unchanged) and "mean fill"
//! (each box filled with the mean of a ring around it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use image::{GrayImage, Luma, RgbImage};
use serde::Serialize;

use super::apply::{InpaintError, Inpainter, NATIVE_MAX};
use crate::dtgan::run::{RunDir, RunInfo};
use crate::imaging::boxes::connected_components;
use crate::imaging::depth::{Beyond, hole_depth};
use crate::imaging::exemplar::{self, CopyRepeats, Reference};
use crate::imaging::io::load_rgb8;
use crate::imaging::rect::Rect;
use crate::project::import::deeppcb::{parse_boxes, read_index};

/// Ring width, in pixels, whose mean fills a box in the "mean fill" baseline.
const RING: u32 = 4;

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// The run folder or checkpoint.
    pub run: PathBuf,
    /// More run folders or checkpoints whose fills are averaged with `run`'s
    /// ([`Inpainter::with_more`]).
    pub also: Vec<PathBuf>,
    /// The DeepPCB-layout folder.
    pub data: PathBuf,
    /// Pixels added around each box.
    pub margin: u32,
    /// Board groups to evaluate; empty: every group the run did not train on (all groups when
    /// the run trained on all).
    pub groups: Vec<String>,
    /// Evaluate at most this many pairs (evenly spread), for a quick look.
    pub limit: Option<usize>,
    /// Where to compute.
    pub device: crate::nn::device::DeviceChoice,
    /// Fill with the eight-fold flip-and-turn ensemble ([`Inpainter::with_ensemble`]).
    pub ensemble: bool,
    /// Fill in rings of this many pixels from the rim inwards, one pass each; 0: in one pass
    /// ([`Inpainter::with_peel`]).
    pub peel: u32,
    /// Copy the parts of a hole whose surroundings repeat elsewhere in the image
    /// ([`Inpainter::with_exemplar`]); the network fills the rest.
    pub exemplar: Option<CopyRepeats>,
    /// Write `<id>.png` (defect image | filled | template, box outlines in red) for the first
    /// this many pairs into this folder.
    pub examples: Option<(PathBuf, usize)>,
}

/// Accumulated error of one method on a set of holes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Score {
    /// Share of hole pixels whose binarised value is wrong.
    pub hole_pixel_error: f64,
    /// PSNR in the holes, dB.
    pub psnr: f64,
}

/// Pixels added around each box by default, in evaluation and in the trainer's box validation.
pub const DEFAULT_MARGIN: u32 = 4;

/// Hole pixels counted: how many, how many binarise wrong, and their squared error.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    wrong: u64,
    sq: f64,
    n: u64,
}

impl Tally {
    /// The pixels where `hole` is non-zero.
    pub(crate) fn add(&mut self, got: &GrayImage, truth: &GrayImage, hole: &GrayImage) {
        for ((g, t), h) in got.pixels().zip(truth.pixels()).zip(hole.pixels()) {
            if h[0] != 0 {
                self.count(g[0], t[0]);
            }
        }
    }

    /// The pixels whose `depth` (from [`hole_depth`]) falls in each range of [`DEPTH_EDGES`],
    /// each range into its tally.
    fn add_by_depth(
        tallies: &mut [Tally],
        got: &GrayImage,
        truth: &GrayImage,
        depth: &[Option<u32>],
    ) {
        for ((g, t), d) in got.pixels().zip(truth.pixels()).zip(depth) {
            if let Some(d) = d {
                tallies[size_range(&DEPTH_EDGES, *d)].count(g[0], t[0]);
            }
        }
    }

    /// Only the pixels of `r` (every one of them a hole pixel).
    fn add_rect(&mut self, got: &GrayImage, truth: &GrayImage, r: Rect) {
        for y in r.y..r.bottom() {
            for x in r.x..r.right() {
                self.count(got.get_pixel(x, y)[0], truth.get_pixel(x, y)[0]);
            }
        }
    }

    /// One hole pixel: filled `got`, true `truth`.
    fn count(&mut self, got: u8, truth: u8) {
        self.n += 1;
        self.wrong += u64::from((got >= 128) != (truth >= 128));
        let d = f64::from(got) - f64::from(truth);
        self.sq += d * d;
    }

    pub(crate) fn score(&self) -> Score {
        let n = self.n.max(1) as f64;
        let mse = self.sq / n;
        Score {
            hole_pixel_error: self.wrong as f64 / n,
            psnr: if mse > 0.0 {
                10.0 * (255.0 * 255.0 / mse).log10()
            } else {
                f64::INFINITY
            },
        }
    }
}

/// Baselines on the same holes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Baselines {
    /// The defect image unchanged, against the template.
    pub copy: Score,
    /// Each box filled with its ring's mean, against the template.
    pub mean_fill: Score,
    /// Mean fill of the holes cut into the template (self-test).
    pub selftest_mean_fill: Score,
}

/// The figures of the boxes whose long side (margin included) falls in one range.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SizeRow {
    /// Smallest long side in the range, px (inclusive).
    pub from_px: u32,
    /// Largest long side in the range, px (inclusive; `None`: no upper end).
    pub to_px: Option<u32>,
    /// Whether these boxes are filled in a window scaled down to the network's input (longer
    /// than [`NATIVE_MAX`] of it; in a large enough image).
    pub scaled: bool,
    /// Boxes in the range.
    pub boxes: usize,
    /// Their share of all box pixels (overlapping boxes count once each).
    pub pixel_share: f64,
    /// Hole pixel error of the fills on the real pairs.
    pub hole_pixel_error: f64,
    /// The same in the template self-test.
    pub selftest_hole_pixel_error: f64,
    /// The same for copying (no fill).
    pub copy_hole_pixel_error: f64,
}

/// The figures of the hole pixels at one range of depths.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DepthRow {
    /// Smallest depth in the range, px (inclusive; 0: next to a pixel outside the hole).
    pub from_px: u32,
    /// Largest depth in the range, px (inclusive; `None`: no upper end).
    pub to_px: Option<u32>,
    /// The range's share of all hole pixels.
    pub pixel_share: f64,
    /// Hole pixel error of the fills on the real pairs.
    pub hole_pixel_error: f64,
    /// The same in the template self-test.
    pub selftest_hole_pixel_error: f64,
    /// The same for copying (no fill).
    pub copy_hole_pixel_error: f64,
}

/// Upper ends (inclusive) of the depth ranges of [`EvalReport::by_depth`].
const DEPTH_EDGES: [u32; 3] = [3, 7, 15];

/// Upper ends (inclusive) of the long-side ranges of [`EvalReport::by_size`], for a network of
/// input side `s`: up to 3s/8, up to s/2 (the largest box filled in a window of the training
/// side), up to 3s/4 (the largest filled at the image's own resolution, [`NATIVE_MAX`]), and the
/// rest (filled scaled down).
fn size_edges(s: u32) -> [u32; 3] {
    [3 * s / 8, s / 2, s * NATIVE_MAX.0 / NATIVE_MAX.1]
}

/// The first of the ranges of [`size_edges`] whose boxes are filled in a scaled window.
const SCALED_FROM: usize = 3;

/// The index of the range of `long` among `edges` (upper ends, inclusive).
fn size_range(edges: &[u32], long: u32) -> usize {
    edges.iter().filter(|&&e| long > e).count()
}

/// The evaluation's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EvalReport {
    /// The checkpoint used.
    pub checkpoint: PathBuf,
    /// The checkpoints whose fills were averaged with its ([`EvalRequest::also`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<PathBuf>,
    /// Groups evaluated.
    pub groups: Vec<String>,
    /// Whether the run (any run of a checkpoint ensemble; or one whose run.json cannot be read)
    /// trained on (some of) these groups' templates: then the figures are not those of unseen
    /// boards.
    pub seen_in_training: bool,
    /// Pairs evaluated.
    pub pairs: usize,
    /// Boxes filled (per image kind).
    pub boxes: usize,
    /// Margin around each box, px.
    pub margin: u32,
    /// Whether the fills were the eight-fold flip-and-turn ensemble.
    pub ensemble: bool,
    /// Ring width of the rim-inwards fill, px; 0: one pass.
    pub peel: u32,
    /// How parts of the holes were copied from repeats ([`EvalRequest::exemplar`]); `None`:
    /// the network filled every part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exemplar: Option<CopyRepeats>,
    /// Parts of the holes (8-connected; overlapping boxes make one), per image kind.
    pub parts: usize,
    /// Parts copied from a repeat in the defect images, and in the templates (self-test).
    pub copied_parts: (usize, usize),
    /// Of those, parts copied from another template of the pair's group (references), never
    /// the pair's own.
    #[serde(skip_serializing_if = "is_nothing")]
    pub referenced_parts: (usize, usize),
    /// The groups whose defect images the run (any run of a checkpoint ensemble whose run.json
    /// can be read) also learned from, away from their defects (`Some(empty)`: every group's):
    /// their templates and the pixels of the boxes stay unseen.
    pub context: Option<Vec<String>>,
    /// Share of wrong binarised pixels in the filled boxes of the defect images.
    pub hole_pixel_error: f64,
    /// PSNR there, dB.
    pub psnr: f64,
    /// The same with the holes cut into the template (exact ground truth).
    pub selftest_hole_pixel_error: f64,
    /// PSNR of the self-test, dB.
    pub selftest_psnr: f64,
    /// Binarised disagreement of defect image and template outside the holes (misalignment).
    pub floor_pixel_error: f64,
    /// The baselines.
    pub baselines: Baselines,
    /// The errors by box size (long side, margin included), smallest first.
    pub by_size: Vec<SizeRow>,
    /// The errors by depth in the hole (distance to the nearest pixel outside it), rim first.
    pub by_depth: Vec<DepthRow>,
    /// Seconds the evaluation took.
    pub seconds: f64,
}

/// `n` of `items` (all when there are no more), at indices `i * len / n`, in order: the pairs
/// `--limit` keeps, and the templates the trainer scores checkpoints on.
pub(crate) fn evenly_spread<T>(items: Vec<T>, n: usize) -> Vec<T> {
    let len = items.len();
    if len <= n {
        return items;
    }
    let mut next = 0;
    items
        .into_iter()
        .enumerate()
        .filter(|&(i, _)| {
            let take = next < n && i == next * len / n;
            next += usize::from(take);
            take
        })
        .map(|(_, c)| c)
        .collect()
}

/// A `w` x `h` mask, 255 inside `boxes` (clipped to it), 0 elsewhere.
pub(crate) fn box_hole(w: u32, h: u32, boxes: &[Rect]) -> GrayImage {
    let mut hole = GrayImage::new(w, h);
    for b in boxes {
        for y in b.y..b.bottom().min(h) {
            for x in b.x..b.right().min(w) {
                hole.put_pixel(x, y, Luma([255]));
            }
        }
    }
    hole
}

pub(crate) fn gray(img: &RgbImage) -> GrayImage {
    image::DynamicImage::ImageRgb8(img.clone()).to_luma8()
}

/// Fills each box of `holes` with the mean of a ring of [`RING`] pixels around it.
fn mean_fill(img: &GrayImage, boxes: &[Rect]) -> GrayImage {
    let (w, h) = img.dimensions();
    let mut out = img.clone();
    for b in boxes {
        let ring = b.grown_clipped(RING, w, h);
        let (mut sum, mut n) = (0u64, 0u64);
        for y in ring.y..ring.bottom() {
            for x in ring.x..ring.right() {
                let inside = x >= b.x && x < b.right() && y >= b.y && y < b.bottom();
                if !inside {
                    sum += u64::from(img.get_pixel(x, y)[0]);
                    n += 1;
                }
            }
        }
        let v = (sum / n.max(1)) as u8;
        for y in b.y..b.bottom() {
            for x in b.x..b.right() {
                out.put_pixel(x, y, Luma([v]));
            }
        }
    }
    out
}

/// Writes the three images side by side with the boxes outlined.
fn write_example(path: &Path, images: [&RgbImage; 3], boxes: &[Rect]) -> Result<(), EvalError> {
    let (w, h) = images[0].dimensions();
    let gap = 4;
    let mut out = RgbImage::from_pixel(3 * w + 2 * gap, h, image::Rgb([40, 40, 40]));
    for (i, img) in images.iter().enumerate() {
        let x0 = i as u32 * (w + gap);
        image::imageops::replace(&mut out, *img, i64::from(x0), 0);
        for b in boxes {
            for x in b.x..b.right() {
                for y in [b.y, b.bottom().saturating_sub(1)] {
                    out.put_pixel(x0 + x, y, image::Rgb([255, 0, 0]));
                }
            }
            for y in b.y..b.bottom() {
                for x in [b.x, b.right().saturating_sub(1)] {
                    out.put_pixel(x0 + x, y, image::Rgb([255, 0, 0]));
                }
            }
        }
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| EvalError::Data(format!("{}: {e}", parent.display())))?;
    }
    crate::imaging::io::save_png(path, &image::DynamicImage::ImageRgb8(out))
        .map_err(|e| EvalError::Data(e.to_string()))
}

/// The `run.json` of a run folder or of the folder of a checkpoint, if readable.
fn run_info(run: &Path) -> Option<RunInfo> {
    let dir = if run.is_file() {
        run.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        run.to_path_buf()
    };
    std::fs::read_to_string(RunDir::new(dir).info())
        .ok()
        .and_then(|t| serde_json::from_str::<RunInfo>(&t).ok())
}

/// The groups any of the runs trained on; empty: every group (a run trained on all, or one
/// whose run.json cannot be read).
fn trained_on(infos: &[Option<RunInfo>]) -> Vec<String> {
    let mut trained: Vec<String> = Vec::new();
    for info in infos {
        match info {
            Some(info) if !info.groups.is_empty() => {
                for g in &info.groups {
                    if !trained.contains(g) {
                        trained.push(g.clone());
                    }
                }
            }
            _ => return Vec::new(),
        }
    }
    trained
}

/// The groups whose defect images any of the runs learned from (`Some(empty)`: every group's;
/// `None`: none).
fn learned_from(infos: &[Option<RunInfo>]) -> Option<Vec<String>> {
    let mut out: Option<Vec<String>> = None;
    for c in infos.iter().flatten().filter_map(|i| i.context.as_ref()) {
        let all = out.get_or_insert_with(Vec::new);
        if c.is_empty() {
            return Some(Vec::new());
        }
        for g in c {
            if !all.contains(g) {
                all.push(g.clone());
            }
        }
    }
    out
}

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The model failed.
    #[error(transparent)]
    Inpaint(#[from] InpaintError),
    /// The folder is not in the DeepPCB layout or a file is bad.
    #[error("{0}")]
    Data(String),
}

/// Runs the evaluation; `progress(done, total)` after each pair.
fn is_nothing(n: &(usize, usize)) -> bool {
    *n == (0, 0)
}

/// The templates of `groups` that fills may copy from ([`CopyRepeats::references`]), by group:
/// at most [`exemplar::MAX_REFERENCES`] of each (evenly spread by id), with their pair ids so
/// that a pair's own template, its ground truth, is left out of its own fill.
fn reference_pool(
    data: &Path,
    index: &std::collections::HashMap<String, String>,
    groups: &[String],
) -> Result<BTreeMap<String, Vec<(String, Reference)>>, EvalError> {
    let mut pool = BTreeMap::new();
    for g in groups {
        let mut ids: Vec<&String> = index
            .iter()
            .filter(|(_, ig)| *ig == g)
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        // One more than the cap, so that a pair's own template left out still leaves the cap.
        let mut refs = Vec::new();
        for id in evenly_spread(ids, exemplar::MAX_REFERENCES + 1) {
            let path = data.join("pairs").join(format!("{id}_temp.jpg"));
            let image = load_rgb8(&path).map_err(|e| EvalError::Data(e.to_string()))?;
            refs.push((
                id.clone(),
                Reference::new(path.display().to_string(), image),
            ));
        }
        pool.insert(g.clone(), refs);
    }
    Ok(pool)
}

/// The references of pair `id` of `group`: its group's pool without its own template.
fn others<'a>(
    pool: &'a BTreeMap<String, Vec<(String, Reference)>>,
    group: Option<&String>,
    id: &str,
) -> Vec<&'a Reference> {
    group
        .and_then(|g| pool.get(g))
        .into_iter()
        .flatten()
        .filter(|(other, _)| other != id)
        .map(|(_, r)| r)
        .collect()
}

pub fn evaluate(
    req: &EvalRequest,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport, EvalError> {
    let started = std::time::Instant::now();
    let model = Inpainter::load(&req.run, req.device)?
        .with_more(&req.also)?
        .with_ensemble(req.ensemble)
        .with_peel(req.peel)
        .with_exemplar(req.exemplar);
    let index = read_index(&req.data.join("index.csv"));
    if index.is_empty() {
        return Err(EvalError::Data(format!(
            "{}: no index.csv with `id` and `group` columns (a DeepPCB-layout folder has pairs/, boxes/ and index.csv)",
            req.data.display()
        )));
    }
    let all: BTreeSet<&String> = index.values().collect();
    let infos: Vec<Option<RunInfo>> = std::iter::once(&req.run)
        .chain(&req.also)
        .map(|r| run_info(r))
        .collect();
    let trained = trained_on(&infos);
    let groups: Vec<String> = if !req.groups.is_empty() {
        req.groups.clone()
    } else {
        let unseen: Vec<String> = all
            .iter()
            .filter(|g| !trained.contains(g))
            .map(|g| g.to_string())
            .collect();
        if unseen.is_empty() {
            all.iter().map(|g| g.to_string()).collect()
        } else {
            unseen
        }
    };
    let mut ids: Vec<&String> = index
        .iter()
        .filter(|(_, g)| groups.contains(g))
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    if let Some(limit) = req.limit {
        ids = evenly_spread(ids, limit);
    }
    if ids.is_empty() {
        return Err(EvalError::Data(format!(
            "{}: no pairs in group(s) {}",
            req.data.display(),
            groups.join(", ")
        )));
    }
    let (mut real, mut selftest, mut copy, mut mean, mut self_mean) = (
        Tally::default(),
        Tally::default(),
        Tally::default(),
        Tally::default(),
        Tally::default(),
    );
    let (mut floor_wrong, mut floor_n) = (0u64, 0u64);
    let mut boxes_total = 0;
    let (mut parts, mut copied, mut self_copied) = (0, 0, 0);
    let edges = size_edges(model.config.model.image_size as u32);
    // Per size range: (boxes, real, self-test, copy).
    let mut sized = [(); 4].map(|_| (0usize, Tally::default(), Tally::default(), Tally::default()));
    // Per depth range: real, self-test, copy.
    let mut deep = [[Tally::default(); DEPTH_EDGES.len() + 1]; 3];
    let pool = match req.exemplar {
        Some(how) if how.references => reference_pool(&req.data, &index, &groups)?,
        _ => BTreeMap::new(),
    };
    let mut referenced = (0, 0);
    let total = ids.len();
    for (done, id) in ids.iter().enumerate() {
        progress(done, total);
        let pairs = req.data.join("pairs");
        let test_path = pairs.join(format!("{id}_test.jpg"));
        let temp_path = pairs.join(format!("{id}_temp.jpg"));
        let box_path = req.data.join("boxes").join(format!("{id}.txt"));
        let test = load_rgb8(&test_path).map_err(|e| EvalError::Data(e.to_string()))?;
        let temp = load_rgb8(&temp_path).map_err(|e| EvalError::Data(e.to_string()))?;
        let (w, h) = test.dimensions();
        if temp.dimensions() != (w, h) {
            return Err(EvalError::Data(format!(
                "{} is {w}x{h} but its template is {:?}",
                test_path.display(),
                temp.dimensions()
            )));
        }
        let text = std::fs::read_to_string(&box_path)
            .map_err(|e| EvalError::Data(format!("{}: {e}", box_path.display())))?;
        let boxes: Vec<Rect> = parse_boxes(&text, &box_path, w, h)
            .map_err(EvalError::Data)?
            .into_iter()
            .map(|r| r.bbox.grown_clipped(req.margin, w, h))
            .collect();
        boxes_total += boxes.len();
        let hole = box_hole(w, h, &boxes);
        let (test_g, temp_g) = (gray(&test), gray(&temp));
        for ((a, b), m) in test_g.pixels().zip(temp_g.pixels()).zip(hole.pixels()) {
            if m[0] == 0 {
                floor_n += 1;
                floor_wrong += u64::from((a[0] >= 128) != (b[0] >= 128));
            }
        }
        parts += connected_components(&hole).len();
        let references = others(&pool, index.get(*id), id);
        let f = model.fill_counting(&test, &hole, &references)?;
        copied += f.copied;
        referenced.0 += f.from_references;
        let filled_rgb = f.image;
        if let Some((dir, n)) = &req.examples
            && done < *n
        {
            write_example(
                &dir.join(format!("{id}.png")),
                [&test, &filled_rgb, &temp],
                &boxes,
            )?;
        }
        let filled = gray(&filled_rgb);
        real.add(&filled, &temp_g, &hole);
        let f = model.fill_counting(&temp, &hole, &references)?;
        self_copied += f.copied;
        referenced.1 += f.from_references;
        let self_filled = gray(&f.image);
        selftest.add(&self_filled, &temp_g, &hole);
        copy.add(&test_g, &temp_g, &hole);
        for b in &boxes {
            let row = &mut sized[size_range(&edges, b.w.max(b.h))];
            row.0 += 1;
            row.1.add_rect(&filled, &temp_g, *b);
            row.2.add_rect(&self_filled, &temp_g, *b);
            row.3.add_rect(&test_g, &temp_g, *b);
        }
        let depth = hole_depth(&hole, Beyond::Known);
        for (tallies, got) in deep.iter_mut().zip([&filled, &self_filled, &test_g]) {
            Tally::add_by_depth(tallies, got, &temp_g, &depth);
        }
        mean.add(&mean_fill(&test_g, &boxes), &temp_g, &hole);
        self_mean.add(&mean_fill(&temp_g, &boxes), &temp_g, &hole);
    }
    progress(total, total);
    let (r, s) = (real.score(), selftest.score());
    let all_px: u64 = sized.iter().map(|r| r.1.n).sum();
    let by_size = sized
        .iter()
        .enumerate()
        .map(|(i, (n, real, own, copy))| SizeRow {
            from_px: if i == 0 { 0 } else { edges[i - 1] + 1 },
            to_px: edges.get(i).copied(),
            scaled: i >= SCALED_FROM,
            boxes: *n,
            pixel_share: real.n as f64 / all_px.max(1) as f64,
            hole_pixel_error: real.score().hole_pixel_error,
            selftest_hole_pixel_error: own.score().hole_pixel_error,
            copy_hole_pixel_error: copy.score().hole_pixel_error,
        })
        .collect();
    let by_depth = (0..DEPTH_EDGES.len() + 1)
        .map(|i| DepthRow {
            from_px: if i == 0 { 0 } else { DEPTH_EDGES[i - 1] + 1 },
            to_px: DEPTH_EDGES.get(i).copied(),
            pixel_share: deep[0][i].n as f64 / real.n.max(1) as f64,
            hole_pixel_error: deep[0][i].score().hole_pixel_error,
            selftest_hole_pixel_error: deep[1][i].score().hole_pixel_error,
            copy_hole_pixel_error: deep[2][i].score().hole_pixel_error,
        })
        .collect();
    let seen_in_training = trained.is_empty() || groups.iter().any(|g| trained.contains(g));
    Ok(EvalReport {
        checkpoint: model.checkpoint.clone(),
        also: model.checkpoints().split_off(1),
        seen_in_training,
        groups,
        pairs: total,
        boxes: boxes_total,
        margin: req.margin,
        ensemble: req.ensemble,
        peel: req.peel,
        exemplar: req.exemplar,
        parts,
        copied_parts: (copied, self_copied),
        referenced_parts: referenced,
        context: learned_from(&infos),
        hole_pixel_error: r.hole_pixel_error,
        psnr: r.psnr,
        selftest_hole_pixel_error: s.hole_pixel_error,
        selftest_psnr: s.psnr,
        floor_pixel_error: floor_wrong as f64 / floor_n.max(1) as f64,
        baselines: Baselines {
            copy: copy.score(),
            mean_fill: mean.score(),
            selftest_mean_fill: self_mean.score(),
        },
        by_size,
        by_depth,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inpaint::apply::window_for;

    #[test]
    fn limits_and_box_cases_are_spread_evenly_and_capped() {
        let items: Vec<usize> = (0..10).collect();
        assert_eq!(evenly_spread(items.clone(), 4), [0, 2, 5, 7]);
        assert_eq!(evenly_spread(items.clone(), 1), [0]);
        assert_eq!(evenly_spread(items.clone(), 9), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(evenly_spread(items.clone(), 10), items);
        assert_eq!(evenly_spread(items.clone(), 64), items);
        assert!(evenly_spread(items, 0).is_empty());
        // 355 templates, 64 picked (the trainer's default; `--limit 64`): distinct, inside.
        let picked = evenly_spread((0..355).collect::<Vec<usize>>(), 64);
        assert_eq!(picked.len(), 64);
        assert_eq!(picked[1], 5);
        assert!(picked.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_checkpoint_ensemble_has_seen_what_any_of_its_runs_has_seen() {
        let info = |groups: &[&str], context: Option<&[&str]>| {
            Some(RunInfo {
                project: PathBuf::from("p"),
                class: String::new(),
                kind: crate::dtgan::run::RunKind::Inpaint,
                groups: groups.iter().map(|g| g.to_string()).collect(),
                init_from: None,
                context: context.map(|c| c.iter().map(|g| g.to_string()).collect()),
                held_out: None,
            })
        };
        let v = |s: &[&str]| s.iter().map(|g| g.to_string()).collect::<Vec<_>>();
        let a = info(&["g1", "g2"], None);
        let b = info(&["g2", "g3"], Some(&["g4"]));
        let c = info(&["g1"], Some(&["g5", "g4"]));
        assert_eq!(trained_on(&[a.clone(), b.clone()]), v(&["g1", "g2", "g3"]));
        // A run trained on every group, or one whose run.json is unknown: every group.
        assert!(trained_on(&[a.clone(), info(&[], None)]).is_empty());
        assert!(trained_on(&[a.clone(), None]).is_empty());
        assert_eq!(learned_from(std::slice::from_ref(&a)), None);
        assert_eq!(
            learned_from(&[a.clone(), b.clone(), c.clone()]),
            Some(v(&["g4", "g5"]))
        );
        assert_eq!(
            learned_from(&[b, info(&["g1"], Some(&[])), c]),
            Some(Vec::new())
        );
    }

    #[test]
    fn a_pair_copies_from_its_groups_other_templates_never_its_own() {
        let reference = |name: &str| Reference::new(name, RgbImage::new(4, 4));
        let mut pool = BTreeMap::new();
        pool.insert(
            "g".to_string(),
            vec![
                ("1".to_string(), reference("t1")),
                ("2".to_string(), reference("t2")),
                ("3".to_string(), reference("t3")),
            ],
        );
        pool.insert("h".to_string(), vec![("9".to_string(), reference("t9"))]);
        let names = |group: Option<&str>, id: &str| -> Vec<String> {
            let group = group.map(str::to_string);
            others(&pool, group.as_ref(), id)
                .iter()
                .map(|r| r.name.clone())
                .collect()
        };
        assert_eq!(names(Some("g"), "2"), ["t1", "t3"]);
        assert_eq!(names(Some("g"), "7"), ["t1", "t2", "t3"]);
        assert_eq!(names(Some("h"), "9"), Vec::<String>::new());
        assert_eq!(names(None, "1"), Vec::<String>::new());
    }

    #[test]
    fn tally_counts_binarised_errors_and_psnr_in_the_hole_only() {
        let truth = GrayImage::from_fn(4, 1, |x, _| Luma([if x < 2 { 0 } else { 255 }]));
        let got = GrayImage::from_fn(4, 1, |x, _| Luma([[0, 200, 255, 0][x as usize]]));
        let hole = GrayImage::from_fn(4, 1, |x, _| Luma([if x < 3 { 255 } else { 0 }]));
        let mut t = Tally::default();
        t.add(&got, &truth, &hole);
        let s = t.score();
        assert!((s.hole_pixel_error - 1.0 / 3.0).abs() < 1e-12);
        let mse: f64 = 200.0 * 200.0 / 3.0;
        assert!((s.psnr - 10.0 * (255.0f64 * 255.0 / mse).log10()).abs() < 1e-9);
    }

    #[test]
    fn tallies_by_depth_put_each_pixel_in_its_range() {
        let hole = box_hole(40, 40, &[Rect::new(0, 0, 40, 40)]);
        let depth = hole_depth(&hole, Beyond::Known);
        let truth = GrayImage::new(40, 40);
        // Wrong (bright) exactly at depth 10.
        let mut got = GrayImage::new(40, 40);
        for (i, d) in depth.iter().enumerate() {
            if *d == Some(10) {
                got.put_pixel(i as u32 % 40, i as u32 / 40, Luma([255]));
            }
        }
        let mut t = [Tally::default(); 4];
        Tally::add_by_depth(&mut t, &got, &truth, &depth);
        let n: Vec<u64> = t.iter().map(|t| t.n).collect();
        // Depths 0-3, 4-7, 8-15, 16-19 of a 40 px square: rings of 40-2d side.
        let ring = |d: u64| (40 - 2 * d).pow(2) - (38 - 2 * d).pow(2);
        assert_eq!(
            n,
            vec![
                (0..4).map(ring).sum::<u64>(),
                (4..8).map(ring).sum::<u64>(),
                (8..16).map(ring).sum::<u64>(),
                (16..20).map(ring).sum::<u64>()
            ]
        );
        assert_eq!(t[2].wrong, ring(10));
        assert_eq!(t[0].wrong + t[1].wrong + t[3].wrong, 0);
    }

    #[test]
    fn size_ranges_split_where_the_window_grows_and_where_it_is_scaled() {
        let edges = size_edges(128);
        assert_eq!(edges, [48, 64, 96]);
        let ranges: Vec<usize> = [1, 48, 49, 64, 65, 96, 97, 640]
            .iter()
            .map(|&l| size_range(&edges, l))
            .collect();
        assert_eq!(ranges, [0, 0, 1, 1, 2, 2, 3, 3]);
    }

    #[test]
    fn the_rows_marked_scaled_are_those_whose_windows_are_scaled() {
        let s = 128;
        let edges = size_edges(s);
        for long in 1..=200 {
            let (win, input) = window_for(Rect::new(200, 200, long, long / 2 + 1), (640, 640), s);
            let row = size_range(&edges, long);
            assert_eq!(input != win.w, row >= SCALED_FROM, "long side {long}");
        }
    }

    #[test]
    fn add_rect_counts_the_rect_like_a_hole() {
        let truth = GrayImage::from_fn(6, 4, |x, y| Luma([if (x + y) % 3 == 0 { 0 } else { 255 }]));
        let got = GrayImage::from_fn(6, 4, |x, _| Luma([if x < 3 { 0 } else { 255 }]));
        let r = Rect::new(1, 1, 4, 2);
        let hole = GrayImage::from_fn(6, 4, |x, y| {
            Luma([if (1..5).contains(&x) && (1..3).contains(&y) {
                255
            } else {
                0
            }])
        });
        let (mut a, mut b) = (Tally::default(), Tally::default());
        a.add(&got, &truth, &hole);
        b.add_rect(&got, &truth, r);
        assert_eq!((a.n, a.wrong), (b.n, b.wrong));
        assert_eq!(a.n, 8);
        assert!(a.wrong > 0 && a.wrong < 8, "{}", a.wrong);
        assert_eq!(a.sq, b.sq);
    }

    #[test]
    fn mean_fill_uses_the_ring() {
        let img = GrayImage::from_fn(10, 10, |x, _| Luma([if x < 5 { 0 } else { 200 }]));
        let b = Rect::new(3, 3, 4, 4);
        let out = mean_fill(&img, &[b]);
        let v = out.get_pixel(4, 4)[0];
        assert!(v > 50 && v < 150, "{v}");
        assert_eq!(out.get_pixel(0, 0)[0], 0, "outside untouched");
    }
}
