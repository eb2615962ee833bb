//! Tests of the demo project: determinism, exact masks, distinct products, the written project.

use std::time::Instant;

use image::{GrayImage, Rgb, RgbImage};

use super::*;
use crate::imaging::io::{load_mask_for, load_rgb8, read_dimensions};
use crate::project::stats::ProjectStats;

fn rng(seed: u64) -> ChaCha8Rng {
    job_rng(seed, 0)
}

fn clean(kind: PanelKind, seed: u64) -> RgbImage {
    render_panel(kind, 256, &mut rng(seed))
}

fn max_diff(a: &Rgb<u8>, b: &Rgb<u8>) -> u8 {
    (0..3).map(|k| a.0[k].abs_diff(b.0[k])).max().unwrap_or(0)
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    for kind in PanelKind::ALL {
        assert_eq!(clean(kind, 1).as_raw(), clean(kind, 1).as_raw());
        assert_ne!(clean(kind, 1).as_raw(), clean(kind, 2).as_raw());
        let base = clean(kind, 3);
        let (d1, m1) = draw_defect(DefectClass::Particle, &base, &mut rng(9));
        let (d2, m2) = draw_defect(DefectClass::Particle, &base, &mut rng(9));
        let (d3, _) = draw_defect(DefectClass::Particle, &base, &mut rng(10));
        assert_eq!((d1.as_raw(), m1.as_raw()), (d2.as_raw(), m2.as_raw()));
        assert_ne!(d1.as_raw(), d3.as_raw());
    }
}

/// Checks the mask contract on one defect; returns the mask area.
fn check_exact(clean: &RgbImage, defect: &RgbImage, mask: &GrayImage, what: &str) -> u64 {
    let mut area = 0u64;
    let mut diff_sum = 0u64;
    for ((c, d), m) in clean.pixels().zip(defect.pixels()).zip(mask.pixels()) {
        match m.0[0] {
            0 => assert_eq!(c, d, "{what}: pixel outside the mask changed"),
            255 => {
                let diff = max_diff(c, d);
                assert!(
                    diff >= defects::CHANGE_THRESHOLD,
                    "{what}: unchanged pixel in mask"
                );
                area += 1;
                diff_sum += u64::from(diff);
            }
            v => panic!("{what}: mask value {v}"),
        }
    }
    let total = u64::from(clean.width() * clean.height());
    assert!(area > 0, "{what}: empty mask");
    assert!(
        area < total / 4,
        "{what}: mask covers {area} of {total} pixels"
    );
    let mean = diff_sum as f64 / area as f64;
    assert!(
        mean > 6.0,
        "{what}: mean change inside the mask only {mean}"
    );
    area
}

#[test]
fn every_class_gives_an_exact_mask_on_both_products() {
    for kind in PanelKind::ALL {
        for class in DefectClass::ALL {
            for seed in 0..12 {
                let base = clean(kind, 100 + seed);
                let (defect, mask) = draw_defect(class, &base, &mut rng(seed));
                let what = format!("{kind:?} {class:?} seed {seed}");
                check_exact(&base, &defect, &mask, &what);
                let regions = connected_components(&mask);
                assert!(
                    (1..=4).contains(&regions.len()),
                    "{what}: {} regions",
                    regions.len()
                );
            }
        }
    }
}

#[test]
fn random_blobs_are_irregular_and_inside() {
    let mask = random_blob_mask(128, 96, &mut rng(4));
    let comps = connected_components(&mask);
    assert_eq!(comps.len(), 1);
    assert!(comps[0].area > 20 && comps[0].area < comps[0].bbox.area());
}

