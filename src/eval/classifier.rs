//! The defect classifier: a narrow residual network on 64x64 grey patches, on the studio's fast
//! convolution.
//!
//! Layout (width `w`): a stride-2 stem (1 -> w), then three stages, each a residual block at
//! its resolution (32, 16, 8 px), with stride-2 convolutions doubling the width between them;
//! global average pooling gives the `4w` penultimate features (with `max_pool`, the channels'
//! maxima too: `8w`), and a fully connected layer the logits. Residual branches are scaled by a
//! learned gate that starts at 0 (so the network starts as a plain stack and needs no batch
//! norm). Each patch is standardised (mean 0, deviation 1) first. Training: Adam with a short
//! warm-up and cosine decay, cross-entropy (optionally class-balanced), random flips and
//! quarter turns of every patch; every random draw derives from the seed, so a seed gives the
//! same weights bit for bit.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use image::GrayImage;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::dtgan::adam::Adam;
use crate::dtgan::model::seeded_init;
use crate::dtgan::train::derive_seed;
use crate::nn::conv::{Act, Conv2dParams, conv2d_fused};

/// Side of the classifier's input patches.
pub const PATCH: u32 = 64;

/// How to build and train a classifier.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassifierConfig {
    /// Channels of the first stage (the others have 2x and 4x).
    pub width: usize,
    /// Passes over the training set.
    pub epochs: usize,
    /// Patches per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Weigh each class's examples by `n / (classes * n_class)` in the loss, so that every class
    /// counts alike however many examples it has (reports from before this field: unweighted).
    #[serde(default)]
    pub balanced: bool,
    /// Predict from the mean class probabilities of the eight flips and quarter turns of each
    /// patch (test-time augmentation; reports from before this field: the patch alone).
    #[serde(default)]
    pub tta: bool,
    /// Pool the last stage's features by their mean and their maximum (`8w` features), not
    /// the mean alone (`4w`): a defect that covers a few pixels of the patch (a blowhole in a
    /// tile's grain) is lost in the mean (reports from before this field: the mean alone).
    #[serde(default)]
    pub max_pool: bool,
}

impl ClassifierConfig {
    /// Checks the fields, with a sentence saying what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.width == 0 || self.epochs == 0 || self.batch_size == 0 {
            return Err("classifier width, epochs and batch size must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!(
                "classifier learning rate must be positive, got {}",
                self.lr
            ));
        }
        Ok(())
    }
}

/// One labelled patch.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// A `PATCH` x `PATCH` grey patch.
    pub patch: GrayImage,
    /// Class index.
    pub label: usize,
}

struct Conv {
    w: Tensor,
    b: Tensor,
    stride: usize,
}

impl Conv {
    fn new(
        vb: &VarBuilder,
        name: &str,
        cin: usize,
        cout: usize,
        stride: usize,
    ) -> candle_core::Result<Self> {
        let vb = vb.pp(name);
        Ok(Self {
            w: vb.get((cout, cin, 3, 3), "weight")?,
            b: vb.get(cout, "bias")?,
            stride,
        })
    }

    fn forward(&self, x: &Tensor, act: Act) -> candle_core::Result<Tensor> {
        let params = Conv2dParams {
            stride: self.stride,
            padding: 1,
            dilation: 1,
        };
        conv2d_fused(x, &self.w, Some(&self.b), params, act)
    }
}

/// `x + gate * conv(relu(conv(x)))`.
struct Block {
    c1: Conv,
    c2: Conv,
    gate: Tensor,
}

