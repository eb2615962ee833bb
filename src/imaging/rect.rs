//! Axis-aligned pixel rectangles, the currency of boxes and box masks.

use serde::{Deserialize, Serialize};

/// A pixel rectangle, half-open: it covers columns `x..x + w` and rows `y..y + h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width in pixels.
    pub w: u32,
    /// Height in pixels.
    pub h: u32,
}

impl Rect {
    /// A rectangle from its top-left corner and size.
    pub fn new(x: u32, y: u32, w: u32, h: u32) -> Self {
        Self { x, y, w, h }
    }

    /// A rectangle from inclusive corners (as DeepPCB's `x1 y1 x2 y2` annotations are written).
    pub fn from_inclusive(x1: u32, y1: u32, x2: u32, y2: u32) -> Self {
        let (x1, x2) = (x1.min(x2), x1.max(x2));
        let (y1, y2) = (y1.min(y2), y1.max(y2));
        Self::new(x1, y1, x2 - x1 + 1, y2 - y1 + 1)
    }

    /// One past the right-most column.
    pub fn right(&self) -> u32 {
        self.x + self.w
    }

    /// One past the bottom row.
    pub fn bottom(&self) -> u32 {
        self.y + self.h
    }

    /// Number of pixels covered.
    pub fn area(&self) -> u64 {
        u64::from(self.w) * u64::from(self.h)
    }

    /// True when the rectangle covers no pixel.
    pub fn is_empty(&self) -> bool {
        self.w == 0 || self.h == 0
    }

    /// True when the two rectangles share at least one pixel.
    pub fn overlaps(&self, other: &Rect) -> bool {
        self.x < other.right()
            && other.x < self.right()
            && self.y < other.bottom()
            && other.y < self.bottom()
    }

    /// True when pixel `(px, py)` is inside.
    pub fn contains(&self, px: u32, py: u32) -> bool {
        px >= self.x && px < self.right() && py >= self.y && py < self.bottom()
    }

    /// The smallest rectangle covering both.
    pub fn union(&self, other: &Rect) -> Rect {
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        Rect::new(
            x,
            y,
            self.right().max(other.right()) - x,
            self.bottom().max(other.bottom()) - y,
        )
    }

    /// Grown by `margin` on every side and clipped to a `width` x `height` image.
    pub fn grown_clipped(&self, margin: u32, width: u32, height: u32) -> Rect {
        let x0 = self.x.saturating_sub(margin);
        let y0 = self.y.saturating_sub(margin);
        let x1 = self.right().saturating_add(margin).min(width);
        let y1 = self.bottom().saturating_add(margin).min(height);
        Rect::new(x0, y0, x1.saturating_sub(x0), y1.saturating_sub(y0))
    }

    /// Clipped to a `width` x `height` image (may become empty).
    pub fn clipped(&self, width: u32, height: u32) -> Rect {
        self.grown_clipped(0, width, height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inclusive_corners_give_size_plus_one() {
        let r = Rect::from_inclusive(466, 441, 493, 470);
        assert_eq!(r, Rect::new(466, 441, 28, 30));
    }

    #[test]
    fn overlap_is_strict_on_touching_edges() {
        let a = Rect::new(0, 0, 10, 10);
        assert!(!a.overlaps(&Rect::new(10, 0, 5, 5)));
        assert!(a.overlaps(&Rect::new(9, 9, 5, 5)));
        assert_eq!(a.union(&Rect::new(9, 9, 5, 5)), Rect::new(0, 0, 14, 14));
    }

    #[test]
    fn growing_clips_to_the_image() {
        let r = Rect::new(2, 3, 4, 4).grown_clipped(8, 10, 9);
        assert_eq!(r, Rect::new(0, 0, 10, 9));
    }
}
