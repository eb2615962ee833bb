//! Batch generation: many defect images from a folder of defect-free images and a mask source,
//! with a manifest that reproduces every file.
//!
//! ```text
//! OUT/images/000000.png   generated defect images
//! OUT/masks/000000.png    their masks (0/255)
//! OUT/generation.json     checkpoint and its SHA-256, composite mode, and per image: source
//!                         image, mask source, seed
//! ```
//! Image `i` uses source image `i mod n` and draws everything else from its own seed, derived
//! from the batch seed and `i`, so any single file can be made again alone.

use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::generate::{Composite, DefectGenerator, GenerateError};
use super::masks::{BlobSpec, random_blob, stamp_mask};
use crate::imaging::io::{ImagingError, load_mask, load_rgb8, save_mask, save_png};
use crate::nn::device::DeviceChoice;

/// Scale range of stamped real masks.
const STAMP_SCALE: (f32, f32) = (0.75, 1.25);
/// Draws tried before a stamped mask that does not fit is given up.
const STAMP_TRIES: usize = 8;
/// Name of the manifest.
pub const MANIFEST: &str = "generation.json";

/// Where the masks come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskSource {
    /// Real masks, stamped at random places with random flips, turns and scales.
    Stamp(Vec<PathBuf>),
    /// Random blobs.
    Random(BlobSpec),
}

/// A batch to make.
#[derive(Debug, Clone)]
pub struct BatchRequest {
    /// A run folder or checkpoint file.
    pub run: PathBuf,
    /// Defect-free images, used in turn.
    pub images: Vec<PathBuf>,
    /// The masks.
    pub masks: MaskSource,
    /// How many images to make.
    pub count: usize,
    /// Output folder (must not exist or be empty).
    pub out: PathBuf,
    /// Batch seed.
    pub seed: u64,
    /// Which pixels change.
    pub composite: Composite,
    /// Where to compute.
    pub device: DeviceChoice,
}

/// One generated image, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    /// The image, relative to the output folder.
    pub image: String,
    /// Its mask, relative to the output folder.
    pub mask: String,
    /// The defect-free source image.
    pub source: PathBuf,
    /// `random` or the stamped mask file.
    pub mask_source: String,
    /// This image's seed.
    pub seed: u64,
}

/// The batch manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchManifest {
    /// The checkpoint used.
    pub checkpoint: PathBuf,
    /// Its SHA-256.
    pub checkpoint_sha256: String,
    /// The composite mode.
    pub composite: Composite,
    /// The mask source (stamp files or blob ranges).
    pub masks: MaskSource,
    /// The batch seed.
    pub seed: u64,
    /// Every image.
    pub items: Vec<BatchItem>,
}

/// Why a batch failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Nothing to work with.
    #[error("{0}")]
    Empty(String),
    /// The output folder holds files already.
    #[error("{}: the output folder is not empty; choose a new one", .0.display())]
    NotEmpty(PathBuf),
    /// Reading or writing an image or mask failed.
    #[error(transparent)]
    Imaging(#[from] ImagingError),
    /// The generator failed.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// Writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A stamped mask never fitted its image.
    #[error("{}: the defect in this mask does not fit in {} ({w}x{h})", mask.display(), image.display())]
    DoesNotFit {
        /// The mask.
        mask: PathBuf,
        /// The image.
        image: PathBuf,
        /// Image width.
        w: u32,
        /// Image height.
        h: u32,
    },
}

/// The seed of image `i` of a batch seeded `seed`.
pub fn item_seed(seed: u64, i: usize) -> u64 {
    super::train::derive_seed(seed, (i as u64).wrapping_add(1))
}

/// Image files in a folder (png, jpg, jpeg, bmp, tif, tiff), sorted by name.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, BatchError> {
    let entries = std::fs::read_dir(dir).map_err(|source| BatchError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .map(|e| e.to_ascii_lowercase())
                .is_some_and(|e| ["png", "jpg", "jpeg", "bmp", "tif", "tiff"].contains(&e.as_str()))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The mask of image `i` for a `w` x `h` image.
fn draw_mask(
    masks: &MaskSource,
    w: u32,
    h: u32,
    rng: &mut ChaCha8Rng,
    source: &Path,
) -> Result<(GrayImage, String), BatchError> {
    match masks {
        MaskSource::Random(spec) => Ok((random_blob(w, h, spec, rng), "random".into())),
        MaskSource::Stamp(files) => {
            let file = &files[rng.random_range(0..files.len())];
            let real = load_mask(file)?;
            for _ in 0..STAMP_TRIES {
                if let Some(m) = stamp_mask(&real, w, h, STAMP_SCALE, rng) {
                    return Ok((m, file.display().to_string()));
                }
            }
            Err(BatchError::DoesNotFit {
                mask: file.clone(),
                image: source.to_path_buf(),
                w,
                h,
            })
        }
    }
}

/// Makes one item of a batch: (defect image, mask, manifest entry).
pub fn make_item(
    generator: &DefectGenerator,
    req: &BatchRequest,
    i: usize,
) -> Result<(image::RgbImage, GrayImage, BatchItem), BatchError> {
    let seed = item_seed(req.seed, i);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let source = &req.images[i % req.images.len()];
    let image = load_rgb8(source)?;
    let (w, h) = image.dimensions();
    let (mask, mask_source) = draw_mask(&req.masks, w, h, &mut rng, source)?;
    let out = generator.generate(&image, &mask, req.composite)?;
    let name = format!("{i:06}.png");
    let item = BatchItem {
        image: format!("images/{name}"),
        mask: format!("masks/{name}"),
        source: source.clone(),
        mask_source,
        seed,
    };
    Ok((out, mask, item))
}

/// Makes the whole batch, reporting `(done, total)` after each image.
pub fn generate_batch(
    req: &BatchRequest,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<BatchManifest, BatchError> {
    if req.images.is_empty() {
        return Err(BatchError::Empty(
            "no defect-free images to paint on".into(),
        ));
    }
    if let MaskSource::Stamp(files) = &req.masks
        && files.is_empty()
    {
        return Err(BatchError::Empty("no masks to stamp".into()));
    }
    if req.out.exists()
        && std::fs::read_dir(&req.out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(BatchError::NotEmpty(req.out.clone()));
    }
    let generator = DefectGenerator::load(&req.run, req.device)?;
    let mut items = Vec::with_capacity(req.count);
    progress(0, req.count);
    for i in 0..req.count {
        let (image, mask, item) = make_item(&generator, req, i)?;
        save_png(&req.out.join(&item.image), &DynamicImage::ImageRgb8(image))?;
        save_mask(&req.out.join(&item.mask), &mask)?;
        items.push(item);
        progress(i + 1, req.count);
    }
    let manifest = BatchManifest {
        checkpoint: generator.checkpoint.clone(),
        checkpoint_sha256: generator.checkpoint_sha256.clone(),
        composite: req.composite,
        masks: req.masks.clone(),
        seed: req.seed,
        items,
    };
    let path = req.out.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BatchError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    crate::fsutil::write_atomic(&path, &json).map_err(|source| BatchError::Io { path, source })?;
    Ok(manifest)
}