impl Block {
    fn new(vb: &VarBuilder, name: &str, ch: usize) -> candle_core::Result<Self> {
        let vb2 = vb.pp(name);
        Ok(Self {
            c1: Conv::new(&vb2, "c1", ch, ch, 1)?,
            c2: Conv::new(&vb2, "c2", ch, ch, 1)?,
            gate: vb2.get(1, "gate")?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let r = self
            .c2
            .forward(&self.c1.forward(x, Act::Relu)?, Act::Identity)?;
        x + r.broadcast_mul(&self.gate)?
    }
}

/// A trained (or freshly initialised) classifier.
pub struct Classifier {
    stem: Conv,
    stages: Vec<(Block, Option<Conv>)>,
    fc: candle_nn::Linear,
    max_pool: bool,
    classes: usize,
    /// Mean training loss over the last epoch (`None` for an untrained network).
    final_loss: Option<f64>,
    device: Device,
    _vars: VarMap,
}

/// Normalised `(N, 1, PATCH, PATCH)` tensor of `patches`.
fn patch_tensor<'a>(
    patches: impl Iterator<Item = &'a GrayImage>,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let mut data = Vec::new();
    let mut n = 0;
    for p in patches {
        if p.dimensions() != (PATCH, PATCH) {
            candle_core::bail!(
                "classifier patches must be {PATCH}x{PATCH}, got {:?}",
                p.dimensions()
            );
        }
        // Each patch standardised to mean 0, deviation 1: lighting differs between images
        // (and set-ups), the defect is in the pattern.
        let raw = p.as_raw();
        let mean = raw.iter().map(|&v| v as f32).sum::<f32>() / raw.len() as f32;
        let var = raw.iter().map(|&v| (v as f32 - mean).powi(2)).sum::<f32>() / raw.len() as f32;
        let scale = 1.0 / var.sqrt().max(4.0);
        data.extend(raw.iter().map(|&v| (v as f32 - mean) * scale));
        n += 1;
    }
    Tensor::from_vec(data, (n, 1, PATCH as usize, PATCH as usize), device)
}

/// `(N, C, H, W)` -> `(N, C)`: each channel's mean, or `(N, 2C)`: its mean, then its maximum.
fn pool(h: &Tensor, max_pool: bool) -> candle_core::Result<Tensor> {
    let mean = h.mean((2, 3))?;
    if !max_pool {
        return Ok(mean);
    }
    let max = h.flatten_from(2)?.max(2)?;
    Tensor::cat(&[&mean, &max], 1)
}

/// One of the eight flips / quarter turns of a square patch.
pub fn dihedral(p: &GrayImage, k: u8) -> GrayImage {
    use image::imageops::{flip_horizontal, rotate90, rotate180, rotate270};
    let turned = match k % 4 {
        1 => rotate90(p),
        2 => rotate180(p),
        3 => rotate270(p),
        _ => p.clone(),
    };
    if k >= 4 {
        flip_horizontal(&turned)
    } else {
        turned
    }
}

/// Progress of a training: (step, steps, loss of this step).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, f64) -> bool;

impl Classifier {
    /// A network for `classes` classes with weights drawn from `seed`.
    pub fn new(
        classes: usize,
        width: usize,
        max_pool: bool,
        seed: u64,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, device);
        let stem = Conv::new(&vb, "stem", 1, width, 2)?;
        let mut stages = Vec::new();
        let mut ch = width;
        for s in 0..3 {
            let block = Block::new(&vb, &format!("s{s}.block"), ch)?;
            let down = if s < 2 {
                let d = Conv::new(&vb, &format!("s{s}.down"), ch, ch * 2, 2)?;
                ch *= 2;
                Some(d)
            } else {
                None
            };
            stages.push((block, down));
        }
        let pooled = if max_pool { 2 * ch } else { ch };
        let fc = candle_nn::linear(pooled, classes, vb.pp("fc"))?;
        seeded_init(&vars, &mut ChaCha8Rng::seed_from_u64(seed), false)?;
        Ok(Self {
            stem,
            stages,
            fc,
            max_pool,
            classes,
            final_loss: None,
            device: device.clone(),
            _vars: vars,
        })
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Mean training loss over the last epoch trained (the epoch stopped in, if training was
    /// stopped early); `None` for a network that was never trained. Compare it with
    /// [`guessing_loss`]: a training that ends near that learnt nothing.
    pub fn final_loss(&self) -> Option<f64> {
        self.final_loss
    }

    /// Size of the penultimate feature vector.
    pub fn feature_size(&self) -> usize {
        self.fc.weight().dims()[1]
    }

    /// Penultimate features `(N, 4w)` of a batch `(N, 1, PATCH, PATCH)`.
    fn features_t(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = self.stem.forward(x, Act::Relu)?;
        for (block, down) in &self.stages {
            h = block.forward(&h)?;
            if let Some(d) = down {
                h = d.forward(&h, Act::Relu)?;
            }
        }
        pool(&h.relu()?, self.max_pool)
    }

    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.fc.forward(&self.features_t(x)?)
    }

