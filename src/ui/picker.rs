//! Native folder pickers that never block the UI.
//!
//! rfd's dialogs block their thread until the person answers, so each runs on a short-lived
//! thread of its own and the answer comes back on a channel that the UI polls every frame.

use std::path::PathBuf;

use crossbeam_channel::{Receiver, bounded};

/// The path a typed folder field holds, or `None` when it is blank (surrounding spaces dropped).
pub fn typed_folder(field: &str) -> Option<PathBuf> {
    let field = field.trim();
    (!field.is_empty()).then(|| PathBuf::from(field))
}

/// One pending folder question, tagged with what the answer is for.
pub struct FolderPicker<P> {
    pending: Option<(P, Receiver<Option<PathBuf>>)>,
}

impl<P> Default for FolderPicker<P> {
    fn default() -> Self {
        Self { pending: None }
    }
}

impl<P: Copy> FolderPicker<P> {
    /// Asks for a folder; the answer will be tagged with `purpose`. Ignored while one is open.
    pub fn ask(&mut self, purpose: P, title: &str) {
        if self.pending.is_some() {
            return;
        }
        let (tx, rx) = bounded(1);
        let title = title.to_owned();
        let spawned = std::thread::Builder::new()
            .name("folder-picker".into())
            .spawn(move || {
                let _ = tx.send(rfd::FileDialog::new().set_title(title).pick_folder());
            });
        if spawned.is_ok() {
            self.pending = Some((purpose, rx));
        }
    }

    /// True while a dialog is open.
    pub fn is_open(&self) -> bool {
        self.pending.is_some()
    }

    /// The answer, once given: `Some((purpose, folder))`; a cancelled dialog yields nothing.
    pub fn poll(&mut self) -> Option<(P, PathBuf)> {
        let (purpose, rx) = self.pending.as_ref()?;
        let purpose = *purpose;
        match rx.try_recv() {
            Ok(answer) => {
                self.pending = None;
                answer.map(|dir| (purpose, dir))
            }
            Err(crossbeam_channel::TryRecvError::Empty) => None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                self.pending = None;
                None
            }
        }
    }
}
