//! Configuration of the inpainting GAN, with the three presets.
//!
//! Like a DTGAN run, an inpainting run writes its configuration to `RUN/config.json` and into
//! every checkpoint.

use serde::{Deserialize, Serialize};

use crate::dtgan::{Activation, Preset};

/// Sizes of the inpainting networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InpaintModel {
    /// Side of the square training crops, in pixels (a multiple of 32: the refinement network
    /// matches patches at a quarter of it, halved again).
    pub image_size: usize,
    /// Image channels (3: gray images are repeated).
    pub channels: usize,
    /// Base width `c` of the coarse and refinement networks (DeepFill v1: 32).
    pub width: usize,
    /// Base width of the critics (DeepFill v1: 64).
    pub critic_width: usize,
    /// Activation between convolutions (DeepFill v1: ELU).
    pub activation: Activation,
}

impl InpaintModel {
    /// Checks the sizes, with a sentence saying what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.image_size < 32 || !self.image_size.is_multiple_of(32) {
            return Err(format!(
                "image_size must be a multiple of 32 and at least 32, got {}",
                self.image_size
            ));
        }
        if self.channels == 0 || self.width < 2 || self.critic_width == 0 {
            return Err(format!(
                "channels and critic_width must be at least 1 and width at least 2, got {}, {} and {}",
                self.channels, self.critic_width, self.width
            ));
        }
        Ok(())
    }
}

/// Weights of the generator's loss terms, applied to both stages (coarse and refined).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InpaintLoss {
    /// Spatially discounted L1 inside the hole.
    pub hole: f64,
    /// L1 outside the hole (the networks also reconstruct the known pixels).
    pub outside: f64,
    /// Adversarial term (Wasserstein, on the completed image).
    pub gan: f64,
    /// Discount per pixel of distance from the hole's border: pixels deep inside the hole,
    /// which the context determines least, weigh less.
    pub gamma: f64,
}

impl Default for InpaintLoss {
    /// The reference weights: 1.2 / 1.2 / 0.001, gamma 0.9.
    fn default() -> Self {
        Self {
            hole: 1.2,
            outside: 1.2,
            gan: 0.001,
            gamma: 0.9,
        }
    }
}

/// Everything an inpainting run needs besides its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InpaintConfig {
    /// Which preset this started from (informational).
    pub preset: Preset,
    /// Network sizes.
    pub model: InpaintModel,
    /// Loss weights.
    pub loss: InpaintLoss,
    /// Images per step.
    pub batch_size: usize,
    /// Critic updates per generator update.
    pub n_critic: usize,
    /// Adam learning rate of the generator.
    pub lr_g: f64,
    /// Adam learning rate of the critics.
    pub lr_d: f64,
    /// Adam first-moment decay.
    pub beta1: f64,
    /// Adam second-moment decay.
    pub beta2: f64,
    /// Weight of the drift term `E[D(real)^2]`.
    pub drift: f64,
    /// Steps to train in all (a resumed run continues up to this).
    pub steps: u64,
    /// Write metrics every this many steps.
    pub log_every: u64,
    /// Save `last` (and maybe `best`) every this many steps.
    pub checkpoint_every: u64,
    /// Write a sample grid every this many steps.
    pub sample_every: u64,
    /// Images held out for validation (fewer when there are few).
    pub val_images: usize,
    /// Real templates (evenly spread over the run's, held out or not) whose defect images'
    /// boxes are cut into them and filled at each checkpoint to score it (`val_box_error`); the
    /// lowest score makes `best`. 0, or no real templates: `best` by the validation L1.
    #[serde(default = "default_val_box_pairs")]
    pub val_box_pairs: usize,
    /// Side of the random square holes, as a fraction of `image_size` (min, max). The method
    /// works best below a third; at most a half (the local critic's window).
    pub hole_fraction: (f32, f32),
    /// Places tried for each training crop's hole (its size is drawn once); the one over the
    /// most structure (brightness steps between neighbouring pixels) is kept. 1: uniformly
    /// placed holes (DeepFill v1). Validation holes are always uniform. Defects
    /// sit on structure (a trace's edge, a pad), so the holes the model is asked to fill are
    /// rarely flat, while uniform holes often are.
    #[serde(default = "one")]
    pub hole_draws: u32,
    /// Training crops cover `image_size * s` source pixels, `s` drawn in this range (1: the
    /// native resolution, at which `apply` fills boxes).
    pub crop_side_scale: (f32, f32),
    /// Random flips and quarter turns of the crops.
    pub flip: bool,
    /// Master seed.
    pub seed: u64,
}

