//! The Inpaint QA pane: make inpainted defect-free twins, then review their seams.
//!
//! The list shows every twin worst seam first, flags the outliers (above
//! [`seam_outlier_threshold`] of all scores) and selects; the selected twin is asked of the worker
//! once (`LoadTwin`) and shown on an [`ImageCanvas`] with a before/after split, a hold-Tab
//! "before" view, a difference heat map and the outline of the filled boxes. Accept (A) and
//! Reject (R) send `SetTwinStatus` and move on to the next pending twin; the worker saves and
//! sends the new project, from which the list refreshes.

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use egui::{Key, Modifiers, TextureHandle};
use image::{GrayImage, RgbImage};

use super::PaneContext;
use super::canvas::{ImageCanvas, ViewTransform};
use super::picker::{FolderPicker, typed_folder};
use crate::imaging::boxes::box_rects_from_mask;
use crate::imaging::exemplar::{self, CopyRepeats, Turns};
use crate::imaging::rect::Rect as PxRect;
use crate::inpaint::apply::{ApplyRequest, RIM_RING, seam_outlier_threshold};
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
    /// How it was filled ([`fill_description`]).
    pub how: String,
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

mod review;
mod viewer;

use review::status_name;
pub use review::{heat_colour, heat_map, next_pending, status_counts};

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
    /// Twins are being made (sent, and no end reported yet).
    making: bool,
    /// Fill with the eight-fold flip-and-turn ensemble.
    ensemble: bool,
    /// Fill from the rim inwards ([`RIM_RING`] px rings).
    rim_inwards: bool,
    /// Copy boxes whose surroundings repeat elsewhere in the image
    /// ([`exemplar::DEFAULT_MAX_MISMATCH`]).
    copy_repeats: bool,
    /// With `copy_repeats`, also copy from the group's good images and real templates.
    from_good_images: bool,
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
                    how: fill_description(info),
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

    /// Making twins ended (finished, cancelled or failed).
    pub fn on_making_ended(&mut self) {
        self.form.making = false;
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
        self.viewer(ui, &mut cx.selection.view);
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
                let new = Twins::of(p);
                // A twin made again keeps its id: drop the pixels shown if its record changed.
                if let Some(l) = &self.loaded {
                    let seam = |t: &Twins| t.rows.iter().find(|r| r.id == l.id).map(|r| r.seam);
                    if seam(&self.twins) != seam(&new) {
                        self.loaded = None;
                    }
                }
                self.twins = new;
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
                // The defect image becomes the studio's selection: the painter shows it, with
                // the same zoom and pan.
                if let Some(row) = self.twins.rows.iter().find(|r| r.id == want) {
                    cx.selection.current = Some(row.defect.clone());
                }
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
            if form.making {
                if ui
                    .button("Cancel")
                    .on_hover_text("Stop after the twin in hand; the twins made are kept")
                    .clicked()
                {
                    match cx.commands.send(Command::CancelInpaint) {
                        Ok(()) => cx.status.info("stopping after the twin in hand…"),
                        Err(_) => cx.status.error("the worker is busy; try again"),
                    }
                }
                return;
            }
            ui.checkbox(&mut form.ensemble, "Ensemble").on_hover_text(
                "Fill each box as the mean of the fills of its eight flips and quarter turns \
                 (eight times slower)",
            );
            ui.checkbox(&mut form.rim_inwards, "Rim inwards")
                .on_hover_text(format!(
                    "Fill each box in rings of {RIM_RING} px from its border inwards, each ring \
                 continuing the one before (a pass per ring: about six times slower on \
                 DeepPCB's boxes)"
                ));
            ui.checkbox(&mut form.copy_repeats, "Copy repeats")
                .on_hover_text(
                    "Where a box's surroundings occur again elsewhere in the image (a trace that \
                 goes on, a row of pads), copy the box from there; the network fills the rest",
                );
            ui.add_enabled(
                form.copy_repeats,
                egui::Checkbox::new(&mut form.from_good_images, "…and from good images"),
            )
            .on_hover_text(format!(
                "Also copy from the good images and real templates of the defect image's group \
                 (at most {}), where the pattern around the box occurs whole",
                exemplar::MAX_REFERENCES
            ));
            let run = typed_folder(&form.run);
            let ready = run.is_some() && cx.project.is_some();
            let make = ui
                .add_enabled(ready, egui::Button::new("Make twins"))
                .on_disabled_hover_text("Choose an inpainting run (and open a project) first");
            if make.clicked()
                && let (Some(run), Some(project)) = (run, cx.project)
            {
                let req = ApplyRequest {
                    run,
                    also: Vec::new(),
                    project: project.root.clone(),
                    class: form.class.clone(),
                    redo_accepted: false,
                    device: DeviceChoice::Auto,
                    ensemble: form.ensemble,
                    peel: if form.rim_inwards { RIM_RING } else { 0 },
                    exemplar: form.copy_repeats.then_some(CopyRepeats {
                        max_mismatch: exemplar::DEFAULT_MAX_MISMATCH,
                        turns: Turns::None,
                        references: form.from_good_images,
                    }),
                };
                match cx.commands.send(Command::ApplyInpaint(Box::new(req))) {
                    Ok(()) => {
                        form.making = true;
                        cx.status.info("making twins…");
                    }
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
                        if ui
                            .selectable_label(sel, &row.defect)
                            .on_hover_text(&row.how)
                            .clicked()
                        {
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
}

/// How a twin was filled, in words, for the reviewer judging its seams (a copied box can sit a
/// pixel off its surroundings; a network fill blurs).
pub fn fill_description(info: &crate::project::InpaintInfo) -> String {
    let mut how = vec![if info.ensemble {
        "network fill, mean of 8 flips and turns".to_string()
    } else {
        "network fill".to_string()
    }];
    if info.peel > 0 {
        how.push(format!("rim inwards in {} px rings", info.peel));
    }
    if let Some(x) = info.exemplar {
        how.push(match info.copied {
            0 => "no box copied from a repeat".to_string(),
            1 => "1 box copied from a repeat".to_string(),
            n => format!("{n} boxes copied from repeats"),
        });
        if x.turns == Turns::All {
            how.push("flips and turns allowed".into());
        }
        if x.references {
            how.push(match info.referenced {
                1 => "1 of them from another image of the group".to_string(),
                n => format!("{n} of them from other images of the group"),
            });
        }
    }
    how.join("; ")
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
