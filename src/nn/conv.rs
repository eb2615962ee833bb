//! A fast 2-D convolution for the CPU: tiled im2col / col2im around a blocked GEMM, in parallel.
//!
//! candle 0.11's CPU conv2d is slow where the studio's networks spend their time: few channels
//! at high resolution, and the input gradient, which it computes with a direct-loop transposed
//! convolution. Its stride-2 backward also fails on non-square inputs whose height and width
//! differ in parity. [`conv2d`] replaces it on the CPU with a custom op whose forward pass and
//! both gradients are matrix products on the `gemm` crate (the one candle's own matmul uses):
//!
//! - forward: `out[n][:, tile] = W (O x K) * col(x[n], tile) (K x T)`, then bias and activation
//!   ([`Act`]) on the tile while it is in cache ([`conv2d_fused`]);
//! - weight gradient: `dW += grad[n][:, tile] (O x T) * col(x[n], tile)^T`, accumulated over a
//!   fixed partition of the tiles and summed in order, so results never depend on the thread
//!   count;
//! - input gradient: for stride 1 (and at least as many input as output channels) a forward
//!   convolution of the output gradient with the flipped kernel; otherwise
//!   `dcol = W^T (K x O) * grad[n][:, tile]` scattered back with col2im, jobs owning disjoint
//!   groups of input channels so the scatters never race. Input and weight gradients run side by
//!   side.
//!
//! - a chain of such convolutions (each optionally after a nearest x2 upsampling) runs as one op,
//!   [`conv_chain`], whose backward pass hands gradients from layer to layer itself instead of
//!   through candle's per-node bookkeeping; every network of the studio runs its plain
//!   convolution stacks through it.
//!
//! `K = C * KH * KW` and a tile is a band of output rows sized so that its column matrix stays in
//! the L2 cache. 1x1 stride-1 unpadded convolutions skip im2col altogether. On other devices,
//! and for other dtypes, [`conv2d`] is candle's own `conv2d`. `dtgan-studio bench --net` times it
//! layer by layer; `bench/compare.sh` against candle's kernel and PyTorch.

// The GEMM kernel is an `unsafe fn` taking raw pointers and strides. All calls go through
// `SharedMut::gemm`, which checks every index the product can touch against the slices' lengths.
#![allow(unsafe_code)]

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, bail,
};
use rayon::prelude::*;
use std::cell::Cell;

/// Partial weight gradients per convolution: enough to keep a few cores busy, fixed so that
/// the summation order, and hence the result, never depends on the thread count.
const WEIGHT_GRAD_CHUNKS: usize = 8;

/// Bytes of column matrix per tile: half the L2 cache of a typical core, the other half is left
/// to the GEMM's packed blocks.
const TILE_BYTES: usize = 512 * 1024;

/// Stride, zero padding and dilation of a square-kernel convolution (the same in both axes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Step between output positions, in input pixels.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Spacing of the kernel taps.
    pub dilation: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Self {
            stride: 1,
            padding: 0,
            dilation: 1,
        }
    }
}

/// Which implementation [`conv2d`] uses on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ConvKernel {
    /// This module's GEMM kernel.
    #[default]
    Fast,
    /// candle's built-in `conv2d`, kept as the reference for benchmarks and tests.
    Candle,
}

thread_local! {
    static USE_CANDLE: Cell<bool> = const { Cell::new(false) };
}

/// Selects the CPU kernel for convolutions called from this thread (benchmarks compare the two
/// this way; a thread-local switch cannot disturb other threads, such as parallel tests).
pub fn set_kernel(kernel: ConvKernel) {
    USE_CANDLE.with(|c| c.set(kernel == ConvKernel::Candle));
}

/// The CPU kernel this thread uses.
pub fn kernel() -> ConvKernel {
    if USE_CANDLE.with(Cell::get) {
        ConvKernel::Candle
    } else {
        ConvKernel::Fast
    }
}

/// Whether this module's CPU ops (and those built on them) take these tensors: the fast kernel
/// selected, and every tensor on the CPU, in f32 or f64, all of one dtype. Otherwise callers
/// fall back to candle's own ops.
pub(crate) fn runs_fast<'a>(tensors: impl IntoIterator<Item = &'a Tensor>) -> bool {
    kernel() == ConvKernel::Fast && cpu_floats_of_one_dtype(tensors)
}

/// Whether every tensor is on the CPU, in f32 or f64, all of one dtype: what the CPU passes of
/// `nn` (and Adam's in-place update) take.
pub(crate) fn cpu_floats_of_one_dtype<'a>(tensors: impl IntoIterator<Item = &'a Tensor>) -> bool {
    let mut dtype = None;
    tensors.into_iter().all(|t| {
        t.device().is_cpu()
            && matches!(t.dtype(), DType::F32 | DType::F64)
            && *dtype.get_or_insert(t.dtype()) == t.dtype()
    })
}

/// An activation fused into [`conv2d_fused`]; each one's derivative is a function of its output,
/// so the backward pass needs only the layer's output.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Act {
    /// No activation.
    #[default]
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `x` for `x > 0`, else `slope * x`; the slope must be positive.
    Leaky(f64),
    /// `x` for `x > 0`, else `exp(x) - 1`.
    Elu,
}

