//! Importers for the generic folder layout and the DeepPCB paired layout.
//!
//! An import scans the source, then handles every image (or DeepPCB pair) in parallel with rayon
//! and appends the new entries to the manifest sorted by id, so the result does not depend on
//! thread timing. The manifest is saved once, atomically, at the end: a crash mid-import leaves
//! the project as it was (plus unreferenced files that a later import overwrites).
//!
//! Where files go (`<g>` is the group, every id part made file-name safe, see [`safe_name`]):
//! ```text
//! images/<g>/good/<file>            good images              id <g>/<stem>
//! images/<g>/defect/<class>/<file>  folder-layout defects    id <g>/<class>/<stem>
//! images/<g>/defect/<file>          DeepPCB tested images    id <g>/<stem>   (<id>_test)
//! images/<g>/template/<file>        DeepPCB templates        id <g>/<stem>   (<id>_temp)
//! masks/<id>.png, boxes/<id>.png    pixel and box masks (0/255 PNG)
//! ```
//! Images are hard-linked (copied where linking fails). If a different file already has the
//! destination name, the new one is stored as `<stem>-2.<ext>` (then `-3`, ...). Ids that are
//! already in the project are not imported again: they are counted as `already_present`.
//!
//! Bad files never abort an import: an image that cannot be read or decoded, a mask that cannot
//! be read or has another size than its image, a malformed box file, or a file name that is not
//! UTF-8 is listed in [`ImportSummary::skipped`] with a reason naming the file, and everything
//! else is imported. Only a missing source folder, a source that is not the layout, or a failure
//! to save the manifest are fatal ([`ImportError`]).

pub mod deeppcb;
mod folders;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use super::{ImageEntry, Project, ProjectError, RelPath, Role};

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
    /// Optional folder of pixel masks by stem (DeepPCB: `derived_masks/binary`; folder layout:
    /// replaces `masks/`, still with `<class>/` subfolders). A relative path is looked up inside
    /// the source folder first, then relative to the working directory.
    pub masks: Option<PathBuf>,
    /// Group for every imported image (default: from the data or the source folder's name).
    pub group: Option<String>,
}

/// A file that was not imported, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The file concerned (lossy UTF-8 where the name is not UTF-8).
    pub path: String,
    /// Why it was skipped; names the file(s) concerned.
    pub reason: String,
}

impl Skipped {
    fn new(path: &Path, reason: impl Into<String>) -> Self {
        Self {
            path: path.to_string_lossy().into_owned(),
            reason: reason.into(),
        }
    }
}

/// What an import did. Counts are of newly added entries and files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// New good images.
    pub good: usize,
    /// New defect images.
    pub defect: usize,
    /// New template (defect-free twin) images.
    pub template: usize,
    /// Regions (defects) of the new images.
    pub regions: usize,
    /// Regions per class.
    pub regions_per_class: BTreeMap<String, usize>,
    /// Pixel masks written.
    pub masks: usize,
    /// Box masks written.
    pub box_masks: usize,
    /// Images whose id was already in the project (not imported again).
    pub already_present: usize,
    /// Hidden files and files that are not images (or not part of the layout), left alone.
    pub ignored: usize,
    /// Bad files that were not imported, with the reason.
    pub skipped: Vec<Skipped>,
}

impl std::fmt::Display for ImportSummary {
    /// One line for a status bar; the skipped files are listed separately.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "imported {} good, {} defect, {} template images ({} defects, {} masks, {} box masks)",
            self.good, self.defect, self.template, self.regions, self.masks, self.box_masks
        )?;
        if self.already_present > 0 {
            write!(f, "; {} already present", self.already_present)?;
        }
        if self.ignored > 0 {
            write!(f, "; {} other files ignored", self.ignored)?;
        }
        if !self.skipped.is_empty() {
            write!(f, "; {} bad files skipped", self.skipped.len())?;
        }
        Ok(())
    }
}

/// A fatal import error: nothing was imported. Each variant names the folder or file.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The source folder does not exist or is not a folder.
    #[error("{0}: source folder not found (or not a folder)")]
    SourceMissing(PathBuf),
    /// The source folder does not have the requested layout.
    #[error("{path}: not a {layout} layout: expected {expected}")]
    NotLayout {
        /// The source folder.
        path: PathBuf,
        /// The layout asked for.
        layout: &'static str,
        /// What was expected in it.
        expected: &'static str,
    },
    /// A folder of the source could not be listed or read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The manifest could not be saved.
    #[error(transparent)]
    Project(#[from] ProjectError),
}

