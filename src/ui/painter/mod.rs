//! The mask / box-mask painter pane.
//!
//! The pane follows the shared selection: when it changes it first saves unsaved masks, then asks
//! the worker for the new image and shows "Loading…" until [`PainterPane::set_image`] delivers it.
//! Saving never loses work: a full command channel leaves the masks dirty and the send is retried
//! on the next frame. Pure editing logic lives in [`document`] and [`raster`]; [`tools`] draws the
//! controls and [`view`] the canvas and its pointer input.

pub mod document;
pub mod raster;
mod tools;
mod view;

use std::sync::Arc;

use egui::{Color32, TextureHandle};
use image::{GrayImage, RgbImage};

use crate::protocol::Command;
use crate::ui::PaneContext;
use crate::ui::canvas::{ImageCanvas, ViewTransform};
use document::{Document, Layer};
use raster::{FillRule, TipShape};

/// Seconds after the last edit before unsaved masks are saved automatically.
pub const AUTOSAVE_DELAY_S: f64 = 2.0;
/// Box margin used when no project says otherwise.
pub const DEFAULT_MARGIN: u32 = 8;
/// Largest brush size in pixels.
pub const MAX_BRUSH: u32 = 512;

/// The editing tool under the primary button.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Paints with the tip.
    Brush,
    /// Erases with the tip.
    Eraser,
    /// Click vertices, Enter or double-click fills the polygon.
    Polygon,
    /// Drag a rectangle to fill it.
    Box,
}

/// How one layer is drawn over the image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerStyle {
    /// Overlay colour (opaque).
    pub color: Color32,
    /// Overlay opacity, 0..=1.
    pub opacity: f32,
    /// Whether the layer is drawn at all.
    pub visible: bool,
}

/// The tool settings, kept across images.
#[derive(Clone, Debug)]
pub struct ToolSettings {
    /// The layer being edited.
    pub layer: Layer,
    /// The active tool.
    pub tool: Tool,
    /// Brush / eraser tip shape.
    pub tip: TipShape,
    /// Brush / eraser diameter in image pixels.
    pub size: u32,
    /// Polygon and box tools remove instead of add (Shift inverts it).
    pub subtract: bool,
    /// Polygon fill rule.
    pub fill_rule: FillRule,
    /// Margin for "Box from mask"; `None` until taken from the project.
    pub margin: Option<u32>,
    /// Pixel mask overlay.
    pub mask_style: LayerStyle,
    /// Box mask overlay.
    pub box_style: LayerStyle,
    /// Draw box regions as outlines instead of a fill.
    pub box_outline: bool,
}

impl Default for ToolSettings {
    fn default() -> Self {
        Self {
            layer: Layer::Mask,
            tool: Tool::Brush,
            tip: TipShape::Round,
            size: 12,
            subtract: false,
            fill_rule: FillRule::EvenOdd,
            margin: None,
            mask_style: LayerStyle {
                color: Color32::from_rgb(255, 40, 40),
                opacity: 0.5,
                visible: true,
            },
            box_style: LayerStyle {
                color: Color32::from_rgb(40, 160, 255),
                opacity: 0.3,
                visible: true,
            },
            box_outline: false,
        }
    }
}

/// GPU textures of the loaded image: the picture and one overlay per layer.
struct Textures {
    image: TextureHandle,
    layers: [TextureHandle; 2],
}

/// The image being edited.
struct Loaded {
    id: String,
    image: Arc<RgbImage>,
    doc: Document,
    textures: Option<Textures>,
    /// Revision last handed to the worker.
    sent_revision: u64,
    /// Revision the worker confirmed written.
    saved_revision: u64,
    /// Box rectangles for the outline view, rebuilt when the box layer changes.
    box_rects: Option<Vec<crate::imaging::rect::Rect>>,
}

/// Pointer interaction in progress on the canvas.
#[derive(Default)]
struct Gesture {
    /// Last tip position of an open brush stroke (image coordinates).
    stroke_last: Option<(f32, f32)>,
    /// Polygon vertices placed so far (image coordinates).
    polygon: Vec<egui::Pos2>,
    /// Where a box drag began (image coordinates).
    box_start: Option<egui::Pos2>,
}

/// The painter pane (see the module docs).
pub struct PainterPane {
    loaded: Option<Loaded>,
    requested: Option<String>,
    canvas: ImageCanvas,
    settings: ToolSettings,
    gesture: Gesture,
    help_open: bool,
    last_edit: f64,
    save_wanted: bool,
    /// The project whose box margin the margin field was last set from.
    margin_project: Option<std::path::PathBuf>,
    /// An image that could not be loaded, and why (shown instead of "Loading…").
    failed: Option<(String, String)>,
}

impl Default for PainterPane {
    fn default() -> Self {
        Self::new()
    }
}

impl PainterPane {
    /// An empty pane.
    pub fn new() -> Self {
        Self {
            loaded: None,
            requested: None,
            canvas: ImageCanvas::new(),
            settings: ToolSettings::default(),
            gesture: Gesture::default(),
            help_open: false,
            last_edit: 0.0,
            save_wanted: false,
            margin_project: None,
            failed: None,
        }
    }

    /// Takes a loaded image (from `Event::ImageLoaded`); resets undo history and view. An image
    /// other than the one requested last is stale and ignored.
    pub fn set_image(
        &mut self,
        id: String,
        image: Arc<RgbImage>,
        mask: GrayImage,
        box_mask: GrayImage,
    ) {
        if self.requested.as_deref().is_some_and(|r| r != id) {
            return;
        }
        let mask = if mask.dimensions() == image.dimensions() {
            mask
        } else {
            GrayImage::new(image.width(), image.height())
        };
        self.loaded = Some(Loaded {
            id,
            image,
            doc: Document::new(mask, box_mask),
            textures: None,
            sent_revision: 0,
            saved_revision: 0,
            box_rects: None,
        });
        self.requested = None;
        self.failed = None;
        self.gesture = Gesture::default();
        self.save_wanted = false;
        self.canvas.reset_view();
    }

