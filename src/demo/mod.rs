//! The demo project made by the studio itself, so the app can show its main job without any
//! outside data.
//!
//! [`make_demo`] writes a complete project: good images of two OLED products, and for each
//! product and defect class a few defect images with their exact pixel masks, box masks, regions
//! and defect-free twins. Every image has its own random stream derived from (seed, image index),
//! so the project is byte-identical whatever the number of threads that render it.

pub mod defects;
pub mod panel;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::{DynamicImage, GrayImage, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

pub use defects::{DefectClass, draw_defect, random_blob_mask};
pub use panel::{PanelKind, render_panel};

use crate::imaging::boxes::{box_mask_from_mask, connected_components};
use crate::imaging::io::{ImagingError, save_mask, save_png};
use crate::project::{ImageEntry, Manifest, Project, ProjectError, Region, RelPath, Role};

/// What the demo project holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoConfig {
    /// Seed of every random choice; the same seed gives the same project, byte for byte.
    pub seed: u64,
    /// Width and height of every image, in pixels.
    pub size: u32,
    /// Defect-free images per product.
    pub good_per_group: usize,
    /// Defect images (each with its twin) per product and defect class.
    pub defects_per_class_per_group: usize,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            seed: 7,
            size: 256,
            good_per_group: 40,
            defects_per_class_per_group: 6,
        }
    }
}

impl DemoConfig {
    /// A project of the smallest images ([`MIN_SIZE`]), for tests and quick trials.
    pub fn small(seed: u64, good_per_group: usize, defects_per_class_per_group: usize) -> Self {
        Self {
            seed,
            size: MIN_SIZE,
            good_per_group,
            defects_per_class_per_group,
        }
    }
}

/// Smallest image side the demo draws (defects need room around them).
pub const MIN_SIZE: u32 = 64;
/// Largest image side the demo draws.
pub const MAX_SIZE: u32 = 4096;

/// Why the demo project could not be written. Each variant names the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The output folder already holds files; the demo never writes over them.
    #[error("{0}: the folder is not empty; choose a new or empty folder for the demo project")]
    NotEmpty(PathBuf),
    /// The output path exists and is not a folder.
    #[error("{0}: exists and is not a folder")]
    NotAFolder(PathBuf),
    /// A folder could not be created or listed.
    #[error("{path}: {source}")]
    Io {
        /// The folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The configuration asks for an image size the demo does not draw.
    #[error("demo image size {0} is outside {MIN_SIZE}..={MAX_SIZE} pixels")]
    BadSize(u32),
    /// An image or mask could not be written.
    #[error(transparent)]
    Imaging(#[from] ImagingError),
    /// The manifest could not be written.
    #[error(transparent)]
    Project(#[from] ProjectError),
}

/// One image (or defect/twin pair) to render, in manifest order.
#[derive(Clone, Copy, Debug)]
struct Job {
    kind: PanelKind,
    class: Option<DefectClass>,
    /// 1-based file number within the product and role.
    number: usize,
    /// Position in the job list: selects the job's random stream.
    stream: u64,
}

/// Lists every image of the demo in manifest order.
fn jobs(cfg: &DemoConfig) -> Vec<Job> {
    let mut out = Vec::new();
    for kind in PanelKind::ALL {
        for n in 0..cfg.good_per_group {
            out.push((kind, None, n + 1));
        }
        let mut number = 0;
        for class in DefectClass::ALL {
            for _ in 0..cfg.defects_per_class_per_group {
                number += 1;
                out.push((kind, Some(class), number));
            }
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, (kind, class, number))| Job {
            kind,
            class,
            number,
            stream: i as u64,
        })
        .collect()
}

/// The random stream of job `stream`: independent of thread count and rendering order.
fn job_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Writes the demo project into `out` (created if missing; refused if it holds anything).
///
/// `progress(done, total)` is called from worker threads after each image (or defect/twin pair)
/// is written. The manifest is written last, so an interrupted run leaves no project behind.
pub fn make_demo(
    out: &Path,
    cfg: &DemoConfig,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Project, DemoError> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&cfg.size) {
        return Err(DemoError::BadSize(cfg.size));
    }
    prepare_folder(out)?;
    let mut manifest = Manifest::new("OLED demo");
    let margin = manifest.box_margin;
    let project = Project {
        root: out.to_path_buf(),
        manifest: manifest.clone(),
    };
    let jobs = jobs(cfg);
    let done = AtomicUsize::new(0);
    let entries: Vec<Vec<ImageEntry>> = jobs
        .par_iter()
        .map(|job| {
            let entries = write_job(&project, cfg, margin, job)?;
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, jobs.len());
            Ok(entries)
        })
        .collect::<Result<_, DemoError>>()?;
    manifest.images = entries.into_iter().flatten().collect();
    let project = Project {
        root: out.to_path_buf(),
        manifest,
    };
    project.save()?;
    Ok(project)
}

