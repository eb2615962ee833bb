//! The `inpaint` subcommands: `train`, `apply` (defect-free twins into a project) and `eval`
//! (measured fill quality on DeepPCB-layout pairs).

use std::path::PathBuf;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::dtgan::Preset;
use crate::dtgan::run::{StopReason, TrainControl, TrainEvent};
use crate::dtgan::train::Validation;
use crate::imaging::exemplar::{CopyRepeats, Turns};
use crate::inpaint::apply::{ApplyRequest, apply_project};
use crate::inpaint::config::InpaintConfig;
use crate::inpaint::data::CONTEXT_MARGIN;
use crate::inpaint::eval::{EvalRequest, evaluate};
use crate::inpaint::train::{InpaintTrainRequest, describe_context, train_inpaint};
use crate::nn::device::DeviceChoice;

/// `inpaint` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum InpaintCommand {
    /// Train the inpainting GAN on the defect-free images of one or more groups.
    Train(Box<InpaintTrainArgs>),
    /// Fill every defect's box with a trained model: defect-free twins, pending review.
    Apply(ApplyArgs),
    /// Measure fill quality on DeepPCB-layout pairs (defect image, real template, boxes).
    Eval(EvalArgs),
}

/// `inpaint train` arguments.
#[derive(Debug, clap::Args)]
pub struct InpaintTrainArgs {
    /// The project folder.
    #[arg(long)]
    pub project: PathBuf,
    /// Groups to train on, comma separated (default: every group).
    #[arg(long, value_delimiter = ',')]
    pub group: Vec<String>,
    /// Starting configuration.
    #[arg(long, value_enum, default_value = "cpu")]
    pub preset: Preset,
    /// The run folder (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Total generator steps (a resumed run continues up to this).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Stop with a checkpoint after this many minutes.
    #[arg(long)]
    pub max_minutes: Option<f64>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Start this new run from another run's networks (a checkpoint, or a run folder: its best
    /// checkpoint, else its last) instead of
    /// fresh weights, with this run's own settings (e.g. a larger --batch-size or --size, a lower
    /// --lr-g). The generator's width must match; the critics are reused when the crop size is
    /// the same.
    #[arg(long, conflicts_with = "resume")]
    pub init_from: Option<PathBuf>,
    /// Also learn from the real defect images of these groups (comma separated, or `all`), away
    /// from their defects: no crop touches a defect's box grown by 8 px, so the pixels the twins
    /// will fill stay unseen. Fits the model to the boards or products it will fill.
    #[arg(long, value_delimiter = ',')]
    pub context_groups: Option<Vec<String>>,
    /// Compute device.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Master seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Images per step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Base width c of the generator.
    #[arg(long)]
    pub width: Option<usize>,
    /// Training crop side in pixels (a multiple of 32).
    #[arg(long)]
    pub size: Option<usize>,
    /// Smallest and largest hole side as fractions of the crop, e.g. `0.15,0.4`.
    #[arg(long, value_delimiter = ',')]
    pub hole: Option<Vec<f32>>,
    /// Try this many places for each training crop's hole (its size drawn once) and keep the one
    /// over the most structure (edges), as defects sit on structure; 1: uniform holes.
    #[arg(long)]
    pub hole_draws: Option<u32>,
    /// Score each checkpoint by filling the defect boxes of this many real templates (DeepPCB
    /// pairs) and keep the best-scoring as `best`; 0: choose `best` by the validation L1.
    #[arg(long)]
    pub val_box_pairs: Option<usize>,
    /// Generator learning rate.
    #[arg(long)]
    pub lr_g: Option<f64>,
    /// Critic learning rate.
    #[arg(long)]
    pub lr_d: Option<f64>,
    /// Weight of the adversarial loss.
    #[arg(long)]
    pub gan_weight: Option<f64>,
    /// Discount of the L1 in the hole: a pixel d pixels inside the hole's border weighs
    /// gamma^d (the reference's 0.9; 1: plain L1, the hole's middle weighs as much as its rim).
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Checkpoint (and validate) every this many steps.
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Write a sample grid every this many steps.
    #[arg(long)]
    pub sample_every: Option<u64>,
}

