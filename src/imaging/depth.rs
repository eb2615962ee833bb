//! How deep each pixel of a hole lies: its chessboard distance to the nearest known pixel.

use image::GrayImage;

/// What lies beyond the image's edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beyond {
    /// Known pixels: a hole pixel on the edge is on the rim (how the evaluation counts, since
    /// the image goes on there).
    Known,
    /// Nothing: only the image's own pixels outside the hole count (how a network filling a
    /// window sees it).
    Nothing,
}

/// The depth of every pixel of `hole` (non-zero pixels), row by row: its chessboard distance to
/// the nearest pixel outside the hole, less one (0 on the rim); pixels outside the hole have
/// `None`. With [`Beyond::Nothing`] a hole that covers the whole image has no known pixel to
/// measure from: its pixels get `Some(u32::MAX)`.
pub fn hole_depth(hole: &GrayImage, beyond: Beyond) -> Vec<Option<u32>> {
    let (w, h) = (hole.width() as usize, hole.height() as usize);
    let inside = |x: usize, y: usize| hole.get_pixel(x as u32, y as u32)[0] != 0;
    let far = u32::MAX / 2;
    let edge = |d: usize| match beyond {
        Beyond::Known => d as u32,
        Beyond::Nothing => far,
    };
    // Two chamfer passes with unit steps to all eight neighbours give the chessboard distance
    // (0 outside the hole).
    let mut d = vec![0u32; w * h];
    for y in 0..h {
        for x in 0..w {
            if !inside(x, y) {
                continue;
            }
            let mut best = edge(1 + x.min(y));
            for (dx, dy) in [(-1i64, -1i64), (0, -1), (1, -1), (-1, 0)] {
                let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                if nx >= 0 && ny >= 0 && (nx as usize) < w {
                    best = best.min(d[ny as usize * w + nx as usize] + 1);
                }
            }
            d[y * w + x] = best;
        }
    }
    for y in (0..h).rev() {
        for x in (0..w).rev() {
            if !inside(x, y) {
                continue;
            }
            let mut best = d[y * w + x].min(edge((w - x).min(h - y)));
            for (dx, dy) in [(1i64, 1i64), (0, 1), (-1, 1), (1, 0)] {
                let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                if nx >= 0 && (nx as usize) < w && (ny as usize) < h {
                    best = best.min(d[ny as usize * w + nx as usize] + 1);
                }
            }
            d[y * w + x] = best;
        }
    }
    (0..w * h)
        .map(|i| {
            inside(i % w, i / w).then(|| match d[i] {
                v if v >= far => u32::MAX,
                v => v - 1,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    /// A `w` x `h` hole mask of the union of `(x, y, w, h)` boxes.
    fn boxes(w: u32, h: u32, rects: &[(u32, u32, u32, u32)]) -> GrayImage {
        let mut m = GrayImage::new(w, h);
        for &(bx, by, bw, bh) in rects {
            for y in by..by + bh {
                for x in bx..bx + bw {
                    m.put_pixel(x, y, Luma([255]));
                }
            }
        }
        m
    }

    /// Brute force: the chessboard distance to the nearest pixel outside, less one; with
    /// `Beyond::Known` the ring beyond the edges counts as outside.
    fn brute(hole: &GrayImage, beyond: Beyond) -> Vec<Option<u32>> {
        let (w, h) = (hole.width() as i64, hole.height() as i64);
        let mut out = Vec::new();
        for y in 0..h {
            for x in 0..w {
                if hole.get_pixel(x as u32, y as u32)[0] == 0 {
                    out.push(None);
                    continue;
                }
                let mut nearest = i64::MAX;
                for oy in -1..=h {
                    for ox in -1..=w {
                        let off = ox < 0 || oy < 0 || ox >= w || oy >= h;
                        let known = if off {
                            beyond == Beyond::Known
                        } else {
                            hole.get_pixel(ox as u32, oy as u32)[0] == 0
                        };
                        if known {
                            nearest = nearest.min((ox - x).abs().max((oy - y).abs()));
                        }
                    }
                }
                out.push(Some(if nearest == i64::MAX {
                    u32::MAX
                } else {
                    (nearest - 1) as u32
                }));
            }
        }
        out
    }

    #[test]
    fn depth_is_the_chessboard_distance_to_the_nearest_known_pixel() {
        // Two overlapping boxes and a box at the image's edge.
        let (w, h) = (23u32, 17u32);
        let hole = boxes(w, h, &[(2, 3, 9, 7), (7, 6, 8, 9), (17, 0, 6, 5)]);
        for beyond in [Beyond::Known, Beyond::Nothing] {
            let depth = hole_depth(&hole, beyond);
            assert_eq!(depth, brute(&hole, beyond), "{beyond:?}");
            // More than the rim is checked: the first box (7 px high) reaches depth 3.
            assert!(depth.iter().flatten().any(|&d| d >= 3), "{beyond:?}");
        }
        // The box on the right edge: its pixel on the edge is on the rim when the image goes on
        // beyond it; when it does not, its corner is 5 px above the nearest known pixel.
        let at = |x: u32, y: u32| (y * w + x) as usize;
        assert_eq!(hole_depth(&hole, Beyond::Known)[at(w - 1, 0)], Some(0));
        assert_eq!(hole_depth(&hole, Beyond::Known)[at(w - 3, 2)], Some(2));
        assert_eq!(hole_depth(&hole, Beyond::Nothing)[at(w - 1, 0)], Some(4));
        assert_eq!(hole_depth(&hole, Beyond::Nothing)[at(w - 1, 4)], Some(0));
    }

    #[test]
    fn a_hole_over_the_whole_image_has_no_known_pixel_unless_beyond_is_known() {
        let hole = boxes(6, 4, &[(0, 0, 6, 4)]);
        assert_eq!(hole_depth(&hole, Beyond::Nothing), vec![Some(u32::MAX); 24]);
        assert_eq!(
            hole_depth(&hole, Beyond::Known),
            brute(&hole, Beyond::Known)
        );
    }
}
