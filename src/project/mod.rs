//! An on-disk project: a folder holding `studio.json`, the images and their masks.
//!
//! Layout written by the studio (importers and the demo follow it):
//! ```text
//! DIR/studio.json             the manifest (see [`manifest`])
//! DIR/images/<group>/...      images (hard-linked or copied on import)
//! DIR/masks/<id>.png          pixel masks, 8-bit 0/255
//! DIR/boxes/<id>.png          box masks, 8-bit 0/255
//! ```

pub mod detect;
pub mod export;
pub mod import;
pub mod manifest;
pub mod masks;
pub mod stats;

use std::fs;
use std::path::{Path, PathBuf};

pub use manifest::{
    ImageEntry, InpaintInfo, Manifest, Provenance, Region, RelPath, Role, TwinStatus,
};

use crate::fsutil::write_atomic;

/// File name of the manifest inside a project folder.
pub const MANIFEST_FILE: &str = "studio.json";

/// Everything that can go wrong opening or saving a project. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The manifest (or another file) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The manifest is not valid JSON of the expected shape (truncated, bad path, ...).
    #[error("{path}: not a valid studio manifest: {message}")]
    Parse {
        /// The manifest file.
        path: PathBuf,
        /// What serde reported (line and column included).
        message: String,
    },
    /// The manifest parses but contradicts itself.
    #[error("{path}: {source}")]
    Invalid {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        source: manifest::ManifestError,
    },
    /// The folder holds no manifest.
    #[error(
        "{0}: not a DTGAN Studio project (no {MANIFEST_FILE}); create one with `import` or `demo`"
    )]
    NotAProject(PathBuf),
}

impl ProjectError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// A project folder and its manifest.
#[derive(Clone, Debug)]
pub struct Project {
    /// The project folder.
    pub root: PathBuf,
    /// The manifest as last loaded or saved.
    pub manifest: Manifest,
}

impl Project {
    /// Opens the project in `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ProjectError> {
        let root = root.into();
        let path = root.join(MANIFEST_FILE);
        if !path.exists() {
            return Err(ProjectError::NotAProject(root));
        }
        let manifest = load_manifest(&path)?;
        Ok(Self { root, manifest })
    }

    /// Opens the project in `root`, or makes an empty one there (folder created) if it has none.
    pub fn open_or_create(root: impl Into<PathBuf>) -> Result<Self, ProjectError> {
        let root = root.into();
        if root.join(MANIFEST_FILE).exists() {
            return Self::open(root);
        }
        let name = root.file_name().map_or_else(
            || "project".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
        let project = Self {
            root,
            manifest: Manifest::new(name),
        };
        project.save()?;
        Ok(project)
    }

    /// Writes the manifest atomically.
    pub fn save(&self) -> Result<(), ProjectError> {
        let path = self.manifest_path();
        let mut text =
            serde_json::to_vec_pretty(&self.manifest).map_err(|e| ProjectError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?;
        text.push(b'\n');
        write_atomic(&path, &text).map_err(|e| ProjectError::io(&path, e))
    }

    /// Path of the manifest file.
    pub fn manifest_path(&self) -> PathBuf {
        self.root.join(MANIFEST_FILE)
    }

    /// Absolute path of a project path.
    pub fn abs(&self, rel: &RelPath) -> PathBuf {
        self.root.join(rel.as_str())
    }

    /// Project path where the pixel mask of image `id` is stored by default.
    pub fn default_mask_path(id: &str) -> RelPath {
        derived_path("masks", id)
    }

    /// Project path where the box mask of image `id` is stored by default.
    pub fn default_box_mask_path(id: &str) -> RelPath {
        derived_path("boxes", id)
    }

    /// Makes `path`'s parent folder inside the project.
    pub fn ensure_parent(&self, rel: &RelPath) -> Result<PathBuf, ProjectError> {
        let abs = self.abs(rel);
        if let Some(parent) = abs.parent() {
            fs::create_dir_all(parent).map_err(|e| ProjectError::io(parent, e))?;
        }
        Ok(abs)
    }
}

/// `<folder>/<id>.png` with every character of `id` that is unsafe in a file name replaced.
fn derived_path(folder: &str, id: &str) -> RelPath {
    let safe: String = id
        .split('/')
        .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        .map(|part| {
            part.chars()
                .map(|c| {
                    if c.is_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/");
    let safe = if safe.is_empty() {
        "_".to_owned()
    } else {
        safe
    };
    RelPath::new(format!("{folder}/{safe}.png")).unwrap_or_else(|_| {
        // Unreachable in practice: every part is non-empty and free of `..` and separators.
        RelPath::new(format!("{folder}/_.png")).expect("constant path is valid")
    })
}

/// Reads and validates a manifest file.
pub fn load_manifest(path: &Path) -> Result<Manifest, ProjectError> {
    let bytes = fs::read(path).map_err(|e| ProjectError::io(path, e))?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| ProjectError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    manifest
        .validate()
        .map_err(|source| ProjectError::Invalid {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_save_open_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Project::open_or_create(dir.path().join("proj")).expect("create");
        p.manifest.images.push(ImageEntry::new(
            "x",
            RelPath::new("images/x.png").expect("p"),
            Role::Good,
            "g",
        ));
        p.save().expect("save");
        let q = Project::open(&p.root).expect("open");
        assert_eq!(q.manifest, p.manifest);
    }

    #[test]
    fn truncated_manifest_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Project::open_or_create(dir.path()).expect("create");
        let text = fs::read_to_string(p.manifest_path()).expect("read");
        fs::write(p.manifest_path(), &text[..text.len() / 2]).expect("truncate");
        let err = Project::open(dir.path())
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains(MANIFEST_FILE) && err.contains("not a valid"),
            "{err}"
        );
    }

    #[test]
    fn derived_paths_are_safe() {
        assert_eq!(
            Project::default_mask_path("g/a b").as_str(),
            "masks/g/a_b.png"
        );
        assert_eq!(
            Project::default_box_mask_path("../x").as_str(),
            "boxes/x.png"
        );
    }
}
