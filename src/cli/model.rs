//! The model subcommands: `train` (and `generate`, in `generate.rs`).

use std::path::PathBuf;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::dtgan::run::{StopReason, TrainControl, TrainEvent};
use crate::dtgan::train::{TrainRequest, train};
use crate::dtgan::{Activation, Preset, TrainConfig};
use crate::nn::device::DeviceChoice;

/// `train` arguments.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The project folder.
    #[arg(long)]
    pub project: PathBuf,
    /// The defect class to learn.
    #[arg(long)]
    pub class: String,
    /// Starting configuration.
    #[arg(long, value_enum, default_value = "cpu")]
    pub preset: Preset,
    /// The run folder (created; holds checkpoints, metrics and sample grids).
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
    /// Compute device.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Master seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Samples per step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Generator base width c.
    #[arg(long)]
    pub width: Option<usize>,
    /// Training crop side in pixels.
    #[arg(long)]
    pub size: Option<usize>,
    /// Generator activation.
    #[arg(long, value_enum)]
    pub activation: Option<Activation>,
    /// Generator learning rate.
    #[arg(long)]
    pub lr_g: Option<f64>,
    /// Critic learning rate.
    #[arg(long)]
    pub lr_d: Option<f64>,
    /// Weight of the adversarial loss.
    #[arg(long)]
    pub c_gan: Option<f64>,
    /// Weight of L1 inside the mask.
    #[arg(long)]
    pub c1: Option<f64>,
    /// Weight of L1 outside the mask (must exceed c1).
    #[arg(long)]
    pub c2: Option<f64>,
    /// Critic steps per generator step.
    #[arg(long)]
    pub n_critic: Option<usize>,
    /// Checkpoint (and validate) every this many steps.
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Write a sample grid every this many steps.
    #[arg(long)]
    pub sample_every: Option<u64>,
}

impl TrainArgs {
    /// The preset with every option given on the command line applied.
    pub fn config(&self) -> TrainConfig {
        let mut c = TrainConfig::preset(self.preset);
        let set = |slot: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        c.steps = self.steps.unwrap_or(c.steps);
        c.seed = self.seed.unwrap_or(c.seed);
        c.batch_size = self.batch_size.unwrap_or(c.batch_size);
        c.model.gen_width = self.width.unwrap_or(c.model.gen_width);
        c.model.image_size = self.size.unwrap_or(c.model.image_size);
        c.model.activation = self.activation.unwrap_or(c.model.activation);
        set(&mut c.lr_g, self.lr_g);
        set(&mut c.lr_d, self.lr_d);
        set(&mut c.loss.c_gan, self.c_gan);
        set(&mut c.loss.c1, self.c1);
        set(&mut c.loss.c2, self.c2);
        c.n_critic = self.n_critic.unwrap_or(c.n_critic);
        c.checkpoint_every = self.checkpoint_every.unwrap_or(c.checkpoint_every);
        c.sample_every = self.sample_every.unwrap_or(c.sample_every);
        c
    }
}

/// Runs `train`, with a progress bar on stderr and a summary on stdout.
pub fn run_train(args: &TrainArgs) -> anyhow::Result<()> {
    let req = TrainRequest {
        project: args.project.clone(),
        class: args.class.clone(),
        run: args.out.clone(),
        config: args.config(),
        resume: args.resume,
        max_minutes: args.max_minutes,
        device: args.device,
    };
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("train [{bar:30}] {pos}/{len} {elapsed}<{eta} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let control = TrainControl::new();
    let outcome = train(&req, &control, &mut |ev| match ev {
        TrainEvent::Started {
            step,
            steps,
            pairs,
            val_pairs,
            ..
        } => {
            bar.set_length(steps);
            bar.set_position(step);
            bar.println(format!(
                "training `{}`: {pairs} pairs, {val_pairs} for validation, from step {step} to {steps}",
                args.class
            ));
        }
        TrainEvent::Metrics(m) => {
            bar.set_position(m.step);
            bar.set_message(format!(
                "L1 in {:.4} out {:.4} W {:.3} {:.2} it/s",
                m.l1_inside, m.l1_outside, m.wasserstein, m.it_per_s
            ));
        }
        TrainEvent::Checkpoint { step, .. } => bar.set_position(step),
        _ => {}
    })
    .with_context(|| format!("training run {}", args.out.display()))?;
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
    if let Some((v, s)) = outcome.best {
        println!("best validation L1 inside the mask: {v:.4} at step {s}");
    }
    Ok(())
}
