//! The harness of the pane tests: one pane drawn with a full `PaneContext`, the worker's end of
//! its command channel kept by the test.

use std::sync::Arc;

use crossbeam_channel::{Receiver, bounded};
use dtgan_studio::project::Project;
use dtgan_studio::protocol::Command;
use dtgan_studio::ui::{CommandSender, PaneContext, Selection, StatusLine};
use egui_kittest::Harness;

/// What a pane test's harness holds: the pane and the shared state it draws with.
pub struct PaneState<P> {
    pub pane: P,
    pub project: Option<Arc<Project>>,
    pub selection: Selection,
    pub status: StatusLine,
    pub commands: CommandSender,
}

impl<P> PaneState<P> {
    /// The open project (the test gave one).
    pub fn project(&self) -> &Arc<Project> {
        self.project.as_ref().expect("the test opened a project")
    }
}

/// How a pane draws itself (its `ui` method).
pub type DrawPane<P> = fn(&mut P, &mut egui::Ui, &mut PaneContext);

/// A window of `size` showing `pane` with `project`, no selection and a 16-command channel.
pub fn pane_harness<P: 'static>(
    pane: P,
    project: Option<Arc<Project>>,
    size: egui::Vec2,
    draw: DrawPane<P>,
) -> (Harness<'static, PaneState<P>>, Receiver<Command>) {
    pane_harness_with(pane, project, Selection::default(), size, 16, draw)
}

/// [`pane_harness`] with a selection and a channel of `capacity` commands.
pub fn pane_harness_with<P: 'static>(
    pane: P,
    project: Option<Arc<Project>>,
    selection: Selection,
    size: egui::Vec2,
    capacity: usize,
    draw: DrawPane<P>,
) -> (Harness<'static, PaneState<P>>, Receiver<Command>) {
    let (tx, rx) = bounded(capacity);
    let state = PaneState {
        pane,
        project,
        selection,
        status: StatusLine::default(),
        commands: CommandSender::new(tx),
    };
    let h = Harness::builder().with_size(size).build_ui_state(
        move |ui, s: &mut PaneState<P>| {
            let mut cx = PaneContext {
                project: s.project.as_ref(),
                selection: &mut s.selection,
                commands: &s.commands,
                status: &mut s.status,
            };
            draw(&mut s.pane, ui, &mut cx);
        },
        state,
    );
    (h, rx)
}
