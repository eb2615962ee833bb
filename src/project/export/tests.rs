//! Tests of the export on small demo projects: counts, bytes, and masks decoded back from RLE.

use std::collections::{BTreeMap, HashMap, HashSet};

use image::GrayImage;
use serde_json::Value;

use super::*;
use crate::demo::{DemoConfig, make_demo};
use crate::imaging::boxes::connected_components;
use crate::imaging::io::{MASK_THRESHOLD, load_mask, mask_area};
use crate::imaging::rect::Rect;
use crate::project::{Provenance, Region, RelPath};

fn demo(dir: &Path) -> Project {
    let cfg = DemoConfig::small(1, 2, 1);
    make_demo(&dir.join("p"), &cfg, &|_, _| {}).expect("demo project")
}

/// Runs an export and checks the progress calls: from 0, never backwards, ending at the total.
fn run(p: &Project, format: ExportFormat, options: &ExportOptions, out: &Path) -> ExportSummary {
    let mut calls = Vec::new();
    let summary = export_with(p, format, options, out, &mut |d, t| calls.push((d, t)))
        .expect("export succeeds");
    assert_eq!(calls.first().map(|c| c.0), Some(0));
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
    let (done, total) = *calls.last().expect("progress called");
    assert_eq!(done, total);
    summary
}

fn defects(p: &Project) -> impl Iterator<Item = &ImageEntry> {
    p.manifest.images.iter().filter(|e| e.role == Role::Defect)
}

fn count_role(p: &Project, role: Role) -> usize {
    p.manifest.images.iter().filter(|e| e.role == role).count()
}

