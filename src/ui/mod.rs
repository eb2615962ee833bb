//! The studio's window: docked panes around shared state, fed by the worker's events.
//!
//! Panes never block: heavy work is sent as a [`Command`] through [`CommandSender`], results come
//! back as events that the app routes to the panes.

pub mod app;
pub mod automation;
pub mod browser;
pub mod canvas;
pub mod evaluation;
pub mod generation;
pub mod import_dialog;
pub mod inpaint_qa;
pub mod painter;
pub mod picker;
pub mod thumbnails;
pub mod training;

use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use crate::project::Project;
use crate::protocol::Command;

/// Sends commands to the worker without ever blocking the UI.
#[derive(Clone, Debug)]
pub struct CommandSender {
    tx: Sender<Command>,
}

impl CommandSender {
    /// Wraps the sending end of the command channel.
    pub fn new(tx: Sender<Command>) -> Self {
        Self { tx }
    }

    /// Queues `cmd`; on a full or closed channel gives it back so the caller can retry later.
    pub fn send(&self, cmd: Command) -> Result<(), Command> {
        self.tx.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(c) | TrySendError::Disconnected(c) => c,
        })
    }
}

/// Which image is selected, and the order the browser lists them in (for "next image").
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// The selected image's id.
    pub current: Option<String>,
    /// Ids in the browser's current (filtered, sorted) order.
    pub order: Vec<String>,
    /// Zoom and pan of the image shown, shared by the painter and the Inpaint QA pane.
    pub view: Option<canvas::SharedView>,
}

impl Selection {
    /// Selects the image after the current one in browser order; returns false at the end.
    pub fn select_next(&mut self) -> bool {
        let next = match &self.current {
            Some(cur) => self.order.iter().position(|id| id == cur).map(|i| i + 1),
            None => Some(0),
        };
        match next.and_then(|i| self.order.get(i)) {
            Some(id) => {
                self.current = Some(id.clone());
                true
            }
            None => false,
        }
    }
}

/// One line of feedback at the bottom of the window.
#[derive(Clone, Debug, Default)]
pub struct StatusLine {
    /// The text.
    pub text: String,
    /// True when it reports an error.
    pub is_error: bool,
}

impl StatusLine {
    /// Shows an informational message.
    pub fn info(&mut self, text: impl Into<String>) {
        self.text = text.into();
        self.is_error = false;
    }

    /// Shows an error (also logged).
    pub fn error(&mut self, text: impl Into<String>) {
        self.text = text.into();
        self.is_error = true;
        tracing::error!("{}", self.text);
    }
}

/// What a pane may see and change of the shared state during one frame.
pub struct PaneContext<'a> {
    /// The open project, if any.
    pub project: Option<&'a Arc<Project>>,
    /// The shared selection.
    pub selection: &'a mut Selection,
    /// The way to the worker.
    pub commands: &'a CommandSender,
    /// The status line.
    pub status: &'a mut StatusLine,
}

/// Every defect class of the open project's real images, sorted.
pub fn project_classes(cx: &PaneContext) -> Vec<String> {
    let mut classes: Vec<String> = cx
        .project
        .map(|p| {
            p.manifest
                .images
                .iter()
                .filter(|e| e.synthetic.is_none())
                .flat_map(|e| {
                    e.classes()
                        .into_iter()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .unwrap_or_default();
    classes.sort();
    classes.dedup();
    classes
}

/// A "class" combo box over `classes`; a choice that is not among them (or none yet) becomes the
/// first class.
pub fn class_picker(ui: &mut egui::Ui, class: &mut String, classes: &[String]) {
    if class.is_empty() || !classes.contains(class) {
        *class = classes.first().cloned().unwrap_or_default();
    }
    egui::ComboBox::from_label("class")
        .selected_text(class.as_str())
        .show_ui(ui, |ui| {
            for c in classes {
                ui.selectable_value(class, c.clone(), c);
            }
        });
}
