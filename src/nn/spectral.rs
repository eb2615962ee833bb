//! Spectrally normalised 2-D convolution (Miyato et al., 2018), used by the DTGAN discriminators.
//!
//! The weight `W` (shape `(out, in, k, k)`) is divided by an estimate of its largest singular
//! value `sigma`, computed on `W` viewed as an `(out, in*k*k)` matrix. The estimate keeps a left
//! singular vector `u` between calls and refines it with one power-iteration step per training
//! forward pass.
//!
//! Parameters and buffers live in two separate [`VarMap`]s: the trainable `weight` / `bias` come
//! from the caller's [`VarBuilder`] (keys `<prefix>.weight`, `<prefix>.bias`), while `u` is stored
//! in a second "buffers" map under `<prefix>.sn_u`. Hand only the parameter map to the optimizer
//! and save both maps in checkpoints, so `u` is restored but never touched by gradient steps.

use candle_core::{DType, Result, Tensor, Var};
use candle_nn::{Init, ModuleT, VarBuilder, VarMap};

use super::conv::{Act, ChainStage, Conv2dParams, conv_chain, conv2d_fused, runs_fast};

mod scale;

/// Guards the vector normalisation against division by zero (an all-zero weight).
const NORM_EPS: f64 = 1e-12;

/// Shape and options of a [`SnConv2d`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnConv2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Dilation of the kernel taps.
    pub dilation: usize,
    /// Whether a per-channel bias is added.
    pub bias: bool,
    /// The normalised weight is `gain * W / sigma`: 1 keeps the layer 1-Lipschitz (critics).
    pub gain: f64,
    /// Make the gain a trainable scalar, as in weight normalisation, stored as its logarithm
    /// (`<prefix>.log_gain`, starting at `ln(gain)`) so that an optimizer step changes it by a
    /// fraction, never flips its sign. A generator needs this: with a fixed norm its layers
    /// cannot scale their output down, and the only way left to keep a background unchanged is
    /// to let the ReLUs die.
    pub learn_gain: bool,
}

impl SnConv2dConfig {
    /// A stride-1, unpadded, undilated convolution with bias.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding: 0,
            dilation: 1,
            bias: true,
            gain: 1.0,
            learn_gain: false,
        }
    }

    /// Output spatial size for an input side of `size`, following the usual conv arithmetic.
    pub fn output_size(&self, size: usize) -> Option<usize> {
        let span = self.dilation * (self.kernel.checked_sub(1)?) + 1;
        let padded = size + 2 * self.padding;
        padded
            .checked_sub(span)
            .map(|rest| rest / self.stride.max(1) + 1)
    }
}

/// A conv2d layer whose weight is spectrally normalised on every forward pass.
#[derive(Debug, Clone)]
pub struct SnConv2d {
    cfg: SnConv2dConfig,
    weight: Tensor,
    bias: Option<Tensor>,
    gain: Option<Tensor>,
    u: Var,
}

/// Scales `v` (1-D) to unit length.
fn normalize(v: &Tensor) -> Result<Tensor> {
    let norm = v.sqr()?.sum_all()?.sqrt()?;
    v.broadcast_div(&(norm + NORM_EPS)?)
}