impl Act {
    /// The same function in candle ops (the reference, and the path for other devices).
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Act::Identity => Ok(x.clone()),
            Act::Relu => x.relu(),
            Act::Leaky(slope) => x.maximum(&(x * slope)?),
            Act::Elu => x.elu(1.0),
        }
    }

    /// `v = act(v + bias)` over a row. The match is outside the loops, so each loop is a
    /// branch-free select the compiler vectorises.
    fn add_bias_apply<T: Float>(self, row: &mut [T], bias: T) {
        match self {
            Act::Identity => row.iter_mut().for_each(|v| *v += bias),
            Act::Relu => row.iter_mut().for_each(|v| {
                let z = *v + bias;
                *v = if z > T::ZERO { z } else { T::ZERO };
            }),
            Act::Leaky(slope) => {
                let s = T::from_f64(slope);
                row.iter_mut().for_each(|v| {
                    let z = *v + bias;
                    *v = if z > T::ZERO { z } else { z * s };
                });
            }
            Act::Elu => row.iter_mut().for_each(|v| {
                let z = *v + bias;
                *v = if z > T::ZERO { z } else { z.exp() - T::ONE };
            }),
        }
    }

    /// `out = grad * act'`, where `y` is the activation's output.
    fn grad<T: Float>(self, y: &[T], grad: &[T], out: &mut [T]) {
        let it = out.iter_mut().zip(y).zip(grad);
        match self {
            Act::Identity => it.for_each(|((o, _), &g)| *o = g),
            Act::Relu => it.for_each(|((o, &y), &g)| *o = if y > T::ZERO { g } else { T::ZERO }),
            Act::Leaky(slope) => {
                let s = T::from_f64(slope);
                it.for_each(|((o, &y), &g)| *o = if y > T::ZERO { g } else { g * s });
            }
            Act::Elu => it.for_each(|((o, &y), &g)| {
                *o = if y > T::ZERO { g } else { g * (y + T::ONE) };
            }),
        }
    }
}

/// Refuses a leaky ReLU whose slope is not positive, naming `op`.
fn check_act(op: &str, act: Act) -> Result<()> {
    if let Act::Leaky(slope) = act
        && slope.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
    {
        bail!("{op}: a leaky ReLU slope must be positive, got {slope}");
    }
    Ok(())
}

/// `x (N, C, H, W)` convolved with `w (O, C, KH, KW)`, giving `(N, O, HO, WO)`, with gradients for
/// both. Uses the fast kernel for f32 and f64 tensors on the CPU and candle's `conv2d` otherwise.
pub fn conv2d(x: &Tensor, w: &Tensor, params: Conv2dParams) -> Result<Tensor> {
    conv2d_fused(x, w, None, params, Act::Identity)
}

/// `act(conv2d(x, w) + bias)` in one op: on the CPU the bias and the activation are applied to
/// each output tile while it is in cache, and the backward pass is one elementwise pass plus the
/// two convolution gradients. `bias`: `(O,)`.
pub fn conv2d_fused(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    params: Conv2dParams,
    act: Act,
) -> Result<Tensor> {
    check_act("conv2d", act)?;
    if runs_fast([x, w]) {
        let (o, ..) = w.dims4()?;
        let bias = match bias {
            Some(b) => b.contiguous()?,
            None => Tensor::zeros(o, x.dtype(), x.device())?,
        };
        x.contiguous()?
            .apply_op3(&w.contiguous()?, &bias, Conv2dOp { params, act })
    } else {
        let y = x.conv2d(w, params.padding, params.stride, params.dilation, 1)?;
        let y = match bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
            None => y,
        };
        act.apply(&y)
    }
}

/// The transposed convolution of `y (N, O, h, w)` with `w (O, C, KH, KW)`, giving
/// `(N, C, H, W)`: the adjoint of [`conv2d`] with the same kernel and parameters on an input of
/// `out` = `(H, W)` pixels (each input value pastes a kernel-shaped patch, `stride` apart).
/// Gradients for both arguments; the fast kernel on the CPU, candle's op elsewhere.
pub fn conv_transpose2d(
    y: &Tensor,
    w: &Tensor,
    out: (usize, usize),
    params: Conv2dParams,
) -> Result<Tensor> {
    if runs_fast([y, w]) {
        y.contiguous()?.apply_op2(
            &w.contiguous()?,
            ConvTransposeOp {
                params,
                h: out.0,
                w: out.1,
            },
        )
    } else {
        let (_, _, h, _) = y.dims4()?;
        let (_, _, k, _) = w.dims4()?;
        let Conv2dParams {
            stride,
            padding,
            dilation,
        } = params;
        let natural =
            ((h.max(1) - 1) * stride + dilation * (k - 1) + 1).saturating_sub(2 * padding);
        let extra = out.0.checked_sub(natural).filter(|&e| e < stride.max(1));
        let Some(extra) = extra else {
            bail!(
                "conv_transpose2d: an output of {} rows cannot come from {h}",
                out.0
            );
        };
        y.conv_transpose2d(w, padding, extra, stride, dilation)
    }
}

/// `y.apply_op2(w, ConvTransposeOp)`: forward is [`InputGradOp`], backward a forward convolution
/// (for `y`) and a weight gradient with the roles of input and gradient swapped (for `w`).
struct ConvTransposeOp {
    params: Conv2dParams,
    h: usize,
    w: usize,
}

impl CustomOp2 for ConvTransposeOp {
    fn name(&self) -> &'static str {
        "fast-conv-transpose2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        InputGradOp {
            params: self.params,
            h: self.h,
            w: self.w,
        }
        .cpu_fwd(s1, l1, s2, l2)
    }

    fn bwd(
        &self,
        y: &Tensor,
        w: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let params = self.params;
        let (_, _, kh, kw) = w.dims4()?;
        let (gy, gw) = rayon::join(
            || y.track_op().then(|| conv2d(&grad, w, params)).transpose(),
            || {
                w.track_op()
                    .then(|| grad.apply_op2_no_bwd(y, &WeightGradOp { params, kh, kw }))
                    .transpose()
            },
        );
        Ok((gy?, gw?))
    }
}

