//! Image and mask I/O, box masks, augmentation. No egui, no candle.

pub mod augment;
pub mod boxes;
pub mod clahe;
pub mod depth;
pub mod exemplar;
pub mod io;
pub mod rect;
