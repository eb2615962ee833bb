//! Training data of the inpainting GAN: defect-free images of chosen groups, cut into random
//! crops with a random square hole each.
//!
//! Defect-free means a `good` image or a real template (an inpainted twin is never used: the
//! network would learn its own mistakes). A run may also learn from the real defect images of
//! chosen groups, away from their defects: their crops never touch a defect's box grown by
//! [`CONTEXT_MARGIN`], so the pixels the twins will fill stay unseen. Decoded images are cached
//! up to a memory budget.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use image::RgbImage;
use rand::Rng;

use super::config::InpaintConfig;
use crate::dtgan::data::image_tensor;
use crate::imaging::io::load_rgb8;
use crate::imaging::rect::Rect;
use crate::project::{ImageEntry, Project, Role};

/// Pixels by which a defect's box is grown before a context crop must miss it.
pub const CONTEXT_MARGIN: u32 = 8;

/// Random crop positions tried before the grid of those that miss every defect is searched.
const RANDOM_TRIES: usize = 32;

/// Spacing of that grid, px.
const GRID_STEP: u32 = 4;

/// Decoded images kept in memory, in bytes.
const CACHE_BYTES: usize = 1 << 30;

/// Why an inpainting run has no data.
#[derive(Debug, thiserror::Error)]
pub enum InpaintDataError {
    /// No defect-free image in the chosen groups.
    #[error("no defect-free images (good images or real templates) in {0}")]
    NoImages(String),
    /// No defect image with boxes in the chosen context groups.
    #[error("no real defect images with defect boxes in {0}")]
    NoContext(String),
    /// Repeated draws from these many images found no crop that misses their defects.
    #[error(
        "no training crop missing the defects was found in {0} images (were they changed on disk?)"
    )]
    NoRoom(usize),
    /// An image is too small for the training crops.
    #[error("{}: {w}x{h} pixels is less than half the {side} px training crops", path.display())]
    TooSmall {
        /// The file.
        path: PathBuf,
        /// Width.
        w: u32,
        /// Height.
        h: u32,
        /// The crop side.
        side: usize,
    },
    /// A file could not be read.
    #[error(transparent)]
    Imaging(#[from] crate::imaging::io::ImagingError),
}

/// An image training crops are cut from, and the rectangles no crop may touch (a defect image's
/// boxes grown by [`CONTEXT_MARGIN`]; none for a defect-free image).
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The image's id.
    pub id: String,
    /// Its file.
    pub path: PathBuf,
    /// What crops must miss.
    pub avoid: Vec<Rect>,
}

fn which(groups: &[String]) -> String {
    if groups.is_empty() {
        "the project".to_string()
    } else {
        format!("group(s) {}", groups.join(", "))
    }
}

