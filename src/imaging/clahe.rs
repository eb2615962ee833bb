//! Contrast-limited adaptive histogram equalisation (CLAHE).
//!
//! The image is cut into a `tiles` x `tiles` grid; each tile gets a lookup table (LUT) from its
//! clipped, equalised histogram, and every pixel is mapped through the bilinear blend of the LUTs
//! of the four tiles whose centres surround it (one or two tiles near the border). Computing the
//! tables ([`clahe_luts`]) is separate from applying them ([`ClaheLuts::apply_gray`],
//! [`ClaheLuts::apply_rgb`]) so the augmenter can compute them on one image of a pair and map both
//! images through the very same tables.
//!
//! The clip limit follows OpenCV's convention: a multiple of the mean bin count (`area / 256`).
//! Counts above it are cut and spread evenly over all bins, which bounds the slope of every LUT to
//! `(clip + 1) * 255 / 256` grey levels per input level (plus one for rounding).

use image::{GrayImage, RgbImage};

/// Most tiles per side accepted; more would leave tiles of a few pixels with meaningless histograms.
pub const MAX_TILES: u32 = 64;

/// Invalid CLAHE arguments.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClaheError {
    /// The image has no pixel.
    #[error("CLAHE needs a non-empty image, got {width}x{height}")]
    EmptyImage {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The tile count is 0 or above [`MAX_TILES`].
    #[error("CLAHE tiles per side must be 1..={MAX_TILES}, got {0}")]
    Tiles(u32),
    /// The clip limit is not a finite number >= 1.
    #[error("CLAHE clip limit must be a finite number >= 1, got {0}")]
    Clip(f32),
    /// The image to map is not the size the tables were computed for.
    #[error("CLAHE tables were computed for {expected_w}x{expected_h}, image is {width}x{height}")]
    SizeMismatch {
        /// Width the tables were computed for.
        expected_w: u32,
        /// Height the tables were computed for.
        expected_h: u32,
        /// Width of the image given.
        width: u32,
        /// Height of the image given.
        height: u32,
    },
}

/// Per-tile lookup tables of one image, ready to map that image or any image of the same size.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaheLuts {
    width: u32,
    height: u32,
    tiles_x: u32,
    tiles_y: u32,
    /// Row-major, `tiles_x * tiles_y` tables.
    luts: Vec<[u8; 256]>,
}

/// Computes the CLAHE tables of `gray` on a `tiles` x `tiles` grid with clip limit `clip`.
///
/// The grid is reduced to at most one tile per pixel on each axis for tiny images.
pub fn clahe_luts(gray: &GrayImage, tiles: u32, clip: f32) -> Result<ClaheLuts, ClaheError> {
    let (width, height) = gray.dimensions();
    if width == 0 || height == 0 {
        return Err(ClaheError::EmptyImage { width, height });
    }
    if tiles == 0 || tiles > MAX_TILES {
        return Err(ClaheError::Tiles(tiles));
    }
    if !clip.is_finite() || clip < 1.0 {
        return Err(ClaheError::Clip(clip));
    }
    let tiles_x = tiles.min(width);
    let tiles_y = tiles.min(height);
    let mut luts = Vec::with_capacity((tiles_x * tiles_y) as usize);
    for ty in 0..tiles_y {
        let (y0, y1) = tile_span(ty, tiles_y, height);
        for tx in 0..tiles_x {
            let (x0, x1) = tile_span(tx, tiles_x, width);
            let mut hist = [0u32; 256];
            for y in y0..y1 {
                let row = &gray.as_raw()[(y * width) as usize..((y + 1) * width) as usize];
                for &v in &row[x0 as usize..x1 as usize] {
                    hist[usize::from(v)] += 1;
                }
            }
            luts.push(equalising_lut(&hist, clip));
        }
    }
    Ok(ClaheLuts {
        width,
        height,
        tiles_x,
        tiles_y,
        luts,
    })
}

/// Convenience: CLAHE of a grey image in one call.
pub fn clahe(gray: &GrayImage, tiles: u32, clip: f32) -> Result<GrayImage, ClaheError> {
    let luts = clahe_luts(gray, tiles, clip)?;
    let mut out = gray.clone();
    luts.apply_gray(&mut out)?;
    Ok(out)
}

