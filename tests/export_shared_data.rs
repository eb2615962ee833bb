//! COCO export of the real DeepPCB data in `shared/data`, checked against the counts that
//! `shared/data/README.md` documents.
//!
//! The data must be present: a missing folder fails the test (CI has it) rather than passing
//! silently.

mod common;

use common::data_dir;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use dtgan_studio::project::Project;
use dtgan_studio::project::export::{ExportFormat, export, rle_decode};
use dtgan_studio::project::import::{ImportRequest, Layout, import};

#[test]
fn deeppcb_exports_as_coco_with_every_box() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = Project::open_or_create(dir.path().join("p")).expect("project");
    let req = ImportRequest {
        layout: Layout::Deeppcb,
        from: data_dir().join("deeppcb"),
        masks: Some(PathBuf::from("derived_masks/binary")),
        group: None,
    };
    let imported = import(&mut p, &req, &|_, _| {}).expect("import succeeds");
    assert!(imported.skipped.is_empty(), "{:?}", imported.skipped);

    let out = dir.path().join("coco");
    let start = Instant::now();
    let mut last = (0, 0);
    let s = export(&p, ExportFormat::Coco, &out, &mut |d, t| last = (d, t)).expect("export");
    eprintln!(
        "exported COCO in {:.2} s: {s}",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(last, (449, 449), "templates are left out by default");
    assert_eq!((s.images, s.annotations), (449, 3103));
    assert!(s.skipped.is_empty(), "{:?}", s.skipped);

    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("annotations.json")).expect("annotations.json"),
    )
    .expect("JSON");
    let images = doc["images"].as_array().expect("images");
    let annotations = doc["annotations"].as_array().expect("annotations");
    assert_eq!(images.len(), 449);
    assert_eq!(annotations.len(), 3103);
    let size: HashMap<u64, (u32, u32)> = images
        .iter()
        .map(|i| {
            let id = i["id"].as_u64().expect("id");
            let file = out
                .join("images")
                .join(i["file_name"].as_str().expect("file"));
            assert!(file.is_file(), "{} missing", file.display());
            let w = i["width"].as_u64().expect("width") as u32;
            let h = i["height"].as_u64().expect("height") as u32;
            (id, (w, h))
        })
        .collect();
    let category: HashMap<u64, &str> = doc["categories"]
        .as_array()
        .expect("categories")
        .iter()
        .map(|c| {
            (
                c["id"].as_u64().expect("id"),
                c["name"].as_str().expect("name"),
            )
        })
        .collect();

    let mut per_class: BTreeMap<&str, usize> = BTreeMap::new();
    let mut annotated = HashSet::new();
    for a in annotations {
        let image_id = a["image_id"].as_u64().expect("image_id");
        let &(w, h) = size
            .get(&image_id)
            .expect("annotation names a listed image");
        annotated.insert(image_id);
        *per_class
            .entry(category[&a["category_id"].as_u64().expect("category_id")])
            .or_default() += 1;
        let area = a["area"].as_u64().expect("area");
        assert!(area > 0, "annotation {} has no pixels", a["id"]);
        let counts: Vec<u32> = serde_json::from_value(a["segmentation"]["counts"].clone())
            .expect("uncompressed RLE counts");
        let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        assert_eq!(total, u64::from(w) * u64::from(h), "counts cover the image");
        let decoded = rle_decode(&counts, w, h);
        let set = decoded.as_raw().iter().filter(|&&v| v > 0).count() as u64;
        assert_eq!(set, area, "area is the RLE's pixel count");
        let [x, y, bw, bh]: [u32; 4] = serde_json::from_value(a["bbox"].clone()).expect("bbox");
        assert!(x + bw <= w && y + bh <= h && bw > 0 && bh > 0);
    }
    assert_eq!(annotated.len(), 449, "every defect image has annotations");
    let want: BTreeMap<&str, usize> = [
        ("open", 580),
        ("short", 453),
        ("mousebite", 611),
        ("spur", 543),
        ("copper", 463),
        ("pin-hole", 453),
    ]
    .into_iter()
    .collect();
    assert_eq!(per_class, want);
    let names: Vec<&str> = want.keys().copied().collect();
    let listed: Vec<&str> = doc["categories"]
        .as_array()
        .expect("categories")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(listed, names, "categories sorted by name");
    let summary_counts: BTreeMap<&str, usize> = s
        .annotations_per_class
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(summary_counts, want);
}
