//! The painter's canvas: textures, overlays, tool previews and pointer input.

use egui::{Color32, ColorImage, Event, Pos2, Rect, Stroke, TextureOptions, Vec2};
use image::GrayImage;

use super::document::Layer;
use super::raster::{TipShape, snap_center};
use super::{Loaded, PainterPane, Textures, Tool};
use crate::imaging::rect::Rect as PxRect;
use crate::ui::canvas::SharedView;

/// Masks stay hard-edged when zoomed; the photo is smoothed only when shrunk.
const IMAGE_OPTIONS: TextureOptions = TextureOptions {
    minification: egui::TextureFilter::Linear,
    ..TextureOptions::NEAREST
};

/// Region `r` of a mask as white-where-set, transparent elsewhere (tinted when drawn).
fn overlay_image(mask: &GrayImage, r: PxRect) -> ColorImage {
    let mut pixels = Vec::with_capacity(r.area() as usize);
    for y in r.y..r.bottom() {
        for x in r.x..r.right() {
            let on = mask.get_pixel(x, y)[0] != 0;
            pixels.push(if on {
                Color32::WHITE
            } else {
                Color32::TRANSPARENT
            });
        }
    }
    ColorImage::new([r.w as usize, r.h as usize], pixels)
}

fn full(mask: &GrayImage) -> PxRect {
    PxRect::new(0, 0, mask.width(), mask.height())
}

/// Creates the textures on first use and uploads only the changed regions afterwards.
fn sync_textures(ctx: &egui::Context, l: &mut Loaded) {
    let layers = [Layer::Mask, Layer::Box];
    match &mut l.textures {
        None => {
            let (w, h) = l.image.dimensions();
            let picture = ColorImage::from_rgb([w as usize, h as usize], l.image.as_raw());
            let image = ctx.load_texture(format!("painter-image-{}", l.id), picture, IMAGE_OPTIONS);
            let tex = |layer: Layer| {
                let m = l.doc.layer(layer);
                ctx.load_texture(
                    format!("painter-{layer:?}-{}", l.id),
                    overlay_image(m, full(m)),
                    TextureOptions::NEAREST,
                )
            };
            l.textures = Some(Textures {
                image,
                layers: [tex(Layer::Mask), tex(Layer::Box)],
            });
            for layer in layers {
                l.doc.take_dirty(layer);
            }
            l.box_rects = None;
        }
        Some(t) => {
            for (i, layer) in layers.into_iter().enumerate() {
                if let Some(r) = l.doc.take_dirty(layer) {
                    let part = overlay_image(l.doc.layer(layer), r);
                    t.layers[i].set_partial(
                        [r.x as usize, r.y as usize],
                        part,
                        TextureOptions::NEAREST,
                    );
                    if layer == Layer::Box {
                        l.box_rects = None;
                    }
                }
            }
        }
    }
}

fn tint(style: &super::LayerStyle) -> Color32 {
    let [r, g, b, _] = style.color.to_srgba_unmultiplied();
    Color32::from_rgba_unmultiplied(
        r,
        g,
        b,
        (style.opacity.clamp(0.0, 1.0) * 255.0).round() as u8,
    )
}

fn to_tuple(p: Pos2) -> (f32, f32) {
    (p.x, p.y)
}

impl PainterPane {
    /// Fills the polygon in progress (needs three distinct vertices) and ends it.
    pub(super) fn close_polygon(&mut self, ui: &egui::Ui) {
        let zoom = self.canvas.view().zoom;
        let mut pts: Vec<Pos2> = Vec::new();
        // A double-click leaves near-duplicate vertices: drop those closer than 3 screen points.
        for &p in &self.gesture.polygon {
            if pts
                .last()
                .is_none_or(|q: &Pos2| (p - *q).length() * zoom >= 3.0)
            {
                pts.push(p);
            }
        }
        self.gesture.polygon.clear();
        let Some(l) = &mut self.loaded else { return };
        if pts.len() < 3 {
            return;
        }
        let shift = ui.ctx().input(|i| i.modifiers.shift);
        let add = self.settings.subtract == shift;
        let pts: Vec<(f32, f32)> = pts.into_iter().map(to_tuple).collect();
        if l.doc
            .fill_polygon(self.settings.layer, &pts, self.settings.fill_rule, add)
        {
            self.last_edit = ui.ctx().input(|i| i.time);
        }
    }

