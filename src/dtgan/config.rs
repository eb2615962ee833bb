//! Training and model configuration of the defect-transfer GAN, with the three presets.
//!
//! A run's configuration is written to `RUN/config.json` and into every checkpoint, so a run can
//! be resumed or used for generation without remembering how it was started.

use serde::{Deserialize, Serialize};

/// Named starting points for [`TrainConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// A few thousand parameters at 32 px: for tests, seconds per hundred steps.
    Tiny,
    /// 128 px, width 16, batch 4: a few seconds per step on a laptop CPU.
    Cpu,
    /// The paper's size: 256 px, width 32 (a GPU is advisable).
    Paper,
}

impl Preset {
    /// Every preset, in display order.
    pub const ALL: [Preset; 3] = [Preset::Tiny, Preset::Cpu, Preset::Paper];

    /// The lowercase name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Cpu => "cpu",
            Preset::Paper => "paper",
        }
    }
}

/// The generator's activation between convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(x, 0)`, as the DTGAN paper says. With spectral norm and no batch norm it stalls:
    /// the L1 term outside the mask drives the output to zero, most units die in the first
    /// steps, and learning waits on a long plateau (see the README's measurements).
    Relu,
    /// `max(x, 0.2 x)`: never dies; the fastest to learn in our measurements.
    #[default]
    LeakyRelu,
    /// DeepFill v1's choice.
    Elu,
}

impl Activation {
    /// Applies it.
    pub fn apply(self, x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        self.fused().apply(x)
    }

    /// The same function, for fusing into a convolution.
    pub fn fused(self) -> crate::nn::conv::Act {
        use crate::nn::conv::Act;
        match self {
            Activation::Relu => Act::Relu,
            Activation::LeakyRelu => Act::Leaky(0.2),
            Activation::Elu => Act::Elu,
        }
    }
}

/// Sizes of the two networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Side of the square training crops and of the critic's input, in pixels (a multiple of 64
    /// keeps the critic's 4x4 grid and all strides exact; any multiple of 16 works).
    pub image_size: usize,
    /// Image channels (3: gray images are repeated on all three).
    pub channels: usize,
    /// Generator base width `c` (the paper: 32).
    pub gen_width: usize,
    /// Critic base width.
    pub critic_width: usize,
    /// The generator's activation.
    #[serde(default)]
    pub activation: Activation,
}

impl ModelConfig {
    /// Checks the sizes, with a sentence saying what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.image_size < 16 || !self.image_size.is_multiple_of(16) {
            return Err(format!(
                "image_size must be a multiple of 16 and at least 16, got {}",
                self.image_size
            ));
        }
        if self.channels == 0 {
            return Err("channels must be at least 1".into());
        }
        if self.gen_width < 2 || self.critic_width == 0 {
            return Err(format!(
                "gen_width must be at least 2 and critic_width at least 1, got {} and {}",
                self.gen_width, self.critic_width
            ));
        }
        Ok(())
    }
}

/// Weights of the generator's loss terms: `c_gan * L_gan + c1 * L1(in) + c2 * L1(out)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossWeights {
    /// Adversarial term.
    pub c_gan: f64,
    /// L1 inside the mask (the defect itself).
    pub c1: f64,
    /// L1 outside the mask (the background, which must stay as it was).
    pub c2: f64,
}

impl Default for LossWeights {
    /// The background term dominates (`c2 > c1`) because the generator must leave the
    /// background alone while the adversarial term keeps the defect from being a blurry mean.
    fn default() -> Self {
        Self {
            c_gan: 0.01,
            c1: 1.0,
            c2: 5.0,
        }
    }
}

impl LossWeights {
    /// Refuses weights that break the method: negative or non-finite terms, or `c2 <= c1`.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [("c_gan", self.c_gan), ("c1", self.c1), ("c2", self.c2)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} must be a finite number >= 0, got {v}"));
            }
        }
        if self.c2 <= self.c1 {
            return Err(format!(
                "c2 (L1 outside the mask, {}) must be greater than c1 (L1 inside, {}): the \
                 background has to be kept more strictly than the defect is copied",
                self.c2, self.c1
            ));
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}

