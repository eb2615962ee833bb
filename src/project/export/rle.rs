//! COCO uncompressed run-length encoding of binary masks.
//!
//! COCO stores a mask as `{"counts": [...], "size": [h, w]}` where `counts` are the lengths of
//! alternating runs of 0 and 1 pixels read in column-major (Fortran) order: down the first
//! column, then down the second, and so on. The first count is always a run of zeros, so a mask
//! whose first pixel is set starts with 0. A pixel is set when its value is at least
//! [`MASK_THRESHOLD`], as everywhere else in the studio.

use image::{GrayImage, Luma};

use crate::imaging::io::MASK_THRESHOLD;
use crate::imaging::rect::Rect;

/// Builds a counts list one pixel (or one run) at a time.
#[derive(Debug, Default)]
pub(crate) struct RunBuilder {
    counts: Vec<u32>,
    /// Value of the run being counted (the first run is of zeros).
    current: bool,
    run: u32,
}

impl RunBuilder {
    /// Appends `n` pixels of value `set`.
    pub(crate) fn push_n(&mut self, set: bool, n: u32) {
        if n == 0 {
            return;
        }
        if set != self.current {
            self.counts.push(self.run);
            self.current = set;
            self.run = 0;
        }
        self.run += n;
    }

    /// The finished counts (the last run included, even an empty first run of zeros).
    pub(crate) fn finish(mut self) -> Vec<u32> {
        self.counts.push(self.run);
        self.counts
    }
}

/// A region's part of a mask, run-length encoded over the whole image, with its statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EncodedPart {
    /// COCO counts over the whole `w` x `h` image.
    pub(crate) counts: Vec<u32>,
    /// Number of set pixels.
    pub(crate) area: u64,
    /// Tight box of the set pixels (`None` when there is none).
    pub(crate) bbox: Option<Rect>,
}

/// Encodes the pixels of a `w` x `h` image for which `is_set(x, y)` holds, but only inside
/// `clip` (pixels outside it count as unset).
pub(crate) fn encode_where(
    w: u32,
    h: u32,
    clip: Rect,
    is_set: impl Fn(u32, u32) -> bool,
) -> EncodedPart {
    let clip = clip.clipped(w, h);
    let mut b = RunBuilder::default();
    let mut area = 0u64;
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for x in 0..w {
        if x < clip.x || x >= clip.right() {
            b.push_n(false, h);
            continue;
        }
        b.push_n(false, clip.y);
        for y in clip.y..clip.bottom() {
            let set = is_set(x, y);
            b.push_n(set, 1);
            if set {
                area += 1;
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
        b.push_n(false, h - clip.bottom());
    }
    let bbox = (area > 0).then(|| Rect::new(x0, y0, x1 - x0 + 1, y1 - y0 + 1));
    EncodedPart {
        counts: b.finish(),
        area,
        bbox,
    }
}

/// COCO counts of a mask (column-major, starting with a run of zeros).
pub fn rle_encode(mask: &GrayImage) -> Vec<u32> {
    let (w, h) = mask.dimensions();
    encode_where(w, h, Rect::new(0, 0, w, h), |x, y| {
        mask.get_pixel(x, y).0[0] >= MASK_THRESHOLD
    })
    .counts
}

/// The `w` x `h` mask (0 / 255) that COCO `counts` describe.
///
/// Counts that add up to more than `w * h` pixels are cut at the last pixel; pixels the counts
/// do not reach stay 0. Never panics on malformed counts.
pub fn rle_decode(counts: &[u32], w: u32, h: u32) -> GrayImage {
    let mut out = GrayImage::new(w, h);
    let total = u64::from(w) * u64::from(h);
    let mut pos = 0u64;
    let mut set = false;
    for &n in counts {
        let end = (pos + u64::from(n)).min(total);
        if set && h > 0 {
            for i in pos..end {
                // Column-major: index i is row i % h of column i / h.
                let (x, y) = ((i / u64::from(h)) as u32, (i % u64::from(h)) as u32);
                out.put_pixel(x, y, Luma([255]));
            }
        }
        pos = end;
        set = !set;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn hand_checked_three_by_two() {
        // Rows: [0 1 1] / [0 0 1]; columns read top to bottom: 0 0 | 1 0 | 1 1.
        let mut m = GrayImage::new(3, 2);
        for (x, y) in [(1, 0), (2, 0), (2, 1)] {
            m.put_pixel(x, y, Luma([255]));
        }
        assert_eq!(rle_encode(&m), vec![2, 1, 1, 2]);
        assert_eq!(rle_decode(&[2, 1, 1, 2], 3, 2).as_raw(), m.as_raw());
    }

    #[test]
    fn all_zero_and_all_one() {
        let zero = GrayImage::new(5, 4);
        assert_eq!(rle_encode(&zero), vec![20]);
        assert_eq!(rle_decode(&[20], 5, 4).as_raw(), zero.as_raw());
        let one = GrayImage::from_pixel(5, 4, Luma([255]));
        assert_eq!(rle_encode(&one), vec![0, 20]);
        assert_eq!(rle_decode(&[0, 20], 5, 4).as_raw(), one.as_raw());
    }

    #[test]
    fn random_masks_round_trip_and_counts_cover_the_image() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for _ in 0..200 {
            let (w, h) = (rng.random_range(1..40), rng.random_range(1..40));
            let density = rng.random_range(0.0..1.0);
            let m = GrayImage::from_fn(w, h, |_, _| {
                Luma([if rng.random_bool(density) { 255 } else { 0 }])
            });
            let counts = rle_encode(&m);
            assert_eq!(
                counts.iter().map(|&c| u64::from(c)).sum::<u64>(),
                u64::from(w * h)
            );
            // Only the first run may be empty: every later run has at least one pixel.
            assert!(counts[1..].iter().all(|&c| c > 0), "{counts:?}");
            assert_eq!(rle_decode(&counts, w, h).as_raw(), m.as_raw());
        }
    }

    #[test]
    fn clipped_encoding_ignores_pixels_outside_the_clip() {
        let full = GrayImage::from_pixel(6, 5, Luma([255]));
        let part = encode_where(6, 5, Rect::new(1, 2, 3, 2), |x, y| {
            full.get_pixel(x, y).0[0] >= MASK_THRESHOLD
        });
        assert_eq!(part.area, 6);
        assert_eq!(part.bbox, Some(Rect::new(1, 2, 3, 2)));
        let decoded = rle_decode(&part.counts, 6, 5);
        for (x, y, p) in decoded.enumerate_pixels() {
            let inside = (1..4).contains(&x) && (2..4).contains(&y);
            assert_eq!(p.0[0] == 255, inside, "({x}, {y})");
        }
    }

    #[test]
    fn malformed_counts_do_not_panic() {
        let over = rle_decode(&[1, 100], 2, 2);
        assert_eq!(over.as_raw(), &vec![0, 255, 255, 255]);
        let short = rle_decode(&[1, 1], 2, 2);
        assert_eq!(short.as_raw(), &vec![0, 0, 255, 0]);
    }
}
