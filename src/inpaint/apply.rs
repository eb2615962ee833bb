//! Applying a trained inpainting model: filling boxes, scoring seams, making a project's
//! defect-free twins.
//!
//! Each box (connected part of the box mask) is filled in its own window centred on it, at the
//! image's own resolution: the training crop side for a box up to half of it, a larger window
//! (twice the box, a multiple of 32) for a box up to three quarters of it, and only beyond that a
//! window scaled down to the training side (see [`window_for`]). Every hole pixel not filled yet
//! is masked in that window, so no defect is ever used as context. Only the hole's pixels
//! change: outside the box mask the twin is the input, byte for byte.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use image::{GrayImage, Luma, RgbImage};
use sha2::{Digest, Sha256};

use super::config::InpaintConfig;
use super::nets::{InpaintGan, InpaintNet};
use super::train::inpaint_config;
use crate::dtgan::data::{image_tensor, mask_tensor, tensor_image};
use crate::dtgan::generate::{gray_like, resolve_checkpoint};
use crate::dtgan::model::{read_checkpoint_hashed, restore_vars};
use crate::imaging::boxes::{box_mask_from_mask, connected_components};
use crate::imaging::depth::{Beyond, hole_depth};
use crate::imaging::exemplar::{self, CopyRepeats, Reference};
use crate::imaging::io::{load_mask, load_rgb8, save_png};
use crate::imaging::rect::Rect;
use crate::nn::NnError;
use crate::nn::device::{DeviceChoice, select_device};
use crate::project::{ImageEntry, InpaintInfo, Project, RelPath, Role, TwinStatus};

