//! End-to-end tests of training on small demo projects.

use std::path::{Path, PathBuf};

use super::config::{Preset, TrainConfig};
use super::model::read_checkpoint;
use super::run::{StopReason, TrainControl, TrainEvent, read_metrics};
use super::train::{Session as _, TrainError, TrainRequest, Trainer, train};
use crate::demo::{DemoConfig, make_demo};
use crate::nn::device::DeviceChoice;
use crate::project::{Project, Role};

/// A demo project with 64 px images; with `only_one`, a single defect image of `dark_spot`.
fn project(dir: &Path, only_one: bool) -> PathBuf {
    let root = dir.join("project");
    let cfg = DemoConfig::small(3, 1, 2);
    make_demo(&root, &cfg, &|_, _| {}).expect("demo");
    if only_one {
        let mut p = Project::open(&root).expect("open");
        let keep = p
            .manifest
            .images
            .iter()
            .find(|e| e.role == Role::Defect && e.class.as_deref() == Some("dark_spot"))
            .map(|e| e.id.clone())
            .expect("a dark spot");
        p.manifest.images.retain(|e| match e.role {
            Role::Defect => e.id == keep,
            Role::Template => e.twin_of.as_deref() == Some(keep.as_str()),
            Role::Good => true,
        });
        p.save().expect("save");
    }
    root
}

fn request(project: &Path, run: &Path, config: TrainConfig) -> TrainRequest {
    TrainRequest {
        project: project.to_path_buf(),
        class: "dark_spot".into(),
        run: run.to_path_buf(),
        config,
        resume: false,
        max_minutes: None,
        device: DeviceChoice::Cpu,
    }
}

#[test]
fn overfits_one_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = project(dir.path(), true);
    let mut cfg = TrainConfig::preset(Preset::Tiny);
    // Crops of twice the model's side: the whole 64 px image, every time.
    cfg.crop_side_scale = (2.0, 2.0);
    cfg.max_rotation_deg = 0.0;
    cfg.clahe_probability = 0.0;
    cfg.brightness = 0.0;
    cfg.contrast = 0.0;
    cfg.flip = false;
    let mut t = Trainer::open(&request(&root, &dir.path().join("run"), cfg)).expect("open");
    assert_eq!(t.pair_counts(), (1, 1));
    let before = t.validate().expect("validate").expect("one pair");
    let mut after = before;
    for step in 1..=300 {
        t.step().expect("step");
        if step % 25 == 0 {
            after = t.validate().expect("validate").expect("one pair");
            if after * 5.0 < before {
                break;
            }
        }
    }
    assert!(
        after * 5.0 < before,
        "L1 inside the mask fell only from {before} to {after}"
    );
}