impl InpaintTrainArgs {
    /// The preset with every option given on the command line applied.
    pub fn config(&self) -> InpaintConfig {
        let mut c = InpaintConfig::preset(self.preset);
        c.steps = self.steps.unwrap_or(c.steps);
        c.seed = self.seed.unwrap_or(c.seed);
        c.batch_size = self.batch_size.unwrap_or(c.batch_size);
        c.model.width = self.width.unwrap_or(c.model.width);
        c.model.image_size = self.size.unwrap_or(c.model.image_size);
        if let Some([lo, hi]) = self
            .hole
            .as_deref()
            .and_then(|h| <[f32; 2]>::try_from(h).ok())
        {
            c.hole_fraction = (lo, hi);
        }
        c.hole_draws = self.hole_draws.unwrap_or(c.hole_draws);
        c.val_box_pairs = self.val_box_pairs.unwrap_or(c.val_box_pairs);
        c.lr_g = self.lr_g.unwrap_or(c.lr_g);
        c.lr_d = self.lr_d.unwrap_or(c.lr_d);
        c.loss.gan = self.gan_weight.unwrap_or(c.loss.gan);
        c.loss.gamma = self.gamma.unwrap_or(c.loss.gamma);
        c.checkpoint_every = self.checkpoint_every.unwrap_or(c.checkpoint_every);
        c.sample_every = self.sample_every.unwrap_or(c.sample_every);
        c
    }
}

/// Runs `inpaint train`, with a progress bar on stderr and a summary on stdout.
pub fn run_train(args: &InpaintTrainArgs) -> anyhow::Result<()> {
    if let Some(h) = &args.hole
        && h.len() != 2
    {
        anyhow::bail!("--hole takes two fractions, MIN,MAX (e.g. 0.15,0.4), got {h:?}");
    }
    let context = args.context_groups.as_ref().map(|g| {
        if g.iter().any(|x| x == "all") {
            Vec::new()
        } else {
            g.clone()
        }
    });
    let req = InpaintTrainRequest {
        project: args.project.clone(),
        groups: args.group.clone(),
        context: context.clone(),
        run: args.out.clone(),
        config: args.config(),
        resume: args.resume,
        max_minutes: args.max_minutes,
        device: args.device,
        init_from: args.init_from.clone(),
    };
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("inpaint [{bar:30}] {pos}/{len} {elapsed}<{eta} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let control = TrainControl::new();
    let outcome = train_inpaint(&req, &control, &mut |ev| match ev {
        TrainEvent::Started {
            step,
            steps,
            pairs,
            val_pairs,
            ..
        } => {
            bar.set_length(steps);
            bar.set_position(step);
            let what = match &context {
                None => "defect-free images".to_string(),
                Some(g) => format!(
                    "images (defect-free ones, and the defect images of {} away from their defects)",
                    describe_context(Some(g))
                ),
            };
            bar.println(format!(
                "training inpainting: {pairs} {what}, {val_pairs} validation crops, from step {step} to {steps}"
            ));
        }
        TrainEvent::Metrics(m) => {
            bar.set_position(m.step);
            bar.set_message(format!(
                "L1 hole {:.4} outside {:.4} W {:.3} {:.2} it/s",
                m.l1_inside, m.l1_outside, m.wasserstein, m.it_per_s
            ));
            if let Some(v) = m.val_l1_inside {
                let boxes = m
                    .val_box_error
                    .map(|e| format!(", box error {:.2} %", 100.0 * e))
                    .unwrap_or_default();
                bar.println(format!(
                    "step {}: validation L1 in the holes {v:.4}{boxes}",
                    m.step
                ));
            }
        }
        TrainEvent::Checkpoint { step, .. } => bar.set_position(step),
        _ => {}
    })
    .with_context(|| format!("inpainting run {}", args.out.display()))?;
    bar.finish_and_clear();
    let why = match outcome.reason {
        StopReason::Finished => "finished",
        StopReason::Stopped => "stopped",
        StopReason::TimeLimit => "time limit reached",
    };
    println!(
        "{why} at step {}; checkpoint {}",
        outcome.step,
        outcome.last.display()
    );
    match (outcome.best, outcome.best_metric.as_deref()) {
        (Some((v, s)), Some(Validation::BOX_ERROR)) => {
            println!("best validation box error: {:.2} % at step {s}", 100.0 * v)
        }
        (Some((v, s)), _) => println!("best validation L1 in the holes: {v:.4} at step {s}"),
        (None, _) => {}
    }
    Ok(())
}

/// `inpaint apply` arguments.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The inpainting run folder (its best checkpoint) or a checkpoint file.
    #[arg(long)]
    pub run: PathBuf,
    /// More run folders or checkpoints (comma-separated): each box is filled with the mean of
    /// all their fills and `--run`'s (a checkpoint ensemble; the time grows with their number).
    #[arg(long, value_delimiter = ',')]
    pub also: Vec<PathBuf>,
    /// The project folder.
    #[arg(long)]
    pub project: PathBuf,
    /// Only defect images showing this class.
    #[arg(long)]
    pub class: Option<String>,
    /// Also remake twins that were accepted already.
    #[arg(long)]
    pub redo_accepted: bool,
    /// Compute device.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Fill each box as the mean of the fills of its eight flips and quarter turns (8x the
    /// compute).
    #[arg(long)]
    pub ensemble: bool,
    /// Fill each box from its rim inwards in rings of this many pixels, one pass each, each
    /// pass keeping its outer ring (0: in one pass).
    #[arg(long, default_value_t = 0)]
    pub peel: u32,
    #[command(flatten)]
    pub exemplar: ExemplarArgs,
}

