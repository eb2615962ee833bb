//! The mask / box-mask painter pane. (Temporary interface stub: replaced on merge.)
use std::sync::Arc;

use image::{GrayImage, RgbImage};

use super::PaneContext;

/// Painter pane.
#[derive(Default)]
pub struct PainterPane {
    id: Option<String>,
}

impl PainterPane {
    /// Shows a loaded image.
    pub fn set_image(&mut self, id: String, _image: Arc<RgbImage>, _mask: GrayImage, _box_mask: GrayImage) {
        self.id = Some(id);
    }
    /// Masks were saved.
    pub fn on_masks_saved(&mut self, _id: &str) {}
    /// Draws.
    pub fn ui(&mut self, ui: &mut egui::Ui, _cx: &mut PaneContext<'_>) {
        ui.label("painter");
    }
}
