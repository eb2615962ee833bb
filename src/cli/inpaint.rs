//! The `inpaint` subcommands: `train`, `apply` (defect-free twins into a project) and `eval`
//! (measured fill quality on DeepPCB-layout pairs).

use std::path::PathBuf;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::dtgan::Preset;
use crate::dtgan::run::{StopReason, TrainControl, TrainEvent};
use crate::inpaint::config::InpaintConfig;
use crate::inpaint::train::{InpaintTrainRequest, train_inpaint};
use crate::nn::device::DeviceChoice;

/// `inpaint` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum InpaintCommand {
    /// Train the inpainting GAN on the defect-free images of one or more groups.
    Train(InpaintTrainArgs),
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
    /// Generator learning rate.
    #[arg(long)]
    pub lr_g: Option<f64>,
    /// Critic learning rate.
    #[arg(long)]
    pub lr_d: Option<f64>,
    /// Weight of the adversarial loss.
    #[arg(long)]
    pub gan_weight: Option<f64>,
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
        c.lr_g = self.lr_g.unwrap_or(c.lr_g);
        c.lr_d = self.lr_d.unwrap_or(c.lr_d);
        c.loss.gan = self.gan_weight.unwrap_or(c.loss.gan);
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
    let req = InpaintTrainRequest {
        project: args.project.clone(),
        groups: args.group.clone(),
        run: args.out.clone(),
        config: args.config(),
        resume: args.resume,
        max_minutes: args.max_minutes,
        device: args.device,
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
            bar.println(format!(
                "training inpainting: {pairs} defect-free images, {val_pairs} validation crops, from step {step} to {steps}"
            ));
        }
        TrainEvent::Metrics(m) => {
            bar.set_position(m.step);
            bar.set_message(format!(
                "L1 hole {:.4} outside {:.4} W {:.3} {:.2} it/s",
                m.l1_inside, m.l1_outside, m.wasserstein, m.it_per_s
            ));
            if let Some(v) = m.val_l1_inside {
                bar.println(format!("step {}: validation L1 in the holes {v:.4}", m.step));
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
    if let Some((v, s)) = outcome.best {
        println!("best validation L1 in the holes: {v:.4} at step {s}");
    }
    Ok(())
}
