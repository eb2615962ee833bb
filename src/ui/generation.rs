//! The generation canvas: pick a defect-free image, paint a mask (brush), stamp a real mask of
//! the class (drag to move, scale, quarter turns) or draw a random one, see the generated defect
//! beside the input (live after each stroke when generation is fast), save it into the project's
//! synthetic set, or run a batch.

use std::path::PathBuf;
use std::sync::Arc;

use egui::{Color32, Pos2, Rect, Vec2};
use image::{GrayImage, Luma, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::PaneContext;
use super::canvas::ImageCanvas;
use super::picker::typed_folder;
use crate::dtgan::batch::{BatchRequest, MaskSource};
use crate::dtgan::generate::Composite;
use crate::dtgan::masks::{BlobSpec, random_blob, stamp_mask};
use crate::nn::device::DeviceChoice;
use crate::project::{Provenance, Role};
use crate::protocol::{Command, SyntheticImage};

/// Live generation is offered when the last generation took less than this.
const LIVE_MS: f64 = 400.0;

/// A real mask being placed: its defect cut to the box, then scaled and turned.
#[derive(Clone, Debug)]
struct Stamp {
    cut: GrayImage,
    source: String,
    at: Pos2,
    scale: f32,
    turns: u8,
}

impl Stamp {
    fn shaped(&self) -> GrayImage {
        let turned = match self.turns % 4 {
            1 => image::imageops::rotate90(&self.cut),
            2 => image::imageops::rotate180(&self.cut),
            3 => image::imageops::rotate270(&self.cut),
            _ => self.cut.clone(),
        };
        let w = ((turned.width() as f32 * self.scale).round() as u32).max(1);
        let h = ((turned.height() as f32 * self.scale).round() as u32).max(1);
        image::imageops::resize(&turned, w, h, image::imageops::FilterType::Nearest)
    }
}

/// The generation pane.
pub struct GenerationPane {
    run: Option<PathBuf>,
    source_id: Option<String>,
    waiting_for: Option<String>,
    image: Option<Arc<RgbImage>>,
    mask: GrayImage,
    mask_source: String,
    stamp: Option<Stamp>,
    result: Option<RgbImage>,
    last_ms: Option<f64>,
    last_sha: String,
    ticket: u64,
    pending: Option<u64>,
    live: bool,
    dirty: bool,
    brush: f32,
    composite: Composite,
    class: String,
    seed: u64,
    batch_count: usize,
    batch_out: String,
    canvas: ImageCanvas,
    input_tex: Option<egui::TextureHandle>,
    result_tex: Option<egui::TextureHandle>,
    tex_dirty: bool,
}

impl Default for GenerationPane {
    fn default() -> Self {
        Self::new()
    }
}

impl GenerationPane {
    /// An empty pane.
    pub fn new() -> Self {
        Self {
            run: None,
            source_id: None,
            waiting_for: None,
            image: None,
            mask: GrayImage::new(1, 1),
            mask_source: "painted".into(),
            stamp: None,
            result: None,
            last_ms: None,
            last_sha: String::new(),
            ticket: 0,
            pending: None,
            live: true,
            dirty: false,
            brush: 6.0,
            composite: Composite::default(),
            class: String::new(),
            seed: 0,
            batch_count: 100,
            batch_out: String::new(),
            canvas: ImageCanvas::new(),
            input_tex: None,
            result_tex: None,
            tex_dirty: true,
        }
    }

    /// Uses this checkpoint (or run folder) from now on.
    pub fn set_run(&mut self, run: PathBuf) {
        self.run = Some(run);
        self.dirty = true;
    }

    /// Whether the pane asked for image `id` and still waits for it.
    pub fn wants(&self, id: &str) -> bool {
        self.waiting_for.as_deref() == Some(id)
    }

    /// The defect-free image to paint on.
    pub fn set_source(&mut self, id: String, image: Arc<RgbImage>) {
        let (w, h) = image.dimensions();
        self.mask = GrayImage::new(w, h);
        self.image = Some(image);
        self.source_id = Some(id);
        self.waiting_for = None;
        self.result = None;
        self.stamp = None;
        self.canvas.reset_view();
        self.tex_dirty = true;
    }

    /// The current mask.
    pub fn mask(&self) -> &GrayImage {
        &self.mask
    }

    /// The latest result, if any.
    pub fn result(&self) -> Option<&RgbImage> {
        self.result.as_ref()
    }

    /// A generated image arrived.
    pub fn on_generated(&mut self, ticket: u64, image: RgbImage, millis: f64, sha: String) {
        if self.pending == Some(ticket) {
            self.pending = None;
        }
        if ticket == self.ticket {
            self.result = Some(image);
            self.last_ms = Some(millis);
            self.last_sha = sha;
            self.tex_dirty = true;
        }
    }

    fn request(&mut self, cx: &mut PaneContext) {
        let (Some(run), Some(image)) = (&self.run, &self.image) else {
            return;
        };
        if crate::imaging::io::mask_is_empty(&self.mask) {
            self.dirty = false;
            return;
        }
        if self.pending.is_some() {
            self.dirty = true; // ask again once the current answer is in
            return;
        }
        self.ticket += 1;
        let cmd = Command::Generate {
            run: run.clone(),
            image: image.clone(),
            mask: self.mask.clone(),
            composite: self.composite,
            ticket: self.ticket,
        };
        if cx.commands.send(cmd).is_ok() {
            self.pending = Some(self.ticket);
            self.dirty = false;
        }
    }

    fn classes(cx: &PaneContext) -> Vec<String> {
        let mut v: Vec<String> = cx
            .project
            .map(|p| {
                p.manifest
                    .images
                    .iter()
                    .filter(|e| e.role == Role::Defect && e.synthetic.is_none())
                    .filter_map(|e| e.class.clone())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v.dedup();
        v
    }

    fn random_mask(&mut self) {
        let (w, h) = self.mask.dimensions();
        self.seed += 1;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        self.mask = random_blob(w, h, &BlobSpec::default(), &mut rng);
        self.mask_source = "random".into();
        self.after_mask_change();
    }

    fn start_stamp(&mut self, cx: &mut PaneContext) {
        let Some(project) = cx.project else { return };
        let masks: Vec<(String, PathBuf)> = project
            .manifest
            .images
            .iter()
            .filter(|e| e.synthetic.is_none() && e.classes().contains(self.class.as_str()))
            .filter_map(|e| e.mask.as_ref().map(|m| (e.id.clone(), project.abs(m))))
            .collect();
        if masks.is_empty() {
            cx.status
                .error(format!("no real masks of class `{}`", self.class));
            return;
        }
        self.seed += 1;
        let (id, path) = &masks[self.seed as usize % masks.len()];
        // Masks are small 8-bit PNGs; decoding one on a click is quick.
        match crate::imaging::io::load_mask(path) {
            Ok(real) => {
                let (w, h) = self.mask.dimensions();
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                let Some(placed) =
                    stamp_mask(&real, real.width(), real.height(), (1.0, 1.0), &mut rng)
                else {
                    cx.status.error(format!("the mask of {id} is empty"));
                    return;
                };
                let Some(b) = crate::dtgan::generate::mask_bbox(&placed) else {
                    return;
                };
                let cut = image::imageops::crop_imm(&placed, b.x, b.y, b.w, b.h).to_image();
                self.stamp = Some(Stamp {
                    cut,
                    source: format!("stamp:{id}"),
                    at: Pos2::new(w as f32 / 2.0, h as f32 / 2.0),
                    scale: 1.0,
                    turns: 0,
                });
            }
            Err(e) => cx.status.error(e.to_string()),
        }
    }

    fn apply_stamp(&mut self) {
        let Some(stamp) = self.stamp.take() else {
            return;
        };
        let shaped = stamp.shaped();
        let (w, h) = self.mask.dimensions();
        let x0 = stamp.at.x as i64 - i64::from(shaped.width() / 2);
        let y0 = stamp.at.y as i64 - i64::from(shaped.height() / 2);
        for (x, y, p) in shaped.enumerate_pixels() {
            let (mx, my) = (x0 + i64::from(x), y0 + i64::from(y));
            if p[0] >= 128 && mx >= 0 && my >= 0 && mx < i64::from(w) && my < i64::from(h) {
                self.mask.put_pixel(mx as u32, my as u32, Luma([255]));
            }
        }
        self.mask_source = stamp.source;
        self.after_mask_change();
    }

    fn after_mask_change(&mut self) {
        self.tex_dirty = true;
        self.dirty = true;
    }

    fn paint(&mut self, at: Pos2, value: u8) {
        let (w, h) = self.mask.dimensions();
        let r = self.brush;
        let (x0, x1) = (
            (at.x - r).floor().max(0.0) as u32,
            ((at.x + r).ceil() as u32).min(w),
        );
        let (y0, y1) = (
            (at.y - r).floor().max(0.0) as u32,
            ((at.y + r).ceil() as u32).min(h),
        );
        for y in y0..y1 {
            for x in x0..x1 {
                let d = Vec2::new(x as f32 + 0.5 - at.x, y as f32 + 0.5 - at.y);
                if d.length() <= r {
                    self.mask.put_pixel(x, y, Luma([value]));
                }
            }
        }
        if self.mask_source != "painted" && !self.mask_source.starts_with("painted") {
            self.mask_source = format!("painted+{}", self.mask_source);
        }
        self.tex_dirty = true;
    }

    fn save(&mut self, cx: &mut PaneContext) {
        let (Some(result), Some(source)) = (&self.result, &self.source_id) else {
            return;
        };
        let cmd = Command::SaveSynthetic(Box::new(SyntheticImage {
            class: self.class.clone(),
            image: result.clone(),
            mask: self.mask.clone(),
            provenance: Provenance {
                source: source.clone(),
                mask_source: self.mask_source.clone(),
                checkpoint: self.last_sha.clone(),
                seed: self.seed,
            },
        }));
        if cx.commands.send(cmd).is_err() {
            cx.status.error("the worker is busy; try again");
        }
    }

    fn batch(&mut self, cx: &mut PaneContext, stamp: bool) {
        let (Some(project), Some(run)) = (cx.project, &self.run) else {
            cx.status
                .error("open a project and choose a checkpoint first");
            return;
        };
        let images: Vec<PathBuf> = project
            .manifest
            .images
            .iter()
            .filter(|e| e.role == Role::Good)
            .map(|e| project.abs(&e.path))
            .collect();
        let masks = if stamp {
            MaskSource::Stamp(
                project
                    .manifest
                    .images
                    .iter()
                    .filter(|e| e.synthetic.is_none() && e.classes().contains(self.class.as_str()))
                    .filter_map(|e| e.mask.as_ref().map(|m| project.abs(m)))
                    .collect(),
            )
        } else {
            MaskSource::Random(BlobSpec::default())
        };
        let out = typed_folder(&self.batch_out).unwrap_or_else(|| {
            project
                .root
                .join("generated")
                .join(format!("{}-{}", self.class, self.seed))
        });
        let req = BatchRequest {
            run: run.clone(),
            images,
            masks,
            count: self.batch_count,
            out: out.clone(),
            seed: self.seed,
            composite: self.composite,
            device: DeviceChoice::Auto,
        };
        if cx
            .commands
            .send(Command::GenerateBatch(Box::new(req)))
            .is_ok()
        {
            self.batch_out = out.display().to_string();
            cx.status
                .info(format!("batch of {} started", self.batch_count));
        }
    }

    /// Draws the pane.
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut PaneContext) {
        self.toolbar(ui, cx);
        ui.separator();
        let Some(image) = self.image.clone() else {
            ui.label("Select a defect-free image in the dataset browser and press \"Use selected image\".");
            return;
        };
        if self.tex_dirty {
            self.upload(ui.ctx(), &image);
        }
        let size = Vec2::new(image.width() as f32, image.height() as f32);
        let mut stroke_ended = false;
        ui.columns(2, |cols| {
            let c = self.canvas.show(&mut cols[0], size, "generation input");
            let img_rect = c
                .view
                .image_rect_to_screen(Rect::from_min_size(Pos2::ZERO, size));
            if let Some(tex) = &self.input_tex {
                c.painter.image(
                    tex.id(),
                    img_rect,
                    Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
                    Color32::WHITE,
                );
            }
            if !c.panning
                && let Some(pos) = c.response.interact_pointer_pos()
            {
                let p = c.view.screen_to_image(pos);
                if let Some(stamp) = &mut self.stamp {
                    if c.response.dragged() || c.response.clicked() {
                        stamp.at = p;
                    }
                } else if c.response.dragged_by(egui::PointerButton::Primary)
                    || c.response.clicked_by(egui::PointerButton::Primary)
                {
                    self.paint(p, 255);
                } else if c.response.dragged_by(egui::PointerButton::Secondary) {
                    self.paint(p, 0);
                }
            }
            if let Some(stamp) = &self.stamp {
                let shaped = stamp.shaped();
                let half = Vec2::new(shaped.width() as f32, shaped.height() as f32) / 2.0;
                let r = Rect::from_min_max(stamp.at - half, stamp.at + half);
                c.painter.rect_stroke(
                    c.view.image_rect_to_screen(r),
                    0.0,
                    egui::Stroke::new(2.0, Color32::YELLOW),
                    egui::StrokeKind::Outside,
                );
            }
            stroke_ended = c.response.drag_stopped() || c.response.clicked();
            // The result, same framing.
            let (rect, _) =
                cols[1].allocate_exact_size(cols[1].available_size(), egui::Sense::hover());
            if let Some(tex) = &self.result_tex {
                let scale = (rect.width() / size.x).min(rect.height() / size.y);
                let r = Rect::from_center_size(rect.center(), size * scale);
                cols[1].painter().image(
                    tex.id(),
                    r,
                    Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
                    Color32::WHITE,
                );
            } else {
                cols[1].painter().text(
                    rect.center(),
                    egui::Align2::CENTER_CENTER,
                    "the generated image appears here",
                    egui::FontId::proportional(14.0),
                    cols[1].visuals().weak_text_color(),
                );
            }
        });
        if stroke_ended && self.stamp.is_none() {
            self.dirty = true;
        }
        let fast = self.last_ms.is_none_or(|ms| ms < LIVE_MS);
        if self.dirty && self.live && fast && self.pending.is_none() && self.stamp.is_none() {
            self.request(cx);
        }
    }

    fn toolbar(&mut self, ui: &mut egui::Ui, cx: &mut PaneContext) {
        ui.horizontal_wrapped(|ui| {
            if ui.button("Use selected image").clicked()
                && let Some(id) = cx.selection.current.clone()
                && cx
                    .commands
                    .send(Command::LoadImage { id: id.clone() })
                    .is_ok()
            {
                self.waiting_for = Some(id);
            }
            super::class_picker(ui, &mut self.class, &Self::classes(cx));
            ui.add(egui::Slider::new(&mut self.brush, 1.0..=40.0).text("brush"));
            if ui.button("Random mask").clicked() && self.image.is_some() {
                self.random_mask();
            }
            if ui.button("Stamp real mask").clicked() && self.image.is_some() {
                self.start_stamp(cx);
            }
            if ui.button("Clear mask").clicked() {
                let (w, h) = self.mask.dimensions();
                self.mask = GrayImage::new(w, h);
                self.mask_source = "painted".into();
                self.after_mask_change();
            }
        });
        let mut action = None;
        if let Some(stamp) = &mut self.stamp {
            ui.horizontal(|ui| {
                ui.label("Stamp: drag to move");
                ui.add(egui::Slider::new(&mut stamp.scale, 0.25..=4.0).text("scale"));
                if ui.button("Turn 90°").clicked() {
                    stamp.turns = (stamp.turns + 1) % 4;
                }
                if ui.button("Apply stamp").clicked() {
                    action = Some(true);
                } else if ui.button("Cancel").clicked() {
                    action = Some(false);
                }
            });
        }
        match action {
            Some(true) => self.apply_stamp(),
            Some(false) => self.stamp = None,
            None => {}
        }
        ui.horizontal_wrapped(|ui| {
            let before = self.composite;
            egui::ComboBox::from_label("composite")
                .selected_text(self.composite.to_string())
                .show_ui(ui, |ui| {
                    for c in [
                        Composite::Mask,
                        Composite::Dilated(2),
                        Composite::Dilated(4),
                        Composite::Dilated(8),
                        Composite::None,
                    ] {
                        ui.selectable_value(&mut self.composite, c, c.to_string());
                    }
                });
            if before != self.composite {
                self.dirty = true;
            }
            ui.checkbox(&mut self.live, "live");
            let can = self.run.is_some() && self.image.is_some();
            if ui.add_enabled(can, egui::Button::new("Generate")).clicked() {
                self.request(cx);
            }
            let can_save = self.result.is_some() && cx.project.is_some() && !self.class.is_empty();
            if ui
                .add_enabled(can_save, egui::Button::new("Save to project"))
                .clicked()
            {
                self.save(cx);
            }
            match (&self.run, self.last_ms) {
                (None, _) => {
                    ui.label("No checkpoint: train one, then \"Use … for generation\".");
                }
                (Some(run), ms) => {
                    let name = run.file_name().map(|n| n.to_string_lossy().into_owned());
                    ui.label(format!(
                        "checkpoint {}{}",
                        name.unwrap_or_default(),
                        ms.map(|m| format!(", {m:.0} ms")).unwrap_or_default()
                    ));
                }
            }
        });
        ui.horizontal_wrapped(|ui| {
            let l = ui.label("Batch of");
            ui.add(egui::DragValue::new(&mut self.batch_count).range(1..=100_000))
                .labelled_by(l.id);
            let l = ui.label("images into");
            ui.add(
                egui::TextEdit::singleline(&mut self.batch_out)
                    .hint_text("<project>/generated/<class>-<seed>")
                    .desired_width(220.0),
            )
            .labelled_by(l.id);
            let can = self.run.is_some() && cx.project.is_some();
            if ui
                .add_enabled(can, egui::Button::new("Batch: random masks"))
                .clicked()
            {
                self.batch(cx, false);
            }
            if ui
                .add_enabled(can, egui::Button::new("Batch: stamped real masks"))
                .clicked()
            {
                self.batch(cx, true);
            }
        });
    }

    fn upload(&mut self, ctx: &egui::Context, image: &RgbImage) {
        let (w, h) = image.dimensions();
        let mut rgba = Vec::with_capacity((w * h * 4) as usize);
        for (p, m) in image.pixels().zip(self.mask.pixels()) {
            if m[0] != 0 {
                // Mask shown as a red tint.
                rgba.extend_from_slice(&[
                    ((u16::from(p[0]) + 255) / 2) as u8,
                    p[1] / 2,
                    p[2] / 2,
                    255,
                ]);
            } else {
                rgba.extend_from_slice(&[p[0], p[1], p[2], 255]);
            }
        }
        let size = [w as usize, h as usize];
        let color = egui::ColorImage::from_rgba_unmultiplied(size, &rgba);
        self.input_tex =
            Some(ctx.load_texture("generation-input", color, egui::TextureOptions::NEAREST));
        self.result_tex = self.result.as_ref().map(|r| {
            let color =
                egui::ColorImage::from_rgb([r.width() as usize, r.height() as usize], r.as_raw());
            ctx.load_texture("generation-result", color, egui::TextureOptions::NEAREST)
        });
        self.tex_dirty = false;
    }
}
