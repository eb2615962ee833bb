//! `generate`, `seams` and `bench`: generation from the command line, the composite-mode
//! measurement, and speed figures.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use image::{GrayImage, RgbImage};

use crate::dtgan::batch::{BatchRequest, MaskSource, generate_batch, list_images};
use crate::dtgan::bench::{Net, NetBenchConfig, bench_net};
use crate::dtgan::data::{center_crop, collect_pairs, load_pair};
use crate::dtgan::generate::{Composite, DefectGenerator, composite_region, dilate};
use crate::dtgan::masks::BlobSpec;
use crate::dtgan::{Preset, TrainConfig};
use crate::nn::conv::{self, ConvKernel};
use crate::nn::device::DeviceChoice;
use crate::project::Project;

/// `generate` arguments.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// A training run folder (its best checkpoint is used) or a checkpoint file.
    #[arg(long)]
    pub run: PathBuf,
    /// Folder of defect-free images (any product, also one the model never saw).
    #[arg(long)]
    pub images: PathBuf,
    /// Folder of real masks to stamp (random place, flip, quarter turn, scale).
    #[arg(long, conflicts_with = "random", required_unless_present = "random")]
    pub masks: Option<PathBuf>,
    /// Make this many images with random blob masks.
    #[arg(long)]
    pub random: Option<usize>,
    /// Images to make with --masks (default: one per defect-free image).
    #[arg(long)]
    pub count: Option<usize>,
    /// Output folder (created; must be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Batch seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Which pixels change: none (whole tile), mask, or dilated:K.
    #[arg(long, default_value_t = Composite::default())]
    pub composite: Composite,
    /// Smallest and largest blob radius in pixels, with --random.
    #[arg(long, num_args = 2, value_names = ["MIN", "MAX"])]
    pub radius: Option<Vec<f32>>,
    /// Compute device.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
}

/// Runs `generate`.
pub fn run_generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let images = list_images(&args.images)?;
    let (masks, count) = match (&args.masks, args.random) {
        (Some(dir), _) => (
            MaskSource::Stamp(list_images(dir)?),
            args.count.unwrap_or(images.len()),
        ),
        (None, Some(n)) => {
            let mut spec = BlobSpec::default();
            if let Some(r) = &args.radius
                && let [lo, hi] = r.as_slice()
            {
                spec.radius = (*lo, *hi);
            }
            (MaskSource::Random(spec), n)
        }
        (None, None) => anyhow::bail!("give --masks DIR or --random N"),
    };
    let req = BatchRequest {
        run: args.run.clone(),
        images,
        masks,
        count,
        out: args.out.clone(),
        seed: args.seed,
        composite: args.composite,
        device: args.device,
    };
    let bar = indicatif::ProgressBar::new(count as u64);
    let started = Instant::now();
    let manifest = generate_batch(&req, &mut |done, _| bar.set_position(done as u64))
        .with_context(|| format!("generating into {}", args.out.display()))?;
    bar.finish_and_clear();
    println!(
        "{} images in {} ({:.0} ms each) from {} (sha256 {})",
        manifest.items.len(),
        args.out.display(),
        started.elapsed().as_secs_f64() * 1000.0 / manifest.items.len().max(1) as f64,
        manifest.checkpoint.display(),
        &manifest.checkpoint_sha256[..12],
    );
    Ok(())
}

/// `seams` arguments.
#[derive(Debug, clap::Args)]
pub struct SeamsArgs {
    /// A training run folder or checkpoint file.
    #[arg(long)]
    pub run: PathBuf,
    /// The project with (twin, defect, mask) pairs.
    #[arg(long)]
    pub project: PathBuf,
    /// The class.
    #[arg(long)]
    pub class: String,
    /// Pairs to measure.
    #[arg(long, default_value_t = 40)]
    pub limit: usize,
}

/// Mean |a - b| over the pixels within 2 px of the region's boundary (both sides).
fn seam_error(a: &RgbImage, b: &RgbImage, region: &GrayImage) -> Option<f64> {
    let outer = dilate(region, 2);
    let inv: GrayImage = GrayImage::from_fn(region.width(), region.height(), |x, y| {
        image::Luma([255 - region.get_pixel(x, y)[0]])
    });
    let inner = dilate(&inv, 2);
    let (mut sum, mut n) = (0.0, 0u64);
    for (x, y, p) in outer.enumerate_pixels() {
        if p[0] != 0 && inner.get_pixel(x, y)[0] != 0 {
            let (pa, pb) = (a.get_pixel(x, y), b.get_pixel(x, y));
            sum += (0..3)
                .map(|c| (f64::from(pa[c]) - f64::from(pb[c])).abs())
                .sum::<f64>()
                / 3.0;
            n += 1;
        }
    }
    (n > 0).then(|| sum / n as f64)
}

