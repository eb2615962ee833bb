//! Training data: (defect-free twin, defect image, pixel mask) triples of one class.
//!
//! A defect image qualifies when it shows the class, has a pixel mask, and has a twin that is a
//! real template or an inpainted twin accepted in seam QA. When an image also shows defects of
//! other classes (DeepPCB has 3 to 12 per image), those are removed from the target by pasting the twin's pixels over their
//! boxes, and the mask keeps only the class's own regions: the generator learns one class.
//! Decoded triples are cached up to a memory budget; the rest are decoded again when drawn.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use image::{GrayImage, Rgb, RgbImage};
use rand::Rng;

use super::config::TrainConfig;
use crate::imaging::augment::{
    AugmentConfig, AugmentParams, Geometry, Photometric, Triple, apply_params, augment,
};
use crate::imaging::boxes::connected_components;
use crate::imaging::io::{load_mask_for, load_rgb8};
use crate::imaging::rect::Rect;
use crate::project::{Project, Role, TwinStatus};

/// Margin, in pixels, added around other classes' boxes before the twin is pasted over them.
const OTHER_MARGIN: u32 = 3;
/// Decoded triples kept in memory, in bytes.
const CACHE_BYTES: usize = 1 << 30;

/// Why a class cannot be trained.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Nothing usable.
    #[error("class `{class}` has no usable training pairs: {detail}")]
    NoPairs {
        /// The class.
        class: String,
        /// Counts of what was missing.
        detail: String,
    },
    /// A file could not be read.
    #[error(transparent)]
    Imaging(#[from] crate::imaging::io::ImagingError),
    /// Inconsistent sizes or augmentation settings.
    #[error("{id}: {source}")]
    Augment {
        /// The defect image's id.
        id: String,
        /// What went wrong.
        source: crate::imaging::augment::AugmentError,
    },
}

/// Where one training pair's files are.
#[derive(Debug, Clone, PartialEq)]
pub struct PairRef {
    /// The defect image's id.
    pub id: String,
    /// The defect-free twin.
    pub twin: PathBuf,
    /// The defect image.
    pub defect: PathBuf,
    /// Its pixel mask.
    pub mask: PathBuf,
    /// Boxes of this class's regions (empty: the whole mask is this class).
    pub regions: Vec<Rect>,
    /// Boxes of other classes' regions, to be erased from the target.
    pub others: Vec<Rect>,
}

/// Finds the training pairs of `class`, sorted by id.
pub fn collect_pairs(project: &Project, class: &str) -> Result<Vec<PairRef>, DataError> {
    let m = &project.manifest;
    let by_id: HashMap<&str, _> = m.images.iter().map(|e| (e.id.as_str(), e)).collect();
    let (mut shown, mut no_mask, mut no_twin, mut rejected) = (0, 0, 0, 0);
    let mut pairs = Vec::new();
    for e in &m.images {
        if e.role != Role::Defect || e.synthetic.is_some() || !e.classes().contains(class) {
            continue;
        }
        shown += 1;
        let Some(mask) = &e.mask else {
            no_mask += 1;
            continue;
        };
        let Some(twin) = e.twin.as_deref().and_then(|t| by_id.get(t)) else {
            no_twin += 1;
            continue;
        };
        if !twin.twin_trains() || e.twin_status == Some(TwinStatus::Rejected) {
            rejected += 1;
            continue;
        }
        let (regions, others) = if e.regions.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let (mine, theirs): (Vec<_>, Vec<_>) = e.regions.iter().partition(|r| r.class == class);
            (
                mine.iter().map(|r| r.bbox).collect(),
                theirs.iter().map(|r| r.bbox).collect(),
            )
        };
        pairs.push(PairRef {
            id: e.id.clone(),
            twin: project.abs(&twin.path),
            defect: project.abs(&e.path),
            mask: project.abs(mask),
            regions,
            others,
        });
    }
    if pairs.is_empty() {
        let detail = if shown == 0 {
            "no defect image shows it".to_string()
        } else {
            format!(
                "{shown} defect images show it: {no_mask} have no pixel mask, {no_twin} have no \
                 defect-free twin (import templates or inpaint twins first), {rejected} have a \
                 twin not accepted in seam QA"
            )
        };
        return Err(DataError::NoPairs {
            class: class.to_string(),
            detail,
        });
    }
    pairs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(pairs)
}