    /// Trains on `train` (labels below the class count); `progress(step, steps, loss)` returns
    /// false to stop early (the network is returned as it is then). The loss must fall: see the
    /// tests.
    pub fn train(
        classes: usize,
        train: &[Example],
        cfg: &ClassifierConfig,
        seed: u64,
        device: &Device,
        progress: Progress,
    ) -> Result<Self, String> {
        cfg.validate()?;
        if train.is_empty() {
            return Err("the classifier's training set is empty".into());
        }
        if let Some(bad) = train.iter().find(|e| e.label >= classes) {
            return Err(format!(
                "label {} is not below the class count {classes}",
                bad.label
            ));
        }
        let err = |e: candle_core::Error| e.to_string();
        let mut net = Self::new(
            classes,
            cfg.width,
            cfg.max_pool,
            derive_seed(seed, 0),
            device,
        )
        .map_err(err)?;
        let mut opt = Adam::new(&net._vars, cfg.lr, 0.9, 0.999).map_err(err)?;
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, 1));
        let per_epoch = train.len().div_ceil(cfg.batch_size);
        let steps = per_epoch * cfg.epochs;
        let class_weight = class_weights(classes, train, cfg.balanced);
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut step = 0;
        for _ in 0..cfg.epochs {
            order.shuffle(&mut rng);
            let (mut epoch_loss, mut epoch_steps) = (0.0, 0usize);
            for chunk in order.chunks(cfg.batch_size) {
                let patches: Vec<GrayImage> = chunk
                    .iter()
                    .map(|&i| dihedral(&train[i].patch, rng.random_range(0..8)))
                    .collect();
                let labels: Vec<u32> = chunk.iter().map(|&i| train[i].label as u32).collect();
                // Linear warm-up over the first 5 % of the steps, then cosine decay to 0.
                let warm = (steps / 20).max(1);
                let lr = if step < warm {
                    cfg.lr * (step + 1) as f64 / warm as f64
                } else {
                    let t = (step - warm) as f64 / (steps - warm).max(1) as f64;
                    cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
                };
                opt.set_lr(lr);
                let x = patch_tensor(patches.iter(), device).map_err(err)?;
                let y = Tensor::new(labels.as_slice(), device).map_err(err)?;
                let w: Vec<f32> = labels.iter().map(|&l| class_weight[l as usize]).collect();
                let loss =
                    weighted_cross_entropy(&net.logits(&x).map_err(err)?, &y, &w).map_err(err)?;
                opt.backward_step(&loss).map_err(err)?;
                let value = loss.to_scalar::<f32>().map_err(err)? as f64;
                if !value.is_finite() {
                    return Err(format!(
                        "the classifier's loss became {value} at step {step}"
                    ));
                }
                step += 1;
                epoch_loss += value;
                epoch_steps += 1;
                net.final_loss = Some(epoch_loss / epoch_steps as f64);
                if !progress(step, steps, value) {
                    return Ok(net);
                }
            }
        }
        Ok(net)
    }

    /// Runs `f` on batches of `patches`, collecting rows.
    fn batched<T>(
        &self,
        patches: &[&GrayImage],
        f: impl Fn(&Self, &Tensor) -> candle_core::Result<Vec<T>>,
    ) -> candle_core::Result<Vec<T>> {
        let mut out = Vec::with_capacity(patches.len());
        for chunk in patches.chunks(64) {
            let x = patch_tensor(chunk.iter().copied(), &self.device)?;
            out.extend(f(self, &x)?);
        }
        Ok(out)
    }

    /// The predicted class of each patch.
    pub fn predict(&self, patches: &[&GrayImage]) -> candle_core::Result<Vec<usize>> {
        self.batched(patches, |net, x| {
            let idx = net.logits(x)?.argmax(1)?.to_vec1::<u32>()?;
            Ok(idx.into_iter().map(|i| i as usize).collect())
        })
    }

    /// The predicted class of each patch, from its class probabilities averaged over its eight
    /// flips and quarter turns (the same transforms training draws at random), so the
    /// prediction does not depend on the patch's orientation.
    pub fn predict_dihedral(&self, patches: &[&GrayImage]) -> candle_core::Result<Vec<usize>> {
        let mut sum: Vec<Vec<f32>> = Vec::new();
        for k in 0..8 {
            let turned: Vec<GrayImage> = patches.iter().map(|p| dihedral(p, k)).collect();
            let refs: Vec<&GrayImage> = turned.iter().collect();
            let probs = self.batched(&refs, |net, x| {
                candle_nn::ops::softmax(&net.logits(x)?, 1)?.to_vec2::<f32>()
            })?;
            if sum.is_empty() {
                sum = probs;
            } else {
                for (acc, row) in sum.iter_mut().zip(probs) {
                    for (a, p) in acc.iter_mut().zip(row) {
                        *a += p;
                    }
                }
            }
        }
        Ok(sum.iter().map(|row| argmax(row)).collect())
    }

    /// The penultimate features of each patch.
    pub fn features(&self, patches: &[&GrayImage]) -> candle_core::Result<Vec<Vec<f32>>> {
        self.batched(patches, |net, x| net.features_t(x)?.to_vec2::<f32>())
    }

    /// Mean cross-entropy on `examples` (no augmentation).
    pub fn loss(&self, examples: &[Example]) -> candle_core::Result<f64> {
        let patches: Vec<&GrayImage> = examples.iter().map(|e| &e.patch).collect();
        let losses = self.batched(&patches, |net, x| {
            let logp = candle_nn::ops::log_softmax(&net.logits(x)?, 1)?.to_vec2::<f32>()?;
            Ok(logp)
        })?;
        let total: f64 = losses
            .iter()
            .zip(examples)
            .map(|(row, e)| -(row[e.label] as f64))
            .sum();
        Ok(total / examples.len().max(1) as f64)
    }
}