/// Rows of `index.csv` (demo ids hold no comma, so a plain split is exact).
fn index_rows(out: &Path) -> Vec<Vec<String>> {
    let text = fs::read_to_string(out.join(INDEX_FILE)).expect("index.csv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("file,class,id,synthetic"));
    lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

fn coco(out: &Path) -> Value {
    serde_json::from_slice(&fs::read(out.join(ANNOTATIONS_FILE)).expect("annotations.json"))
        .expect("annotations.json is JSON")
}

fn counts_of(a: &Value) -> Vec<u32> {
    a["segmentation"]["counts"]
        .as_array()
        .expect("counts")
        .iter()
        .map(|c| c.as_u64().expect("count") as u32)
        .collect()
}

fn decode(a: &Value, w: u32, h: u32) -> GrayImage {
    assert_eq!(a["segmentation"]["size"], serde_json::json!([h, w]));
    rle_decode(&counts_of(a), w, h)
}

/// `mask` with every pixel outside `r` cleared.
fn clipped(mask: &GrayImage, r: Rect) -> GrayImage {
    GrayImage::from_fn(mask.width(), mask.height(), |x, y| {
        let v = if r.contains(x, y) {
            mask.get_pixel(x, y).0[0]
        } else {
            0
        };
        image::Luma([v])
    })
}

fn tight_box(m: &GrayImage) -> [u64; 4] {
    let set: Vec<(u32, u32)> = m
        .enumerate_pixels()
        .filter(|(_, _, p)| p.0[0] >= MASK_THRESHOLD)
        .map(|(x, y, _)| (x, y))
        .collect();
    let x0 = set.iter().map(|p| p.0).min().expect("pixels");
    let y0 = set.iter().map(|p| p.1).min().expect("pixels");
    let x1 = set.iter().map(|p| p.0).max().expect("pixels");
    let y1 = set.iter().map(|p| p.1).max().expect("pixels");
    [x0, y0, x1 - x0 + 1, y1 - y0 + 1].map(u64::from)
}

/// Annotations per image id, in file order.
fn by_image(doc: &Value) -> HashMap<u64, Vec<&Value>> {
    let mut map: HashMap<u64, Vec<&Value>> = HashMap::new();
    for a in doc["annotations"].as_array().expect("annotations") {
        map.entry(a["image_id"].as_u64().expect("image_id"))
            .or_default()
            .push(a);
    }
    map
}

#[test]
fn image_folder_holds_every_image_once_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = demo(dir.path());
    let out = dir.path().join("out");
    let s = run(
        &p,
        ExportFormat::ImageFolder,
        &ExportOptions::default(),
        &out,
    );

    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    *want.entry(GOOD_CLASS.to_owned()).or_default() += count_role(&p, Role::Good);
    for d in defects(&p) {
        *want
            .entry(d.class.clone().expect("demo defects have a class"))
            .or_default() += 1;
    }
    let mut on_disk: BTreeMap<String, usize> = BTreeMap::new();
    for entry in fs::read_dir(&out).expect("list out") {
        let entry = entry.expect("entry");
        if entry.path().is_dir() {
            let n = fs::read_dir(entry.path()).expect("list class").count();
            on_disk.insert(entry.file_name().to_string_lossy().into_owned(), n);
        }
    }
    assert_eq!(on_disk, want);
    assert_eq!(s.images_per_class, want);
    assert_eq!(s.images, want.values().sum::<usize>());
    assert!(s.skipped.is_empty() && s.synthetic == 0 && s.annotations == 0);

    let rows = index_rows(&out);
    assert_eq!(rows.len(), s.images);
    let mut ids = HashSet::new();
    for row in &rows {
        let e = p
            .manifest
            .image(&row[2])
            .expect("index names a project image");
        assert!(ids.insert(e.id.clone()), "{} listed twice", e.id);
        assert_eq!(
            row[0],
            format!("{}/{}", row[1], row[0].rsplit('/').next().expect("name"))
        );
        assert_eq!(folder_class(e), Some(row[1].as_str()));
        assert_eq!(row[3], "0");
        let exported = fs::read(out.join(&row[0])).expect("exported file");
        assert_eq!(
            exported,
            fs::read(p.abs(&e.path)).expect("source"),
            "{}",
            e.id
        );
    }
    assert!(
        s.to_string()
            .contains(&format!("exported {} images", s.images))
    );
}

#[test]
fn coco_regions_decode_to_the_mask_clipped_to_their_box() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = demo(dir.path());
    let out = dir.path().join("out");
    let s = run(&p, ExportFormat::Coco, &ExportOptions::default(), &out);
    let doc = coco(&out);

    let cats = doc["categories"].as_array().expect("categories");
    let names: Vec<&str> = cats
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted, "categories sorted and unique");
    assert!(!names.contains(&GOOD_CLASS));
    let cat_name: HashMap<u64, &str> = cats
        .iter()
        .enumerate()
        .map(|(i, c)| {
            assert_eq!(c["id"].as_u64(), Some(i as u64 + 1));
            (i as u64 + 1, c["name"].as_str().expect("name"))
        })
        .collect();

    let images = doc["images"].as_array().expect("images");
    assert_eq!(
        images.len(),
        count_role(&p, Role::Good) + defects(&p).count()
    );
    assert_eq!(s.images, images.len());
    let regions: usize = defects(&p).map(|d| d.regions.len()).sum();
    assert!(regions > defects(&p).count() / 2, "demo has regions");
    assert_eq!(
        doc["annotations"].as_array().expect("annotations").len(),
        regions
    );
    assert_eq!(s.annotations, regions);

    let image_ids: HashSet<u64> = images
        .iter()
        .map(|i| i["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(image_ids.len(), images.len(), "image ids unique");
    let anns = by_image(&doc);
    assert!(
        anns.keys().all(|id| image_ids.contains(id)),
        "dangling image_id"
    );
    let mut ann_ids = HashSet::new();
    for img in images {
        let e = p
            .manifest
            .image(img["studio_id"].as_str().expect("studio_id"))
            .expect("project image");
        let (w, h) = (e.width, e.height);
        assert_eq!(
            (img["width"].as_u64(), img["height"].as_u64()),
            (Some(w.into()), Some(h.into()))
        );
        let file = out
            .join(COCO_IMAGES_DIR)
            .join(img["file_name"].as_str().expect("file"));
        assert_eq!(
            fs::read(file).expect("exported"),
            fs::read(p.abs(&e.path)).expect("source")
        );
        let list = anns
            .get(&img["id"].as_u64().expect("id"))
            .cloned()
            .unwrap_or_default();
        if e.role == Role::Good {
            assert!(list.is_empty(), "good image {} annotated", e.id);
            continue;
        }
        let mask = load_mask(&p.abs(e.mask.as_ref().expect("mask"))).expect("mask");
        assert_eq!(list.len(), e.regions.len(), "{}", e.id);
        for (a, r) in list.iter().zip(&e.regions) {
            assert!(ann_ids.insert(a["id"].as_u64().expect("ann id")));
            let want = clipped(&mask, r.bbox);
            let got = decode(a, w, h);
            assert_eq!(got.as_raw(), want.as_raw(), "{} {:?}", e.id, r.bbox);
            assert_eq!(a["area"].as_u64(), Some(mask_area(&want)));
            let bbox: Vec<u64> = serde_json::from_value(a["bbox"].clone()).expect("bbox");
            assert_eq!(bbox, tight_box(&want));
            assert_eq!(cat_name[&a["category_id"].as_u64().expect("cat")], r.class);
            assert_eq!(a["iscrowd"], 0);
        }
    }
}

#[test]
fn coco_components_box_fallback_and_skips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = demo(dir.path());
    let ids: Vec<String> = defects(&p).map(|d| d.id.clone()).take(3).collect();
    let [by_components, box_only, nothing] =
        [0, 1, 2].map(|k| p.manifest.index_of(&ids[k]).expect("defect index"));
    // A mask but no regions: one annotation per connected component.
    p.manifest.images[by_components].regions.clear();
    // Regions but no mask (box-only data): the boxes become the segmentations. One extra region
    // of another class shows that region classes, not the image's, name the categories.
    p.manifest.images[box_only].mask = None;
    p.manifest.images[box_only].regions.push(Region {
        class: "zz_extra".into(),
        bbox: Rect::new(1, 2, 3, 4),
    });
    // No class and no regions: skipped.
    p.manifest.images[nothing].regions.clear();
    p.manifest.images[nothing].class = None;

    let out = dir.path().join("out");
    let s = run(&p, ExportFormat::Coco, &ExportOptions::default(), &out);
    assert_eq!(s.skipped.len(), 1);
    assert_eq!(s.skipped[0].id, ids[2]);
    let doc = coco(&out);
    let anns = by_image(&doc);
    let image_of = |id: &str| {
        doc["images"]
            .as_array()
            .expect("images")
            .iter()
            .find(|i| i["studio_id"] == id)
            .map(|i| i["id"].as_u64().expect("id"))
    };
    assert_eq!(image_of(&ids[2]), None, "skipped image is not listed");
    assert!(
        fs::read_dir(out.join(COCO_IMAGES_DIR))
            .expect("images")
            .count()
            == s.images
    );

    let e = &p.manifest.images[by_components];
    let mask = load_mask(&p.abs(e.mask.as_ref().expect("mask"))).expect("mask");
    let list = &anns[&image_of(&e.id).expect("listed")];
    let comps = connected_components(&mask);
    assert_eq!(list.len(), comps.len());
    let mut union = GrayImage::new(e.width, e.height);
    for (a, c) in list.iter().zip(&comps) {
        let got = decode(a, e.width, e.height);
        assert_eq!(mask_area(&got), c.area);
        assert_eq!(a["area"].as_u64(), Some(c.area));
        let b = c.bbox;
        assert_eq!(a["bbox"], serde_json::json!([b.x, b.y, b.w, b.h]));
        for (x, y, px) in got.enumerate_pixels() {
            if px.0[0] > 0 {
                assert_eq!(union.get_pixel(x, y).0[0], 0, "components overlap");
                union.put_pixel(x, y, *px);
            }
        }
    }
    assert_eq!(union.as_raw(), mask.as_raw(), "components cover the mask");

    let e = &p.manifest.images[box_only];
    let list = &anns[&image_of(&e.id).expect("listed")];
    assert_eq!(list.len(), e.regions.len());
    for (a, r) in list.iter().zip(&e.regions) {
        let full = GrayImage::from_pixel(e.width, e.height, image::Luma([255]));
        assert_eq!(
            decode(a, e.width, e.height).as_raw(),
            clipped(&full, r.bbox).as_raw()
        );
        assert_eq!(a["area"].as_u64(), Some(r.bbox.area()));
    }
    assert_eq!(s.annotations_per_class.get("zz_extra"), Some(&1));
    let last = doc["categories"]
        .as_array()
        .and_then(|c| c.last())
        .expect("categories");
    assert_eq!(last["name"], "zz_extra");
}

