//! Speed of one network's training step, layer by layer: the numbers behind `dtgan-studio bench
//! --net`. The PyTorch script `bench/torch_nets.py` builds the same networks and runs the same
//! step, so the two can be compared on one machine.
//!
//! A step is what training does to one network per iteration: a forward pass in training mode
//! (spectral norm's power iteration included), a loss, the backward pass and an Adam update. The
//! generator's loss is L1 to a random target (inside the mask plus 5x outside); the critic's is
//! its mean score. Inputs are random, so no data or project is needed.

use std::time::Instant;

use candle_core::{Device, Result, Tensor};
use serde::Serialize;

use super::adam::Adam;
use super::config::{Activation, ModelConfig};
use super::model::{Dtgan, masked_l1};
use super::nets::GRID;
use crate::inpaint::config::InpaintModel;
use crate::inpaint::nets::InpaintGan;
use crate::nn::conv::{
    self, Act, Conv2dParams, ConvKernel, conv2d_flops, conv2d_gradients, conv2d_input_grad,
    conv2d_weight_grad,
};
use crate::nn::spectral::SnConv2d;
use crate::nn::upsample::upsample_nearest2x;

/// Which network to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Net {
    /// The 17-convolution generator.
    Generator,
    /// The global + local critic.
    Critic,
    /// The inpainting generator (coarse + refinement with contextual attention), per stage.
    Inpaint,
}

/// What to time.
#[derive(Debug, Clone)]
pub struct NetBenchConfig {
    /// The network.
    pub net: Net,
    /// Side of the square input, in pixels.
    pub size: usize,
    /// Images per step.
    pub batch: usize,
    /// Generator base width `c` (the critic's width is `c / 2`, as in the presets).
    pub width: usize,
    /// Timed steps, after one untimed warm-up step; the median is reported.
    pub steps: usize,
    /// Where the networks run.
    pub device: Device,
}

/// One convolution's forward pass.
#[derive(Debug, Clone, Serialize)]
pub struct LayerTiming {
    /// `gen.conv03`, `critic.local.conv1`, ...
    pub name: String,
    /// `in -> out channels, kernel, stride, dilation, input side`.
    pub shape: String,
    /// Floating-point operations of the convolution (2 per multiply-add).
    pub gflop: f64,
    /// Median seconds of the layer (spectral norm, convolution, bias).
    pub seconds: f64,
    /// `gflop / seconds`.
    pub gflops: f64,
    /// Median seconds of the input gradient (fast kernel only, else NaN).
    pub input_grad_seconds: f64,
    /// Median seconds of the weight gradient (fast kernel only, else NaN).
    pub weight_grad_seconds: f64,
    /// Median seconds of both gradients as a training step computes them: from one column
    /// matrix for stride-1 layers with no more output than input channels, otherwise the two
    /// side by side (fast kernel only, else NaN).
    pub backward_seconds: f64,
}

/// The result, printed as a table or (`--json`) as one JSON object.
#[derive(Debug, Clone, Serialize)]
pub struct NetBenchReport {
    /// The network.
    pub net: Net,
    /// Input side.
    pub size: usize,
    /// Batch size.
    pub batch: usize,
    /// Generator base width.
    pub width: usize,
    /// `fast` or `candle` on the CPU, `cuda` on a GPU.
    pub kernel: String,
    /// Rayon threads used by the kernels.
    pub threads: usize,
    /// Median seconds of a full training step (forward, backward, Adam).
    pub step_seconds: f64,
    /// Median seconds of a training-mode forward pass.
    pub forward_seconds: f64,
    /// Convolution GFLOP of one forward pass.
    pub forward_gflop: f64,
    /// Forward convolution GFLOP per forward second.
    pub gflops: f64,
    /// Three times the forward GFLOP (forward, input and weight gradients) per step second.
    pub step_gflops: f64,
    /// Every convolution, in order.
    pub layers: Vec<LayerTiming>,
}