/// Copying boxes from repeats of their surroundings, for `inpaint apply` and `inpaint eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExemplarArgs {
    /// Copy each box whose surroundings occur again elsewhere in its image (a trace that goes
    /// on, a row of pads) from the best-matching place, where the surroundings there mismatch
    /// by at most MAX (mean absolute grey difference over 12 px around the box, 6 px with
    /// `--exemplar-references`, as a fraction of full scale; without a value 0.05); the
    /// network fills the other boxes.
    #[arg(long, value_name = "MAX", num_args = 0..=1, default_missing_value = "0.05")]
    pub exemplar: Option<f64>,
    /// With `--exemplar`, also copy from places where the pattern is flipped or turned a
    /// quarter.
    #[arg(long, requires = "exemplar")]
    pub exemplar_turns: bool,
    /// With `--exemplar`, also copy from other defect-free images of the same board group
    /// (at most 64): `inpaint apply` searches the project's good images and real templates of
    /// the defect image's group, `inpaint eval` the other templates of the pair's group, never
    /// the pair's own.
    #[arg(long, requires = "exemplar")]
    pub exemplar_references: bool,
}

impl ExemplarArgs {
    /// The copying asked for; an error for a limit outside 0..=1.
    pub fn copy_repeats(&self) -> anyhow::Result<Option<CopyRepeats>> {
        self.exemplar
            .map(|max| {
                if !(0.0..=1.0).contains(&max) {
                    anyhow::bail!("--exemplar {max}: the mismatch limit is a fraction of full scale, from 0 to 1");
                }
                Ok(CopyRepeats {
                    max_mismatch: max,
                    turns: if self.exemplar_turns { Turns::All } else { Turns::None },
                    references: self.exemplar_references,
                })
            })
            .transpose()
    }
}

