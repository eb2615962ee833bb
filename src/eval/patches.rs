//! Classification patches cut from a project: one per defect region, centred on its box, and
//! defect-free patches of the same sizes from templates and good images.
//!
//! A patch covers `max(64, 1.25 x the box's long side)` source pixels (kept inside the image) and
//! is resized to 64x64, so real and synthetic defects, and defect-free patches, are all cut the
//! same way and the classifier cannot tell them apart by scale.

use std::collections::{BTreeMap, BTreeSet};

use image::{GrayImage, imageops};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::classifier::PATCH;
use crate::imaging::io::load_gray8;
use crate::imaging::rect::Rect;
use crate::project::{Project, Role};

/// The class of defect-free patches.
pub const GOOD: &str = "good";

/// One patch and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    /// `PATCH` x `PATCH` grey pixels.
    pub pixels: GrayImage,
    /// Class name (`good` for defect-free patches).
    pub class: String,
    /// Product / board group of its image.
    pub group: String,
    /// The image's id.
    pub image: String,
    /// The defect's box in that image (for good patches: the patch's centre box).
    pub bbox: Rect,
}

/// The square of source pixels the patch of `bbox` covers in a `w` x `h` image.
pub fn patch_window(bbox: Rect, w: u32, h: u32) -> Rect {
    let long = bbox.w.max(bbox.h) as f32;
    let side = ((long * 1.25).ceil() as u32)
        .max(PATCH)
        .min(w.min(h))
        .max(1);
    let cx = bbox.x + bbox.w / 2;
    let cy = bbox.y + bbox.h / 2;
    let x = cx.saturating_sub(side / 2).min(w - side);
    let y = cy.saturating_sub(side / 2).min(h - side);
    Rect::new(x, y, side, side)
}

/// The 64x64 patch of `bbox` in `image`.
pub fn patch_around(image: &GrayImage, bbox: Rect) -> GrayImage {
    let (w, h) = image.dimensions();
    let win = patch_window(bbox, w, h);
    let crop = imageops::crop_imm(image, win.x, win.y, win.w, win.h).to_image();
    if win.w == PATCH && win.h == PATCH {
        crop
    } else {
        imageops::resize(&crop, PATCH, PATCH, imageops::FilterType::Triangle)
    }
}

/// Why patches could not be cut.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// An image could not be read.
    #[error(transparent)]
    Image(#[from] crate::imaging::io::ImagingError),
    /// Nothing to cut.
    #[error("{0}")]
    Empty(String),
}

/// Which images of a project to use.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these groups (all when `None`).
    pub groups: Option<BTreeSet<String>>,
}

impl Selection {
    fn takes(&self, group: &str) -> bool {
        self.groups.as_ref().is_none_or(|g| g.contains(group))
    }
}

