//! The COCO layout: `images/<file>` and `annotations.json` (instance segmentation).
//!
//! - `images`: `id` (from 1), `file_name` (relative to `images/`), `width`, `height`, plus two
//!   extra keys COCO readers ignore: `studio_id` (the project id) and `synthetic`.
//! - `categories`: `id` from 1 over the defect class names, sorted. `good` is not a category:
//!   good images (and templates, when included) are images without annotations.
//! - `annotations`: one per defect. A region's segmentation is the image's pixel mask clipped to
//!   the region's box; a defect image with a mask but no regions gets one annotation per
//!   8-connected component of its mask, with the image's class. A region whose clipped mask is
//!   empty (box-only data, no mask file) gets its box rectangle as segmentation instead. Regions
//!   with an empty box are dropped. A defect image that ends up with no annotation is skipped.
//! - `segmentation` is uncompressed RLE `{"counts": [...], "size": [h, w]}`, column-major,
//!   starting with a run of zeros (see [`super::rle`]); `area` is its pixel count and `bbox`
//!   (`[x, y, w, h]`) the tight box of its pixels.
//! - `iscrowd` is 0: pycocotools reads uncompressed RLE whatever the flag, while `iscrowd` 1 would
//!   make its evaluation ignore these objects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use image::GrayImage;
use serde::Serialize;

use super::rle::{EncodedPart, encode_where};
use super::{
    ANNOTATIONS_FILE, COCO_IMAGES_DIR, ExportError, ExportSummary, FileNames, GOOD_CLASS,
    SkippedImage, link_or_copy,
};
use crate::fsutil::write_atomic;
use crate::imaging::io::{MASK_THRESHOLD, load_mask, load_mask_for, read_dimensions};
use crate::imaging::rect::Rect;
use crate::project::{ImageEntry, Project, Role};

#[derive(Serialize)]
struct CocoFile {
    info: Info,
    images: Vec<CocoImage>,
    categories: Vec<Category>,
    annotations: Vec<Annotation>,
}

#[derive(Serialize)]
struct Info {
    description: String,
    version: &'static str,
}

#[derive(Serialize)]
struct CocoImage {
    id: u64,
    file_name: String,
    width: u32,
    height: u32,
    studio_id: String,
    synthetic: bool,
}

#[derive(Serialize)]
struct Category {
    id: u32,
    name: String,
    supercategory: &'static str,
}

#[derive(Serialize)]
struct Annotation {
    id: u64,
    image_id: u64,
    category_id: u32,
    segmentation: Rle,
    area: u64,
    bbox: [u32; 4],
    iscrowd: u8,
}

#[derive(Serialize)]
struct Rle {
    counts: Vec<u32>,
    size: [u32; 2],
}

/// One defect of an image, before category ids are known.
struct Part {
    class: String,
    encoded: EncodedPart,
    /// The box searched; reported only if the encoding found no pixel, which every part's
    /// construction rules out.
    fallback_box: Rect,
}

/// What one image contributes.
enum Outcome {
    /// A defect-free image: no annotations.
    Good,
    /// A defect image and its defects (at least one).
    Defects(Vec<Part>),
    /// Left out, with the reason.
    Skip(String),
}