/// One unit of parallel work: an image, or a DeepPCB pair.
pub(crate) trait Job: Send + Sync {
    /// Id of the first entry (the sort key).
    fn id(&self) -> &str;
    /// Every id the job would add.
    fn ids(&self) -> Vec<&str>;
    /// Validates and writes the job's files; returns its entries.
    fn run(&self, project: &Project) -> Result<Vec<ImageEntry>, Skipped>;
}

/// Result of scanning a source: jobs, plus files skipped or ignored on the way.
#[derive(Default)]
pub(crate) struct Scan {
    pub jobs: Vec<Box<dyn Job>>,
    pub skipped: Vec<Skipped>,
    pub ignored: usize,
}

/// Imports `req` into `project` and saves the manifest. `progress(done, total)` is called from
/// worker threads after each image or pair.
pub fn import(
    project: &mut Project,
    req: &ImportRequest,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ImportSummary, ImportError> {
    if !req.from.is_dir() {
        return Err(ImportError::SourceMissing(req.from.clone()));
    }
    let masks = req.masks.as_ref().map(|m| resolve_masks(&req.from, m));
    if let Some(m) = &masks
        && !m.is_dir()
    {
        return Err(ImportError::SourceMissing(m.clone()));
    }
    let mut scan = match req.layout {
        Layout::Folders => folders::scan(req, masks.as_deref(), project.manifest.box_margin)?,
        Layout::Deeppcb => deeppcb::scan(req, masks.as_deref())?,
    };
    let mut summary = ImportSummary {
        ignored: scan.ignored,
        skipped: std::mem::take(&mut scan.skipped),
        ..ImportSummary::default()
    };
    let mut jobs = std::mem::take(&mut scan.jobs);
    jobs.retain(|j| {
        let present = j
            .ids()
            .iter()
            .filter(|id| project.manifest.index_of(id).is_some())
            .count();
        summary.already_present += present;
        present == 0
    });
    jobs.sort_by(|a, b| a.id().cmp(b.id()));
    let total = jobs.len();
    let done = AtomicUsize::new(0);
    let shared: &Project = project;
    let work = || -> Vec<Result<Vec<ImageEntry>, Skipped>> {
        jobs.par_iter()
            .map(|job| {
                let out = job.run(shared);
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                out
            })
            .collect()
    };
    // Jobs spend much of their time waiting on fsync (atomic mask writes), so more threads than
    // cores keep the disk and the CPUs busy; fall back to the global pool if one cannot be made.
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get() * 4);
    let outcomes = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(work),
        Err(_) => work(),
    };
    for outcome in outcomes {
        match outcome {
            Ok(entries) => {
                for e in entries {
                    tally(&mut summary, &e);
                    project.manifest.images.push(e);
                }
            }
            Err(s) => summary.skipped.push(s),
        }
    }
    summary.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    project.save()?;
    Ok(summary)
}

fn tally(s: &mut ImportSummary, e: &ImageEntry) {
    match e.role {
        Role::Good => s.good += 1,
        Role::Defect => s.defect += 1,
        Role::Template => s.template += 1,
    }
    s.regions += e.regions.len();
    for r in &e.regions {
        *s.regions_per_class.entry(r.class.clone()).or_default() += 1;
    }
    s.masks += usize::from(e.mask.is_some());
    s.box_masks += usize::from(e.box_mask.is_some());
}

fn resolve_masks(from: &Path, masks: &Path) -> PathBuf {
    if masks.is_relative() && from.join(masks).is_dir() {
        from.join(masks)
    } else {
        masks.to_path_buf()
    }
}

