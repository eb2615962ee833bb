//! The demo project made by the studio itself. (Temporary interface stub: replaced on merge.)
use std::path::Path;

use crate::project::Project;

/// Demo settings.
#[derive(Clone, Debug, Default)]
pub struct DemoConfig {
    /// Seed.
    pub seed: u64,
}

/// Demo failure.
#[derive(Debug, thiserror::Error)]
#[error("demo not available")]
pub struct DemoError;

/// Makes the demo.
pub fn make_demo(
    _out: &Path,
    _cfg: &DemoConfig,
    _progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Project, DemoError> {
    Err(DemoError)
}
