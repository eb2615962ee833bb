//! The two edited layers of one image, with per-stroke undo / redo.
//!
//! A stroke keeps one copy of its layer as it was when the stroke began; when it ends only the
//! changed rectangle's before / after bytes go into the history, so long sessions on large
//! images stay small. The history is bounded in steps and bytes.

use std::collections::VecDeque;

use image::GrayImage;

use super::raster::{self, FillRule, TipShape};
use crate::imaging::rect::Rect;

/// Most undo steps kept.
pub const MAX_HISTORY_STEPS: usize = 200;
/// Most bytes (before + after) the undo history may hold.
pub const MAX_HISTORY_BYTES: usize = 256 * 1024 * 1024;

/// Which layer an edit applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The pixel-accurate defect mask.
    Mask,
    /// The box mask (rectangular regions).
    Box,
}

impl Layer {
    fn index(self) -> usize {
        match self {
            Layer::Mask => 0,
            Layer::Box => 1,
        }
    }
}

/// One undoable change: a rectangle of one layer before and after.
#[derive(Clone, Debug)]
struct Edit {
    layer: Layer,
    rect: Rect,
    before: Vec<u8>,
    after: Vec<u8>,
}

impl Edit {
    fn bytes(&self) -> usize {
        self.before.len() + self.after.len()
    }
}

struct Stroke {
    layer: Layer,
    before: GrayImage,
    touched: Option<Rect>,
}

/// The pixel mask and box mask being edited, plus their history.
pub struct Document {
    layers: [GrayImage; 2],
    undo: VecDeque<Edit>,
    redo: Vec<Edit>,
    history_bytes: usize,
    stroke: Option<Stroke>,
    dirty: [Option<Rect>; 2],
    revision: u64,
}

/// Forces 0/255 (anything from 128 up counts as set).
fn binarized(mut img: GrayImage) -> GrayImage {
    for p in img.iter_mut() {
        *p = if *p >= 128 { 255 } else { 0 };
    }
    img
}

fn copy_rect(img: &GrayImage, r: Rect) -> Vec<u8> {
    let w = img.width() as usize;
    let mut out = Vec::with_capacity(r.area() as usize);
    for y in r.y..r.bottom() {
        let start = y as usize * w + r.x as usize;
        out.extend_from_slice(&img.as_raw()[start..start + r.w as usize]);
    }
    out
}

fn paste_rect(img: &mut GrayImage, r: Rect, bytes: &[u8]) {
    let w = img.width() as usize;
    for (i, y) in (r.y..r.bottom()).enumerate() {
        let start = y as usize * w + r.x as usize;
        let src = &bytes[i * r.w as usize..(i + 1) * r.w as usize];
        img.as_mut()[start..start + r.w as usize].copy_from_slice(src);
    }
}

impl Document {
    /// A document over `mask` and `box_mask` (binarised; the box mask is replaced by an empty one
    /// when its size differs from the mask's).
    pub fn new(mask: GrayImage, box_mask: GrayImage) -> Self {
        let box_mask = if box_mask.dimensions() == mask.dimensions() {
            binarized(box_mask)
        } else {
            GrayImage::new(mask.width(), mask.height())
        };
        Self {
            layers: [binarized(mask), box_mask],
            undo: VecDeque::new(),
            redo: Vec::new(),
            history_bytes: 0,
            stroke: None,
            dirty: [None, None],
            revision: 0,
        }
    }

    /// Width and height in pixels.
    pub fn dimensions(&self) -> (u32, u32) {
        self.layers[0].dimensions()
    }

    /// A layer's current pixels.
    pub fn layer(&self, layer: Layer) -> &GrayImage {
        &self.layers[layer.index()]
    }

    /// Counts every change (edits, undo, redo); equal revisions mean equal pixels.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Number of steps that can be undone.
    pub fn undo_len(&self) -> usize {
        self.undo.len()
    }

    /// Number of steps that can be redone.
    pub fn redo_len(&self) -> usize {
        self.redo.len()
    }

    /// True while a stroke is open.
    pub fn in_stroke(&self) -> bool {
        self.stroke.is_some()
    }

    /// The region of `layer` changed since the last call (for texture uploads).
    pub fn take_dirty(&mut self, layer: Layer) -> Option<Rect> {
        self.dirty[layer.index()].take()
    }

    fn mark(&mut self, layer: Layer, r: Option<Rect>) {
        let i = layer.index();
        self.dirty[i] = raster::union(self.dirty[i], r);
    }

    /// Opens a stroke on `layer` (ending any open one first).
    pub fn begin_stroke(&mut self, layer: Layer) {
        self.end_stroke();
        self.stroke = Some(Stroke {
            layer,
            before: self.layers[layer.index()].clone(),
            touched: None,
        });
    }

