use super::*;
use crate::demo::{DemoConfig, make_demo};
use crate::dtgan::Preset;
use crate::dtgan::model::read_checkpoint;
use crate::dtgan::run::{RunInfo, TrainControl, read_metrics};
use crate::dtgan::train::Validation;
use crate::imaging::exemplar::Turns;
use crate::inpaint::config::InpaintModel;
use crate::inpaint::train::{InpaintTrainRequest, InpaintTrainer, train_inpaint};

/// A 64 px demo project.
fn demo(dir: &Path) -> PathBuf {
    let root = dir.join("project");
    let cfg = DemoConfig::small(5, 1, 1);
    make_demo(&root, &cfg, &|_, _| {}).expect("demo");
    root
}

/// The tiny preset for `steps` steps, with a checkpoint and a sample grid every `every`.
fn tiny(steps: u64, every: u64) -> InpaintConfig {
    InpaintConfig {
        steps,
        checkpoint_every: every,
        sample_every: every,
        ..InpaintConfig::preset(Preset::Tiny)
    }
}

#[test]
fn boxes_are_filled_natively_up_to_three_quarters_of_the_side_then_scaled() {
    let s = 128;
    let big = (640, 640);
    // (box, image, window side, network input side)
    let cases = [
        // Up to half the side: a window of the training side.
        (Rect::new(300, 300, 64, 40), big, 128, 128),
        (Rect::new(0, 0, 5, 5), big, 128, 128),
        // Up to three quarters: twice the long side, rounded up to 32, at native resolution.
        (Rect::new(300, 300, 70, 96), big, 192, 192),
        (Rect::new(575, 620, 65, 20), big, 160, 160),
        // Beyond: twice the long side, scaled to the training side.
        (Rect::new(300, 300, 97, 30), big, 194, 128),
        // An image too small for the native window: as large as it can be, scaled.
        (Rect::new(10, 10, 90, 90), (170, 300), 170, 128),
        // An image smaller than the training side: all of its short side, scaled up.
        (Rect::new(2, 2, 10, 10), (100, 90), 90, 128),
    ];
    for (b, (w, h), side, input) in cases {
        let (win, got) = window_for(b, (w, h), s);
        assert_eq!((win.w, win.h, got), (side, side, input), "box {b:?}");
        assert!(
            win.right() <= w && win.bottom() <= h,
            "{win:?} leaves the image"
        );
        let holds = |r: Rect| {
            r.x >= win.x && r.y >= win.y && r.right() <= win.right() && r.bottom() <= win.bottom()
        };
        assert!(holds(b.clipped(w, h)), "{win:?} misses part of {b:?}");
    }
}

#[test]
fn seam_score_sees_a_step_at_the_border() {
    // A smooth ramp: the border is like everywhere else.
    let ramp = RgbImage::from_fn(40, 40, |x, y| {
        let v = (x * 3 + y * 2) as u8;
        image::Rgb([v, v, v])
    });
    let mut hole = GrayImage::new(40, 40);
    for y in 10..25 {
        for x in 12..30 {
            hole.put_pixel(x, y, Luma([255]));
        }
    }
    let smooth = seam_score(&ramp, &hole);
    assert!((smooth - 1.0).abs() < 0.3, "ramp scores {smooth}");
    // The same image with the hole filled 60 levels too bright.
    let mut seamy = ramp.clone();
    for (x, y, p) in seamy.enumerate_pixels_mut() {
        if hole.get_pixel(x, y)[0] != 0 {
            p.0 = [p[0] + 60; 3];
        }
    }
    let bad = seam_score(&seamy, &hole);
    assert!(bad > 5.0 * smooth, "seam {bad} vs smooth {smooth}");
    assert_eq!(
        seam_score(&ramp, &GrayImage::new(40, 40)),
        0.0,
        "no hole, no seam"
    );
    let t = seam_outlier_threshold(&[1.0, 1.1, 0.9, 1.05, 0.95, 9.0]);
    assert!(t > 1.1 && t < 9.0, "{t}");
}