/// Runs `inpaint apply`.
pub fn run_apply(args: &ApplyArgs) -> anyhow::Result<()> {
    let req = ApplyRequest {
        run: args.run.clone(),
        also: args.also.clone(),
        project: args.project.clone(),
        class: args.class.clone(),
        redo_accepted: args.redo_accepted,
        device: args.device,
        ensemble: args.ensemble,
        peel: args.peel,
        exemplar: args.exemplar.copy_repeats()?,
    };
    let bar = super::progress_bar("twins");
    let s = apply_project(
        &req,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
        &|| false,
    )
    .with_context(|| format!("making twins in {}", args.project.display()))?;
    bar.finish_and_clear();
    println!(
        "{} twins made, pending review; skipped {} with a real template, {} already accepted, {} without a mask",
        s.made, s.real_twin, s.accepted, s.no_mask
    );
    println!(
        "seam score threshold {:.2}: {} twins above it (review them first)",
        s.threshold, s.flagged
    );
    if let Some(line) = s.copies_line() {
        println!("{line}");
    }
    Ok(())
}

/// `inpaint eval` arguments.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The inpainting run folder (its best checkpoint) or a checkpoint file.
    #[arg(long)]
    pub run: PathBuf,
    /// More run folders or checkpoints (comma-separated): each box is filled with the mean of
    /// all their fills and `--run`'s (a checkpoint ensemble; the time grows with their number).
    #[arg(long, value_delimiter = ',')]
    pub also: Vec<PathBuf>,
    /// A DeepPCB-layout folder: pairs/, boxes/ and index.csv.
    #[arg(long)]
    pub data: PathBuf,
    /// Pixels added around each box.
    #[arg(long, default_value_t = crate::inpaint::eval::DEFAULT_MARGIN)]
    pub margin: u32,
    /// Board groups to evaluate, comma separated (default: those the run did not train on).
    #[arg(long, value_delimiter = ',')]
    pub group: Vec<String>,
    /// Evaluate at most this many pairs (spread evenly).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write side-by-side examples (defect | filled | template) of the first pairs here.
    #[arg(long)]
    pub examples: Option<PathBuf>,
    /// How many pairs `--examples` writes.
    #[arg(long, default_value_t = 8)]
    pub examples_count: usize,
    /// Compute device.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Fill each box as the mean of the fills of its eight flips and quarter turns (8x the
    /// compute).
    #[arg(long)]
    pub ensemble: bool,
    /// Fill each box from its rim inwards in rings of this many pixels, one pass each, each
    /// pass keeping its outer ring (0: in one pass).
    #[arg(long, default_value_t = 0)]
    pub peel: u32,
    #[command(flatten)]
    pub exemplar: ExemplarArgs,
}