impl SnConv2d {
    /// Creates (or reuses, if already present) the layer's parameters from `vb` and its `u`
    /// buffer in `buffers`, under the key `<vb prefix>.sn_u`.
    pub fn new(cfg: SnConv2dConfig, vb: VarBuilder, buffers: &VarMap) -> Result<Self> {
        let k = cfg.kernel;
        let weight = vb.get_with_hints(
            (cfg.out_channels, cfg.in_channels, k, k),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        )?;
        let bias = if cfg.bias {
            Some(vb.get_with_hints(cfg.out_channels, "bias", Init::Const(0.0))?)
        } else {
            None
        };
        let gain = if cfg.learn_gain {
            Some(vb.get_with_hints(1, "log_gain", Init::Const(cfg.gain.ln()))?)
        } else {
            None
        };
        let prefix = vb.prefix();
        let key = if prefix.is_empty() {
            "sn_u".to_string()
        } else {
            format!("{prefix}.sn_u")
        };
        let existed = lock(buffers)?.contains_key(&key);
        buffers.get(
            cfg.out_channels,
            &key,
            Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
            vb.dtype(),
            vb.device(),
        )?;
        let u = lock(buffers)?
            .get(&key)
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg(format!("buffer {key} vanished")))?;
        if !existed {
            u.set(&normalize(u.as_tensor())?)?;
        }
        Ok(Self {
            cfg,
            weight,
            bias,
            gain,
            u,
        })
    }

    /// The layer's configuration.
    pub fn config(&self) -> &SnConv2dConfig {
        &self.cfg
    }

    /// The trainable log-gain, when the layer has one.
    pub fn log_gain(&self) -> Option<&Tensor> {
        self.gain.as_ref()
    }

    /// The raw, unnormalised weight (the trainable parameter).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The current left singular vector estimate `u` (a copy, shape `(out,)`).
    pub fn u(&self) -> Result<Tensor> {
        self.u.as_tensor().copy()
    }

    /// Returns `(gain * W / sigma, sigma)`.
    ///
    /// Always `v = normalize(W^T u)`. With `train`, also `u = normalize(W v)` (one power-iteration
    /// step), and the refined `u` is stored; without it the stored `u` is used unchanged, which
    /// makes the layer a deterministic function of `W`. `sigma = u^T W v` with `u`, `v` detached,
    /// so gradients flow only through `W`; in inference mode `v` maximises `u^T W v`, hence this is
    /// the exact gradient of `sigma = |W^T u|`.
    pub fn normalized_weight(&self, train: bool) -> Result<(Tensor, Tensor)> {
        let w_mat = self.weight.flatten_from(1)?;
        let w_const = w_mat.detach();
        let mut u = self.u.as_tensor().detach();
        let v = normalize(&w_const.t()?.matmul(&u.unsqueeze(1)?)?.squeeze(1)?)?;
        if train {
            u = normalize(&w_const.matmul(&v.unsqueeze(1)?)?.squeeze(1)?)?;
            self.u.set(&u)?;
        }
        if runs_fast([&self.weight]) {
            // One op for the scaling and its gradient (see [`scale`]).
            let gain = match &self.gain {
                Some(log_gain) => log_gain.exp()?,
                None => Tensor::new(&[self.cfg.gain], self.weight.device())?
                    .to_dtype(self.weight.dtype())?,
            };
            let vec = |t: &Tensor| t.to_dtype(DType::F64)?.to_vec1::<f64>();
            let (w, sigma) = scale::scale_by_sigma(&self.weight, &gain, vec(&u)?, vec(&v)?)?;
            let sigma = Tensor::new(sigma, self.weight.device())?.to_dtype(self.weight.dtype())?;
            return Ok((w, sigma));
        }
        let sigma = u
            .unsqueeze(0)?
            .matmul(&w_mat)?
            .matmul(&v.unsqueeze(1)?)?
            .reshape(())?;
        let w = self.weight.broadcast_div(&sigma)?;
        let w = match &self.gain {
            Some(log_gain) => w.broadcast_mul(&log_gain.exp()?)?,
            None if self.cfg.gain == 1.0 => w,
            None => (w * self.cfg.gain)?,
        };
        Ok((w, sigma))
    }
}

impl SnConv2d {
    /// `act(conv(xs, gain * W / sigma) + bias)`, fused into one op on the CPU (see
    /// [`conv2d_fused`]).
    pub fn forward_act(&self, xs: &Tensor, train: bool, act: Act) -> Result<Tensor> {
        let (w, _) = self.normalized_weight(train)?;
        conv2d_fused(xs, &w, self.bias.as_ref(), self.params(), act)
    }

    /// The convolution's stride, padding and dilation.
    pub fn params(&self) -> Conv2dParams {
        Conv2dParams {
            stride: self.cfg.stride,
            padding: self.cfg.padding,
            dilation: self.cfg.dilation,
        }
    }

    /// The bias `(out,)`, if the layer has one.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

/// Runs `x` through spectrally normalised layers, each `(layer, upsample first, activation)`, as
/// one [`conv_chain`] op (on the CPU: one forward and one backward call for the whole chain).
pub fn sn_chain<'a>(
    x: &Tensor,
    layers: impl IntoIterator<Item = (&'a SnConv2d, bool, Act)>,
    train: bool,
) -> Result<Tensor> {
    let mut weights = Vec::new();
    let mut stages = Vec::new();
    for (conv, upsample, act) in layers {
        let (w, _) = conv.normalized_weight(train)?;
        weights.push((w, conv.bias.clone()));
        stages.push(ChainStage {
            upsample,
            params: conv.params(),
            act,
        });
    }
    conv_chain(x, &weights, &stages)
}

impl ModuleT for SnConv2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act(xs, train, Act::Identity)
    }
}