/// Trains the tiny preset on one defect-free image; its validation L1 in the holes must fall
/// well below where it started. Then fills boxes with the model: only box pixels change; and
/// makes twins for a project, which stay out of DTGAN training until accepted.
#[test]
fn overfits_one_image_and_makes_reviewable_twins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = demo(dir.path());
    let mut project = Project::open(&root).expect("open");
    let good = project
        .manifest
        .images
        .iter()
        .find(|e| e.role == Role::Good)
        .map(|e| (e.id.clone(), e.group.clone()))
        .expect("a good image");
    // Train on that one image only (its group may hold templates too: keep it alone).
    let only = vec![good.1.clone()];
    let mut p2 = project.clone();
    p2.manifest
        .images
        .retain(|e| e.group != good.1 || e.id == good.0 || e.role == Role::Defect);
    p2.manifest.images.iter_mut().for_each(|e| {
        if e.group == good.1 {
            e.twin = None;
        }
    });
    p2.save().expect("save");
    let mut cfg = InpaintConfig::preset(Preset::Tiny);
    cfg.steps = 150;
    cfg.checkpoint_every = 150;
    cfg.log_every = 10;
    cfg.flip = false;
    let run = dir.path().join("run");
    let req = InpaintTrainRequest {
        context: None,
        project: root.clone(),
        groups: only,
        run: run.clone(),
        config: cfg,
        resume: false,
        max_minutes: None,
        device: DeviceChoice::Cpu,
        init_from: None,
    };
    let out = train_inpaint(&req, &TrainControl::new(), &mut |_| {}).expect("train");
    assert_eq!(out.step, 150);
    let metrics = read_metrics(&run.join("metrics.jsonl")).expect("metrics");
    let first: f64 = metrics.iter().take(2).map(|m| m.l1_inside).sum::<f64>() / 2.0;
    let last: f64 = metrics
        .iter()
        .rev()
        .take(2)
        .map(|m| m.l1_inside)
        .sum::<f64>()
        / 2.0;
    assert!(last < 0.5 * first, "hole L1 from {first:.4} to {last:.4}");
    assert!(run.join("samples").join("step_0000150.png").exists());

    // Paste-back: outside the hole, byte for byte.
    let model = Inpainter::load(&run, DeviceChoice::Cpu).expect("load");
    let img = load_rgb8(&root.join(p2.manifest.image(&good.0).expect("good").path.to_string()))
        .expect("image");
    let mut hole = GrayImage::new(img.width(), img.height());
    for y in 20..34 {
        for x in 5..17 {
            hole.put_pixel(x, y, Luma([255]));
        }
    }
    for y in 40..50 {
        for x in 45..60 {
            hole.put_pixel(x, y, Luma([255]));
        }
    }
    // 20 px: longer than half the tiny network's 32 px side, filled natively in a 64 px window.
    for y in 42..62 {
        for x in 4..22 {
            hole.put_pixel(x, y, Luma([255]));
        }
    }
    let filled = model.fill(&img, &hole).expect("fill");
    let mut changed_inside = 0;
    for (x, y, p) in filled.enumerate_pixels() {
        if hole.get_pixel(x, y)[0] == 0 {
            assert_eq!(
                p,
                img.get_pixel(x, y),
                "pixel ({x}, {y}) outside the hole changed"
            );
        } else if p != img.get_pixel(x, y) {
            changed_inside += 1;
        }
    }
    assert!(changed_inside > 0);
    // The box filled natively in the larger window is filled (the net's output, not the input).
    let native = (42..62)
        .flat_map(|y| (4..22).map(move |x| (x, y)))
        .filter(|&(x, y)| filled.get_pixel(x, y) != img.get_pixel(x, y))
        .count();
    assert!(native > 20 * 18 / 2, "{native} of 360 pixels filled");
    // A box longer than the short side of a non-square image is filled in pieces.
    let strip = image::imageops::crop_imm(&img, 0, 20, 64, 24).to_image();
    let mut long = GrayImage::new(64, 24);
    for y in 8..16 {
        for x in 2..62 {
            long.put_pixel(x, y, Luma([255]));
        }
    }
    let filled = model.fill(&strip, &long).expect("long box");
    let changed = filled
        .enumerate_pixels()
        .filter(|(x, y, p)| long.get_pixel(*x, *y)[0] != 0 && *p != strip.get_pixel(*x, *y))
        .count();
    assert!(
        changed > 60 * 8 / 2,
        "only {changed} of the long box's pixels filled"
    );
    for (x, y, p) in filled.enumerate_pixels() {
        if long.get_pixel(x, y)[0] == 0 {
            assert_eq!(p, strip.get_pixel(x, y));
        }
    }
    // The ensemble: in a window that is the whole image, its fill is the mean of the plain
    // fills of the eight turned and flipped images, each turned back (to rounding), and it
    // pastes back like the plain fill.
    let side = model.config.model.image_size as u32;
    let square = image::imageops::crop_imm(&img, 3, 5, side, side).to_image();
    let mut hole = GrayImage::new(side, side);
    for y in side / 4..side / 2 {
        for x in side / 3..side * 3 / 4 {
            hole.put_pixel(x, y, Luma([255]));
        }
    }
    use image::imageops::{flip_horizontal, rotate90, rotate180, rotate270};
    fn turn<P: image::Pixel + 'static>(
        i: &image::ImageBuffer<P, Vec<P::Subpixel>>,
        k: u8,
        back: bool,
    ) -> image::ImageBuffer<P, Vec<P::Subpixel>> {
        let rot = |i: &image::ImageBuffer<P, Vec<P::Subpixel>>, q: u8| match q % 4 {
            1 => rotate90(i),
            2 => rotate180(i),
            3 => rotate270(i),
            _ => i.clone(),
        };
        match (back, k >= 4) {
            (false, false) => rot(i, k),
            (false, true) => flip_horizontal(&rot(i, k)),
            (true, false) => rot(i, 4 - k % 4),
            (true, true) => rot(&flip_horizontal(i), 4 - k % 4),
        }
    }
    let mut sum = vec![0f64; (side * side * 3) as usize];
    for k in 0..8 {
        let f = model
            .fill(&turn(&square, k, false), &turn(&hole, k, false))
            .expect("turned fill");
        let f = turn(&f, k, true);
        assert_eq!(turn(&turn(&square, k, false), k, true), square);
        for (acc, v) in sum.iter_mut().zip(f.as_raw()) {
            *acc += f64::from(*v);
        }
    }
    let plain = model.fill(&square, &hole).expect("plain");
    let model = model.with_ensemble(true);
    let mean = model.fill(&square, &hole).expect("ensemble");
    let mut worst = 0f64;
    for (i, ((m, p), s)) in mean
        .as_raw()
        .iter()
        .zip(plain.as_raw())
        .zip(&sum)
        .enumerate()
    {
        let px = i as u32 / 3;
        if hole.get_pixel(px % side, px / side)[0] == 0 {
            assert_eq!(m, p, "the ensemble changed a pixel outside the hole");
            assert_eq!(*m, square.as_raw()[i]);
        } else {
            worst = worst.max((f64::from(*m) - s / 8.0).abs());
        }
    }
    assert!(
        worst <= 2.0,
        "ensemble differs from the mean of turned fills by {worst}"
    );
    assert_ne!(mean, plain, "the ensemble made the plain fill");
    let model = model.with_ensemble(false);
    // Rim inwards: the fill equals plain fills done ring by ring, each pass keeping the next
    // `ring` px of the hole's depth (to rounding, as the plain fills round the kept rings to
    // 8 bits between passes); outside the hole the image is unchanged.
    let ring = 1;
    let depth = hole_depth(&hole, Beyond::Nothing);
    let deepest = depth.iter().flatten().max().copied().unwrap_or(0);
    assert!(deepest >= 2 * ring, "the hole is only {deepest} px deep");
    let (mut by_hand, mut left, mut kept) = (square.clone(), hole.clone(), 0);
    let mut passes = 0;
    loop {
        let f = model.fill(&by_hand, &left).expect("pass");
        passes += 1;
        if kept + ring > deepest {
            by_hand = f;
            break;
        }
        kept += ring;
        for (i, d) in depth.iter().enumerate() {
            let (x, y) = (i as u32 % side, i as u32 / side);
            if matches!(d, Some(d) if *d < kept) && left.get_pixel(x, y)[0] != 0 {
                by_hand.put_pixel(x, y, *f.get_pixel(x, y));
                left.put_pixel(x, y, Luma([0]));
            }
        }
    }
    assert!(passes >= 3, "{passes} passes");
    let model = model.with_peel(ring);
    let peeled = model.fill(&square, &hole).expect("peel");
    let mut worst = 0u8;
    for (x, y, p) in peeled.enumerate_pixels() {
        if hole.get_pixel(x, y)[0] == 0 {
            assert_eq!(p, square.get_pixel(x, y), "the peel changed ({x}, {y})");
        } else {
            let q = by_hand.get_pixel(x, y);
            worst = (0..3).map(|c| p[c].abs_diff(q[c])).fold(worst, u8::max);
        }
    }
    assert!(
        worst <= 3,
        "the peel is off the ring-by-ring fill by {worst}"
    );
    assert_ne!(peeled, plain, "the peel made the plain fill");
    let model = model.with_peel(0);
    // Copy repeats: a box whose surroundings occur again elsewhere in the image is copied from
    // there exactly; a box in a pattern found nowhere else is left to the network, which fills
    // it with the copied box already known.
    let mut state = 7u64;
    let mut noise = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 56) as u8
    };
    let tile = GrayImage::from_fn(48, 48, |_, _| Luma([noise()]));
    let truth = RgbImage::from_fn(96, 96, |x, y| {
        let v = if y < 48 {
            tile.get_pixel(x % 48, y)[0]
        } else {
            noise()
        };
        image::Rgb([v, v, v])
    });
    let (a, b) = (Rect::new(14, 14, 12, 12), Rect::new(40, 66, 14, 12));
    let boxes = |rs: &[Rect]| {
        GrayImage::from_fn(96, 96, |x, y| {
            Luma([if rs.iter().any(|r| r.contains(x, y)) {
                255
            } else {
                0
            }])
        })
    };
    let both = boxes(&[a, b]);
    let model = model.with_exemplar(Some(CopyRepeats {
        max_mismatch: exemplar::DEFAULT_MAX_MISMATCH,
        turns: Turns::None,
        references: false,
    }));
    let f = model
        .fill_counting(&truth, &both, &[])
        .expect("copy repeats");
    assert_eq!(f.copied, 1, "only the repeated box is copied");
    let model = model.with_exemplar(None);
    let after_copy = model.fill(&truth, &boxes(&[b])).expect("network fill");
    for (x, y, p) in f.image.enumerate_pixels() {
        if a.contains(x, y) || both.get_pixel(x, y)[0] == 0 {
            assert_eq!(p, truth.get_pixel(x, y), "({x}, {y}) is not the truth");
        } else {
            assert_eq!(
                p,
                after_copy.get_pixel(x, y),
                "({x}, {y}) is not the network's"
            );
        }
    }
    let wrong_size = GrayImage::new(3, 3);
    assert!(matches!(
        model.fill(&img, &wrong_size),
        Err(InpaintError::SizeMismatch { .. })
    ));

    // Twins for the defect images without a real template (the group whose links we cut).
    let summary = apply_project(
        &ApplyRequest {
            run: run.clone(),
            also: Vec::new(),
            project: root.clone(),
            class: None,
            redo_accepted: false,
            device: DeviceChoice::Cpu,
            ensemble: false,
            peel: 2,
            exemplar: Some(CopyRepeats {
                max_mismatch: 0.02,
                turns: Turns::All,
                references: false,
            }),
        },
        &mut |_, _| {},
        &|| false,
    )
    .expect("apply");
    assert!(summary.made > 0 && summary.real_twin > 0, "{summary:?}");
    project = Project::open(&root).expect("reopen");
    let twins: Vec<&ImageEntry> = project
        .manifest
        .images
        .iter()
        .filter(|e| e.inpaint.is_some())
        .collect();
    assert_eq!(twins.len(), summary.made);
    let copied: usize = twins
        .iter()
        .map(|t| t.inpaint.as_ref().map_or(0, |i| i.copied))
        .sum();
    assert_eq!((summary.copied, summary.referenced), (copied, 0));
    for t in &twins {
        assert_eq!(t.twin_status, Some(TwinStatus::PendingReview));
        let info = t.inpaint.as_ref().expect("inpaint info");
        assert_eq!((info.ensemble, info.peel), (false, 2));
        assert_eq!(
            info.exemplar.map(|e| (e.max_mismatch, e.turns)),
            Some((0.02, Turns::All))
        );
        let defect = project
            .manifest
            .image(t.twin_of.as_deref().expect("twin_of"))
            .expect("defect");
        assert_eq!(defect.twin.as_deref(), Some(t.id.as_str()));
        assert!(project.abs(&t.path).exists());
    }
    // Pending twins are not training data; accepted ones are.
    let class = project
        .manifest
        .image(twins[0].twin_of.as_deref().expect("of"))
        .and_then(|d| d.classes().into_iter().next().map(str::to_owned))
        .expect("class");
    let count = |p: &Project| {
        crate::dtgan::data::collect_pairs(p, &class)
            .map(|v| {
                v.iter()
                    .filter(|r| r.twin.to_string_lossy().contains("twins/"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(count(&project), 0, "pending twins must not train");
    let ids: Vec<String> = twins.iter().map(|t| t.id.clone()).collect();
    assert_eq!(
        set_twin_status(&mut project, &ids, TwinStatus::Accepted),
        ids.len()
    );
    assert!(count(&project) > 0, "accepted twins train");
    // Re-applying leaves accepted twins alone.
    project.save().expect("save");
    let again = apply_project(
        &ApplyRequest {
            run,
            also: Vec::new(),
            project: root,
            class: None,
            redo_accepted: false,
            device: DeviceChoice::Cpu,
            ensemble: false,
            peel: 0,
            exemplar: None,
        },
        &mut |_, _| {},
        &|| false,
    )
    .expect("apply again");
    assert_eq!((again.made, again.accepted), (0, summary.made));
}

/// A run stopped half way and resumed ends with the very same weights as one that never
/// stopped: the shared loop restores weights, spectral-norm vectors, both optimizers and the
/// step, and every random draw depends only on the step.
#[test]
fn a_resumed_run_continues_the_same_curve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = demo(dir.path());
    let cfg = tiny(12, 6);
    let req = |run: &str, steps: u64, resume: bool| InpaintTrainRequest {
        context: None,
        project: root.clone(),
        groups: Vec::new(),
        run: dir.path().join(run),
        config: InpaintConfig {
            steps,
            ..cfg.clone()
        },
        resume,
        max_minutes: None,
        device: DeviceChoice::Cpu,
        init_from: None,
    };
    train_inpaint(
        &req("straight", 12, false),
        &TrainControl::new(),
        &mut |_| {},
    )
    .expect("straight");
    train_inpaint(&req("halves", 6, false), &TrainControl::new(), &mut |_| {}).expect("first half");
    let out = train_inpaint(&req("halves", 12, true), &TrainControl::new(), &mut |_| {})
        .expect("second half");
    assert_eq!(out.step, 12);
    let (a, _) = read_checkpoint(&dir.path().join("straight/last.safetensors")).expect("a");
    let (b, _) = read_checkpoint(&dir.path().join("halves/last.safetensors")).expect("b");
    assert_eq!(a.len(), b.len());
    let mut compared = 0;
    for (name, ta) in &a {
        let tb = b.get(name).expect("same tensors");
        let diff: f32 = (ta - tb)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_dtype(DType::F32))
            .and_then(|d| d.to_scalar())
            .expect("diff");
        assert_eq!(diff, 0.0, "{name} differs after resuming");
        compared += 1;
    }
    assert!(compared > 50, "{compared} tensors");
    // Resuming with other groups than the run's is refused, naming them.
    let mut other = req("halves", 14, true);
    other.groups = vec!["no-such-group".into()];
    let err = train_inpaint(&other, &TrainControl::new(), &mut |_| {})
        .expect_err("group mismatch")
        .to_string();
    assert!(err.contains("no-such-group"), "{err}");
    let m = read_metrics(&dir.path().join("halves/metrics.jsonl")).expect("metrics");
    let steps: Vec<u64> = m.iter().map(|l| l.step).collect();
    assert!(
        steps.windows(2).all(|w| w[0] < w[1]),
        "no repeated steps: {steps:?}"
    );
    // The run records what it validates on, and a resumed run keeps it even when the project
    // has gained an image that would shift an evenly spread split.
    let info = |run: &str| -> RunInfo {
        let text =
            std::fs::read_to_string(dir.path().join(run).join("run.json")).expect("run.json");
        serde_json::from_str(&text).expect("run info")
    };
    let before = info("halves").held_out.expect("held out recorded");
    assert!(!before.images.is_empty());
    assert_eq!(before, info("straight").held_out.expect("recorded"));
    let mut project = Project::open(&root).expect("open");
    let first = project
        .manifest
        .images
        .iter()
        .find(|e| e.role == Role::Good)
        .expect("a good image")
        .clone();
    let copy = RelPath::new("images/added-first.png").expect("rel");
    std::fs::copy(project.abs(&first.path), project.abs(&copy)).expect("copy image");
    let mut added = first.clone();
    added.id = "added-first".into();
    added.path = copy;
    project.manifest.images.insert(0, added);
    project.save().expect("save");
    let images = crate::inpaint::data::collect_images(&project, &[]).expect("images");
    let redrawn: Vec<String> = crate::dtgan::train::hold_out(images, cfg.val_images)
        .1
        .iter()
        .map(|s| s.id.clone())
        .collect();
    assert_ne!(
        redrawn, before.images,
        "the added image must shift a fresh split"
    );
    train_inpaint(&req("halves", 14, true), &TrainControl::new(), &mut |_| {})
        .expect("resume after adding");
    assert_eq!(info("halves").held_out, Some(before));
}

/// The largest absolute difference between two tensors.
fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_dtype(DType::F32))
        .and_then(|d| d.to_scalar())
        .expect("diff")
}