fn generator_values(path: &Path) -> Vec<(String, Vec<f32>)> {
    let (tensors, _) = read_checkpoint(path).expect("checkpoint");
    let mut out: Vec<(String, Vec<f32>)> = tensors
        .iter()
        .filter(|(k, _)| k.starts_with("gen.") || k.starts_with("critic."))
        .map(|(k, t)| {
            let v = t.flatten_all().and_then(|t| t.to_vec1()).expect("values");
            (k.clone(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn resumed_run_continues_the_same_curve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = project(dir.path(), false);
    let mut cfg = TrainConfig::preset(Preset::Tiny);
    cfg.steps = 20;
    cfg.checkpoint_every = 10;
    cfg.log_every = 1;
    let control = TrainControl::new();

    let straight = dir.path().join("straight");
    let out = train(
        &request(&root, &straight, cfg.clone()),
        &control,
        &mut |_| {},
    )
    .expect("20 steps");
    assert_eq!((out.step, out.reason), (20, StopReason::Finished));

    let split = dir.path().join("split");
    let mut first = cfg.clone();
    first.steps = 10;
    train(&request(&root, &split, first), &control, &mut |_| {}).expect("10 steps");
    let mut again = request(&root, &split, cfg);
    again.resume = true;
    let out = train(&again, &control, &mut |_| {}).expect("10 more");
    assert_eq!(out.step, 20);

    let a = generator_values(&straight.join("last.safetensors"));
    let b = generator_values(&split.join("last.safetensors"));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let worst = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{name} differs by {worst}");
    }
    let ma = read_metrics(&straight.join("metrics.jsonl")).expect("metrics");
    let mb = read_metrics(&split.join("metrics.jsonl")).expect("metrics");
    let steps: Vec<u64> = mb.iter().map(|m| m.step).collect();
    assert_eq!(
        steps,
        (1..=20).collect::<Vec<_>>(),
        "one line per step, no repeats"
    );
    for (x, y) in ma.iter().zip(&mb) {
        assert!(
            (x.loss_g - y.loss_g).abs() < 1e-4,
            "step {}: {} vs {}",
            x.step,
            x.loss_g,
            y.loss_g
        );
    }
}

#[test]
fn stop_saves_a_checkpoint_and_samples_are_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = project(dir.path(), false);
    let mut cfg = TrainConfig::preset(Preset::Tiny);
    cfg.log_every = 1;
    cfg.sample_every = 3;
    let run = dir.path().join("run");
    let control = TrainControl::new();
    let mut samples = Vec::new();
    let stopper = control.clone();
    let out = train(&request(&root, &run, cfg), &control, &mut |ev| match ev {
        TrainEvent::Metrics(m) if m.step == 7 => stopper.stop(),
        TrainEvent::Sample { step, path } => samples.push((step, path)),
        _ => {}
    })
    .expect("train");
    assert_eq!((out.step, out.reason), (7, StopReason::Stopped));
    assert!(out.last.exists());
    let steps: Vec<u64> = samples.iter().map(|s| s.0).collect();
    assert_eq!(steps, vec![0, 3, 6]);
    let grid = image::open(&samples[1].1).expect("grid png");
    assert_eq!(grid.width(), 4 * 32 + 6, "twin | mask | generated | real");

    // The folder now holds a run: starting afresh is refused, resuming is not.
    let again = request(&root, &run, TrainConfig::preset(Preset::Tiny));
    let err = Trainer::open(&again).err().expect("run exists");
    assert!(matches!(err, TrainError::RunExists(_)), "{err}");
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = project(dir.path(), false);
    let run = dir.path().join("run");
    let mut t =
        Trainer::open(&request(&root, &run, TrainConfig::preset(Preset::Tiny))).expect("open");
    t.step().expect("a good step");
    t.checkpoint().expect("checkpoint");
    let saved = std::fs::read(run.join("last.safetensors")).expect("read");
    {
        let data = t.nets.gen_vars.data().lock().expect("lock");
        let (_, var) = data.iter().next().expect("a variable");
        let nan = var.ones_like().and_then(|o| o * f64::NAN).expect("nan");
        var.set(&nan).expect("poison");
    }
    let err = t.step().expect_err("NaN must stop training");
    let msg = err.to_string();
    assert!(
        matches!(err, TrainError::NonFinite { step: 2, .. }),
        "{msg}"
    );
    assert!(msg.contains("last.safetensors"), "{msg}");
    assert_eq!(
        std::fs::read(run.join("last.safetensors")).expect("read"),
        saved
    );
}

#[test]
fn class_without_twins_is_explained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = project(dir.path(), false);
    let mut p = Project::open(&root).expect("open");
    for e in &mut p.manifest.images {
        e.twin = None;
    }
    p.save().expect("save");
    let req = request(
        &root,
        &dir.path().join("run"),
        TrainConfig::preset(Preset::Tiny),
    );
    let err = Trainer::open(&req).err().expect("no twins").to_string();
    assert!(
        err.contains("dark_spot") && err.contains("no defect-free twin"),
        "{err}"
    );
    let mut resume = req;
    resume.resume = true;
    let err = Trainer::open(&resume)
        .err()
        .expect("nothing to resume")
        .to_string();
    assert!(err.contains("no checkpoint"), "{err}");
}

/// A tiny run with a checkpoint (5 steps), for generation tests.
fn tiny_run(dir: &Path) -> (PathBuf, PathBuf) {
    let root = project(dir, false);
    let run = dir.join("run");
    let mut cfg = TrainConfig::preset(Preset::Tiny);
    cfg.steps = 5;
    train(
        &request(&root, &run, cfg),
        &TrainControl::new(),
        &mut |_| {},
    )
    .expect("train");
    (root, run)
}

fn good_images(root: &Path) -> Vec<PathBuf> {
    let p = Project::open(root).expect("project");
    p.manifest
        .images
        .iter()
        .filter(|e| e.role == Role::Good)
        .map(|e| p.abs(&e.path))
        .collect()
}

#[test]
fn generation_changes_only_the_composite_region() {
    use super::generate::{Composite, DefectGenerator, composite_region};
    use super::masks::{BlobSpec, random_blob};
    use rand::SeedableRng;
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, run) = tiny_run(dir.path());
    let g = DefectGenerator::load(&run, DeviceChoice::Cpu).expect("load");
    assert_eq!(g.checkpoint_sha256.len(), 64);
    let image = crate::imaging::io::load_rgb8(&good_images(&root)[0]).expect("image");
    let (w, h) = image.dimensions();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mask = random_blob(w, h, &BlobSpec::default(), &mut rng);
    let tile = g.tile_for(&mask).expect("tile");
    assert!(
        tile.w.is_multiple_of(4)
            && tile.h.is_multiple_of(4)
            && tile.right() <= w
            && tile.bottom() <= h
    );
    for mode in [Composite::Mask, Composite::Dilated(3), Composite::None] {
        let out = g.generate(&image, &mask, mode).expect("generate");
        let region = composite_region(&mask, mode);
        let mut changed = 0;
        for (x, y, p) in out.enumerate_pixels() {
            let inside = tile.contains(x, y) && region.get_pixel(x, y)[0] != 0;
            if !inside {
                assert_eq!(p, image.get_pixel(x, y), "{mode}: pixel ({x}, {y}) changed");
            } else if p != image.get_pixel(x, y) {
                changed += 1;
            }
        }
        assert!(changed > 0, "{mode}: nothing was generated");
    }
    let empty = image::GrayImage::new(w, h);
    assert_eq!(
        g.generate(&image, &empty, Composite::None).expect("empty"),
        image
    );
}

