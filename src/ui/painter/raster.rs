//! Hard-edged rasterising of brush dabs, strokes, polygons and rectangles onto a binary mask.
//!
//! Coordinates are continuous image coordinates (pixel `(x, y)` covers `[x, x + 1)`); a pixel is
//! inside a shape when its centre is. Every function returns the rectangle it touched, so the
//! caller can limit undo records and texture uploads to it.

use image::GrayImage;

use crate::imaging::rect::Rect;

/// Shape of the brush tip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TipShape {
    /// A disc of diameter `size`.
    Round,
    /// A `size` x `size` square.
    Square,
}

/// How a self-intersecting polygon is filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FillRule {
    /// Inside where a ray crosses the outline an odd number of times.
    EvenOdd,
    /// Inside where the outline winds around the point at least once.
    NonZero,
}

/// The union of two optional rectangles.
pub fn union(a: Option<Rect>, b: Option<Rect>) -> Option<Rect> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.union(&b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Snaps a tip centre so the dab is exactly `size` pixels across: odd sizes centre on a pixel
/// centre, even sizes on a pixel corner.
pub fn snap_center(x: f32, y: f32, size: u32) -> (f32, f32) {
    if size % 2 == 1 {
        (x.floor() + 0.5, y.floor() + 0.5)
    } else {
        (x.round(), y.round())
    }
}

/// Pixel range `[lo, hi)` whose centres lie in `[a, b]`, clipped to `0..len`.
fn center_range(a: f32, b: f32, len: u32) -> Option<(u32, u32)> {
    let lo = (a - 0.5).ceil().max(0.0);
    let hi = ((b - 0.5).floor() + 1.0).min(len as f32);
    (hi > lo).then_some((lo as u32, hi as u32))
}

/// Stamps one tip of diameter `size` at the (already snapped) centre `(cx, cy)`.
pub fn dab(
    img: &mut GrayImage,
    cx: f32,
    cy: f32,
    size: u32,
    shape: TipShape,
    value: u8,
) -> Option<Rect> {
    let r = size.max(1) as f32 / 2.0;
    // Half-open bounds (centres in [c - r, c + r)) so a square tip is exactly `size` wide.
    let eps = 1e-4;
    let (x0, x1) = center_range(cx - r, cx + r - eps, img.width())?;
    let (y0, y1) = center_range(cy - r, cy + r - eps, img.height())?;
    let mut touched: Option<Rect> = None;
    for y in y0..y1 {
        let dy = y as f32 + 0.5 - cy;
        let span = match shape {
            TipShape::Square => Some((x0, x1)),
            TipShape::Round => {
                let half = (r * r - dy * dy).max(0.0).sqrt();
                if r * r - dy * dy < 0.0 {
                    None
                } else {
                    center_range(cx - half, cx + half, img.width())
                }
            }
        };
        if let Some((a, b)) = span {
            fill_row(img, y, a, b, value);
            touched = union(touched, Some(Rect::new(a, y, b - a, 1)));
        }
    }
    touched
}

fn fill_row(img: &mut GrayImage, y: u32, x0: u32, x1: u32, value: u8) {
    let w = img.width() as usize;
    let row = &mut img.as_mut()[y as usize * w..(y as usize + 1) * w];
    row[x0 as usize..x1 as usize].fill(value);
}

/// Stamps tips along the segment `from -> to` (centres unsnapped) densely enough to leave no
/// gaps, so a fast drag still paints a continuous stroke.
pub fn segment(
    img: &mut GrayImage,
    from: (f32, f32),
    to: (f32, f32),
    size: u32,
    shape: TipShape,
    value: u8,
) -> Option<Rect> {
    let (dx, dy) = (to.0 - from.0, to.1 - from.1);
    let len = (dx * dx + dy * dy).sqrt();
    // Half a pixel spacing for small tips; wider tips overlap enough at an eighth of their size.
    let spacing = (size as f32 / 8.0).max(0.5);
    let steps = (len / spacing).ceil().max(1.0) as u32;
    let mut touched = None;
    for i in 0..=steps {
        let t = i as f32 / steps as f32;
        let (x, y) = snap_center(from.0 + dx * t, from.1 + dy * t, size);
        touched = union(touched, dab(img, x, y, size, shape, value));
    }
    touched
}

/// Fills the polygon with vertices `pts` (closed implicitly) using `rule`.
pub fn fill_polygon(
    img: &mut GrayImage,
    pts: &[(f32, f32)],
    rule: FillRule,
    value: u8,
) -> Option<Rect> {
    if pts.len() < 3 {
        return None;
    }
    let (w, h) = img.dimensions();
    let min_y = pts.iter().map(|p| p.1).fold(f32::INFINITY, f32::min);
    let max_y = pts.iter().map(|p| p.1).fold(f32::NEG_INFINITY, f32::max);
    let (y0, y1) = center_range(min_y, max_y, h)?;
    let mut touched = None;
    let mut crossings: Vec<(f32, i32)> = Vec::new();
    for y in y0..y1 {
        let sy = y as f32 + 0.5;
        crossings.clear();
        for (i, &a) in pts.iter().enumerate() {
            let b = pts[(i + 1) % pts.len()];
            // Half-open in y so a vertex shared by two edges counts once.
            let (up, down) = (a.1 <= sy && b.1 > sy, b.1 <= sy && a.1 > sy);
            if up || down {
                let x = a.0 + (sy - a.1) / (b.1 - a.1) * (b.0 - a.0);
                crossings.push((x, if up { 1 } else { -1 }));
            }
        }
        crossings.sort_by(|p, q| p.0.total_cmp(&q.0));
        let mut winding = 0;
        for pair in crossings.windows(2) {
            winding += pair[0].1;
            let inside = match rule {
                FillRule::EvenOdd => winding % 2 != 0,
                FillRule::NonZero => winding != 0,
            };
            if inside && let Some((a, b)) = center_range(pair[0].0, pair[1].0 - 1e-4, w) {
                fill_row(img, y, a, b, value);
                touched = union(touched, Some(Rect::new(a, y, b - a, 1)));
            }
        }
    }
    touched
}

/// Fills the image rectangle spanned by two corners (rounded to pixel boundaries).
pub fn fill_rect(img: &mut GrayImage, a: (f32, f32), b: (f32, f32), value: u8) -> Option<Rect> {
    let (w, h) = img.dimensions();
    let clamp = |v: f32, max: u32| v.round().clamp(0.0, max as f32) as u32;
    let (x0, x1) = (clamp(a.0.min(b.0), w), clamp(a.0.max(b.0), w));
    let (y0, y1) = (clamp(a.1.min(b.1), h), clamp(a.1.max(b.1), h));
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    for y in y0..y1 {
        fill_row(img, y, x0, x1, value);
    }
    Some(Rect::new(x0, y0, x1 - x0, y1 - y0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_pixels(img: &GrayImage) -> Vec<(u32, u32)> {
        img.enumerate_pixels()
            .filter(|p| p.2[0] == 255)
            .map(|p| (p.0, p.1))
            .collect()
    }

    #[test]
    fn round_dab_sets_exactly_the_disc() {
        let mut img = GrayImage::new(40, 40);
        let (cx, cy) = snap_center(20.3, 19.8, 9);
        let r = dab(&mut img, cx, cy, 9, TipShape::Round, 255).expect("inside");
        for (x, y, p) in img.enumerate_pixels() {
            let d2 = (x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2);
            assert_eq!(p[0] == 255, d2 <= 4.5 * 4.5, "pixel {x},{y}");
        }
        assert_eq!((r.w, r.h), (9, 9));
        // Symmetric about the centre pixel (20, 19).
        for (x, y) in set_pixels(&img) {
            assert_eq!(img.get_pixel(40 - x, 38 - y)[0], 255);
        }
    }

    #[test]
    fn square_dab_is_size_by_size() {
        for size in [1, 4, 7] {
            let mut img = GrayImage::new(30, 30);
            let (cx, cy) = snap_center(10.6, 12.2, size);
            dab(&mut img, cx, cy, size, TipShape::Square, 255);
            let px = set_pixels(&img);
            assert_eq!(px.len() as u32, size * size, "size {size}");
            let xs: Vec<u32> = px.iter().map(|p| p.0).collect();
            assert_eq!(
                xs.iter().max().expect("some") - xs.iter().min().expect("some") + 1,
                size
            );
        }
    }

    #[test]
    fn dab_at_border_is_clipped() {
        let mut img = GrayImage::new(10, 10);
        let r = dab(&mut img, 0.5, 0.5, 5, TipShape::Square, 255).expect("touches");
        assert_eq!(r, Rect::new(0, 0, 3, 3));
        assert!(dab(&mut img, -20.0, 3.0, 5, TipShape::Round, 255).is_none());
    }

    #[test]
    fn segment_leaves_no_gaps() {
        let mut img = GrayImage::new(100, 20);
        segment(&mut img, (2.0, 10.0), (97.0, 10.0), 2, TipShape::Round, 255);
        for x in 2..97 {
            assert_eq!(img.get_pixel(x, 9)[0], 255, "gap at {x}");
            assert_eq!(img.get_pixel(x, 10)[0], 255, "gap at {x}");
        }
        assert_eq!(img.get_pixel(50, 5)[0], 0);
        assert_eq!(img.get_pixel(50, 13)[0], 0);
    }

    #[test]
    fn polygon_fills_rectangle_exactly() {
        let mut img = GrayImage::new(20, 20);
        let pts = [(2.0, 3.0), (12.0, 3.0), (12.0, 9.0), (2.0, 9.0)];
        let r = fill_polygon(&mut img, &pts, FillRule::EvenOdd, 255).expect("inside");
        assert_eq!(r, Rect::new(2, 3, 10, 6));
        assert_eq!(set_pixels(&img).len(), 60);
    }

    #[test]
    fn polygon_fills_triangle_by_centres() {
        let mut img = GrayImage::new(20, 20);
        // Right triangle with legs on x = 0 and y = 10: inside when x + 0.5 < 10 - (y + 0.5).
        let pts = [(0.0, 0.0), (10.0, 10.0), (0.0, 10.0)];
        fill_polygon(&mut img, &pts, FillRule::NonZero, 255);
        for (x, y, p) in img.enumerate_pixels() {
            let inside = y < 10 && (x as f32 + 0.5) < (y as f32 + 0.5);
            assert_eq!(p[0] == 255, inside, "pixel {x},{y}");
        }
    }

    #[test]
    fn fill_rules_differ_on_overlap() {
        // Two overlapping squares traced in the same direction: nonzero fills the overlap,
        // even-odd leaves it empty.
        let pts = [
            (0.0, 0.0),
            (6.0, 0.0),
            (6.0, 6.0),
            (0.0, 6.0),
            (0.0, 0.0),
            (3.0, 3.0),
            (9.0, 3.0),
            (9.0, 9.0),
            (3.0, 9.0),
            (3.0, 3.0),
        ];
        let mut even = GrayImage::new(12, 12);
        fill_polygon(&mut even, &pts, FillRule::EvenOdd, 255);
        let mut nonzero = GrayImage::new(12, 12);
        fill_polygon(&mut nonzero, &pts, FillRule::NonZero, 255);
        assert_eq!(even.get_pixel(4, 4)[0], 0);
        assert_eq!(nonzero.get_pixel(4, 4)[0], 255);
        assert_eq!(even.get_pixel(1, 1)[0], 255);
        assert_eq!(even.get_pixel(8, 8)[0], 255);
    }

    #[test]
    fn rect_fill_rounds_corners_to_pixels() {
        let mut img = GrayImage::new(10, 10);
        let r = fill_rect(&mut img, (7.2, 1.6), (2.4, 5.4), 255).expect("non-empty");
        assert_eq!(r, Rect::new(2, 2, 5, 3));
        assert_eq!(set_pixels(&img).len(), 15);
        assert!(fill_rect(&mut img, (3.0, 3.0), (3.2, 8.0), 255).is_none());
    }
}
