//! The two networks of the defect-transfer GAN.
//!
//! Both are built from [`SnConv2d`] layers (spectral norm everywhere, no batch norm), so the
//! critic is 1-Lipschitz per layer without a gradient penalty (candle has no double backward).

use candle_core::{Result, Tensor, Var};
use candle_nn::{ModuleT, VarBuilder, VarMap};

use super::config::{Activation, ModelConfig};
use crate::nn::conv::Act;
use crate::nn::spectral::{SnConv2d, SnConv2dConfig, sn_chain};
use crate::nn::upsample::upsample_nearest2x;

/// Power iterations run before calibration, so `sigma` is converged when gains are measured.
const CALIBRATION_ITERS: usize = 30;
/// RMS of the generator's last activation after calibration: the first outputs stay close to
/// the defect-free input.
pub const OUTPUT_RMS: f32 = 0.01;

/// Slope of the critic's leaky ReLUs.
const LEAK: f64 = 0.2;

/// One generator convolution and what surrounds it.
#[derive(Debug, Clone)]
pub struct GenLayer {
    /// The convolution.
    pub conv: SnConv2d,
    /// Nearest x2 upsampling before the convolution.
    pub upsample: bool,
    /// The activation after it (all but the last layer).
    pub relu: bool,
}

/// The generator: defect-free image + mask in, defect image out.
///
/// Seventeen convolutions in DeepFill v1's coarse layout: 5x5 c; 3x3/2 2c; 3x3 2c; 3x3/2 4c;
/// 3x3 4c; 3x3 4c; four dilated 3x3 4c (rates 2, 4, 8, 16); 3x3 4c; 3x3 4c; x2 + 3x3 2c; 3x3 2c;
/// x2 + 3x3 c; 3x3 c/2; 3x3 to the image channels. The last activation is added to the
/// defect-free input and clamped to [-1, 1], so the network only learns the change a defect makes.
#[derive(Debug, Clone)]
pub struct Generator {
    layers: Vec<GenLayer>,
    channels: usize,
    activation: Activation,
}

impl Generator {
    /// Builds (or reuses) the weights under `vb` and the spectral-norm vectors in `buffers`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder, buffers: &VarMap) -> Result<Self> {
        let c = cfg.gen_width;
        let ch = cfg.channels;
        // (out channels, kernel, stride, dilation, upsample before)
        let plan: [(usize, usize, usize, usize, bool); 17] = [
            (c, 5, 1, 1, false),
            (2 * c, 3, 2, 1, false),
            (2 * c, 3, 1, 1, false),
            (4 * c, 3, 2, 1, false),
            (4 * c, 3, 1, 1, false),
            (4 * c, 3, 1, 1, false),
            (4 * c, 3, 1, 2, false),
            (4 * c, 3, 1, 4, false),
            (4 * c, 3, 1, 8, false),
            (4 * c, 3, 1, 16, false),
            (4 * c, 3, 1, 1, false),
            (4 * c, 3, 1, 1, false),
            (2 * c, 3, 1, 1, true),
            (2 * c, 3, 1, 1, false),
            (c, 3, 1, 1, true),
            ((c / 2).max(1), 3, 1, 1, false),
            (ch, 3, 1, 1, false),
        ];
        let mut layers = Vec::with_capacity(plan.len());
        let mut in_ch = ch + 1;
        for (i, (out, kernel, stride, dilation, upsample)) in plan.into_iter().enumerate() {
            let relu = i + 1 < 17;
            let conv_cfg = SnConv2dConfig {
                in_channels: in_ch,
                out_channels: out,
                kernel,
                stride,
                padding: dilation * (kernel / 2),
                dilation,
                bias: true,
                gain: 1.0,
                learn_gain: true,
            };
            let conv = SnConv2d::new(conv_cfg, vb.pp(format!("conv{i:02}")), buffers)?;
            layers.push(GenLayer {
                conv,
                upsample,
                relu,
            });
            in_ch = out;
        }
        Ok(Self {
            layers,
            channels: ch,
            activation: cfg.activation,
        })
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[GenLayer] {
        &self.layers
    }

