//! The Inpaint QA pane: make inpainted defect-free twins, then review their seams.
//!
//! The list shows every twin worst seam first, flags the outliers (above
//! [`seam_outlier_threshold`] of all scores) and selects; the selected twin is asked of the worker
//! once (`LoadTwin`) and shown on an [`ImageCanvas`] with a before/after split, a hold-Tab
//! "before" view, a difference heat map and the outline of the filled boxes. Accept (A) and
//! Reject (R) send `SetTwinStatus` and move on to the next pending twin; the worker saves and
//! sends the new project, from which the list refreshes.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use egui::{Color32, ColorImage, Key, Modifiers, Pos2, Rect, Stroke, TextureHandle, Vec2};
use image::{GrayImage, RgbImage};

use super::PaneContext;
use super::canvas::{ImageCanvas, ViewTransform};
use super::picker::FolderPicker;
use crate::imaging::boxes::box_rects_from_mask;
use crate::imaging::rect::Rect as PxRect;
use crate::inpaint::apply::{ApplyRequest, seam_outlier_threshold};
use crate::nn::device::DeviceChoice;
use crate::project::{Project, Role, TwinStatus};
use crate::protocol::Command;

/// The photos stay crisp when zoomed in (seams are pixel-level) and smooth when shrunk.
const IMAGE_OPTIONS: egui::TextureOptions = egui::TextureOptions {
    minification: egui::TextureFilter::Linear,
    ..egui::TextureOptions::NEAREST
};

/// One twin as listed.
#[derive(Clone, Debug, PartialEq)]
pub struct TwinRow {
    /// The twin's id.
    pub id: String,
    /// Its defect image's id.
    pub defect: String,
    /// Seam score.
    pub seam: f64,
    /// Review status.
    pub status: TwinStatus,
}

/// Which twins the list shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StatusFilter {
    /// Every twin.
    #[default]
    All,
    /// Only twins still to review.
    Pending,
    /// Only accepted twins.
    Accepted,
    /// Only rejected twins.
    Rejected,
}

impl StatusFilter {
    /// Every filter, in menu order.
    pub const ALL: [StatusFilter; 4] = [Self::All, Self::Pending, Self::Accepted, Self::Rejected];

    /// The name shown in the menu.
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "All twins",
            Self::Pending => "Pending",
            Self::Accepted => "Accepted",
            Self::Rejected => "Rejected",
        }
    }

    /// True when a twin with `status` is listed.
    pub fn admits(self, status: TwinStatus) -> bool {
        match self {
            Self::All => true,
            Self::Pending => status == TwinStatus::PendingReview,
            Self::Accepted => status == TwinStatus::Accepted,
            Self::Rejected => status == TwinStatus::Rejected,
        }
    }
}

fn status_name(status: TwinStatus) -> &'static str {
    match status {
        TwinStatus::PendingReview => "pending",
        TwinStatus::Accepted => "accepted",
        TwinStatus::Rejected => "rejected",
    }
}

/// "12 pending, 3 accepted, 1 rejected".
pub fn status_counts(rows: &[TwinRow]) -> String {
    let count = |s: TwinStatus| rows.iter().filter(|r| r.status == s).count();
    format!(
        "{} pending, {} accepted, {} rejected",
        count(TwinStatus::PendingReview),
        count(TwinStatus::Accepted),
        count(TwinStatus::Rejected)
    )
}

/// The first pending twin after `current` in `listing` (wrapping round), skipping `current` and
/// the `skip`ped ids (reviewed, the project not yet updated).
pub fn next_pending(listing: &[TwinRow], current: &str, skip: &HashSet<String>) -> Option<String> {
    let start = listing
        .iter()
        .position(|r| r.id == current)
        .map_or(0, |i| i + 1);
    listing[start..]
        .iter()
        .chain(&listing[..start])
        .find(|r| r.status == TwinStatus::PendingReview && r.id != current && !skip.contains(&r.id))
        .map(|r| r.id.clone())
}

/// The "hot" colour ramp: black, red, yellow, white for `t` in 0..=1, transparent at 0.
pub fn heat_colour(t: f32) -> Color32 {
    let t = t.clamp(0.0, 1.0);
    let ch = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let alpha = if t > 0.0 { ch(0.35 + 0.65 * t) } else { 0 };
    Color32::from_rgba_unmultiplied(ch(3.0 * t), ch(3.0 * t - 1.0), ch(3.0 * t - 2.0), alpha)
}