#[test]
fn batches_reproduce_byte_for_byte() {
    use super::batch::{BatchRequest, MaskSource, generate_batch, make_item};
    use super::generate::{Composite, DefectGenerator};
    use super::masks::BlobSpec;
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, run) = tiny_run(dir.path());
    let p = Project::open(&root).expect("project");
    let masks: Vec<PathBuf> = p
        .manifest
        .images
        .iter()
        .filter_map(|e| e.mask.as_ref().map(|m| p.abs(m)))
        .collect();
    let make = |out: &str, masks: MaskSource| BatchRequest {
        run: run.clone(),
        images: good_images(&root),
        masks,
        count: 5,
        out: dir.path().join(out),
        seed: 11,
        composite: Composite::Dilated(2),
        device: DeviceChoice::Cpu,
    };
    let a = make("a", MaskSource::Random(BlobSpec::default()));
    let b = make("b", MaskSource::Random(BlobSpec::default()));
    let ma = generate_batch(&a, &mut |_, _| {}).expect("batch a");
    generate_batch(&b, &mut |_, _| {}).expect("batch b");
    assert_eq!(ma.items.len(), 5);
    for item in &ma.items {
        for f in [&item.image, &item.mask] {
            let x = std::fs::read(a.out.join(f)).expect("a");
            let y = std::fs::read(b.out.join(f)).expect("b");
            assert!(x == y, "{f} differs between two runs with the same seed");
        }
    }
    // One item alone, from its manifest entry, gives the same file.
    let g = DefectGenerator::load(&run, DeviceChoice::Cpu).expect("load");
    let (img, _, item) = make_item(&g, &a, 3).expect("item 3");
    assert_eq!(item, ma.items[3]);
    let saved = image::open(a.out.join(&item.image)).expect("png").to_rgb8();
    assert_eq!(saved, img);
    // Stamped real masks, and the refusal to write into a used folder.
    let s = make("s", MaskSource::Stamp(masks));
    let ms = generate_batch(&s, &mut |_, _| {}).expect("stamped");
    assert!(ms.items.iter().all(|i| i.mask_source.ends_with(".png")));
    let err = generate_batch(&s, &mut |_, _| {}).expect_err("not empty");
    assert!(err.to_string().contains("not empty"), "{err}");
}

/// Benchmark, not a test: how fast each activation lets the generator fit one fixed batch
/// (L1 terms only). `cargo test --release --lib dtgan::tests::bench_activations -- --ignored
/// --nocapture`
#[test]
#[ignore]
fn bench_activations() {
    use super::config::Activation;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = project(dir.path(), true);
    let p = Project::open(&root).expect("project");
    let pairs = super::data::collect_pairs(&p, "dark_spot").expect("pairs");
    let pair = super::data::load_pair(&pairs[0]).expect("pair");
    let crop = super::data::center_crop(&pair, 32, 32).expect("crop");
    let dev = candle_core::Device::Cpu;
    let (twin, real, mask) = super::data::batch_tensors(&[crop], &dev).expect("batch");
    for activation in [Activation::Relu, Activation::LeakyRelu, Activation::Elu] {
        for lr in [1e-3, 3e-3] {
            let mut cfg = TrainConfig::preset(Preset::Tiny);
            cfg.model.activation = activation;
            let nets = super::model::Dtgan::new(&cfg.model, &dev, 0).expect("nets");
            nets.generator.calibrate(&twin, &mask).expect("calibrate");
            let mut opt = super::adam::Adam::new(&nets.gen_vars, lr, 0.5, 0.9).expect("adam");
            let mut curve = Vec::new();
            for step in 0..=200 {
                let fake = nets.generator.forward(&twin, &mask, true).expect("forward");
                let (inside, outside) = super::model::masked_l1(&fake, &real, &mask).expect("l1");
                if step % 40 == 0 {
                    curve.push(format!("{:.3}", inside.to_scalar::<f32>().expect("scalar")));
                }
                let loss = (inside + (outside * cfg.loss.c2).expect("scale")).expect("loss");
                opt.backward_step(&loss).expect("step");
            }
            eprintln!("{activation:?} lr {lr}: L1 inside at steps 0, 40, ..., 200: {curve:?}");
        }
    }
}

