//! Connected defect regions and the box masks derived from them.

use image::{GrayImage, Luma};

use super::io::MASK_THRESHOLD;
use super::rect::Rect;

/// One 8-connected region of defect pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Component {
    /// Tight bounding rectangle.
    pub bbox: Rect,
    /// Number of pixels.
    pub area: u64,
}

/// The 8-connected regions of pixels >= 128, in raster order of their first pixel.
pub fn connected_components(mask: &GrayImage) -> Vec<Component> {
    let (w, h) = mask.dimensions();
    let (wu, hu) = (w as usize, h as usize);
    let raw = mask.as_raw();
    let mut seen = vec![false; raw.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..raw.len() {
        if seen[start] || raw[start] < MASK_THRESHOLD {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        let mut area = 0u64;
        while let Some(i) = stack.pop() {
            let (x, y) = (i % wu, i / wu);
            area += 1;
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
            for ny in y.saturating_sub(1)..=(y + 1).min(hu - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(wu - 1) {
                    let j = ny * wu + nx;
                    if !seen[j] && raw[j] >= MASK_THRESHOLD {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        let bbox = Rect::new(
            x0 as u32,
            y0 as u32,
            (x1 - x0 + 1) as u32,
            (y1 - y0 + 1) as u32,
        );
        out.push(Component { bbox, area });
    }
    out
}

/// Merges rectangles until no two overlap; the result is sorted by (y, x).
pub fn merge_overlapping(mut rects: Vec<Rect>) -> Vec<Rect> {
    rects.retain(|r| !r.is_empty());
    loop {
        let mut merged_any = false;
        let mut i = 0;
        while i < rects.len() {
            let mut j = i + 1;
            while j < rects.len() {
                if rects[i].overlaps(&rects[j]) {
                    let other = rects.swap_remove(j);
                    rects[i] = rects[i].union(&other);
                    merged_any = true;
                } else {
                    j += 1;
                }
            }
            i += 1;
        }
        if !merged_any {
            break;
        }
    }
    rects.sort_by_key(|r| (r.y, r.x));
    rects
}

/// The box-mask rectangles of a pixel mask: each connected region's bounding rectangle grown by
/// `margin`, clipped to the image, overlapping rectangles merged.
pub fn box_rects_from_mask(mask: &GrayImage, margin: u32) -> Vec<Rect> {
    let (w, h) = mask.dimensions();
    let rects = connected_components(mask)
        .into_iter()
        .map(|c| c.bbox.grown_clipped(margin, w, h))
        .collect();
    merge_overlapping(rects)
}

/// A `width` x `height` binary mask, 255 inside any of `rects`.
pub fn box_mask_from_rects(width: u32, height: u32, rects: &[Rect]) -> GrayImage {
    let mut out = GrayImage::new(width, height);
    for r in rects {
        let r = r.clipped(width, height);
        for y in r.y..r.bottom() {
            for x in r.x..r.right() {
                out.put_pixel(x, y, Luma([255]));
            }
        }
    }
    out
}

/// The box mask of a pixel mask (see [`box_rects_from_mask`]).
pub fn box_mask_from_mask(mask: &GrayImage, margin: u32) -> GrayImage {
    let (w, h) = mask.dimensions();
    box_mask_from_rects(w, h, &box_rects_from_mask(mask, margin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_with(w: u32, h: u32, pixels: &[(u32, u32)]) -> GrayImage {
        let mut m = GrayImage::new(w, h);
        for &(x, y) in pixels {
            m.put_pixel(x, y, Luma([255]));
        }
        m
    }

    #[test]
    fn diagonal_pixels_are_one_component() {
        let m = mask_with(10, 10, &[(1, 1), (2, 2), (3, 3), (8, 1)]);
        let cs = connected_components(&m);
        assert_eq!(cs.len(), 2);
        assert_eq!(
            cs[0],
            Component {
                bbox: Rect::new(1, 1, 3, 3),
                area: 3
            }
        );
        assert_eq!(
            cs[1],
            Component {
                bbox: Rect::new(8, 1, 1, 1),
                area: 1
            }
        );
    }

    #[test]
    fn boxes_grow_clip_and_merge() {
        // Two specks 6 px apart merge once each is grown by 4; a far one stays alone.
        let m = mask_with(40, 30, &[(10, 10), (16, 10), (35, 28)]);
        let rects = box_rects_from_mask(&m, 4);
        assert_eq!(rects, vec![Rect::new(6, 6, 15, 9), Rect::new(31, 24, 9, 6)]);
        let bm = box_mask_from_rects(40, 30, &rects);
        assert_eq!(bm.get_pixel(6, 6).0[0], 255);
        assert_eq!(bm.get_pixel(5, 6).0[0], 0);
        assert_eq!(bm.get_pixel(39, 29).0[0], 255);
    }

    #[test]
    fn merging_is_transitive() {
        // a overlaps b only after b has absorbed c.
        let rects = vec![
            Rect::new(0, 0, 5, 5),
            Rect::new(20, 0, 5, 5),
            Rect::new(4, 0, 17, 2),
        ];
        assert_eq!(merge_overlapping(rects), vec![Rect::new(0, 0, 25, 5)]);
    }

    #[test]
    fn empty_and_full_masks() {
        assert!(box_rects_from_mask(&GrayImage::new(8, 8), 8).is_empty());
        let full = GrayImage::from_pixel(8, 8, Luma([255]));
        assert_eq!(box_rects_from_mask(&full, 8), vec![Rect::new(0, 0, 8, 8)]);
    }
}
