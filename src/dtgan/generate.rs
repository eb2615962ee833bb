//! Generation: a trained generator paints a defect into a defect-free image at a mask.
//!
//! The generator runs on a tile around the mask (the mask's box plus context, rounded to a
//! multiple of 4), at the image's own resolution, as it was trained. The result is then
//! composited: only the pixels of the composite region (the mask, the mask dilated by `k`, or
//! the whole tile) change; every other pixel is copied from the input, byte for byte.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use image::{GrayImage, Luma, RgbImage};

use super::config::TrainConfig;
use super::data::{image_tensor, mask_tensor, tensor_image};
use super::model::{checkpoint_config, read_checkpoint_hashed, restore_vars};
use super::nets::Generator;
use super::run::RunDir;
use crate::imaging::rect::Rect;
use crate::nn::NnError;
use crate::nn::device::{DeviceChoice, select_device};

/// Context around the mask given to the generator, as a fraction of its training size.
const CONTEXT_FRACTION: f32 = 0.5;

/// Which pixels of the generated tile replace the input's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode", content = "px")]
pub enum Composite {
    /// The whole tile around the mask (the generator's own background included).
    None,
    /// Only the mask's pixels.
    Mask,
    /// The mask grown by this many pixels (square neighbourhood).
    Dilated(u32),
}

impl Default for Composite {
    /// Measured on DeepPCB (`dtgan-studio seams`, README): of the modes that keep the background
    /// byte-exact beyond the mask's neighbourhood, dilation by 8 px leaves the smallest seams.
    fn default() -> Self {
        Composite::Dilated(8)
    }
}

impl std::fmt::Display for Composite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Composite::None => write!(f, "none"),
            Composite::Mask => write!(f, "mask"),
            Composite::Dilated(k) => write!(f, "dilated:{k}"),
        }
    }
}

impl std::str::FromStr for Composite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Composite::None),
            "mask" => Ok(Composite::Mask),
            _ => s
                .strip_prefix("dilated:")
                .and_then(|k| k.parse().ok())
                .map(Composite::Dilated)
                .ok_or_else(|| {
                    format!("composite mode must be none, mask or dilated:K, not `{s}`")
                }),
        }
    }
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// No checkpoint where one was expected.
    #[error("{}: no checkpoint (expected best.safetensors or last.safetensors in a run folder, or a .safetensors file)", .0.display())]
    NoCheckpoint(PathBuf),
    /// The checkpoint is unreadable or not a generator.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// Image and mask differ in size.
    #[error("the mask is {mask:?} but the image is {image:?} (width, height)")]
    SizeMismatch {
        /// Image size.
        image: (u32, u32),
        /// Mask size.
        mask: (u32, u32),
    },
}

/// A generator loaded for inference.
pub struct DefectGenerator {
    /// The configuration it was trained with.
    pub config: TrainConfig,
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// SHA-256 of the checkpoint file, hex.
    pub checkpoint_sha256: String,
    /// Generator steps the checkpoint had trained (from its state; `None` if it has none).
    pub step: Option<u64>,
    generator: Generator,
    device: Device,
    _vars: VarMap,
    _buffers: VarMap,
}

/// The checkpoint to use for a run folder (best, else last) or the file itself.
pub fn resolve_checkpoint(path: &Path) -> Result<PathBuf, GenerateError> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let run = RunDir::new(path);
    [run.best(), run.last()]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| GenerateError::NoCheckpoint(path.to_path_buf()))
}