/// A session whose validations are scripted and whose saves write the step into the file.
struct Scripted {
    state: super::model::TrainState,
    run: super::run::RunDir,
    validations: Vec<super::train::Validation>,
}

impl super::train::Session for Scripted {
    fn state(&self) -> &super::model::TrainState {
        &self.state
    }
    fn state_mut(&mut self) -> &mut super::model::TrainState {
        &mut self.state
    }
    fn schedule(&self) -> super::train::Schedule {
        super::train::Schedule {
            steps: self.validations.len() as u64,
            log_every: 1,
            checkpoint_every: 1,
            sample_every: 1000,
        }
    }
    fn run_dir(&self) -> &super::run::RunDir {
        &self.run
    }
    fn counts(&self) -> (usize, usize) {
        (1, 1)
    }
    fn step(&mut self) -> Result<super::train::StepLosses, TrainError> {
        self.state.step += 1;
        Ok(super::train::StepLosses::default())
    }
    fn validate(&self) -> Result<Option<super::train::Validation>, TrainError> {
        match self.validations.get(self.state.step as usize - 1) {
            Some(v) => Ok(Some(*v)),
            None => Err(TrainError::Validation("a template went missing".into())),
        }
    }
    fn save(&self, path: &Path) -> Result<(), TrainError> {
        std::fs::write(path, self.state.step.to_string()).map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
    fn write_sample(&self) -> Result<Option<PathBuf>, TrainError> {
        Ok(None)
    }
}

#[test]
fn best_is_chosen_by_one_measure_and_a_new_measure_starts_it_afresh() {
    use super::train::Validation;
    let dir = tempfile::tempdir().expect("tempdir");
    let boxes = |l1: f64, e: f64| Validation {
        l1_inside: l1,
        box_error: Some(e),
    };
    let mut s = Scripted {
        // A run saved before the box error existed: its best is an L1, with no measure named.
        state: super::model::TrainState {
            format: super::model::CHECKPOINT_FORMAT,
            step: 0,
            best: Some((0.02, 0)),
            best_metric: None,
            elapsed_s: 0.0,
        },
        run: super::run::RunDir::new(dir.path()),
        validations: vec![
            Validation::l1(0.03),
            boxes(0.001, 0.06),
            boxes(0.0005, 0.07),
            boxes(0.002, 0.05),
            boxes(0.0001, f64::NAN),
        ],
    };
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).ok();
    let best_file = || read("best.safetensors");
    std::fs::write(dir.path().join("best.safetensors"), "the L1 best").expect("write");
    let mut seen = Vec::new();
    for _ in 0..5 {
        super::train::Session::step(&mut s).expect("step");
        super::train::Session::checkpoint(&mut s).expect("checkpoint");
        seen.push((s.state.best, s.state.best_metric.clone(), best_file()));
    }
    let bx = Some(Validation::BOX_ERROR.to_string());
    assert_eq!(
        seen,
        [
            // An L1 worse than the old L1 best: no new best.
            (Some((0.02, 0)), None, Some("the L1 best".into())),
            // The first box error replaces an L1 best, though larger.
            (Some((0.06, 2)), bx.clone(), Some("2".into())),
            // A worse box error does not, whatever its L1.
            (Some((0.06, 2)), bx.clone(), Some("2".into())),
            (Some((0.05, 4)), bx.clone(), Some("4".into())),
            // Nor does a box error that is not a number.
            (Some((0.05, 4)), bx, Some("4".into())),
        ]
    );
    // The best of the other measure was kept, not overwritten.
    assert_eq!(
        read("best-l1_inside.safetensors").as_deref(),
        Some("the L1 best")
    );
    // A validation that fails saves `last` first, so the steps since the last checkpoint stay.
    super::train::Session::step(&mut s).expect("step");
    let err = super::train::Session::checkpoint(&mut s).expect_err("no validation at step 6");
    assert!(err.to_string().contains("a template went missing"), "{err}");
    assert_eq!(read("last.safetensors").as_deref(), Some("6"));
}
