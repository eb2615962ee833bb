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

/// Warps an RGB image to `size` x `size`, bilinear, border replicated.
pub(crate) fn warp_rgb_bilinear(src: &RgbImage, map: &Affine, size: u32) -> RgbImage {
    let (w, h) = (i64::from(src.width()), i64::from(src.height()));
    let data = src.as_raw();
    let m = map.on_indices();
    let mut out = RgbImage::new(size, size);
    let row_len = size as usize * 3;
    for (j, row) in out.chunks_exact_mut(row_len).enumerate() {
        let (bx, by) = (m[1] * j as f64 + m[2], m[4] * j as f64 + m[5]);
        for (i, px) in row.chunks_exact_mut(3).enumerate() {
            let (sx, sy) = (m[0] * i as f64 + bx, m[3] * i as f64 + by);
            let (x0f, y0f) = (sx.floor(), sy.floor());
            let (fx, fy) = ((sx - x0f) as f32, (sy - y0f) as f32);
            // `as` saturates, so far-away positions clamp like near ones.
            let (x0, y0) = (x0f as i64, y0f as i64);
            let (xa, xb) = (x0.clamp(0, w - 1), (x0 + 1).clamp(0, w - 1));
            let (ya, yb) = (y0.clamp(0, h - 1), (y0 + 1).clamp(0, h - 1));
            let at = |x: i64, y: i64| ((y * w + x) * 3) as usize;
            let (p00, p10, p01, p11) = (at(xa, ya), at(xb, ya), at(xa, yb), at(xb, yb));
            for (c, v) in px.iter_mut().enumerate() {
                let top = lerp(data[p00 + c], data[p10 + c], fx);
                let bottom = lerp(data[p01 + c], data[p11 + c], fx);
                *v = (top + fy * (bottom - top) + 0.5) as u8;
            }
        }
    }
    out
}

/// Warps a grey image (a mask) to `size` x `size`, nearest neighbour, border replicated, so a
/// binary mask stays binary.
pub(crate) fn warp_gray_nearest(src: &GrayImage, map: &Affine, size: u32) -> GrayImage {
    let (w, h) = (i64::from(src.width()), i64::from(src.height()));
    let data = src.as_raw();
    let m = map.on_indices();
    let mut out = GrayImage::new(size, size);
    for (j, row) in out.chunks_exact_mut(size as usize).enumerate() {
        let (bx, by) = (m[1] * j as f64 + m[2], m[4] * j as f64 + m[5]);
        for (i, v) in row.iter_mut().enumerate() {
            let (sx, sy) = (m[0] * i as f64 + bx, m[3] * i as f64 + by);
            // The nearest pixel is the bilinear tap with the largest weight, so mask and images agree.
            let x = ((sx + 0.5).floor() as i64).clamp(0, w - 1);
            let y = ((sy + 0.5).floor() as i64).clamp(0, h - 1);
            *v = data[(y * w + x) as usize];
        }
    }
    out
}

fn lerp(a: u8, b: u8, t: f32) -> f32 {
    let a = f32::from(a);
    a + t * (f32::from(b) - a)
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
        let out = warp_rgb_bilinear(&src, &shift, 4);
        let reds: Vec<u8> = out.pixels().take(4).map(|p| p[0]).collect();
        // 0.5 px right: averages of neighbours, the last pixel replicated past the border.
        assert_eq!(reds, vec![30, 90, 150, 180]);
        let far = Affine {
            m: [1.0, 0.0, -1e30, 0.0, 1.0, 0.0],
        };
        assert!(
            warp_rgb_bilinear(&src, &far, 2)
                .pixels()
                .all(|p| p[0] == 0 && p[2] == 255)
        );
    }
}
