//! Properties of the augmenter: determinism, shared geometry, binary masks, pair consistency.

use super::*;

/// A binary pattern of 8 px blocks chosen by a hash, asymmetric so any geometric mismatch shows.
fn pattern_mask(size: u32) -> GrayImage {
    GrayImage::from_fn(size, size, |x, y| {
        let h = ((x / 8).wrapping_mul(73_856_093) ^ (y / 8).wrapping_mul(19_349_663))
            .wrapping_mul(2_654_435_761);
        image::Luma([if (h >> 20) % 3 == 0 { 255 } else { 0 }])
    })
}

fn gray_to_rgb(g: &GrayImage, f: impl Fn(u8) -> u8) -> RgbImage {
    RgbImage::from_fn(g.width(), g.height(), |x, y| {
        let v = f(g.get_pixel(x, y)[0]);
        image::Rgb([v, v, v])
    })
}

/// A smooth textured image with values well inside 0..=255.
fn texture(size: u32) -> RgbImage {
    RgbImage::from_fn(size, size, |x, y| {
        let (fx, fy) = (f64::from(x), f64::from(y));
        let v =
            128.0 + 50.0 * (fx / 7.0).sin() * (fy / 11.0).cos() + 10.0 * ((fx + fy) / 3.0).sin();
        image::Rgb([v as u8, (v * 0.9) as u8, (v * 1.1).min(255.0) as u8])
    })
}

fn pattern_triple(size: u32) -> Triple {
    let mask = pattern_mask(size);
    Triple {
        twin: gray_to_rgb(&mask, |v| 255 - v),
        defect: gray_to_rgb(&mask, |v| v),
        mask,
    }
}