/// The real images of `project` in `groups` (every group when empty) that `keep` accepts,
/// sorted by id, each with the rectangles `avoid` gives; none is the error `empty` makes of
/// the groups' description.
fn sources(
    project: &Project,
    groups: &[String],
    keep: impl Fn(&ImageEntry) -> bool,
    avoid: impl Fn(&ImageEntry) -> Vec<Rect>,
    empty: fn(String) -> InpaintDataError,
) -> Result<Vec<Source>, InpaintDataError> {
    let mut out: Vec<Source> = project
        .manifest
        .images
        .iter()
        .filter(|e| {
            e.synthetic.is_none() && (groups.is_empty() || groups.contains(&e.group)) && keep(e)
        })
        .map(|e| Source {
            id: e.id.clone(),
            path: project.abs(&e.path),
            avoid: avoid(e),
        })
        .collect();
    if out.is_empty() {
        return Err(empty(which(groups)));
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The defect-free images of `groups` (every group when empty), sorted by id.
pub fn collect_images(
    project: &Project,
    groups: &[String],
) -> Result<Vec<Source>, InpaintDataError> {
    sources(
        project,
        groups,
        |e| e.role == Role::Good || (e.role == Role::Template && e.is_real_template()),
        |_| Vec::new(),
        InpaintDataError::NoImages,
    )
}

/// The real defect images of `groups` (every group when empty) that have defect boxes, sorted
/// by id, each with its boxes grown by [`CONTEXT_MARGIN`] to avoid. Images without boxes are
/// left out: where their defects are is not known.
pub fn collect_context(
    project: &Project,
    groups: &[String],
) -> Result<Vec<Source>, InpaintDataError> {
    sources(
        project,
        groups,
        |e| e.role == Role::Defect && !e.regions.is_empty(),
        |e| {
            e.regions
                .iter()
                .map(|r| r.bbox.grown_clipped(CONTEXT_MARGIN, u32::MAX, u32::MAX))
                .collect()
        },
        InpaintDataError::NoContext,
    )
}

/// Whether the `side` px square at (`x`, `y`) misses every rectangle of `avoid`.
fn misses(avoid: &[Rect], x: u32, y: u32, side: u32) -> bool {
    let r = Rect::new(x, y, side, side);
    !avoid.iter().any(|a| a.overlaps(&r))
}

/// The top-left corners, on a grid of [`GRID_STEP`] (plus the last row and column), of the
/// `side` px squares of a `w` x `h` image that miss every rectangle of `avoid`.
pub fn free_corners(w: u32, h: u32, side: u32, avoid: &[Rect]) -> Vec<(u32, u32)> {
    if side > w || side > h {
        return Vec::new();
    }
    let axis = |len: u32| {
        let mut v: Vec<u32> = (0..=len - side).step_by(GRID_STEP as usize).collect();
        if v.last() != Some(&(len - side)) {
            v.push(len - side);
        }
        v
    };
    let (xs, ys) = (axis(w), axis(h));
    let mut out = Vec::new();
    for &y in &ys {
        for &x in &xs {
            if misses(avoid, x, y, side) {
                out.push((x, y));
            }
        }
    }
    out
}

/// Keeps the sources in which a crop of `side` px fits (all defect-free ones; defect images
/// with room between their defects), reading only the files' headers; returns how many were
/// dropped.
pub fn keep_with_room(sources: &mut Vec<Source>, side: u32) -> Result<usize, InpaintDataError> {
    let before = sources.len();
    let mut kept = Vec::with_capacity(before);
    for s in sources.drain(..) {
        if s.avoid.is_empty() {
            kept.push(s);
            continue;
        }
        let (w, h) = crate::imaging::io::read_dimensions(&s.path)?;
        let side = side.min(w).min(h);
        if !free_corners(w, h, side, &s.avoid).is_empty() {
            kept.push(s);
        }
    }
    *sources = kept;
    Ok(before - sources.len())
}

/// A hole: top, left, height, width, in crop pixels.
pub type Hole = (usize, usize, usize, usize);

/// One training example: a crop and its hole.
#[derive(Debug, Clone)]
pub struct Example {
    /// The defect-free crop, `image_size` square.
    pub image: RgbImage,
    /// The hole.
    pub hole: Hole,
}

/// Draws examples from a set of images, decoding each once while the cache has room.
pub struct ImageSampler {
    images: Vec<Source>,
    cache: HashMap<usize, Arc<RgbImage>>,
    cached_bytes: usize,
}

impl ImageSampler {
    /// A sampler over `images`.
    pub fn new(images: Vec<Source>) -> Self {
        Self {
            images,
            cache: HashMap::new(),
            cached_bytes: 0,
        }
    }

    /// The images.
    pub fn images(&self) -> &[Source] {
        &self.images
    }

    fn load(&mut self, i: usize) -> Result<Arc<RgbImage>, InpaintDataError> {
        if let Some(img) = self.cache.get(&i) {
            return Ok(img.clone());
        }
        let img = Arc::new(load_rgb8(&self.images[i].path)?);
        let bytes = img.as_raw().len();
        if self.cached_bytes + bytes <= CACHE_BYTES {
            self.cached_bytes += bytes;
            self.cache.insert(i, img.clone());
        }
        Ok(img)
    }

    /// A random example: random image, crop (missing the image's defects, if any), flips /
    /// quarter turns, hole.
    pub fn sample(
        &mut self,
        cfg: &InpaintConfig,
        rng: &mut impl Rng,
    ) -> Result<Example, InpaintDataError> {
        // A defect image with no room for this crop size is passed over (each source was
        // checked for the largest crop, so this only guards against a changed file).
        for _ in 0..self.images.len().max(1) * 4 {
            let i = rng.random_range(0..self.images.len());
            if let Some(e) = self.sample_from(i, cfg, rng)? {
                return Ok(e);
            }
        }
        Err(InpaintDataError::NoRoom(self.images.len()))
    }

    fn sample_from(
        &mut self,
        i: usize,
        cfg: &InpaintConfig,
        rng: &mut impl Rng,
    ) -> Result<Option<Example>, InpaintDataError> {
        let img = self.load(i)?;
        let s = cfg.model.image_size;
        let (lo, hi) = cfg.crop_side_scale;
        let scale = if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            lo
        };
        let (w, h) = img.dimensions();
        let side = ((s as f32 * scale).round() as u32).min(w).min(h);
        if (w.min(h) as usize) < s / 2 {
            return Err(InpaintDataError::TooSmall {
                path: self.images[i].path.clone(),
                w,
                h,
                side: s,
            });
        }
        let avoid = &self.images[i].avoid;
        // A defect-free image takes the first draw, as before context images existed.
        let found = (0..RANDOM_TRIES)
            .map(|_| {
                (
                    rng.random_range(0..=w - side),
                    rng.random_range(0..=h - side),
                )
            })
            .find(|&(x, y)| misses(avoid, x, y, side));
        let (x, y) = match found {
            Some(corner) => corner,
            None => {
                let free = free_corners(w, h, side, avoid);
                if free.is_empty() {
                    return Ok(None);
                }
                free[rng.random_range(0..free.len())]
            }
        };
        let mut crop = image::imageops::crop_imm(img.as_ref(), x, y, side, side).to_image();
        if side as usize != s {
            crop = image::imageops::resize(
                &crop,
                s as u32,
                s as u32,
                image::imageops::FilterType::Triangle,
            );
        }
        if cfg.flip {
            if rng.random_bool(0.5) {
                image::imageops::flip_horizontal_in_place(&mut crop);
            }
            if rng.random_bool(0.5) {
                image::imageops::flip_vertical_in_place(&mut crop);
            }
            if rng.random_bool(0.5) {
                crop = image::imageops::rotate90(&crop);
            }
        }
        let hole = pick_hole(cfg, &crop, rng);
        Ok(Some(Example { image: crop, hole }))
    }
}

/// Checks from the file headers that every image is at least half the crop side, so that a bad
/// image stops a run at its start, not when it is first drawn hours later.
pub fn check_sizes(images: &[Source], side: usize) -> Result<(), InpaintDataError> {
    for src in images {
        let (w, h) = crate::imaging::io::read_dimensions(&src.path)?;
        if (w.min(h) as usize) < side / 2 {
            return Err(InpaintDataError::TooSmall {
                path: src.path.clone(),
                w,
                h,
                side,
            });
        }
    }
    Ok(())
}

/// A random square hole inside a crop of `image_size` pixels: a side in `hole_fraction`, then a
/// place.
pub fn random_hole(cfg: &InpaintConfig, rng: &mut impl Rng) -> Hole {
    let s = cfg.model.image_size;
    let (lo, hi) = cfg.hole_fraction;
    let frac = if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    };
    let side = ((s as f32 * frac).round() as usize).clamp(1, s / 2);
    place_hole(s, side, rng)
}

