//! Photometric changes applied identically to both images of a pair, never to the mask.
//!
//! CLAHE tables are computed on the defect-free twin's luma and each RGB channel of both images is
//! mapped through them. That choice over "equalise luma, then scale RGB by the luma gain": a
//! monotone table per channel needs no division (dark pixels would blow the gain up), keeps every
//! channel in 0..=255 without re-clipping, and on the grey-looking inspection images this studio
//! targets (R = G = B) it is exactly grey CLAHE. Using the twin's tables for both images means
//! identical pixels at the same place get identical outputs, so the defect only differs where the
//! inputs differ; tables per image would let the defect's pixels shift the whole tile.

use image::RgbImage;

use crate::imaging::clahe::{ClaheError, clahe_luts, luma};

/// The photometric draw of one augmentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Photometric {
    /// Whether CLAHE was applied.
    pub clahe: bool,
    /// Multiplicative brightness factor (1 = unchanged).
    pub brightness: f32,
    /// Contrast factor about the twin's mean luma (1 = unchanged).
    pub contrast: f32,
}

impl Photometric {
    /// No change at all.
    pub const NONE: Photometric = Photometric {
        clahe: false,
        brightness: 1.0,
        contrast: 1.0,
    };
}

/// Applies `p` to `twin` and `defect` in place, everything derived from `twin`.
pub(crate) fn apply(
    p: &Photometric,
    clahe_tiles: u32,
    clahe_clip: f32,
    twin: &mut RgbImage,
    defect: &mut RgbImage,
) -> Result<(), ClaheError> {
    if p.clahe {
        let luts = clahe_luts(&luma(twin), clahe_tiles, clahe_clip)?;
        luts.apply_rgb(twin)?;
        luts.apply_rgb(defect)?;
    }
    if p.brightness != 1.0 || p.contrast != 1.0 {
        let lut = brightness_contrast_lut(mean_luma(twin), p.brightness, p.contrast);
        for v in twin.iter_mut().chain(defect.iter_mut()) {
            *v = lut[usize::from(*v)];
        }
    }
    Ok(())
}

/// `((v - mean) * contrast + mean) * brightness`, rounded and clamped, for every grey level.
fn brightness_contrast_lut(mean: f32, brightness: f32, contrast: f32) -> [u8; 256] {
    let mut lut = [0u8; 256];
    for (v, out) in lut.iter_mut().enumerate() {
        let x = ((v as f32 - mean) * contrast + mean) * brightness;
        *out = x.round().clamp(0.0, 255.0) as u8;
    }
    lut
}

/// Mean Rec. 601 luma, the contrast pivot (computed without building a grey image).
fn mean_luma(image: &RgbImage) -> f32 {
    let sum: u64 = image
        .as_raw()
        .chunks_exact(3)
        .map(|p| 299 * u64::from(p[0]) + 587 * u64::from(p[1]) + 114 * u64::from(p[2]))
        .sum();
    let n = (image.as_raw().len() / 3).max(1) as f64;
    (sum as f64 / 1000.0 / n) as f32
}
