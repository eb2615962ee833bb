//! Bad and odd inputs: every loader error and import skip names the file, nothing panics, and the
//! project stays loadable. Tiny fixed files live in `tests/corpus/`; the rest (truncated JPEG,
//! mismatched masks, odd file names, links) is made in a temporary folder at test time.
//!
//! Unreadable file: the tests run as root, for whom `chmod 000` does not block reads, so a
//! dangling symbolic link stands in for a file that exists in the listing but cannot be read.

use std::fs;
use std::path::{Path, PathBuf};

use dtgan_studio::imaging::io::{self, ImagingError};
use dtgan_studio::imaging::rect::Rect;
use dtgan_studio::project::import::{ImportError, ImportRequest, ImportSummary, Layout, import};
use dtgan_studio::project::{Project, Role};
use image::{GrayImage, Luma};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name)
}

fn gray(w: u32, h: u32, v: u8) -> GrayImage {
    GrayImage::from_pixel(w, h, Luma([v]))
}

fn truncated_jpeg(path: &Path) {
    let img = GrayImage::from_fn(64, 64, |x, y| Luma([((x * 7 + y * 13) % 251) as u8]));
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut bytes)
        .encode_image(&img)
        .expect("encode jpeg");
    fs::write(path, &bytes[..bytes.len() / 3]).expect("write truncated jpeg");
}

fn import_folders(src: &Path, project: &mut Project) -> ImportSummary {
    let req = ImportRequest {
        layout: Layout::Folders,
        from: src.to_path_buf(),
        masks: None,
        group: Some("odd".into()),
    };
    import(project, &req, &|_, _| {}).expect("bad files are skipped, not fatal")
}

fn reason_for<'a>(s: &'a ImportSummary, file: &str) -> &'a str {
    let hit = s
        .skipped
        .iter()
        .find(|k| k.path.ends_with(file))
        .unwrap_or_else(|| panic!("{file} not skipped: {:?}", s.skipped));
    assert!(
        hit.reason.contains(file),
        "reason must name {file}: {}",
        hit.reason
    );
    &hit.reason
}

/// A folder-layout source holding one of each bad or odd input.
fn odd_source(root: &Path) -> PathBuf {
    let src = root.join("src");
    let good = src.join("good");
    let spot = src.join("defect/spot");
    let masks = src.join("masks/spot");
    for d in [&good, &spot, &masks] {
        fs::create_dir_all(d).expect("mkdir");
    }
    gray(8, 6, 90).save(good.join("ok.png")).expect("save");
    truncated_jpeg(&good.join("truncated.jpg"));
    for name in [
        "empty.png",
        "gray16.png",
        "rgba.png",
        "one_pixel.png",
        "huge_header.png",
    ] {
        fs::copy(corpus(name), good.join(name)).expect("copy corpus file");
    }
    fs::create_dir(good.join("x.png")).expect("folder named like an image");
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        std::os::unix::fs::symlink(root.join("nowhere.png"), good.join("dangling.png"))
            .expect("symlink");
        let name = std::ffi::OsStr::from_bytes(b"bad\xffname.png");
        gray(4, 4, 1).save(good.join(name)).expect("non-UTF-8 name");
    }
    fs::write(good.join("notes.txt"), "not an image").expect("write");
    gray(8, 6, 0).save(good.join(".hidden.png")).expect("save");
    for stem in ["wrongsize", "nonbinary", "emptymask", "whitemask", "nomask"] {
        gray(8, 6, 120)
            .save(spot.join(format!("{stem}.png")))
            .expect("save");
    }
    gray(5, 5, 255)
        .save(masks.join("wrongsize.png"))
        .expect("save");
    fs::copy(corpus("mask_nonbinary.png"), masks.join("nonbinary.png")).expect("copy");
    gray(8, 6, 0)
        .save(masks.join("emptymask.png"))
        .expect("save");
    gray(8, 6, 255)
        .save(masks.join("whitemask.png"))
        .expect("save");
    src
}

