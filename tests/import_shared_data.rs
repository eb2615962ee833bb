//! End-to-end import of the real public data in `shared/data` (DeepPCB and magnetic tile).
//!
//! The expected counts are the ones `shared/data/README.md` documents. The data must be present:
//! a missing folder fails the test (CI has it) rather than passing silently.

mod common;

use common::data_dir;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use dtgan_studio::project::import::{ImportRequest, ImportSummary, Layout, import};
use dtgan_studio::project::{Project, Role};

fn deeppcb_request() -> ImportRequest {
    ImportRequest {
        layout: Layout::Deeppcb,
        from: data_dir().join("deeppcb"),
        masks: Some(PathBuf::from("derived_masks/binary")),
        group: None,
    }
}

fn tile_request() -> ImportRequest {
    ImportRequest {
        layout: Layout::Folders,
        from: data_dir().join("magnetic_tile"),
        masks: None,
        group: None,
    }
}

fn run(project: &mut Project, req: &ImportRequest) -> ImportSummary {
    let start = Instant::now();
    let last = std::sync::Mutex::new((0, 0));
    let summary = import(project, req, &|done, total| {
        let mut l = last.lock().expect("progress lock");
        *l = (l.0.max(done), total);
    })
    .expect("import succeeds");
    let (done, total) = *last.lock().expect("progress lock");
    assert_eq!(done, total, "progress must reach the total");
    eprintln!(
        "imported {} in {:.2} s",
        req.from.display(),
        start.elapsed().as_secs_f64()
    );
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
    summary
}

fn check_deeppcb(project: &Project, s: &ImportSummary) {
    assert_eq!((s.defect, s.template, s.good), (449, 449, 0));
    assert_eq!(s.regions, 3103);
    let want: BTreeMap<String, usize> = [
        ("open", 580),
        ("short", 453),
        ("mousebite", 611),
        ("spur", 543),
        ("copper", 463),
        ("pin-hole", 453),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(s.regions_per_class, want);
    assert_eq!((s.masks, s.box_masks), (449, 449));
    let m = &project.manifest;
    let defects: Vec<_> = m
        .images
        .iter()
        .filter(|e| e.role == Role::Defect && e.regions.iter().any(|_| true) && e.class.is_none())
        .collect();
    assert_eq!(defects.len(), 449);
    let mut groups: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &defects {
        *groups.entry(d.group.as_str()).or_default() += 1;
        assert_eq!((d.width, d.height), (640, 640));
        let twin = m
            .image(d.twin.as_deref().expect("twin"))
            .expect("twin entry");
        assert_eq!(twin.role, Role::Template);
        assert_eq!(twin.twin_of.as_deref(), Some(d.id.as_str()));
        assert_eq!(twin.group, d.group);
        for rel in [
            &d.path,
            d.mask.as_ref().expect("mask"),
            d.box_mask.as_ref().expect("box"),
        ] {
            assert!(project.abs(rel).is_file(), "{rel} missing");
        }
    }
    let want_groups: BTreeMap<&str, usize> = [
        ("group00041", 90),
        ("group13000", 89),
        ("group20085", 131),
        ("group44000", 22),
        ("group50600", 22),
        ("group77000", 45),
        ("group92000", 50),
    ]
    .into_iter()
    .collect();
    assert_eq!(groups, want_groups);
}

fn check_tiles(project: &Project, s: &ImportSummary) {
    assert_eq!((s.good, s.defect, s.template), (251, 275, 0));
    assert_eq!(s.masks, 275);
    let mut per_class: BTreeMap<&str, usize> = BTreeMap::new();
    for e in project.manifest.images.iter().filter(|e| e.class.is_some()) {
        *per_class
            .entry(e.class.as_deref().expect("class"))
            .or_default() += 1;
        let mask = e.mask.as_ref().expect("every tile defect has a mask");
        let mask = dtgan_studio::imaging::io::load_gray8(&project.abs(mask)).expect("mask");
        assert_eq!(mask.dimensions(), (e.width, e.height));
        assert!(mask.as_raw().iter().all(|&v| v == 0 || v == 255));
        // One region per connected component; every tile mask here has at least one.
        let n = dtgan_studio::imaging::boxes::connected_components(&mask).len();
        assert_eq!(e.regions.len(), n, "{}", e.id);
    }
    let want: BTreeMap<&str, usize> = [
        ("blowhole", 83),
        ("break", 61),
        ("crack", 39),
        ("fray", 19),
        ("uneven", 73),
    ]
    .into_iter()
    .collect();
    assert_eq!(per_class, want);
}

#[test]
fn deeppcb_imports_every_pair_box_and_mask() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = Project::open_or_create(dir.path().join("p")).expect("project");
    let s = run(&mut p, &deeppcb_request());
    check_deeppcb(&p, &s);
    let reopened = Project::open(&p.root).expect("reopen");
    assert_eq!(reopened.manifest, p.manifest);
}

#[test]
fn magnetic_tile_imports_good_defects_and_masks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = Project::open_or_create(dir.path().join("p")).expect("project");
    let s = run(&mut p, &tile_request());
    check_tiles(&p, &s);
    // Groups are the tiles of `index.csv` (README: good 46, blowhole 16, break 12, crack 8,
    // fray 4, uneven 12 tile groups), so a split by group keeps one tile's frames together.
    let mut per_class: BTreeMap<String, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for e in &p.manifest.images {
        let class = e.class.clone().unwrap_or_else(|| "good".into());
        per_class.entry(class).or_default().insert(e.group.as_str());
    }
    let counts: BTreeMap<&str, usize> = per_class
        .iter()
        .map(|(c, g)| (c.as_str(), g.len()))
        .collect();
    let want: BTreeMap<&str, usize> = [
        ("good", 46),
        ("blowhole", 16),
        ("break", 12),
        ("crack", 8),
        ("fray", 4),
        ("uneven", 12),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts, want);
    // Ids stay as before (folder name, class, stem).
    assert!(
        p.manifest
            .images
            .iter()
            .all(|e| e.id.starts_with("magnetic_tile/"))
    );
    // An explicit group still wins.
    let mut q = Project::open_or_create(dir.path().join("q")).expect("project");
    let req = ImportRequest {
        group: Some("tiles".into()),
        ..tile_request()
    };
    run(&mut q, &req);
    assert!(q.manifest.images.iter().all(|e| e.group == "tiles"));
    Project::open(&p.root).expect("reopen");
}

#[test]
fn both_into_one_project_add_up_and_reimport_adds_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = Project::open_or_create(dir.path().join("p")).expect("project");
    let start = Instant::now();
    let a = run(&mut p, &deeppcb_request());
    let b = run(&mut p, &tile_request());
    eprintln!(
        "imported all of shared/data in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(p.manifest.images.len(), 449 * 2 + 251 + 275);
    assert_eq!(
        a.regions + b.regions,
        p.manifest
            .images
            .iter()
            .map(|e| e.regions.len())
            .sum::<usize>()
    );
    let before = p.manifest.clone();
    let again = run(&mut p, &deeppcb_request());
    assert_eq!(again.already_present, 898);
    assert_eq!((again.defect, again.template), (0, 0));
    let again = run(&mut p, &tile_request());
    assert_eq!(again.already_present, 526);
    assert_eq!(p.manifest, before);
    let reopened = Project::open(&p.root).expect("reopen");
    assert_eq!(reopened.manifest.images.len(), 449 * 2 + 526);
}
