//! Importers for the generic folder layout and the DeepPCB paired layout.

use std::path::PathBuf;

/// Which on-disk layout to import from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// `good/`, `defect/<class>/`, `masks/<class>/` (mask = same stem, PNG).
    Folders,
    /// DeepPCB: `pairs/<id>_test.jpg`, `pairs/<id>_temp.jpg`, `boxes/<id>.txt`.
    Deeppcb,
}

/// One import job.
#[derive(Clone, Debug)]
pub struct ImportRequest {
    /// Layout of the source folder.
    pub layout: Layout,
    /// Source folder.
    pub from: PathBuf,
    /// Optional folder of pixel masks by stem (DeepPCB: `derived_masks/binary`).
    pub masks: Option<PathBuf>,
    /// Group for every imported image (default: from the data or the source folder's name).
    pub group: Option<String>,
}

/// Import result (temporary stub).
#[derive(Debug, Default, serde::Serialize)]
pub struct ImportSummary {}

/// Import failure (temporary stub).
#[derive(Debug, thiserror::Error)]
#[error("import not available")]
pub struct ImportError;

/// Imports (temporary stub).
pub fn import(
    _project: &mut super::Project,
    _req: &ImportRequest,
    _progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ImportSummary, ImportError> {
    Err(ImportError)
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("imported")
    }
}