fn mean_std(data: &[u8]) -> (f64, f64) {
    let n = data.len() as f64;
    let mean = data.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = data
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

fn full_config(out: u32) -> AugmentConfig {
    AugmentConfig {
        out_size: out,
        clahe_probability: 0.5,
        ..AugmentConfig::default()
    }
}

#[test]
fn same_seed_same_bytes_different_seed_different() {
    let triple = Triple {
        twin: texture(96),
        defect: texture(96),
        mask: pattern_mask(96),
    };
    let cfg = full_config(64);
    let a = augment_seeded(&triple, &cfg, None, 7).expect("valid");
    let b = augment_seeded(&triple, &cfg, None, 7).expect("valid");
    assert_eq!(a, b);
    let c = augment_seeded(&triple, &cfg, None, 8).expect("valid");
    assert_ne!(a.twin, c.twin);
    assert_ne!(a.mask, c.mask);
}

#[test]
fn all_three_share_the_geometry_and_masks_stay_binary() {
    let triple = pattern_triple(96);
    let cfg = AugmentConfig::geometry_only(80);
    for seed in 0..20 {
        let out = augment_seeded(&triple, &cfg, None, seed).expect("valid");
        let (mut agree, mut total) = (0usize, 0usize);
        for ((m, d), t) in out
            .mask
            .iter()
            .zip(out.defect.pixels())
            .zip(out.twin.pixels())
        {
            assert!(*m == 0 || *m == 255, "seed {seed}: mask value {m}");
            // Bilinear is linear: the inverted twin warps to the inverted defect (+-1 rounding).
            assert!(
                (i32::from(d[0]) + i32::from(t[0]) - 255).abs() <= 1,
                "seed {seed}"
            );
            // The nearest tap weighs at least 1/4 in the bilinear blend.
            if *m == 255 {
                assert!(d[0] >= 64, "seed {seed}: mask 255 over image {}", d[0]);
            } else {
                assert!(d[0] <= 191, "seed {seed}: mask 0 over image {}", d[0]);
            }
            agree += usize::from((*m == 255) == (d[0] >= 128));
            total += 1;
        }
        assert!(
            agree * 100 >= total * 97,
            "seed {seed}: only {agree} of {total} agree"
        );
    }
}

#[test]
fn photometric_never_touches_the_mask() {
    let triple = Triple {
        twin: texture(64),
        defect: texture(64),
        mask: pattern_mask(64),
    };
    let full = AugmentConfig {
        clahe_probability: 1.0,
        brightness: 0.5,
        contrast: 0.5,
        ..full_config(48)
    };
    let geo = AugmentConfig::geometry_only(48);
    for seed in 0..10 {
        let a = augment_seeded(&triple, &full, None, seed).expect("valid");
        let b = augment_seeded(&triple, &geo, None, seed).expect("valid");
        assert_eq!(a.mask, b.mask, "seed {seed}");
        assert_ne!(a.twin, b.twin, "seed {seed}: photometric changed nothing");
    }
}

#[test]
fn pair_stays_consistent_with_clahe() {
    let cfg = AugmentConfig {
        clahe_probability: 1.0,
        brightness: 0.3,
        contrast: 0.3,
        ..AugmentConfig::identity(64)
    };
    let twin = texture(64);
    let same = augment_seeded(
        &Triple {
            twin: twin.clone(),
            defect: twin.clone(),
            mask: pattern_mask(64),
        },
        &cfg,
        None,
        3,
    )
    .expect("valid");
    assert_eq!(same.twin, same.defect);
    // A bright defect block: tables come from the twin, so nothing outside the block moves.
    let mut defect = twin.clone();
    let block = Rect::new(20, 24, 14, 12);
    for (x, y, p) in defect.enumerate_pixels_mut() {
        if block.contains(x, y) {
            *p = image::Rgb([250, 250, 250]);
        }
    }
    let out = augment_seeded(
        &Triple {
            twin,
            defect,
            mask: pattern_mask(64),
        },
        &cfg,
        None,
        3,
    )
    .expect("valid");
    for (x, y, p) in out.defect.enumerate_pixels() {
        if !block.contains(x, y) {
            assert_eq!(p, out.twin.get_pixel(x, y), "({x}, {y})");
        }
    }
    assert_eq!(out.twin, same.twin);
}

#[test]
fn identity_config_returns_the_input() {
    let triple = Triple {
        twin: texture(50),
        defect: texture(50),
        mask: pattern_mask(50),
    };
    for seed in 0..5 {
        assert_eq!(
            augment_seeded(&triple, &AugmentConfig::identity(50), None, seed).expect("valid"),
            triple
        );
    }
}

#[test]
fn flips_actually_flip() {
    let triple = Triple {
        twin: texture(40),
        defect: texture(40),
        mask: pattern_mask(40),
    };
    let cfg = AugmentConfig {
        hflip: true,
        vflip: true,
        ..AugmentConfig::identity(40)
    };
    let mut seen = [[false; 2]; 2];
    for seed in 0..32 {
        let params = sample_params(&cfg, (40, 40), None, &mut ChaCha8Rng::seed_from_u64(seed))
            .expect("valid");
        let out = apply_params(&triple, &params, &cfg).expect("valid");
        let (h, v) = (params.geometry.hflip, params.geometry.vflip);
        seen[usize::from(h)][usize::from(v)] = true;
        let mut expected = triple.mask.clone();
        if h {
            image::imageops::flip_horizontal_in_place(&mut expected);
        }
        if v {
            image::imageops::flip_vertical_in_place(&mut expected);
        }
        assert_eq!(out.mask, expected, "seed {seed} h {h} v {v}");
        let mut expected = triple.twin.clone();
        if h {
            image::imageops::flip_horizontal_in_place(&mut expected);
        }
        if v {
            image::imageops::flip_vertical_in_place(&mut expected);
        }
        assert_eq!(out.twin, expected, "seed {seed}");
    }
    assert!(
        seen.iter().flatten().all(|&s| s),
        "all four flip combinations drawn"
    );
}

#[test]
fn focus_centre_stays_inside_the_output() {
    let size = 200;
    let focus = Rect::new(150, 12, 9, 9);
    let mut mask = GrayImage::new(size, size);
    for (x, y, p) in mask.enumerate_pixels_mut() {
        if focus.contains(x, y) {
            *p = image::Luma([255]);
        }
    }
    let triple = Triple {
        twin: texture(size),
        defect: texture(size),
        mask,
    };
    let cfg = AugmentConfig {
        crop_scale: (0.05, 0.5),
        max_rotation_deg: 45.0,
        ..AugmentConfig::geometry_only(48)
    };
    let mut missed_without_focus = 0;
    for seed in 0..200 {
        let params = sample_params(
            &cfg,
            (size, size),
            Some(focus),
            &mut ChaCha8Rng::seed_from_u64(seed),
        )
        .expect("valid");
        let (ox, oy) = params.geometry.source_to_output(154.5, 16.5);
        assert!(
            (0.5 - 1e-9..=47.5 + 1e-9).contains(&ox) && (0.5 - 1e-9..=47.5 + 1e-9).contains(&oy),
            "seed {seed}: ({ox}, {oy})"
        );
        let out = apply_params(&triple, &params, &cfg).expect("valid");
        assert!(out.mask.contains(&255), "seed {seed}: focus blob lost");
        let free = augment_seeded(&triple, &cfg, None, seed).expect("valid");
        missed_without_focus += usize::from(free.mask.iter().all(|&v| v == 0));
    }
    assert!(missed_without_focus > 50, "the focus made no difference");
}

#[test]
fn brightness_and_contrast_move_mean_and_spread() {
    let triple = Triple {
        twin: texture(64),
        defect: texture(64),
        mask: pattern_mask(64),
    };
    let (in_mean, _) = mean_std(triple.twin.as_raw());
    let (in_luma_mean, in_std) = mean_std(crate::imaging::clahe::luma(&triple.twin).as_raw());
    let bright = AugmentConfig {
        brightness: 0.4,
        ..AugmentConfig::identity(64)
    };
    let contrast = AugmentConfig {
        contrast: 0.6,
        ..AugmentConfig::identity(64)
    };
    for seed in 0..20 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let p = sample_params(&bright, (64, 64), None, &mut rng).expect("valid");
        let (mean, _) = mean_std(
            apply_params(&triple, &p, &bright)
                .expect("valid")
                .defect
                .as_raw(),
        );
        let b = f64::from(p.photometric.brightness);
        assert!((0.6..=1.4).contains(&b));
        assert_eq!(
            mean > in_mean,
            b > 1.0,
            "seed {seed}: factor {b}, mean {in_mean} -> {mean}"
        );
        let p = sample_params(&contrast, (64, 64), None, &mut rng).expect("valid");
        let out = apply_params(&triple, &p, &contrast).expect("valid");
        // Contrast pivots on the twin's mean luma, so luma is where the mean must hold.
        let (mean, std) = mean_std(crate::imaging::clahe::luma(&out.defect).as_raw());
        let c = f64::from(p.photometric.contrast);
        assert_eq!(
            std > in_std,
            c > 1.0,
            "seed {seed}: factor {c}, std {in_std} -> {std}"
        );
        assert!(
            (mean - in_luma_mean).abs() < 1.0,
            "contrast keeps the mean: {in_luma_mean} -> {mean}"
        );
    }
}

#[test]
fn bad_inputs_are_errors_naming_the_problem() {
    let mut triple = pattern_triple(32);
    triple.mask = GrayImage::new(32, 31);
    let err =
        augment_seeded(&triple, &AugmentConfig::default(), None, 0).expect_err("sizes differ");
    assert!(err.to_string().contains("(32, 31)"), "{err}");
    let triple = pattern_triple(32);
    let bad = AugmentConfig {
        crop_scale: (0.9, 0.2),
        ..AugmentConfig::default()
    };
    let err = augment_seeded(&triple, &bad, None, 0).expect_err("bad scale");
    assert!(err.to_string().contains("crop_scale"), "{err}");
    let bad = AugmentConfig {
        clahe_probability: f32::NAN,
        ..AugmentConfig::default()
    };
    assert!(augment_seeded(&triple, &bad, None, 0).is_err());
    let err = augment_seeded(
        &triple,
        &AugmentConfig::default(),
        Some(Rect::new(40, 0, 4, 4)),
        0,
    )
    .expect_err("focus outside");
    assert!(matches!(err, AugmentError::FocusOutside { .. }));
    assert!(AugmentConfig::default().validate().is_ok());
}