/// Mean absolute difference between two images, per channel value.
fn mad(a: &RgbImage, b: &RgbImage) -> f64 {
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

/// Lag (2..=40) at which the column-mean profile best matches itself: the horizontal pitch.
fn column_period(img: &RgbImage) -> usize {
    let cols: Vec<f64> = (0..img.width())
        .map(|x| {
            (0..img.height())
                .map(|y| {
                    img.get_pixel(x, y)
                        .0
                        .iter()
                        .map(|&v| f64::from(v))
                        .sum::<f64>()
                })
                .sum()
        })
        .collect();
    let mean = cols.iter().sum::<f64>() / cols.len() as f64;
    let c: Vec<f64> = cols.iter().map(|v| v - mean).collect();
    (2..=40)
        .max_by(|&a, &b| {
            let ac = |lag: usize| {
                c.iter().zip(&c[lag..]).map(|(x, y)| x * y).sum::<f64>() / (c.len() - lag) as f64
            };
            ac(a).total_cmp(&ac(b))
        })
        .unwrap_or(0)
}

#[test]
fn the_two_products_look_different() {
    let (s, p) = (clean(PanelKind::Stripe, 5), clean(PanelKind::Pentile, 5));
    // Two shots of one product differ by noise and phase; the two products by their layout.
    let same = mad(&s, &clean(PanelKind::Stripe, 6));
    let other = mad(&s, &p);
    assert!(other > 15.0, "products differ by only {other}");
    assert_ne!(column_period(&s), column_period(&p));
    assert!(same > 0.0);
}

#[test]
fn make_demo_writes_a_valid_complete_project() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("demo");
    let cfg = DemoConfig {
        seed: 3,
        size: 96,
        good_per_group: 3,
        defects_per_class_per_group: 2,
    };
    let calls = AtomicUsize::new(0);
    let made = make_demo(&out, &cfg, &|_, total| {
        assert_eq!(total, 2 * (3 + 4 * 2));
        calls.fetch_add(1, Ordering::Relaxed);
    })
    .expect("demo");
    assert_eq!(calls.into_inner(), 22);
    let p = Project::open(&out).expect("open");
    assert_eq!(p.manifest, made.manifest);
    let stats = ProjectStats::of(&p.manifest);
    assert_eq!(stats.by_role["good"], 6);
    assert_eq!(stats.by_role["defect"], 16);
    assert_eq!(stats.by_role["template"], 16);
    for class in DefectClass::ALL {
        assert_eq!(stats.by_class[class.name()], 4, "{class:?}");
    }
    for kind in PanelKind::ALL {
        assert_eq!(stats.by_group[kind.group()], 3 + 2 * 2 * 4);
    }
    for e in &p.manifest.images {
        let img = p.abs(&e.path);
        assert_eq!(read_dimensions(&img).expect("image"), (96, 96));
        assert_eq!((e.width, e.height), (96, 96));
        if e.role != Role::Defect {
            assert!(e.mask.is_none() && e.regions.is_empty());
            continue;
        }
        let twin = p
            .manifest
            .image(e.twin.as_deref().expect("twin"))
            .expect("twin entry");
        assert_eq!(twin.twin_of.as_deref(), Some(e.id.as_str()));
        assert_eq!(twin.role, Role::Template);
        let mask_path = p.abs(e.mask.as_ref().expect("mask"));
        let mask = load_mask_for(&mask_path, &img, (96, 96)).expect("mask");
        let raw = std::fs::read(&mask_path).expect("mask bytes");
        let stored = image::load_from_memory(&raw).expect("png").to_luma8();
        assert!(stored.as_raw().iter().all(|&v| v == 0 || v == 255));
        let defect = load_rgb8(&img).expect("defect");
        let clean = load_rgb8(&p.abs(&twin.path)).expect("twin");
        check_exact(&clean, &defect, &mask, &e.id);
        let comps = connected_components(&mask);
        assert_eq!(e.regions.len(), comps.len());
        assert!(e.regions.iter().all(|r| Some(&r.class) == e.class.as_ref()));
        let boxes = p.abs(e.box_mask.as_ref().expect("box"));
        let boxes = load_mask_for(&boxes, &img, (96, 96)).expect("box mask");
        assert!(
            mask.pixels()
                .zip(boxes.pixels())
                .all(|(m, b)| m.0[0] <= b.0[0])
        );
    }
}