/// How many variables of `map` equal the checkpoint's tensor of the same name, and how many
/// differ (missing or other shape counts as differing).
fn agreement(
    map: &candle_nn::VarMap,
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
) -> (usize, usize) {
    let data = map.data().lock().expect("lock");
    data.iter().fold((0, 0), |(same, other), (name, var)| {
        match tensors.get(name).filter(|t| t.dims() == var.dims()) {
            Some(t) if max_diff(var.as_tensor(), t) == 0.0 => (same + 1, other),
            _ => (same, other + 1),
        }
    })
}

/// A warm start takes the generator (and, at the same crop size, the critics) from another
/// run's checkpoint, with its own settings; it refuses another width, a source trained on groups
/// the new run leaves out, and --resume.
#[test]
fn a_warm_start_begins_from_another_runs_networks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = demo(dir.path());
    let cfg = tiny(6, 6);
    let req = |run: &str, cfg: &InpaintConfig, init: Option<&str>| InpaintTrainRequest {
        context: None,
        project: root.clone(),
        groups: Vec::new(),
        run: dir.path().join(run),
        config: cfg.clone(),
        resume: false,
        max_minutes: None,
        device: DeviceChoice::Cpu,
        init_from: init.map(|r| dir.path().join(r)),
    };
    train_inpaint(
        &req("source", &cfg, None),
        &TrainControl::new(),
        &mut |_| {},
    )
    .expect("source");
    let (tensors, _) = read_checkpoint(&dir.path().join("source/last.safetensors")).expect("ckpt");

    // Same crop size, larger batch and another learning rate: every network is the source's.
    let same = InpaintConfig {
        batch_size: 3,
        lr_g: 5e-4,
        ..cfg.clone()
    };
    let t = InpaintTrainer::open(&req("same", &same, Some("source"))).expect("warm start");
    assert_eq!(t.state.step, 0, "a new run");
    assert_eq!(t.config.batch_size, 3, "its own settings");
    let (same_g, other_g) = agreement(&t.gan.gen_vars, &tensors);
    assert!(
        same_g > 20 && other_g == 0,
        "generator {same_g} / {other_g}"
    );
    let (same_c, other_c) = agreement(&t.gan.critic_vars, &tensors);
    assert!(same_c > 4 && other_c == 0, "critics {same_c} / {other_c}");
    let info = std::fs::read_to_string(dir.path().join("same/run.json")).expect("run.json");
    assert!(info.contains("init_from"), "{info}");

    // Twice the crop size: the generator is the source's, the critics (whose fully connected
    // layers depend on the size) start fresh.
    let big = InpaintConfig {
        model: InpaintModel {
            image_size: 64,
            ..cfg.model
        },
        ..cfg.clone()
    };
    let t = InpaintTrainer::open(&req("big", &big, Some("source"))).expect("warm start, 64 px");
    let (_, other_g) = agreement(&t.gan.gen_vars, &tensors);
    assert_eq!(other_g, 0, "generator");
    let (_, other_c) = agreement(&t.gan.critic_vars, &tensors);
    assert!(other_c > 0, "fresh critics");
    // And it trains on from there.
    let out = train_inpaint(
        &req(
            "big-trained",
            &InpaintConfig {
                steps: 2,
                ..big.clone()
            },
            Some("source"),
        ),
        &TrainControl::new(),
        &mut |_| {},
    )
    .expect("train a warm-started run");
    assert_eq!(out.step, 2);

    // Refusals, each naming the problem.
    let wide = InpaintConfig {
        model: InpaintModel {
            width: cfg.model.width * 2,
            ..cfg.model
        },
        ..cfg.clone()
    };
    let err = |r: InpaintTrainRequest| match InpaintTrainer::open(&r) {
        Ok(_) => panic!("{} should be refused", r.run.display()),
        Err(e) => e.to_string(),
    };
    let e = err(req("wide", &wide, Some("source")));
    assert!(e.contains("width"), "{e}");
    let group = Project::open(&root).expect("open").manifest.images[0]
        .group
        .clone();
    let e = err(InpaintTrainRequest {
        groups: vec![group],
        ..req("narrow", &cfg, Some("source"))
    });
    assert!(e.contains("every group"), "{e}");
    let e = err(InpaintTrainRequest {
        resume: true,
        ..req("same", &cfg, Some("source"))
    });
    assert!(e.contains("cannot resume"), "{e}");
}

