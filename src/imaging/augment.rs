//! Augmentation of (defect-free twin, defect image, pixel mask) triples for the GAN trainers.
//!
//! One draw of random parameters ([`AugmentParams`]) is applied to the whole triple:
//! - geometry (random resized crop, rotation, flips) is one inverse-mapped affine warp
//!   ([`warp::Affine`]) shared by all three: images bilinear, the mask nearest-neighbour so it
//!   keeps exactly the values it had (0/255 stays 0/255), borders replicated for all three;
//! - photometric changes (CLAHE, brightness, contrast) touch only the two images, identically,
//!   with everything computed from the twin (see [`photometric`]); the mask is never changed.
//!
//! Geometry and photometric draws come from two sub-generators seeded from the caller's generator,
//! so turning photometric options on or off never changes the geometry of a given seed.

pub mod photometric;
mod sample;
pub mod warp;

use image::{GrayImage, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::imaging::clahe::{ClaheError, MAX_TILES};
use crate::imaging::rect::Rect;
pub use photometric::Photometric;
pub use sample::sample_params;
use warp::Affine;

/// Largest output side accepted.
pub const MAX_OUT_SIZE: u32 = 8192;

/// What to randomise and how much. Ranges are inclusive `(min, max)`.
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentConfig {
    /// Side of the square output, in pixels.
    pub out_size: u32,
    /// Crop area as a fraction of the source area, within `(0, 1]`.
    pub crop_scale: (f32, f32),
    /// Crop width / height, drawn log-uniformly. A crop that would not fit keeps its ratio and
    /// shrinks until it fits.
    pub crop_ratio: (f32, f32),
    /// Rotation is uniform in `[-max, max]` degrees, about the crop centre.
    pub max_rotation_deg: f32,
    /// Mirror left-right with probability 1/2.
    pub hflip: bool,
    /// Mirror top-bottom with probability 1/2.
    pub vflip: bool,
    /// Probability of applying CLAHE, in `[0, 1]`.
    pub clahe_probability: f32,
    /// CLAHE clip limit (multiple of the mean histogram bin, >= 1).
    pub clahe_clip: f32,
    /// CLAHE tiles per side.
    pub clahe_tiles: u32,
    /// Brightness factor is uniform in `[1 - b, 1 + b]`, `b` in `[0, 1]`.
    pub brightness: f32,
    /// Contrast factor is uniform in `[1 - c, 1 + c]`, `c` in `[0, 1]`.
    pub contrast: f32,
}

impl Default for AugmentConfig {
    /// 256 px output; crops of 40-100 % of the area with mild aspect change (0.8-1.25); up to
    /// 15 degrees of rotation; both flips; CLAHE (clip 2, 8x8 tiles) on 30 % of samples;
    /// brightness and contrast within +-15 %. Moderate, because the trainers must still learn
    /// real defect appearance.
    fn default() -> Self {
        Self {
            out_size: 256,
            crop_scale: (0.4, 1.0),
            crop_ratio: (0.8, 1.25),
            max_rotation_deg: 15.0,
            hflip: true,
            vflip: true,
            clahe_probability: 0.3,
            clahe_clip: 2.0,
            clahe_tiles: 8,
            brightness: 0.15,
            contrast: 0.15,
        }
    }
}

impl AugmentConfig {
    /// The default geometry with every photometric change off.
    pub fn geometry_only(out_size: u32) -> Self {
        Self {
            out_size,
            clahe_probability: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            ..Self::default()
        }
    }

    /// Changes nothing for a square `size` x `size` input.
    pub fn identity(size: u32) -> Self {
        Self {
            crop_scale: (1.0, 1.0),
            crop_ratio: (1.0, 1.0),
            max_rotation_deg: 0.0,
            hflip: false,
            vflip: false,
            ..Self::geometry_only(size)
        }
    }

    /// Checks every field; the error says which one and why.
    pub fn validate(&self) -> Result<(), AugmentError> {
        let bad = |what: String| Err(AugmentError::InvalidConfig(what));
        let (s0, s1) = self.crop_scale;
        let (r0, r1) = self.crop_ratio;
        if self.out_size == 0 || self.out_size > MAX_OUT_SIZE {
            return bad(format!(
                "out_size must be 1..={MAX_OUT_SIZE}, got {}",
                self.out_size
            ));
        }
        if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
            return bad(format!(
                "crop_scale needs 0 < min <= max <= 1, got ({s0}, {s1})"
            ));
        }
        if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
            return bad(format!("crop_ratio needs 0 < min <= max, got ({r0}, {r1})"));
        }
        if !(0.0..=180.0).contains(&self.max_rotation_deg) {
            return bad(format!(
                "max_rotation_deg must be 0..=180, got {}",
                self.max_rotation_deg
            ));
        }
        if !(0.0..=1.0).contains(&self.clahe_probability) {
            return bad(format!(
                "clahe_probability must be 0..=1, got {}",
                self.clahe_probability
            ));
        }
        if !(self.clahe_clip.is_finite() && self.clahe_clip >= 1.0) {
            return bad(format!(
                "clahe_clip must be a finite number >= 1, got {}",
                self.clahe_clip
            ));
        }
        if self.clahe_tiles == 0 || self.clahe_tiles > MAX_TILES {
            return bad(format!(
                "clahe_tiles must be 1..={MAX_TILES}, got {}",
                self.clahe_tiles
            ));
        }
        for (name, v) in [("brightness", self.brightness), ("contrast", self.contrast)] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{name} must be 0..=1, got {v}"));
            }
        }
        Ok(())
    }
}