/// Rec. 601 luma of an RGB image, the grey image CLAHE tables of a colour image are computed on.
pub fn luma(rgb: &RgbImage) -> GrayImage {
    let (width, height) = rgb.dimensions();
    let data = rgb
        .as_raw()
        .chunks_exact(3)
        .map(|p| {
            let sum = 299 * u32::from(p[0]) + 587 * u32::from(p[1]) + 114 * u32::from(p[2]);
            ((sum + 500) / 1000) as u8
        })
        .collect();
    GrayImage::from_raw(width, height, data).unwrap_or_else(|| GrayImage::new(width, height))
}

/// Rows (or columns) `start..end` of tile `t` of `n` along a side of `len` pixels.
fn tile_span(t: u32, n: u32, len: u32) -> (u32, u32) {
    let span = |k: u32| (u64::from(k) * u64::from(len) / u64::from(n)) as u32;
    (span(t), span(t + 1))
}

/// Clips `hist`, spreads the excess evenly and turns the result into a cumulative LUT.
///
/// Done in floating point: an integer clip limit would be 1 for small tiles whatever `clip` says,
/// and tiles of unequal size would map the same grey level differently.
fn equalising_lut(hist: &[u32; 256], clip: f32) -> [u8; 256] {
    let area = f64::from(hist.iter().sum::<u32>().max(1));
    let limit = f64::from(clip) * area / 256.0;
    let excess: f64 = hist.iter().map(|&h| (f64::from(h) - limit).max(0.0)).sum();
    let spread = excess / 256.0;
    let scale = 255.0 / area;
    let mut lut = [0u8; 256];
    let mut cumulative = 0.0;
    for (out, &h) in lut.iter_mut().zip(hist.iter()) {
        cumulative += f64::from(h).min(limit) + spread;
        *out = (cumulative * scale).round().min(255.0) as u8;
    }
    lut
}

/// Where one pixel sits between tile centres along one axis: the two tiles and the second's weight.
#[derive(Clone, Copy)]
struct Blend {
    lo: usize,
    hi: usize,
    /// Weight of `hi` in 1/256ths; fixed point keeps the per-pixel loop in integers.
    w_hi: u32,
}

/// The blend of every pixel along a side of `len` pixels cut into `n` tiles.
fn blends(len: u32, n: u32) -> Vec<Blend> {
    let tile = f64::from(len) / f64::from(n);
    let last = n as usize - 1;
    (0..len)
        .map(|p| {
            // Tile coordinate of the pixel centre, 0.0 at the first tile's centre.
            let g = (f64::from(p) + 0.5) / tile - 0.5;
            let lo = g.floor();
            let w_hi = ((g - lo) * 256.0).round() as u32;
            // Before the first centre or past the last one both ends clamp to the same tile.
            let clamp = |t: f64| (t.max(0.0) as usize).min(last);
            Blend {
                lo: clamp(lo),
                hi: clamp(lo + 1.0),
                w_hi,
            }
        })
        .collect()
}

impl ClaheLuts {
    /// Width and height of the image the tables were computed for.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Tiles along x and y actually used (the grid asked for, reduced for tiny images).
    pub fn tiles(&self) -> (u32, u32) {
        (self.tiles_x, self.tiles_y)
    }

    /// The table of tile `(tx, ty)`, or `None` outside the grid.
    pub fn lut(&self, tx: u32, ty: u32) -> Option<&[u8; 256]> {
        if tx >= self.tiles_x || ty >= self.tiles_y {
            return None;
        }
        self.luts.get((ty * self.tiles_x + tx) as usize)
    }

    /// Maps a grey image in place.
    pub fn apply_gray(&self, image: &mut GrayImage) -> Result<(), ClaheError> {
        self.check_size(image.dimensions())?;
        self.map_interleaved::<1>(image);
        Ok(())
    }

    /// Maps each channel of an RGB image in place through the same tables.
    pub fn apply_rgb(&self, image: &mut RgbImage) -> Result<(), ClaheError> {
        self.check_size(image.dimensions())?;
        self.map_interleaved::<3>(image);
        Ok(())
    }

    fn check_size(&self, (width, height): (u32, u32)) -> Result<(), ClaheError> {
        if (width, height) == (self.width, self.height) {
            return Ok(());
        }
        Err(ClaheError::SizeMismatch {
            expected_w: self.width,
            expected_h: self.height,
            width,
            height,
        })
    }