    /// Shows the image and overlays, and applies the active tool to pointer input.
    pub(super) fn canvas_ui(&mut self, ui: &mut egui::Ui, shared: &mut Option<SharedView>) {
        let ctx = ui.ctx().clone();
        let Some(l) = &self.loaded else { return };
        let (w, h) = l.image.dimensions();
        let max_side = ctx.input(|i| i.max_texture_side);
        if w as usize > max_side || h as usize > max_side {
            ui.colored_label(
                Color32::RED,
                format!(
                    "The image is {w}x{h}; this display shows at most {max_side} pixels a side."
                ),
            );
            return;
        }
        let id = l.id.clone();
        let c = self.canvas.show_shared(
            ui,
            Vec2::new(w as f32, h as f32),
            "Mask canvas",
            &id,
            shared,
        );
        self.handle_pointer(ui, &c);

        let Some(l) = &mut self.loaded else { return };
        sync_textures(&ctx, l);
        let Some(t) = &l.textures else { return };
        let view = self.canvas.view();
        let image_rect = view.image_rect_to_screen(Rect::from_min_size(
            Pos2::ZERO,
            Vec2::new(w as f32, h as f32),
        ));
        let uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
        let p = &c.painter;
        p.image(t.image.id(), image_rect, uv, Color32::WHITE);
        let plain = !ctx.text_edit_focused() && ctx.input(|i| i.key_down(egui::Key::Tab));
        let s = &self.settings;
        if !plain {
            if s.mask_style.visible {
                p.image(t.layers[0].id(), image_rect, uv, tint(&s.mask_style));
            }
            if s.box_style.visible && !s.box_outline {
                p.image(t.layers[1].id(), image_rect, uv, tint(&s.box_style));
            } else if s.box_style.visible {
                let rects = l.box_rects.get_or_insert_with(|| {
                    crate::imaging::boxes::box_rects_from_mask(l.doc.layer(Layer::Box), 0)
                });
                let stroke = Stroke::new(2.0, tint(&s.box_style));
                for r in rects.iter() {
                    let rr = Rect::from_min_size(
                        Pos2::new(r.x as f32, r.y as f32),
                        Vec2::new(r.w as f32, r.h as f32),
                    );
                    p.rect_stroke(
                        view.image_rect_to_screen(rr),
                        0.0,
                        stroke,
                        egui::StrokeKind::Inside,
                    );
                }
            }
        }
        self.draw_previews(&c, &ctx);
    }