/// Why filling failed.
#[derive(Debug, thiserror::Error)]
pub enum InpaintError {
    /// The model could not be loaded.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// No checkpoint in a run folder.
    #[error(transparent)]
    Generate(#[from] crate::dtgan::generate::GenerateError),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// An image or mask could not be read or written.
    #[error(transparent)]
    Imaging(#[from] crate::imaging::io::ImagingError),
    /// The project could not be read or saved.
    #[error(transparent)]
    Project(#[from] crate::project::ProjectError),
    /// Image and mask differ in size.
    #[error("{}: image is {image:?} but its box mask is {mask:?}", path.display())]
    SizeMismatch {
        /// The image.
        path: PathBuf,
        /// Image size.
        image: (u32, u32),
        /// Mask size.
        mask: (u32, u32),
    },
    /// The job was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// Checkpoints to average were trained on crops of different sides.
    #[error("{}: trained on {side} px crops, but {} on {first_side} px ones; a checkpoint ensemble needs one side", path.display(), first.display())]
    SideMismatch {
        /// The checkpoint that differs.
        path: PathBuf,
        /// Its crop side.
        side: usize,
        /// The first checkpoint.
        first: PathBuf,
        /// Its crop side.
        first_side: usize,
    },
    /// The twin's id is taken by an image that is not an inpainted twin.
    #[error("{}: image id `{id}` is taken by an image that is not an inpainted twin; rename it", manifest.display())]
    IdTaken {
        /// The id.
        id: String,
        /// The project's manifest.
        manifest: PathBuf,
    },
    /// A defect image has neither a box mask nor a pixel mask: nothing says where to fill.
    #[error("{}: the image has no box mask and no pixel mask", path.display())]
    NoMask {
        /// The image.
        path: PathBuf,
    },
    /// A twin's defect image left the project while its twin was being made.
    #[error("{}: defect image `{defect}` is no longer in the project", manifest.display())]
    DefectGone {
        /// The defect image's id.
        defect: String,
        /// The project's manifest.
        manifest: PathBuf,
    },
}

/// A trained inpainting generator, ready to fill holes; or several, whose fills are averaged.
pub struct Inpainter {
    /// The (first) run's configuration.
    pub config: InpaintConfig,
    /// The (first) checkpoint file.
    pub checkpoint: PathBuf,
    /// SHA-256 of the checkpoint file, hex; with several checkpoints, the SHA-256 of their
    /// SHA-256s (hex, one per line, in order).
    pub checkpoint_sha256: String,
    /// Fill each window as the mean of the network's fills of its eight flips and quarter turns
    /// (see [`Inpainter::with_ensemble`]).
    pub ensemble: bool,
    /// Fill in rings of this many pixels from the rim inwards, one pass each; 0: in one pass
    /// (see [`Inpainter::with_peel`]).
    pub peel: u32,
    /// Copy each part of a hole from the best-matching place elsewhere in its image where that
    /// place's surroundings match well enough (see [`Inpainter::with_exemplar`]).
    pub exemplar: Option<CopyRepeats>,
    nets: Vec<Loaded>,
    device: Device,
}

/// One checkpoint's generator, with the variables it reads.
struct Loaded {
    net: InpaintNet,
    checkpoint: PathBuf,
    sha256: String,
    _vars: VarMap,
    _buffers: VarMap,
}

impl Loaded {
    /// The generator of a run folder (its best checkpoint, else the last) or a checkpoint, and
    /// its run's configuration.
    fn load(path: &Path, device: &Device) -> Result<(InpaintConfig, Self), InpaintError> {
        let checkpoint = resolve_checkpoint(path)?;
        let (sha256, (tensors, meta)) = read_checkpoint_hashed(&checkpoint)?;
        let config = inpaint_config(&checkpoint, &meta)?;
        let vars = VarMap::new();
        let buffers = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, device);
        let net = InpaintGan::generator_only(&config.model, vb, &buffers)?;
        let bad = |msg: String| NnError::CheckpointFormat {
            path: checkpoint.clone(),
            msg,
        };
        restore_vars(&vars, "", &tensors).map_err(bad)?;
        restore_vars(&buffers, "sn.", &tensors).map_err(bad)?;
        Ok((
            config,
            Self {
                net,
                checkpoint,
                sha256,
                _vars: vars,
                _buffers: buffers,
            },
        ))
    }
}

impl Inpainter {
    /// Loads the generator of a run folder (its best checkpoint, else the last) or a checkpoint.
    pub fn load(path: &Path, device: DeviceChoice) -> Result<Self, InpaintError> {
        let device = select_device(device)?;
        let (config, first) = Loaded::load(path, &device)?;
        Ok(Self {
            config,
            checkpoint: first.checkpoint.clone(),
            checkpoint_sha256: first.sha256.clone(),
            ensemble: false,
            peel: 0,
            exemplar: None,
            nets: vec![first],
            device,
        })
    }

    /// Adds the generators of `more` run folders or checkpoints: each window is then filled
    /// with the mean of every generator's fill (a checkpoint ensemble; the compute grows with
    /// their number). They must have been trained on crops of the same side, since that decides
    /// the windows.
    pub fn with_more(mut self, more: &[PathBuf]) -> Result<Self, InpaintError> {
        for path in more {
            let (config, loaded) = Loaded::load(path, &self.device)?;
            let (side, ours) = (config.model.image_size, self.config.model.image_size);
            if side != ours {
                return Err(InpaintError::SideMismatch {
                    path: loaded.checkpoint,
                    side,
                    first: self.checkpoint.clone(),
                    first_side: ours,
                });
            }
            self.nets.push(loaded);
        }
        if self.nets.len() > 1 {
            let list: String = self
                .nets
                .iter()
                .map(|n| format!("{}\n", n.sha256))
                .collect();
            self.checkpoint_sha256 = format!("{:x}", Sha256::digest(list.as_bytes()));
        }
        Ok(self)
    }

    /// Every checkpoint whose generator fills, the first first.
    pub fn checkpoints(&self) -> Vec<PathBuf> {
        self.nets.iter().map(|n| n.checkpoint.clone()).collect()
    }

    /// With `on`, every window is filled eight times, as its eight flips and quarter turns (one
    /// batch), and the fills, turned back, are averaged: a test-time ensemble that costs eight
    /// times the compute of a plain fill.
    pub fn with_ensemble(mut self, on: bool) -> Self {
        self.ensemble = on;
        self
    }

    /// With `ring` > 0, every window's hole is filled from its rim inwards: the network fills
    /// the whole hole, the pixels less than `ring` from the known ones are kept and become
    /// known, and the rest is filled again, until a pass reaches the middle (about
    /// `depth / ring` passes, each costing a plain fill). Each pass so continues traces from
    /// the one before rather than guessing the whole middle at once.
    pub fn with_peel(mut self, ring: u32) -> Self {
        self.peel = ring;
        self
    }

    /// With `Some(how)`, each part of a hole whose surroundings occur again elsewhere in the
    /// image (mismatching by at most `how.max_mismatch`: mean absolute grey difference, as a
    /// fraction of full scale, over [`exemplar::DEFAULT_RING`] px around its box) is copied
    /// from there ([`exemplar::copy_repeats`]); the network fills the rest. A repeating
    /// pattern (a trace that goes on past the hole, a row of pads) is so continued exactly.
    pub fn with_exemplar(mut self, how: Option<CopyRepeats>) -> Self {
        self.exemplar = how;
        self
    }

    /// `image` with the pixels where `hole` is non-zero filled; every other pixel unchanged.
    pub fn fill(&self, image: &RgbImage, hole: &GrayImage) -> Result<RgbImage, InpaintError> {
        self.fill_counting(image, hole, &[]).map(|f| f.image)
    }

    /// [`Inpainter::fill`], saying how many parts of the hole were copied from a repeat
    /// ([`Inpainter::with_exemplar`]); where that copies from other images of the product too
    /// (`references`), they are searched as well.
    pub fn fill_counting(
        &self,
        image: &RgbImage,
        hole: &GrayImage,
        references: &[&Reference],
    ) -> Result<Filled, InpaintError> {
        let Some(how) = self.exemplar else {
            return Ok(Filled {
                image: self.fill_network(image, hole)?,
                copied: 0,
                from_references: 0,
            });
        };
        let c = exemplar::copy_repeats(image, hole, how, references);
        let image = if c.copied == c.parts {
            c.image
        } else {
            self.fill_network(&c.image, &c.hole)?
        };
        Ok(Filled {
            image,
            copied: c.copied,
            from_references: c.from_references,
        })
    }

    /// `image` with the hole filled by the network(s) alone.
    fn fill_network(&self, image: &RgbImage, hole: &GrayImage) -> Result<RgbImage, InpaintError> {
        Filler {
            nets: self.nets.iter().map(|n| &n.net).collect(),
            device: &self.device,
            side: self.config.model.image_size as u32,
            ensemble: self.ensemble,
            peel: self.peel,
        }
        .fill(image, hole)
    }
}

/// A filled image, and how many parts of its hole were copied from a repeat.
pub struct Filled {
    /// The image, filled.
    pub image: RgbImage,
    /// Parts of the hole copied ([`Inpainter::with_exemplar`]).
    pub copied: usize,
    /// Of those, parts copied from another image of the product.
    pub from_references: usize,
}

/// A generator in use, borrowed: [`Inpainter`] fills with its own, and the trainer validates
/// with the one it trains, so that both fill boxes the same way.
pub(crate) struct Filler<'a> {
    /// The generators (one, or a checkpoint ensemble whose fills are averaged).
    pub nets: Vec<&'a InpaintNet>,
    /// Where its weights live.
    pub device: &'a Device,
    /// The side of its training crops.
    pub side: u32,
    /// Fill each window as the mean of the fills of its eight flips and quarter turns.
    pub ensemble: bool,
    /// Fill each window in rings of this many pixels from the hole's rim inwards, one pass
    /// each (0: in one pass); see [`Inpainter::with_peel`].
    pub peel: u32,
}

impl Filler<'_> {
    /// The refined output for one window `(1, 3, n, n)` and its hole `(1, 1, n, n)`, `n` the
    /// network's input side for it ([`window_for`]).
    fn refine(&self, x: &Tensor, m: &Tensor) -> candle_core::Result<Tensor> {
        let mut sum: Option<Tensor> = None;
        for net in &self.nets {
            let y = self.refine_with(net, x, m)?;
            sum = Some(match sum {
                None => y,
                Some(s) => (s + y)?,
            });
        }
        let Some(sum) = sum else {
            candle_core::bail!("no generator to fill with");
        };
        match self.nets.len() {
            1 => Ok(sum),
            n => sum / n as f64,
        }
    }

