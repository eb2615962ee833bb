//! The painter's controls: toolbar, overlay settings, keyboard shortcuts and the help window.

use egui::{Key, Modifiers};

use super::document::Layer;
use super::raster::{FillRule, TipShape};
use super::{DEFAULT_MARGIN, MAX_BRUSH, PainterPane, Tool};
use crate::ui::PaneContext;

/// Every shortcut, as shown in the help window.
pub const SHORTCUTS: &[(&str, &str)] = &[
    ("M / B", "Edit the pixel mask / the box mask"),
    ("1 / 2 / 3 / 4", "Brush / eraser / polygon / box tool"),
    ("R", "Toggle round / square tip"),
    ("[ / ]", "Shrink / grow the brush"),
    ("Shift (polygon, box)", "Subtract instead of add"),
    ("Enter / double-click", "Close and fill the polygon"),
    ("Esc", "Cancel the polygon, else fit the image to the pane"),
    ("Mouse wheel", "Zoom towards the cursor"),
    ("Space + drag, middle drag", "Pan"),
    ("Hold Tab", "Show the plain image"),
    ("Ctrl+Z", "Undo"),
    ("Ctrl+Shift+Z / Ctrl+Y", "Redo"),
    ("Ctrl+S", "Save"),
    ("N", "Save and go to the next image"),
    ("H", "Toggle this help"),
];

impl PainterPane {
    /// Brush size after one `[` (`grow` false) or `]` press: about 15 %, at least one pixel.
    pub fn stepped_size(size: u32, grow: bool) -> u32 {
        let step = (size / 7).max(1);
        if grow {
            (size + step).min(MAX_BRUSH)
        } else {
            size.saturating_sub(step).max(1)
        }
    }

    fn undo(&mut self, ui: &egui::Ui) {
        if let Some(l) = &mut self.loaded
            && l.doc.undo().is_some()
        {
            self.last_edit = ui.ctx().input(|i| i.time);
        }
    }

    fn redo(&mut self, ui: &egui::Ui) {
        if let Some(l) = &mut self.loaded
            && l.doc.redo().is_some()
        {
            self.last_edit = ui.ctx().input(|i| i.time);
        }
    }

    fn save_now(&mut self, cx: &mut PaneContext<'_>) {
        self.save_wanted = !self.try_save(cx);
    }

    fn save_and_next(&mut self, cx: &mut PaneContext<'_>) {
        // The switch itself saves a dirty mask (retrying while the channel is full).
        if !cx.selection.select_next() {
            cx.status.info("This is the last image.");
        }
    }

    /// Handles the pane's shortcuts (not while a text field has the keyboard).
    pub(super) fn keyboard(&mut self, ui: &egui::Ui, cx: &mut PaneContext<'_>) {
        let ctx = ui.ctx().clone();
        if ctx.text_edit_focused() {
            return;
        }
        let cmd_shift = Modifiers::COMMAND | Modifiers::SHIFT;
        let (redo, undo, save) = ctx.input_mut(|i| {
            let redo =
                i.consume_key(cmd_shift, Key::Z) || i.consume_key(Modifiers::COMMAND, Key::Y);
            let undo = i.consume_key(Modifiers::COMMAND, Key::Z);
            (redo, undo, i.consume_key(Modifiers::COMMAND, Key::S))
        });
        if redo {
            self.redo(ui);
        } else if undo {
            self.undo(ui);
        }
        if save {
            self.save_now(cx);
        }
        let pressed = |k: Key| ctx.input_mut(|i| i.consume_key(Modifiers::NONE, k));
        let s = &mut self.settings;
        if pressed(Key::M) {
            s.layer = Layer::Mask;
        }
        if pressed(Key::B) {
            s.layer = Layer::Box;
        }
        for (key, tool) in [
            (Key::Num1, Tool::Brush),
            (Key::Num2, Tool::Eraser),
            (Key::Num3, Tool::Polygon),
            (Key::Num4, Tool::Box),
        ] {
            if pressed(key) {
                s.tool = tool;
            }
        }
        if pressed(Key::R) {
            s.tip = match s.tip {
                TipShape::Round => TipShape::Square,
                TipShape::Square => TipShape::Round,
            };
        }
        if pressed(Key::OpenBracket) {
            s.size = Self::stepped_size(s.size, false);
        }
        if pressed(Key::CloseBracket) {
            s.size = Self::stepped_size(s.size, true);
        }
        if pressed(Key::H) {
            self.help_open = !self.help_open;
        }
        if !self.gesture.polygon.is_empty() && pressed(Key::Enter) {
            self.close_polygon(ui);
        }
        if pressed(Key::Escape) {
            if self.gesture.polygon.is_empty() && self.gesture.box_start.is_none() {
                self.canvas.reset_view();
            } else {
                self.gesture.polygon.clear();
                self.gesture.box_start = None;
            }
        }
        if pressed(Key::N) {
            self.save_and_next(cx);
        }
    }