/// `|after - before|` per pixel (largest channel), scaled so the largest difference is white.
/// `None` when the sizes differ.
pub fn heat_map(before: &RgbImage, after: &RgbImage) -> Option<ColorImage> {
    if before.dimensions() != after.dimensions() {
        return None;
    }
    let diffs: Vec<u8> = before
        .pixels()
        .zip(after.pixels())
        .map(|(b, a)| (0..3).map(|c| b[c].abs_diff(a[c])).max().unwrap_or(0))
        .collect();
    let top = f32::from(diffs.iter().copied().max().unwrap_or(0).max(1));
    let pixels = diffs
        .into_iter()
        .map(|d| heat_colour(f32::from(d) / top))
        .collect();
    let (w, h) = after.dimensions();
    Some(ColorImage::new([w as usize, h as usize], pixels))
}

/// GPU copies of the loaded twin, made once per twin.
struct TwinTextures {
    before: TextureHandle,
    after: TextureHandle,
    /// Made the first time the heat map is shown; `None` inside when the sizes differ.
    heat: Option<Option<TextureHandle>>,
}

/// The loaded images of the selected twin.
struct Loaded {
    id: String,
    defect: Arc<RgbImage>,
    twin: Arc<RgbImage>,
    /// The filled region's rectangles, for the outline.
    boxes: Vec<PxRect>,
    textures: Option<TwinTextures>,
}

/// What the pane derives from one project, recomputed only when the worker sends a new one.
#[derive(Clone, Default)]
struct Twins {
    project: Weak<Project>,
    /// Every twin, worst seam first.
    rows: Arc<[TwinRow]>,
    /// Seams above this are flagged.
    outlier: f64,
    /// Classes of the real defect images, for the Make twins form.
    classes: Arc<[String]>,
}

impl Twins {
    fn of(project: &Arc<Project>) -> Self {
        let rows: Arc<[TwinRow]> = InpaintQaPane::rows(project).into();
        Self {
            project: Arc::downgrade(project),
            outlier: seam_outlier_threshold(&rows.iter().map(|r| r.seam).collect::<Vec<_>>()),
            rows,
            classes: defect_classes(project).into(),
        }
    }
}

/// The "Make twins" form.
#[derive(Default)]
struct MakeForm {
    run: String,
    /// `None` = every class.
    class: Option<String>,
    picker: FolderPicker<()>,
}

/// State of the Inpaint QA pane.
pub struct InpaintQaPane {
    form: MakeForm,
    filter: StatusFilter,
    best_first: bool,
    /// The listing drawn last frame (filtered and sorted).
    listing: Vec<TwinRow>,
    selected: Option<String>,
    scroll_to_selected: bool,
    loaded: Option<Loaded>,
    requested: Option<String>,
    /// The twin whose loading failed last, and why.
    failed: Option<(Option<String>, String)>,
    twins: Twins,
    /// Twins whose new status was sent but is not in `twins` yet.
    reviewed: HashSet<String>,
    /// The "accept all below" threshold; `None` follows the outlier threshold.
    accept_below: Option<f64>,
    canvas: ImageCanvas,
    /// Where the before/after split is, 0 (all after) ..= 1 (all before).
    split: f32,
    show_heat: bool,
    show_boxes: bool,
    showing_before: bool,
    /// The last primary press was inside the pane (it has the keyboard).
    has_focus: bool,
}

impl Default for InpaintQaPane {
    fn default() -> Self {
        Self::new()
    }
}

impl InpaintQaPane {
    /// A pane with nothing selected.
    pub fn new() -> Self {
        Self {
            form: MakeForm::default(),
            filter: StatusFilter::All,
            best_first: false,
            listing: Vec::new(),
            selected: None,
            scroll_to_selected: false,
            loaded: None,
            requested: None,
            failed: None,
            twins: Twins::default(),
            reviewed: HashSet::new(),
            accept_below: None,
            canvas: ImageCanvas::new(),
            split: 0.5,
            show_heat: false,
            show_boxes: true,
            showing_before: false,
            has_focus: false,
        }
    }

