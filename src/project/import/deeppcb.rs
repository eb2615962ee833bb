//! The DeepPCB layout: `pairs/<id>_test.jpg` + `pairs/<id>_temp.jpg` + `boxes/<id>.txt`.
//!
//! The tested image becomes a defect entry (`twin` = the template's id) and the template a
//! template entry (`twin_of` = the defect's id). Each line `x1 y1 x2 y2 type` of the box file
//! (space or comma separated, inclusive corners) becomes one region, clipped to the image; type
//! ids are 1 open, 2 short, 3 mousebite, 4 spur, 5 copper, 6 pin-hole. The box mask is the union
//! of the boxes as they are: DeepPCB's boxes are already drawn with a margin around each defect,
//! so no `box_margin` is added. An optional pixel mask `<masks>/<id>.png` is size-checked and
//! saved as the defect's mask. Sizes come from the file headers only (no pixel decoding), which
//! keeps the import of the whole data set to a few seconds. A pair with a missing template or
//! box file, a malformed box line or a bad mask is skipped with a reason naming the file.
//! Groups come from `index.csv` (`id,group,...`) when present, else `group` + the first five
//! digits of the id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::write_mask;
use super::{ImportError, ImportRequest, Job, Scan, Skipped, link_image, list_dir, safe_name};
use crate::imaging::boxes::box_mask_from_rects;
use crate::imaging::io::{load_mask_for, read_dimensions};
use crate::imaging::rect::Rect;
use crate::project::{ImageEntry, Project, Region, Role};

/// DeepPCB defect type names by type id (index 0 is id 1).
pub const CLASSES: [&str; 6] = ["open", "short", "mousebite", "spur", "copper", "pin-hole"];

struct PairJob {
    test_id: String,
    temp_id: String,
    test: PathBuf,
    temp: PathBuf,
    boxes: PathBuf,
    mask: Option<PathBuf>,
    group: String,
}

/// Scans a DeepPCB source.
pub(super) fn scan(req: &ImportRequest, masks: Option<&Path>) -> Result<Scan, ImportError> {
    let pairs = req.from.join("pairs");
    let boxes = req.from.join("boxes");
    if !pairs.is_dir() || !boxes.is_dir() {
        return Err(ImportError::NotLayout {
            path: req.from.clone(),
            layout: "DeepPCB",
            expected: "folders `pairs/` (<id>_test.jpg, <id>_temp.jpg) and `boxes/` (<id>.txt)",
        });
    }
    let groups = read_index(&req.from.join("index.csv"));
    let mut scan = Scan::default();
    for (name, path) in list_dir(&pairs)? {
        let Some(name) = name.to_str() else {
            scan.skipped.push(Skipped::new(
                &path,
                format!("{}: file name is not valid UTF-8", path.display()),
            ));
            continue;
        };
        let Some((id, ext)) = name
            .rsplit_once('.')
            .and_then(|(stem, ext)| Some((stem.strip_suffix("_test")?, ext)))
        else {
            // Templates are handled with their tested image; anything else is not ours.
            scan.ignored += usize::from(!name.contains("_temp."));
            continue;
        };
        if name.starts_with('.') {
            scan.ignored += 1;
            continue;
        }
        let temp = pairs.join(format!("{id}_temp.{ext}"));
        let box_file = boxes.join(format!("{id}.txt"));
        let missing = [&temp, &box_file].into_iter().find(|p| !p.is_file());
        if let Some(m) = missing {
            scan.skipped.push(Skipped::new(
                &path,
                format!(
                    "{}: its pair file {} is missing",
                    path.display(),
                    m.display()
                ),
            ));
            continue;
        }
        let group = match (&req.group, groups.get(id)) {
            (Some(g), _) => g.clone(),
            (None, Some(g)) => g.clone(),
            (None, None) => format!("group{}", id.chars().take(5).collect::<String>()),
        };
        let group = safe_name(&group);
        let mask = masks
            .map(|m| m.join(format!("{id}.png")))
            .filter(|m| m.exists());
        scan.jobs.push(Box::new(PairJob {
            test_id: format!("{group}/{}", safe_name(&format!("{id}_test"))),
            temp_id: format!("{group}/{}", safe_name(&format!("{id}_temp"))),
            test: path,
            temp,
            boxes: box_file,
            mask,
            group,
        }));
    }
    Ok(scan)
}

/// `id -> group` from `index.csv`; empty when the file is absent or has no such columns.
pub fn read_index(path: &Path) -> HashMap<String, String> {
    super::read_csv_map(path, "id", &["group"])
        .into_iter()
        .collect()
}