/// A defect-free twin, its defect image and the defect's pixel mask, all the same size.
#[derive(Debug, Clone, PartialEq)]
pub struct Triple {
    /// The defect-free twin.
    pub twin: RgbImage,
    /// The image with the defect.
    pub defect: RgbImage,
    /// The defect mask (0 or 255).
    pub mask: GrayImage,
}

/// Why a triple could not be augmented.
#[derive(Debug, thiserror::Error)]
pub enum AugmentError {
    /// The three inputs differ in size.
    #[error(
        "twin is {twin:?}, defect image is {defect:?}, mask is {mask:?} (width, height): all three must be the same size"
    )]
    SizeMismatch {
        /// Twin size.
        twin: (u32, u32),
        /// Defect image size.
        defect: (u32, u32),
        /// Mask size.
        mask: (u32, u32),
    },
    /// The inputs have no pixel.
    #[error("cannot augment an empty {width}x{height} triple")]
    Empty {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// A configuration field is out of range.
    #[error("invalid augmentation config: {0}")]
    InvalidConfig(String),
    /// The focus rectangle's centre is not inside the image.
    #[error("focus {focus:?} has its centre outside the {width}x{height} image")]
    FocusOutside {
        /// The focus rectangle.
        focus: Rect,
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
    },
    /// Parameters drawn for one size were applied to a triple of another size.
    #[error(
        "parameters were drawn for a {drawn:?} triple, this triple is {actual:?} (width, height)"
    )]
    ParamsSize {
        /// Size the parameters were drawn for.
        drawn: (u32, u32),
        /// Size of the triple given.
        actual: (u32, u32),
    },
    /// CLAHE refused its arguments (cannot happen with a validated config).
    #[error(transparent)]
    Clahe(#[from] ClaheError),
}

/// The geometric draw: a crop of the source, rotated about its centre, resized and flipped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Source size (width, height).
    pub source: (u32, u32),
    /// Crop centre in continuous source coordinates.
    pub center: (f64, f64),
    /// Crop width and height in source pixels, before rotation.
    pub size: (f64, f64),
    /// Rotation in degrees about the crop centre; positive turns the content counter-clockwise on
    /// screen (y pointing down).
    pub rotation_deg: f64,
    /// Output mirrored left-right.
    pub hflip: bool,
    /// Output mirrored top-bottom.
    pub vflip: bool,
    /// Output side.
    pub out_size: u32,
}