    /// The project's inpainted twins, worst seam first.
    pub fn rows(project: &Project) -> Vec<TwinRow> {
        let mut rows: Vec<TwinRow> = project
            .manifest
            .images
            .iter()
            .filter_map(|e| {
                let info = e.inpaint.as_ref()?;
                Some(TwinRow {
                    id: e.id.clone(),
                    defect: e.twin_of.clone().unwrap_or_else(|| e.id.clone()),
                    seam: info.seam,
                    status: e.twin_status.unwrap_or(TwinStatus::PendingReview),
                })
            })
            .collect();
        rows.sort_by(|a, b| b.seam.total_cmp(&a.seam).then_with(|| a.id.cmp(&b.id)));
        rows
    }

    /// The selected twin's id.
    pub fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    /// Selects a twin (its images are requested on the next frame).
    pub fn select(&mut self, id: Option<String>) {
        self.scroll_to_selected = true;
        self.selected = id;
    }

    /// The twins as listed last frame (filtered, sorted).
    pub fn listed(&self) -> &[TwinRow] {
        &self.listing
    }

    /// Id of the twin whose images are shown.
    pub fn loaded_id(&self) -> Option<&str> {
        self.loaded.as_ref().map(|l| l.id.as_str())
    }

    /// True while Tab is held: the "before" image is shown in full.
    pub fn showing_before(&self) -> bool {
        self.showing_before
    }

    /// Whether the difference heat map is drawn.
    pub fn heat_map_shown(&self) -> bool {
        self.show_heat
    }

    /// Whether the filled boxes are outlined.
    pub fn box_outline_shown(&self) -> bool {
        self.show_boxes
    }

    /// The outlined rectangles of the loaded twin.
    pub fn box_outlines(&self) -> &[PxRect] {
        self.loaded.as_ref().map_or(&[], |l| &l.boxes)
    }

    /// The before/after split, 0 ..= 1 of the image width from the left.
    pub fn split(&self) -> f32 {
        self.split
    }

    /// The canvas's current view.
    pub fn view(&self) -> ViewTransform {
        self.canvas.view()
    }

    /// The "accept all below" threshold: the one set, else the outlier threshold.
    pub fn accept_threshold(&self) -> f64 {
        self.accept_below.unwrap_or(self.twins.outlier)
    }

    /// Sets the "accept all below" threshold.
    pub fn set_accept_threshold(&mut self, threshold: f64) {
        self.accept_below = Some(threshold);
    }

    /// A twin's images arrived. Images of a twin no longer wanted are dropped.
    pub fn on_twin_loaded(
        &mut self,
        id: String,
        defect: Arc<RgbImage>,
        twin: Arc<RgbImage>,
        box_mask: GrayImage,
    ) {
        let wanted = match &self.requested {
            Some(r) => *r == id,
            None => self.selected.as_deref() == Some(id.as_str()),
        };
        if !wanted {
            return;
        }
        self.requested = None;
        self.failed = None;
        self.canvas.reset_view();
        self.loaded = Some(Loaded {
            id,
            defect,
            twin,
            boxes: box_rects_from_mask(&box_mask, 0),
            textures: None,
        });
    }

    /// Loading the requested twin failed.
    pub fn on_load_failed(&mut self, message: String) {
        self.failed = Some((self.requested.take(), message));
    }