    /// One generator's fill of the window: plain, or the mean over the eight turns.
    fn refine_with(&self, net: &InpaintNet, x: &Tensor, m: &Tensor) -> candle_core::Result<Tensor> {
        if !self.ensemble {
            return Ok(net.forward(x, m, false)?.refined);
        }
        let xs: Vec<Tensor> = (0..8).map(|k| dihedral_t(x, k)).collect::<Result<_, _>>()?;
        let ms: Vec<Tensor> = (0..8).map(|k| dihedral_t(m, k)).collect::<Result<_, _>>()?;
        let y = net
            .forward(&Tensor::cat(&xs, 0)?, &Tensor::cat(&ms, 0)?, false)?
            .refined;
        let back: Vec<Tensor> = (0..8)
            .map(|k| undo_dihedral_t(&y.narrow(0, k, 1)?, k))
            .collect::<Result<_, _>>()?;
        Tensor::cat(&back, 0)?.mean_keepdim(0)
    }

    /// One window `(1, 3, n, n)` with its hole (a 0/255 mask, `n` x `n`) completed: in one pass,
    /// or with `peel` in rings from the hole's rim inwards, each pass keeping the ring of its
    /// fill nearest the known pixels as known for the next. The hole's pixels are the last
    /// pass's fill or the ring kept earlier. Outside the hole: in one pass the network's raw
    /// output, with rings the input ([`Filler::fill`] pastes back only the hole's pixels).
    fn fill_window(&self, x: &Tensor, hole: &GrayImage) -> candle_core::Result<Tensor> {
        let mut m = mask_tensor(hole, self.device)?;
        if self.peel == 0 {
            return self.refine(x, &m);
        }
        let depth = hole_depth(hole, Beyond::Nothing);
        let deepest = depth
            .iter()
            .flatten()
            .filter(|&&d| d != u32::MAX)
            .max()
            .copied()
            .unwrap_or(0);
        let (mut x, mut hole) = (x.clone(), hole.clone());
        let mut kept = 0;
        loop {
            let y = self.refine(&x, &m)?;
            if kept + self.peel > deepest {
                return m.broadcast_mul(&y)? + (1.0 - &m)?.broadcast_mul(&x)?;
            }
            kept += self.peel;
            // The ring `[kept - peel, kept)` becomes known; the rest of the hole stays.
            let mut ring = GrayImage::new(hole.width(), hole.height());
            for ((r, h), d) in ring.pixels_mut().zip(hole.pixels_mut()).zip(&depth) {
                if matches!(d, Some(d) if *d < kept) && h[0] != 0 {
                    r[0] = 255;
                    h[0] = 0;
                }
            }
            let r = mask_tensor(&ring, self.device)?;
            x = (r.broadcast_mul(&y)? + (1.0 - &r)?.broadcast_mul(&x)?)?;
            m = mask_tensor(&hole, self.device)?;
        }
    }