/// Creates `out` or checks that it is an empty folder.
fn prepare_folder(out: &Path) -> Result<(), DemoError> {
    let io = |source| DemoError::Io {
        path: out.to_path_buf(),
        source,
    };
    if out.exists() {
        if !out.is_dir() {
            return Err(DemoError::NotAFolder(out.to_path_buf()));
        }
        if fs::read_dir(out).map_err(io)?.next().is_some() {
            return Err(DemoError::NotEmpty(out.to_path_buf()));
        }
    }
    fs::create_dir_all(out).map_err(io)
}

/// A project path built from parts that are valid by construction.
fn rel(s: String) -> Result<RelPath, DemoError> {
    RelPath::new(s.clone()).map_err(|e| DemoError::Io {
        path: PathBuf::from(s),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })
}

/// Renders and writes one job; returns its manifest entries (one, or a defect and its twin).
fn write_job(
    project: &Project,
    cfg: &DemoConfig,
    margin: u32,
    job: &Job,
) -> Result<Vec<ImageEntry>, DemoError> {
    let mut rng = job_rng(cfg.seed, job.stream);
    let group = job.kind.group();
    let clean = render_panel(job.kind, cfg.size, &mut rng);
    let file = |role: Role| rel(format!("images/{group}/{role}/{:04}.png", job.number));
    let Some(class) = job.class else {
        let mut e = ImageEntry::new(
            format!("{group}/good/{:04}", job.number),
            file(Role::Good)?,
            Role::Good,
            group,
        );
        write_image(project, &e.path, &clean)?;
        set_size(&mut e, &clean);
        return Ok(vec![e]);
    };
    let (defect, mask) = draw_defect(class, &clean, &mut rng);
    let name = format!("{}-{:04}", class.name(), job.number);
    let defect_id = format!("{group}/defect/{name}");
    let twin_id = format!("{group}/template/{name}");
    let mut d = ImageEntry::new(&defect_id, file(Role::Defect)?, Role::Defect, group);
    let mut t = ImageEntry::new(&twin_id, file(Role::Template)?, Role::Template, group);
    write_image(project, &d.path, &defect)?;
    write_image(project, &t.path, &clean)?;
    let mask_path = Project::default_mask_path(&defect_id);
    let box_path = Project::default_box_mask_path(&defect_id);
    write_mask(project, &mask_path, &mask)?;
    write_mask(project, &box_path, &box_mask_from_mask(&mask, margin))?;
    set_size(&mut d, &defect);
    set_size(&mut t, &clean);
    d.class = Some(class.name().to_owned());
    d.mask = Some(mask_path);
    d.box_mask = Some(box_path);
    d.twin = Some(twin_id);
    d.regions = connected_components(&mask)
        .into_iter()
        .map(|c| Region {
            class: class.name().to_owned(),
            bbox: c.bbox,
        })
        .collect();
    t.twin_of = Some(defect_id);
    Ok(vec![d, t])
}

fn set_size(e: &mut ImageEntry, img: &RgbImage) {
    e.width = img.width();
    e.height = img.height();
}

fn write_image(project: &Project, path: &RelPath, img: &RgbImage) -> Result<(), DemoError> {
    let abs = project.ensure_parent(path)?;
    save_png(&abs, &DynamicImage::ImageRgb8(img.clone()))?;
    Ok(())
}

fn write_mask(project: &Project, path: &RelPath, mask: &GrayImage) -> Result<(), DemoError> {
    let abs = project.ensure_parent(path)?;
    save_mask(&abs, mask)?;
    Ok(())
}

#[cfg(test)]
mod tests;