    fn touch(&mut self, r: Option<Rect>) {
        if let Some(s) = &mut self.stroke {
            s.touched = raster::union(s.touched, r);
            let layer = s.layer;
            self.mark(layer, r);
            if r.is_some() {
                self.revision += 1;
            }
        }
    }

    /// Paints (`value` true) or erases a tip segment in the open stroke (no-op without one).
    pub fn stroke_segment(
        &mut self,
        from: (f32, f32),
        to: (f32, f32),
        size: u32,
        shape: TipShape,
        value: bool,
    ) {
        let Some(layer) = self.stroke.as_ref().map(|s| s.layer) else {
            return;
        };
        let v = if value { 255 } else { 0 };
        let r = raster::segment(&mut self.layers[layer.index()], from, to, size, shape, v);
        self.touch(r);
    }

    /// Closes the open stroke; records it when it changed anything. Returns true if it did.
    pub fn end_stroke(&mut self) -> bool {
        let Some(stroke) = self.stroke.take() else {
            return false;
        };
        let Some(rect) = stroke.touched else {
            return false;
        };
        let img = &self.layers[stroke.layer.index()];
        let before = copy_rect(&stroke.before, rect);
        let after = copy_rect(img, rect);
        if before == after {
            return false;
        }
        self.push(Edit {
            layer: stroke.layer,
            rect,
            before,
            after,
        });
        true
    }

    /// Applies `f` to `layer` as one undo step. Returns true if pixels changed.
    fn atomic(&mut self, layer: Layer, f: impl FnOnce(&mut GrayImage) -> Option<Rect>) -> bool {
        self.begin_stroke(layer);
        let r = f(&mut self.layers[layer.index()]);
        self.touch(r);
        self.end_stroke()
    }

    /// Fills a polygon (image coordinates) as one undo step.
    pub fn fill_polygon(
        &mut self,
        layer: Layer,
        pts: &[(f32, f32)],
        rule: FillRule,
        value: bool,
    ) -> bool {
        let v = if value { 255 } else { 0 };
        self.atomic(layer, |img| raster::fill_polygon(img, pts, rule, v))
    }

    /// Fills the rectangle between two image points as one undo step.
    pub fn fill_rect(&mut self, layer: Layer, a: (f32, f32), b: (f32, f32), value: bool) -> bool {
        let v = if value { 255 } else { 0 };
        self.atomic(layer, |img| raster::fill_rect(img, a, b, v))
    }

    /// Replaces a whole layer (same size, binarised) as one undo step; ignores a wrong size.
    pub fn replace_layer(&mut self, layer: Layer, new: GrayImage) -> bool {
        if new.dimensions() != self.dimensions() {
            return false;
        }
        let new = binarized(new);
        let (w, h) = self.dimensions();
        self.atomic(layer, |img| {
            *img = new;
            Some(Rect::new(0, 0, w, h))
        })
    }

    /// Sets every pixel of `layer` to 0 as one undo step.
    pub fn clear_layer(&mut self, layer: Layer) -> bool {
        let (w, h) = self.dimensions();
        self.replace_layer(layer, GrayImage::new(w, h))
    }

    fn push(&mut self, edit: Edit) {
        self.redo.clear();
        self.history_bytes += edit.bytes();
        self.undo.push_back(edit);
        while self.undo.len() > MAX_HISTORY_STEPS
            || (self.history_bytes > MAX_HISTORY_BYTES && self.undo.len() > 1)
        {
            if let Some(old) = self.undo.pop_front() {
                self.history_bytes -= old.bytes();
            }
        }
    }

    fn apply(&mut self, edit: &Edit, forward: bool) {
        let bytes = if forward { &edit.after } else { &edit.before };
        paste_rect(&mut self.layers[edit.layer.index()], edit.rect, bytes);
        self.mark(edit.layer, Some(edit.rect));
        self.revision += 1;
    }

    /// Reverts the last step; returns the layer it touched.
    pub fn undo(&mut self) -> Option<Layer> {
        self.end_stroke();
        let edit = self.undo.pop_back()?;
        self.history_bytes -= edit.bytes();
        self.apply(&edit, false);
        let layer = edit.layer;
        self.redo.push(edit);
        Some(layer)
    }