    /// Draws the controls above the canvas.
    pub(super) fn toolbar(&mut self, ui: &mut egui::Ui, cx: &mut PaneContext<'_>) {
        ui.horizontal_wrapped(|ui| {
            let s = &mut self.settings;
            ui.radio_value(&mut s.layer, Layer::Mask, "Pixel mask");
            ui.radio_value(&mut s.layer, Layer::Box, "Box mask");
            ui.separator();
            ui.selectable_value(&mut s.tool, Tool::Brush, "Brush");
            ui.selectable_value(&mut s.tool, Tool::Eraser, "Eraser");
            ui.selectable_value(&mut s.tool, Tool::Polygon, "Polygon");
            ui.selectable_value(&mut s.tool, Tool::Box, "Box");
            ui.separator();
            ui.selectable_value(&mut s.tip, TipShape::Round, "Round");
            ui.selectable_value(&mut s.tip, TipShape::Square, "Square");
            ui.add(
                egui::Slider::new(&mut s.size, 1..=MAX_BRUSH)
                    .logarithmic(true)
                    .text("Brush size"),
            );
            ui.checkbox(&mut s.subtract, "Subtract");
            ui.selectable_value(&mut s.fill_rule, FillRule::EvenOdd, "Even-odd");
            ui.selectable_value(&mut s.fill_rule, FillRule::NonZero, "Nonzero");
        });
        ui.horizontal_wrapped(|ui| {
            let (can_undo, can_redo) = self.loaded.as_ref().map_or((false, false), |l| {
                (l.doc.undo_len() > 0, l.doc.redo_len() > 0)
            });
            if ui
                .add_enabled(can_undo, egui::Button::new("Undo"))
                .clicked()
            {
                self.undo(ui);
            }
            if ui
                .add_enabled(can_redo, egui::Button::new("Redo"))
                .clicked()
            {
                self.redo(ui);
            }
            if ui.button("Clear layer").clicked()
                && let Some(l) = &mut self.loaded
                && l.doc.clear_layer(self.settings.layer)
            {
                self.last_edit = ui.ctx().input(|i| i.time);
            }
            ui.separator();
            let box_clicked = ui.button("Box from mask").clicked();
            let label = ui.label("Margin");
            let margin = self.settings.margin.get_or_insert(DEFAULT_MARGIN);
            ui.add(egui::DragValue::new(margin).range(0..=4096).suffix(" px"))
                .labelled_by(label.id);
            let margin = *margin;
            if box_clicked && let Some(l) = &mut self.loaded {
                let boxes =
                    crate::imaging::boxes::box_mask_from_mask(l.doc.layer(Layer::Mask), margin);
                if l.doc.replace_layer(Layer::Box, boxes) {
                    self.last_edit = ui.ctx().input(|i| i.time);
                }
            }
            ui.separator();
            if ui.button("Save").on_hover_text("Ctrl+S").clicked() {
                self.save_now(cx);
            }
            if ui.button("Save & next").on_hover_text("N").clicked() {
                self.save_and_next(cx);
            }
            let state = match &self.loaded {
                Some(l) if l.doc.revision() != l.sent_revision => "Unsaved changes",
                Some(l) if l.sent_revision != l.saved_revision => "Saving…",
                _ => "Saved",
            };
            ui.label(state);
            ui.separator();
            ui.label(format!("Zoom {:.0} %", self.canvas.view().zoom * 100.0));
            if ui.button("Fit").on_hover_text("Esc").clicked() {
                self.canvas.reset_view();
            }
            if ui
                .button("?")
                .on_hover_text("Keyboard shortcuts (H)")
                .clicked()
            {
                self.help_open = !self.help_open;
            }
        });
        ui.horizontal_wrapped(|ui| {
            let s = &mut self.settings;
            for (name, style) in [
                ("Pixel mask", &mut s.mask_style),
                ("Box mask", &mut s.box_style),
            ] {
                ui.checkbox(&mut style.visible, format!("Show {}", name.to_lowercase()));
                let label = ui.label(format!("{name} colour"));
                ui.color_edit_button_srgba(&mut style.color)
                    .labelled_by(label.id);
                ui.add(
                    egui::Slider::new(&mut style.opacity, 0.0..=1.0)
                        .text(format!("{name} opacity")),
                );
            }
            ui.checkbox(&mut s.box_outline, "Box outline");
        });
    }

    /// The shortcut list, toggled with H or the "?" button.
    pub(super) fn help_window(&mut self, ui: &egui::Ui) {
        let mut open = self.help_open;
        egui::Window::new("Keyboard shortcuts")
            .open(&mut open)
            .resizable(false)
            .collapsible(false)
            .show(ui.ctx(), |ui| {
                egui::Grid::new("painter_shortcuts")
                    .striped(true)
                    .show(ui, |ui| {
                        for (keys, what) in SHORTCUTS {
                            ui.strong(*keys);
                            ui.label(*what);
                            ui.end_row();
                        }
                    });
            });
        self.help_open = open;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_steps_grow_and_shrink_within_bounds() {
        assert!(PainterPane::stepped_size(12, true) > 12);
        assert!(PainterPane::stepped_size(12, false) < 12);
        assert_eq!(PainterPane::stepped_size(1, false), 1);
        assert_eq!(PainterPane::stepped_size(MAX_BRUSH, true), MAX_BRUSH);
        assert_eq!(PainterPane::stepped_size(2, true), 3);
    }
}