/// A square hole of `side` pixels at a random place inside a crop of `s` pixels.
fn place_hole(s: usize, side: usize, rng: &mut impl Rng) -> Hole {
    let y = rng.random_range(0..=s - side);
    let x = rng.random_range(0..=s - side);
    (y, x, side, side)
}

/// A hole for `crop`: a random hole ([`random_hole`]) and, with `cfg.hole_draws` above 1, the
/// place among that many random places for a hole of its size that covers the most structure
/// ([`structure`]), the first on ties. The size is drawn once, so the sizes stay distributed as
/// with uniform holes; only the places move towards edges.
pub fn pick_hole(cfg: &InpaintConfig, crop: &RgbImage, rng: &mut impl Rng) -> Hole {
    let first = random_hole(cfg, rng);
    if cfg.hole_draws <= 1 {
        return first;
    }
    let mut best = (structure(crop, first), first);
    for _ in 1..cfg.hole_draws {
        let h = place_hole(cfg.model.image_size, first.2, rng);
        let score = structure(crop, h);
        if score > best.0 {
            best = (score, h);
        }
    }
    best.1
}

/// How much structure `hole` covers in `image`: the sum of the absolute brightness steps between
/// horizontally and vertically neighbouring pixels inside it (0 on a flat patch; edges count).
pub fn structure(image: &RgbImage, (y, x, h, w): Hole) -> u64 {
    let luma = |xx: u32, yy: u32| {
        let p = image.get_pixel(xx, yy);
        u64::from(p[0]) + u64::from(p[1]) + u64::from(p[2])
    };
    let (x0, y0) = (x as u32, y as u32);
    let (x1, y1) = (x0 + w as u32, y0 + h as u32);
    let mut sum = 0;
    for yy in y0..y1 {
        for xx in x0..x1 {
            let v = luma(xx, yy);
            if xx + 1 < x1 {
                sum += v.abs_diff(luma(xx + 1, yy));
            }
            if yy + 1 < y1 {
                sum += v.abs_diff(luma(xx, yy + 1));
            }
        }
    }
    sum
}

