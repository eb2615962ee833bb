//! Reading and writing an image's masks inside a project, shared by the CLI and the worker.

use image::{GrayImage, RgbImage};
use rayon::prelude::*;

use super::manifest::Region;
use super::{Project, ProjectError};
use crate::imaging::boxes::{box_mask_from_mask, connected_components};
use crate::imaging::io::{ImagingError, load_mask_for, load_rgb8, mask_is_empty, save_mask};

/// A mask operation that failed; names the image or file.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    /// The id is not in the project.
    #[error("no image `{0}` in the project")]
    UnknownImage(String),
    /// A mask's size differs from its image's.
    #[error("mask for `{id}` is {got_w}x{got_h} but the image is {want_w}x{want_h}")]
    WrongSize {
        /// Image id.
        id: String,
        /// Mask width.
        got_w: u32,
        /// Mask height.
        got_h: u32,
        /// Image width.
        want_w: u32,
        /// Image height.
        want_h: u32,
    },
    /// Reading or writing an image or mask failed.
    #[error(transparent)]
    Imaging(#[from] ImagingError),
    /// Saving the manifest failed.
    #[error(transparent)]
    Project(#[from] ProjectError),
}

/// An image and its two masks at full resolution (empty masks where none is stored).
pub struct LoadedImage {
    /// The image, 8-bit RGB.
    pub image: RgbImage,
    /// The pixel mask, 0/255.
    pub mask: GrayImage,
    /// The box mask, 0/255.
    pub box_mask: GrayImage,
}

/// Loads image `id` and its masks.
pub fn load_image_with_masks(project: &Project, id: &str) -> Result<LoadedImage, MaskError> {
    let entry = project
        .manifest
        .image(id)
        .ok_or_else(|| MaskError::UnknownImage(id.into()))?;
    let image_path = project.abs(&entry.path);
    let image = load_rgb8(&image_path)?;
    let size = image.dimensions();
    let load = |rel: &Option<super::RelPath>| -> Result<GrayImage, MaskError> {
        match rel {
            Some(rel) => Ok(load_mask_for(&project.abs(rel), &image_path, size)?),
            None => Ok(GrayImage::new(size.0, size.1)),
        }
    };
    let mask = load(&entry.mask)?;
    let box_mask = load(&entry.box_mask)?;
    Ok(LoadedImage {
        image,
        mask,
        box_mask,
    })
}

/// Writes image `id`'s masks (atomically) and records them in the manifest, which is saved.
///
/// An empty layer unlinks that mask from the image (the file stays). For a single-class image the
/// regions are recomputed from the pixel mask's connected components; a multi-class image
/// (DeepPCB) keeps its annotated regions, which only a person can reassign.
pub fn store_masks(
    project: &mut Project,
    id: &str,
    mask: &GrayImage,
    box_mask: &GrayImage,
) -> Result<(), MaskError> {
    let index = project
        .manifest
        .index_of(id)
        .ok_or_else(|| MaskError::UnknownImage(id.into()))?;
    let entry = &project.manifest.images[index];
    for m in [mask, box_mask] {
        if entry.width != 0 && m.dimensions() != (entry.width, entry.height) {
            return Err(MaskError::WrongSize {
                id: id.into(),
                got_w: m.width(),
                got_h: m.height(),
                want_w: entry.width,
                want_h: entry.height,
            });
        }
    }
    let mask_rel = entry
        .mask
        .clone()
        .unwrap_or_else(|| Project::default_mask_path(id));
    let box_rel = entry
        .box_mask
        .clone()
        .unwrap_or_else(|| Project::default_box_mask_path(id));
    let mask_empty = mask_is_empty(mask);
    let box_empty = mask_is_empty(box_mask);
    if !mask_empty {
        save_mask(&project.ensure_parent(&mask_rel)?, mask)?;
    }
    if !box_empty {
        save_mask(&project.ensure_parent(&box_rel)?, box_mask)?;
    }
    let entry = &mut project.manifest.images[index];
    entry.mask = (!mask_empty).then_some(mask_rel);
    entry.box_mask = (!box_empty).then_some(box_rel);
    if let Some(class) = entry.class.clone() {
        entry.regions = regions_of(mask, &class);
    }
    project.save()?;
    Ok(())
}

/// One region per connected component of `mask`, all of class `class`.
pub fn regions_of(mask: &GrayImage, class: &str) -> Vec<Region> {
    connected_components(mask)
        .into_iter()
        .map(|c| Region {
            class: class.to_owned(),
            bbox: c.bbox,
        })
        .collect()
}

/// Derives and writes the box mask of every image that has a pixel mask; returns how many.
///
/// The margin becomes the project's default. Progress is reported as (done, total).
pub fn derive_box_masks(
    project: &mut Project,
    margin: u32,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<usize, MaskError> {
    let todo: Vec<usize> = (0..project.manifest.images.len())
        .filter(|&i| project.manifest.images[i].mask.is_some())
        .collect();
    let total = todo.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let snapshot = &*project;
    let results: Vec<Result<(usize, Option<super::RelPath>), MaskError>> = todo
        .par_iter()
        .map(|&i| {
            let entry = &snapshot.manifest.images[i];
            let image_path = snapshot.abs(&entry.path);
            let mask_rel = entry
                .mask
                .as_ref()
                .ok_or_else(|| MaskError::UnknownImage(entry.id.clone()))?;
            let mask_path = snapshot.abs(mask_rel);
            let size = if entry.width > 0 {
                (entry.width, entry.height)
            } else {
                crate::imaging::io::read_dimensions(&image_path)?
            };
            let mask = load_mask_for(&mask_path, &image_path, size)?;
            let boxes = box_mask_from_mask(&mask, margin);
            let rel = if mask_is_empty(&boxes) {
                None
            } else {
                let rel = entry
                    .box_mask
                    .clone()
                    .unwrap_or_else(|| Project::default_box_mask_path(&entry.id));
                save_mask(&snapshot.ensure_parent(&rel)?, &boxes)?;
                Some(rel)
            };
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(n, total);
            Ok((i, rel))
        })
        .collect();
    // Record what was written even if some images failed, then report the first failure.
    let mut first_error = None;
    let mut written = 0;
    for r in results {
        match r {
            Ok((i, rel)) => {
                written += usize::from(rel.is_some());
                project.manifest.images[i].box_mask = rel;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    project.manifest.box_margin = margin;
    project.save()?;
    match first_error {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::rect::Rect;
    use crate::project::{ImageEntry, RelPath, Role};
    use image::Luma;

    fn project_with_one_image() -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Project::open_or_create(dir.path()).expect("create");
        let rel = RelPath::new("images/a.png").expect("p");
        let img = RgbImage::from_pixel(32, 24, image::Rgb([50, 60, 70]));
        let abs = p.ensure_parent(&rel).expect("parent");
        img.save(&abs).expect("save");
        let mut e = ImageEntry::new("g/a", rel, Role::Defect, "g");
        e.class = Some("spot".into());
        e.width = 32;
        e.height = 24;
        p.manifest.images.push(e);
        p.save().expect("save");
        (dir, p)
    }

    #[test]
    fn stored_masks_reload_and_update_regions() {
        let (_dir, mut p) = project_with_one_image();
        let mut mask = GrayImage::new(32, 24);
        for (x, y) in [(3, 3), (4, 4), (20, 10)] {
            mask.put_pixel(x, y, Luma([200]));
        }
        let boxes = box_mask_from_mask(&mask, 2);
        store_masks(&mut p, "g/a", &mask, &boxes).expect("store");
        let reopened = Project::open(&p.root).expect("open");
        let e = reopened.manifest.image("g/a").expect("entry");
        assert_eq!(e.regions.len(), 2);
        assert_eq!(e.regions[0].bbox, Rect::new(3, 3, 2, 2));
        let loaded = load_image_with_masks(&reopened, "g/a").expect("load");
        assert_eq!(loaded.mask.get_pixel(4, 4).0[0], 255, "binarised to 255");
        assert_eq!(loaded.box_mask, boxes);
    }

    #[test]
    fn wrong_size_and_unknown_ids_are_refused() {
        let (_dir, mut p) = project_with_one_image();
        let small = GrayImage::new(3, 3);
        assert!(matches!(
            store_masks(&mut p, "g/a", &small, &small),
            Err(MaskError::WrongSize { .. })
        ));
        assert!(matches!(
            load_image_with_masks(&p, "nope"),
            Err(MaskError::UnknownImage(_))
        ));
    }

    #[test]
    fn derive_box_masks_writes_one_per_masked_image() {
        let (_dir, mut p) = project_with_one_image();
        let mut mask = GrayImage::new(32, 24);
        mask.put_pixel(10, 10, Luma([255]));
        store_masks(&mut p, "g/a", &mask, &GrayImage::new(32, 24)).expect("store");
        assert!(p.manifest.images[0].box_mask.is_none());
        let n = derive_box_masks(&mut p, 3, &|_, _| {}).expect("derive");
        assert_eq!(n, 1);
        let loaded = load_image_with_masks(&p, "g/a").expect("load");
        assert_eq!(crate::imaging::io::mask_area(&loaded.box_mask), 49);
        assert_eq!(Project::open(&p.root).expect("open").manifest.box_margin, 3);
    }
}
