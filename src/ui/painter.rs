//! The mask / box-mask painter pane.