pub(super) fn export_coco(
    project: &Project,
    selected: &[&ImageEntry],
    out: &Path,
    summary: &mut ExportSummary,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(), ExportError> {
    let mut names = FileNames::default();
    let mut images = Vec::new();
    let mut pending: Vec<(u64, Part)> = Vec::new();
    progress(0, selected.len());
    for (i, e) in selected.iter().enumerate() {
        let (w, h) = dimensions(project, e)?;
        let parts = match outcome(project, e, w, h)? {
            Outcome::Skip(reason) => {
                summary.skipped.push(SkippedImage {
                    id: e.id.clone(),
                    reason,
                });
                progress(i + 1, selected.len());
                continue;
            }
            Outcome::Good => Vec::new(),
            Outcome::Defects(parts) => parts,
        };
        let file_name = names.name_for(e);
        link_or_copy(
            &project.abs(&e.path),
            &out.join(COCO_IMAGES_DIR).join(&file_name),
        )?;
        let image_id = images.len() as u64 + 1;
        let classes: BTreeSet<&str> = if parts.is_empty() {
            BTreeSet::from([GOOD_CLASS])
        } else {
            parts.iter().map(|p| p.class.as_str()).collect()
        };
        for c in classes {
            *summary.images_per_class.entry(c.to_owned()).or_default() += 1;
        }
        summary.images += 1;
        summary.synthetic += usize::from(e.synthetic.is_some());
        images.push(CocoImage {
            id: image_id,
            file_name,
            width: w,
            height: h,
            studio_id: e.id.clone(),
            synthetic: e.synthetic.is_some(),
        });
        pending.extend(parts.into_iter().map(|p| (image_id, p)));
        progress(i + 1, selected.len());
    }
    let class_names: BTreeSet<&str> = pending.iter().map(|(_, p)| p.class.as_str()).collect();
    let category_id: BTreeMap<&str, u32> = class_names
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, i as u32 + 1))
        .collect();
    let categories = category_id
        .iter()
        .map(|(name, &id)| Category {
            id,
            name: (*name).to_owned(),
            supercategory: "defect",
        })
        .collect();
    let mut annotations = Vec::with_capacity(pending.len());
    for (i, (image_id, p)) in pending.iter().enumerate() {
        let size = &images[(*image_id - 1) as usize];
        let b = p.encoded.bbox.unwrap_or(p.fallback_box);
        *summary
            .annotations_per_class
            .entry(p.class.clone())
            .or_default() += 1;
        annotations.push(Annotation {
            id: i as u64 + 1,
            image_id: *image_id,
            category_id: category_id.get(p.class.as_str()).copied().unwrap_or(0),
            segmentation: Rle {
                counts: p.encoded.counts.clone(),
                size: [size.height, size.width],
            },
            area: p.encoded.area,
            bbox: [b.x, b.y, b.w, b.h],
            iscrowd: 0,
        });
    }
    summary.annotations = annotations.len();
    let file = CocoFile {
        info: Info {
            description: format!("{} (exported by DTGAN Studio)", project.manifest.name),
            version: "1.0",
        },
        images,
        categories,
        annotations,
    };
    let path = out.join(ANNOTATIONS_FILE);
    // Compact: RLE counts would make a pretty-printed file many times larger.
    let mut bytes = serde_json::to_vec(&file).map_err(|e| ExportError::Json {
        path: path.clone(),
        message: e.to_string(),
    })?;
    bytes.push(b'\n');
    write_atomic(&path, &bytes).map_err(|e| ExportError::io(&path, e))
}

/// The image's size from the manifest, or from its file when the manifest does not know it.
fn dimensions(project: &Project, e: &ImageEntry) -> Result<(u32, u32), ExportError> {
    if e.width > 0 && e.height > 0 {
        Ok((e.width, e.height))
    } else {
        Ok(read_dimensions(&project.abs(&e.path))?)
    }
}

fn outcome(project: &Project, e: &ImageEntry, w: u32, h: u32) -> Result<Outcome, ExportError> {
    if e.role != Role::Defect {
        return Ok(Outcome::Good);
    }
    if e.regions.is_empty() && e.class.is_none() {
        return Ok(Outcome::Skip(
            "defect image with no class and no regions".to_owned(),
        ));
    }
    let mask = match &e.mask {
        None => None,
        Some(rel) => {
            let path = project.abs(rel);
            Some(if e.width > 0 && e.height > 0 {
                load_mask_for(&path, &project.abs(&e.path), (w, h))?
            } else {
                load_mask(&path)?
            })
        }
    };
    let parts = match (&mask, e.class.as_deref()) {
        _ if !e.regions.is_empty() => region_parts(e, mask.as_ref(), w, h),
        (Some(mask), Some(class)) => component_parts(mask, class),
        _ => Vec::new(),
    };
    Ok(if parts.is_empty() {
        Outcome::Skip("defect image with no regions and no mask pixels".to_owned())
    } else {
        Outcome::Defects(parts)
    })
}