#[test]
fn loaders_name_the_file_for_every_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jpg = dir.path().join("cut.jpg");
    truncated_jpeg(&jpg);
    let err = io::load_rgb8(&jpg).expect_err("truncated JPEG must not decode");
    assert!(err.to_string().contains("cut.jpg"), "{err}");
    let err = io::load_rgb8(&corpus("empty.png")).expect_err("empty");
    assert!(matches!(err, ImagingError::Empty(_)) && err.to_string().contains("empty.png"));
    let err = io::read_dimensions(&corpus("huge_header.png")).expect_err("too large");
    assert!(
        matches!(err, ImagingError::TooLarge { width: 50_000, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("huge_header.png"), "{err}");
    let folder = dir.path().join("x.png");
    fs::create_dir(&folder).expect("mkdir");
    let err = io::load_gray8(&folder).expect_err("folder");
    assert!(err.to_string().contains("x.png") && err.to_string().contains("folder"));
    #[cfg(unix)]
    {
        let link = dir.path().join("dangling.png");
        std::os::unix::fs::symlink(dir.path().join("gone.png"), &link).expect("symlink");
        let err = io::load_gray8(&link).expect_err("dangling");
        assert!(err.to_string().contains("dangling.png"), "{err}");
    }
    let mask = dir.path().join("m.png");
    gray(5, 5, 255).save(&mask).expect("save");
    let err = io::load_mask_for(&mask, Path::new("img.png"), (8, 6)).expect_err("size");
    assert!(err.to_string().contains("m.png") && err.to_string().contains("img.png"));
    // Valid but odd: 16-bit and RGBA load as 8 bits, 1x1 loads.
    let g16 = io::load_gray8(&corpus("gray16.png")).expect("16-bit");
    assert_eq!((g16.dimensions(), g16.get_pixel(7, 0).0[0]), ((8, 6), 255));
    assert_eq!(
        io::load_rgb8(&corpus("rgba.png"))
            .expect("rgba")
            .get_pixel(3, 2)
            .0,
        [200, 30, 30]
    );
    assert_eq!(
        io::read_dimensions(&corpus("one_pixel.png")).expect("1x1"),
        (1, 1)
    );
}

#[test]
fn import_skips_bad_files_by_name_and_keeps_odd_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = odd_source(dir.path());
    let mut p = Project::open_or_create(dir.path().join("proj")).expect("project");
    let s = import_folders(&src, &mut p);

    assert!(reason_for(&s, "truncated.jpg").contains("not a readable image"));
    assert!(reason_for(&s, "empty.png").contains("empty"));
    assert!(reason_for(&s, "huge_header.png").contains("50000"));
    assert!(reason_for(&s, "x.png").contains("folder"));
    let wrong = reason_for(&s, "wrongsize.png");
    assert!(wrong.contains("masks/spot/wrongsize.png") && wrong.contains("defect/spot"));
    #[cfg(unix)]
    {
        assert!(reason_for(&s, "dangling.png").contains("cannot read"));
        let bad = s
            .skipped
            .iter()
            .find(|k| k.path.contains("bad"))
            .expect("non-UTF-8 skipped");
        assert!(
            bad.reason.contains("UTF-8") && bad.reason.contains("name.png"),
            "{bad:?}"
        );
    }
    assert_eq!(
        s.skipped.len(),
        if cfg!(unix) { 7 } else { 5 },
        "{:?}",
        s.skipped
    );
    assert_eq!(s.ignored, 2, "notes.txt and .hidden.png are ignored");

    let m = &Project::open(&p.root)
        .expect("project still loads")
        .manifest;
    let ids: Vec<&str> = m.images.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "odd/gray16",
            "odd/ok",
            "odd/one_pixel",
            "odd/rgba",
            "odd/spot/emptymask",
            "odd/spot/nomask",
            "odd/spot/nonbinary",
            "odd/spot/whitemask"
        ]
    );
    let e = |id: &str| m.image(id).expect("entry");
    assert_eq!((e("odd/gray16").width, e("odd/gray16").height), (8, 6));
    assert_eq!(
        (e("odd/one_pixel").width, e("odd/one_pixel").height),
        (1, 1)
    );
    assert_eq!(e("odd/rgba").role, Role::Good);

    // Non-binary mask: binarised at 128 (columns 4.. of rows 0..5, and all of row 5).
    let nb = e("odd/spot/nonbinary");
    let mask = io::load_gray8(&p.abs(nb.mask.as_ref().expect("mask"))).expect("mask");
    assert!(mask.as_raw().iter().all(|&v| v == 0 || v == 255));
    assert_eq!(io::mask_area(&mask), 4 * 5 + 8);
    assert_eq!(mask.get_pixel(3, 0).0[0], 0);
    assert_eq!(mask.get_pixel(4, 0).0[0], 255);
    assert_eq!(nb.regions.len(), 1);
    assert_eq!(nb.regions[0].bbox, Rect::new(0, 0, 8, 6));
    assert_eq!(nb.regions[0].class, "spot");

    // Empty mask: kept, no regions, no box mask.
    let em = e("odd/spot/emptymask");
    let mask = io::load_gray8(&p.abs(em.mask.as_ref().expect("empty mask kept"))).expect("mask");
    assert!(io::mask_is_empty(&mask));
    assert!(em.regions.is_empty() && em.box_mask.is_none());

    // All-white mask: one region over the whole image, box mask all white.
    let wm = e("odd/spot/whitemask");
    assert_eq!(wm.regions.len(), 1);
    assert_eq!(wm.regions[0].bbox, Rect::new(0, 0, 8, 6));
    let boxes = io::load_gray8(&p.abs(wm.box_mask.as_ref().expect("box"))).expect("box");
    assert_eq!(io::mask_area(&boxes), 48);

    // No mask: class set, nothing else.
    let nm = e("odd/spot/nomask");
    assert_eq!(nm.class.as_deref(), Some("spot"));
    assert!(nm.mask.is_none() && nm.regions.is_empty());

    // Importing again adds nothing and reports the same bad files.
    let again = import_folders(&src, &mut p);
    assert_eq!(again.already_present, 8);
    assert_eq!(again.skipped, s.skipped);
    assert_eq!(
        Project::open(&p.root).expect("loads").manifest.images.len(),
        8
    );
}