/// Parses a DeepPCB box file into regions clipped to a `width` x `height` image. Errors name the
/// file and the line number.
pub fn parse_boxes(
    text: &str,
    file: &Path,
    width: u32,
    height: u32,
) -> Result<Vec<Region>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let err = |what: &str| {
            format!(
                "{} line {}: {what}: `{}`",
                file.display(),
                i + 1,
                line.trim()
            )
        };
        let fields: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|f| !f.is_empty())
            .collect();
        if fields.is_empty() {
            continue;
        }
        if fields.len() != 5 {
            return Err(err("expected `x1 y1 x2 y2 type`"));
        }
        let mut v = [0u32; 5];
        for (slot, f) in v.iter_mut().zip(&fields) {
            *slot = f.parse().map_err(|_| err("not a whole number"))?;
        }
        let class = v[4]
            .checked_sub(1)
            .and_then(|t| CLASSES.get(t as usize))
            .ok_or_else(|| err("unknown defect type id (expected 1..6)"))?;
        let bbox = Rect::from_inclusive(v[0], v[1], v[2], v[3]).clipped(width, height);
        if bbox.is_empty() {
            return Err(err(&format!("box lies outside the {width}x{height} image")));
        }
        out.push(Region {
            class: (*class).to_owned(),
            bbox,
        });
    }
    Ok(out)
}

impl Job for PairJob {
    fn id(&self) -> &str {
        &self.test_id
    }

    fn ids(&self) -> Vec<&str> {
        vec![&self.test_id, &self.temp_id]
    }

    fn run(&self, project: &Project) -> Result<Vec<ImageEntry>, Skipped> {
        let skip = |e: crate::imaging::io::ImagingError| Skipped::new(&self.test, e.to_string());
        let (w, h) = read_dimensions(&self.test).map_err(skip)?;
        let temp_size = read_dimensions(&self.temp).map_err(skip)?;
        if temp_size != (w, h) {
            return Err(Skipped::new(
                &self.test,
                format!(
                    "{} is {w}x{h} but its template {} is {}x{}",
                    self.test.display(),
                    self.temp.display(),
                    temp_size.0,
                    temp_size.1
                ),
            ));
        }
        let text = std::fs::read_to_string(&self.boxes).map_err(|e| {
            Skipped::new(
                &self.boxes,
                format!("{}: cannot read: {e}", self.boxes.display()),
            )
        })?;
        let regions =
            parse_boxes(&text, &self.boxes, w, h).map_err(|m| Skipped::new(&self.boxes, m))?;
        let mask = match &self.mask {
            Some(m) => Some(load_mask_for(m, &self.test, (w, h)).map_err(skip)?),
            None => None,
        };
        let dir = |role: Role| format!("images/{}/{role}", self.group);
        let name = |p: &Path| safe_name(&p.file_name().unwrap_or_default().to_string_lossy());
        let test_path = link_image(project, &self.test, &dir(Role::Defect), &name(&self.test))?;
        let temp_path = link_image(project, &self.temp, &dir(Role::Template), &name(&self.temp))?;
        let mut defect = ImageEntry::new(&self.test_id, test_path, Role::Defect, &self.group);
        (defect.width, defect.height) = (w, h);
        defect.twin = Some(self.temp_id.clone());
        let mut template = ImageEntry::new(&self.temp_id, temp_path, Role::Template, &self.group);
        (template.width, template.height) = (w, h);
        template.twin_of = Some(self.test_id.clone());
        if let (Some(mask), Some(src)) = (mask, &self.mask) {
            let mask_rel = Project::default_mask_path(&self.test_id);
            write_mask(project, &mask_rel, &mask, src)?;
            defect.mask = Some(mask_rel);
        }
        if !regions.is_empty() {
            let rects: Vec<Rect> = regions.iter().map(|r| r.bbox).collect();
            let box_rel = Project::default_box_mask_path(&self.test_id);
            write_mask(
                project,
                &box_rel,
                &box_mask_from_rects(w, h, &rects),
                &self.boxes,
            )?;
            defect.box_mask = Some(box_rel);
        }
        defect.regions = regions;
        Ok(vec![defect, template])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_space_and_comma_lines_and_clips() {
        let f = Path::new("b/1.txt");
        let r = parse_boxes("1 2 10 20 3\n\n5,5,700,9,6\n", f, 640, 640).expect("parse");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].class, "mousebite");
        assert_eq!(r[0].bbox, Rect::new(1, 2, 10, 19));
        assert_eq!(r[1].class, "pin-hole");
        assert_eq!(r[1].bbox, Rect::new(5, 5, 635, 5));
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let f = Path::new("b/1.txt");
        let e = parse_boxes("1 2 10 20 3\n1 2 3 4 7\n", f, 64, 64).expect_err("type 7");
        assert!(e.contains("b/1.txt line 2") && e.contains("type"), "{e}");
        let e = parse_boxes("1 2 x 20 3\n", f, 64, 64).expect_err("not a number");
        assert!(e.contains("line 1"), "{e}");
        let e = parse_boxes("1 2 3 4\n", f, 64, 64).expect_err("4 fields");
        assert!(e.contains("line 1"), "{e}");
        let e = parse_boxes("100 100 120 120 1\n", f, 64, 64).expect_err("outside");
        assert!(e.contains("outside"), "{e}");
    }
}