    /// Re-applies the last undone step; returns the layer it touched.
    pub fn redo(&mut self) -> Option<Layer> {
        self.end_stroke();
        let edit = self.redo.pop()?;
        self.apply(&edit, true);
        let layer = edit.layer;
        self.history_bytes += edit.bytes();
        self.undo.push_back(edit);
        Some(layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(w: u32, h: u32) -> Document {
        Document::new(GrayImage::new(w, h), GrayImage::new(w, h))
    }

    #[test]
    fn new_binarises_and_fixes_box_size() {
        let mut m = GrayImage::new(4, 4);
        m.put_pixel(1, 1, image::Luma([200]));
        m.put_pixel(2, 2, image::Luma([100]));
        let d = Document::new(m, GrayImage::new(3, 3));
        assert_eq!(d.layer(Layer::Mask).get_pixel(1, 1)[0], 255);
        assert_eq!(d.layer(Layer::Mask).get_pixel(2, 2)[0], 0);
        assert_eq!(d.layer(Layer::Box).dimensions(), (4, 4));
    }

    #[test]
    fn undo_restores_bytes_exactly_and_redo_reapplies() {
        let mut d = doc(64, 48);
        d.fill_rect(Layer::Mask, (5.0, 5.0), (20.0, 20.0), true);
        let base = d.layer(Layer::Mask).clone();
        d.begin_stroke(Layer::Mask);
        d.stroke_segment((10.0, 30.0), (60.0, 10.0), 6, TipShape::Round, true);
        d.stroke_segment((60.0, 10.0), (12.0, 12.0), 6, TipShape::Round, false);
        assert!(d.end_stroke());
        let painted = d.layer(Layer::Mask).clone();
        assert_ne!(painted, base);
        assert_eq!(d.undo(), Some(Layer::Mask));
        assert_eq!(d.layer(Layer::Mask), &base);
        assert_eq!(d.redo(), Some(Layer::Mask));
        assert_eq!(d.layer(Layer::Mask), &painted);
        // The history holds only the changed rectangle, not whole images.
        let e = d.undo.back().expect("one edit");
        assert!((e.rect.area() as usize) < 64 * 48);
        assert_eq!(e.before.len(), e.rect.area() as usize);
    }

    #[test]
    fn layers_are_independent_in_history() {
        let mut d = doc(20, 20);
        d.fill_rect(Layer::Mask, (0.0, 0.0), (5.0, 5.0), true);
        d.fill_rect(Layer::Box, (10.0, 10.0), (15.0, 15.0), true);
        assert_eq!(d.undo(), Some(Layer::Box));
        assert!(d.layer(Layer::Box).iter().all(|&p| p == 0));
        assert_eq!(d.layer(Layer::Mask).get_pixel(2, 2)[0], 255);
        assert_eq!(d.undo(), Some(Layer::Mask));
        assert!(d.layer(Layer::Mask).iter().all(|&p| p == 0));
        assert_eq!(d.undo(), None);
    }

    #[test]
    fn no_op_stroke_records_nothing() {
        let mut d = doc(10, 10);
        d.begin_stroke(Layer::Mask);
        d.stroke_segment((3.0, 3.0), (5.0, 5.0), 2, TipShape::Square, false);
        assert!(!d.end_stroke());
        assert_eq!(d.undo_len(), 0);
    }

    #[test]
    fn new_edit_clears_redo() {
        let mut d = doc(10, 10);
        d.fill_rect(Layer::Mask, (0.0, 0.0), (2.0, 2.0), true);
        d.undo();
        assert_eq!(d.redo_len(), 1);
        d.fill_rect(Layer::Mask, (5.0, 5.0), (7.0, 7.0), true);
        assert_eq!(d.redo_len(), 0);
    }

    #[test]
    fn history_is_bounded() {
        let mut d = doc(16, 16);
        for i in 0..(MAX_HISTORY_STEPS + 25) {
            let v = i % 2 == 0;
            d.fill_rect(Layer::Mask, (0.0, 0.0), (4.0, 4.0), v);
        }
        assert_eq!(d.undo_len(), MAX_HISTORY_STEPS);
        let mut n = 0;
        while d.undo().is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_HISTORY_STEPS);
    }

    #[test]
    fn dirty_region_covers_edits() {
        let mut d = doc(30, 30);
        d.fill_rect(Layer::Box, (3.0, 4.0), (8.0, 9.0), true);
        assert_eq!(d.take_dirty(Layer::Box), Some(Rect::new(3, 4, 5, 5)));
        assert_eq!(d.take_dirty(Layer::Box), None);
        assert_eq!(d.take_dirty(Layer::Mask), None);
    }

    #[test]
    fn replace_and_clear_are_undoable() {
        let mut d = doc(8, 8);
        let mut full = GrayImage::new(8, 8);
        full.fill(255);
        assert!(d.replace_layer(Layer::Box, full.clone()));
        assert_eq!(d.layer(Layer::Box), &full);
        assert!(d.clear_layer(Layer::Box));
        assert!(d.layer(Layer::Box).iter().all(|&p| p == 0));
        d.undo();
        assert_eq!(d.layer(Layer::Box), &full);
        assert!(!d.replace_layer(Layer::Box, GrayImage::new(3, 3)));
    }
}