/// A run may also learn from the project's defect images away from their defects: it records
/// their groups, resumes with them, and a warm start from it must keep them (else evaluation
/// would count boards it has seen as unseen).
#[test]
fn context_groups_are_recorded_kept_on_resume_and_required_of_warm_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("project");
    let demo_cfg = DemoConfig {
        size: 128,
        ..DemoConfig::small(5, 1, 1)
    };
    make_demo(&root, &demo_cfg, &|_, _| {}).expect("demo");
    let req = |run: &str, steps: u64, context: Option<Vec<String>>| InpaintTrainRequest {
        project: root.clone(),
        groups: Vec::new(),
        context,
        run: dir.path().join(run),
        config: tiny(steps, steps),
        resume: false,
        max_minutes: None,
        device: DeviceChoice::Cpu,
        init_from: None,
    };
    let plain = InpaintTrainer::open(&req("plain", 2, None)).expect("plain");
    let with = InpaintTrainer::open(&req("ctx", 2, Some(Vec::new()))).expect("with context");
    let defects = Project::open(&root)
        .expect("open")
        .manifest
        .images
        .iter()
        .filter(|e| e.role == crate::project::Role::Defect && !e.regions.is_empty())
        .count();
    assert!(defects > 0);
    assert!(
        with.context_images() > 0 && with.context_images() <= defects,
        "{} of {defects}",
        with.context_images()
    );
    assert_eq!(
        with.counts().0,
        plain.counts().0 + with.context_images(),
        "context images add to the training images"
    );
    assert_eq!(with.counts().1, plain.counts().1, "and never validate");
    drop((plain, with));
    train_inpaint(
        &req("ctx", 2, Some(Vec::new())),
        &TrainControl::new(),
        &mut |_| {},
    )
    .expect("train with context");
    let info: RunInfo = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("ctx/run.json")).expect("run.json"),
    )
    .expect("run info");
    assert_eq!(info.context, Some(Vec::new()));

    // Resuming without saying takes the run's context; another context is refused.
    let resume = |steps: u64, context: Option<Vec<String>>| InpaintTrainRequest {
        resume: true,
        ..req("ctx", steps, context)
    };
    let t = InpaintTrainer::open(&resume(3, None)).expect("resume");
    assert!(t.context_images() > 0, "the run's context is kept");
    drop(t);
    let e = match InpaintTrainer::open(&resume(3, Some(vec!["other".into()]))) {
        Ok(_) => panic!("another context must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("cannot resume") && e.contains("other"), "{e}");

    // A warm start from it must learn from the same defect images.
    let warm = |context: Option<Vec<String>>| InpaintTrainRequest {
        init_from: Some(dir.path().join("ctx")),
        ..req("warm", 2, context)
    };
    let e = match InpaintTrainer::open(&warm(None)) {
        Ok(_) => panic!("a warm start without the source's context must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("defect images of every group"), "{e}");
    InpaintTrainer::open(&warm(Some(Vec::new()))).expect("warm start keeping the context");
}

/// The eight tensor symmetries are distinct and each is undone by its inverse.
#[test]
fn dihedral_tensor_turns_are_distinct_and_undone() {
    let t = candle_core::Tensor::arange(0f32, 32.0, &Device::Cpu)
        .and_then(|t| t.reshape((1, 2, 4, 4)))
        .expect("tensor");
    let mut seen: Vec<Vec<f32>> = Vec::new();
    for k in 0..8 {
        let turned = dihedral_t(&t, k).expect("turn");
        let v: Vec<f32> = turned.flatten_all().and_then(|x| x.to_vec1()).expect("vec");
        assert!(!seen.contains(&v), "turn {k} repeats another");
        seen.push(v);
        let back = undo_dihedral_t(&turned, k).expect("undo");
        assert_eq!(max_diff(&back, &t), 0.0, "turn {k} not undone");
    }
}

#[test]
fn best_is_the_checkpoint_whose_template_boxes_fill_best_as_apply_fills_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = demo(dir.path());
    let project = Project::open(&root).expect("open");
    let req = |run: &str, val_box_pairs: usize| InpaintTrainRequest {
        context: None,
        project: root.clone(),
        groups: Vec::new(),
        run: dir.path().join(run),
        config: InpaintConfig {
            val_box_pairs,
            ..tiny(40, 10)
        },
        resume: false,
        max_minutes: None,
        device: DeviceChoice::Cpu,
        init_from: None,
    };
    let out = train_inpaint(&req("boxes", 100), &TrainControl::new(), &mut |_| {}).expect("train");
    assert_eq!(out.best_metric.as_deref(), Some(Validation::BOX_ERROR));
    let metrics = read_metrics(&dir.path().join("boxes/metrics.jsonl")).expect("metrics");
    let scored: Vec<(u64, f64)> = metrics
        .iter()
        .filter(|m| m.val_l1_inside.is_some())
        .map(|m| {
            (
                m.step,
                m.val_box_error.expect("a box error at every checkpoint"),
            )
        })
        .collect();
    assert_eq!(
        scored.iter().map(|s| s.0).collect::<Vec<_>>(),
        [10, 20, 30, 40]
    );
    let lowest = scored.iter().fold(
        (u64::MAX, f64::INFINITY),
        |a, &(s, e)| if e < a.1 { (s, e) } else { a },
    );
    let (v, step) = out.best.expect("a best");
    // The metrics file holds the values as JSON text: equal to the last bit or two.
    assert_eq!(step, lowest.0);
    assert!((v - lowest.1).abs() < 1e-12, "{v} against {}", lowest.1);
    let (_, meta) = read_checkpoint(&dir.path().join("boxes/best.safetensors")).expect("best");
    let state: crate::dtgan::model::TrainState =
        serde_json::from_str(meta.get("state").expect("state")).expect("state json");
    assert_eq!(state.step, lowest.0);

    // The score is `inpaint eval`'s template self-test, computed here from the last checkpoint
    // with `Inpainter` on every real template of the demo and its defect image's boxes.
    let model = Inpainter::load(
        &dir.path().join("boxes/last.safetensors"),
        DeviceChoice::Cpu,
    )
    .expect("load");
    let mut tally = crate::inpaint::eval::Tally::default();
    let mut templates = 0;
    for t in &project.manifest.images {
        let Some(d) = t.twin_of.as_ref().and_then(|d| project.manifest.image(d)) else {
            continue;
        };
        let img = load_rgb8(&project.abs(&t.path)).expect("template");
        let (w, h) = img.dimensions();
        let mut hole = GrayImage::new(w, h);
        for r in &d.regions {
            let b = r
                .bbox
                .grown_clipped(crate::inpaint::eval::DEFAULT_MARGIN, w, h);
            for y in b.y..b.bottom() {
                for x in b.x..b.right() {
                    hole.put_pixel(x, y, Luma([255]));
                }
            }
        }
        let filled = model.fill(&img, &hole).expect("fill");
        let g = crate::inpaint::eval::gray;
        tally.add(&g(&filled), &g(&img), &hole);
        templates += 1;
    }
    assert!(templates >= 2, "{templates} templates");
    let last = scored.last().expect("scores").1;
    let expected = tally.score().hole_pixel_error;
    assert!(
        (last - expected).abs() < 1e-12,
        "trainer {last} against Inpainter {expected}"
    );
    assert!(last > 0.0 && last < 0.5, "{last}");

    // Resumed with `val_box_pairs: 0`, the run scores by the L1 again, and keeps the best
    // chosen by the box error beside the new one.
    let mut more = req("boxes", 0);
    more.resume = true;
    more.config.steps = 50;
    let out = train_inpaint(&more, &TrainControl::new(), &mut |_| {}).expect("resume");
    assert_eq!(out.best_metric.as_deref(), Some(Validation::L1));
    assert_eq!(out.best.map(|b| b.1), Some(50));
    let metrics = read_metrics(&dir.path().join("boxes/metrics.jsonl")).expect("metrics");
    let resumed = metrics.iter().find(|m| m.step == 50).expect("step 50");
    assert!(resumed.val_l1_inside.is_some() && resumed.val_box_error.is_none());
    let (_, meta) = read_checkpoint(&dir.path().join("boxes/best-box_error.safetensors"))
        .expect("the best by box error, kept");
    let state: crate::dtgan::model::TrainState =
        serde_json::from_str(meta.get("state").expect("state")).expect("state json");
    assert_eq!(state.step, lowest.0);

    // Without box validation, `best` is the lowest validation L1, as before.
    let out = train_inpaint(&req("l1", 0), &TrainControl::new(), &mut |_| {}).expect("train");
    assert_eq!(out.best_metric.as_deref(), Some(Validation::L1));
    let metrics = read_metrics(&dir.path().join("l1/metrics.jsonl")).expect("metrics");
    assert!(metrics.iter().all(|m| m.val_box_error.is_none()));
    let lowest = metrics
        .iter()
        .filter_map(|m| m.val_l1_inside.map(|v| (m.step, v)))
        .fold(
            (u64::MAX, f64::INFINITY),
            |a, (s, e)| if e < a.1 { (s, e) } else { a },
        );
    let (v, step) = out.best.expect("a best");
    assert_eq!(step, lowest.0);
    assert!((v - lowest.1).abs() < 1e-12, "{v} against {}", lowest.1);
}

#[test]
fn a_checkpoint_ensemble_fills_with_the_mean_of_its_generators() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = demo(dir.path());
    let train = |run: &str, steps: u64, side: usize| {
        let mut config = tiny(steps, steps);
        config.model.image_size = side;
        config.val_box_pairs = 0;
        let req = InpaintTrainRequest {
            context: None,
            project: root.clone(),
            groups: Vec::new(),
            run: dir.path().join(run),
            config,
            resume: false,
            max_minutes: None,
            device: DeviceChoice::Cpu,
            init_from: None,
        };
        train_inpaint(&req, &TrainControl::new(), &mut |_| {}).expect("train");
        dir.path().join(run).join("last.safetensors")
    };
    let (a, b) = (train("a", 10, 32), train("b", 20, 32));
    let load = |p: &Path| Inpainter::load(p, DeviceChoice::Cpu).expect("load");
    let both = load(&a).with_more(std::slice::from_ref(&b)).expect("more");
    assert_eq!(both.checkpoints(), [a.clone(), b.clone()]);
    let (one, other) = (load(&a), load(&b));
    for h in [&one.checkpoint_sha256, &other.checkpoint_sha256] {
        assert_ne!(&both.checkpoint_sha256, h);
    }
    assert_eq!(both.checkpoint_sha256.len(), 64);

    let project = Project::open(&root).expect("open");
    let good = project
        .manifest
        .images
        .iter()
        .find(|e| e.role == Role::Good)
        .expect("a good image");
    let img = load_rgb8(&project.abs(&good.path)).expect("image");
    let mut hole = GrayImage::new(img.width(), img.height());
    for y in 10..22 {
        for x in 30..41 {
            hole.put_pixel(x, y, Luma([255]));
        }
    }
    let (fa, fb, fm) = (
        one.fill(&img, &hole).expect("a"),
        other.fill(&img, &hole).expect("b"),
        both.fill(&img, &hole).expect("both"),
    );
    // Two checkpoints that fill alike would prove nothing: they must differ by more than the
    // rounding the comparison below allows.
    let apart = fa
        .as_raw()
        .iter()
        .zip(fb.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0);
    assert!(
        apart >= 4,
        "the two checkpoints' fills differ by at most {apart}"
    );
    let mut worst = 0f64;
    for (((m, x), y), (i, o)) in fm
        .as_raw()
        .iter()
        .zip(fa.as_raw())
        .zip(fb.as_raw())
        .zip(img.as_raw().iter().enumerate())
    {
        let px = i as u32 / 3;
        if hole.get_pixel(px % img.width(), px / img.width())[0] == 0 {
            assert_eq!(m, o, "the ensemble changed a pixel outside the hole");
        } else {
            worst = worst.max((f64::from(*m) - (f64::from(*x) + f64::from(*y)) / 2.0).abs());
        }
    }
    assert!(
        worst <= 1.0,
        "the ensemble is off the mean of its fills by {worst}"
    );

    // Checkpoints trained on crops of another side are refused, naming the file.
    let c = train("c", 5, 64);
    let err = match load(&a).with_more(std::slice::from_ref(&c)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a 64 px checkpoint joined a 32 px one"),
    };
    assert!(
        err.contains("64 px") && err.contains(&c.display().to_string()),
        "{err}"
    );
}

#[test]
fn fills_copy_only_from_the_groups_own_defect_free_images() {
    let entry = |id: &str, role: Role, group: &str| {
        let path = RelPath::new(format!("images/{id}.png")).expect("path");
        ImageEntry::new(id, path, role, group)
    };
    let mut inpainted = entry("d1~twin", Role::Template, "g");
    inpainted.twin_status = Some(TwinStatus::Accepted);
    inpainted.inpaint = Some(InpaintInfo::default());
    let mut generated = entry("s1", Role::Good, "g");
    generated.synthetic = Some(crate::project::Provenance {
        source: "good-a".into(),
        mask_source: "random".into(),
        checkpoint: "0".repeat(64),
        seed: 1,
    });
    let mut images = vec![
        entry("good-b", Role::Good, "g"),
        entry("d1", Role::Defect, "g"),
        inpainted,
        generated,
        entry("good-other", Role::Good, "h"),
        entry("d2-temp", Role::Template, "g"),
        entry("good-a", Role::Good, "g"),
    ];
    let ids = |images: &[ImageEntry], g: &str| -> Vec<String> {
        reference_images(images, g)
            .iter()
            .map(|e| e.id.clone())
            .collect()
    };
    assert_eq!(ids(&images, "g"), ["d2-temp", "good-a", "good-b"]);
    assert_eq!(ids(&images, "h"), ["good-other"]);
    assert!(ids(&images, "none").is_empty());
    // A big group gives the cap, spread over it.
    for i in 0..200 {
        images.push(entry(&format!("many-{i:03}"), Role::Good, "big"));
    }
    let big = ids(&images, "big");
    assert_eq!(big.len(), exemplar::MAX_REFERENCES);
    assert_eq!(big.first().map(String::as_str), Some("many-000"));
    assert!(
        big.last().is_some_and(|l| l.as_str() > "many-190"),
        "{big:?}"
    );
}

#[test]
fn an_apply_counts_the_boxes_its_twins_copied() {
    let twin = |copied: usize, referenced: usize| {
        let path = RelPath::new("twins/t.png").expect("path");
        let mut t = ImageEntry::new("t", path, Role::Template, "g");
        t.inpaint = Some(InpaintInfo {
            copied,
            referenced,
            ..Default::default()
        });
        t
    };
    let mut s = ApplySummary::default();
    assert_eq!(s.copies_line(), None);
    s.count_copies(&twin(2, 0));
    assert_eq!(
        s.copies_line().as_deref(),
        Some("2 boxes copied from repeats")
    );
    s.count_copies(&twin(3, 1));
    s.count_copies(&ImageEntry::new(
        "g1",
        RelPath::new("images/g1.png").expect("path"),
        Role::Good,
        "g",
    ));
    assert_eq!((s.copied, s.referenced), (5, 1));
    assert_eq!(
        s.copies_line().as_deref(),
        Some("5 boxes copied from repeats, 1 of them from other images of the group")
    );
}
