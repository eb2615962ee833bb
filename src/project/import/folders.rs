//! The generic folder layout: `good/`, `defect/<class>/`, `masks/<class>/<stem>.png`.
//!
//! Every image is fully decoded once (so a truncated file is caught here rather than at
//! training time). A defect image with a mask gets the mask binarised at 128 and saved as 0/255,
//! one region per 8-connected component (class = the folder's class), and a box mask with the
//! project's `box_margin`. An empty mask is kept, with no regions and no box mask. A defect image
//! without mask is imported with its class and no mask. A mask that cannot be read or has another
//! size than its image makes the image skipped (imported without it, its annotation would be
//! silently lost). Mask files with no image are left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{
    ImportError, ImportRequest, Job, Scan, Skipped, has_image_extension, link_image, list_dir,
    safe_name, write_mask,
};
use crate::imaging::boxes::{box_mask_from_mask, connected_components};
use crate::imaging::io::{load_dynamic, load_mask_for, mask_is_empty};
use crate::project::{ImageEntry, Project, Region, Role};

/// One image of the folder layout.
struct FolderJob {
    id: String,
    src: PathBuf,
    file_name: String,
    group: String,
    /// The entry's group: `group`, or the image's row of the source's `index.csv`.
    entry_group: String,
    /// None for good images.
    class: Option<String>,
    mask: Option<PathBuf>,
    margin: u32,
}

/// Scans a folder-layout source.
pub(super) fn scan(
    req: &ImportRequest,
    masks: Option<&Path>,
    margin: u32,
) -> Result<Scan, ImportError> {
    let good_dir = req.from.join("good");
    let defect_dir = req.from.join("defect");
    if !good_dir.is_dir() && !defect_dir.is_dir() {
        return Err(ImportError::NotLayout {
            path: req.from.clone(),
            layout: "folders",
            expected: "a `good/` folder and/or a `defect/<class>/` folder",
        });
    }
    let group = safe_name(req.group.as_deref().unwrap_or(&folder_name(&req.from)));
    let masks_root = masks.map_or_else(|| req.from.join("masks"), Path::to_path_buf);
    let mut scan = Scan::default();
    let mut ids = BTreeSet::new();
    // Without an explicit group, an `index.csv` with `image` and `tile_group` (or `group`)
    // columns names each image's group (the magnetic-tile data groups the frames of one tile).
    let index = if req.group.is_none() {
        read_group_index(&req.from.join("index.csv"))
    } else {
        BTreeMap::new()
    };
    let entry_group = |rel: String| index.get(&rel).cloned().unwrap_or_else(|| group.clone());
    if good_dir.is_dir() {
        for (path, name) in image_files(&good_dir, &mut scan)? {
            let id = unique_id(&mut ids, &format!("{group}/{}", stem_of(&name)));
            scan.jobs.push(Box::new(FolderJob {
                id,
                src: path,
                entry_group: entry_group(format!("good/{name}")),
                file_name: safe_name(&name),
                group: group.clone(),
                class: None,
                mask: None,
                margin,
            }));
        }
    }
    if defect_dir.is_dir() {
        for (name, path) in list_dir(&defect_dir)? {
            let Some(class) = name.to_str().map(str::to_owned) else {
                scan.skipped.push(Skipped::new(
                    &path,
                    format!("{}: class folder name is not UTF-8", path.display()),
                ));
                continue;
            };
            if class.starts_with('.') {
                scan.ignored += 1;
                continue;
            }
            if !path.is_dir() {
                scan.skipped.push(Skipped::new(
                    &path,
                    format!(
                        "{}: defect images must be in a class folder `defect/<class>/`",
                        path.display()
                    ),
                ));
                continue;
            }
            let mask_files = mask_index(&masks_root.join(&class))?;
            for (img, file) in image_files(&path, &mut scan)? {
                let stem = stem_of(&file);
                let id = unique_id(&mut ids, &format!("{group}/{}/{}", safe_name(&class), stem));
                scan.jobs.push(Box::new(FolderJob {
                    id,
                    mask: mask_files.get(stem).cloned(),
                    src: img,
                    entry_group: entry_group(format!("defect/{class}/{file}")),
                    file_name: safe_name(&file),
                    group: group.clone(),
                    class: Some(class.clone()),
                    margin,
                }));
            }
        }
    }
    Ok(scan)
}