/// One part per region: the mask clipped to its box, or the box itself where that is empty.
fn region_parts(e: &ImageEntry, mask: Option<&GrayImage>, w: u32, h: u32) -> Vec<Part> {
    e.regions
        .iter()
        .filter_map(|r| {
            let clip = r.bbox.clipped(w, h);
            if clip.is_empty() {
                return None;
            }
            let from_mask = mask
                .map(|m| encode_where(w, h, clip, |x, y| m.get_pixel(x, y).0[0] >= MASK_THRESHOLD))
                .filter(|p| p.area > 0);
            let encoded = from_mask.unwrap_or_else(|| encode_where(w, h, clip, |_, _| true));
            Some(Part {
                class: r.class.clone(),
                encoded,
                fallback_box: clip,
            })
        })
        .collect()
}

/// One part per 8-connected component of the mask, each holding exactly its own pixels.
fn component_parts(mask: &GrayImage, class: &str) -> Vec<Part> {
    let (w, h) = mask.dimensions();
    let (labels, boxes) = label_components(mask);
    boxes
        .iter()
        .enumerate()
        .map(|(k, &bbox)| {
            let label = k as u32 + 1;
            let encoded = encode_where(w, h, bbox, |x, y| {
                labels[y as usize * w as usize + x as usize] == label
            });
            Part {
                class: class.to_owned(),
                encoded,
                fallback_box: bbox,
            }
        })
        .collect()
}

/// Labels the 8-connected components of the set pixels: 0 is background, component `k` (in
/// raster order of its first pixel, as [`crate::imaging::boxes::connected_components`] orders
/// them) is `k + 1`. Returns the labels (row-major) and each component's tight box.
fn label_components(mask: &GrayImage) -> (Vec<u32>, Vec<Rect>) {
    let (w, h) = mask.dimensions();
    let (wu, hu) = (w as usize, h as usize);
    let raw = mask.as_raw();
    let mut labels = vec![0u32; raw.len()];
    let mut boxes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..raw.len() {
        if labels[start] != 0 || raw[start] < MASK_THRESHOLD {
            continue;
        }
        let label = boxes.len() as u32 + 1;
        labels[start] = label;
        stack.push(start);
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % wu, i / wu);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
            for ny in y.saturating_sub(1)..=(y + 1).min(hu - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(wu - 1) {
                    let j = ny * wu + nx;
                    if labels[j] == 0 && raw[j] >= MASK_THRESHOLD {
                        labels[j] = label;
                        stack.push(j);
                    }
                }
            }
        }
        boxes.push(Rect::new(
            x0 as u32,
            y0 as u32,
            (x1 - x0 + 1) as u32,
            (y1 - y0 + 1) as u32,
        ));
    }
    (labels, boxes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::boxes::connected_components;
    use image::Luma;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn labels_agree_with_connected_components() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..50 {
            let (w, h) = (rng.random_range(1..30), rng.random_range(1..30));
            let m = GrayImage::from_fn(w, h, |_, _| {
                Luma([if rng.random_bool(0.3) { 255 } else { 0 }])
            });
            let (labels, boxes) = label_components(&m);
            let cs = connected_components(&m);
            assert_eq!(boxes.len(), cs.len());
            for (k, c) in cs.iter().enumerate() {
                assert_eq!(boxes[k], c.bbox);
                let n = labels.iter().filter(|&&l| l == k as u32 + 1).count() as u64;
                assert_eq!(n, c.area);
            }
            let set = m.as_raw().iter().filter(|&&v| v >= MASK_THRESHOLD).count();
            assert_eq!(labels.iter().filter(|&&l| l > 0).count(), set);
        }
    }
}
