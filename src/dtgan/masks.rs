//! Mask sources for generation: random blobs with size, place and shape ranges, and real masks
//! stamped at a random place with a random flip, quarter turn and scale.

use image::{GrayImage, Luma};
use rand::Rng;

use crate::dtgan::generate::mask_bbox;

/// Ranges of a random blob.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BlobSpec {
    /// Mean radius in pixels, drawn in this range.
    pub radius: (f32, f32),
    /// Ratio of the long axis to the short one (1 = round), drawn in this range.
    pub elongation: (f32, f32),
    /// How irregular the outline is: amplitude of its harmonics, relative to the radius.
    pub wobble: f32,
}

impl Default for BlobSpec {
    fn default() -> Self {
        Self {
            radius: (4.0, 16.0),
            elongation: (1.0, 3.0),
            wobble: 0.25,
        }
    }
}

/// Uniform in `[lo, hi]`, tolerating `lo == hi` and swapped bounds.
fn uniform(rng: &mut impl Rng, (a, b): (f32, f32)) -> f32 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    lo + (hi - lo) * rng.random::<f32>()
}

/// A random blob anywhere in a `w` x `h` image (kept inside it), as a 0/255 mask.
pub fn random_blob(w: u32, h: u32, spec: &BlobSpec, rng: &mut impl Rng) -> GrayImage {
    let r = uniform(rng, spec.radius).max(1.0);
    let e = uniform(rng, spec.elongation).max(1.0);
    let angle = rng.random::<f32>() * std::f32::consts::PI;
    let harmonics: Vec<(f32, f32, f32)> = (2..6)
        .map(|k| {
            let amp = spec.wobble * rng.random::<f32>() / (k as f32 - 1.0);
            (k as f32, amp, rng.random::<f32>() * std::f32::consts::TAU)
        })
        .collect();
    let (a, b) = (r * e.sqrt(), r / e.sqrt());
    let reach = a * (1.0 + spec.wobble * 2.0);
    let cx = reach.min(w as f32 / 2.0) + rng.random::<f32>() * (w as f32 - 2.0 * reach).max(0.0);
    let cy = reach.min(h as f32 / 2.0) + rng.random::<f32>() * (h as f32 - 2.0 * reach).max(0.0);
    let (sin, cos) = angle.sin_cos();
    let mut mask = GrayImage::new(w, h);
    for (x, y, p) in mask.enumerate_pixels_mut() {
        let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
        // Into the blob's frame, then onto the unit circle.
        let (u, v) = ((cos * dx + sin * dy) / a, (-sin * dx + cos * dy) / b);
        let theta = v.atan2(u);
        let radius = 1.0
            + harmonics
                .iter()
                .map(|(k, amp, ph)| amp * (k * theta + ph).cos())
                .sum::<f32>();
        if (u * u + v * v).sqrt() <= radius {
            *p = Luma([255]);
        }
    }
    mask
}

/// A real mask's defect, cut to its box, flipped, turned by a multiple of 90 degrees, scaled by
/// a factor in `scale`, and placed at a random spot of a `w` x `h` image. `None` when the mask
/// is empty or its defect cannot fit.
pub fn stamp_mask(
    src: &GrayImage,
    w: u32,
    h: u32,
    scale: (f32, f32),
    rng: &mut impl Rng,
) -> Option<GrayImage> {
    let bbox = mask_bbox(src)?;
    let mut cut = image::imageops::crop_imm(src, bbox.x, bbox.y, bbox.w, bbox.h).to_image();
    if rng.random_bool(0.5) {
        cut = image::imageops::flip_horizontal(&cut);
    }
    cut = match rng.random_range(0..4) {
        1 => image::imageops::rotate90(&cut),
        2 => image::imageops::rotate180(&cut),
        3 => image::imageops::rotate270(&cut),
        _ => cut,
    };
    let s = uniform(rng, scale).max(0.05);
    let (cw, ch) = (
        ((cut.width() as f32 * s).round() as u32).max(1),
        ((cut.height() as f32 * s).round() as u32).max(1),
    );
    if cw > w || ch > h {
        return None;
    }
    let cut = image::imageops::resize(&cut, cw, ch, image::imageops::FilterType::Nearest);
    let x = rng.random_range(0..=w - cw);
    let y = rng.random_range(0..=h - ch);
    let mut mask = GrayImage::new(w, h);
    for (px, py, p) in cut.enumerate_pixels() {
        if p[0] >= 128 {
            mask.put_pixel(x + px, y + py, Luma([255]));
        }
    }
    Some(mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn blobs_respect_their_size_range_and_stay_inside() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let spec = BlobSpec {
            radius: (5.0, 10.0),
            elongation: (1.0, 1.0),
            wobble: 0.0,
        };
        for _ in 0..20 {
            let m = random_blob(96, 64, &spec, &mut rng);
            let area = crate::imaging::io::mask_area(&m) as f32;
            let pi = std::f32::consts::PI;
            assert!(
                area >= 0.8 * pi * 25.0 && area <= 1.2 * pi * 100.0,
                "area {area}"
            );
            let b = mask_bbox(&m).expect("not empty");
            assert!(b.right() <= 96 && b.bottom() <= 64);
            assert!(m.pixels().all(|p| p[0] == 0 || p[0] == 255));
        }
    }

    #[test]
    fn stamps_keep_the_defect_area_up_to_scale() {
        let mut src = GrayImage::new(40, 40);
        for y in 5..9 {
            for x in 10..22 {
                src.put_pixel(x, y, Luma([255]));
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..20 {
            let m = stamp_mask(&src, 50, 30, (1.0, 1.0), &mut rng).expect("fits");
            assert_eq!(
                crate::imaging::io::mask_area(&m),
                48,
                "area kept at scale 1"
            );
            let b = mask_bbox(&m).expect("not empty");
            assert!((b.w, b.h) == (12, 4) || (b.w, b.h) == (4, 12), "{b:?}");
        }
        assert!(
            stamp_mask(&src, 8, 8, (1.0, 1.0), &mut rng).is_none(),
            "too big to fit"
        );
        assert!(stamp_mask(&GrayImage::new(9, 9), 50, 50, (1.0, 1.0), &mut rng).is_none());
    }
}
