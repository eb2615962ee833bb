//! Inpainting with contextual attention (DeepFill v1): the network that fills a defect's box
//! with what the board or surface would look like without the defect, making the defect image's
//! defect-free twin.

pub mod apply;
pub mod attention;
pub mod config;
pub mod data;
pub mod eval;
pub mod nets;
pub mod train;
