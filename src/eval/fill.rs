//! A classical fill of rectangular boxes, for few-shot runs on data without defect-free twins
//! and no inpainting model: each box pixel blends the straight lines between the pixels just
//! outside the box, across (left-right) and down (top-bottom), weighting each by how close its
//! nearer end is. Smooth, continuous with the border, and without any learned texture.

use image::RgbImage;

use crate::imaging::rect::Rect;

/// `image` with every box of `rects` filled from its border.
pub fn fill_boxes(image: &RgbImage, rects: &[Rect]) -> RgbImage {
    let (w, h) = image.dimensions();
    let mut out = image.clone();
    for r in rects {
        let r = r.clipped(w, h);
        if r.is_empty() {
            continue;
        }
        let src = out.clone();
        // The pixel just outside each side, where there is one.
        let left = r.x.checked_sub(1);
        let right = (r.right() < w).then_some(r.right());
        let top = r.y.checked_sub(1);
        let bottom = (r.bottom() < h).then_some(r.bottom());
        for y in r.y..r.bottom() {
            for x in r.x..r.right() {
                let mut acc = [0f32; 3];
                let mut total = 0f32;
                let mut line = |a: Option<(u32, u32, f32)>, b: Option<(u32, u32, f32)>| {
                    // (x, y, distance) of both ends; a missing end repeats the other.
                    let (pa, pb) = match (a, b) {
                        (Some(a), Some(b)) => (a, b),
                        (Some(a), None) => (a, a),
                        (None, Some(b)) => (b, b),
                        (None, None) => return,
                    };
                    let t = pa.2 / (pa.2 + pb.2);
                    let weight = 1.0 / pa.2.min(pb.2);
                    let ca = src.get_pixel(pa.0, pa.1);
                    let cb = src.get_pixel(pb.0, pb.1);
                    for c in 0..3 {
                        acc[c] += weight * (ca[c] as f32 * (1.0 - t) + cb[c] as f32 * t);
                    }
                    total += weight;
                };
                line(
                    left.map(|lx| (lx, y, (x - lx) as f32)),
                    right.map(|rx| (rx, y, (rx - x) as f32)),
                );
                line(
                    top.map(|ty| (x, ty, (y - ty) as f32)),
                    bottom.map(|by| (x, by, (by - y) as f32)),
                );
                if total > 0.0 {
                    let p = out.get_pixel_mut(x, y);
                    for c in 0..3 {
                        p[c] = (acc[c] / total).round().clamp(0.0, 255.0) as u8;
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn a_box_in_a_linear_ramp_is_filled_with_the_ramp_and_nothing_else_changes() {
        let ramp = RgbImage::from_fn(40, 30, |x, _| Rgb([(x * 5) as u8, 10, 200]));
        let mut spoiled = ramp.clone();
        let r = Rect::new(10, 8, 12, 9);
        for y in r.y..r.bottom() {
            for x in r.x..r.right() {
                spoiled.put_pixel(x, y, Rgb([255, 255, 0]));
            }
        }
        let filled = fill_boxes(&spoiled, &[r]);
        for (x, y, p) in filled.enumerate_pixels() {
            let want = ramp.get_pixel(x, y);
            for c in 0..3 {
                assert!(
                    (p[c] as i32 - want[c] as i32).abs() <= 1,
                    "({x},{y}): {p:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn a_box_at_the_image_edge_uses_the_sides_it_has() {
        let flat = RgbImage::from_pixel(20, 20, Rgb([70, 80, 90]));
        let mut spoiled = flat.clone();
        spoiled.put_pixel(0, 0, Rgb([0, 0, 0]));
        let filled = fill_boxes(&spoiled, &[Rect::new(0, 0, 5, 5)]);
        assert_eq!(filled, flat);
    }
}