/// The gradient of [`conv2d`] with respect to its `(N, C, h, w)` input, given the output
/// gradient `grad` and the kernel `w`, without autograd (the fast kernel only; for benchmarks).
pub fn conv2d_input_grad(
    grad: &Tensor,
    w: &Tensor,
    (h, wd): (usize, usize),
    params: Conv2dParams,
) -> Result<Tensor> {
    grad.contiguous()?
        .apply_op2_no_bwd(&w.contiguous()?, &InputGradOp { params, h, w: wd })
}

/// The gradient of [`conv2d`] with respect to its `(O, C, kh, kw)` kernel, given the input `x`
/// and the output gradient `grad`, without autograd (the fast kernel only; for benchmarks).
pub fn conv2d_weight_grad(
    x: &Tensor,
    grad: &Tensor,
    (kh, kw): (usize, usize),
    params: Conv2dParams,
) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2_no_bwd(&grad.contiguous()?, &WeightGradOp { params, kh, kw })
}

/// The gradients of a convolution with respect to its input (`want_x`) and kernel (`want_w`)
/// from the output gradient `grad` (already through the activation), as a training step
/// computes them: from one column matrix when [`Geom::gradient_as_convolution`] holds and both
/// are wanted, otherwise each on its own, side by side.
fn gradients(
    x: &Tensor,
    w: &Tensor,
    grad: &Tensor,
    params: Conv2dParams,
    want_x: bool,
    want_w: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let geom = Geom::new(x.dims4()?, w.dims4()?, params)?;
    if want_x && want_w && geom.gradient_as_convolution().is_some() {
        let both = grad.apply_op3_no_bwd(w, x, &InputWeightGradOp { params })?;
        let nx = x.elem_count();
        let gx = both.narrow(0, 0, nx)?.reshape(x.shape())?;
        let gw = both.narrow(0, nx, w.elem_count())?.reshape(w.shape())?;
        return Ok((Some(gx), Some(gw)));
    }
    let (h, wd) = (geom.h, geom.w);
    let (kh, kw) = (geom.kh, geom.kw);
    // The two gradients are independent: computing them side by side keeps every core busy on
    // layers too small to fill them one at a time.
    let (gx, gw) = rayon::join(
        || {
            want_x
                .then(|| grad.apply_op2_no_bwd(w, &InputGradOp { params, h, w: wd }))
                .transpose()
        },
        || {
            want_w
                .then(|| x.apply_op2_no_bwd(grad, &WeightGradOp { params, kh, kw }))
                .transpose()
        },
    );
    Ok((gx?, gw?))
}

/// Both gradients of [`conv2d`] (input, kernel) from the output gradient `grad`, without
/// autograd, computed as a training step computes them (the fast kernel only; for benchmarks).
pub fn conv2d_gradients(
    x: &Tensor,
    w: &Tensor,
    grad: &Tensor,
    params: Conv2dParams,
) -> Result<(Tensor, Tensor)> {
    let (x, w, grad) = (x.contiguous()?, w.contiguous()?, grad.contiguous()?);
    match gradients(&x, &w, &grad, params, true, true)? {
        (Some(gx), Some(gw)) => Ok((gx, gw)),
        _ => bail!("conv2d backward: a gradient is missing"),
    }
}

/// Multiply-adds of one forward pass, times two (the usual FLOP count of a convolution).
pub fn conv2d_flops(x_dims: &[usize], w_dims: &[usize], params: Conv2dParams) -> Option<f64> {
    let (&[n, c, h, w], &[o, c2, kh, kw]) = (x_dims, w_dims) else {
        return None;
    };
    let g = Geom::new((n, c, h, w), (o, c2, kh, kw), params).ok()?;
    Some(2.0 * (g.n * g.o * g.p() * g.k()) as f64)
}

/// The element types the kernel (and the other CPU ops of `nn`) handles.
pub(crate) trait Float:
    Copy
    + Default
    + Send
    + Sync
    + 'static
    + PartialOrd
    + std::ops::AddAssign
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn sqrt(self) -> Self;
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    dil: usize,
    ho: usize,
    wo: usize,
}

fn out_size(size: usize, kernel: usize, params: Conv2dParams) -> Option<usize> {
    let span = params.dilation * kernel.checked_sub(1)? + 1;
    (size + 2 * params.padding)
        .checked_sub(span)
        .map(|rest| rest / params.stride + 1)
}

impl Geom {
    fn new(
        (n, c, h, w): (usize, usize, usize, usize),
        (o, c2, kh, kw): (usize, usize, usize, usize),
        params: Conv2dParams,
    ) -> Result<Self> {
        if c != c2 {
            bail!("conv2d: input has {c} channels but the kernel expects {c2}");
        }
        if params.stride == 0 || params.dilation == 0 {
            bail!("conv2d: stride and dilation must be at least 1 ({params:?})");
        }
        let (Some(ho), Some(wo)) = (out_size(h, kh, params), out_size(w, kw, params)) else {
            bail!("conv2d: a {kh}x{kw} kernel with {params:?} does not fit a {h}x{w} input");
        };
        Ok(Self {
            n,
            c,
            h,
            w,
            o,
            kh,
            kw,
            stride: params.stride,
            pad: params.padding,
            dil: params.dilation,
            ho,
            wo,
        })
    }