/// A decoded pair, ready to be cropped.
#[derive(Debug, Clone)]
pub struct LoadedPair {
    /// Twin, target (other classes erased) and mask (this class only).
    pub triple: Triple,
    /// Where the defects are: crops are centred near one of these.
    pub focus: Vec<Rect>,
}

/// Decodes a pair and prepares it for one class.
pub fn load_pair(pair: &PairRef) -> Result<LoadedPair, DataError> {
    let twin = load_rgb8(&pair.twin)?;
    let mut defect = load_rgb8(&pair.defect)?;
    let mut mask = load_mask_for(&pair.mask, &pair.defect, defect.dimensions())?;
    if twin.dimensions() != defect.dimensions() {
        return Err(DataError::Augment {
            id: pair.id.clone(),
            source: crate::imaging::augment::AugmentError::SizeMismatch {
                twin: twin.dimensions(),
                defect: defect.dimensions(),
                mask: mask.dimensions(),
            },
        });
    }
    let (w, h) = defect.dimensions();
    for r in &pair.others {
        let r = r.grown_clipped(OTHER_MARGIN, w, h);
        for y in r.y..r.bottom() {
            for x in r.x..r.right() {
                defect.put_pixel(x, y, *twin.get_pixel(x, y));
            }
        }
    }
    if !pair.regions.is_empty() {
        let keep = |x: u32, y: u32| pair.regions.iter().any(|r| r.contains(x, y));
        for (x, y, p) in mask.enumerate_pixels_mut() {
            if !keep(x, y) {
                p.0[0] = 0;
            }
        }
    }
    let focus = if pair.regions.is_empty() {
        connected_components(&mask).iter().map(|c| c.bbox).collect()
    } else {
        pair.regions.clone()
    };
    let focus = if focus.is_empty() {
        vec![Rect::new(0, 0, w, h)]
    } else {
        focus
    };
    Ok(LoadedPair {
        triple: Triple { twin, defect, mask },
        focus,
    })
}

/// Draws augmented training crops from a set of pairs, caching decoded pairs.
pub struct Sampler {
    pairs: Vec<PairRef>,
    cache: HashMap<usize, Arc<LoadedPair>>,
    cache_bytes: usize,
}

impl Sampler {
    /// A sampler over `pairs` (must not be empty).
    pub fn new(pairs: Vec<PairRef>) -> Self {
        Self {
            pairs,
            cache: HashMap::new(),
            cache_bytes: 0,
        }
    }

    /// The pairs drawn from.
    pub fn pairs(&self) -> &[PairRef] {
        &self.pairs
    }

    /// The decoded pair `i`, from the cache when it is there.
    pub fn get(&mut self, i: usize) -> Result<Arc<LoadedPair>, DataError> {
        if let Some(p) = self.cache.get(&i) {
            return Ok(p.clone());
        }
        let loaded = Arc::new(load_pair(&self.pairs[i])?);
        let (w, h) = loaded.triple.defect.dimensions();
        let bytes = (w * h) as usize * 7;
        if self.cache_bytes + bytes <= CACHE_BYTES {
            self.cache_bytes += bytes;
            self.cache.insert(i, loaded.clone());
        }
        Ok(loaded)
    }

    /// One augmented crop of a random pair, centred near one of its defects.
    pub fn sample(&mut self, cfg: &TrainConfig, rng: &mut impl Rng) -> Result<Triple, DataError> {
        let i = rng.random_range(0..self.pairs.len());
        let pair = self.get(i)?;
        let focus = pair.focus[rng.random_range(0..pair.focus.len())];
        let (w, h) = pair.triple.defect.dimensions();
        let (lo, hi) = cfg.crop_side_scale;
        let side = cfg.model.image_size as f32 * rng.random_range(lo..=hi);
        let scale = ((side * side) / (w as f32 * h as f32)).clamp(1e-6, 1.0);
        let aug = AugmentConfig {
            out_size: cfg.model.image_size as u32,
            crop_scale: (scale, scale),
            crop_ratio: (1.0, 1.0),
            max_rotation_deg: cfg.max_rotation_deg,
            hflip: cfg.flip,
            vflip: cfg.flip,
            clahe_probability: cfg.clahe_probability,
            brightness: cfg.brightness,
            contrast: cfg.contrast,
            ..AugmentConfig::default()
        };
        augment(&pair.triple, &aug, Some(focus), rng).map_err(|source| DataError::Augment {
            id: self.pairs[i].id.clone(),
            source,
        })
    }
}

