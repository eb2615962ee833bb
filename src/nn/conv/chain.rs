//! A chain of convolutions as one op: [`conv_chain`].
//!
//! candle's backward pass keeps one gradient tensor per graph node and accumulates into it: for
//! every activation it allocates a zero tensor and adds the incoming gradient to it, on one
//! thread. For the 17-layer generator at 256 px that bookkeeping (about 90 MB of activation
//! gradients, each cleared, read and written again) cost about 20 ms of a 230 ms training step.
//! This op runs a whole chain of stages, each an optional nearest x2 upsampling followed by
//! `act(conv(x, w) + b)`, in one forward call and one backward call: the activations are kept
//! by the op itself, every gradient is handed from stage to stage without a copy, and the
//! activation gradient is applied in place in the same pass that sums the bias gradient. The
//! weights and biases travel as two flat tensors, so candle still routes their gradients through
//! the spectral norm (or whatever produced them). A stage that upsamples into a 3x3 convolution
//! is computed on the small input, as a folded 2x2 convolution ([`subpixel`]).
//!
//! On other devices, other dtypes and with candle's kernel selected, [`conv_chain`] is the same
//! chain of [`conv2d_fused`] and [`upsample_nearest2x`] calls, which is also the reference the
//! tests compare against.

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor, bail};
use rayon::prelude::*;

use super::{
    Act, Conv2dParams, Float, Geom, check_act, conv2d_fused, forward, input_grad,
    input_weight_grad, runs_fast, slice, weight_grad,
};
use crate::nn::upsample::{down_sum, up, upsample_nearest2x};

mod subpixel;

/// One stage of a [`conv_chain`]: an optional nearest-neighbour x2 upsampling of its input, then
/// `act(conv(x, w, params) + b)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChainStage {
    /// Upsample the input x2 (nearest) before the convolution.
    pub upsample: bool,
    /// Stride, padding and dilation of the convolution.
    pub params: Conv2dParams,
    /// The activation applied after the bias.
    pub act: Act,
}

/// Runs `x` through `stages`, stage `i` with kernel `weights[i].0` `(O, C, KH, KW)` and bias
/// `weights[i].1` `(O,)` (none: zero). Gradients flow to `x`, every kernel and every bias.
pub fn conv_chain(
    x: &Tensor,
    weights: &[(Tensor, Option<Tensor>)],
    stages: &[ChainStage],
) -> Result<Tensor> {
    if weights.len() != stages.len() || stages.is_empty() {
        bail!(
            "conv chain: {} stages with {} kernels",
            stages.len(),
            weights.len()
        );
    }
    for stage in stages {
        check_act("conv chain", stage.act)?;
    }
    if !runs_fast(std::iter::once(x).chain(weights.iter().map(|(w, _)| w))) {
        let mut y = x.clone();
        for ((w, b), stage) in weights.iter().zip(stages) {
            if stage.upsample {
                y = upsample_nearest2x(&y)?;
            }
            y = conv2d_fused(&y, w, b.as_ref(), stage.params, stage.act)?;
        }
        return Ok(y);
    }
    let mut kernels = Vec::with_capacity(weights.len());
    let mut biases = Vec::with_capacity(weights.len());
    let mut shapes = Vec::with_capacity(weights.len());
    for (w, b) in weights {
        let (o, c, kh, kw) = w.dims4()?;
        kernels.push(w.flatten_all()?);
        biases.push(match b {
            Some(b) if b.dims() == [o] => b.clone(),
            Some(b) => bail!("conv chain: bias of shape {:?} for {o} channels", b.shape()),
            None => Tensor::zeros(o, x.dtype(), x.device())?,
        });
        shapes.push((o, c, kh, kw));
    }
    let op = ChainOp {
        stages: stages.to_vec(),
        shapes,
        saved: Mutex::new(None),
    };
    x.contiguous()?
        .apply_op3(&Tensor::cat(&kernels, 0)?, &Tensor::cat(&biases, 0)?, op)
}