    /// For stride 1, the convolution whose forward pass maps the output gradient to the input
    /// gradient (`O` channels in, `C` out, the kernel flipped), when its padding is not negative
    /// and it gives back the input's size.
    fn transposed(&self) -> Option<Geom> {
        if self.stride != 1 {
            return None;
        }
        let pad_y = (self.dil * (self.kh - 1)).checked_sub(self.pad)?;
        let pad_x = (self.dil * (self.kw - 1)).checked_sub(self.pad)?;
        let params = Conv2dParams {
            stride: 1,
            padding: pad_y,
            dilation: self.dil,
        };
        let t = Geom::new(
            (self.n, self.o, self.ho, self.wo),
            (self.c, self.o, self.kh, self.kw),
            params,
        )
        .ok()?;
        (pad_x == pad_y && t.ho == self.h && t.wo == self.w).then_some(t)
    }

    /// The transposed convolution ([`Geom::transposed`]) when the input gradient is computed as
    /// its forward pass: stride 1, not pointwise, and at least as many input channels as
    /// output channels (so its column matrix is no larger than the forward pass's).
    fn gradient_as_convolution(&self) -> Option<Geom> {
        if self.c < self.o || self.pointwise() {
            return None;
        }
        self.transposed()
    }

    /// Rows of the column matrix (the GEMM's inner dimension).
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output pixels per channel.
    fn p(&self) -> usize {
        self.ho * self.wo
    }

    /// A 1x1 stride-1 unpadded convolution is a plain matrix product over the input.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }

    /// Output rows per tile when the column matrix has `rows` rows of `size`-byte elements.
    fn tile_rows(&self, rows: usize, size: usize) -> usize {
        (TILE_BYTES / (rows * self.wo * size).max(1)).clamp(1, self.ho.max(1))
    }

    /// Bands of output rows `[start, end)` covering the output.
    fn tiles(&self, rows: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.ho)
            .step_by(rows)
            .map(move |r0| (r0, (r0 + rows).min(self.ho)))
    }

    /// Every (image, band of `rows` output rows) pair: the jobs of one pass over the batch.
    fn jobs(&self, rows: usize) -> Vec<(usize, (usize, usize))> {
        (0..self.n)
            .flat_map(|n| self.tiles(rows).map(move |t| (n, t)))
            .collect()
    }

    /// The input row that kernel row `ky` reads for output row `oy`, if inside the image.
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky * self.dil)
            .checked_sub(self.pad)
            .filter(|&iy| iy < self.h)
    }

    /// The output columns `[lo, hi)` for which kernel column `kx` reads inside the image, and the
    /// input column read by output column `lo`.
    fn valid_cols(&self, kx: usize) -> (usize, usize, usize) {
        let off = (kx * self.dil) as isize - self.pad as isize;
        let s = self.stride as isize;
        let lo = if off >= 0 {
            0
        } else {
            ((-off + s - 1) / s) as usize
        };
        let last = self.w as isize - 1 - off;
        let hi = if last < 0 {
            0
        } else {
            ((last / s) as usize + 1).min(self.wo)
        };
        let lo = lo.min(hi);
        let ix0 = (lo as isize * s + off).max(0) as usize;
        (lo, hi, ix0)
    }
}