/// A fixed crop of `side` source pixels centred on `focus` (moved inside the image), resized
/// to `out` pixels: no rotation, flip or photometric change. Used for validation and samples.
pub fn center_crop(pair: &LoadedPair, side: usize, out: usize) -> Result<Triple, DataError> {
    let (w, h) = pair.triple.defect.dimensions();
    let f = pair.focus[0];
    let side = (side as f64).min(f64::from(w)).min(f64::from(h));
    let half = side / 2.0;
    let cx = (f64::from(f.x) + f64::from(f.w) / 2.0).clamp(half, f64::from(w) - half);
    let cy = (f64::from(f.y) + f64::from(f.h) / 2.0).clamp(half, f64::from(h) - half);
    let params = AugmentParams {
        geometry: Geometry {
            source: (w, h),
            center: (cx, cy),
            size: (side, side),
            rotation_deg: 0.0,
            hflip: false,
            vflip: false,
            out_size: out as u32,
        },
        photometric: Photometric::NONE,
    };
    apply_params(&pair.triple, &params, &AugmentConfig::identity(out as u32)).map_err(|source| {
        DataError::Augment {
            id: "validation crop".into(),
            source,
        }
    })
}

/// An RGB image as a `(1, 3, H, W)` tensor in [-1, 1].
pub fn image_tensor(img: &RgbImage, device: &Device) -> candle_core::Result<Tensor> {
    let (w, h) = img.dimensions();
    let data: Vec<f32> = img
        .as_raw()
        .iter()
        .map(|&v| f32::from(v) / 127.5 - 1.0)
        .collect();
    Tensor::from_vec(data, (1, h as usize, w as usize, 3), device)?.permute((0, 3, 1, 2))
}

/// A 0/255 mask as a `(1, 1, H, W)` tensor of 0 and 1.
pub fn mask_tensor(mask: &GrayImage, device: &Device) -> candle_core::Result<Tensor> {
    let (w, h) = mask.dimensions();
    let data: Vec<f32> = mask
        .as_raw()
        .iter()
        .map(|&v| if v >= 128 { 1.0 } else { 0.0 })
        .collect();
    Tensor::from_vec(data, (1, 1, h as usize, w as usize), device)
}

/// Stacks triples into `(twin, real, mask)` batch tensors.
pub fn batch_tensors(
    triples: &[Triple],
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let mut twins = Vec::with_capacity(triples.len());
    let mut reals = Vec::with_capacity(triples.len());
    let mut masks = Vec::with_capacity(triples.len());
    for t in triples {
        twins.push(image_tensor(&t.twin, device)?);
        reals.push(image_tensor(&t.defect, device)?);
        masks.push(mask_tensor(&t.mask, device)?);
    }
    Ok((
        Tensor::cat(&twins, 0)?.contiguous()?,
        Tensor::cat(&reals, 0)?.contiguous()?,
        Tensor::cat(&masks, 0)?,
    ))
}

/// The first image of a `(B, 3, H, W)` tensor in [-1, 1] as 8-bit RGB (values rounded).
pub fn tensor_image(t: &Tensor, index: usize) -> candle_core::Result<RgbImage> {
    let x = t.get(index)?.permute((1, 2, 0))?.contiguous()?;
    let (h, w, _) = x.dims3()?;
    let v: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let mut img = RgbImage::new(w as u32, h as u32);
    for (i, p) in img.pixels_mut().enumerate() {
        let px = |c: usize| ((v[3 * i + c] + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
        *p = Rgb([px(0), px(1), px(2)]);
    }
    Ok(img)
}