/// Every patch of the selected images of `project`: one per defect region (real defect images
/// only, never synthetic ones), one defect-free patch per region at the same place in the
/// region's template, and from good images about as many defect-free patches as the mean defect
/// class has, at random places with sizes drawn from the defect patches' (seeded).
pub fn project_patches(
    project: &Project,
    sel: &Selection,
    seed: u64,
) -> Result<Vec<Patch>, PatchError> {
    let m = &project.manifest;
    let by_id: BTreeMap<&str, _> = m.images.iter().map(|e| (e.id.as_str(), e)).collect();
    // (image id, group, path, [(class, bbox)]).
    let mut jobs = Vec::new();
    for e in &m.images {
        if !sel.takes(&e.group) || e.synthetic.is_some() {
            continue;
        }
        match e.role {
            Role::Defect => {
                let regions: Vec<(String, Rect)> = e
                    .regions
                    .iter()
                    .map(|r| (r.class.clone(), r.bbox))
                    .collect();
                if !regions.is_empty() {
                    jobs.push((e.id.clone(), e.group.clone(), project.abs(&e.path), regions));
                }
            }
            Role::Template => {
                // Real templates only: inpainted twins and blended boxes are made, not seen.
                if !e.is_real_template() {
                    continue;
                }
                let Some(defect) = e.twin_of.as_deref().and_then(|d| by_id.get(d)) else {
                    continue;
                };
                let regions: Vec<(String, Rect)> = defect
                    .regions
                    .iter()
                    .map(|r| (GOOD.to_string(), r.bbox))
                    .collect();
                if !regions.is_empty() {
                    jobs.push((e.id.clone(), e.group.clone(), project.abs(&e.path), regions));
                }
            }
            Role::Good => {}
        }
    }
    let cut = |(id, group, path, regions): &(
        String,
        String,
        std::path::PathBuf,
        Vec<(String, Rect)>,
    )|
     -> Result<Vec<Patch>, PatchError> {
        let img = load_gray8(path)?;
        Ok(regions
            .iter()
            .map(|(class, bbox)| Patch {
                pixels: patch_around(&img, *bbox),
                class: class.clone(),
                group: group.clone(),
                image: id.clone(),
                bbox: *bbox,
            })
            .collect())
    };
    let mut patches: Vec<Patch> = jobs
        .par_iter()
        .map(cut)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();

    let goods: Vec<_> = m
        .images
        .iter()
        .filter(|e| e.role == Role::Good && e.synthetic.is_none() && sel.takes(&e.group))
        .collect();
    if !goods.is_empty() {
        let mut per_class: BTreeMap<&str, usize> = BTreeMap::new();
        for p in patches.iter().filter(|p| p.class != GOOD) {
            *per_class.entry(p.class.as_str()).or_default() += 1;
        }
        let mean = if per_class.is_empty() {
            goods.len()
        } else {
            per_class.values().sum::<usize>() / per_class.len()
        };
        let sides: Vec<(u32, u32)> = patches.iter().map(|p| (p.bbox.w, p.bbox.h)).collect();
        let per_image = mean.div_ceil(goods.len()).max(1);
        let good_jobs: Vec<_> = goods
            .iter()
            .enumerate()
            .map(|(i, e)| (i, e.id.clone(), e.group.clone(), project.abs(&e.path)))
            .collect();
        let good_patches = good_jobs
            .par_iter()
            .map(|(i, id, group, path)| -> Result<Vec<Patch>, PatchError> {
                let img = load_gray8(path)?;
                let (w, h) = img.dimensions();
                let mut rng =
                    ChaCha8Rng::seed_from_u64(crate::dtgan::train::derive_seed(seed, *i as u64));
                Ok((0..per_image)
                    .map(|_| {
                        let (bw, bh) = if sides.is_empty() {
                            (PATCH / 2, PATCH / 2)
                        } else {
                            sides[rng.random_range(0..sides.len())]
                        };
                        let (bw, bh) = (bw.min(w), bh.min(h));
                        let bbox = Rect::new(
                            rng.random_range(0..=w - bw),
                            rng.random_range(0..=h - bh),
                            bw,
                            bh,
                        );
                        Patch {
                            pixels: patch_around(&img, bbox),
                            class: GOOD.to_string(),
                            group: group.clone(),
                            image: id.clone(),
                            bbox,
                        }
                    })
                    .collect())
            })
            .collect::<Result<Vec<_>, _>>()?;
        patches.extend(good_patches.into_iter().flatten());
    }
    if patches.is_empty() {
        return Err(PatchError::Empty(format!(
            "{}: no defect regions, templates or good images{}",
            project.root.display(),
            sel.groups
                .as_ref()
                .map(|g| format!(
                    " in groups {}",
                    g.iter().cloned().collect::<Vec<_>>().join(", ")
                ))
                .unwrap_or_default()
        )));
    }
    Ok(patches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    #[test]
    fn windows_are_square_inside_and_cover_the_box() {
        let b = Rect::new(100, 50, 30, 20);
        assert_eq!(patch_window(b, 640, 640), Rect::new(83, 28, 64, 64));
        // A long box gets 1.25 x its side.
        let long = Rect::new(10, 10, 160, 20);
        let w = patch_window(long, 640, 640);
        assert_eq!((w.w, w.h), (200, 200));
        assert_eq!((w.x, w.y), (0, 0));
        // At the far corner the window stays inside.
        let w = patch_window(Rect::new(630, 630, 10, 10), 640, 640);
        assert_eq!((w.right(), w.bottom()), (640, 640));
        // A narrow image limits the side.
        let w = patch_window(Rect::new(0, 0, 200, 10), 105, 300);
        assert_eq!(w.w, 105);
    }

    #[test]
    fn a_patch_is_64_square_and_centred() {
        let img = GrayImage::from_fn(300, 200, |x, y| {
            Luma([if (140..160).contains(&x) && (90..110).contains(&y) {
                255
            } else {
                0
            }])
        });
        let p = patch_around(&img, Rect::new(140, 90, 20, 20));
        assert_eq!(p.dimensions(), (PATCH, PATCH));
        assert_eq!(p.get_pixel(32, 32)[0], 255);
        assert_eq!(p.get_pixel(5, 5)[0], 0);
    }
}