/// Fills `col` (`c * KH * KW` rows of `(r1 - r0) * WO`) with the input patches that output rows
/// `r0..r1` read from `x`, the `c` channels of one image.
fn im2col<T: Float>(g: &Geom, x: &[T], (r0, r1): (usize, usize), col: &mut [T]) {
    let plane = g.h * g.w;
    let c = x.len() / plane;
    let t = (r1 - r0) * g.wo;
    for ci in 0..c {
        let xp = &x[ci * plane..(ci + 1) * plane];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let (lo, hi, ix0) = g.valid_cols(kx);
                let row = &mut col[((ci * g.kh + ky) * g.kw + kx) * t..][..t];
                for (out, oy) in row.chunks_exact_mut(g.wo).zip(r0..r1) {
                    let Some(iy) = g.input_row(oy, ky).filter(|_| lo < hi) else {
                        out.fill(T::ZERO);
                        continue;
                    };
                    out[..lo].fill(T::ZERO);
                    out[hi..].fill(T::ZERO);
                    let src = &xp[iy * g.w..(iy + 1) * g.w];
                    if g.stride == 1 {
                        out[lo..hi].copy_from_slice(&src[ix0..ix0 + hi - lo]);
                    } else {
                        for (v, &s) in out[lo..hi]
                            .iter_mut()
                            .zip(src[ix0..].iter().step_by(g.stride))
                        {
                            *v = s;
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every entry of `col` to the input pixel it was read from.
fn col2im<T: Float>(g: &Geom, col: &[T], (r0, r1): (usize, usize), x: &mut [T]) {
    let plane = g.h * g.w;
    let c = x.len() / plane;
    let t = (r1 - r0) * g.wo;
    for ci in 0..c {
        let xp = &mut x[ci * plane..(ci + 1) * plane];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let (lo, hi, ix0) = g.valid_cols(kx);
                if lo >= hi {
                    continue;
                }
                let row = &col[((ci * g.kh + ky) * g.kw + kx) * t..][..t];
                for (src, oy) in row.chunks_exact(g.wo).zip(r0..r1) {
                    let Some(iy) = g.input_row(oy, ky) else {
                        continue;
                    };
                    let dst = &mut xp[iy * g.w..(iy + 1) * g.w];
                    if g.stride == 1 {
                        for (d, &v) in dst[ix0..ix0 + hi - lo].iter_mut().zip(&src[lo..hi]) {
                            *d += v;
                        }
                    } else {
                        for (d, &v) in dst[ix0..].iter_mut().step_by(g.stride).zip(&src[lo..hi]) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

/// A read-only strided matrix view.
#[derive(Clone, Copy)]
struct Mat<'a, T> {
    data: &'a [T],
    rs: usize,
    cs: usize,
}

impl<'a, T> Mat<'a, T> {
    fn new(data: &'a [T], rs: usize, cs: usize) -> Self {
        Self { data, rs, cs }
    }

    /// Whether every element of a `rows x cols` view lies inside `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// A destination buffer that parallel jobs write into, each to its own disjoint region.
struct SharedMut<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: the pointer comes from a `&mut [T]` that outlives every use (see `SharedMut::new`), and
// jobs only ever write disjoint elements through it (the contract of `SharedMut::gemm`).
unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T: Float> SharedMut<T> {
    fn new(data: &mut [T]) -> Self {
        Self {
            ptr: data.as_mut_ptr(),
            len: data.len(),
        }
    }

    /// The `len` elements from `offset`.
    ///
    /// # Safety
    /// As for [`SharedMut::gemm`]: no other job may touch these elements while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, offset: usize, len: usize) -> &mut [T] {
        assert!(offset + len <= self.len, "conv2d: row out of bounds");
        // SAFETY: in bounds (checked above); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) }
    }

    /// `dst[offset + i * rs + j] (+)= sum_l lhs[i, l] * rhs[l, j]` for an `m x n` destination
    /// and inner size `k`; with `accumulate` the product is added to what is there.
    ///
    /// # Safety
    /// No other call may touch the same destination elements at the same time, and the slice
    /// `SharedMut::new` was made from must still be borrowed by the caller. Bounds are checked
    /// here: an out-of-range view panics instead of writing outside the buffer.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        &self,
        offset: usize,
        rs: usize,
        (m, n, k): (usize, usize, usize),
        lhs: Mat<'_, T>,
        rhs: Mat<'_, T>,
        accumulate: bool,
    ) {
        if m == 0 || n == 0 {
            return;
        }
        assert!(
            offset + (m - 1) * rs + n <= self.len && lhs.fits(m, k) && rhs.fits(k, n),
            "conv2d: GEMM view out of bounds"
        );
        if k == 0 {
            if !accumulate {
                for i in 0..m {
                    // SAFETY: exclusive by the caller's contract; `row` checks the bounds.
                    unsafe { self.row(offset + i * rs, n) }.fill(T::ZERO);
                }
            }
            return;
        }
        // SAFETY: every index the product reads or writes was checked against the lengths above;
        // the destination region is exclusive to this call by the caller's contract.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                self.ptr.add(offset),
                1,
                rs as isize,
                accumulate,
                lhs.data.as_ptr(),
                lhs.cs as isize,
                lhs.rs as isize,
                rhs.data.as_ptr(),
                rhs.cs as isize,
                rhs.rs as isize,
                T::ONE,
                T::ONE,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        }
    }
}

/// `dst (m x n, row stride rs) (+)= lhs * rhs` into a slice this call owns.
fn gemm_into<T: Float>(
    dst: &mut [T],
    rs: usize,
    mnk: (usize, usize, usize),
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    accumulate: bool,
) {
    let shared = SharedMut::new(dst);
    // SAFETY: `dst` is exclusively borrowed for the whole call and nothing else writes to it.
    unsafe { shared.gemm(0, rs, mnk, lhs, rhs, accumulate) }
}

/// The forward pass: `act(conv + bias)`, `(N, O, HO, WO)`, from `x (N, C, H, W)`, `w (O, K)`
/// and `bias (O)`.
fn forward<T: Float>(g: &Geom, x: &[T], w: &[T], bias: &[T], act: Act) -> Vec<T> {
    let (k, p, image) = (g.k(), g.p(), g.c * g.h * g.w);
    let mut out = vec![T::ZERO; g.n * g.o * p];
    let jobs = g.jobs(g.tile_rows(k, size_of::<T>()));
    let dst = SharedMut::new(&mut out);
    jobs.par_iter().for_each_init(Vec::new, |col, &(n, tile)| {
        let xn = &x[n * image..(n + 1) * image];
        let t = (tile.1 - tile.0) * g.wo;
        let start = tile.0 * g.wo;
        let rhs = if g.pointwise() {
            Mat::new(&xn[start..], p, 1)
        } else {
            col.resize(k * t, T::ZERO);
            im2col(g, xn, tile, col);
            Mat::new(&col[..], t, 1)
        };
        let offset = n * g.o * p + start;
        // SAFETY: job (n, tile) writes only columns [start, start + t) of image n's O rows.
        unsafe {
            dst.gemm(offset, p, (g.o, t, k), Mat::new(w, k, 1), rhs, false);
            for (o, &b) in bias.iter().enumerate() {
                act.add_bias_apply(dst.row(offset + o * p, t), b);
            }
        };
    });
    out
}

/// `grad * act'(y)`, elementwise, in parallel.
fn act_grad<T: Float>(y: &[T], grad: &[T], act: Act) -> Vec<T> {
    let mut out = vec![T::ZERO; y.len()];
    out.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(
            y.par_chunks(ELEMENTWISE_CHUNK)
                .zip(grad.par_chunks(ELEMENTWISE_CHUNK)),
        )
        .for_each(|(o, (y, g))| act.grad(y, g, o));
    out
}

/// The weight gradient `(O, K)` from `x (N, C, H, W)` and the output gradient `(N, O, HO, WO)`.
fn weight_grad<T: Float>(g: &Geom, x: &[T], grad: &[T]) -> Vec<T> {
    let (k, p, image) = (g.k(), g.p(), g.c * g.h * g.w);
    let jobs = g.jobs(g.tile_rows(k, size_of::<T>()));
    sum_over_chunks(&jobs, g.o * k, |chunk| {
        let mut dw = vec![T::ZERO; g.o * k];
        let mut col = Vec::new();
        for &(n, tile) in chunk {
            let xn = &x[n * image..(n + 1) * image];
            let t = (tile.1 - tile.0) * g.wo;
            let start = tile.0 * g.wo;
            let rhs = if g.pointwise() {
                Mat::new(&xn[start..], 1, p)
            } else {
                col.resize(k * t, T::ZERO);
                im2col(g, xn, tile, &mut col);
                Mat::new(&col[..], 1, t)
            };
            let lhs = Mat::new(&grad[n * g.o * p + start..], p, 1);
            gemm_into(&mut dw, k, (g.o, k, t), lhs, rhs, true);
        }
        dw
    })
}

/// `f` (a sum of `len` values over a slice of jobs) over a fixed partition of `jobs` into
/// [`WEIGHT_GRAD_CHUNKS`] chunks run in parallel, the chunks' sums added in order: the result
/// does not depend on how rayon schedules them, so training is reproducible (a resumed run
/// continues the same curve bit for bit).
fn sum_over_chunks<T: Float, J: Sync>(
    jobs: &[J],
    len: usize,
    f: impl Fn(&[J]) -> Vec<T> + Sync,
) -> Vec<T> {
    let chunk = jobs.len().div_ceil(WEIGHT_GRAD_CHUNKS).max(1);
    let partials: Vec<Vec<T>> = jobs.par_chunks(chunk).map(&f).collect();
    let mut partials = partials.into_iter();
    let mut sum = partials.next().unwrap_or_else(|| vec![T::ZERO; len]);
    for part in partials {
        for (a, b) in sum.iter_mut().zip(part) {
            *a += b;
        }
    }
    sum
}

/// The kernel `(O, C, KH, KW)` flipped in both spatial axes with its channel axes swapped:
/// `(C, O, KH, KW)`, the kernel of the convolution that maps the output gradient of a stride-1
/// convolution to its input gradient.
fn flip_kernel<T: Float>(g: &Geom, w: &[T]) -> Vec<T> {
    let (kk, k) = (g.kh * g.kw, g.k());
    let mut flipped = vec![T::ZERO; w.len()];
    for o in 0..g.o {
        for c in 0..g.c {
            for i in 0..kk {
                flipped[(c * g.o + o) * kk + (kk - 1 - i)] = w[o * k + c * kk + i];
            }
        }
    }
    flipped
}

/// Both gradients of a convolution for which [`Geom::gradient_as_convolution`] holds, from one
/// column matrix: the flat concatenation of the input gradient `(N, C, H, W)` and the weight
/// gradient `(O, C, KH, KW)`.
///
/// The input gradient is the forward pass of the transposed convolution `t` over the output
/// gradient (see [`input_grad`]), whose column matrix `col` holds, for every input pixel `q`,
/// the output-gradient values `grad[o, q - offset(tap)]` of every channel and (flipped) tap.
/// Those are exactly the products the weight gradient sums against `x[c, q]`:
/// `dW[o, c, tap] = sum_q x[c, q] * col[(o, flip(tap)), q]`, that is `x · colᵀ` up to a
/// permutation. So each tile's `col` is built once and used by two GEMMs, and the weight
/// gradient needs no im2col of the input at all (whose column matrix is larger, `C >= O`).
fn input_weight_grad<T: Float>(g: &Geom, t: &Geom, x: &[T], grad: &[T], w: &[T]) -> Vec<T> {
    let kk = g.kh * g.kw;
    let (tk, plane) = (t.k(), t.p());
    let flipped = flip_kernel(g, w);
    let (x_image, grad_image) = (g.c * plane, g.o * g.p());
    let mut out = vec![T::ZERO; g.n * x_image + g.o * g.k()];
    let (gx, gw) = out.split_at_mut(g.n * x_image);
    let jobs = t.jobs(t.tile_rows(tk, size_of::<T>()));
    let dst = SharedMut::new(gx);
    let m = sum_over_chunks(&jobs, g.c * tk, |chunk| {
        // `x · colᵀ`: (C, O * KH * KW), the taps flipped.
        let mut m = vec![T::ZERO; g.c * tk];
        let mut col = Vec::new();
        for &(n, tile) in chunk {
            let cols = (tile.1 - tile.0) * t.wo;
            let start = tile.0 * t.wo;
            col.resize(tk * cols, T::ZERO);
            im2col(
                t,
                &grad[n * grad_image..(n + 1) * grad_image],
                tile,
                &mut col,
            );
            let offset = n * x_image + start;
            // SAFETY: job (n, tile) writes only columns [start, start + cols) of image n's
            // C rows of the input gradient.
            unsafe {
                dst.gemm(
                    offset,
                    plane,
                    (g.c, cols, tk),
                    Mat::new(&flipped, tk, 1),
                    Mat::new(&col[..], cols, 1),
                    false,
                );
            }
            let x_tile = Mat::new(&x[offset..], plane, 1);
            gemm_into(
                &mut m,
                tk,
                (g.c, tk, cols),
                x_tile,
                Mat::new(&col[..], 1, cols),
                true,
            );
        }
        m
    });
    for o in 0..g.o {
        for c in 0..g.c {
            for i in 0..kk {
                gw[(o * g.c + c) * kk + i] = m[c * tk + o * kk + (kk - 1 - i)];
            }
        }
    }
    out
}

/// The input gradient `(N, C, H, W)` from the output gradient `(N, O, HO, WO)` and `w (O, K)`.
fn input_grad<T: Float>(g: &Geom, grad: &[T], w: &[T]) -> Vec<T> {
    if let Some(t) = g.gradient_as_convolution() {
        // A stride-1 convolution's input gradient is a convolution of the output gradient with
        // the kernel flipped and its channel axes swapped. Run as a forward pass it needs no
        // col2im scatter, which wins when the input has at least as many channels as the
        // output (the column matrix is then no larger).
        let flipped = flip_kernel(g, w);
        return forward(&t, grad, &flipped, &vec![T::ZERO; g.c], Act::Identity);
    }
    let (k, p, plane) = (g.k(), g.p(), g.h * g.w);
    let kk = g.kh * g.kw;
    let mut gx = vec![T::ZERO; g.n * g.c * plane];
    // Enough channel groups per image for every thread to have a few jobs.
    let want = (4 * rayon::current_num_threads()).div_ceil(g.n.max(1));
    let group = g.c.div_ceil(want.clamp(1, g.c.max(1))).max(1);
    let mut jobs = Vec::new();
    for (n, image) in gx.chunks_mut(g.c * plane).enumerate() {
        for (i, channels) in image.chunks_mut(group * plane).enumerate() {
            jobs.push((n, i * group, channels));
        }
    }
    jobs.into_par_iter()
        .for_each_init(Vec::new, |dcol, (n, c0, channels)| {
            let cc = channels.len() / plane;
            let lhs = Mat::new(&w[c0 * kk..], 1, k);
            let gn = &grad[n * g.o * p..(n + 1) * g.o * p];
            if g.pointwise() {
                // The column matrix is the input itself: write the product straight into it.
                gemm_into(channels, p, (cc, p, g.o), lhs, Mat::new(gn, p, 1), false);
                return;
            }
            let rows = g.tile_rows(cc * kk, size_of::<T>());
            for tile in g.tiles(rows) {
                let t = (tile.1 - tile.0) * g.wo;
                dcol.resize(cc * kk * t, T::ZERO);
                let rhs = Mat::new(&gn[tile.0 * g.wo..], p, 1);
                gemm_into(dcol, t, (cc * kk, t, g.o), lhs, rhs, false);
                col2im(g, dcol, tile, channels);
            }
        });
    gx
}

/// The elements of a contiguous CPU storage, or an error naming `op` (the custom ops of this
/// module and of [`super::upsample`] only accept contiguous inputs).
pub(crate) fn contiguous<'a, T>(data: &'a [T], layout: &Layout, op: &str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("{op}: contiguous tensors expected"),
    }
}

/// [`contiguous`], for writing (in-place ops).
pub(crate) fn contiguous_mut<'a, T>(
    data: &'a mut [T],
    layout: &Layout,
    op: &str,
) -> Result<&'a mut [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&mut data[a..b]),
        None => bail!("{op}: contiguous tensors expected"),
    }
}

/// Elements per rayon task in the elementwise passes of `nn`'s CPU ops.
pub(crate) const ELEMENTWISE_CHUNK: usize = 1 << 14;

fn slice<'a, T>(data: &'a [T], layout: &Layout) -> Result<&'a [T]> {
    contiguous(data, layout, "conv2d")
}

