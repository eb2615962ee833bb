//! Training data of the inpainting GAN: defect-free images of chosen groups, cut into random
//! crops with a random square hole each.
//!
//! Defect-free means a `good` image or a real template (an inpainted twin is never used: the
//! network would learn its own mistakes). Decoded images are cached up to a memory budget.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use image::RgbImage;
use rand::Rng;

use super::config::InpaintConfig;
use crate::dtgan::data::image_tensor;
use crate::imaging::io::load_rgb8;
use crate::project::{Project, Role};

/// Decoded images kept in memory, in bytes.
const CACHE_BYTES: usize = 1 << 30;

/// Why an inpainting run has no data.
#[derive(Debug, thiserror::Error)]
pub enum InpaintDataError {
    /// No defect-free image in the chosen groups.
    #[error("no defect-free images (good images or real templates) in {0}")]
    NoImages(String),
    /// An image is too small for the training crops.
    #[error("{}: {w}x{h} pixels is less than half the {side} px training crops", path.display())]
    TooSmall {
        /// The file.
        path: PathBuf,
        /// Width.
        w: u32,
        /// Height.
        h: u32,
        /// The crop side.
        side: usize,
    },
    /// A file could not be read.
    #[error(transparent)]
    Imaging(#[from] crate::imaging::io::ImagingError),
}

/// The defect-free images of `groups` (every group when empty), sorted by id, as (id, file).
pub fn collect_images(
    project: &Project,
    groups: &[String],
) -> Result<Vec<(String, PathBuf)>, InpaintDataError> {
    let mut out: Vec<(String, PathBuf)> = project
        .manifest
        .images
        .iter()
        .filter(|e| {
            let clean = e.role == Role::Good || (e.role == Role::Template && e.is_real_template());
            clean && e.synthetic.is_none() && (groups.is_empty() || groups.contains(&e.group))
        })
        .map(|e| (e.id.clone(), project.abs(&e.path)))
        .collect();
    if out.is_empty() {
        let which = if groups.is_empty() {
            "the project".to_string()
        } else {
            format!("group(s) {}", groups.join(", "))
        };
        return Err(InpaintDataError::NoImages(which));
    }
    out.sort();
    Ok(out)
}

/// A hole: top, left, height, width, in crop pixels.
pub type Hole = (usize, usize, usize, usize);

/// One training example: a crop and its hole.
#[derive(Debug, Clone)]
pub struct Example {
    /// The defect-free crop, `image_size` square.
    pub image: RgbImage,
    /// The hole.
    pub hole: Hole,
}

/// Draws examples from a set of images, decoding each once while the cache has room.
pub struct ImageSampler {
    images: Vec<(String, PathBuf)>,
    cache: HashMap<usize, Arc<RgbImage>>,
    cached_bytes: usize,
}

impl ImageSampler {
    /// A sampler over `images`.
    pub fn new(images: Vec<(String, PathBuf)>) -> Self {
        Self {
            images,
            cache: HashMap::new(),
            cached_bytes: 0,
        }
    }

    /// The images.
    pub fn images(&self) -> &[(String, PathBuf)] {
        &self.images
    }

    fn load(&mut self, i: usize) -> Result<Arc<RgbImage>, InpaintDataError> {
        if let Some(img) = self.cache.get(&i) {
            return Ok(img.clone());
        }
        let img = Arc::new(load_rgb8(&self.images[i].1)?);
        let bytes = img.as_raw().len();
        if self.cached_bytes + bytes <= CACHE_BYTES {
            self.cached_bytes += bytes;
            self.cache.insert(i, img.clone());
        }
        Ok(img)
    }

    /// A random example: random image, crop, flips / quarter turns, hole.
    pub fn sample(
        &mut self,
        cfg: &InpaintConfig,
        rng: &mut impl Rng,
    ) -> Result<Example, InpaintDataError> {
        let i = rng.random_range(0..self.images.len());
        let img = self.load(i)?;
        let s = cfg.model.image_size;
        let (lo, hi) = cfg.crop_side_scale;
        let scale = if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            lo
        };
        let (w, h) = img.dimensions();
        let side = ((s as f32 * scale).round() as u32).min(w).min(h);
        if (w.min(h) as usize) < s / 2 {
            return Err(InpaintDataError::TooSmall {
                path: self.images[i].1.clone(),
                w,
                h,
                side: s,
            });
        }
        let x = rng.random_range(0..=w - side);
        let y = rng.random_range(0..=h - side);
        let mut crop = image::imageops::crop_imm(img.as_ref(), x, y, side, side).to_image();
        if side as usize != s {
            crop = image::imageops::resize(
                &crop,
                s as u32,
                s as u32,
                image::imageops::FilterType::Triangle,
            );
        }
        if cfg.flip {
            if rng.random_bool(0.5) {
                image::imageops::flip_horizontal_in_place(&mut crop);
            }
            if rng.random_bool(0.5) {
                image::imageops::flip_vertical_in_place(&mut crop);
            }
            if rng.random_bool(0.5) {
                crop = image::imageops::rotate90(&crop);
            }
        }
        Ok(Example {
            image: crop,
            hole: random_hole(cfg, rng),
        })
    }
}