#[test]
fn synthetic_and_template_options_choose_the_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = demo(dir.path());
    let i = p
        .manifest
        .images
        .iter()
        .position(|e| e.role == Role::Defect)
        .expect("defect");
    p.manifest.images[i].synthetic = Some(Provenance {
        source: "x".into(),
        mask_source: "random".into(),
        checkpoint: "00".into(),
        seed: 1,
    });
    let synth_id = p.manifest.images[i].id.clone();
    let all = count_role(&p, Role::Good) + defects(&p).count();

    let out = dir.path().join("with");
    let s = run(
        &p,
        ExportFormat::ImageFolder,
        &ExportOptions::default(),
        &out,
    );
    assert_eq!((s.images, s.synthetic), (all, 1));
    let flags: Vec<(String, String)> = index_rows(&out)
        .into_iter()
        .map(|r| (r[2].clone(), r[3].clone()))
        .collect();
    for (id, flag) in &flags {
        assert_eq!(flag, if *id == synth_id { "1" } else { "0" }, "{id}");
    }

    let no_synth = ExportOptions {
        include_synthetic: false,
        ..ExportOptions::default()
    };
    let out = dir.path().join("without");
    let s = run(&p, ExportFormat::ImageFolder, &no_synth, &out);
    assert_eq!((s.images, s.synthetic), (all - 1, 0));
    assert!(index_rows(&out).iter().all(|r| r[2] != synth_id));

    let templates = ExportOptions {
        include_templates: true,
        ..ExportOptions::default()
    };
    let out = dir.path().join("templates");
    let s = run(&p, ExportFormat::Coco, &templates, &out);
    let goods = count_role(&p, Role::Good) + count_role(&p, Role::Template);
    assert_eq!(s.images_per_class.get(GOOD_CLASS), Some(&goods));
    let unannotated = {
        let doc = coco(&out);
        let anns = by_image(&doc);
        doc["images"]
            .as_array()
            .expect("images")
            .iter()
            .filter(|i| !anns.contains_key(&i["id"].as_u64().expect("id")))
            .count()
    };
    assert_eq!(unannotated, goods);
}