    /// Notes that the image requested last could not be loaded (from `Event::JobFailed`).
    pub fn on_load_failed(&mut self, message: String) {
        if let Some(id) = self.requested.take() {
            self.failed = Some((id, message));
        }
    }

    /// Hands unsaved edits to the worker now (the window is closing).
    pub fn flush(&mut self, cx: &mut PaneContext<'_>) {
        if self.is_dirty() {
            self.try_save(cx);
        }
    }

    /// Notes that the worker wrote the masks of `id` (from `Event::MasksSaved`).
    pub fn on_masks_saved(&mut self, id: &str) {
        if let Some(l) = &mut self.loaded
            && l.id == id
        {
            l.saved_revision = l.sent_revision;
        }
    }

    /// Id of the image being edited.
    pub fn current_id(&self) -> Option<&str> {
        self.loaded.as_ref().map(|l| l.id.as_str())
    }

    /// The pixel mask being edited.
    pub fn mask(&self) -> Option<&GrayImage> {
        self.loaded.as_ref().map(|l| l.doc.layer(Layer::Mask))
    }

    /// The box mask being edited.
    pub fn box_mask(&self) -> Option<&GrayImage> {
        self.loaded.as_ref().map(|l| l.doc.layer(Layer::Box))
    }

    /// True when there are edits not yet handed to the worker for saving.
    pub fn is_dirty(&self) -> bool {
        self.loaded
            .as_ref()
            .is_some_and(|l| l.doc.revision() != l.sent_revision)
    }

    /// The canvas's current view (image <-> screen mapping).
    pub fn view(&self) -> ViewTransform {
        self.canvas.view()
    }

    /// Current tool settings.
    pub fn settings(&self) -> &ToolSettings {
        &self.settings
    }

    /// Tool settings, to change them programmatically.
    pub fn settings_mut(&mut self) -> &mut ToolSettings {
        &mut self.settings
    }

    /// Sends the masks to the worker; on a full channel keeps them dirty and returns false.
    fn try_save(&mut self, cx: &mut PaneContext<'_>) -> bool {
        let Some(l) = &mut self.loaded else {
            return true;
        };
        let cmd = Command::SaveMasks {
            id: l.id.clone(),
            mask: l.doc.layer(Layer::Mask).clone(),
            box_mask: l.doc.layer(Layer::Box).clone(),
        };
        match cx.commands.send(cmd) {
            Ok(()) => {
                l.sent_revision = l.doc.revision();
                self.save_wanted = false;
                true
            }
            Err(_) => {
                cx.status.error(format!(
                    "Worker busy: masks of {} not saved yet, retrying",
                    l.id
                ));
                false
            }
        }
    }

    /// Follows the selection: saves, then requests the newly selected image. Returns false while
    /// the old image must stay (its save could not be sent yet).
    fn follow_selection(&mut self, cx: &mut PaneContext<'_>) {
        let want = cx.selection.current.clone();
        let target = self
            .requested
            .clone()
            .or_else(|| self.loaded.as_ref().map(|l| l.id.clone()))
            .or_else(|| self.failed.as_ref().map(|(id, _)| id.clone()));
        if want == target {
            return;
        }
        if self.is_dirty() && !self.try_save(cx) {
            return;
        }
        let Some(id) = want else {
            self.loaded = None;
            self.requested = None;
            return;
        };
        match cx.commands.send(Command::LoadImage { id: id.clone() }) {
            Ok(()) => {
                self.failed = None;
                self.requested = Some(id);
                self.loaded = None;
                self.gesture = Gesture::default();
            }
            Err(_) => cx
                .status
                .error(format!("Worker busy: {id} not requested yet, retrying")),
        }
    }

    /// Autosaves when the last edit is old enough, or retries an explicit save.
    fn autosave(&mut self, ui: &egui::Ui, cx: &mut PaneContext<'_>) {
        let Some(l) = &self.loaded else { return };
        if l.doc.in_stroke() || !self.is_dirty() {
            return;
        }
        let now = ui.ctx().input(|i| i.time);
        let wait = self.last_edit + AUTOSAVE_DELAY_S - now;
        if self.save_wanted || wait <= 0.0 {
            self.try_save(cx);
        }
        // Wake up for the autosave (or the retry) even when the user does nothing.
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_secs_f64(wait.max(0.1)));
    }

    /// Draws the pane and handles its input.
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut PaneContext<'_>) {
        self.follow_selection(cx);
        match cx.project {
            // Take the margin from each newly opened project; the user may change it afterwards.
            Some(p) if self.margin_project.as_ref() != Some(&p.root) => {
                self.settings.margin = Some(p.manifest.box_margin);
                self.margin_project = Some(p.root.clone());
            }
            _ => {
                self.settings.margin.get_or_insert(DEFAULT_MARGIN);
            }
        }
        if self.loaded.is_none() {
            if let Some((id, message)) = &self.failed {
                ui.colored_label(
                    ui.visuals().error_fg_color,
                    format!("Cannot open {id}: {message}"),
                );
            } else if cx.selection.current.is_some() {
                ui.label("Loading…");
            } else {
                ui.label("Select an image in the browser to paint its masks.");
            }
            return;
        }
        self.keyboard(ui, cx);
        self.toolbar(ui, cx);
        self.help_window(ui);
        self.canvas_ui(ui, &mut cx.selection.view);
        self.autosave(ui, cx);
    }
}
