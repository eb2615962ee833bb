//! Proof that the synthetic images help: a defect classifier, the paper's minority-class recall
//! experiment (five training sets, several seeds), and realism scores (C2ST, KID), written as a
//! report folder (`report.md`, `plot.png`, `results.json`).

pub mod classifier;
pub mod experiment;
pub mod fill;
pub mod metrics;
pub mod patches;
pub mod plot;
pub mod report;