/// The activations a forward pass keeps for its backward pass.
struct Saved<T> {
    /// The output of every stage but the last (the last one is the op's result).
    outputs: Vec<Vec<T>>,
    /// The upsampled input of every stage that upsamples.
    upsampled: Vec<Option<Vec<T>>>,
}

enum AnySaved {
    F32(Saved<f32>),
    F64(Saved<f64>),
}

/// `x.apply_op3(kernels, biases, ChainOp)`: the kernels and biases flat, stage after stage.
struct ChainOp {
    stages: Vec<ChainStage>,
    /// `(O, C, KH, KW)` of every stage's kernel.
    shapes: Vec<(usize, usize, usize, usize)>,
    /// Filled by the forward pass. When no input needs a gradient, candle drops the op (and
    /// this) as soon as the forward pass returns.
    saved: Mutex<Option<AnySaved>>,
}

/// A stage's sizes, and where its kernel and bias start in the flat tensors.
struct Plan {
    geoms: Vec<Geom>,
    /// For a stage that upsamples into a 3x3 convolution, the folded convolution that computes
    /// it from the small input (see [`subpixel`]).
    folded: Vec<Option<Geom>>,
    kernel_at: Vec<usize>,
    bias_at: Vec<usize>,
}

impl ChainOp {
    fn plan(&self, input: (usize, usize, usize, usize)) -> Result<Plan> {
        let (n, mut c, mut h, mut w) = input;
        let (mut geoms, mut kernel_at, mut bias_at) = (vec![], vec![], vec![]);
        let mut folded = vec![];
        let (mut k_off, mut b_off) = (0, 0);
        for (i, (stage, &shape)) in self.stages.iter().zip(&self.shapes).enumerate() {
            folded.push(subpixel::folded_geom(stage, shape, (n, h, w)));
            if stage.upsample {
                (h, w) = (2 * h, 2 * w);
            }
            let g = Geom::new((n, c, h, w), shape, stage.params)
                .map_err(|e| candle_core::Error::msg(format!("conv chain, stage {i}: {e}")))?;
            kernel_at.push(k_off);
            bias_at.push(b_off);
            k_off += shape.0 * shape.1 * shape.2 * shape.3;
            b_off += shape.0;
            (c, h, w) = (g.o, g.ho, g.wo);
            geoms.push(g);
        }
        kernel_at.push(k_off);
        bias_at.push(b_off);
        Ok(Plan {
            geoms,
            folded,
            kernel_at,
            bias_at,
        })
    }

    fn forward<T: Float>(
        &self,
        plan: &Plan,
        x: &[T],
        kernels: &[T],
        biases: &[T],
        wrap: fn(Saved<T>) -> AnySaved,
    ) -> Vec<T> {
        let last = self.stages.len() - 1;
        let mut outputs: Vec<Vec<T>> = Vec::with_capacity(last);
        let mut upsampled = Vec::with_capacity(last + 1);
        let mut y = Vec::new();
        for (i, (stage, g)) in self.stages.iter().zip(&plan.geoms).enumerate() {
            let input = if i == 0 { x } else { &outputs[i - 1][..] };
            let kernel = &kernels[plan.kernel_at[i]..plan.kernel_at[i + 1]];
            let bias = &biases[plan.bias_at[i]..plan.bias_at[i + 1]];
            let (out, up_input) = if let Some(f) = &plan.folded[i] {
                // No bias: `interleave` adds it with the activation.
                let z = forward(
                    f,
                    input,
                    &subpixel::fold_kernel(kernel, g.o, g.c),
                    &[],
                    Act::Identity,
                );
                let sizes = (g.n, g.o, g.h / 2, g.w / 2);
                (subpixel::interleave(&z, sizes, bias, stage.act), None)
            } else {
                let up_input = stage.upsample.then(|| up(input, (g.h / 2, g.w / 2)));
                let input = up_input.as_deref().unwrap_or(input);
                (forward(g, input, kernel, bias, stage.act), up_input)
            };
            upsampled.push(up_input);
            if i == last {
                y = out;
            } else {
                outputs.push(out);
            }
        }
        *self.lock() = Some(wrap(Saved { outputs, upsampled }));
        y
    }