#[test]
fn a_different_file_with_the_same_name_is_not_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = Project::open_or_create(dir.path().join("proj")).expect("project");
    for (n, v) in [(1, 10u8), (2, 200u8)] {
        let src = dir.path().join(format!("s{n}"));
        fs::create_dir_all(src.join("good")).expect("mkdir");
        gray(3, 3, v).save(src.join("good/a.png")).expect("save");
        let req = ImportRequest {
            layout: Layout::Folders,
            from: src,
            masks: None,
            group: Some(format!("g{n}")),
        };
        import(&mut p, &req, &|_, _| {}).expect("import");
    }
    // Same group, other content: stored beside the first under a new name.
    let src = dir.path().join("s3");
    fs::create_dir_all(src.join("good")).expect("mkdir");
    gray(3, 3, 77).save(src.join("good/a.png")).expect("save");
    let req = ImportRequest {
        layout: Layout::Folders,
        from: src,
        masks: None,
        group: Some("g1".into()),
    };
    let s = import(&mut p, &req, &|_, _| {}).expect("import");
    assert_eq!(s.already_present, 1, "id g1/a exists already");
    let paths: Vec<&str> = p.manifest.images.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["images/g1/good/a.png", "images/g2/good/a.png"]);
    let first = io::load_gray8(&p.abs(&p.manifest.images[0].path)).expect("load");
    assert_eq!(first.get_pixel(0, 0).0[0], 10, "first file kept");
}

#[test]
fn fatal_errors_name_the_folder_and_the_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = Project::open_or_create(dir.path().join("proj")).expect("project");
    let missing = dir.path().join("nope");
    let req = |layout, from: &Path| ImportRequest {
        layout,
        from: from.to_path_buf(),
        masks: None,
        group: None,
    };
    let err = import(&mut p, &req(Layout::Folders, &missing), &|_, _| {}).expect_err("missing");
    assert!(matches!(err, ImportError::SourceMissing(_)) && err.to_string().contains("nope"));
    let plain = dir.path().join("plain");
    fs::create_dir(&plain).expect("mkdir");
    let err = import(&mut p, &req(Layout::Folders, &plain), &|_, _| {}).expect_err("layout");
    assert!(
        err.to_string().contains("plain") && err.to_string().contains("good/"),
        "{err}"
    );
    let err = import(&mut p, &req(Layout::Deeppcb, &plain), &|_, _| {}).expect_err("layout");
    assert!(
        err.to_string().contains("plain") && err.to_string().contains("pairs/"),
        "{err}"
    );
    assert!(
        Project::open(&p.root)
            .expect("loads")
            .manifest
            .images
            .is_empty()
    );
}

#[test]
fn deeppcb_bad_box_line_skips_that_pair_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("pcb");
    fs::create_dir_all(src.join("pairs")).expect("mkdir");
    fs::create_dir_all(src.join("boxes")).expect("mkdir");
    for id in ["10000001", "10000002"] {
        for kind in ["test", "temp"] {
            gray(32, 32, 255)
                .save(src.join(format!("pairs/{id}_{kind}.png")))
                .expect("save");
        }
    }
    fs::write(src.join("boxes/10000001.txt"), "1 1 5 5 1\n2,2,40,9,6\n").expect("write");
    fs::write(src.join("boxes/10000002.txt"), "1 1 5 5 1\n1 1 5 5 9\n").expect("write");
    let mut p = Project::open_or_create(dir.path().join("proj")).expect("project");
    let req = ImportRequest {
        layout: Layout::Deeppcb,
        from: src,
        masks: None,
        group: None,
    };
    let s = import(&mut p, &req, &|_, _| {}).expect("import");
    assert_eq!((s.defect, s.template, s.regions, s.box_masks), (1, 1, 2, 1));
    let reason = reason_for(&s, "10000002.txt");
    assert!(reason.contains("line 2"), "{reason}");
    let m = Project::open(&p.root).expect("loads").manifest;
    let d = m.image("group10000/10000001_test").expect("defect");
    assert_eq!(
        d.regions[1].bbox,
        Rect::new(2, 2, 30, 8),
        "clipped to the image"
    );
    assert_eq!(d.twin.as_deref(), Some("group10000/10000001_temp"));
    let boxes = io::load_gray8(&p.abs(d.box_mask.as_ref().expect("box"))).expect("box");
    assert_eq!(
        io::mask_area(&boxes),
        25 + 240 - 16,
        "union of the boxes, no margin"
    );
}

#[test]
fn bad_manifests_name_the_file_and_do_not_panic() {
    for (file, needle) in [
        ("manifest_dotdot.json", "`..`"),
        ("manifest_truncated.json", "not a valid"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::copy(corpus(file), dir.path().join("studio.json")).expect("copy");
        let err = Project::open(dir.path())
            .expect_err("must refuse")
            .to_string();
        assert!(
            err.contains("studio.json") && err.contains(needle),
            "{file}: {err}"
        );
    }
}
