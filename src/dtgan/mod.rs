//! The defect-transfer GAN: networks, training, generation.
//!
//! The generator learns, from (defect-free twin, defect image, pixel mask) triples, the change a
//! defect makes inside its mask; given any defect-free image and a new mask it paints a new
//! defect there. See [`nets`] for the architecture and [`train`] for the training loop.

pub mod adam;
pub mod batch;
pub mod bench;
pub mod config;
pub mod model;
pub mod nets;

pub use config::{Activation, LossWeights, ModelConfig, Preset, TrainConfig};
pub mod data;
pub mod generate;
pub mod masks;
pub mod run;
pub mod train;

#[cfg(test)]
mod tests;