/// Runs `inpaint eval`.
pub fn run_eval(args: &EvalArgs) -> anyhow::Result<()> {
    let req = EvalRequest {
        run: args.run.clone(),
        also: args.also.clone(),
        data: args.data.clone(),
        margin: args.margin,
        groups: args.group.clone(),
        limit: args.limit,
        device: args.device,
        ensemble: args.ensemble,
        peel: args.peel,
        exemplar: args.exemplar.copy_repeats()?,
        examples: args.examples.clone().map(|d| (d, args.examples_count)),
    };
    let bar = super::progress_bar("eval");
    let r = evaluate(&req, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("evaluating {}", args.run.display()))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "{} pairs, {} boxes (+{} px) of group(s) {}; checkpoint {}{}{}{}{}",
        r.pairs,
        r.boxes,
        r.margin,
        r.groups.join(", "),
        r.checkpoint.display(),
        match r.also.len() {
            0 => String::new(),
            n => format!(" and {n} more, their fills averaged (--also)"),
        },
        if r.ensemble {
            "; fills: mean of the 8 flips and quarter turns (--ensemble)"
        } else {
            ""
        },
        match r.peel {
            0 => String::new(),
            p => format!("; filled from the rim inwards in {p} px rings (--peel)"),
        },
        match r.exemplar {
            None => String::new(),
            Some(x) => format!(
                "; copied from a repeat{} where it mismatched by at most {} (--exemplar): {} and {} (self-test) of {} parts{}",
                if x.turns == Turns::All {
                    ", flipped or turned,"
                } else {
                    ""
                },
                x.max_mismatch,
                r.copied_parts.0,
                r.copied_parts.1,
                r.parts,
                if x.references {
                    format!(
                        ", {} and {} of them from another template of the group (--exemplar-references)",
                        r.referenced_parts.0, r.referenced_parts.1
                    )
                } else {
                    String::new()
                }
            ),
        }
    );
    println!("{:<28} {:>16} {:>10}", "", "hole pixel error", "PSNR dB");
    let row = |name: &str, e: f64, p: f64| println!("{name:<28} {:>15.2}% {p:>10.2}", 100.0 * e);
    row("inpainted (real pairs)", r.hole_pixel_error, r.psnr);
    row(
        "inpainted (template self-test)",
        r.selftest_hole_pixel_error,
        r.selftest_psnr,
    );
    let b = &r.baselines;
    row("copy (no fill)", b.copy.hole_pixel_error, b.copy.psnr);
    row("mean fill", b.mean_fill.hole_pixel_error, b.mean_fill.psnr);
    row(
        "mean fill (self-test)",
        b.selftest_mean_fill.hole_pixel_error,
        b.selftest_mean_fill.psnr,
    );
    println!(
        "floor: defect image and template disagree on {:.2}% of the pixels outside the boxes (misalignment)",
        100.0 * r.floor_pixel_error
    );
    // One line of the breakdowns: range, boxes, share of the hole pixels, then the errors
    // (fractions) on the real pairs, in the self-test and of copying.
    let line = |range: &str, boxes: &str, [share, real, own, copy]: [f64; 4]| {
        println!(
            "  {range:<54} {boxes:>6} {:>6.1}% {:>8.2}% {:>9.2}% {:>5.2}%",
            100.0 * share,
            100.0 * real,
            100.0 * own,
            100.0 * copy
        );
    };
    let header = |title: &str, boxes: &str| {
        println!("{title}");
        println!(
            "  {:<54} {boxes:>6} {:>7} {:>9} {:>10} {:>6}",
            "", "pixels", "real", "self-test", "copy"
        );
    };
    let range = |from: u32, to: Option<u32>, open: &str| match to {
        None => format!("{from} px and {open}"),
        Some(to) => format!("{from}-{to} px"),
    };
    header(
        "hole pixel error by box size (long side, margin included):",
        "boxes",
    );
    for s in &r.by_size {
        let scaled = if s.scaled {
            " (window scaled down)"
        } else {
            ""
        };
        line(
            &format!("{}{scaled}", range(s.from_px, s.to_px, "more")),
            &s.boxes.to_string(),
            [
                s.pixel_share,
                s.hole_pixel_error,
                s.selftest_hole_pixel_error,
                s.copy_hole_pixel_error,
            ],
        );
    }
    header(
        "hole pixel error by depth in the hole (distance to the nearest pixel outside it):",
        "",
    );
    for d in &r.by_depth {
        line(
            &range(d.from_px, d.to_px, "deeper"),
            "",
            [
                d.pixel_share,
                d.hole_pixel_error,
                d.selftest_hole_pixel_error,
                d.copy_hole_pixel_error,
            ],
        );
    }
    match &r.context {
        Some(g) if g.is_empty() || g.iter().any(|g| r.groups.contains(g)) => println!(
            "note: the run also learned from the defect images of {}, away from their defects \
             (crops never touch a box grown by {CONTEXT_MARGIN} px): the templates and the boxes' \
             pixels stay unseen",
            describe_context(Some(g))
        ),
        _ => {}
    }
    if r.seen_in_training {
        println!(
            "note: the run trained on templates of these groups (or of every group): these are not figures for unseen boards"
        );
    }
    println!("{:.0} s", r.seconds);
    Ok(())
}