    /// `(input gradient if wanted, kernel gradients, bias gradients)`, all flat.
    fn backward<T: Float>(
        &self,
        plan: &Plan,
        (x, kernels, y, grad): (&[T], &[T], &[T], &[T]),
        saved: &Saved<T>,
        want_x: bool,
    ) -> (Option<Vec<T>>, Vec<T>, Vec<T>) {
        let mut dk = vec![T::ZERO; kernels.len()];
        let mut db = vec![T::ZERO; *plan.bias_at.last().unwrap_or(&0)];
        let mut g = grad.to_vec();
        for i in (0..self.stages.len()).rev() {
            let (stage, geom) = (&self.stages[i], &plan.geoms[i]);
            let out = if i + 1 == self.stages.len() {
                y
            } else {
                &saved.outputs[i][..]
            };
            stage.act.grad_and_bias_grad(
                out,
                &mut g,
                geom.p(),
                &mut db[plan.bias_at[i]..plan.bias_at[i + 1]],
            );
            let input = match (&saved.upsampled[i], i) {
                (Some(u), _) => &u[..],
                (None, 0) => x,
                (None, _) => &saved.outputs[i - 1][..],
            };
            let w = &kernels[plan.kernel_at[i]..plan.kernel_at[i + 1]];
            let need_input = i > 0 || want_x;
            let gx = if let Some(f) = &plan.folded[i] {
                let (o, c) = (geom.o, geom.c);
                let gz = subpixel::deinterleave(&g, (geom.n, o, geom.h / 2, geom.w / 2));
                let w4 = subpixel::fold_kernel(w, o, c);
                let (gx, g4) = stage_gradients(f, input, &w4, &gz, need_input);
                dk[plan.kernel_at[i]..plan.kernel_at[i + 1]]
                    .copy_from_slice(&subpixel::unfold_gradient(&g4, o, c));
                // The folded convolution's input is the small one: its gradient needs no sum.
                gx
            } else {
                let (gx, gw) = stage_gradients(geom, input, w, &g, need_input);
                dk[plan.kernel_at[i]..plan.kernel_at[i + 1]].copy_from_slice(&gw);
                gx.map(|gx| {
                    if stage.upsample {
                        down_sum(&gx, (geom.h / 2, geom.w / 2))
                    } else {
                        gx
                    }
                })
            };
            match gx {
                Some(gx) => g = gx,
                None => break,
            }
        }
        (want_x.then_some(g), dk, db)
    }