    fn draw_previews(&self, c: &crate::ui::canvas::CanvasResponse, ctx: &egui::Context) {
        let view = self.canvas.view();
        let p = &c.painter;
        let dark = Stroke::new(3.0, Color32::from_black_alpha(160));
        let light = Stroke::new(1.0, Color32::WHITE);
        let both = |shape: &dyn Fn(Stroke)| {
            shape(dark);
            shape(light);
        };
        let hover = c.response.hover_pos().map(|s| view.screen_to_image(s));
        match self.settings.tool {
            Tool::Brush | Tool::Eraser => {
                if let Some(hp) = hover.filter(|_| !c.panning) {
                    let size = self.settings.size;
                    let (x, y) = snap_center(hp.x, hp.y, size);
                    let centre = view.image_to_screen(Pos2::new(x, y));
                    let half = size as f32 / 2.0 * view.zoom;
                    match self.settings.tip {
                        TipShape::Round => both(&|st| {
                            p.circle_stroke(centre, half, st);
                        }),
                        TipShape::Square => both(&|st| {
                            p.rect_stroke(
                                Rect::from_center_size(centre, Vec2::splat(2.0 * half)),
                                0.0,
                                st,
                                egui::StrokeKind::Middle,
                            );
                        }),
                    }
                }
            }
            Tool::Polygon => {
                let mut pts: Vec<Pos2> = self
                    .gesture
                    .polygon
                    .iter()
                    .map(|&q| view.image_to_screen(q))
                    .collect();
                if !pts.is_empty()
                    && let Some(hp) = hover
                {
                    pts.push(view.image_to_screen(hp));
                }
                if pts.len() >= 2 {
                    both(&|st| {
                        p.add(egui::Shape::closed_line(pts.clone(), st));
                    });
                }
            }
            Tool::Box => {
                let now = ctx
                    .input(|i| i.pointer.latest_pos())
                    .map(|s| view.screen_to_image(s));
                if let (Some(a), Some(b)) = (self.gesture.box_start, now) {
                    let r = Rect::from_two_pos(view.image_to_screen(a), view.image_to_screen(b));
                    both(&|st| {
                        p.rect_stroke(r, 0.0, st, egui::StrokeKind::Middle);
                    });
                }
            }
        }
    }

    /// Turns this frame's pointer events into edits.
    fn handle_pointer(&mut self, ui: &egui::Ui, c: &crate::ui::canvas::CanvasResponse) {
        let ctx = ui.ctx();
        let view = c.view;
        let to_img = |s: Pos2| view.screen_to_image(s);
        let (pressed, down, double, latest, moves, shift, now) = ctx.input(|i| {
            let moves: Vec<Pos2> = i
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::PointerMoved(p) => Some(*p),
                    Event::PointerButton {
                        pos,
                        button: egui::PointerButton::Primary,
                        ..
                    } => Some(*pos),
                    _ => None,
                })
                .collect();
            (
                i.pointer.primary_pressed(),
                i.pointer.primary_down(),
                i.pointer
                    .button_double_clicked(egui::PointerButton::Primary),
                i.pointer.interact_pos(),
                moves,
                i.modifiers.shift,
                i.time,
            )
        });
        let on_canvas = c.response.hovered() || c.response.is_pointer_button_down_on();
        let starts = pressed && on_canvas && !c.panning;
        if pressed && on_canvas {
            // Take the keyboard focus from any button, so Enter / Space cannot press it.
            c.response.request_focus();
        }
        let Some(l) = &mut self.loaded else { return };
        let s = &self.settings;
        let add = s.subtract == shift;
        match s.tool {
            Tool::Brush | Tool::Eraser => {
                let paint = s.tool == Tool::Brush;
                if starts && let Some(pos) = latest.map(to_img) {
                    l.doc.begin_stroke(s.layer);
                    let at = to_tuple(pos);
                    l.doc.stroke_segment(at, at, s.size, s.tip, paint);
                    self.gesture.stroke_last = Some(at);
                }
                if let Some(mut last) = self.gesture.stroke_last {
                    for m in moves {
                        let at = to_tuple(to_img(m));
                        l.doc.stroke_segment(last, at, s.size, s.tip, paint);
                        last = at;
                    }
                    self.gesture.stroke_last = Some(last);
                    self.last_edit = now;
                    if !down {
                        l.doc.end_stroke();
                        self.gesture.stroke_last = None;
                    }
                }
            }
            Tool::Polygon => {
                if double {
                    self.close_polygon(ui);
                } else if starts && let Some(pos) = latest.map(to_img) {
                    self.gesture.polygon.push(pos);
                }
            }
            Tool::Box => {
                if starts {
                    self.gesture.box_start = latest.map(to_img);
                }
                if !down
                    && let Some(a) = self.gesture.box_start.take()
                    && let Some(b) = latest.map(to_img)
                    && l.doc.fill_rect(s.layer, to_tuple(a), to_tuple(b), add)
                {
                    self.last_edit = now;
                }
            }
        }
    }
}