/// `key -> value` from a simple comma-separated file with a header row (no quoting): the value
/// is the first of `values` that the header names. Rows with an empty key or value are left out;
/// the map is empty when the file cannot be read or lacks the columns.
pub(crate) fn read_csv_map(path: &Path, key: &str, values: &[&str]) -> BTreeMap<String, String> {
    let Ok(text) = fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .collect();
    let key_col = header.iter().position(|h| *h == key);
    let value_col = values
        .iter()
        .find_map(|v| header.iter().position(|h| h == v));
    let (Some(key_col), Some(value_col)) = (key_col, value_col) else {
        return BTreeMap::new();
    };
    lines
        .filter_map(|line| {
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            let (k, v) = (cols.get(key_col)?, cols.get(value_col)?);
            (!k.is_empty() && !v.is_empty()).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Image file extensions accepted (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// True when the file name has an accepted image extension.
pub fn has_image_extension(name: &OsStr) -> bool {
    Path::new(name)
        .extension()
        .and_then(OsStr::to_str)
        .is_some_and(|ext| {
            IMAGE_EXTENSIONS
                .iter()
                .any(|known| ext.eq_ignore_ascii_case(known))
        })
}

/// `s` with every character other than letters, digits, `-`, `_` and `.` replaced by `_` (so
/// ids map one-to-one onto derived mask paths). Empty or all-dot names become `_`.
pub fn safe_name(s: &str) -> String {
    let out: String = s
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
        "_".to_owned()
    } else {
        out
    }
}

/// Sorted entries of a folder (names and paths).
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<(std::ffi::OsString, PathBuf)>, ImportError> {
    let io = |source| ImportError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        out.push((entry.file_name(), entry.path()));
    }
    out.sort();
    Ok(out)
}

/// Hard-links (or copies) `src` into the project folder `dir` under `name` and returns its
/// project path. An identical file already there is reused; a different one is not overwritten:
/// the new file gets `<stem>-2.<ext>`, `-3`, ...
pub(crate) fn link_image(
    project: &Project,
    src: &Path,
    dir: &str,
    name: &str,
) -> Result<RelPath, Skipped> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Skipped::new(src, format!("{}: {what}: {e}", src.display()))
    };
    let src = fs::canonicalize(src).map_err(|e| fail("cannot read", &e))?;
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    for n in 1..10_000u32 {
        let file = if n == 1 {
            name.to_owned()
        } else {
            format!("{stem}-{n}{ext}")
        };
        let rel = RelPath::new(format!("{dir}/{file}"))
            .map_err(|e| fail("cannot make a project path", &e))?;
        let dst = project
            .ensure_parent(&rel)
            .map_err(|e| fail("cannot create folder", &e))?;
        if dst.exists() || dst.symlink_metadata().is_ok() {
            if same_content(&src, &dst) {
                return Ok(rel);
            }
            continue;
        }
        if fs::hard_link(&src, &dst).is_err() {
            let tmp = dst.with_file_name(format!(".{file}.{}.tmp", std::process::id()));
            fs::copy(&src, &tmp)
                .and_then(|_| fs::rename(&tmp, &dst))
                .map_err(|e| {
                    let _ = fs::remove_file(&tmp);
                    fail(&format!("cannot copy to {}", dst.display()), &e)
                })?;
        }
        return Ok(rel);
    }
    Err(fail("cannot link", &"too many files with this name"))
}

fn same_content(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(ma), Ok(mb)) if ma.len() == mb.len() => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                if ma.dev() == mb.dev() && ma.ino() == mb.ino() {
                    return true;
                }
            }
            matches!((fs::read(a), fs::read(b)), (Ok(x), Ok(y)) if x == y)
        }
        _ => false,
    }
}

/// Saves a mask at `rel`, naming the source file on failure.
pub(crate) fn write_mask(
    project: &Project,
    rel: &RelPath,
    mask: &image::GrayImage,
    source: &Path,
) -> Result<(), Skipped> {
    let path = project.abs(rel);
    crate::imaging::io::save_mask(&path, mask).map_err(|e| Skipped::new(source, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names_and_extensions() {
        assert_eq!(safe_name("a b/c"), "a_b_c");
        assert_eq!(safe_name(".."), "_");
        assert_eq!(safe_name("Ünï-1.x"), "Ünï-1.x");
        assert!(has_image_extension(OsStr::new("A.JPG")));
        assert!(has_image_extension(OsStr::new("a.tiff")));
        assert!(!has_image_extension(OsStr::new("a.txt")));
        assert!(!has_image_extension(OsStr::new("png")));
    }

    #[test]
    fn link_image_disambiguates_different_files_and_reuses_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let project = Project::open_or_create(dir.path().join("p")).expect("project");
        let a = dir.path().join("a.png");
        let b = dir.path().join("b.png");
        fs::write(&a, b"one").expect("write");
        fs::write(&b, b"two").expect("write");
        let ra = link_image(&project, &a, "images/g", "x.png").expect("link a");
        let rb = link_image(&project, &b, "images/g", "x.png").expect("link b");
        let ra2 = link_image(&project, &a, "images/g", "x.png").expect("link a again");
        assert_eq!(ra.as_str(), "images/g/x.png");
        assert_eq!(rb.as_str(), "images/g/x-2.png");
        assert_eq!(ra2, ra);
        assert_eq!(fs::read(project.abs(&rb)).expect("read"), b"two");
    }
}
