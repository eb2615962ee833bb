//! The Inpaint QA pane: review inpainted defect-free twins by seam score, accept or reject them.

use std::sync::Arc;

use image::{GrayImage, RgbImage};

use super::PaneContext;
use crate::project::TwinStatus;
use crate::protocol::Command;

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

/// The loaded images of the selected twin.
struct Loaded {
    id: String,
    _defect: Arc<RgbImage>,
    _twin: Arc<RgbImage>,
    _box_mask: GrayImage,
}

/// State of the Inpaint QA pane.
#[derive(Default)]
pub struct InpaintQaPane {
    selected: Option<String>,
    loaded: Option<Loaded>,
    requested: Option<String>,
    error: Option<String>,
}

impl InpaintQaPane {
    /// A pane with nothing selected.
    pub fn new() -> Self {
        Self::default()
    }

    /// The project's inpainted twins, worst seam first.
    pub fn rows(project: &crate::project::Project) -> Vec<TwinRow> {
        let mut rows: Vec<TwinRow> = project
            .manifest
            .images
            .iter()
            .filter_map(|e| {
                let info = e.inpaint.as_ref()?;
                Some(TwinRow {
                    id: e.id.clone(),
                    defect: e.twin_of.clone().unwrap_or_default(),
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

    /// A twin's images arrived.
    pub fn on_twin_loaded(
        &mut self,
        id: String,
        defect: Arc<RgbImage>,
        twin: Arc<RgbImage>,
        box_mask: GrayImage,
    ) {
        if self.requested.as_deref() == Some(id.as_str()) {
            self.requested = None;
        }
        self.error = None;
        self.loaded = Some(Loaded {
            id,
            _defect: defect,
            _twin: twin,
            _box_mask: box_mask,
        });
    }

    /// Loading the selected twin failed.
    pub fn on_load_failed(&mut self, message: String) {
        self.requested = None;
        self.error = Some(message);
    }

    /// Draws the pane.
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut PaneContext) {
        let Some(project) = cx.project else {
            ui.label("Open a project to review inpainted twins.");
            return;
        };
        let rows = Self::rows(project);
        if rows.is_empty() {
            ui.label("No inpainted twins yet.");
            return;
        }
        for row in &rows {
            ui.horizontal(|ui| {
                let sel = self.selected.as_deref() == Some(row.id.as_str());
                if ui
                    .selectable_label(
                        sel,
                        format!("{}  seam {:.2}  {:?}", row.defect, row.seam, row.status),
                    )
                    .clicked()
                {
                    self.selected = Some(row.id.clone());
                }
            });
        }
        if let Some(id) = self.selected.clone() {
            let have = self.loaded.as_ref().is_some_and(|l| l.id == id);
            if !have
                && self.requested.as_deref() != Some(id.as_str())
                && cx
                    .commands
                    .send(Command::LoadTwin { id: id.clone() })
                    .is_ok()
            {
                self.requested = Some(id.clone());
            }
            ui.horizontal(|ui| {
                for (label, status) in [
                    ("Accept", TwinStatus::Accepted),
                    ("Reject", TwinStatus::Rejected),
                ] {
                    if ui.button(label).clicked() {
                        let _ = cx.commands.send(Command::SetTwinStatus {
                            ids: vec![id.clone()],
                            status,
                        });
                    }
                }
            });
        }
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
    }
}