    /// [`ChainOp::backward`] with its results as tensors shaped like `x`, `kernels`, `biases`.
    fn backward_tensors<T: Float + candle_core::WithDType>(
        &self,
        plan: &Plan,
        slices: (&[T], &[T], &[T], &[T]),
        saved: &Saved<T>,
        want_x: bool,
        (x, kernels, biases): (&Tensor, &Tensor, &Tensor),
    ) -> Result<(Option<Tensor>, Tensor, Tensor)> {
        let (gx, dk, db) = self.backward(plan, slices, saved, want_x);
        let dev = x.device();
        Ok((
            gx.map(|v| Tensor::from_vec(v, x.shape(), dev))
                .transpose()?,
            Tensor::from_vec(dk, kernels.shape(), dev)?,
            Tensor::from_vec(db, biases.shape(), dev)?,
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<AnySaved>> {
        // A poisoned lock only means a panic elsewhere; the saved activations are still whole.
        self.saved.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Both gradients of one convolution from its output gradient, the input gradient only when
/// `want_x`: from one column matrix where the layer allows it, otherwise side by side.
fn stage_gradients<T: Float>(
    g: &Geom,
    x: &[T],
    w: &[T],
    grad: &[T],
    want_x: bool,
) -> (Option<Vec<T>>, Vec<T>) {
    if want_x && let Some(t) = g.gradient_as_convolution() {
        let mut both = input_weight_grad(g, &t, x, grad, w);
        let gw = both.split_off(g.n * g.c * g.h * g.w);
        return (Some(both), gw);
    }
    rayon::join(
        || want_x.then(|| input_grad(g, grad, w)),
        || weight_grad(g, x, grad),
    )
}

impl CustomOp3 for ChainOp {
    fn name(&self) -> &'static str {
        "fast-conv-chain"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let plan = self.plan(l1.shape().dims4()?)?;
        if l2.shape().elem_count() != plan.kernel_at[self.stages.len()]
            || l3.shape().elem_count() != plan.bias_at[self.stages.len()]
        {
            bail!("conv chain: flat kernels or biases do not match the stages");
        }
        let (n, last) = (l1.shape().dims4()?.0, &plan.geoms[self.stages.len() - 1]);
        let shape = Shape::from((n, last.o, last.ho, last.wo));
        let storage = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(k), CpuStorage::F32(b)) => {
                CpuStorage::F32(self.forward(
                    &plan,
                    slice(x, l1)?,
                    slice(k, l2)?,
                    slice(b, l3)?,
                    AnySaved::F32,
                ))
            }
            (CpuStorage::F64(x), CpuStorage::F64(k), CpuStorage::F64(b)) => {
                CpuStorage::F64(self.forward(
                    &plan,
                    slice(x, l1)?,
                    slice(k, l2)?,
                    slice(b, l3)?,
                    AnySaved::F64,
                ))
            }
            _ => bail!(
                "conv chain: f32 or f64 tensors of one dtype expected, got {:?}, {:?}, {:?}",
                s1.dtype(),
                s2.dtype(),
                s3.dtype()
            ),
        };
        Ok((storage, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        kernels: &Tensor,
        biases: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let plan = self.plan(x.dims4()?)?;
        let grad = grad.contiguous()?;
        let want_x = x.track_op();
        let guard = self.lock();
        let (gx, dk, db) = {
            let (xs, xl) = x.storage_and_layout();
            let (ks, kl) = kernels.storage_and_layout();
            let (ys, yl) = y.storage_and_layout();
            let (gs, gl) = grad.storage_and_layout();
            match (&*xs, &*ks, &*ys, &*gs, guard.as_ref()) {
                (
                    Storage::Cpu(CpuStorage::F32(xd)),
                    Storage::Cpu(CpuStorage::F32(kd)),
                    Storage::Cpu(CpuStorage::F32(yd)),
                    Storage::Cpu(CpuStorage::F32(gd)),
                    Some(AnySaved::F32(saved)),
                ) => {
                    let slices = (
                        slice(xd, xl)?,
                        slice(kd, kl)?,
                        slice(yd, yl)?,
                        slice(gd, gl)?,
                    );
                    self.backward_tensors(&plan, slices, saved, want_x, (x, kernels, biases))?
                }
                (
                    Storage::Cpu(CpuStorage::F64(xd)),
                    Storage::Cpu(CpuStorage::F64(kd)),
                    Storage::Cpu(CpuStorage::F64(yd)),
                    Storage::Cpu(CpuStorage::F64(gd)),
                    Some(AnySaved::F64(saved)),
                ) => {
                    let slices = (
                        slice(xd, xl)?,
                        slice(kd, kl)?,
                        slice(yd, yl)?,
                        slice(gd, gl)?,
                    );
                    self.backward_tensors(&plan, slices, saved, want_x, (x, kernels, biases))?
                }
                (.., None) => bail!("conv chain: backward pass without a forward pass"),
                _ => bail!("conv chain: CPU tensors of the forward pass's dtype expected"),
            }
        };
        Ok((
            gx,
            kernels.track_op().then_some(dk),
            biases.track_op().then_some(db),
        ))
    }
}

impl Act {
    /// `grad *= act'` in place, where `y` is the activation's output, and the bias gradient
    /// (each channel's sum over the batch and the plane) into `db`: one pass over the gradient,
    /// parallel over `(image, channel)` planes of `plane` values.
    fn grad_and_bias_grad<T: Float>(self, y: &[T], grad: &mut [T], plane: usize, db: &mut [T]) {
        let sums: Vec<T> = grad
            .par_chunks_mut(plane)
            .zip(y.par_chunks(plane))
            .map(|(g, y)| {
                self.grad_in_place(y, g);
                g.iter().fold(T::ZERO, |s, &v| s + v)
            })
            .collect();
        db.fill(T::ZERO);
        // Images in order, so the sum does not depend on scheduling.
        for image in sums.chunks(db.len()) {
            for (d, &s) in db.iter_mut().zip(image) {
                *d += s;
            }
        }
    }

    /// `grad *= act'`, serially (the caller splits the work).
    fn grad_in_place<T: Float>(self, y: &[T], grad: &mut [T]) {
        let it = grad.iter_mut().zip(y);
        match self {
            Act::Identity => {}
            Act::Relu => it.for_each(|(g, &y)| *g = if y > T::ZERO { *g } else { T::ZERO }),
            Act::Leaky(slope) => {
                let s = T::from_f64(slope);
                it.for_each(|(g, &y)| *g = if y > T::ZERO { *g } else { *g * s });
            }
            Act::Elu => {
                it.for_each(|(g, &y)| *g = if y > T::ZERO { *g } else { *g * (y + T::ONE) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::conv::{ConvKernel, set_kernel};
    use crate::nn::testutil;
    use candle_core::{DType, Device, Var};

    /// Every stage kind the networks use: padded stride 1, stride 2, upsampling, dilation, a
    /// pointwise layer, all four activations, one stage without bias.
    fn stages() -> Vec<(ChainStage, (usize, usize, usize), bool)> {
        let p = |stride, padding, dilation| Conv2dParams {
            stride,
            padding,
            dilation,
        };
        // (stage, (out channels, in channels, kernel), bias)
        vec![
            (
                ChainStage {
                    upsample: false,
                    params: p(1, 2, 1),
                    act: Act::Relu,
                },
                (4, 3, 5),
                true,
            ),
            (
                ChainStage {
                    upsample: false,
                    params: p(2, 1, 1),
                    act: Act::Leaky(0.2),
                },
                (5, 4, 3),
                true,
            ),
            (
                ChainStage {
                    upsample: false,
                    params: p(1, 2, 2),
                    act: Act::Elu,
                },
                (5, 5, 3),
                false,
            ),
            (
                ChainStage {
                    upsample: true,
                    params: p(1, 1, 1),
                    act: Act::Relu,
                },
                (3, 5, 3),
                true,
            ),
            (
                ChainStage {
                    upsample: false,
                    params: p(1, 0, 1),
                    act: Act::Identity,
                },
                (2, 3, 1),
                true,
            ),
        ]
    }

    /// Stages that upsample into other convolutions than a 3x3, stride-1, padding-1 one (the
    /// plain path: upsample, then convolve), then a folded one on a non-square input.
    fn upsampling_stages() -> Vec<(ChainStage, (usize, usize, usize), bool)> {
        let stage = |stride, padding, dilation, act| ChainStage {
            upsample: true,
            params: Conv2dParams {
                stride,
                padding,
                dilation,
            },
            act,
        };
        vec![
            (stage(1, 0, 1, Act::Elu), (4, 3, 1), true),
            (stage(1, 2, 2, Act::Relu), (3, 4, 3), true),
            (stage(2, 1, 1, Act::Leaky(0.2)), (2, 3, 3), false),
            (stage(1, 1, 1, Act::Elu), (3, 2, 3), true),
        ]
    }

    struct Net {
        x: Var,
        weights: Vec<(Var, Option<Var>)>,
        stages: Vec<ChainStage>,
    }

    impl Net {
        fn new(dtype: DType, seed: u64, width: usize) -> Self {
            Self::with_stages(stages(), dtype, seed, width)
        }

        fn with_stages(
            stages: Vec<(ChainStage, (usize, usize, usize), bool)>,
            dtype: DType,
            seed: u64,
            width: usize,
        ) -> Self {
            let f = |t: Tensor| Var::from_tensor(&t.to_dtype(dtype).expect("dtype")).expect("var");
            let mut weights = Vec::new();
            let mut list = Vec::new();
            for (i, (stage, (o, c, k), bias)) in stages.into_iter().enumerate() {
                let s = seed + 10 * i as u64;
                let w = (testutil::tensor(&[o, c, k, k], s) * 0.5).expect("scale");
                weights.push((f(w), bias.then(|| f(testutil::tensor(&[o], s + 1)))));
                list.push(stage);
            }
            let x = f(testutil::tensor(&[2, 3, 8, width], seed + 99));
            Net {
                x,
                weights,
                stages: list,
            }
        }

        fn pairs(&self, x: &Tensor) -> (Tensor, Vec<(Tensor, Option<Tensor>)>) {
            let w = self
                .weights
                .iter()
                .map(|(w, b)| {
                    (
                        w.as_tensor().clone(),
                        b.as_ref().map(|b| b.as_tensor().clone()),
                    )
                })
                .collect();
            (x.clone(), w)
        }

        /// `sum(net(x) * r)` by the chain op or layer by layer, and every gradient, flat.
        fn run(&self, chain: bool, track_x: bool, r_seed: u64) -> (Vec<f64>, Vec<Vec<f64>>) {
            let x = if track_x {
                self.x.as_tensor().clone()
            } else {
                self.x.as_tensor().detach()
            };
            let (x, weights) = self.pairs(&x);
            let y = if chain {
                conv_chain(&x, &weights, &self.stages).expect("chain")
            } else {
                let mut y = x.clone();
                for ((w, b), stage) in weights.iter().zip(&self.stages) {
                    if stage.upsample {
                        y = upsample_nearest2x(&y).expect("upsample");
                    }
                    y = conv2d_fused(&y, w, b.as_ref(), stage.params, stage.act).expect("conv");
                }
                y
            };
            let r = testutil::tensor(y.dims(), r_seed)
                .to_dtype(y.dtype())
                .expect("dtype");
            let grads = (&y * r)
                .and_then(|t| t.sum_all())
                .and_then(|t| t.backward())
                .expect("backward");
            let mut out = Vec::new();
            let mut tensors = vec![self.x.as_tensor()];
            for (w, b) in &self.weights {
                tensors.push(w.as_tensor());
                if let Some(b) = b {
                    tensors.push(b.as_tensor());
                }
            }
            for (i, t) in tensors.into_iter().enumerate() {
                match grads.get(t) {
                    Some(g) => out.push(flat(g)),
                    None => assert!(i == 0 && !track_x, "gradient {i} missing"),
                }
            }
            (flat(&y), out)
        }
    }

    fn flat(t: &Tensor) -> Vec<f64> {
        t.to_dtype(DType::F64)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("values")
    }

    fn rel_err(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
        a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    #[test]
    fn chain_matches_the_layers_one_by_one() {
        for track_x in [true, false] {
            // Non-square, with an odd width so the stride-2 stage rounds.
            let net = Net::new(DType::F64, 3, 7);
            let (y_chain, g_chain) = net.run(true, track_x, 7);
            let (y_layers, g_layers) = net.run(false, track_x, 7);
            assert!(rel_err(&y_chain, &y_layers) < 1e-12);
            assert_eq!(g_chain.len(), g_layers.len());
            assert_eq!(g_chain.len(), if track_x { 10 } else { 9 });
            for (i, (a, b)) in g_chain.iter().zip(&g_layers).enumerate() {
                let err = rel_err(a, b);
                assert!(
                    err < 1e-12,
                    "gradient {i} (x tracked: {track_x}) differs by {err}"
                );
            }
        }
    }

    #[test]
    fn upsampling_stages_match_the_layers_one_by_one() {
        for track_x in [true, false] {
            let net = Net::with_stages(upsampling_stages(), DType::F64, 5, 5);
            let (y_chain, g_chain) = net.run(true, track_x, 3);
            let (y_layers, g_layers) = net.run(false, track_x, 3);
            assert!(rel_err(&y_chain, &y_layers) < 1e-12);
            assert_eq!(g_chain.len(), if track_x { 8 } else { 7 });
            for (i, (a, b)) in g_chain.iter().zip(&g_layers).enumerate() {
                let err = rel_err(a, b);
                assert!(
                    err < 1e-12,
                    "gradient {i} (x tracked: {track_x}) differs by {err}"
                );
            }
        }
    }

    #[test]
    fn chain_matches_candle_in_f32() {
        // candle's stride-2 backward fails when height and width differ in parity.
        let net = Net::new(DType::F32, 11, 6);
        let (y_chain, g_chain) = net.run(true, true, 5);
        set_kernel(ConvKernel::Candle);
        // The kernel choice is per thread, and each test runs on a thread of its own.
        let (y_candle, g_candle) = net.run(true, true, 5);
        set_kernel(ConvKernel::Fast);
        assert!(rel_err(&y_chain, &y_candle) < 1e-4);
        for (i, (a, b)) in g_chain.iter().zip(&g_candle).enumerate() {
            let err = rel_err(a, b);
            assert!(err < 1e-4, "gradient {i} differs from candle's by {err}");
        }
    }

    /// Central differences in f64 for every input, kernel and bias element.
    #[test]
    fn chain_gradients_match_finite_differences() {
        let net = Net::new(DType::F64, 21, 7);
        let (_, analytic) = net.run(true, true, 9);
        let mut params: Vec<&Var> = vec![&net.x];
        for (w, b) in &net.weights {
            params.push(w);
            params.extend(b.iter());
        }
        let y_dims = {
            let (x, w) = net.pairs(net.x.as_tensor());
            conv_chain(&x, &w, &net.stages)
                .expect("chain")
                .dims()
                .to_vec()
        };
        let r = testutil::tensor(&y_dims, 9);
        let loss = || -> f64 {
            let (x, w) = net.pairs(&net.x.as_tensor().detach());
            (conv_chain(&x, &w, &net.stages).expect("chain") * &r)
                .and_then(|t| t.sum_all())
                .and_then(|t| t.to_scalar())
                .expect("loss")
        };
        let h = 1e-6;
        let mut checked = 0;
        for (p, g) in params.iter().zip(&analytic) {
            let base = flat(p.as_tensor());
            for j in 0..base.len() {
                let set = |d: f64| {
                    let mut v = base.clone();
                    v[j] += d;
                    let t = Tensor::from_vec(v, p.as_tensor().dims(), &Device::Cpu).expect("t");
                    p.set(&t).expect("set");
                };
                set(h);
                let plus = loss();
                set(-h);
                let minus = loss();
                set(0.0);
                let fd = (plus - minus) / (2.0 * h);
                let err = (g[j] - fd).abs() / fd.abs().max(1e-3);
                assert!(err < 1e-5, "element {j}: autograd {} vs fd {fd}", g[j]);
                checked += 1;
            }
        }
        assert_eq!(checked, 1196, "every input, kernel and bias element");
    }

    #[test]
    fn mismatched_stages_are_errors() {
        let net = Net::new(DType::F64, 1, 7);
        let (x, weights) = net.pairs(net.x.as_tensor());
        let err = conv_chain(&x, &weights[..2], &net.stages).expect_err("count");
        assert!(err.to_string().contains("stages"), "{err}");
        // The second kernel reads 4 channels; feed it the input's 3 instead.
        let err = conv_chain(&x, &weights[1..3], &net.stages[1..3]).expect_err("channels");
        assert!(err.to_string().contains("stage 0"), "{err}");
    }
}