/// The index of the largest value (the first of equal ones; 0 for an empty row).
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Each class's loss weight: `n / (classes * n_class)` when `balanced` (a class absent from
/// `train` gets 0), else 1.
pub fn class_weights(classes: usize, train: &[Example], balanced: bool) -> Vec<f32> {
    if !balanced {
        return vec![1.0; classes];
    }
    let mut count = vec![0usize; classes];
    for e in train {
        count[e.label] += 1;
    }
    count
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                train.len() as f32 / (classes * c) as f32
            }
        })
        .collect()
}

/// The training loss of the best constant guess on `train`: the entropy of its class
/// frequencies, each class weighted as the loss weighs it ([`class_weights`]). A classifier whose
/// training loss ends near this learnt nothing from the patches (a training that diverged).
pub fn guessing_loss(classes: usize, train: &[Example], balanced: bool) -> f64 {
    let weight = class_weights(classes, train, balanced);
    let mut mass = vec![0.0f64; classes];
    for e in train {
        mass[e.label] += weight[e.label] as f64;
    }
    let total: f64 = mass.iter().sum();
    mass.iter()
        .filter(|&&m| m > 0.0)
        .map(|&m| -(m / total) * (m / total).ln())
        .sum()
}

/// Cross-entropy of `logits` (batch x classes) against `labels`, each row weighted by
/// `weights[row]`: the weighted mean `sum(w * nll) / sum(w)`, as PyTorch's weighted loss.
pub fn weighted_cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    weights: &[f32],
) -> candle_core::Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, 1)?;
    let picked = logp.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?;
    let w = Tensor::new(weights, logits.device())?.to_dtype(logits.dtype())?;
    let total: f32 = weights.iter().sum();
    (picked * w)?.sum_all()?.neg()? / total.max(f32::MIN_POSITIVE) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    /// Class 0: a bright disc; class 1: a bright bar; class 2: nothing; on noise.
    fn toy(n: usize, seed: u64) -> Vec<Example> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let label = i % 3;
                let (cx, cy) = (
                    rng.random_range(20..44) as f32,
                    rng.random_range(20..44) as f32,
                );
                let patch = GrayImage::from_fn(PATCH, PATCH, |x, y| {
                    let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                    let on = match label {
                        0 => dx * dx + dy * dy < 36.0,
                        1 => dx.abs() < 12.0 && dy.abs() < 2.0,
                        _ => false,
                    };
                    let noise = rng.random_range(0..40u8);
                    Luma([if on { 200 + noise / 2 } else { 60 + noise }])
                });
                Example { patch, label }
            })
            .collect()
    }

    fn cfg() -> ClassifierConfig {
        ClassifierConfig {
            width: 4,
            epochs: 20,
            batch_size: 16,
            lr: 1e-2,
            balanced: false,
            tta: false,
            max_pool: false,
        }
    }

    #[test]
    fn it_learns_a_toy_task_and_generalises_with_either_pooling() {
        let train = toy(96, 1);
        let test = toy(60, 2);
        let device = Device::Cpu;
        for max_pool in [false, true] {
            let cfg = ClassifierConfig { max_pool, ..cfg() };
            let untrained = Classifier::new(3, 4, max_pool, 0, &device).expect("net");
            let before = untrained.loss(&train).expect("loss");
            let net =
                Classifier::train(3, &train, &cfg, 7, &device, &mut |_, _, _| true).expect("train");
            let after = net.loss(&train).expect("loss");
            assert!(
                after < 0.5 * before,
                "max pool {max_pool}: training loss {before} -> {after}"
            );
            // The last epoch's training loss is recorded, and far below guessing (ln 3).
            let guess = guessing_loss(3, &train, false);
            assert!((guess - 3f64.ln()).abs() < 1e-9, "{guess}");
            let last = net.final_loss().expect("trained");
            assert!(last < 0.5 * guess, "max pool {max_pool}: last epoch {last}");
            assert_eq!(untrained.final_loss(), None);
            let patches: Vec<&GrayImage> = test.iter().map(|e| &e.patch).collect();
            for predicted in [
                net.predict(&patches).expect("predict"),
                net.predict_dihedral(&patches).expect("predict"),
            ] {
                let right = predicted
                    .iter()
                    .zip(&test)
                    .filter(|(p, e)| **p == e.label)
                    .count();
                assert!(
                    right as f64 / test.len() as f64 > 0.8,
                    "max pool {max_pool}: {right} of {} right",
                    test.len()
                );
            }
            let features = net.features(&patches[..3]).expect("features");
            assert_eq!(features.len(), 3);
            assert_eq!(features[0].len(), net.feature_size());
            // 16 channels: their means, or their means and maxima.
            assert_eq!(net.feature_size(), if max_pool { 32 } else { 16 });
        }
    }

    /// The pooled features and their gradient (mean, maximum, concatenation) against central
    /// differences.
    #[test]
    fn pooling_matches_its_definition_and_finite_differences() {
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let values: Vec<f64> = (0..2 * 3 * 4 * 4)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let weights: Vec<f64> = (0..2 * 6).map(|_| rng.random_range(-1.0..1.0)).collect();
        let w = Tensor::from_slice(&weights, (2, 6), &device).expect("w");
        let x = Tensor::from_slice(&values, (2, 3, 4, 4), &device).expect("x");
        let pooled = pool(&x, true).expect("pool");
        let rows = pooled.to_vec2::<f64>().expect("rows");
        for n in 0..2 {
            for c in 0..3 {
                let cell = &values[(n * 3 + c) * 16..(n * 3 + c + 1) * 16];
                let mean = cell.iter().sum::<f64>() / 16.0;
                let max = cell.iter().cloned().fold(f64::MIN, f64::max);
                assert!((rows[n][c] - mean).abs() < 1e-12);
                assert_eq!(rows[n][3 + c], max);
            }
        }
        assert_eq!(pool(&x, false).expect("pool").dims(), &[2, 3]);
        assert_gradient_matches(&values, (2, 3, 4, 4), |t| (pool(t, true)? * &w)?.sum_all());
    }

    #[test]
    fn dihedral_prediction_does_not_depend_on_orientation() {
        let device = Device::Cpu;
        let net = Classifier::new(3, 4, false, 11, &device).expect("net");
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let patches: Vec<GrayImage> = (0..24)
            .map(|_| GrayImage::from_fn(PATCH, PATCH, |_, _| Luma([rng.random_range(0..=255)])))
            .collect();
        let refs: Vec<&GrayImage> = patches.iter().collect();
        let plain = net.predict(&refs).expect("predict");
        let averaged = net.predict_dihedral(&refs).expect("predict");
        let mut plain_changed = false;
        for k in 1..8 {
            let turned: Vec<GrayImage> = patches.iter().map(|p| dihedral(p, k)).collect();
            let turned: Vec<&GrayImage> = turned.iter().collect();
            plain_changed |= net.predict(&turned).expect("predict") != plain;
            assert_eq!(
                net.predict_dihedral(&turned).expect("predict"),
                averaged,
                "turn {k}"
            );
        }
        // The check has teeth: without the averaging, this network's predictions turn with the patch.
        assert!(plain_changed);
        assert_eq!(argmax(&[0.1, 0.5, 0.5, 0.2]), 1);
    }

    #[test]
    fn a_seed_gives_the_same_network_and_another_seed_another() {
        let train = toy(24, 3);
        let device = Device::Cpu;
        let short = ClassifierConfig { epochs: 1, ..cfg() };
        let run = |seed| {
            let net = Classifier::train(3, &train, &short, seed, &device, &mut |_, _, _| true)
                .expect("train");
            net.loss(&train).expect("loss")
        };
        assert_eq!(run(5).to_bits(), run(5).to_bits());
        assert_ne!(run(5).to_bits(), run(6).to_bits());
    }

    #[test]
    fn bad_labels_and_empty_sets_are_refused() {
        let device = Device::Cpu;
        let mut train = toy(3, 4);
        assert!(Classifier::train(3, &[], &cfg(), 0, &device, &mut |_, _, _| true).is_err());
        train[0].label = 3;
        let Err(e) = Classifier::train(3, &train, &cfg(), 0, &device, &mut |_, _, _| true) else {
            panic!("a label out of range must be refused");
        };
        assert!(e.contains("label 3"), "{e}");
    }

    #[test]
    fn balanced_weights_make_every_class_count_alike() {
        let ex = |label| Example {
            patch: GrayImage::new(1, 1),
            label,
        };
        let train: Vec<Example> = [0, 0, 1, 1, 1, 1, 1, 1].into_iter().map(ex).collect();
        let w = class_weights(3, &train, true);
        assert!((w[0] - 8.0 / 6.0).abs() < 1e-6 && (w[1] - 8.0 / 18.0).abs() < 1e-6);
        assert_eq!(w[2], 0.0, "an absent class");
        assert_eq!(class_weights(3, &train, false), vec![1.0; 3]);
        // Guessing by frequency: 2 of 8 and 6 of 8; balanced, the two classes weigh alike.
        let p = [0.25f64, 0.75];
        let entropy = -p.iter().map(|q| q * q.ln()).sum::<f64>();
        assert!((guessing_loss(3, &train, false) - entropy).abs() < 1e-9);
        assert!((guessing_loss(3, &train, true) - 2f64.ln()).abs() < 1e-6);

        // The balanced loss is the mean over classes of each class's mean loss.
        let device = Device::Cpu;
        let logits = Tensor::new(
            &[
                [2.0f32, 0.5, -1.0],
                [0.1, 0.2, 0.3],
                [1.0, -2.0, 0.0],
                [0.0, 3.0, 1.0],
                [-1.0, 1.0, 0.5],
                [0.3, 0.3, 2.0],
                [1.5, -0.5, 0.2],
                [0.0, 0.0, 0.0],
            ],
            &device,
        )
        .expect("logits");
        let labels: Vec<u32> = train.iter().map(|e| e.label as u32).collect();
        let y = Tensor::new(labels.as_slice(), &device).expect("labels");
        let rows: Vec<f32> = labels.iter().map(|&l| w[l as usize]).collect();
        let balanced = weighted_cross_entropy(&logits, &y, &rows)
            .and_then(|t| t.to_scalar::<f32>())
            .expect("loss");
        let logp = candle_nn::ops::log_softmax(&logits, 1)
            .and_then(|t| t.to_vec2::<f32>())
            .expect("log p");
        let class_mean = |c: u32| {
            let v: Vec<f32> = (0..8)
                .filter(|&i| labels[i] == c)
                .map(|i| -logp[i][c as usize])
                .collect();
            v.iter().sum::<f32>() / v.len() as f32
        };
        let want = (class_mean(0) + class_mean(1)) / 2.0;
        assert!((balanced - want).abs() < 1e-5, "{balanced} vs {want}");
        // Equal weights give the plain cross-entropy.
        let plain = candle_nn::loss::cross_entropy(&logits, &y)
            .and_then(|t| t.to_scalar::<f32>())
            .expect("plain");
        let equal = weighted_cross_entropy(&logits, &y, &[1.0; 8])
            .and_then(|t| t.to_scalar::<f32>())
            .expect("equal");
        assert!((plain - equal).abs() < 1e-6, "{plain} vs {equal}");
    }

    /// The weighted loss's gradient (log-softmax, gather, weights) against central differences.
    #[test]
    fn weighted_cross_entropy_gradient_matches_finite_differences() {
        let device = Device::Cpu;
        let values = [0.3f64, -1.2, 0.8, 2.0, 0.1, -0.4, -0.7, 1.1, 0.0];
        let labels = Tensor::new(&[2u32, 0, 1], &device).expect("labels");
        let weights = [0.5f32, 2.0, 1.25];
        assert_gradient_matches(&values, (3, 3), |x| {
            weighted_cross_entropy(x, &labels, &weights)
        });
    }

    /// The gradient of the scalar `objective` at `values` (of `shape`, f64) against central
    /// differences with step 1e-6: they must agree to 1e-6 in every element.
    fn assert_gradient_matches<S: Into<candle_core::Shape> + Copy>(
        values: &[f64],
        shape: S,
        objective: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    ) {
        let device = Device::Cpu;
        let x = candle_core::Var::from_slice(values, shape, &device).expect("x");
        let analytic = objective(x.as_tensor())
            .and_then(|l| l.backward())
            .expect("backward")
            .get(x.as_tensor())
            .expect("a gradient")
            .flatten_all()
            .and_then(|g| g.to_vec1::<f64>())
            .expect("grad");
        let at = |v: &[f64]| -> f64 {
            let t = Tensor::from_slice(v, shape, &device).expect("t");
            objective(&t)
                .and_then(|l| l.to_scalar::<f64>())
                .expect("objective")
        };
        let h = 1e-6;
        for i in 0..values.len() {
            let (mut up, mut down) = (values.to_vec(), values.to_vec());
            up[i] += h;
            down[i] -= h;
            let numeric = (at(&up) - at(&down)) / (2.0 * h);
            assert!(
                (numeric - analytic[i]).abs() < 1e-6,
                "d/dx{i}: analytic {} numeric {numeric}",
                analytic[i]
            );
        }
    }

    #[test]
    fn dihedral_turns_compose() {
        let p = GrayImage::from_fn(PATCH, PATCH, |x, y| Luma([(x * 3 + y) as u8]));
        assert_eq!(dihedral(&dihedral(&p, 1), 3), p);
        assert_eq!(dihedral(&dihedral(&p, 4), 4), p);
        assert_ne!(dihedral(&p, 1), p);
    }
}