/// Everything drawn for one augmentation; [`apply_params`] replays it exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentParams {
    /// Geometry, shared by all three.
    pub geometry: Geometry,
    /// Photometric change, shared by both images.
    pub photometric: Photometric,
}

impl Geometry {
    /// Maps continuous output coordinates to continuous source coordinates.
    pub fn output_to_source(&self) -> Affine {
        let n = f64::from(self.out_size);
        let (sin, cos) = self.rotation_deg.to_radians().sin_cos();
        let sa = if self.hflip { -1.0 } else { 1.0 };
        let sb = if self.vflip { -1.0 } else { 1.0 };
        // Output (x, y) -> crop frame (u, v) = ((x/n - 1/2) w sa, (y/n - 1/2) h sb) -> rotate.
        let (ku, kv) = (self.size.0 * sa / n, self.size.1 * sb / n);
        let (m0, m1, m3, m4) = (cos * ku, -sin * kv, sin * ku, cos * kv);
        let half = 0.5 * n;
        Affine {
            m: [
                m0,
                m1,
                self.center.0 - half * (m0 + m1),
                m3,
                m4,
                self.center.1 - half * (m3 + m4),
            ],
        }
    }

    /// Where a continuous source position lands in the output (may be outside `[0, out_size]`).
    pub fn source_to_output(&self, x: f64, y: f64) -> (f64, f64) {
        // The crop size is validated positive, so the map is always invertible.
        match self.output_to_source().inverse() {
            Some(inv) => inv.apply(x, y),
            None => (f64::NAN, f64::NAN),
        }
    }
}

/// Applies drawn parameters to a triple; the triple must have the size they were drawn for.
pub fn apply_params(
    triple: &Triple,
    params: &AugmentParams,
    cfg: &AugmentConfig,
) -> Result<Triple, AugmentError> {
    let size = check_sizes(triple)?;
    let g = &params.geometry;
    if size != g.source {
        return Err(AugmentError::ParamsSize {
            drawn: g.source,
            actual: size,
        });
    }
    if g.out_size == 0 || g.out_size > MAX_OUT_SIZE {
        let what = format!("out_size must be 1..={MAX_OUT_SIZE}, got {}", g.out_size);
        return Err(AugmentError::InvalidConfig(what));
    }
    let map = g.output_to_source();
    let (mut twin, mut defect, mask) =
        warp::warp_triple(&triple.twin, &triple.defect, &triple.mask, &map, g.out_size);
    photometric::apply(
        &params.photometric,
        cfg.clahe_tiles,
        cfg.clahe_clip,
        &mut twin,
        &mut defect,
    )?;
    Ok(Triple { twin, defect, mask })
}

fn check_sizes(t: &Triple) -> Result<(u32, u32), AugmentError> {
    let (twin, defect, mask) = (
        t.twin.dimensions(),
        t.defect.dimensions(),
        t.mask.dimensions(),
    );
    if twin != defect || twin != mask {
        return Err(AugmentError::SizeMismatch { twin, defect, mask });
    }
    Ok(twin)
}

/// Augments a triple: one random geometry for all three, one photometric change for both images.
///
/// `focus` (typically a defect box) keeps its centre in the output; see [`sample_params`] for
/// exactly what is guaranteed. Errors name the sizes when the three inputs differ.
pub fn augment(
    triple: &Triple,
    cfg: &AugmentConfig,
    focus: Option<Rect>,
    rng: &mut impl Rng,
) -> Result<Triple, AugmentError> {
    let size = check_sizes(triple)?;
    let params = sample_params(cfg, size, focus, rng)?;
    apply_params(triple, &params, cfg)
}

/// [`augment`] with a `ChaCha8Rng` seeded from `seed`: the same seed gives the same bytes.
pub fn augment_seeded(
    triple: &Triple,
    cfg: &AugmentConfig,
    focus: Option<Rect>,
    seed: u64,
) -> Result<Triple, AugmentError> {
    augment(triple, cfg, focus, &mut ChaCha8Rng::seed_from_u64(seed))
}

#[cfg(test)]
mod tests;
