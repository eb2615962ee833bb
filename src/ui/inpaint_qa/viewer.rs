//! The viewer: the selected twin on a zoomable canvas, split before/after, heat map, boxes.

use egui::{Color32, ColorImage, Pos2, Rect, Stroke, Vec2};
use image::RgbImage;

use crate::ui::canvas::SharedView;

use super::{IMAGE_OPTIONS, InpaintQaPane, Loaded, TwinTextures, heat_map};

impl InpaintQaPane {
    pub(super) fn viewer(&mut self, ui: &mut egui::Ui, shared: &mut Option<SharedView>) {
        ui.horizontal_wrapped(|ui| {
            ui.add(egui::Slider::new(&mut self.split, 0.0..=1.0).text("Before/after split"));
            ui.checkbox(&mut self.show_heat, "Heat map");
            ui.checkbox(&mut self.show_boxes, "Box outline");
            ui.label(format!("Zoom {:.0} %", self.canvas.view().zoom * 100.0));
            if ui.button("Fit").clicked() {
                self.canvas.reset_view();
            }
            ui.weak("Hold Tab: before · A accept · R reject · wheel zoom · middle drag pan");
        });
        if let Some((id, message)) = &self.failed {
            let what = id.as_deref().unwrap_or("the twin");
            ui.colored_label(
                ui.visuals().error_fg_color,
                format!("Cannot load {what}: {message}"),
            );
            return;
        }
        let Some(l) = &mut self.loaded else {
            ui.label(match &self.selected {
                Some(_) => "Loading…",
                None => "Select a twin to review its seam.",
            });
            return;
        };
        if self.selected.as_deref() != Some(l.id.as_str()) {
            ui.label("Loading…");
            return;
        }
        let (w, h) = l.twin.dimensions();
        let max_side = ui.ctx().input(|i| i.max_texture_side);
        if w.max(h) as usize > max_side {
            ui.colored_label(
                ui.visuals().error_fg_color,
                format!("The twin is {w}x{h}; this display shows at most {max_side} a side."),
            );
            return;
        }
        let size = Vec2::new(w as f32, h as f32);
        // The view is shared with the painter under the defect image's id.
        let image = self
            .twins
            .rows
            .iter()
            .find(|r| r.id == l.id)
            .map_or_else(String::new, |r| r.defect.clone());
        let c = self
            .canvas
            .show_shared(ui, size, "Twin canvas", &image, shared);
        let image_rect = c
            .view
            .image_rect_to_screen(Rect::from_min_size(Pos2::ZERO, size));
        let dragging =
            c.response.is_pointer_button_down_on() && ui.ctx().input(|i| i.pointer.primary_down());
        if dragging
            && !c.panning
            && image_rect.width() > 0.0
            && let Some(p) = c.response.interact_pointer_pos()
        {
            self.split = ((p.x - image_rect.left()) / image_rect.width()).clamp(0.0, 1.0);
        }
        upload(ui.ctx(), l);
        let Some(t) = &mut l.textures else { return };
        draw_split(&c.painter, t, image_rect, self.split, self.showing_before);
        if self.show_heat {
            let heat = t.heat.get_or_insert_with(|| {
                heat_map(&l.defect, &l.twin).map(|img| {
                    ui.ctx()
                        .load_texture(format!("qa-heat-{}", l.id), img, IMAGE_OPTIONS)
                })
            });
            match heat {
                Some(tex) => {
                    c.painter
                        .image(tex.id(), image_rect, full_uv(), Color32::WHITE);
                }
                None => {
                    c.painter.debug_text(
                        image_rect.left_top(),
                        egui::Align2::LEFT_TOP,
                        Color32::RED,
                        "before and after differ in size",
                    );
                }
            }
        }
        if self.show_boxes {
            for r in &l.boxes {
                let rr = Rect::from_min_size(
                    Pos2::new(r.x as f32, r.y as f32),
                    Vec2::new(r.w as f32, r.h as f32),
                );
                let sr = c.view.image_rect_to_screen(rr);
                for (width, colour) in
                    [(3.0, Color32::from_black_alpha(160)), (1.0, Color32::GREEN)]
                {
                    c.painter.rect_stroke(
                        sr,
                        0.0,
                        Stroke::new(width, colour),
                        egui::StrokeKind::Outside,
                    );
                }
            }
        }
    }
}

fn full_uv() -> Rect {
    Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0))
}

/// Uploads the loaded twin's textures on first use.
fn upload(ctx: &egui::Context, l: &mut Loaded) {
    l.textures.get_or_insert_with(|| {
        let tex = |name: &str, img: &RgbImage| {
            let (w, h) = img.dimensions();
            let color = ColorImage::from_rgb([w as usize, h as usize], img.as_raw());
            ctx.load_texture(format!("qa-{name}-{}", l.id), color, IMAGE_OPTIONS)
        };
        TwinTextures {
            before: tex("before", &l.defect),
            after: tex("after", &l.twin),
            heat: None,
        }
    });
}

/// "Before" left of the split, "after" right of it (or "before" everywhere while held).
fn draw_split(
    painter: &egui::Painter,
    t: &TwinTextures,
    image_rect: Rect,
    split: f32,
    before_only: bool,
) {
    if before_only {
        painter.image(t.before.id(), image_rect, full_uv(), Color32::WHITE);
        return;
    }
    let x = image_rect.left() + split * image_rect.width();
    let left = Rect::from_min_max(image_rect.min, Pos2::new(x, image_rect.max.y));
    let right = Rect::from_min_max(Pos2::new(x, image_rect.min.y), image_rect.max);
    let uv_left = Rect::from_min_max(Pos2::ZERO, Pos2::new(split, 1.0));
    let uv_right = Rect::from_min_max(Pos2::new(split, 0.0), Pos2::new(1.0, 1.0));
    painter.image(t.before.id(), left, uv_left, Color32::WHITE);
    painter.image(t.after.id(), right, uv_right, Color32::WHITE);
    let line = [
        Pos2::new(x, image_rect.top()),
        Pos2::new(x, image_rect.bottom()),
    ];
    painter.line_segment(line, Stroke::new(3.0, Color32::from_black_alpha(160)));
    painter.line_segment(line, Stroke::new(1.0, Color32::WHITE));
    let clip = painter.clip_rect();
    let y = clip.top().max(image_rect.top()) + 4.0;
    for (text, at, align) in [
        ("before", Pos2::new(x - 6.0, y), egui::Align2::RIGHT_TOP),
        ("after", Pos2::new(x + 6.0, y), egui::Align2::LEFT_TOP),
    ] {
        painter.text(
            at,
            align,
            text,
            egui::FontId::proportional(13.0),
            Color32::WHITE,
        );
    }
}