impl DefectGenerator {
    /// Loads the generator of a run folder (its best checkpoint) or of a checkpoint file.
    pub fn load(path: &Path, device: DeviceChoice) -> Result<Self, GenerateError> {
        let checkpoint = resolve_checkpoint(path)?;
        let (checkpoint_sha256, (tensors, meta)) = read_checkpoint_hashed(&checkpoint)?;
        let config = checkpoint_config(&checkpoint, &meta)?;
        let step = meta
            .get("state")
            .and_then(|st| serde_json::from_str::<crate::dtgan::model::TrainState>(st).ok())
            .map(|st| st.step);
        let device = select_device(device)?;
        let vars = VarMap::new();
        let buffers = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &device);
        let generator = Generator::new(&config.model, vb.pp("gen"), &buffers)?;
        let bad = |msg: String| NnError::CheckpointFormat {
            path: checkpoint.clone(),
            msg,
        };
        restore_vars(&vars, "", &tensors).map_err(bad)?;
        restore_vars(&buffers, "sn.", &tensors).map_err(bad)?;
        Ok(Self {
            config,
            checkpoint,
            checkpoint_sha256,
            step,
            generator,
            device,
            _vars: vars,
            _buffers: buffers,
        })
    }

    /// The tile the generator sees for `mask` in a `w` x `h` image: the mask's box plus context,
    /// sides rounded up to multiples of 4 and kept inside the image where it is big enough.
    pub fn tile_for(&self, mask: &GrayImage) -> Option<Rect> {
        let (w, h) = mask.dimensions();
        let bbox = mask_bbox(mask)?;
        let context = (self.config.model.image_size as f32 * CONTEXT_FRACTION) as u32;
        let grown = bbox.grown_clipped(context, w, h);
        let fit = |start: u32, len: u32, limit: u32| -> (u32, u32) {
            let want = len.div_ceil(4) * 4;
            if want <= limit {
                (start.min(limit - want), want)
            } else {
                (0, limit / 4 * 4)
            }
        };
        let (x, tw) = fit(grown.x, grown.w, w);
        let (y, th) = fit(grown.y, grown.h, h);
        (tw >= 4 && th >= 4).then(|| Rect::new(x, y, tw, th))
    }

    /// Paints a defect into `image` at `mask` (0/255); see [`Composite`] for which pixels change.
    pub fn generate(
        &self,
        image: &RgbImage,
        mask: &GrayImage,
        composite: Composite,
    ) -> Result<RgbImage, GenerateError> {
        if image.dimensions() != mask.dimensions() {
            return Err(GenerateError::SizeMismatch {
                image: image.dimensions(),
                mask: mask.dimensions(),
            });
        }
        let mut out = image.clone();
        let Some(tile) = self.tile_for(mask) else {
            return Ok(out);
        };
        let crop_img = image::imageops::crop_imm(image, tile.x, tile.y, tile.w, tile.h).to_image();
        let crop_mask = image::imageops::crop_imm(mask, tile.x, tile.y, tile.w, tile.h).to_image();
        let x = image_tensor(&crop_img, &self.device)?.contiguous()?;
        let m = mask_tensor(&crop_mask, &self.device)?;
        let y = self.generator.forward(&x, &m, false)?;
        let mut generated = tensor_image(&y, 0)?;
        gray_like(&mut generated, &crop_img);
        let region = composite_region(&crop_mask, composite);
        for (px, py, p) in generated.enumerate_pixels() {
            if region.get_pixel(px, py)[0] != 0 {
                out.put_pixel(tile.x + px, tile.y + py, *p);
            }
        }
        Ok(out)
    }
}

/// The pixels a composite mode replaces, as a 0/255 mask of the same size as `mask`.
pub fn composite_region(mask: &GrayImage, composite: Composite) -> GrayImage {
    match composite {
        Composite::None => GrayImage::from_pixel(mask.width(), mask.height(), Luma([255])),
        Composite::Mask => crate::imaging::io::binarize(mask.clone()),
        Composite::Dilated(k) => dilate(&crate::imaging::io::binarize(mask.clone()), k),
    }
}

/// Square (Chebyshev) dilation by `k` pixels, as two separable running maxima.
pub fn dilate(mask: &GrayImage, k: u32) -> GrayImage {
    if k == 0 {
        return mask.clone();
    }
    let (w, h) = mask.dimensions();
    let k = k as i64;
    let pass = |src: &GrayImage, horizontal: bool| -> GrayImage {
        let mut dst = GrayImage::new(w, h);
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                let hit = (-k..=k).any(|d| {
                    let (sx, sy) = if horizontal { (x + d, y) } else { (x, y + d) };
                    sx >= 0
                        && sy >= 0
                        && sx < w as i64
                        && sy < h as i64
                        && src.get_pixel(sx as u32, sy as u32)[0] != 0
                });
                if hit {
                    dst.put_pixel(x as u32, y as u32, Luma([255]));
                }
            }
        }
        dst
    };
    pass(&pass(mask, true), false)
}

/// The bounding box of the non-zero pixels, if any.
pub fn mask_bbox(mask: &GrayImage) -> Option<Rect> {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, p) in mask.enumerate_pixels() {
        if p[0] != 0 {
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
    }
    (x0 != u32::MAX).then(|| Rect::new(x0, y0, x1 - x0 + 1, y1 - y0 + 1))
}

/// Makes `generated` gray (the mean of its channels) when `like` is gray: the generator always
/// has three output channels, and gray data deserves gray results.
pub fn gray_like(generated: &mut RgbImage, like: &RgbImage) {
    if is_gray(like) {
        for p in generated.pixels_mut() {
            let v = ((u16::from(p[0]) + u16::from(p[1]) + u16::from(p[2]) + 1) / 3) as u8;
            *p = image::Rgb([v, v, v]);
        }
    }
}

fn is_gray(img: &RgbImage) -> bool {
    img.pixels().all(|p| p[0] == p[1] && p[1] == p[2])
}