/// Runs `f` on the two storages as f32 or f64 slices.
fn with_slices(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    f32_op: impl FnOnce(&[f32], &[f32]) -> Vec<f32>,
    f64_op: impl FnOnce(&[f64], &[f64]) -> Vec<f64>,
    shape: Shape,
) -> Result<(CpuStorage, Shape)> {
    let storage = match (s1, s2) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => {
            CpuStorage::F32(f32_op(slice(a, l1)?, slice(b, l2)?))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b)) => {
            CpuStorage::F64(f64_op(slice(a, l1)?, slice(b, l2)?))
        }
        _ => bail!(
            "conv2d: the fast kernel takes two f32 or two f64 tensors, got {:?} and {:?}",
            s1.dtype(),
            s2.dtype()
        ),
    };
    Ok((storage, shape))
}

/// The fused convolution: `x.apply_op3(w, bias, Conv2dOp { .. })`.
struct Conv2dOp {
    params: Conv2dParams,
    act: Act,
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "fast-conv2d"
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
        let g = Geom::new(l1.shape().dims4()?, l2.shape().dims4()?, self.params)?;
        if l3.shape().dims() != [g.o] {
            bail!(
                "conv2d: bias of shape {:?} for {} output channels",
                l3.shape(),
                g.o
            );
        }
        let shape = Shape::from((g.n, g.o, g.ho, g.wo));
        let act = self.act;
        let storage = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(b)) => CpuStorage::F32(
                forward(&g, slice(x, l1)?, slice(w, l2)?, slice(b, l3)?, act),
            ),
            (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(b)) => CpuStorage::F64(
                forward(&g, slice(x, l1)?, slice(w, l2)?, slice(b, l3)?, act),
            ),
            _ => bail!(
                "conv2d: the fast kernel takes f32 or f64 tensors of one dtype, got {:?}, {:?}, {:?}",
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
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = match self.act {
            Act::Identity => grad.contiguous()?,
            act => y.apply_op2_no_bwd(&grad.contiguous()?, &ActGradOp(act))?,
        };
        let (gx, gw) = gradients(x, w, &grad, self.params, x.track_op(), w.track_op())?;
        let gb = if b.track_op() {
            Some(grad.apply_op1_no_bwd(&BiasGradOp)?)
        } else {
            None
        };
        Ok((gx, gw, gb))
    }
}

