//! The one affine warp every augmentation geometry is reduced to.
//!
//! Each output pixel is mapped back to a source position (inverse mapping), so crop, resize,
//! rotation and flips cost a single resampling. Coordinates are continuous: pixel `(x, y)` covers
//! `[x, x + 1) x [y, y + 1)` and its centre is `(x + 0.5, y + 0.5)`. Positions outside the source
//! take the nearest border pixel (replicate), for images and masks alike.

use image::{GrayImage, RgbImage};

/// `source = (m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5])` for an output position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    /// Row-major coefficients of the 2x3 matrix.
    pub m: [f64; 6],
}

impl Affine {
    /// Maps a continuous position.
    pub fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let m = &self.m;
        (m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5])
    }

    /// The inverse map, or `None` when the matrix is singular.
    pub fn inverse(&self) -> Option<Affine> {
        let m = &self.m;
        let det = m[0] * m[4] - m[1] * m[3];
        if det.abs() < 1e-12 || !det.is_finite() {
            return None;
        }
        let (a, b, c, d) = (m[4] / det, -m[1] / det, -m[3] / det, m[0] / det);
        Some(Affine {
            m: [a, b, -(a * m[2] + b * m[5]), c, d, -(c * m[2] + d * m[5])],
        })
    }

    /// Coefficients from output pixel indices to source pixel indices (centres at integers).
    fn on_indices(&self) -> [f64; 6] {
        let m = &self.m;
        [
            m[0],
            m[1],
            m[2] + 0.5 * (m[0] + m[1]) - 0.5,
            m[3],
            m[4],
            m[5] + 0.5 * (m[3] + m[4]) - 0.5,
        ]
    }
}

/// Bilinear taps of one source position: the four pixel offsets (in pixels) and 8-bit weights,
/// plus the nearest of the four, all clamped to the image (border replicated).
struct Taps {
    idx: [usize; 4],
    wx: u32,
    wy: u32,
    nearest: usize,
}

impl Taps {
    fn at(sx: f64, sy: f64, w: i64, h: i64) -> Taps {
        let (x0f, y0f) = (sx.floor(), sy.floor());
        // Weights in 1/256ths: 0 exactly on a pixel centre, so an identity warp copies bytes.
        let wx = ((sx - x0f) * 256.0).round().clamp(0.0, 256.0) as u32;
        let wy = ((sy - y0f) * 256.0).round().clamp(0.0, 256.0) as u32;
        // `as` saturates, so far-away positions clamp like near ones.
        let (x0, y0) = (x0f as i64, y0f as i64);
        let (xa, xb) = (x0.clamp(0, w - 1), x0.saturating_add(1).clamp(0, w - 1));
        let (ya, yb) = (y0.clamp(0, h - 1), y0.saturating_add(1).clamp(0, h - 1));
        let idx = [
            (ya * w + xa) as usize,
            (ya * w + xb) as usize,
            (yb * w + xa) as usize,
            (yb * w + xb) as usize,
        ];
        // The nearest pixel is the tap with the largest weight, so the mask follows the images.
        let nearest = idx[usize::from(wx >= 128) + 2 * usize::from(wy >= 128)];
        Taps {
            idx,
            wx,
            wy,
            nearest,
        }
    }

    /// Bilinear blend of one channel of `C`-channel pixels.
    fn blend<const C: usize>(&self, data: &[u8], c: usize) -> u8 {
        let p = |k: usize| data[self.idx[k] * C + c] as u32;
        let top = p(0) * (256 - self.wx) + p(1) * self.wx;
        let bottom = p(2) * (256 - self.wx) + p(3) * self.wx;
        ((top * (256 - self.wy) + bottom * self.wy + 32_768) >> 16) as u8
    }
}

/// Warps twin, defect (bilinear) and mask (nearest, so a binary mask stays binary) to
/// `size` x `size` in one pass sharing every source position. All three must have one size.
pub(crate) fn warp_triple(
    twin: &RgbImage,
    defect: &RgbImage,
    mask: &GrayImage,
    map: &Affine,
    size: u32,
) -> (RgbImage, RgbImage, GrayImage) {
    let (w, h) = (i64::from(twin.width()), i64::from(twin.height()));
    let (src_a, src_b, src_m) = (twin.as_raw(), defect.as_raw(), mask.as_raw());
    let m = map.on_indices();
    let (mut out_a, mut out_b) = (RgbImage::new(size, size), RgbImage::new(size, size));
    let mut out_m = GrayImage::new(size, size);
    let n = size as usize;
    let rows = out_a
        .chunks_exact_mut(n * 3)
        .zip(out_b.chunks_exact_mut(n * 3))
        .zip(out_m.chunks_exact_mut(n));
    for (j, ((row_a, row_b), row_m)) in rows.enumerate() {
        let (bx, by) = (m[1] * j as f64 + m[2], m[4] * j as f64 + m[5]);
        for i in 0..n {
            let taps = Taps::at(m[0] * i as f64 + bx, m[3] * i as f64 + by, w, h);
            for c in 0..3 {
                row_a[i * 3 + c] = taps.blend::<3>(src_a, c);
                row_b[i * 3 + c] = taps.blend::<3>(src_b, c);
            }
            row_m[i] = src_m[taps.nearest];
        }
    }
    (out_a, out_b, out_m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_undoes_the_map() {
        let map = Affine {
            m: [0.8, -0.3, 12.0, 0.25, 1.1, -4.0],
        };
        let inv = map.inverse().expect("regular matrix");
        let (x, y) = map.apply(3.5, 17.25);
        let (bx, by) = inv.apply(x, y);
        assert!((bx - 3.5).abs() < 1e-9 && (by - 17.25).abs() < 1e-9);
        assert!(
            Affine {
                m: [1.0, 2.0, 0.0, 2.0, 4.0, 0.0]
            }
            .inverse()
            .is_none()
        );
    }

    #[test]
    fn half_pixel_shift_averages_and_border_replicates() {
        let src = RgbImage::from_fn(4, 1, |x, _| image::Rgb([(x * 60) as u8, 0, 255]));
        let shift = Affine {
            m: [1.0, 0.0, 0.5, 0.0, 1.0, 0.0],
        };
        let mask = GrayImage::from_fn(4, 1, |x, _| image::Luma([if x == 1 { 255 } else { 0 }]));
        let (out, same, out_mask) = warp_triple(&src, &src, &mask, &shift, 4);
        assert_eq!(out, same);
        // Sampling halfway between pixels: the tie goes to the right-hand one.
        assert_eq!(out_mask.as_raw()[..4], [255, 0, 0, 0]);
        let reds: Vec<u8> = out.pixels().take(4).map(|p| p[0]).collect();
        // 0.5 px right: averages of neighbours, the last pixel replicated past the border.
        assert_eq!(reds, vec![30, 90, 150, 180]);
        let far = Affine {
            m: [1.0, 0.0, -1e30, 0.0, 1.0, 0.0],
        };
        let (out, _, _) = warp_triple(&src, &src, &mask, &far, 2);
        assert!(out.pixels().all(|p| p[0] == 0 && p[2] == 255));
    }
}
