//! Export of a project's images for training a defect classifier or detector.
//!
//! Two layouts, both written into a new (or empty) folder `out`:
//! ```text
//! ImageFolder:  out/<class>/<file>        one folder per class, `good` for defect-free images
//!               out/index.csv             file,class,id,synthetic (synthetic is 0 or 1)
//! COCO:         out/images/<file>
//!               out/annotations.json      COCO instances, masks as uncompressed RLE
//! ```
//! `<file>` is the image id made file-name safe (`/` becomes `__`, other unsafe characters `_`,
//! a `-2`, `-3`, ... suffix where two ids would give the same name) with the source extension.
//! Images are hard-linked where possible and copied otherwise, so the bytes are the project's.
//!
//! Which images: every good image (class `good`), every defect image, synthetic ones included
//! unless [`ExportOptions::include_synthetic`] is off, and templates (as `good`) only when
//! [`ExportOptions::include_templates`] is on. An ImageFolder defect image goes to its own class,
//! or, when it has none, to the class of its largest region; one with no class at all is
//! skipped. For COCO see [`coco`]. Skipped images are listed in [`ExportSummary::skipped`].
//!
//! `out` must not exist or be empty: the export never writes into a folder of the user's. The
//! JSON and CSV files are written atomically, last, so a failed export leaves image files but no
//! index or annotations.

mod coco;
mod rle;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use rle::{rle_decode, rle_encode};

use super::{ImageEntry, Project, Role};
use crate::fsutil::write_atomic;
use crate::imaging::io::ImagingError;

/// Class name of defect-free images (good images, and templates when they are included).
pub const GOOD_CLASS: &str = "good";
/// Name of the ImageFolder index file.
pub const INDEX_FILE: &str = "index.csv";
/// Name of the COCO annotation file.
pub const ANNOTATIONS_FILE: &str = "annotations.json";
/// Folder of the images in a COCO export.
pub const COCO_IMAGES_DIR: &str = "images";

/// The layout written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// `out/<class>/<file>` plus `index.csv` (torchvision's `ImageFolder` layout).
    #[value(name = "imagefolder")]
    ImageFolder,
    /// `out/images/<file>` plus `annotations.json` (COCO instance segmentation).
    Coco,
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::ImageFolder => "ImageFolder",
            ExportFormat::Coco => "COCO",
        })
    }
}

/// Which images an export takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// Include synthetic defect images (entries with provenance). Default: true.
    pub include_synthetic: bool,
    /// Include templates (defect-free twins), as class `good`. Default: false.
    pub include_templates: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            include_synthetic: true,
            include_templates: false,
        }
    }
}

/// An image left out of the export, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkippedImage {
    /// The image id.
    pub id: String,
    /// Why it was left out.
    pub reason: String,
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    /// The layout written.
    pub format: ExportFormat,
    /// The folder written.
    pub out: PathBuf,
    /// Image files written.
    pub images: usize,
    /// Of those, synthetic images.
    pub synthetic: usize,
    /// Images per class (`good` included); a COCO image showing several classes counts in each.
    pub images_per_class: BTreeMap<String, usize>,
    /// COCO annotations written (0 for ImageFolder).
    pub annotations: usize,
    /// COCO annotations per class.
    pub annotations_per_class: BTreeMap<String, usize>,
    /// Images left out (no class, nothing to annotate).
    pub skipped: Vec<SkippedImage>,
}

impl ExportSummary {
    fn new(format: ExportFormat, out: &Path) -> Self {
        Self {
            format,
            out: out.to_path_buf(),
            images: 0,
            synthetic: 0,
            images_per_class: BTreeMap::new(),
            annotations: 0,
            annotations_per_class: BTreeMap::new(),
            skipped: Vec::new(),
        }
    }
}

impl fmt::Display for ExportSummary {
    /// One line; the skipped images are listed separately.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let classes: Vec<String> = self
            .images_per_class
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        write!(
            f,
            "exported {} images ({} synthetic) as {} to {}: {}",
            self.images,
            self.synthetic,
            self.format,
            self.out.display(),
            if classes.is_empty() {
                "-".to_owned()
            } else {
                classes.join(", ")
            }
        )?;
        if self.format == ExportFormat::Coco {
            write!(f, "; {} annotations", self.annotations)?;
        }
        if !self.skipped.is_empty() {
            write!(f, "; {} skipped", self.skipped.len())?;
        }
        Ok(())
    }
}