/// Weights of the spatially discounted L1 for a hole of `h x w` pixels: `gamma` to the power of
/// the distance to the nearer border, along whichever axis is nearer (DeepFill v1).
pub fn discount(h: usize, w: usize, gamma: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(h * w);
    for i in 0..h {
        for j in 0..w {
            let di = (i + 1).min(h - i) as f64 - 1.0;
            let dj = (j + 1).min(w - j) as f64 - 1.0;
            out.push(gamma.powf(di).max(gamma.powf(dj)) as f32);
        }
    }
    out
}

/// A batch on the device.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The defect-free crops, `(B, C, S, S)` in [-1, 1].
    pub image: Tensor,
    /// 1 in the holes, `(B, 1, S, S)`.
    pub mask: Tensor,
    /// The discounted-L1 weights, 0 outside the holes, `(B, 1, S, S)`.
    pub discount: Tensor,
    /// The holes.
    pub holes: Vec<Hole>,
}

/// Stacks examples into a batch.
pub fn batch(examples: &[Example], gamma: f64, device: &Device) -> candle_core::Result<Batch> {
    let mut images = Vec::with_capacity(examples.len());
    let mut masks = Vec::new();
    let mut discounts = Vec::new();
    let mut holes = Vec::with_capacity(examples.len());
    let mut side = 0;
    for e in examples {
        images.push(image_tensor(&e.image, device)?);
        let s = e.image.width() as usize;
        side = s;
        let (y, x, h, w) = e.hole;
        let d = discount(h, w, gamma);
        let mut m = vec![0f32; s * s];
        let mut dv = vec![0f32; s * s];
        for i in 0..h {
            for j in 0..w {
                m[(y + i) * s + x + j] = 1.0;
                dv[(y + i) * s + x + j] = d[i * w + j];
            }
        }
        masks.extend(m);
        discounts.extend(dv);
        holes.push(e.hole);
    }
    let n = examples.len();
    Ok(Batch {
        image: Tensor::cat(&images, 0)?.contiguous()?,
        mask: Tensor::from_vec(masks, (n, 1, side, side), device)?,
        discount: Tensor::from_vec(discounts, (n, 1, side, side), device)?,
        holes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtgan::Preset;
    use rand::RngCore;

    #[test]
    fn structure_counts_the_steps_inside_the_hole() {
        // Dark left of column 10, bright from it on.
        let img = RgbImage::from_fn(32, 32, |x, _| {
            image::Rgb(if x < 10 { [0, 0, 0] } else { [200, 100, 50] })
        });
        // Flat on either side.
        assert_eq!(structure(&img, (0, 0, 20, 10)), 0);
        assert_eq!(structure(&img, (4, 10, 20, 22)), 0);
        // Across the edge: one step of 350 per row.
        assert_eq!(structure(&img, (3, 5, 7, 8)), 7 * 350);
    }

    #[test]
    fn picked_holes_are_the_most_structured_of_their_draws() {
        // Structure only in a 20 px square in one corner of a 32 px crop.
        let img = RgbImage::from_fn(32, 32, |x, y| {
            let v = if x < 20 && y < 20 && (x + y) % 3 == 0 {
                255
            } else {
                0
            };
            image::Rgb([v, v, v])
        });
        let mut cfg = InpaintConfig::preset(Preset::Tiny);
        let seeded = |k| <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(k);
        // One draw: the random hole itself, and the stream left where random_hole leaves it.
        for k in 0..20 {
            let (mut a, mut b) = (seeded(k), seeded(k));
            assert_eq!(pick_hole(&cfg, &img, &mut a), random_hole(&cfg, &mut b));
            assert_eq!(a.next_u64(), b.next_u64());
        }
        cfg.hole_draws = 6;
        let s = cfg.model.image_size;
        let (mut picked, mut uniform) = (0, 0);
        for k in 0..200 {
            // The draws pick_hole makes: one random hole, then five more places for its size.
            let mut rng = seeded(k);
            let mut draws = vec![random_hole(&cfg, &mut rng)];
            for _ in 1..6 {
                draws.push(place_hole(s, draws[0].2, &mut rng));
            }
            let best = draws.iter().map(|&h| structure(&img, h)).max().unwrap_or(0);
            let first_best = draws.iter().find(|&&h| structure(&img, h) == best).copied();
            let mut own = seeded(k);
            let hole = pick_hole(&cfg, &img, &mut own);
            assert_eq!(Some(hole), first_best);
            assert_eq!(own.next_u64(), rng.next_u64());
            picked += structure(&img, hole);
            uniform += structure(&img, draws[0]);
        }
        assert!(picked > uniform * 3 / 2, "{picked} vs {uniform}");
    }

    #[test]
    fn free_corners_are_the_grid_squares_that_miss_every_rect() {
        let avoid = [Rect::new(20, 8, 10, 30), Rect::new(0, 50, 5, 5)];
        let (w, h, side) = (61, 64, 16);
        let free = free_corners(w, h, side, &avoid);
        let mut want = Vec::new();
        for y in (0..=h - side).step_by(4).chain([h - side]) {
            for x in (0..=w - side).step_by(4).chain([w - side]) {
                let clear = (x..x + side)
                    .all(|px| (y..y + side).all(|py| !avoid.iter().any(|a| a.contains(px, py))));
                if clear && !want.contains(&(x, y)) {
                    want.push((x, y));
                }
            }
        }
        assert!(!want.is_empty());
        assert_eq!(free.len(), want.len());
        assert!(free.iter().all(|c| want.contains(c)));
        assert!(
            free_corners(w, h, 65, &[]).is_empty(),
            "larger than the image"
        );
        let everywhere = [Rect::new(0, 0, w, h)];
        assert!(free_corners(w, h, side, &everywhere).is_empty());
    }

    /// Crops of an image whose pixels spell their own coordinates: each crop's corner pixel
    /// says where it was cut, and no crop may touch the rectangles to avoid.
    #[test]
    fn context_crops_miss_the_defects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("coords.png");
        let img = RgbImage::from_fn(100, 90, |x, y| image::Rgb([x as u8, y as u8, 0]));
        img.save(&path).expect("save");
        // A defect in the middle leaves bands along the four sides.
        let avoid = vec![Rect::new(40, 35, 20, 20)];
        let mut cfg = InpaintConfig::preset(crate::dtgan::Preset::Tiny);
        cfg.flip = false;
        let side = cfg.model.image_size as u32;
        let mut sampler = ImageSampler::new(vec![Source {
            id: "d".into(),
            path: path.clone(),
            avoid: avoid.clone(),
        }]);
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
        let mut corners = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let e = sampler.sample(&cfg, &mut rng).expect("sample");
            let p = e.image.get_pixel(0, 0);
            let r = Rect::new(u32::from(p[0]), u32::from(p[1]), side, side);
            assert!(!avoid[0].overlaps(&r), "crop {r:?} touches the defect");
            corners.insert((r.x, r.y));
        }
        assert!(corners.len() > 20, "crops vary: {}", corners.len());
        // With no room at all the image is dropped before training.
        let mut sources = vec![Source {
            id: "d".into(),
            path,
            avoid: vec![Rect::new(10, 10, 80, 70)],
        }];
        assert_eq!(keep_with_room(&mut sources, side).expect("headers"), 1);
        assert!(sources.is_empty());
    }

    #[test]
    fn discount_is_one_on_the_border_and_falls_inside() {
        let d = discount(5, 7, 0.9);
        assert_eq!(d[0], 1.0);
        assert_eq!(d[3], 1.0, "top row");
        let centre = d[2 * 7 + 3];
        assert!((centre - 0.81).abs() < 1e-6, "{centre}");
        assert!(d.iter().all(|&v| v > 0.0 && v <= 1.0));
    }
}
