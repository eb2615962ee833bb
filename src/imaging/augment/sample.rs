//! Drawing [`AugmentParams`]: crop size and place (focus-aware), rotation, flips, photometric.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{AugmentConfig, AugmentError, AugmentParams, Geometry, Photometric};
use crate::imaging::rect::Rect;

/// Draws the parameters for a `width` x `height` triple.
///
/// Guarantee with a `focus`: the focus rectangle's centre `(x + w/2, y + h/2)` (continuous
/// coordinates) lands inside the output at least half an output pixel from its edges, whatever
/// the rotation and flips: [`Geometry::source_to_output`] of that centre is within
/// `[0.5, out_size - 0.5]` on both axes, so the output pixel nearest to it exists. Nothing is
/// promised about the rest of the rectangle (a large defect may be cut). The crop centre is drawn
/// uniformly among the places that keep the (unrotated) crop inside the source and contain the
/// focus centre; only when rotation would push the focus out is the centre moved, by the least
/// amount. A focus centre outside the image is an error.
pub fn sample_params(
    cfg: &AugmentConfig,
    (width, height): (u32, u32),
    focus: Option<Rect>,
    rng: &mut impl Rng,
) -> Result<AugmentParams, AugmentError> {
    cfg.validate()?;
    if width == 0 || height == 0 {
        return Err(AugmentError::Empty { width, height });
    }
    let focus_center = match focus {
        None => None,
        Some(f) => {
            let c = (
                f64::from(f.x) + f64::from(f.w) / 2.0,
                f64::from(f.y) + f64::from(f.h) / 2.0,
            );
            if c.0 > f64::from(width) || c.1 > f64::from(height) {
                return Err(AugmentError::FocusOutside {
                    focus: f,
                    width,
                    height,
                });
            }
            Some(c)
        }
    };
    let mut geo_rng = ChaCha8Rng::seed_from_u64(rng.random());
    let mut photo_rng = ChaCha8Rng::seed_from_u64(rng.random());
    Ok(AugmentParams {
        geometry: sample_geometry(cfg, (width, height), focus_center, &mut geo_rng),
        photometric: sample_photometric(cfg, &mut photo_rng),
    })
}

/// Uniform in `[lo, hi]` without panicking on `lo == hi`.
fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

fn sample_geometry(
    cfg: &AugmentConfig,
    (width, height): (u32, u32),
    focus: Option<(f64, f64)>,
    rng: &mut impl Rng,
) -> Geometry {
    let (sw, sh) = (f64::from(width), f64::from(height));
    // Every value is drawn whatever the config, so one option never shifts another's draw.
    let scale = uniform(
        rng,
        f64::from(cfg.crop_scale.0),
        f64::from(cfg.crop_scale.1),
    );
    let log_ratio = uniform(
        rng,
        f64::from(cfg.crop_ratio.0).ln(),
        f64::from(cfg.crop_ratio.1).ln(),
    );
    let ratio = log_ratio.exp();
    let area = sw * sh * scale;
    let (mut w, mut h) = ((area * ratio).sqrt(), (area / ratio).sqrt());
    let fit = (sw / w).min(sh / h).min(1.0);
    (w, h) = (w * fit, h * fit);
    let (ux, uy) = (rng.random::<f64>(), rng.random::<f64>());
    let max_rot = f64::from(cfg.max_rotation_deg);
    let rotation_deg = uniform(rng, -max_rot, max_rot);
    let hflip = rng.random_bool(0.5) && cfg.hflip;
    let vflip = rng.random_bool(0.5) && cfg.vflip;
    let n = f64::from(cfg.out_size);
    // Half an output pixel, in source units: how far inside the crop the focus must stay.
    let (mx, my) = (0.5 * w / n, 0.5 * h / n);
    let center = match focus {
        None => (centre_in(ux, w, sw, None), centre_in(uy, h, sh, None)),
        Some((fx, fy)) => {
            let cx = centre_in(ux, w, sw, Some((fx - (w / 2.0 - mx), fx + (w / 2.0 - mx))));
            let cy = centre_in(uy, h, sh, Some((fy - (h / 2.0 - my), fy + (h / 2.0 - my))));
            keep_focus_inside(
                (cx, cy),
                (fx, fy),
                (w / 2.0 - mx, h / 2.0 - my),
                rotation_deg,
            )
        }
    };
    Geometry {
        source: (width, height),
        center,
        size: (w, h),
        rotation_deg,
        hflip,
        vflip,
        out_size: cfg.out_size,
    }
}

/// A crop centre along one axis at fraction `u` of its allowed range: the crop inside the
/// source, intersected with `focus_range` when given (the focus range alone if they are disjoint).
fn centre_in(u: f64, crop: f64, side: f64, focus_range: Option<(f64, f64)>) -> f64 {
    let (mut lo, mut hi) = (crop / 2.0, side - crop / 2.0);
    if let Some((flo, fhi)) = focus_range {
        (lo, hi) = if lo.max(flo) <= hi.min(fhi) {
            (lo.max(flo), hi.min(fhi))
        } else {
            (flo, fhi)
        };
    }
    lo + (hi - lo) * u
}

/// Moves the centre the least so the focus lies within `half` of it in the rotated crop frame.
fn keep_focus_inside(
    center: (f64, f64),
    focus: (f64, f64),
    half: (f64, f64),
    rotation_deg: f64,
) -> (f64, f64) {
    let (sin, cos) = rotation_deg.to_radians().sin_cos();
    let (dx, dy) = (focus.0 - center.0, focus.1 - center.1);
    // Focus in the crop frame: rotate back by the crop's angle.
    let (u, v) = (cos * dx + sin * dy, -sin * dx + cos * dy);
    let (cu, cv) = (u.clamp(-half.0, half.0), v.clamp(-half.1, half.1));
    if (cu, cv) == (u, v) {
        return center;
    }
    (
        focus.0 - (cos * cu - sin * cv),
        focus.1 - (sin * cu + cos * cv),
    )
}

fn sample_photometric(cfg: &AugmentConfig, rng: &mut impl Rng) -> Photometric {
    let clahe = rng.random::<f32>() < cfg.clahe_probability;
    let (b, c) = (f64::from(cfg.brightness), f64::from(cfg.contrast));
    let brightness = uniform(rng, 1.0 - b, 1.0 + b) as f32;
    let contrast = uniform(rng, 1.0 - c, 1.0 + c) as f32;
    Photometric {
        clahe,
        brightness,
        contrast,
    }
}