/// `image path -> group` from an `index.csv` whose header has `image` and `tile_group` (or
/// `group`) columns; empty when the file is absent or has no such columns.
fn read_group_index(path: &Path) -> BTreeMap<String, String> {
    super::read_csv_map(path, "image", &["tile_group", "group"])
        .into_iter()
        .map(|(image, group)| (image, safe_name(&group)))
        .collect()
}

fn folder_name(p: &Path) -> String {
    std::fs::canonicalize(p)
        .ok()
        .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "import".to_owned())
}

fn stem_of(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

/// `base`, or `base-2`, `base-3`... when taken (two files of one folder with one stem). Files are
/// visited in sorted order, so the choice is stable across imports.
fn unique_id(ids: &mut BTreeSet<String>, base: &str) -> String {
    let base = base.split('/').map(safe_name).collect::<Vec<_>>().join("/");
    let mut id = base.clone();
    let mut n = 2;
    while !ids.insert(id.clone()) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// Image files of a folder as (path, UTF-8 name). Hidden files, non-image files and plain
/// sub-folders are counted as ignored; names that are not UTF-8 and folders with an image
/// extension are skipped with a reason.
fn image_files(dir: &Path, scan: &mut Scan) -> Result<Vec<(PathBuf, String)>, ImportError> {
    let mut out = Vec::new();
    for (name, path) in list_dir(dir)? {
        if name.as_encoded_bytes().starts_with(b".") {
            scan.ignored += 1;
            continue;
        }
        if !has_image_extension(&name) {
            scan.ignored += 1;
            continue;
        }
        if path.is_dir() {
            scan.skipped.push(Skipped::new(
                &path,
                format!("{}: is a folder, not an image file", path.display()),
            ));
            continue;
        }
        match name.into_string() {
            Ok(n) => out.push((path, n)),
            Err(_) => scan.skipped.push(Skipped::new(
                &path,
                format!(
                    "{}: file name is not valid UTF-8; rename it to import it",
                    path.display()
                ),
            )),
        }
    }
    Ok(out)
}

/// Mask files of one class folder by stem (PNG preferred when several share a stem).
fn mask_index(dir: &Path) -> Result<BTreeMap<String, PathBuf>, ImportError> {
    let mut out: BTreeMap<String, PathBuf> = BTreeMap::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    for (name, path) in list_dir(dir)? {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !has_image_extension(name.as_ref()) {
            continue;
        }
        let is_png = name.to_ascii_lowercase().ends_with(".png");
        let stem = stem_of(name).to_owned();
        if is_png || !out.contains_key(&stem) {
            out.insert(stem, path);
        }
    }
    Ok(out)
}

impl Job for FolderJob {
    fn id(&self) -> &str {
        &self.id
    }

    fn ids(&self) -> Vec<&str> {
        vec![&self.id]
    }

    fn run(&self, project: &Project) -> Result<Vec<ImageEntry>, Skipped> {
        let skip = |e: crate::imaging::io::ImagingError| Skipped::new(&self.src, e.to_string());
        let image = load_dynamic(&self.src).map_err(skip)?;
        let (width, height) = (image.width(), image.height());
        drop(image);
        let mask = match &self.mask {
            Some(m) => Some(load_mask_for(m, &self.src, (width, height)).map_err(skip)?),
            None => None,
        };
        let (role, dir) = match &self.class {
            None => (Role::Good, format!("images/{}/good", self.group)),
            Some(c) => (
                Role::Defect,
                format!("images/{}/defect/{}", self.group, safe_name(c)),
            ),
        };
        let path = link_image(project, &self.src, &dir, &self.file_name)?;
        let mut entry = ImageEntry::new(self.id.clone(), path, role, self.entry_group.clone());
        entry.width = width;
        entry.height = height;
        entry.class = self.class.clone();
        if let (Some(mask), Some(mask_src), Some(class)) = (mask, &self.mask, &self.class) {
            let mask_rel = Project::default_mask_path(&self.id);
            write_mask(project, &mask_rel, &mask, mask_src)?;
            entry.mask = Some(mask_rel);
            if !mask_is_empty(&mask) {
                entry.regions = connected_components(&mask)
                    .into_iter()
                    .map(|c| Region {
                        class: class.clone(),
                        bbox: c.bbox,
                    })
                    .collect();
                let box_rel = Project::default_box_mask_path(&self.id);
                let boxes = box_mask_from_mask(&mask, self.margin);
                write_mask(project, &box_rel, &boxes, mask_src)?;
                entry.box_mask = Some(box_rel);
            }
        }
        Ok(vec![entry])
    }
}