/// Checks from the file headers that every image is at least half the crop side, so that a bad
/// image stops a run at its start, not when it is first drawn hours later.
pub fn check_sizes(images: &[(String, PathBuf)], side: usize) -> Result<(), InpaintDataError> {
    for (_, path) in images {
        let (w, h) = crate::imaging::io::read_dimensions(path)?;
        if (w.min(h) as usize) < side / 2 {
            return Err(InpaintDataError::TooSmall {
                path: path.clone(),
                w,
                h,
                side,
            });
        }
    }
    Ok(())
}

/// A random square hole inside a crop of `image_size` pixels.
pub fn random_hole(cfg: &InpaintConfig, rng: &mut impl Rng) -> Hole {
    let s = cfg.model.image_size;
    let (lo, hi) = cfg.hole_fraction;
    let frac = if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    };
    let side = ((s as f32 * frac).round() as usize).clamp(1, s / 2);
    let y = rng.random_range(0..=s - side);
    let x = rng.random_range(0..=s - side);
    (y, x, side, side)
}

/// Weights of the spatially discounted L1 for a hole of `h x w` pixels: `gamma` to the power of
/// the distance to the nearer border, along whichever axis is nearer (DeepFill v1).
pub fn discount(h: usize, w: usize, gamma: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(h * w);
    for i in 0..h {
        for j in 0..w {
            let di = (i + 1).min(h - i) as f64 - 1.0;
            let dj = (j + 1).min(w - j) as f64 - 1.0;
            out.push(gamma.powf(di).max(gamma.powf(dj)) as f32);
        }
    }
    out
}

/// A batch on the device.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The defect-free crops, `(B, C, S, S)` in [-1, 1].
    pub image: Tensor,
    /// 1 in the holes, `(B, 1, S, S)`.
    pub mask: Tensor,
    /// The discounted-L1 weights, 0 outside the holes, `(B, 1, S, S)`.
    pub discount: Tensor,
    /// The holes.
    pub holes: Vec<Hole>,
}

/// Stacks examples into a batch.
pub fn batch(examples: &[Example], gamma: f64, device: &Device) -> candle_core::Result<Batch> {
    let mut images = Vec::with_capacity(examples.len());
    let mut masks = Vec::new();
    let mut discounts = Vec::new();
    let mut holes = Vec::with_capacity(examples.len());
    let mut side = 0;
    for e in examples {
        images.push(image_tensor(&e.image, device)?);
        let s = e.image.width() as usize;
        side = s;
        let (y, x, h, w) = e.hole;
        let d = discount(h, w, gamma);
        let mut m = vec![0f32; s * s];
        let mut dv = vec![0f32; s * s];
        for i in 0..h {
            for j in 0..w {
                m[(y + i) * s + x + j] = 1.0;
                dv[(y + i) * s + x + j] = d[i * w + j];
            }
        }
        masks.extend(m);
        discounts.extend(dv);
        holes.push(e.hole);
    }
    let n = examples.len();
    Ok(Batch {
        image: Tensor::cat(&images, 0)?.contiguous()?,
        mask: Tensor::from_vec(masks, (n, 1, side, side), device)?,
        discount: Tensor::from_vec(discounts, (n, 1, side, side), device)?,
        holes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discount_is_one_on_the_border_and_falls_inside() {
        let d = discount(5, 7, 0.9);
        assert_eq!(d[0], 1.0);
        assert_eq!(d[3], 1.0, "top row");
        let centre = d[2 * 7 + 3];
        assert!((centre - 0.81).abs() < 1e-6, "{centre}");
        assert!(d.iter().all(|&v| v > 0.0 && v <= 1.0));
    }
}