/// Locks a VarMap's table, turning a poisoned lock into an error instead of a panic.
fn lock(map: &VarMap) -> Result<std::sync::MutexGuard<'_, std::collections::HashMap<String, Var>>> {
    map.data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::testutil;
    use candle_core::{DType, Device};

    /// Builds a layer named `conv` in f64 and overwrites its weight with seeded values.
    fn layer(cfg: SnConv2dConfig, seed: u64) -> (SnConv2d, VarMap, VarMap) {
        let params = VarMap::new();
        let buffers = VarMap::new();
        let vb = VarBuilder::from_varmap(&params, DType::F64, &Device::Cpu);
        let conv = SnConv2d::new(cfg, vb.pp("conv"), &buffers).expect("layer");
        let k = cfg.kernel;
        let shape = [cfg.out_channels, cfg.in_channels, k, k];
        set_var(&params, "conv.weight", &testutil::tensor(&shape, seed));
        (conv, params, buffers)
    }

    fn set_var(map: &VarMap, key: &str, value: &Tensor) {
        let data = map.data().lock().expect("lock");
        data.get(key).expect("key exists").set(value).expect("set");
    }

    fn flat(t: &Tensor) -> Vec<f64> {
        t.flatten_all().and_then(|t| t.to_vec1()).expect("values")
    }

    /// Largest singular value of a row-major `rows x cols` matrix, by 2000 power iterations on
    /// `A^T A` in plain f64 (independent of candle).
    fn top_singular(a: &[f64], rows: usize, cols: usize) -> f64 {
        let mut v = vec![1.0; cols];
        let mut sigma = 0.0;
        for _ in 0..2000 {
            let av: Vec<f64> = (0..rows)
                .map(|r| (0..cols).map(|c| a[r * cols + c] * v[c]).sum())
                .collect();
            let atav: Vec<f64> = (0..cols)
                .map(|c| (0..rows).map(|r| a[r * cols + c] * av[r]).sum())
                .collect();
            let norm = atav.iter().map(|x| x * x).sum::<f64>().sqrt();
            v = atav.iter().map(|x| x / norm).collect();
            sigma = norm.sqrt();
        }
        sigma
    }

    #[test]
    fn sigma_converges_to_largest_singular_value() {
        let cfg = SnConv2dConfig::new(3, 4, 3);
        let (conv, _params, buffers) = layer(cfg, 7);
        // A fixed start for the power iteration (the layer's own is random, unseeded, and a
        // start nearly orthogonal to the top singular vector needs more than 20 steps).
        set_var(&buffers, "conv.sn_u", &testutil::tensor(&[4], 11));
        let w = flat(conv.weight());
        let truth = top_singular(&w, 4, 27);
        let x = testutil::tensor(&[1, 3, 6, 6], 8);
        for _ in 0..20 {
            conv.forward_t(&x, true).expect("forward");
        }
        let (w_sn, sigma) = conv.normalized_weight(false).expect("normalized");
        let sigma: f64 = sigma.to_scalar().expect("sigma");
        assert!(
            (sigma - truth).abs() / truth < 0.01,
            "sigma {sigma} vs true {truth}"
        );
        let after = top_singular(&flat(&w_sn), 4, 27);
        assert!(
            (after - 1.0).abs() < 0.01,
            "normalised top singular value {after}"
        );
    }

    #[test]
    fn inference_mode_keeps_u_and_training_mode_updates_it() {
        let (conv, _params, buffers) = layer(SnConv2dConfig::new(2, 3, 3), 9);
        let x = testutil::tensor(&[1, 2, 5, 5], 10);
        let u0 = flat(&conv.u().expect("u"));
        conv.forward_t(&x, false).expect("inference");
        assert_eq!(flat(&conv.u().expect("u")), u0);
        conv.forward_t(&x, true).expect("train");
        let u1 = flat(&conv.u().expect("u"));
        assert_ne!(u1, u0);
        // The stored buffer is the one in the buffers map, so checkpoints see the update.
        let stored = buffers.data().lock().expect("lock")["conv.sn_u"]
            .as_tensor()
            .copy();
        assert_eq!(flat(&stored.expect("copy")), u1);
        let norm: f64 = u1.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-9, "u not unit length: {norm}");
    }

    #[test]
    fn weight_gradient_matches_finite_differences() {
        let mut cfg = SnConv2dConfig::new(2, 3, 3);
        cfg.padding = 1;
        let (conv, params, _buffers) = layer(cfg, 11);
        let x = testutil::tensor(&[1, 2, 4, 4], 12);
        let r = testutil::tensor(&[1, 3, 4, 4], 13);
        let loss = || -> Tensor {
            let y = conv.forward_t(&x, false).expect("forward");
            (y * &r).and_then(|t| t.sum_all()).expect("loss")
        };
        let grads = loss().backward().expect("backward");
        let g = flat(grads.get(conv.weight()).expect("weight gradient"));
        let w0 = flat(conv.weight());
        let shape = conv.weight().dims().to_vec();
        let h = 1e-5;
        let eval = |w: Vec<f64>| -> f64 {
            let t = Tensor::from_vec(w, shape.as_slice(), &Device::Cpu).expect("w");
            set_var(&params, "conv.weight", &t);
            loss().to_scalar().expect("scalar")
        };
        for i in 0..w0.len() {
            let mut plus = w0.clone();
            plus[i] += h;
            let mut minus = w0.clone();
            minus[i] -= h;
            let fd = (eval(plus) - eval(minus)) / (2.0 * h);
            let err = (g[i] - fd).abs() / fd.abs().max(1e-2);
            assert!(err < 1e-6, "weight {i}: autograd {} vs fd {fd}", g[i]);
        }
    }

    /// The fused scaling (the CPU's default) against candle's ops (`--kernel candle`): output,
    /// weight and gain gradients, in f64 and f32, for a learned gain; then the gain's gradient
    /// against central differences.
    #[test]
    fn fused_scaling_matches_candle_ops_and_finite_differences() {
        use crate::nn::conv::{ConvKernel, set_kernel};
        let mut cfg = SnConv2dConfig::new(3, 5, 3);
        cfg.padding = 1;
        cfg.gain = 0.7;
        cfg.learn_gain = true;
        let (conv, params, _buffers) = layer(cfg, 21);
        let x = testutil::tensor(&[2, 3, 5, 5], 22);
        let r = testutil::tensor(&[2, 5, 5, 5], 23);
        let rw = testutil::tensor(&[5, 3, 3, 3], 24);
        // Inference mode leaves `u` as it is, so both paths see the same vectors.
        let run = |kernel: ConvKernel, dtype: DType| -> Vec<Vec<f64>> {
            set_kernel(kernel);
            let to = |t: &Tensor| t.to_dtype(dtype).expect("dtype");
            let w = Var::from_tensor(&to(conv.weight())).expect("w");
            let g = Var::from_tensor(&to(conv.log_gain().expect("gain"))).expect("g");
            let probe = SnConv2d {
                weight: w.as_tensor().clone(),
                gain: Some(g.as_tensor().clone()),
                bias: None,
                u: Var::from_tensor(&to(conv.u.as_tensor())).expect("u"),
                cfg: conv.cfg,
            };
            let (ws, sigma) = probe.normalized_weight(false).expect("normalized");
            let loss = (&ws * to(&rw)).and_then(|t| t.sum_all()).expect("loss");
            let grads = loss.backward().expect("backward");
            set_kernel(ConvKernel::Fast);
            let f = |t: &Tensor| flat(&t.to_dtype(DType::F64).expect("f64"));
            vec![
                f(&ws),
                f(&sigma.reshape(1).expect("sigma")),
                f(grads.get(w.as_tensor()).expect("dw")),
                f(grads.get(g.as_tensor()).expect("dg")),
            ]
        };
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            let fused = run(ConvKernel::Fast, dtype);
            let ops = run(ConvKernel::Candle, dtype);
            for (what, (a, b)) in ["weight", "sigma", "dW", "dgain"]
                .iter()
                .zip(fused.iter().zip(&ops))
            {
                assert_eq!(a.len(), b.len());
                for (i, (a, b)) in a.iter().zip(b).enumerate() {
                    assert!(
                        (a - b).abs() <= tol * b.abs().max(1.0),
                        "{dtype:?} {what}[{i}]: fused {a} vs candle ops {b}"
                    );
                }
            }
            assert!(fused[3][0].abs() > 1e-3, "the gain gets a gradient");
        }
        // The gain's gradient through the whole layer, against central differences.
        let loss = || -> Tensor {
            let y = conv.forward_t(&x, false).expect("forward");
            (y * &r).and_then(|t| t.sum_all()).expect("loss")
        };
        let grads = loss().backward().expect("backward");
        let log_gain = conv.log_gain().expect("gain");
        let g = flat(grads.get(log_gain).expect("gain gradient"))[0];
        let g0 = flat(log_gain)[0];
        let h = 1e-5;
        let eval = |v: f64| -> f64 {
            set_var(
                &params,
                "conv.log_gain",
                &Tensor::new(&[v], &Device::Cpu).expect("g"),
            );
            loss().to_scalar().expect("scalar")
        };
        let fd = (eval(g0 + h) - eval(g0 - h)) / (2.0 * h);
        assert!(
            (g - fd).abs() / fd.abs().max(1e-2) < 1e-6,
            "gain: autograd {g} vs fd {fd}"
        );
    }

    #[test]
    fn output_shapes_for_stride_and_dilation() {
        let x = testutil::tensor(&[2, 3, 16, 16], 14);
        let mut down = SnConv2dConfig::new(3, 5, 4);
        down.stride = 2;
        down.padding = 1;
        down.bias = false;
        let mut dilated = SnConv2dConfig::new(3, 5, 3);
        dilated.dilation = 4;
        dilated.padding = 4;
        for (cfg, side) in [(down, 8), (dilated, 16)] {
            assert_eq!(cfg.output_size(16), Some(side));
            let (conv, _p, _b) = layer(cfg, 15);
            let y = conv.forward_t(&x, true).expect("forward");
            assert_eq!(y.dims(), &[2, 5, side, side], "config {cfg:?}");
        }
    }
}
