//! The import window: pick a layout and folders, then hand the job to the worker.

use std::path::PathBuf;

use super::PaneContext;
use super::picker::FolderPicker;
use crate::project::detect::detect_layout;
use crate::project::import::{ImportRequest, Layout};
use crate::protocol::Command;

/// Which text field a folder picker fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    From,
    Masks,
}

/// State of the import window.
#[derive(Default)]
pub struct ImportDialog {
    open: bool,
    layout: Option<Layout>,
    from: String,
    masks: String,
    group: String,
    picker: FolderPicker<Field>,
}

impl ImportDialog {
    /// Shows the window, pre-filled from `from` (layout and masks detected) when given.
    pub fn open(&mut self, from: Option<PathBuf>) {
        self.open = true;
        if let Some(from) = from {
            self.set_from(from);
        }
    }

    fn set_from(&mut self, from: PathBuf) {
        if let Some(found) = detect_layout(&from) {
            self.layout = Some(found.layout);
            self.masks = found
                .masks
                .map(|m| m.display().to_string())
                .unwrap_or_default();
        }
        self.from = from.display().to_string();
    }

    fn poll_picker(&mut self) {
        match self.picker.poll() {
            Some((Field::From, dir)) => self.set_from(dir),
            Some((Field::Masks, dir)) => self.masks = dir.display().to_string(),
            None => {}
        }
    }

    /// Draws the window when open.
    pub fn ui(&mut self, ctx: &egui::Context, cx: &mut PaneContext<'_>) {
        if !self.open {
            return;
        }
        self.poll_picker();
        let mut open = self.open;
        let mut submit = false;
        egui::Window::new("Import images")
            .open(&mut open)
            .collapsible(false)
            .show(ctx, |ui| {
                ui.horizontal(|ui| {
                    ui.label("Layout");
                    ui.radio_value(
                        &mut self.layout,
                        Some(Layout::Folders),
                        "Folders (good/, defect/<class>/, masks/<class>/)",
                    );
                    ui.radio_value(&mut self.layout, Some(Layout::Deeppcb), "DeepPCB pairs");
                });
                egui::Grid::new("import-fields")
                    .num_columns(3)
                    .show(ui, |ui| {
                        ui.label("Source folder");
                        ui.add(egui::TextEdit::singleline(&mut self.from).desired_width(320.0));
                        if ui.button("Browse…").clicked() {
                            self.picker.ask(Field::From, "Folder to import");
                        }
                        ui.end_row();
                        ui.label("Pixel masks (optional)");
                        ui.add(egui::TextEdit::singleline(&mut self.masks).desired_width(320.0));
                        if ui.button("Browse… ").clicked() {
                            self.picker.ask(Field::Masks, "Folder of pixel masks");
                        }
                        ui.end_row();
                        ui.label("Group (optional)");
                        ui.add(
                            egui::TextEdit::singleline(&mut self.group)
                                .desired_width(320.0)
                                .hint_text("from the data"),
                        );
                        ui.end_row();
                    });
                if self.picker.is_open() {
                    ui.label("Waiting for the folder picker…");
                    ui.ctx()
                        .request_repaint_after(std::time::Duration::from_millis(100));
                }
                let ready =
                    self.layout.is_some() && !self.from.trim().is_empty() && cx.project.is_some();
                if ui
                    .add_enabled(ready, egui::Button::new("Start import"))
                    .clicked()
                {
                    submit = true;
                }
                if cx.project.is_none() {
                    ui.weak("Open or create a project first.");
                }
            });
        self.open = open;
        if submit && let Some(layout) = self.layout {
            let trimmed = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
            let req = ImportRequest {
                layout,
                from: PathBuf::from(self.from.trim()),
                masks: trimmed(&self.masks).map(PathBuf::from),
                group: trimmed(&self.group),
            };
            match cx.commands.send(Command::Import(req)) {
                Ok(()) => {
                    cx.status.info(format!("Importing {}…", self.from.trim()));
                    self.open = false;
                }
                Err(_) => cx
                    .status
                    .error("The worker is busy; try the import again in a moment."),
            }
        }
    }
}