    /// Draws the pane.
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut PaneContext) {
        self.refresh(cx.project);
        let twins = self.twins.clone();
        self.listing = self.listing_of(&twins.rows);
        // Before any widget: a held Tab must not hand the focus to the run folder field.
        self.keyboard(ui, cx);
        self.make_form(ui, cx, &twins.classes);
        ui.separator();
        if cx.project.is_none() {
            ui.label("Open a project to review inpainted twins.");
            return;
        }
        if twins.rows.is_empty() {
            ui.label("No inpainted twins yet: make some above.");
            return;
        }
        self.review_bar(ui, cx, &twins.rows);
        egui::Panel::left("inpaint_qa_list")
            .resizable(true)
            .default_size(300.0)
            .show(ui, |ui| self.list(ui, &twins));
        self.follow_selection(cx);
        self.viewer(ui);
    }

    /// Rebuilds the twin list when the project changed.
    fn refresh(&mut self, project: Option<&Arc<Project>>) {
        match project {
            None if self.twins.project.ptr_eq(&Weak::new()) => {}
            None => self.twins = Twins::default(),
            Some(p) if std::ptr::eq(self.twins.project.as_ptr(), Arc::as_ptr(p)) => {}
            Some(p) => {
                // The worker saved: the statuses sent so far are in (or failed to get into) it.
                self.reviewed.clear();
                self.twins = Twins::of(p);
            }
        }
    }

    fn listing_of(&self, rows: &[TwinRow]) -> Vec<TwinRow> {
        let mut listing: Vec<TwinRow> = rows
            .iter()
            .filter(|r| self.filter.admits(r.status))
            .cloned()
            .collect();
        if self.best_first {
            listing.reverse();
        }
        listing
    }

    /// Requests the selected twin's images once per selection.
    fn follow_selection(&mut self, cx: &mut PaneContext) {
        let Some(want) = self.selected.clone() else {
            return;
        };
        let current = self
            .requested
            .as_deref()
            .or(self.loaded.as_ref().map(|l| l.id.as_str()))
            .or(self.failed.as_ref().and_then(|(id, _)| id.as_deref()));
        if current == Some(want.as_str()) {
            return;
        }
        match cx.commands.send(Command::LoadTwin { id: want.clone() }) {
            Ok(()) => {
                self.requested = Some(want);
                self.failed = None;
            }
            Err(_) => cx.status.error(format!(
                "Worker busy: twin {want} not requested yet, retrying"
            )),
        }
    }

    /// Sends `status` for `ids`; true when sent.
    fn set_status(&mut self, cx: &mut PaneContext, ids: Vec<String>, status: TwinStatus) -> bool {
        let n = ids.len();
        let sent = ids.clone();
        if cx
            .commands
            .send(Command::SetTwinStatus { ids, status })
            .is_err()
        {
            cx.status.error("the worker is busy; try again");
            return false;
        }
        cx.status
            .info(format!("{n} twin(s) marked {}", status_name(status)));
        self.reviewed.extend(sent);
        true
    }

    /// Reviews the selected twin and moves on to the next pending one.
    fn review(&mut self, cx: &mut PaneContext, status: TwinStatus) {
        let Some(id) = self.selected.clone() else {
            return;
        };
        if self.set_status(cx, vec![id.clone()], status) {
            self.advance_from(&id, cx);
        }
    }

    fn advance_from(&mut self, id: &str, cx: &mut PaneContext) {
        match next_pending(&self.listing, id, &self.reviewed) {
            Some(next) => self.select(Some(next)),
            None => cx.status.info("No twin left to review."),
        }
    }

    /// A and R review, holding Tab shows "before"; only while the pane has the keyboard.
    fn keyboard(&mut self, ui: &egui::Ui, cx: &mut PaneContext) {
        let ctx = ui.ctx().clone();
        let area = ui.max_rect();
        let press = ctx.input(|i| {
            i.pointer
                .primary_pressed()
                .then(|| i.pointer.interact_pos())
                .flatten()
        });
        if let Some(p) = press {
            self.has_focus = area.contains(p);
        }
        let active = !ctx.text_edit_focused() && (self.has_focus || ui.rect_contains_pointer(area));
        let tab_down = ctx.input(|i| i.key_down(Key::Tab));
        // Once started, the hold lasts until Tab is released, wherever the focus went.
        self.showing_before = tab_down && (self.showing_before || active);
        if !active {
            return;
        }
        if ctx.input(|i| i.key_pressed(Key::Tab)) {
            // Tab is ours here: keep egui from moving the focus (into the run folder field).
            ui.memory_mut(|m| m.move_focus(egui::FocusDirection::None));
        }
        let (accept, reject) = ctx.input_mut(|i| {
            (
                i.consume_key(Modifiers::NONE, Key::A),
                i.consume_key(Modifiers::NONE, Key::R),
            )
        });
        if accept {
            self.review(cx, TwinStatus::Accepted);
        } else if reject {
            self.review(cx, TwinStatus::Rejected);
        }
    }

    fn make_form(&mut self, ui: &mut egui::Ui, cx: &mut PaneContext, classes: &[String]) {
        if let Some(((), dir)) = self.form.picker.poll() {
            self.form.run = dir.display().to_string();
        }
        let form = &mut self.form;
        if form.class.as_ref().is_some_and(|c| !classes.contains(c)) {
            form.class = None;
        }
        ui.horizontal_wrapped(|ui| {
            let l = ui.label("Inpainting run");
            ui.add(
                egui::TextEdit::singleline(&mut form.run)
                    .hint_text("run folder or checkpoint")
                    .desired_width(260.0),
            )
            .labelled_by(l.id);
            if ui
                .add_enabled(!form.picker.is_open(), egui::Button::new("Browse…"))
                .clicked()
            {
                form.picker.ask((), "Inpainting run folder");
            }
            egui::ComboBox::from_label("Class")
                .selected_text(form.class.as_deref().unwrap_or("all classes"))
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut form.class, None, "all classes");
                    for c in classes {
                        ui.selectable_value(&mut form.class, Some(c.clone()), c);
                    }
                });
            let ready = !form.run.trim().is_empty() && cx.project.is_some();
            let make = ui
                .add_enabled(ready, egui::Button::new("Make twins"))
                .on_disabled_hover_text("Choose an inpainting run (and open a project) first");
            if make.clicked()
                && let Some(project) = cx.project
            {
                let req = ApplyRequest {
                    run: PathBuf::from(form.run.trim()),
                    project: project.root.clone(),
                    class: form.class.clone(),
                    redo_accepted: false,
                    device: DeviceChoice::Auto,
                };
                match cx.commands.send(Command::ApplyInpaint(Box::new(req))) {
                    Ok(()) => cx.status.info("making twins…"),
                    Err(_) => cx.status.error("the worker is busy; try again"),
                }
            }
        });
    }

    /// Filter, order, counts, the review buttons and "accept all below".
    fn review_bar(&mut self, ui: &mut egui::Ui, cx: &mut PaneContext, rows: &[TwinRow]) {
        ui.horizontal_wrapped(|ui| {
            egui::ComboBox::from_label("Status")
                .selected_text(self.filter.name())
                .show_ui(ui, |ui| {
                    for f in StatusFilter::ALL {
                        ui.selectable_value(&mut self.filter, f, f.name());
                    }
                });
            ui.checkbox(&mut self.best_first, "Best first");
            ui.label(status_counts(rows));
            ui.separator();
            let some = self.selected.is_some();
            for (label, key, status) in [
                ("Accept", "A", TwinStatus::Accepted),
                ("Reject", "R", TwinStatus::Rejected),
            ] {
                if ui
                    .add_enabled(some, egui::Button::new(label))
                    .on_hover_text(key)
                    .clicked()
                {
                    self.review(cx, status);
                }
            }
            ui.separator();
            let mut threshold = self.accept_threshold();
            let l = ui.label("Seam threshold");
            if ui
                .add(
                    egui::DragValue::new(&mut threshold)
                        .range(0.0..=1000.0)
                        .speed(0.01)
                        .max_decimals(3),
                )
                .labelled_by(l.id)
                .changed()
            {
                self.accept_below = Some(threshold);
            }
            let below: Vec<String> = rows
                .iter()
                .filter(|r| r.status == TwinStatus::PendingReview && r.seam < threshold)
                .filter(|r| !self.reviewed.contains(&r.id))
                .map(|r| r.id.clone())
                .collect();
            let n = below.len();
            if ui
                .add_enabled(n > 0, egui::Button::new("Accept all below threshold"))
                .clicked()
            {
                let selected_in = self.selected.as_ref().is_some_and(|s| below.contains(s));
                if self.set_status(cx, below, TwinStatus::Accepted)
                    && selected_in
                    && let Some(id) = self.selected.clone()
                {
                    self.advance_from(&id, cx);
                }
            }
            ui.label(format!("{n} pending below"));
        });
    }

    fn list(&mut self, ui: &mut egui::Ui, twins: &Twins) {
        let outlier = twins.outlier;
        if self.listing.is_empty() {
            ui.label("No twin has this status.");
            return;
        }
        let flagged = twins.rows.iter().filter(|r| r.seam > outlier).count();
        ui.label(format!("{flagged} flagged: seam above {outlier:.2}"));
        let mut scroll = egui::ScrollArea::vertical().auto_shrink([false, false]);
        if std::mem::take(&mut self.scroll_to_selected)
            && let Some(i) = self
                .selected
                .as_ref()
                .and_then(|s| self.listing.iter().position(|r| r.id == *s))
        {
            let row_h = ui.spacing().interact_size.y + ui.spacing().item_spacing.y;
            scroll = scroll.vertical_scroll_offset((i as f32 - 3.0).max(0.0) * row_h);
        }
        let row_h = ui.spacing().interact_size.y;
        let mut clicked = None;
        scroll.show_rows(ui, row_h, self.listing.len(), |ui, range| {
            egui::Grid::new("inpaint_qa_rows")
                .num_columns(4)
                .min_row_height(row_h)
                .show(ui, |ui| {
                    for row in &self.listing[range] {
                        let sel = self.selected.as_deref() == Some(row.id.as_str());
                        if ui.selectable_label(sel, &row.defect).clicked() {
                            clicked = Some(row.id.clone());
                        }
                        ui.label(format!("{:.2}", row.seam));
                        if row.seam > outlier {
                            ui.colored_label(ui.visuals().warn_fg_color, "!")
                                .on_hover_text(format!("seam above {outlier:.2}"));
                        } else {
                            ui.label("");
                        }
                        ui.label(status_name(row.status));
                        ui.end_row();
                    }
                });
        });
        if clicked.is_some() {
            self.selected = clicked;
        }
    }

    fn viewer(&mut self, ui: &mut egui::Ui) {
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
        let c = self.canvas.show(ui, size, "Twin canvas");
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

/// Classes of the project's real defect images, sorted.
fn defect_classes(project: &Project) -> Vec<String> {
    let mut classes: Vec<String> = project
        .manifest
        .images
        .iter()
        .filter(|e| e.role == Role::Defect && e.synthetic.is_none())
        .flat_map(|e| e.classes().into_iter().map(str::to_string))
        .collect();
    classes.sort();
    classes.dedup();
    classes
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, seam: f64, status: TwinStatus) -> TwinRow {
        TwinRow {
            id: id.into(),
            defect: format!("d-{id}"),
            seam,
            status,
        }
    }

    #[test]
    fn next_pending_skips_reviewed_and_wraps() {
        use TwinStatus::*;
        let l = [
            row("a", 5.0, PendingReview),
            row("b", 4.0, Accepted),
            row("c", 3.0, PendingReview),
            row("d", 2.0, PendingReview),
        ];
        let none = HashSet::new();
        assert_eq!(next_pending(&l, "a", &none).as_deref(), Some("c"));
        let skip: HashSet<String> = ["c".to_string()].into();
        assert_eq!(next_pending(&l, "a", &skip).as_deref(), Some("d"));
        assert_eq!(next_pending(&l, "d", &none).as_deref(), Some("a"));
        let all: HashSet<String> = ["a", "c"].map(String::from).into();
        assert_eq!(next_pending(&l, "d", &all), None);
    }

    #[test]
    fn heat_map_is_transparent_where_equal_and_white_at_the_largest_difference() {
        let before = RgbImage::from_pixel(4, 2, image::Rgb([10, 10, 10]));
        let mut after = before.clone();
        after.put_pixel(1, 0, image::Rgb([10, 110, 10]));
        after.put_pixel(2, 1, image::Rgb([60, 10, 10]));
        let heat = heat_map(&before, &after).expect("same size");
        assert_eq!(heat.size, [4, 2]);
        assert_eq!(heat.pixels[0].a(), 0);
        assert_eq!(heat.pixels[1], Color32::WHITE);
        let half = heat.pixels[4 + 2];
        assert!(half.a() > 0 && half.r() > half.b(), "{half:?}");
        assert!(heat_map(&before, &RgbImage::new(3, 2)).is_none());
    }

    #[test]
    fn counts_and_filters() {
        use TwinStatus::*;
        let rows = [
            row("a", 1.0, PendingReview),
            row("b", 1.0, PendingReview),
            row("c", 1.0, Rejected),
        ];
        assert_eq!(status_counts(&rows), "2 pending, 0 accepted, 1 rejected");
        assert!(StatusFilter::Pending.admits(PendingReview));
        assert!(!StatusFilter::Accepted.admits(Rejected));
        assert!(StatusFilter::All.admits(Rejected));
    }
}