    /// Image channels in and out.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Sets every layer's gain so that, on this batch, its pre-activations have unit RMS (the
    /// last layer: [`OUTPUT_RMS`]), one layer after the other ("layer-sequential unit variance").
    ///
    /// Spectral norm caps each layer's gain at 1 times its scale, and zero padding, dilated taps
    /// that fall off small maps, and ReLUs lose more: through seventeen layers a unit-gain
    /// network's output fades to nothing and its gradients with it. First converges the
    /// spectral-norm vectors (power iterations), then measures.
    pub fn calibrate(&self, image: &Tensor, mask: &Tensor) -> Result<()> {
        for _ in 0..CALIBRATION_ITERS {
            self.forward(image, mask, true)?;
        }
        let mut x = Tensor::cat(&[image, mask], 1)?;
        for layer in &self.layers {
            if layer.upsample {
                x = upsample_nearest2x(&x)?;
            }
            let Some(log_gain) = layer.conv.log_gain() else {
                continue;
            };
            let pre = layer.conv.forward_t(&x, false)?;
            let rms = pre.sqr()?.mean_all()?.sqrt()?.to_scalar::<f32>()?;
            let target = if layer.relu { 1.0 } else { OUTPUT_RMS };
            if rms.is_finite() && rms > 1e-12 {
                let g = (log_gain + f64::from((target / rms).ln()))?;
                Var::from_tensor(log_gain)?.set(&g)?;
            }
            x = layer.conv.forward_t(&x, false)?;
            if layer.relu {
                x = self.activation.apply(&x)?;
            }
        }
        Ok(())
    }

    /// `image`: `(B, C, H, W)` in [-1, 1]; `mask`: `(B, 1, H, W)` in {0, 1}; `H` and `W` multiples
    /// of 4. Returns the defect image, `(B, C, H, W)` in [-1, 1].
    pub fn forward(&self, image: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        let act = self.activation.fused();
        let layers = self.layers.iter().map(|l| {
            let act = if l.relu { act } else { Act::Identity };
            (&l.conv, l.upsample, act)
        });
        // One op for the 17 convolutions: on the CPU its backward pass hands the gradient from
        // layer to layer without candle's per-node bookkeeping (see `conv_chain`).
        let x = sn_chain(&Tensor::cat(&[image, mask], 1)?, layers, train)?;
        (image + x)?.clamp(-1f32, 1f32)
    }
}

/// A stack of stride-2 5x5 convolutions with leaky ReLUs, flattened at the end.
#[derive(Debug, Clone)]
pub struct ConvStack {
    convs: Vec<SnConv2d>,
}

impl ConvStack {
    /// Stride-2 5x5 convolutions of the given widths on `in_ch` channels.
    pub fn new(in_ch: usize, widths: &[usize], vb: VarBuilder, buffers: &VarMap) -> Result<Self> {
        let mut convs = Vec::with_capacity(widths.len());
        let mut c_in = in_ch;
        for (i, &out) in widths.iter().enumerate() {
            let cfg = SnConv2dConfig {
                in_channels: c_in,
                out_channels: out,
                kernel: 5,
                stride: 2,
                padding: 2,
                dilation: 1,
                bias: true,
                gain: 1.0,
                learn_gain: false,
            };
            convs.push(SnConv2d::new(cfg, vb.pp(format!("conv{i}")), buffers)?);
            c_in = out;
        }
        Ok(Self { convs })
    }

    /// The convolutions, in order.
    pub fn convs(&self) -> &[SnConv2d] {
        &self.convs
    }

    /// `(N, C, S, S)` -> `(N, features)`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let layers = self.convs.iter().map(|c| (c, false, Act::Leaky(LEAK)));
        sn_chain(x, layers, train)?.flatten_from(1)
    }

    /// Output side for an input side (each layer halves, rounding up).
    pub fn output_side(&self, side: usize) -> usize {
        self.convs.iter().fold(side, |s, _| s.div_ceil(2))
    }
}

/// The critic: a global stack over the whole image, one local stack shared by the 16 cells of a
/// 4x4 grid, and a fully connected layer over the 17 concatenated feature vectors.
#[derive(Debug, Clone)]
pub struct Critic {
    global: ConvStack,
    local: ConvStack,
    fc: SnConv2d,
    grid: usize,
}