#[test]
fn make_demo_is_reproducible_and_refuses_non_empty_folders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = DemoConfig {
        size: 64,
        good_per_group: 2,
        defects_per_class_per_group: 1,
        ..DemoConfig::default()
    };
    let a = make_demo(&dir.path().join("a"), &cfg, &|_, _| {}).expect("a");
    let b = make_demo(&dir.path().join("b"), &cfg, &|_, _| {}).expect("b");
    assert_eq!(a.manifest.images, b.manifest.images);
    for e in &a.manifest.images {
        let bytes = |p: &Project| std::fs::read(p.abs(&e.path)).expect("read");
        assert_eq!(bytes(&a), bytes(&b), "{}", e.id);
    }
    let err = make_demo(&a.root, &cfg, &|_, _| {}).expect_err("non-empty");
    assert!(matches!(err, DemoError::NotEmpty(_)));
    assert!(err.to_string().contains(&a.root.display().to_string()));
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").expect("write");
    assert!(matches!(
        make_demo(&file, &cfg, &|_, _| {}),
        Err(DemoError::NotAFolder(_))
    ));
    let tiny = DemoConfig { size: 8, ..cfg };
    assert!(matches!(
        make_demo(&dir.path().join("c"), &tiny, &|_, _| {}),
        Err(DemoError::BadSize(8))
    ));
}

/// The default demo (176 images of 256 px) is generated in a few seconds; run with
/// `cargo test --release -- --ignored demo_timing --nocapture` to measure.
/// Measured on a shared 2-core machine (load ~3.5): 2.7 s in release, 2.7-5.6 s in the test
/// profile (opt-level 1); rendering dominates (~17 ms per 256 px panel in release).
#[test]
#[ignore = "timing measurement"]
fn demo_timing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let p = make_demo(&dir.path().join("d"), &DemoConfig::default(), &|_, _| {}).expect("demo");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "default demo: {} images in {secs:.2} s",
        p.manifest.images.len()
    );
    assert!(secs < 10.0, "{secs} s");
}

/// Writes `assets/demo_montage.png` (one clean panel and each defect, per product) and preview
/// files to the system temp folder: `cargo test -- --ignored write_montage`.
#[test]
#[ignore = "writes assets"]
fn write_montage() {
    let tile = 112u32;
    let cols = 1 + DefectClass::ALL.len() as u32;
    let mut montage = RgbImage::from_pixel(cols * (tile + 4) + 4, 2 * (tile + 4) + 4, Rgb([0; 3]));
    let tmp = std::env::temp_dir().join("demo_preview");
    std::fs::create_dir_all(&tmp).expect("tmp");
    for (row, kind) in PanelKind::ALL.into_iter().enumerate() {
        let base = clean(kind, 21);
        base.save(tmp.join(format!("{}.png", kind.group())))
            .expect("save");
        let mut tiles = vec![base.clone()];
        for (i, class) in DefectClass::ALL.into_iter().enumerate() {
            let (d, m) = draw_defect(class, &base, &mut rng(i as u64 + 40));
            d.save(tmp.join(format!("{}-{}.png", kind.group(), class.name())))
                .expect("save");
            m.save(tmp.join(format!("{}-{}-mask.png", kind.group(), class.name())))
                .expect("save");
            // Crop around the defect so it is visible at montage scale.
            let b = connected_components(&m)[0].bbox;
            let cx = (b.x + b.w / 2).clamp(tile / 2, 256 - tile / 2) - tile / 2;
            let cy = (b.y + b.h / 2).clamp(tile / 2, 256 - tile / 2) - tile / 2;
            tiles.push(image::imageops::crop_imm(&d, cx, cy, tile, tile).to_image());
        }
        for (col, t) in tiles.iter().enumerate() {
            let t = image::imageops::crop_imm(t, 0, 0, tile, tile).to_image();
            let (x, y) = (4 + col as u32 * (tile + 4), 4 + row as u32 * (tile + 4));
            image::imageops::replace(&mut montage, &t, i64::from(x), i64::from(y));
        }
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo_montage.png");
    std::fs::create_dir_all(out.parent().expect("parent")).expect("assets");
    montage.save(&out).expect("montage");
    montage.save(tmp.join("montage.png")).expect("montage");
}