impl InpaintConfig {
    /// The preset's configuration.
    pub fn preset(preset: Preset) -> Self {
        let base = Self {
            preset,
            model: InpaintModel {
                image_size: 128,
                channels: 3,
                width: 16,
                critic_width: 16,
                activation: Activation::Elu,
            },
            loss: InpaintLoss::default(),
            batch_size: 4,
            n_critic: 1,
            lr_g: 1e-4,
            lr_d: 1e-4,
            beta1: 0.5,
            beta2: 0.9,
            drift: 1e-3,
            steps: 20_000,
            log_every: 10,
            checkpoint_every: 200,
            sample_every: 200,
            val_images: 8,
            val_box_pairs: default_val_box_pairs(),
            hole_fraction: (0.15, 0.4),
            hole_draws: 1,
            crop_side_scale: (1.0, 1.0),
            flip: true,
            seed: 0,
        };
        match preset {
            Preset::Cpu => base,
            Preset::Tiny => Self {
                model: InpaintModel {
                    image_size: 32,
                    channels: 3,
                    width: 4,
                    critic_width: 4,
                    activation: Activation::Elu,
                },
                batch_size: 2,
                lr_g: 1e-3,
                lr_d: 1e-3,
                steps: 200,
                log_every: 5,
                checkpoint_every: 50,
                sample_every: 50,
                val_images: 2,
                val_box_pairs: 4,
                ..base
            },
            Preset::Paper => Self {
                model: InpaintModel {
                    image_size: 256,
                    channels: 3,
                    width: 32,
                    critic_width: 64,
                    activation: Activation::Elu,
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
        let l = &self.loss;
        for (name, v) in [("hole", l.hole), ("outside", l.outside), ("gan", l.gan)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!(
                    "loss weight {name} must be a finite number >= 0, got {v}"
                ));
            }
        }
        if !(l.gamma > 0.0 && l.gamma <= 1.0) {
            return Err(format!("gamma must be in (0, 1], got {}", l.gamma));
        }
        if self.batch_size == 0 || self.n_critic == 0 || self.val_images == 0 {
            return Err("batch_size, n_critic and val_images must be at least 1".into());
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
        let (lo, hi) = self.hole_fraction;
        if !(lo > 0.0 && lo <= hi && hi <= 0.5) {
            return Err(format!(
                "hole_fraction needs 0 < min <= max <= 0.5, got ({lo}, {hi})"
            ));
        }
        if self.hole_draws == 0 {
            return Err("hole_draws must be at least 1".into());
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

/// The default of [`InpaintConfig::hole_draws`] for configurations written before it existed.
fn one() -> u32 {
    1
}

/// The default of [`InpaintConfig::val_box_pairs`]: on DeepPCB about 400 boxes, 10-15 s a
/// checkpoint on two CPU cores at the `cpu` preset's size. Fewer rank checkpoints worse (eight
/// pairs' 62 boxes ranked ten checkpoints with a Spearman correlation of 0.45 against the
/// unseen pairs' error).
fn default_val_box_pairs() -> usize {
    64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_grow() {
        let mut last = 0;
        for p in Preset::ALL {
            let cfg = InpaintConfig::preset(p);
            cfg.validate().expect("valid preset");
            let size = cfg.model.image_size * cfg.model.width;
            assert!(size > last, "{p:?}");
            last = size;
        }
        let mut cfg = InpaintConfig::preset(Preset::Tiny);
        cfg.hole_fraction = (0.2, 0.7);
        assert!(
            cfg.validate()
                .expect_err("too big")
                .contains("hole_fraction")
        );
        cfg = InpaintConfig::preset(Preset::Tiny);
        cfg.model.image_size = 48;
        assert!(cfg.validate().is_err());
        cfg = InpaintConfig::preset(Preset::Tiny);
        cfg.hole_draws = 0;
        assert!(cfg.validate().expect_err("no draw").contains("hole_draws"));
    }

    #[test]
    fn configurations_written_before_hole_draws_read_as_one_draw() {
        let cfg = InpaintConfig {
            hole_draws: 5,
            ..InpaintConfig::preset(Preset::Cpu)
        };
        let mut json = serde_json::to_value(&cfg).expect("to json");
        let round: InpaintConfig = serde_json::from_value(json.clone()).expect("from json");
        assert_eq!(round, cfg);
        json.as_object_mut().expect("object").remove("hole_draws");
        let old: InpaintConfig = serde_json::from_value(json).expect("old json");
        assert_eq!(old.hole_draws, 1);
        assert_eq!(
            old,
            InpaintConfig {
                hole_draws: 1,
                ..cfg
            }
        );
    }
}