#[test]
fn output_folder_must_be_new_or_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = demo(dir.path());
    let busy = dir.path().join("busy");
    fs::create_dir(&busy).expect("mkdir");
    fs::write(busy.join("keep.txt"), b"mine").expect("write");
    for format in [ExportFormat::ImageFolder, ExportFormat::Coco] {
        let err = export(&p, format, &busy, &mut |_, _| {}).expect_err("non-empty refused");
        assert!(matches!(err, ExportError::NotEmpty(_)));
        assert!(err.to_string().contains("busy"), "{err}");
    }
    assert_eq!(fs::read_dir(&busy).expect("list").count(), 1);
    assert_eq!(fs::read(busy.join("keep.txt")).expect("read"), b"mine");

    let file = busy.join("keep.txt");
    let err = export(&p, ExportFormat::Coco, &file, &mut |_, _| {}).expect_err("file refused");
    assert!(matches!(err, ExportError::NotAFolder(_)), "{err}");

    let empty = dir.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    export(&p, ExportFormat::Coco, &empty, &mut |_, _| {}).expect("empty folder is fine");
    assert!(empty.join(ANNOTATIONS_FILE).is_file());
}

#[test]
fn missing_image_fails_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = demo(dir.path());
    let gone = p.abs(&p.manifest.images[0].path);
    fs::remove_file(&gone).expect("remove");
    let err = export(
        &p,
        ExportFormat::ImageFolder,
        &dir.path().join("o"),
        &mut |_, _| {},
    )
    .expect_err("missing image");
    assert!(
        err.to_string().contains(&gone.display().to_string()),
        "{err}"
    );
}

#[test]
fn file_names_are_safe_and_unique() {
    let entry = |id: &str, path: &str| {
        ImageEntry::new(id, RelPath::new(path).expect("path"), Role::Good, "g")
    };
    let mut names = FileNames::default();
    let got: Vec<String> = [
        entry("a/b", "images/b.PNG"),
        entry("a__b", "images/x.png"),
        entry("A/B", "images/y.png"),
        entry("g/x y:z", "images/noext"),
        entry("..", "images/.hidden"),
    ]
    .iter()
    .map(|e| names.name_for(e))
    .collect();
    assert_eq!(
        got,
        ["a__b.PNG", "a__b-2.png", "A__B-3.png", "g__x_y_z", "_.."]
    );
}

#[test]
fn folder_class_falls_back_to_the_largest_region() {
    let mut e = ImageEntry::new("d", RelPath::new("d.png").expect("p"), Role::Defect, "g");
    assert_eq!(folder_class(&e), None);
    for (class, side) in [("small", 2), ("big", 9), ("tie", 9)] {
        e.regions.push(Region {
            class: class.into(),
            bbox: Rect::new(0, 0, side, side),
        });
    }
    assert_eq!(folder_class(&e), Some("big"));
    e.class = Some("own".into());
    assert_eq!(folder_class(&e), Some("own"));
    e.role = Role::Template;
    assert_eq!(folder_class(&e), Some(GOOD_CLASS));
}
