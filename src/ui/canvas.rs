//! Shared image canvas with zoom and pan.