/// `grad.apply_op1_no_bwd(&BiasGradOp)`: `(N, O, H, W)` summed to `(O)`.
struct BiasGradOp;

fn bias_grad<T: Float>(grad: &[T], (n, o, p): (usize, usize, usize)) -> Vec<T> {
    (0..o)
        .into_par_iter()
        .map(|c| {
            let mut sum = T::ZERO;
            for i in 0..n {
                for &v in &grad[(i * o + c) * p..][..p] {
                    sum += v;
                }
            }
            sum
        })
        .collect()
}

impl CustomOp1 for BiasGradOp {
    fn name(&self) -> &'static str {
        "fast-conv2d-bias-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, o, h, w) = l.shape().dims4()?;
        let dims = (n, o, h * w);
        let storage = match s {
            CpuStorage::F32(g) => CpuStorage::F32(bias_grad(slice(g, l)?, dims)),
            CpuStorage::F64(g) => CpuStorage::F64(bias_grad(slice(g, l)?, dims)),
            _ => bail!(
                "conv2d backward: f32 or f64 gradient expected, got {:?}",
                s.dtype()
            ),
        };
        Ok((storage, Shape::from(o)))
    }
}

/// `y.apply_op2_no_bwd(grad, ActGradOp(act))`: `grad * act'` where `y` is the activation's output.
struct ActGradOp(Act);