    /// Maps `C`-channel interleaved pixels, row by row; the caller checked the size.
    fn map_interleaved<const C: usize>(&self, data: &mut [u8]) {
        let cols = blends(self.width, self.tiles_x);
        let rows = blends(self.height, self.tiles_y);
        let tx = self.tiles_x as usize;
        let row_len = self.width as usize * C;
        for (row, by) in data.chunks_exact_mut(row_len).zip(&rows) {
            let (top, bottom) = (by.lo * tx, by.hi * tx);
            for (pixel, bx) in row.chunks_exact_mut(C).zip(&cols) {
                let (l00, l01) = (&self.luts[top + bx.lo], &self.luts[top + bx.hi]);
                let (l10, l11) = (&self.luts[bottom + bx.lo], &self.luts[bottom + bx.hi]);
                let (wx, wy) = (bx.w_hi, by.w_hi);
                for v in pixel.iter_mut() {
                    let i = usize::from(*v);
                    let upper = u32::from(l00[i]) * (256 - wx) + u32::from(l01[i]) * wx;
                    let lower = u32::from(l10[i]) * (256 - wx) + u32::from(l11[i]) * wx;
                    *v = ((upper * (256 - wy) + lower * wy + 32_768) >> 16) as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random grey image with values in `lo..=hi`.
    fn noise(width: u32, height: u32, lo: u8, hi: u8) -> GrayImage {
        let span = u32::from(hi - lo) + 1;
        GrayImage::from_fn(width, height, |x, y| {
            let h = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663))
                .wrapping_mul(2_654_435_761);
            image::Luma([lo + ((h >> 16) % span) as u8])
        })
    }

    fn mean_std(data: &[u8]) -> (f64, f64) {
        let n = data.len() as f64;
        let mean = data.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = data
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var.sqrt())
    }

    #[test]
    fn constant_image_stays_constant() {
        for value in [0u8, 17, 128, 255] {
            // Equal tiles give equal tables, so the output is exactly constant.
            let image = GrayImage::from_pixel(48, 32, image::Luma([value]));
            let out = clahe(&image, 4, 2.0).expect("valid arguments");
            let first = out.as_raw()[0];
            assert!(out.as_raw().iter().all(|&v| v == first), "value {value}");
            // Unequal tiles (50 / 3, 37 / 3): the tables are normalised by the tile area, so at
            // most a rounding step apart.
            let image = GrayImage::from_pixel(50, 37, image::Luma([value]));
            let out = clahe(&image, 3, 2.0).expect("valid arguments");
            let (lo, hi) = out
                .iter()
                .fold((255, 0), |(lo, hi), &v| (v.min(lo), v.max(hi)));
            assert!(hi - lo <= 1, "value {value}: {lo}..={hi}");
        }
    }

    #[test]
    fn low_contrast_image_gets_a_wider_histogram() {
        let image = noise(64, 64, 110, 130);
        let out = clahe(&image, 4, 3.0).expect("valid arguments");
        let range =
            |d: &[u8]| d.iter().max().copied().unwrap_or(0) - d.iter().min().copied().unwrap_or(0);
        assert!(range(out.as_raw()) > 3 * range(image.as_raw()));
        assert!(mean_std(out.as_raw()).1 > 3.0 * mean_std(image.as_raw()).1);
    }

    #[test]
    fn single_tile_keeps_a_ramp_monotone() {
        let ramp = GrayImage::from_fn(256, 8, |x, _| image::Luma([x as u8]));
        let out = clahe(&ramp, 1, 2.0).expect("valid arguments");
        for row in out.as_raw().chunks_exact(256) {
            assert!(row.windows(2).all(|w| w[0] <= w[1]));
        }
        assert!(out.as_raw()[255] > out.as_raw()[0]);
    }

    #[test]
    fn ramp_stays_monotone_within_each_tile() {
        // Inside the border half-tiles only one LUT column applies, so a ramp along x must stay
        // monotone there; between centres the blend weights move too, so only the border is exact.
        let ramp = GrayImage::from_fn(256, 64, |x, _| image::Luma([x as u8]));
        let luts = clahe_luts(&ramp, 4, 2.0).expect("valid arguments");
        let mut out = ramp.clone();
        luts.apply_gray(&mut out).expect("same size");
        for row in out.as_raw().chunks_exact(256) {
            assert!(row[..32].windows(2).all(|w| w[0] <= w[1]));
            assert!(row[224..].windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn mapping_is_monotone_in_the_value_at_every_pixel() {
        let source = noise(60, 45, 0, 255);
        let luts = clahe_luts(&source, 4, 2.5).expect("valid arguments");
        let low = noise(60, 45, 0, 200);
        let mut high = low.clone();
        for v in high.iter_mut() {
            *v = v.saturating_add(37);
        }
        let (mut low_out, mut high_out) = (low.clone(), high.clone());
        luts.apply_gray(&mut low_out).expect("same size");
        luts.apply_gray(&mut high_out).expect("same size");
        assert!(low_out.iter().zip(high_out.iter()).all(|(a, b)| a <= b));
        assert_ne!(low_out, high_out);
    }

    fn max_step(luts: &ClaheLuts) -> u8 {
        let (tx, ty) = luts.tiles();
        (0..ty)
            .flat_map(|y| (0..tx).map(move |x| (x, y)))
            .filter_map(|(x, y)| luts.lut(x, y))
            .flat_map(|lut| lut.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn clip_limit_bounds_the_slope() {
        // Two grey levels 1 apart: plain equalisation would jump by about half the range.
        let image = GrayImage::from_fn(64, 64, |x, _| {
            image::Luma([if x % 2 == 0 { 100 } else { 101 }])
        });
        for clip in [1.0f32, 2.0, 4.0] {
            let luts = clahe_luts(&image, 2, clip).expect("valid arguments");
            let bound = f64::from(clip + 1.0) * 255.0 / 256.0 + 1.0;
            assert!(f64::from(max_step(&luts)) <= bound, "clip {clip}");
        }
        let unclipped = clahe_luts(&image, 2, 256.0).expect("valid arguments");
        assert!(max_step(&unclipped) > 100);
    }

    #[test]
    fn tile_centres_use_their_own_table_exactly() {
        // 60 px in 4 tiles: tiles are 15 px wide, so centres fall on pixels 7, 22, 37, 52.
        let source = noise(60, 60, 30, 220);
        let luts = clahe_luts(&source, 4, 2.0).expect("valid arguments");
        let mut out = source.clone();
        luts.apply_gray(&mut out).expect("same size");
        for ty in 0..4u32 {
            for tx in 0..4u32 {
                let (x, y) = (7 + 15 * tx, 7 + 15 * ty);
                let lut = luts.lut(tx, ty).expect("inside the grid");
                let v = source.get_pixel(x, y)[0];
                assert_eq!(
                    out.get_pixel(x, y)[0],
                    lut[usize::from(v)],
                    "tile ({tx}, {ty})"
                );
            }
        }
        assert!(luts.lut(4, 0).is_none());
    }

    #[test]
    fn rgb_channels_map_like_grey() {
        let gray = noise(40, 30, 0, 255);
        let luts = clahe_luts(&gray, 3, 2.0).expect("valid arguments");
        let mut rgb = RgbImage::from_fn(40, 30, |x, y| {
            let v = gray.get_pixel(x, y)[0];
            image::Rgb([v, v, v])
        });
        luts.apply_rgb(&mut rgb).expect("same size");
        let mut mapped = gray.clone();
        luts.apply_gray(&mut mapped).expect("same size");
        assert_eq!(luma(&rgb), mapped);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let image = noise(16, 16, 0, 255);
        assert_eq!(
            clahe_luts(&GrayImage::new(0, 5), 2, 2.0).err(),
            Some(ClaheError::EmptyImage {
                width: 0,
                height: 5
            })
        );
        assert_eq!(clahe_luts(&image, 0, 2.0).err(), Some(ClaheError::Tiles(0)));
        assert_eq!(
            clahe_luts(&image, MAX_TILES + 1, 2.0).err(),
            Some(ClaheError::Tiles(MAX_TILES + 1))
        );
        assert!(matches!(
            clahe_luts(&image, 2, 0.5),
            Err(ClaheError::Clip(_))
        ));
        assert!(matches!(
            clahe_luts(&image, 2, f32::NAN),
            Err(ClaheError::Clip(_))
        ));
        let luts = clahe_luts(&image, 2, 2.0).expect("valid arguments");
        let err = luts
            .apply_gray(&mut GrayImage::new(16, 17))
            .expect_err("wrong size");
        assert!(err.to_string().contains("16x16") && err.to_string().contains("16x17"));
    }

    #[test]
    fn tiny_images_use_one_tile_per_pixel_at_most() {
        let image = noise(3, 2, 0, 255);
        let luts = clahe_luts(&image, 8, 2.0).expect("valid arguments");
        assert_eq!(luts.tiles(), (3, 2));
    }
}