/// Model sizes for a benchmark: the presets' shape at the given side and width.
fn model(cfg: &NetBenchConfig) -> ModelConfig {
    ModelConfig {
        image_size: cfg.size,
        channels: 3,
        gen_width: cfg.width,
        critic_width: (cfg.width / 2).max(1),
        activation: Default::default(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Times `f` once to warm up and then `n` times, returning the median seconds (waiting for a
/// GPU to finish each time).
fn time<T>(n: usize, device: &Device, mut f: impl FnMut() -> Result<T>) -> Result<f64> {
    f()?;
    device.synchronize()?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let started = Instant::now();
        f()?;
        device.synchronize()?;
        times.push(started.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// Collects per-layer forward times over repeated passes.
struct LayerClock {
    layers: Vec<(String, String, f64, [Vec<f64>; 4])>,
    pass: usize,
    index: usize,
}

impl LayerClock {
    fn new() -> Self {
        Self {
            layers: Vec::new(),
            pass: 0,
            index: 0,
        }
    }

    /// Runs one layer, recording its time under `name`.
    fn run(&mut self, name: &str, conv: &SnConv2d, x: &Tensor, act: Act) -> Result<Tensor> {
        let c = *conv.config();
        let params = Conv2dParams {
            stride: c.stride,
            padding: c.padding,
            dilation: c.dilation,
        };
        let w_dims = [c.out_channels, c.in_channels, c.kernel, c.kernel];
        let flops = conv2d_flops(x.dims(), &w_dims, params).unwrap_or(0.0);
        let device = x.device();
        device.synchronize()?;
        let started = Instant::now();
        let y = conv.forward_act(x, true, act)?;
        device.synchronize()?;
        let elapsed = started.elapsed().as_secs_f64();
        let (mut dx, mut dw, mut both) = (f64::NAN, f64::NAN, f64::NAN);
        if conv::kernel() == ConvKernel::Fast && x.device().is_cpu() {
            let (_, _, h, w) = x.dims4()?;
            let weight = conv.weight().detach();
            let started = Instant::now();
            conv2d_input_grad(&y, &weight, (h, w), params)?;
            dx = started.elapsed().as_secs_f64();
            let started = Instant::now();
            conv2d_weight_grad(x, &y, (c.kernel, c.kernel), params)?;
            dw = started.elapsed().as_secs_f64();
            let started = Instant::now();
            conv2d_gradients(x, &weight, &y, params)?;
            both = started.elapsed().as_secs_f64();
        }
        if self.pass == 0 {
            let side = x.dims().get(2).copied().unwrap_or(0);
            let shape = format!(
                "{}->{} {}x{} s{} d{} @{}",
                c.in_channels, c.out_channels, c.kernel, c.kernel, c.stride, c.dilation, side
            );
            self.layers
                .push((name.to_string(), shape, flops / 1e9, Default::default()));
        }
        if let Some(layer) = self.layers.get_mut(self.index) {
            layer.3[0].push(elapsed);
            layer.3[1].push(dx);
            layer.3[2].push(dw);
            layer.3[3].push(both);
        }
        self.index += 1;
        Ok(y)
    }

    fn next_pass(&mut self) {
        self.pass += 1;
        self.index = 0;
    }

    fn report(self) -> Vec<LayerTiming> {
        self.layers
            .into_iter()
            .map(|(name, shape, gflop, [fwd, dx, dw, both])| {
                // The first pass warms up.
                let med = |t: Vec<f64>| median(t.into_iter().skip(1).collect());
                let seconds = med(fwd);
                LayerTiming {
                    name,
                    shape,
                    gflop,
                    seconds,
                    gflops: gflop / seconds,
                    input_grad_seconds: med(dx),
                    weight_grad_seconds: med(dw),
                    backward_seconds: med(both),
                }
            })
            .collect()
    }
}

/// The generator's forward pass, one layer at a time under the clock.
fn generator_layers(
    nets: &Dtgan,
    image: &Tensor,
    mask: &Tensor,
    clock: &mut LayerClock,
) -> Result<()> {
    let mut x = Tensor::cat(&[image, mask], 1)?;
    for (i, layer) in nets.generator.layers().iter().enumerate() {
        if layer.upsample {
            x = upsample_nearest2x(&x)?;
        }
        let act = if layer.relu {
            nets.model.activation.fused()
        } else {
            Act::Identity
        };
        x = clock.run(&format!("gen.conv{i:02}"), &layer.conv, &x, act)?;
    }
    clock.next_pass();
    Ok(())
}

/// The critic's convolutions, one at a time under the clock.
fn critic_layers(
    nets: &Dtgan,
    image: &Tensor,
    mask: &Tensor,
    clock: &mut LayerClock,
) -> Result<()> {
    let x = Tensor::cat(&[image, mask], 1)?;
    let (b, c, h, w) = x.dims4()?;
    let cells = x
        .reshape((b, c, GRID, h / GRID, GRID, w / GRID))?
        .permute((0, 2, 4, 1, 3, 5))?
        .contiguous()?
        .reshape((b * GRID * GRID, c, h / GRID, w / GRID))?;
    let stacks = [
        ("global", nets.critic.global(), x),
        ("local", nets.critic.local(), cells),
    ];
    for (name, stack, mut y) in stacks {
        for (i, conv) in stack.convs().iter().enumerate() {
            y = clock.run(&format!("critic.{name}.conv{i}"), conv, &y, Act::Leaky(0.2))?;
        }
    }
    clock.next_pass();
    Ok(())
}

/// Times one network's training step and its layers.
pub fn bench_net(cfg: &NetBenchConfig) -> Result<NetBenchReport> {
    let device = cfg.device.clone();
    let model = model(cfg);
    let nets = Dtgan::new(&model, &device, 1)?;
    let (b, s) = (cfg.batch, cfg.size);
    let image = Tensor::rand(-1f32, 1f32, (b, 3, s, s), &device)?;
    let target = Tensor::rand(-1f32, 1f32, (b, 3, s, s), &device)?;
    let quarter = s / 4;
    let mask = Tensor::zeros((b, 1, s, s), candle_core::DType::F32, &device)?.slice_assign(
        &[0..b, 0..1, quarter..s - quarter, quarter..s - quarter],
        &Tensor::ones(
            (b, 1, s - 2 * quarter, s - 2 * quarter),
            candle_core::DType::F32,
            &device,
        )?,
    )?;
    let mut clock = LayerClock::new();
    let (forward_seconds, step_seconds) = match cfg.net {
        Net::Generator => {
            let mut opt = Adam::new(&nets.gen_vars, 1e-4, 0.5, 0.9)?;
            let forward = time(cfg.steps, &device, || {
                nets.generator.forward(&image, &mask, true)
            })?;
            let step = time(cfg.steps, &device, || {
                let fake = nets.generator.forward(&image, &mask, true)?;
                let (inside, outside) = masked_l1(&fake, &target, &mask)?;
                opt.backward_step(&(inside + (outside * 5.0)?)?)
            })?;
            for _ in 0..=cfg.steps.max(1) {
                generator_layers(&nets, &image, &mask, &mut clock)?;
            }
            (forward, step)
        }
        Net::Critic => {
            let mut opt = Adam::new(&nets.critic_vars, 1e-4, 0.5, 0.9)?;
            let forward = time(cfg.steps, &device, || {
                nets.critic.forward(&image, &mask, true)
            })?;
            let step = time(cfg.steps, &device, || {
                let score = nets.critic.forward(&image, &mask, true)?;
                opt.backward_step(&score.mean_all()?)
            })?;
            for _ in 0..=cfg.steps.max(1) {
                critic_layers(&nets, &image, &mask, &mut clock)?;
            }
            (forward, step)
        }
        Net::Inpaint => {
            let m = InpaintModel {
                image_size: s,
                channels: 3,
                width: cfg.width,
                critic_width: (cfg.width / 2).max(1),
                activation: Activation::Elu,
            };
            let gan = InpaintGan::new(&m, &device, 1)?;
            let mut opt = Adam::new(&gan.gen_vars, 1e-4, 0.5, 0.9)?;
            let forward = time(cfg.steps, &device, || {
                gan.net.forward(&image, &mask, true).map(|o| o.refined)
            })?;
            let step = time(cfg.steps, &device, || {
                let out = gan.net.forward(&image, &mask, true)?;
                let loss = ((&out.coarse - &target)?.abs()?.mean_all()?
                    + (&out.refined - &target)?.abs()?.mean_all()?)?;
                opt.backward_step(&loss)
            })?;
            let stages = gan.net.profile(&image, &mask, cfg.steps)?;
            let layers = stages
                .into_iter()
                .map(|(name, seconds, gflop)| LayerTiming {
                    name,
                    shape: format!("{s}x{s}, width {}", cfg.width),
                    gflop,
                    seconds,
                    gflops: gflop / seconds,
                    input_grad_seconds: f64::NAN,
                    weight_grad_seconds: f64::NAN,
                    backward_seconds: f64::NAN,
                })
                .collect();
            return Ok(report(cfg, &device, forward, step, layers));
        }
    };
    let layers = clock.report();
    Ok(report(cfg, &device, forward_seconds, step_seconds, layers))
}

/// The report of a run: totals from the layer (or stage) timings.
fn report(
    cfg: &NetBenchConfig,
    device: &Device,
    forward_seconds: f64,
    step_seconds: f64,
    layers: Vec<LayerTiming>,
) -> NetBenchReport {
    let forward_gflop: f64 = layers.iter().map(|l| l.gflop).sum();
    NetBenchReport {
        net: cfg.net,
        size: cfg.size,
        batch: cfg.batch,
        width: cfg.width,
        kernel: if device.is_cpu() {
            format!("{:?}", conv::kernel()).to_lowercase()
        } else {
            "cuda".into()
        },
        threads: rayon::current_num_threads(),
        step_seconds,
        forward_seconds,
        forward_gflop,
        gflops: forward_gflop / forward_seconds,
        step_gflops: 3.0 * forward_gflop / step_seconds,
        layers,
    }
}

impl std::fmt::Display for NetBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:?} {}x{} batch {} width {}, {} kernel, {} threads",
            self.net, self.size, self.size, self.batch, self.width, self.kernel, self.threads
        )?;
        writeln!(
            f,
            "{:<20} {:<26} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "layer", "shape", "GFLOP", "fwd ms", "GFLOP/s", "dX ms", "dW ms", "bwd ms", "GFLOP/s"
        )?;
        for l in &self.layers {
            writeln!(
                f,
                "{:<20} {:<26} {:>6.3} {:>8.2} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>8.1}",
                l.name,
                l.shape,
                l.gflop,
                l.seconds * 1e3,
                l.gflops,
                l.input_grad_seconds * 1e3,
                l.weight_grad_seconds * 1e3,
                l.backward_seconds * 1e3,
                2.0 * l.gflop / l.backward_seconds
            )?;
        }
        writeln!(
            f,
            "forward {:.3} s ({:.2} GFLOP, {:.1} GFLOP/s); step {:.3} s ({:.1} GFLOP/s counting 3x forward)",
            self.forward_seconds,
            self.forward_gflop,
            self.gflops,
            self.step_seconds,
            self.step_gflops
        )
    }
}