    /// `image` with the pixels where `hole` is non-zero filled; every other pixel unchanged.
    pub fn fill(&self, image: &RgbImage, hole: &GrayImage) -> Result<RgbImage, InpaintError> {
        if image.dimensions() != hole.dimensions() {
            return Err(InpaintError::SizeMismatch {
                path: PathBuf::from("(image)"),
                image: image.dimensions(),
                mask: hole.dimensions(),
            });
        }
        let s = self.side;
        let mut out = image.clone();
        let mut remaining = crate::imaging::io::binarize(hole.clone());
        let (w, h) = image.dimensions();
        // A part longer than half the image's short side is filled in pieces, each inside its
        // own window (a window is at most the short side).
        let piece = (w.min(h) / 2).max(1);
        let parts: Vec<Rect> = connected_components(&remaining)
            .into_iter()
            .flat_map(|c| split_rect(c.bbox, piece))
            .collect();
        for b in parts {
            let (win, input) = window_for(b, image.dimensions(), s);
            let crop = image::imageops::crop_imm(&out, win.x, win.y, win.w, win.h).to_image();
            let crop_mask =
                image::imageops::crop_imm(&remaining, win.x, win.y, win.w, win.h).to_image();
            let (x_img, x_mask) = if win.w == input {
                (crop.clone(), crop_mask.clone())
            } else {
                (
                    image::imageops::resize(
                        &crop,
                        input,
                        input,
                        image::imageops::FilterType::Triangle,
                    ),
                    // Any hole pixel under a scaled pixel makes it a hole pixel.
                    grow_resize(&crop_mask, input),
                )
            };
            let x = image_tensor(&x_img, self.device)?.contiguous()?;
            let y = self.fill_window(&x, &x_mask)?;
            let mut filled = tensor_image(&y, 0)?;
            if win.w != input {
                filled = image::imageops::resize(
                    &filled,
                    win.w,
                    win.h,
                    image::imageops::FilterType::Triangle,
                );
            }
            gray_like(&mut filled, &crop);
            for yy in b.y.max(win.y)..b.bottom().min(win.bottom()) {
                for xx in b.x.max(win.x)..b.right().min(win.right()) {
                    if remaining.get_pixel(xx, yy)[0] != 0 {
                        out.put_pixel(xx, yy, *filled.get_pixel(xx - win.x, yy - win.y));
                        remaining.put_pixel(xx, yy, Luma([0]));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The ring width, px, of the studio's *Rim inwards* fill ([`Inpainter::with_peel`]). Measured
/// on DeepPCB's unseen pairs (one checkpoint of the `cpu` preset): 8 px rings took 0.6 points
/// off the hole pixel error at 3.3 times a plain fill's time, 4 px 1.0 at 6.2 times, 2 px 1.2
/// at more than twice the 4 px rings' time.
pub const RIM_RING: u32 = 4;

/// The longest box side, as a fraction of the training side, that is still filled at the image's
/// own resolution (in a window larger than the training crop). Measured on DeepPCB (step 7,624
/// of the CPU run, 128 px network): boxes of 65-96 px fill better natively in a 160-192 px
/// window (5.2 % hole pixel error against 5.57 % scaled down); longer ones fill better scaled
/// down (6.05 % against 8.44 % natively): holes that much larger than any seen in training
/// defeat the network.
pub const NATIVE_MAX: (u32, u32) = (3, 4);

/// The window (square, inside the image when it fits) in which `bbox` is filled, in an image of
/// `(w, h)` pixels by a network trained on `s`-pixel crops, and the side the network sees it at
/// (the window's own side unless it is scaled).
///
/// - A box up to `s / 2` long: a window of side `s`, as in training.
/// - Up to `NATIVE_MAX` of `s`: a window of twice the box's long side rounded up to a multiple of
///   32 (like every training side), at native resolution, when the image holds it.
/// - Longer: a window of twice the box's long side, scaled down to `s`, so that the hole fills
///   half the network's input as in training.
/// - An image whose short side is below the window's: the window is that short side, scaled to
///   `s` (up, when the image is smaller than `s`). [`Inpainter::fill`] cuts boxes longer than
///   half the short side into pieces first, so the window still holds the box.
pub fn window_for(bbox: Rect, (w, h): (u32, u32), s: u32) -> (Rect, u32) {
    let longest = bbox.w.max(bbox.h);
    let short = w.min(h);
    let twice = s.max(2 * longest);
    let native = twice.div_ceil(32) * 32;
    let (side, input) = if longest * NATIVE_MAX.1 <= s * NATIVE_MAX.0 && native <= short {
        (native, native)
    } else {
        (twice.min(short).max(1), s)
    };
    let place = |start: u32, len: u32, limit: u32| {
        (start + len / 2).saturating_sub(side / 2).min(limit - side)
    };
    (
        Rect::new(
            place(bbox.x, bbox.w, w),
            place(bbox.y, bbox.h, h),
            side,
            side,
        ),
        input,
    )
}

/// Element `k` (0..8) of the symmetries of the square applied to the last two axes of `t`
/// (which must be equal for a transposition): bit 0 flips the columns, bit 1 the rows, bit 2
/// transposes after the flips.
fn dihedral_t(t: &Tensor, k: usize) -> candle_core::Result<Tensor> {
    let mut out = t.clone();
    if k & 1 != 0 {
        out = out.flip(&[3])?;
    }
    if k & 2 != 0 {
        out = out.flip(&[2])?;
    }
    if k & 4 != 0 {
        out = out.transpose(2, 3)?;
    }
    out.contiguous()
}

/// The inverse of [`dihedral_t`]`(_, k)`: the transposition undone first, then the flips.
fn undo_dihedral_t(t: &Tensor, k: usize) -> candle_core::Result<Tensor> {
    let mut out = t.clone();
    if k & 4 != 0 {
        // candle's flip needs a contiguous tensor.
        out = out.transpose(2, 3)?.contiguous()?;
    }
    if k & 2 != 0 {
        out = out.flip(&[2])?;
    }
    if k & 1 != 0 {
        out = out.flip(&[3])?;
    }
    out.contiguous()
}

/// `r` cut into pieces of at most `piece` pixels a side, row by row.
fn split_rect(r: Rect, piece: u32) -> Vec<Rect> {
    let mut out = Vec::new();
    let mut y = r.y;
    while y < r.bottom() {
        let ph = piece.min(r.bottom() - y);
        let mut x = r.x;
        while x < r.right() {
            let pw = piece.min(r.right() - x);
            out.push(Rect::new(x, y, pw, ph));
            x += pw;
        }
        y += ph;
    }
    out
}

/// Resizes a 0/255 mask to `side` x `side` so that a target pixel is a hole pixel when any
/// source pixel under it is.
fn grow_resize(mask: &GrayImage, side: u32) -> GrayImage {
    let (w, h) = mask.dimensions();
    let mut out = GrayImage::new(side, side);
    for y in 0..h {
        for x in 0..w {
            if mask.get_pixel(x, y)[0] != 0 {
                let (tx, ty) = (x * side / w.max(1), y * side / h.max(1));
                out.put_pixel(tx.min(side - 1), ty.min(side - 1), Luma([255]));
            }
        }
    }
    // Pixels of a downscale can fall between the marks of a sparse hole: close the gaps.
    crate::dtgan::generate::dilate(&out, 1)
}

fn luma(p: &image::Rgb<u8>) -> f64 {
    0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])
}

/// How visible the border of the filled region is: the RMS brightness step across the border of
/// `hole` (pairs of 4-neighbours, one in, one out) divided by the RMS step between
/// 4-neighbours elsewhere (both outside). About 1 for an invisible seam; a seam scores higher.
/// Zero when there is no border (no hole, or no pixel outside it).
pub fn seam_score(image: &RgbImage, hole: &GrayImage) -> f64 {
    let (w, h) = image.dimensions();
    let inside = |x: u32, y: u32| hole.get_pixel(x, y)[0] != 0;
    let (mut seam, mut seam_n, mut rest, mut rest_n) = (0.0, 0u64, 0.0, 0u64);
    for y in 0..h {
        for x in 0..w {
            let a = luma(image.get_pixel(x, y));
            for (nx, ny) in [(x + 1, y), (x, y + 1)] {
                if nx >= w || ny >= h {
                    continue;
                }
                let d = a - luma(image.get_pixel(nx, ny));
                match (inside(x, y), inside(nx, ny)) {
                    (true, false) | (false, true) => {
                        seam += d * d;
                        seam_n += 1;
                    }
                    (false, false) => {
                        rest += d * d;
                        rest_n += 1;
                    }
                    (true, true) => {}
                }
            }
        }
    }
    if seam_n == 0 || rest_n == 0 {
        return 0.0;
    }
    let typical = (rest / rest_n as f64).sqrt().max(1.0);
    (seam / seam_n as f64).sqrt() / typical
}

/// The seam score above which a twin is flagged: the median plus three robust standard
/// deviations (1.4826 MAD) of `scores`, and never below 1.5.
pub fn seam_outlier_threshold(scores: &[f64]) -> f64 {
    if scores.is_empty() {
        return f64::INFINITY;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let m = median(&mut scores.to_vec());
    let mut dev: Vec<f64> = scores.iter().map(|s| (s - m).abs()).collect();
    let mad = median(&mut dev);
    (m + 3.0 * 1.4826 * mad).max(1.5)
}

/// What to make twins for.
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    /// The run folder or checkpoint.
    pub run: PathBuf,
    /// More run folders or checkpoints whose fills are averaged with `run`'s
    /// ([`Inpainter::with_more`]).
    pub also: Vec<PathBuf>,
    /// The project.
    pub project: PathBuf,
    /// Only defect images showing this class (all when `None`).
    pub class: Option<String>,
    /// Also remake twins that were accepted already.
    pub redo_accepted: bool,
    /// Where to compute.
    pub device: DeviceChoice,
    /// Fill with the eight-fold flip-and-turn ensemble ([`Inpainter::with_ensemble`]).
    pub ensemble: bool,
    /// Fill from the rim inwards in rings of this many pixels ([`Inpainter::with_peel`]); 0: in
    /// one pass.
    pub peel: u32,
    /// Copy boxes from repeats of their surroundings ([`Inpainter::with_exemplar`]).
    pub exemplar: Option<CopyRepeats>,
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplySummary {
    /// Twins made (new or remade), pending review.
    pub made: usize,
    /// Defect images skipped because they have a real template.
    pub real_twin: usize,
    /// Defect images skipped because their twin was accepted already.
    pub accepted: usize,
    /// Defect images with no box mask and no pixel mask.
    pub no_mask: usize,
    /// Seam score above which twins are flagged.
    pub threshold: f64,
    /// Twins above it.
    pub flagged: usize,
    /// Boxes (parts of the box masks) of the twins made that were copied from repeats.
    pub copied: usize,
    /// Of those, boxes copied from other images of the group.
    pub referenced: usize,
}

/// Id of the inpainted twin of defect image `id`.
pub fn twin_id(id: &str) -> String {
    format!("{id}~twin")
}

/// Makes the inpainted twins of a project's defect images (status `pending review`), writing
/// the manifest after each image, so that a crash loses at most the image in progress.
/// `progress(done, total)` after each image; `cancelled()` is checked between images.
pub fn apply_project(
    req: &ApplyRequest,
    progress: &mut dyn FnMut(usize, usize),
    cancelled: &dyn Fn() -> bool,
) -> Result<ApplySummary, InpaintError> {
    let mut project = Project::open(&req.project)?;
    let mut summary = ApplySummary::default();
    let todo = plan_twins(&project, req, &mut summary);
    let maker = TwinMaker::new(req, project.clone())?;
    let mut counted = ApplySummary::default();
    summary.made = maker.make_all(&todo, progress, cancelled, &mut |defect, twin| {
        counted.count_copies(&twin);
        record_twin(&mut project, defect, twin)?;
        project.save()?;
        Ok(())
    })?;
    (summary.copied, summary.referenced) = (counted.copied, counted.referenced);
    summary.score_seams(&project);
    Ok(summary)
}

/// The defect images of `project` that `req` makes twins for, counting in `summary` those it
/// skips: images with a real template, with an accepted twin (unless remade), or with no mask.
pub fn plan_twins(
    project: &Project,
    req: &ApplyRequest,
    summary: &mut ApplySummary,
) -> Vec<ImageEntry> {
    let m = &project.manifest;
    let mut todo = Vec::new();
    for e in &m.images {
        let wanted = e.role == Role::Defect
            && e.synthetic.is_none()
            && req
                .class
                .as_ref()
                .is_none_or(|c| e.classes().contains(c.as_str()));
        if !wanted {
            continue;
        }
        match e.twin.as_deref().and_then(|t| m.image(t)) {
            Some(t) if t.is_real_template() => summary.real_twin += 1,
            Some(t) if t.twin_status == Some(TwinStatus::Accepted) && !req.redo_accepted => {
                summary.accepted += 1
            }
            _ if e.box_mask.is_none() && e.mask.is_none() => summary.no_mask += 1,
            _ => todo.push(e.clone()),
        }
    }
    todo
}

/// Fills defect images' boxes with a loaded model and writes the twins' images into a project
/// folder. It reads the project only for paths and the box margin, so it may work on a copy
/// while the manifest itself is kept elsewhere (the studio's worker).
pub struct TwinMaker {
    model: Inpainter,
    project: Project,
    /// The defect-free images each group's fills may copy from, loaded on first use.
    references: std::sync::Mutex<HashMap<String, Arc<Vec<Reference>>>>,
}

impl TwinMaker {
    /// Loads the model of `req.run` for writing twins into `project`.
    pub fn new(req: &ApplyRequest, project: Project) -> Result<Self, InpaintError> {
        Ok(Self {
            model: Inpainter::load(&req.run, req.device)?
                .with_more(&req.also)?
                .with_ensemble(req.ensemble)
                .with_peel(req.peel)
                .with_exemplar(req.exemplar),
            project,
            references: Default::default(),
        })
    }

    /// The good images and real templates of `group` (at most [`exemplar::MAX_REFERENCES`],
    /// evenly spread by id) when fills copy from other images ([`CopyRepeats::references`]);
    /// else none.
    fn references(&self, group: &str) -> Result<Arc<Vec<Reference>>, InpaintError> {
        if !self.model.exemplar.is_some_and(|x| x.references) {
            return Ok(Arc::default());
        }
        let mut cache = self
            .references
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(refs) = cache.get(group) {
            return Ok(Arc::clone(refs));
        }
        let mut refs = Vec::new();
        for e in reference_images(&self.project.manifest.images, group) {
            let image = load_rgb8(&self.project.abs(&e.path))?;
            refs.push(Reference::new(e.id.clone(), image));
        }
        let refs = Arc::new(refs);
        cache.insert(group.to_string(), Arc::clone(&refs));
        Ok(refs)
    }

    /// Makes the twin of one defect image: fills its boxes, writes the image, and returns the
    /// twin's manifest entry (pending review, with its seam score).
    pub fn make(&self, entry: &ImageEntry) -> Result<ImageEntry, InpaintError> {
        let project = &self.project;
        let image_path = project.abs(&entry.path);
        let image = load_rgb8(&image_path)?;
        let hole = match (&entry.box_mask, &entry.mask) {
            (Some(b), _) => load_mask(&project.abs(b))?,
            (None, Some(m)) => {
                box_mask_from_mask(&load_mask(&project.abs(m))?, project.manifest.box_margin)
            }
            (None, None) => return Err(InpaintError::NoMask { path: image_path }),
        };
        if hole.dimensions() != image.dimensions() {
            return Err(InpaintError::SizeMismatch {
                path: image_path,
                image: image.dimensions(),
                mask: hole.dimensions(),
            });
        }
        let pool = self.references(&entry.group)?;
        let references: Vec<&Reference> = pool.iter().collect();
        let filled = self.model.fill_counting(&image, &hole, &references)?;
        let twin = filled.image;
        let seam = seam_score(&twin, &hole);
        let rel = twin_path(&entry.id);
        let abs = project.ensure_parent(&rel)?;
        save_png(&abs, &image::DynamicImage::ImageRgb8(twin))?;
        let mut t = ImageEntry::new(twin_id(&entry.id), rel, Role::Template, &entry.group);
        t.width = image.width();
        t.height = image.height();
        t.class = entry.class.clone();
        t.twin_of = Some(entry.id.clone());
        t.twin_status = Some(TwinStatus::PendingReview);
        t.inpaint = Some(InpaintInfo {
            checkpoint: self.model.checkpoint_sha256.clone(),
            seam,
            ensemble: self.model.ensemble,
            peel: self.model.peel,
            exemplar: self.model.exemplar,
            copied: filled.copied,
            referenced: filled.from_references,
        });
        Ok(t)
    }

    /// Makes the twins of `todo` in order, handing each to `record(defect id, twin)`; returns how
    /// many it made. `progress(done, total)` after each image; `cancelled()` is checked between
    /// images.
    pub fn make_all(
        &self,
        todo: &[ImageEntry],
        progress: &mut dyn FnMut(usize, usize),
        cancelled: &dyn Fn() -> bool,
        record: &mut dyn FnMut(&str, ImageEntry) -> Result<(), InpaintError>,
    ) -> Result<usize, InpaintError> {
        let total = todo.len();
        for (done, entry) in todo.iter().enumerate() {
            if cancelled() {
                return Err(InpaintError::Cancelled);
            }
            progress(done, total);
            record(&entry.id, self.make(entry)?)?;
        }
        progress(total, total);
        Ok(total)
    }
}

/// The images of `group` that fills may copy from ([`CopyRepeats::references`]): its good
/// images and real templates, never a generated image or an inpainted twin; at most
/// [`exemplar::MAX_REFERENCES`], evenly spread by id.
pub fn reference_images<'a>(images: &'a [ImageEntry], group: &str) -> Vec<&'a ImageEntry> {
    let mut found: Vec<&ImageEntry> = images
        .iter()
        .filter(|e| {
            e.group == group
                && e.synthetic.is_none()
                && (e.role == Role::Good || (e.role == Role::Template && e.is_real_template()))
        })
        .collect();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    super::eval::evenly_spread(found, exemplar::MAX_REFERENCES)
}

/// Puts a made twin into the manifest (replacing an earlier inpainted twin of the same id) and
/// links its defect image to it. An id held by any other image is an error.
pub fn record_twin(
    project: &mut Project,
    defect: &str,
    twin: ImageEntry,
) -> Result<(), InpaintError> {
    let manifest = project.manifest_path();
    let m = &mut project.manifest;
    let Some(i) = m.index_of(defect) else {
        return Err(InpaintError::DefectGone {
            defect: defect.to_owned(),
            manifest,
        });
    };
    let id = twin.id.clone();
    match m.index_of(&id) {
        Some(j) if m.images[j].inpaint.is_some() => m.images[j] = twin,
        Some(_) => return Err(InpaintError::IdTaken { id, manifest }),
        None => m.images.push(twin),
    }
    m.images[i].twin = Some(id);
    Ok(())
}

impl ApplySummary {
    /// Counts the boxes a made twin copied from repeats.
    pub fn count_copies(&mut self, twin: &ImageEntry) {
        if let Some(info) = &twin.inpaint {
            self.copied += info.copied;
            self.referenced += info.referenced;
        }
    }

    /// What the copying did, for the end of an apply: `None` when no box was copied.
    pub fn copies_line(&self) -> Option<String> {
        match (self.copied, self.referenced) {
            (0, _) => None,
            (c, 0) => Some(format!("{c} boxes copied from repeats")),
            (c, r) => Some(format!(
                "{c} boxes copied from repeats, {r} of them from other images of the group"
            )),
        }
    }

    /// Sets the seam threshold and the number of twins above it, over all inpainted twins of
    /// `project`.
    pub fn score_seams(&mut self, project: &Project) {
        let scores: Vec<f64> = project
            .manifest
            .images
            .iter()
            .filter_map(|e| e.inpaint.as_ref().map(|p| p.seam))
            .collect();
        self.threshold = seam_outlier_threshold(&scores);
        self.flagged = scores.iter().filter(|&&s| s > self.threshold).count();
    }
}

/// Where the twin of defect image `id` is stored.
pub fn twin_path(id: &str) -> RelPath {
    // Ids that differ only in characters a file name cannot hold get different files.
    let hash = format!("{:x}", Sha256::digest(id.as_bytes()));
    let p = Project::default_mask_path(id);
    let stem = &p.as_str()["masks/".len()..p.as_str().len() - ".png".len()];
    RelPath::new(format!("twins/{stem}-{}.png", &hash[..8]))
        .unwrap_or_else(|_| RelPath::new("twins/_.png").expect("constant path is valid"))
}

/// Sets the review status of twins (by twin id); returns how many changed. Real templates
/// (no inpainting record) are left alone.
pub fn set_twin_status(project: &mut Project, ids: &[String], status: TwinStatus) -> usize {
    let mut changed = 0;
    for e in &mut project.manifest.images {
        if e.inpaint.is_some() && ids.contains(&e.id) && e.twin_status != Some(status) {
            e.twin_status = Some(status);
            changed += 1;
        }
    }
    changed
}

#[cfg(test)]
mod tests;