/// Everything a training run needs besides its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Which preset this started from (informational).
    pub preset: Preset,
    /// Network sizes.
    pub model: ModelConfig,
    /// Loss weights.
    pub loss: LossWeights,
    /// Samples per step.
    pub batch_size: usize,
    /// Critic updates per generator update.
    pub n_critic: usize,
    /// Adam learning rate of the generator.
    pub lr_g: f64,
    /// Adam learning rate of the critic.
    pub lr_d: f64,
    /// Adam first-moment decay.
    pub beta1: f64,
    /// Adam second-moment decay.
    pub beta2: f64,
    /// Weight of the drift term `E[D(real)^2]` that keeps critic scores near zero.
    pub drift: f64,
    /// Steps to train in all (a resumed run continues up to this).
    pub steps: u64,
    /// Write metrics every this many steps.
    pub log_every: u64,
    /// Save `last` (and maybe `best`) every this many steps.
    pub checkpoint_every: u64,
    /// Write a sample grid every this many steps.
    pub sample_every: u64,
    /// Pairs held out for validation (fewer when the class has few pairs).
    pub val_pairs: usize,
    /// Training crops cover `image_size * s` source pixels, `s` drawn in this range, so the
    /// model learns defects near their native resolution.
    pub crop_side_scale: (f32, f32),
    /// Largest rotation of the augmentation, degrees.
    pub max_rotation_deg: f32,
    /// Random horizontal and vertical flips (turn off for defects whose orientation matters).
    #[serde(default = "yes")]
    pub flip: bool,
    /// Probability of CLAHE in the augmentation.
    pub clahe_probability: f32,
    /// Brightness jitter (0 = none).
    pub brightness: f32,
    /// Contrast jitter (0 = none).
    pub contrast: f32,
    /// Master seed: weights, sampling and augmentation all derive from it.
    pub seed: u64,
}

impl TrainConfig {
    /// The preset's configuration.
    pub fn preset(preset: Preset) -> Self {
        let base = Self {
            preset,
            model: ModelConfig {
                image_size: 128,
                channels: 3,
                gen_width: 16,
                critic_width: 16,
                activation: Activation::default(),
            },
            loss: LossWeights::default(),
            // candle's CPU convolutions manage ~4 GMAC/s here: a batch of 4 at 128 px is about
            // 3.5 s per step on two cores.
            batch_size: 4,
            n_critic: 1,
            lr_g: 1e-4,
            lr_d: 4e-4,
            beta1: 0.5,
            beta2: 0.9,
            drift: 1e-3,
            steps: 20_000,
            log_every: 10,
            checkpoint_every: 200,
            sample_every: 200,
            val_pairs: 8,
            crop_side_scale: (0.8, 1.25),
            max_rotation_deg: 10.0,
            flip: true,
            clahe_probability: 0.2,
            brightness: 0.1,
            contrast: 0.1,
            seed: 0,
        };
        match preset {
            Preset::Cpu => base,
            Preset::Tiny => Self {
                model: ModelConfig {
                    image_size: 32,
                    channels: 3,
                    gen_width: 8,
                    critic_width: 4,
                    activation: Activation::default(),
                },
                batch_size: 2,
                lr_g: 1e-3,
                lr_d: 1e-3,
                steps: 300,
                log_every: 5,
                checkpoint_every: 50,
                sample_every: 50,
                val_pairs: 2,
                ..base
            },
            Preset::Paper => Self {
                model: ModelConfig {
                    image_size: 256,
                    channels: 3,
                    gen_width: 32,
                    critic_width: 64,
                    activation: Activation::default(),
                },
                batch_size: 16,
                steps: 100_000,
                checkpoint_every: 1000,
                sample_every: 1000,
                ..base
            },
        }
    }

    /// Checks every field, with a sentence saying what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        self.model.validate()?;
        self.loss.validate()?;
        if self.batch_size == 0 || self.n_critic == 0 {
            return Err("batch_size and n_critic must be at least 1".into());
        }
        for (name, v) in [("lr_g", self.lr_g), ("lr_d", self.lr_d)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} must be a positive number, got {v}"));
            }
        }
        for (name, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(format!("{name} must be in [0, 1), got {v}"));
            }
        }
        if self.log_every == 0 || self.checkpoint_every == 0 || self.sample_every == 0 {
            return Err("log_every, checkpoint_every and sample_every must be at least 1".into());
        }
        let (lo, hi) = self.crop_side_scale;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return Err(format!(
                "crop_side_scale needs 0 < min <= max, got ({lo}, {hi})"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_grow() {
        let sizes: Vec<usize> = Preset::ALL
            .iter()
            .map(|p| {
                let cfg = TrainConfig::preset(*p);
                cfg.validate().expect("preset is valid");
                cfg.model.image_size * cfg.model.gen_width
            })
            .collect();
        assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
        let paper = TrainConfig::preset(Preset::Paper);
        assert_eq!((paper.model.image_size, paper.model.gen_width), (256, 32));
    }

    #[test]
    fn background_weight_must_exceed_defect_weight() {
        let mut w = LossWeights::default();
        w.validate().expect("defaults are valid");
        w.c2 = w.c1;
        let err = w.validate().expect_err("c2 == c1");
        assert!(err.contains("c2"), "{err}");
        w.c2 = f64::NAN;
        assert!(w.validate().is_err());
    }

    #[test]
    fn config_round_trips_through_json() {
        let cfg = TrainConfig::preset(Preset::Cpu);
        let text = serde_json::to_string(&cfg).expect("serialise");
        let back: TrainConfig = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, cfg);
    }
}