/// Runs `seams`: for each composite mode, how far the result is from the real defect image
/// along the composite boundary (lower = fewer seams).
pub fn run_seams(args: &SeamsArgs) -> anyhow::Result<()> {
    let g = DefectGenerator::load(&args.run, DeviceChoice::Auto)?;
    let project = Project::open(&args.project)?;
    let pairs = collect_pairs(&project, &args.class)?;
    let side = g.config.model.image_size;
    let modes = [
        Composite::None,
        Composite::Mask,
        Composite::Dilated(1),
        Composite::Dilated(2),
        Composite::Dilated(4),
        Composite::Dilated(8),
    ];
    let mut totals = vec![(0.0, 0usize); modes.len()];
    for pair in pairs.iter().take(args.limit) {
        let crop = center_crop(&load_pair(pair)?, 2 * side, 2 * side)?;
        for (mode, total) in modes.iter().zip(&mut totals) {
            let out = g.generate(&crop.twin, &crop.mask, *mode)?;
            let region = match mode {
                Composite::None => match g.tile_for(&crop.mask) {
                    Some(t) => crate::imaging::boxes::box_mask_from_rects(
                        2 * side as u32,
                        2 * side as u32,
                        &[t],
                    ),
                    None => continue,
                },
                _ => composite_region(&crop.mask, *mode),
            };
            if let Some(e) = seam_error(&out, &crop.defect, &region) {
                total.0 += e;
                total.1 += 1;
            }
        }
    }
    println!("composite  seam error (mean |generated - real| within 2 px of the boundary, 0-255)");
    for (mode, (sum, n)) in modes.iter().zip(totals) {
        println!(
            "{:<10} {:.2}  ({n} pairs)",
            mode.to_string(),
            sum / n.max(1) as f64
        );
    }
    Ok(())
}

/// `bench` arguments.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Presets to time.
    #[arg(long, value_enum, num_args = 1.., default_values = ["tiny", "cpu"])]
    pub presets: Vec<Preset>,
    /// Training steps timed per preset (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    pub steps: u64,
    /// Generation tile sides timed.
    #[arg(long, num_args = 1.., default_values_t = [128usize, 256])]
    pub sizes: Vec<usize>,
    /// Time one network's training step layer by layer on random inputs instead of the presets.
    #[arg(long, value_enum)]
    pub net: Option<Net>,
    /// Input side for `--net`.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Batch size for `--net`.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Generator base width for `--net` (the critic gets half).
    #[arg(long, default_value_t = 32)]
    pub width: usize,
    /// Convolution kernel on the CPU: this project's GEMM kernel or candle's built-in.
    #[arg(long, value_enum, default_value = "fast")]
    pub kernel: ConvKernel,
    /// Print one JSON object instead of the table (with `--net`).
    #[arg(long)]
    pub json: bool,
    /// Compute device for `--net`.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceChoice,
}

/// Runs `bench`: training step time per preset on a throw-away demo project, and generation
/// latency per tile side.
pub fn run_bench(args: &BenchArgs) -> anyhow::Result<()> {
    use crate::dtgan::train::{TrainRequest, Trainer};
    conv::set_kernel(args.kernel);
    if let Some(net) = args.net {
        let report = bench_net(&NetBenchConfig {
            net,
            size: args.size,
            batch: args.batch,
            width: args.width,
            steps: args.steps.max(1) as usize,
            device: crate::nn::device::select_device(args.device)?,
        })?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{report}");
        }
        return Ok(());
    }
    let dir = tempfile_dir()?;
    let root = dir.join("project");
    let demo = crate::demo::DemoConfig {
        size: 256,
        good_per_group: 2,
        defects_per_class_per_group: 2,
        ..Default::default()
    };
    crate::demo::make_demo(&root, &demo, &|_, _| {})?;
    println!("preset  size  width  batch  s/step   generate ms (tile side: ms)");
    for preset in &args.presets {
        let cfg = TrainConfig::preset(*preset);
        let req = TrainRequest {
            project: root.clone(),
            class: "particle".into(),
            run: dir.join(format!("run-{}", preset.name())),
            config: cfg.clone(),
            resume: false,
            max_minutes: None,
            device: DeviceChoice::Auto,
        };
        let mut t = Trainer::open(&req)?;
        t.step()?;
        let started = Instant::now();
        for _ in 0..args.steps {
            t.step()?;
        }
        let per_step = started.elapsed().as_secs_f64() / args.steps.max(1) as f64;
        t.save(&dir.join(format!("{}.safetensors", preset.name())))?;
        let g = DefectGenerator::load(
            &dir.join(format!("{}.safetensors", preset.name())),
            DeviceChoice::Auto,
        )?;
        let mut latencies = Vec::new();
        for &side in &args.sizes {
            let img = RgbImage::from_pixel(side as u32, side as u32, image::Rgb([90, 90, 90]));
            // A mask spanning the tile, so the generator sees the whole side x side image.
            let mut mask = GrayImage::new(side as u32, side as u32);
            for (x, y, p) in mask.enumerate_pixels_mut() {
                if (x < 2 && y < 2) || (x + 2 >= side as u32 && y + 2 >= side as u32) {
                    *p = image::Luma([255]);
                }
            }
            g.generate(&img, &mask, Composite::Mask)?;
            let started = Instant::now();
            for _ in 0..3 {
                g.generate(&img, &mask, Composite::Mask)?;
            }
            latencies.push(format!(
                "{side}: {:.0}",
                started.elapsed().as_secs_f64() * 1000.0 / 3.0
            ));
        }
        println!(
            "{:<7} {:<5} {:<6} {:<6} {:<8.2} {}",
            preset.name(),
            cfg.model.image_size,
            cfg.model.gen_width,
            cfg.batch_size,
            per_step,
            latencies.join(", ")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("dtgan-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