/// Cells per side of the local critic's grid.
pub const GRID: usize = 4;

impl Critic {
    /// Builds (or reuses) the weights under `vb` and the spectral-norm vectors in `buffers`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder, buffers: &VarMap) -> Result<Self> {
        let w = cfg.critic_width;
        let in_ch = cfg.channels + 1;
        let global = ConvStack::new(
            in_ch,
            &[w, 2 * w, 4 * w, 4 * w, 4 * w, 4 * w],
            vb.pp("global"),
            buffers,
        )?;
        let local = ConvStack::new(in_ch, &[w, 2 * w, 4 * w, 4 * w], vb.pp("local"), buffers)?;
        let side = cfg.image_size;
        let g_side = global.output_side(side);
        let l_side = local.output_side(side / GRID);
        let features = 4 * w * (g_side * g_side + GRID * GRID * l_side * l_side);
        // A 1x1 convolution over a 1x1 map is a fully connected layer, and gets spectral norm.
        let fc = SnConv2d::new(SnConv2dConfig::new(features, 1, 1), vb.pp("fc"), buffers)?;
        Ok(Self {
            global,
            local,
            fc,
            grid: GRID,
        })
    }

    /// The global stack.
    pub fn global(&self) -> &ConvStack {
        &self.global
    }

    /// The local stack (shared by every grid cell).
    pub fn local(&self) -> &ConvStack {
        &self.local
    }

    /// Inputs to the fully connected layer.
    pub fn fc_inputs(&self) -> usize {
        self.fc.config().in_channels
    }

    /// `image`: `(B, C, S, S)`, `mask`: `(B, 1, S, S)` with `S` the configured size. Returns one
    /// score per image, `(B,)`.
    pub fn forward(&self, image: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        let x = Tensor::cat(&[image, mask], 1)?;
        let (b, c, h, w) = x.dims4()?;
        let g = self.global.forward(&x, train)?;
        let (ph, pw) = (h / self.grid, w / self.grid);
        let cells = x
            .reshape((b, c, self.grid, ph, self.grid, pw))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * self.grid * self.grid, c, ph, pw))?;
        let l = self.local.forward(&cells, train)?;
        let l = l.reshape((b, ()))?;
        let features = Tensor::cat(&[g, l], 1)?;
        let n = features.dim(1)?;
        self.fc
            .forward_t(&features.reshape((b, n, 1, 1))?, train)?
            .reshape(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn model(size: usize, gen_width: usize, critic_width: usize) -> ModelConfig {
        ModelConfig {
            image_size: size,
            channels: 3,
            gen_width,
            critic_width,
            activation: Default::default(),
        }
    }

    fn build(cfg: &ModelConfig) -> (Generator, Critic) {
        let params = VarMap::new();
        let buffers = VarMap::new();
        let vb = VarBuilder::from_varmap(&params, DType::F32, &Device::Cpu);
        let g = Generator::new(cfg, vb.pp("gen"), &buffers).expect("generator");
        let d = Critic::new(cfg, vb.pp("critic"), &buffers).expect("critic");
        (g, d)
    }

    #[test]
    fn generator_has_the_papers_layout() {
        let (g, _) = build(&model(64, 8, 4));
        let layers = g.layers();
        assert_eq!(layers.len(), 17, "convolutions");
        let strides: Vec<usize> = layers.iter().map(|l| l.conv.config().stride).collect();
        let down: Vec<usize> = (0..17).filter(|&i| strides[i] == 2).collect();
        assert_eq!(down, vec![1, 3], "stride-2 layers");
        let dilations: Vec<usize> = layers
            .iter()
            .map(|l| l.conv.config().dilation)
            .filter(|&d| d > 1)
            .collect();
        assert_eq!(dilations, vec![2, 4, 8, 16]);
        let ups: Vec<usize> = (0..17).filter(|&i| layers[i].upsample).collect();
        assert_eq!(ups, vec![12, 14], "upsampling before these layers");
        let widths: Vec<usize> = layers
            .iter()
            .map(|l| l.conv.config().out_channels)
            .collect();
        let c = 8;
        assert_eq!(widths[0], c);
        assert_eq!(widths[4], 4 * c);
        assert_eq!(widths[15], c / 2);
        assert_eq!(widths[16], 3, "back to the image channels");
        assert_eq!(layers[0].conv.config().in_channels, 4, "image + mask");
        assert_eq!(layers[0].conv.config().kernel, 5);
        assert!(layers[..16].iter().all(|l| l.relu) && !layers[16].relu);
    }

    #[test]
    fn generator_output_is_residual_and_clamped() {
        let cfg = model(32, 4, 4);
        let (g, _) = build(&cfg);
        let dev = Device::Cpu;
        let image = Tensor::rand(-1f32, 1f32, (2, 3, 32, 32), &dev).expect("image");
        let mask = Tensor::zeros((2, 1, 32, 32), DType::F32, &dev).expect("mask");
        let out = g.forward(&image, &mask, false).expect("forward");
        assert_eq!(out.dims(), &[2, 3, 32, 32]);
        let max = out
            .abs()
            .and_then(|t| t.max_all())
            .and_then(|t| t.to_scalar::<f32>());
        assert!(max.expect("max") <= 1.0);
        // Freshly initialised weights are small, so the output is close to the input.
        let diff: f32 = (out - &image)
            .and_then(|d| d.abs())
            .and_then(|d| d.mean_all())
            .and_then(|d| d.to_scalar())
            .expect("diff");
        assert!(diff < 0.1, "mean change {diff}");
    }

    #[test]
    fn critic_has_global_local_and_one_score() {
        for size in [64, 128] {
            let cfg = model(size, 4, 4);
            let (_, d) = build(&cfg);
            assert_eq!(d.global().convs().len(), 6);
            assert_eq!(d.local().convs().len(), 4);
            let per_vector = 4 * 4 * (size / 64).max(1).pow(2);
            assert_eq!(d.fc_inputs(), 17 * per_vector, "size {size}");
            let dev = Device::Cpu;
            let image = Tensor::rand(-1f32, 1f32, (3, 3, size, size), &dev).expect("image");
            let mask = Tensor::zeros((3, 1, size, size), DType::F32, &dev).expect("mask");
            let score = d.forward(&image, &mask, true).expect("forward");
            assert_eq!(score.dims(), &[3]);
        }
    }

    #[test]
    fn local_critic_sees_each_cell_separately() {
        // Changing one cell only changes that cell's local features: compare the critic's
        // local stack on the cut cells with the stack run on the cell alone.
        let cfg = model(64, 4, 4);
        let (_, d) = build(&cfg);
        let dev = Device::Cpu;
        let x = Tensor::rand(-1f32, 1f32, (1, 4, 64, 64), &dev).expect("x");
        let cells = x
            .reshape((1, 4, 4, 16, 4, 16))
            .and_then(|t| t.permute((0, 2, 4, 1, 3, 5)))
            .and_then(|t| t.contiguous())
            .and_then(|t| t.reshape((16, 4, 16, 16)))
            .expect("cells");
        // Cell (row 1, col 2) is index 6 and must equal the crop at y 16..32, x 32..48.
        let crop = x
            .narrow(2, 16, 16)
            .and_then(|t| t.narrow(3, 32, 16))
            .expect("crop");
        let cell = cells.narrow(0, 6, 1).expect("cell");
        let diff: f32 = (crop - cell)
            .and_then(|t| t.abs())
            .and_then(|t| t.max_all())
            .and_then(|t| t.to_scalar())
            .expect("diff");
        assert_eq!(diff, 0.0);
        let a = d.local.forward(&cells, false).expect("batched");
        let b = d
            .local
            .forward(&cells.narrow(0, 6, 1).expect("one"), false)
            .expect("one");
        let diff: f32 = (a.narrow(0, 6, 1).expect("row") - b)
            .and_then(|t| t.abs())
            .and_then(|t| t.max_all())
            .and_then(|t| t.to_scalar())
            .expect("diff");
        assert!(diff < 1e-5, "{diff}");
    }

    /// Central finite differences of `f` at a few coordinates of `x0` against `grad`.
    fn check_fd(f: &dyn Fn(&Tensor) -> f64, x0: &Tensor, grad: &Tensor, picks: &[usize]) {
        let base: Vec<f64> = x0.flatten_all().and_then(|t| t.to_vec1()).expect("x0");
        let g: Vec<f64> = grad.flatten_all().and_then(|t| t.to_vec1()).expect("grad");
        let h = 1e-5;
        for &i in picks {
            let shift = |d: f64| {
                let mut v = base.clone();
                v[i] += d;
                Tensor::from_vec(v, x0.dims(), x0.device()).expect("shifted")
            };
            let fd = (f(&shift(h)) - f(&shift(-h))) / (2.0 * h);
            let err = (g[i] - fd).abs() / fd.abs().max(1e-3);
            assert!(err < 1e-4, "coordinate {i}: autograd {} vs fd {fd}", g[i]);
        }
    }

    #[test]
    fn critic_input_gradient_matches_finite_differences() {
        // The grid cut (reshape + permute) and the 1x1 "fully connected" layer, in f64.
        let cfg = model(64, 4, 2);
        let params = VarMap::new();
        let buffers = VarMap::new();
        let vb = VarBuilder::from_varmap(&params, DType::F64, &Device::Cpu);
        let d = Critic::new(&cfg, vb, &buffers).expect("critic");
        let dev = Device::Cpu;
        let image = Tensor::rand(-1f64, 1f64, (1, 3, 64, 64), &dev).expect("image");
        let mask = Tensor::rand(0f64, 1f64, (1, 1, 64, 64), &dev).expect("mask");
        let x = Var::from_tensor(&image).expect("var");
        let score = d.forward(x.as_tensor(), &mask, false).expect("forward");
        let grads = score
            .sum_all()
            .and_then(|s| s.backward())
            .expect("backward");
        let g = grads.get(x.as_tensor()).expect("input gradient");
        let f = |t: &Tensor| -> f64 {
            d.forward(t, &mask, false)
                .and_then(|s| s.sum_all())
                .and_then(|s| s.to_scalar())
                .expect("score")
        };
        // Pixels in different grid cells, edges and corners included.
        check_fd(
            &f,
            &image,
            g,
            &[0, 63, 17 * 64 + 40, 2 * 4096 + 4095, 4096 + 33 * 64 + 15],
        );
    }

    #[test]
    fn generator_gain_gradient_matches_finite_differences() {
        let cfg = model(16, 2, 2);
        let params = VarMap::new();
        let buffers = VarMap::new();
        let vb = VarBuilder::from_varmap(&params, DType::F64, &Device::Cpu);
        let g = Generator::new(&cfg, vb, &buffers).expect("generator");
        let dev = Device::Cpu;
        // Inputs inside (-0.5, 0.5) and a small output: nothing reaches the clamp.
        let image = Tensor::rand(-0.5f64, 0.5f64, (1, 3, 16, 16), &dev).expect("image");
        let mask = Tensor::rand(0f64, 1f64, (1, 1, 16, 16), &dev).expect("mask");
        let r = Tensor::rand(-1f64, 1f64, (1, 3, 16, 16), &dev).expect("weights");
        let log_gain = g.layers()[16].conv.log_gain().expect("gain").clone();
        let var = Var::from_tensor(&log_gain).expect("var");
        var.set(&(var.as_tensor() - 3.0).expect("shift"))
            .expect("small output");
        let loss = |g: &Generator| -> Tensor {
            g.forward(&image, &mask, false)
                .and_then(|o| o * &r)
                .and_then(|o| o.sum_all())
                .expect("loss")
        };
        let grads = loss(&g).backward().expect("backward");
        let grad = grads.get(&log_gain).expect("gain gradient").clone();
        let x0 = var.as_tensor().copy().expect("copy");
        let f = |t: &Tensor| -> f64 {
            var.set(t).expect("set");
            loss(&g).to_scalar().expect("scalar")
        };
        check_fd(&f, &x0, &grad, &[0]);
    }
}