/// Why an export failed. Each variant names the file or folder concerned.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The output folder already holds files; the export never writes into them.
    #[error("{0}: the folder is not empty; choose a new or empty folder for the export")]
    NotEmpty(PathBuf),
    /// The output path exists and is not a folder.
    #[error("{0}: exists and is not a folder")]
    NotAFolder(PathBuf),
    /// A file or folder could not be read, created, linked or copied.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An image could be neither hard-linked nor copied into the export.
    #[error("cannot copy {src} to {dst}: {source}")]
    Copy {
        /// The project's image.
        src: PathBuf,
        /// The file being written.
        dst: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An image or mask could not be read (or a mask's size differs from its image's).
    #[error(transparent)]
    Imaging(#[from] ImagingError),
    /// The annotations could not be serialised.
    #[error("{path}: cannot write: {message}")]
    Json {
        /// The file being written.
        path: PathBuf,
        /// What serde said.
        message: String,
    },
}

impl ExportError {
    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Exports with the default [`ExportOptions`] (synthetic images in, templates out).
pub fn export(
    project: &Project,
    format: ExportFormat,
    out: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ExportSummary, ExportError> {
    export_with(project, format, &ExportOptions::default(), out, progress)
}

/// Writes the project's images to `out` in `format` (see the module documentation).
///
/// `progress(done, total)` is called once before the first image and after each image.
pub fn export_with(
    project: &Project,
    format: ExportFormat,
    options: &ExportOptions,
    out: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ExportSummary, ExportError> {
    prepare_folder(out)?;
    let selected: Vec<&ImageEntry> = project
        .manifest
        .images
        .iter()
        .filter(|e| is_selected(e, options))
        .collect();
    let mut summary = ExportSummary::new(format, out);
    match format {
        ExportFormat::ImageFolder => {
            export_image_folder(project, &selected, out, &mut summary, progress)?
        }
        ExportFormat::Coco => coco::export_coco(project, &selected, out, &mut summary, progress)?,
    }
    Ok(summary)
}

fn is_selected(e: &ImageEntry, options: &ExportOptions) -> bool {
    match e.role {
        Role::Good => true,
        Role::Defect => options.include_synthetic || e.synthetic.is_none(),
        Role::Template => options.include_templates,
    }
}

/// Creates `out` or checks that it is an empty folder.
fn prepare_folder(out: &Path) -> Result<(), ExportError> {
    if out.exists() {
        if !out.is_dir() {
            return Err(ExportError::NotAFolder(out.to_path_buf()));
        }
        let mut entries = fs::read_dir(out).map_err(|e| ExportError::io(out, e))?;
        if entries.next().is_some() {
            return Err(ExportError::NotEmpty(out.to_path_buf()));
        }
    }
    fs::create_dir_all(out).map_err(|e| ExportError::io(out, e))
}

/// The ImageFolder class of an image: its own, else its largest region's; `None` for a defect
/// image with neither.
fn folder_class(e: &ImageEntry) -> Option<&str> {
    if e.role != Role::Defect {
        return Some(GOOD_CLASS);
    }
    e.class.as_deref().or_else(|| {
        // On equal areas the first region wins, so the choice follows the manifest's order.
        e.regions
            .iter()
            .rev()
            .max_by_key(|r| r.bbox.area())
            .map(|r| r.class.as_str())
    })
}

fn export_image_folder(
    project: &Project,
    selected: &[&ImageEntry],
    out: &Path,
    summary: &mut ExportSummary,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(), ExportError> {
    let mut names = FileNames::default();
    let mut index = String::from("file,class,id,synthetic\n");
    progress(0, selected.len());
    for (i, e) in selected.iter().enumerate() {
        match folder_class(e) {
            None => summary.skipped.push(SkippedImage {
                id: e.id.clone(),
                reason: "defect image with no class and no regions".to_owned(),
            }),
            Some(class) => {
                let rel = format!("{}/{}", safe_part(class), names.name_for(e));
                link_or_copy(&project.abs(&e.path), &out.join(&rel))?;
                let synthetic = e.synthetic.is_some();
                index.push_str(&format!(
                    "{},{},{},{}\n",
                    csv_field(&rel),
                    csv_field(class),
                    csv_field(&e.id),
                    u8::from(synthetic)
                ));
                summary.images += 1;
                summary.synthetic += usize::from(synthetic);
                *summary
                    .images_per_class
                    .entry(class.to_owned())
                    .or_default() += 1;
            }
        }
        progress(i + 1, selected.len());
    }
    let path = out.join(INDEX_FILE);
    write_atomic(&path, index.as_bytes()).map_err(|e| ExportError::io(&path, e))
}

/// Hands out unique, file-name-safe names derived from image ids.
#[derive(Debug, Default)]
struct FileNames {
    taken: HashSet<String>,
}

impl FileNames {
    /// `<safe id><ext>`, with `-2`, `-3`, ... before the extension if the name is taken.
    fn name_for(&mut self, e: &ImageEntry) -> String {
        let file = e.path.as_str().rsplit('/').next().unwrap_or("");
        let ext = match file.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => {
                format!(".{}", safe_part(ext))
            }
            _ => String::new(),
        };
        let base: Vec<String> = e.id.split('/').map(safe_part).collect();
        let base = base.join("__");
        let mut n = 1u32;
        loop {
            let name = if n == 1 {
                format!("{base}{ext}")
            } else {
                format!("{base}-{n}{ext}")
            };
            // Case-insensitive file systems would merge names differing only in case.
            if self.taken.insert(name.to_lowercase()) {
                return name;
            }
            n += 1;
        }
    }
}

/// One file-name-safe path part: characters other than letters, digits, `-`, `_` and `.`
/// become `_`; an empty or all-dot result gets a leading `_` (never `.` or `..`).
fn safe_part(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.chars().all(|c| c == '.') {
        out.insert(0, '_');
    }
    out
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Hard-links `src` to `dst` (parent created), copying through a temp file where linking fails.
fn link_or_copy(src: &Path, dst: &Path) -> Result<(), ExportError> {
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(|e| ExportError::io(parent, e))?;
    }
    if !src.is_file() {
        return Err(ExportError::io(
            src,
            std::io::Error::new(std::io::ErrorKind::NotFound, "image file missing"),
        ));
    }
    if fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    let name = dst
        .file_name()
        .map_or_else(|| "image".to_owned(), |n| n.to_string_lossy().into_owned());
    let tmp = dst.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    fs::copy(src, &tmp)
        .and_then(|_| fs::rename(&tmp, dst))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            ExportError::Copy {
                src: src.to_path_buf(),
                dst: dst.to_path_buf(),
                source: e,
            }
        })
}

#[cfg(test)]
mod tests;