impl CustomOp2 for ActGradOp {
    fn name(&self) -> &'static str {
        "fast-conv2d-act-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            bail!(
                "conv2d backward: output {:?} and gradient {:?} differ",
                l1.shape(),
                l2.shape()
            );
        }
        let act = self.0;
        with_slices(
            s1,
            l1,
            s2,
            l2,
            |y, g| act_grad(y, g, act),
            |y, g| act_grad(y, g, act),
            l1.shape().clone(),
        )
    }
}

/// `grad.apply_op2_no_bwd(w, InputGradOp)`: the gradient with respect to the input.
struct InputGradOp {
    params: Conv2dParams,
    h: usize,
    w: usize,
}

impl CustomOp2 for InputGradOp {
    fn name(&self) -> &'static str {
        "fast-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, o, ho, wo) = l1.shape().dims4()?;
        let (o2, c, kh, kw) = l2.shape().dims4()?;
        let g = Geom::new((n, c, self.h, self.w), (o2, c, kh, kw), self.params)?;
        if (o, ho, wo) != (g.o, g.ho, g.wo) {
            bail!(
                "conv2d backward: gradient shape {:?} does not match the kernel",
                l1.shape()
            );
        }
        let shape = Shape::from((n, c, self.h, self.w));
        with_slices(
            s1,
            l1,
            s2,
            l2,
            |gr, w| input_grad(&g, gr, w),
            |gr, w| input_grad(&g, gr, w),
            shape,
        )
    }
}

/// `grad.apply_op3_no_bwd(w, x, InputWeightGradOp)`: both gradients, flat (see
/// [`input_weight_grad`]).
struct InputWeightGradOp {
    params: Conv2dParams,
}

impl CustomOp3 for InputWeightGradOp {
    fn name(&self) -> &'static str {
        "fast-conv2d-input-weight-grad"
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
        let g = Geom::new(l3.shape().dims4()?, l2.shape().dims4()?, self.params)?;
        if l1.shape().dims4()? != (g.n, g.o, g.ho, g.wo) {
            bail!(
                "conv2d backward: gradient shape {:?} does not match the input and kernel",
                l1.shape()
            );
        }
        let Some(t) = g.gradient_as_convolution() else {
            bail!(
                "conv2d backward: {:?} has no one-matrix gradient",
                self.params
            );
        };
        let shape = Shape::from(g.n * g.c * g.h * g.w + g.o * g.k());
        let storage = match (s1, s2, s3) {
            (CpuStorage::F32(gr), CpuStorage::F32(w), CpuStorage::F32(x)) => CpuStorage::F32(
                input_weight_grad(&g, &t, slice(x, l3)?, slice(gr, l1)?, slice(w, l2)?),
            ),
            (CpuStorage::F64(gr), CpuStorage::F64(w), CpuStorage::F64(x)) => CpuStorage::F64(
                input_weight_grad(&g, &t, slice(x, l3)?, slice(gr, l1)?, slice(w, l2)?),
            ),
            _ => bail!(
                "conv2d backward: f32 or f64 tensors of one dtype expected, got {:?}, {:?}, {:?}",
                s1.dtype(),
                s2.dtype(),
                s3.dtype()
            ),
        };
        Ok((storage, shape))
    }
}

/// `x.apply_op2_no_bwd(grad, WeightGradOp)`: the gradient with respect to the kernel.
struct WeightGradOp {
    params: Conv2dParams,
    kh: usize,
    kw: usize,
}

impl CustomOp2 for WeightGradOp {
    fn name(&self) -> &'static str {
        "fast-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        let (n2, o, ho, wo) = l2.shape().dims4()?;
        let g = Geom::new((n, c, h, w), (o, c, self.kh, self.kw), self.params)?;
        if (n2, ho, wo) != (n, g.ho, g.wo) {
            bail!(
                "conv2d backward: gradient shape {:?} does not match the input",
                l2.shape()
            );
        }
        let shape = Shape::from((o, c, self.kh, self.kw));
        with_slices(
            s1,
            l1,
            s2,
            l2,
            |x, gr| weight_grad(&g, x, gr),
            |x, gr| weight_grad(&g, x, gr),
            shape,
        )
    }
}

mod chain;

pub use chain::{ChainStage, conv_chain};

#[cfg(test)]
mod tests;
