//! Convolution on the GPU: candle's forward `conv2d` (im2col + cuBLAS on CUDA), with both
//! gradients computed by forward convolutions and matrix products.
//!
//! candle's own backward of `conv2d` computes the input gradient with `conv_transpose2d`, which
//! on CUDA is a direct loop with no cuBLAS or cuDNN path; on an H100 it made a generator training
//! step 1.45x slower than PyTorch's while the forward pass was as fast. Here the forward pass
//! runs on detached tensors and [`GradRoute`] passes its output through unchanged; the op's
//! backward pass supplies the gradients in tensor ops, so they run on whatever device the
//! tensors live on (the tests run them on the CPU):
//!
//! - input: the output gradient, zero-stuffed to undo the stride, padded by
//!   `dilation * (k - 1) - padding` on the leading side (cropped where that is negative) and so
//!   that the result has the input's size on the trailing side, convolved at stride 1 with the
//!   kernel flipped in both axes and its two channel axes swapped;
//! - weight: the input's patches gathered into a `(N, C * KH * KW, HO * WO)` column tensor, one
//!   strided slice per kernel tap, multiplied by the output gradient `(N, O, HO * WO)` and summed
//!   over the batch.

use super::Conv2dParams;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, bail};

/// `x (N, C, H, W)` convolved with `w (O, C, KH, KW)`: candle's forward pass, the gradients of
/// this module.
pub(super) fn conv2d(x: &Tensor, w: &Tensor, params: Conv2dParams) -> Result<Tensor> {
    let y = x.detach().conv2d(
        &w.detach(),
        params.padding,
        params.stride,
        params.dilation,
        1,
    )?;
    if !(x.track_op() || w.track_op()) {
        return Ok(y);
    }
    x.apply_op3(w, &y, GradRoute { params })
}

/// Passes the precomputed output (its third argument) through; its backward pass computes the
/// gradients of the convolution of its first two.
struct GradRoute {
    params: Conv2dParams,
}

/// The output storage unchanged (a copy: candle ops return owned storage).
fn pass_through<S: BackendStorage>(s: &S, l: &Layout) -> Result<(S, Shape)> {
    if !l.is_contiguous() || l.start_offset() != 0 {
        bail!("conv2d gradient route: the output must be a whole contiguous tensor");
    }
    Ok((s.try_clone(l)?, l.shape().clone()))
}

impl CustomOp3 for GradRoute {
    fn name(&self) -> &'static str {
        "conv2d-grad-route"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        y: &CpuStorage,
        l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        pass_through(y, l)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        y: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        pass_through(y, l)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (_, _, h, wd) = x.dims4()?;
        let gx = x
            .track_op()
            .then(|| input_grad(grad, w, (h, wd), self.params))
            .transpose()?;
        let gw = w
            .track_op()
            .then(|| weight_grad(x, grad, w.dims4()?, self.params))
            .transpose()?;
        Ok((gx, gw, None))
    }
}

/// Pads `t` with zeros along `dim` by `lead` and `trail` elements, cropping where either is
/// negative.
fn pad_or_crop(t: &Tensor, dim: usize, lead: isize, trail: isize) -> Result<Tensor> {
    let t = t.pad_with_zeros(dim, lead.max(0) as usize, trail.max(0) as usize)?;
    let (cut_lead, cut_trail) = ((-lead).max(0) as usize, (-trail).max(0) as usize);
    if cut_lead + cut_trail == 0 {
        return Ok(t);
    }
    let len = t.dim(dim)?;
    if cut_lead + cut_trail >= len {
        bail!("conv2d gradient: nothing left after cropping {cut_lead} + {cut_trail} of {len}");
    }
    t.narrow(dim, cut_lead, len - cut_lead - cut_trail)
}

/// `0, 1, ..., n - 1` times `step`, or reversed, as an index tensor on `t`'s device.
fn indices(t: &Tensor, n: usize, step: usize, reversed: bool) -> Result<Tensor> {
    let idx: Vec<u32> = if reversed {
        (0..n).rev().map(|i| (i * step) as u32).collect()
    } else {
        (0..n).map(|i| (i * step) as u32).collect()
    };
    Tensor::from_vec(idx, n, t.device())
}

/// The gradient with respect to the `(N, C, h, w)` input, given the output gradient
/// `grad (N, O, HO, WO)` and the kernel `w (O, C, KH, KW)`.
pub(super) fn input_grad(
    grad: &Tensor,
    w: &Tensor,
    (h, wd): (usize, usize),
    params: Conv2dParams,
) -> Result<Tensor> {
    let Conv2dParams {
        stride: s,
        padding: p,
        dilation: d,
    } = params;
    let (n, o, ho, wo) = grad.dims4()?;
    let (_, _, kh, kw) = w.dims4()?;
    // Zero-stuffed: (HO * s, WO * s), the original values at multiples of s.
    let g = if s > 1 {
        grad.reshape((n, o, ho, 1, wo, 1))?
            .pad_with_zeros(3, 0, s - 1)?
            .pad_with_zeros(5, 0, s - 1)?
            .reshape((n, o, ho * s, wo * s))?
    } else {
        grad.clone()
    };
    // Leading: the kernel's reach minus the padding; trailing: whatever makes the stride-1
    // convolution's output as large as the input.
    let frame = |t: &Tensor, dim: usize, size: usize, k: usize, out: usize| {
        let lead = (d * (k - 1)) as isize - p as isize;
        let trail = (size + p) as isize - (out * s) as isize;
        pad_or_crop(t, dim, lead, trail)
    };
    let g = frame(&frame(&g, 2, h, kh, ho)?, 3, wd, kw, wo)?;
    let w = w.contiguous()?;
    let flipped = w
        .index_select(&indices(&w, kh, 1, true)?, 2)?
        .index_select(&indices(&w, kw, 1, true)?, 3)?
        .transpose(0, 1)?
        .contiguous()?;
    g.conv2d(&flipped, 0, 1, d, 1)
}

/// The gradient with respect to the `(O, C, KH, KW)` kernel, given the input `x (N, C, H, W)`
/// and the output gradient `grad (N, O, HO, WO)`.
pub(super) fn weight_grad(
    x: &Tensor,
    grad: &Tensor,
    (o, c, kh, kw): (usize, usize, usize, usize),
    params: Conv2dParams,
) -> Result<Tensor> {
    let Conv2dParams {
        stride: s,
        padding: p,
        dilation: d,
    } = params;
    let (n, _, ho, wo) = grad.dims4()?;
    if std::env::var_os("DTGAN_WGRAD_CANDLE").is_some() {
        return x
            .transpose(0, 1)?
            .conv2d(&grad.transpose(0, 1)?, p, d, s, 1)?
            .transpose(0, 1)?
            .narrow(2, 0, kh)?
            .narrow(3, 0, kw);
    }
    let xp = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
    // The padded input split into its s x s phases (rows i, i + s, ...; columns j, j + s, ...),
    // so that every kernel tap is a plain window of one phase.
    let (hp, wp) = (xp.dim(2)?, xp.dim(3)?);
    let mut phases = Vec::with_capacity(s * s);
    for i in 0..s {
        let rows = indices(x, (hp - i).div_ceil(s), s, false)?;
        let band = if s > 1 {
            xp.narrow(2, i, hp - i)?
                .contiguous()?
                .index_select(&rows, 2)?
        } else {
            xp.clone()
        };
        for j in 0..s {
            let cols = indices(x, (wp - j).div_ceil(s), s, false)?;
            phases.push(if s > 1 {
                band.narrow(3, j, wp - j)?
                    .contiguous()?
                    .index_select(&cols, 3)?
            } else {
                band.clone()
            });
        }
    }
    let mut taps = Vec::with_capacity(kh * kw);
    for a in 0..kh {
        for b in 0..kw {
            let (ra, rb) = (a * d, b * d);
            let phase = &phases[(ra % s) * s + rb % s];
            taps.push(phase.narrow(2, ra / s, ho)?.narrow(3, rb / s, wo)?);
        }
    }
    let patches = Tensor::stack(&taps, 2)?.reshape((n, c * kh * kw, ho * wo))?;
    let grad = grad.reshape((n, o, ho * wo))?;
    let gw = grad.matmul(&patches.transpose(1, 2)?)?;
    let gw = if gw.dtype() == DType::F16 || gw.dtype() == DType::BF16 {
        gw.to_dtype(DType::F32)?.sum(0)?.to_dtype(grad.dtype())?
    } else {
        gw.sum(0)?
    };
    gw.reshape((o, c, kh, kw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::testutil;
    use candle_core::{Device, Var};

    /// (N, C, H, W, O, kernel, stride, padding, dilation): odd and non-square sizes of mixed
    /// parity, strides 1 and 2, dilations up to 8, 1x1 kernels, padding larger than the span.
    const CASES: [(
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
    ); 9] = [
        (1, 3, 7, 5, 4, 3, 1, 1, 1),
        (2, 4, 9, 12, 3, 3, 2, 1, 1),
        (1, 2, 11, 8, 5, 5, 2, 2, 1),
        (2, 3, 13, 10, 2, 3, 1, 2, 2),
        (1, 2, 20, 21, 2, 3, 1, 8, 8),
        (2, 6, 5, 4, 3, 1, 2, 0, 1),
        (1, 3, 8, 8, 2, 4, 2, 1, 1),
        (2, 3, 10, 9, 4, 3, 2, 0, 3),
        (1, 2, 6, 7, 3, 3, 1, 3, 1),
    ];

    fn grads(
        x: &Tensor,
        w: &Tensor,
        r: &Tensor,
        conv: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
    ) -> (Tensor, Tensor, Tensor) {
        let (xv, wv) = (
            Var::from_tensor(x).expect("x"),
            Var::from_tensor(w).expect("w"),
        );
        let y = conv(xv.as_tensor(), wv.as_tensor()).expect("forward");
        let g = (&y * r)
            .and_then(|t| t.sum_all())
            .and_then(|t| t.backward())
            .expect("backward");
        let gx = g.get(xv.as_tensor()).cloned().expect("input gradient");
        let gw = g.get(wv.as_tensor()).cloned().expect("weight gradient");
        (y, gx, gw)
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
        assert_eq!(a.dims(), b.dims());
        let v = |t: &Tensor| -> Vec<f64> {
            t.to_dtype(DType::F64)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .expect("values")
        };
        let (a, b) = (v(a), v(b));
        let scale = b.iter().fold(1e-12f64, |m, x| m.max(x.abs()));
        a.iter()
            .zip(&b)
            .fold(0f64, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    /// Output and both gradients equal the CPU kernel's (itself checked against finite
    /// differences), in f64 to 1e-10 and in f32 to 1e-4.
    #[test]
    fn routed_conv_matches_the_fast_kernel() {
        for (i, &case) in CASES.iter().enumerate() {
            let (n, c, h, w, o, k, stride, padding, dilation) = case;
            let p = Conv2dParams {
                stride,
                padding,
                dilation,
            };
            for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-4)] {
                let t = |dims: &[usize], seed| {
                    testutil::tensor(dims, seed).to_dtype(dtype).expect("dtype")
                };
                let (x, wt) = (t(&[n, c, h, w], i as u64), t(&[o, c, k, k], 40 + i as u64));
                let y = super::super::conv2d(&x, &wt, p).expect("shape");
                let r = t(y.dims(), 80 + i as u64);
                let ours = grads(&x, &wt, &r, |x, w| conv2d(x, w, p));
                let want = grads(&x, &wt, &r, |x, w| super::super::conv2d(x, w, p));
                for (name, a, b) in [
                    ("output", &ours.0, &want.0),
                    ("input gradient", &ours.1, &want.1),
                    ("weight gradient", &ours.2, &want.2),
                ] {
                    let err = max_rel(a, b);
                    assert!(err < tol, "{case:?} {dtype:?}: {name} differs by {err}");
                }
            }
        }
    }

    /// Central differences in f64 for every element, on a stride-2 input of mixed parity and a
    /// dilated one.
    #[test]
    fn routed_gradients_match_finite_differences() {
        for (i, &(n, c, h, w, o, k, stride, padding, dilation)) in
            [(1, 2, 7, 6, 3, 3, 2, 1, 1), (1, 2, 6, 7, 2, 3, 1, 2, 2)]
                .iter()
                .enumerate()
        {
            let p = Conv2dParams {
                stride,
                padding,
                dilation,
            };
            let x = testutil::tensor(&[n, c, h, w], 7 + i as u64);
            let wt = testutil::tensor(&[o, c, k, k], 17 + i as u64);
            let y = conv2d(&x, &wt, p).expect("forward");
            let r = testutil::tensor(y.dims(), 27 + i as u64);
            let (_, gx, gw) = grads(&x, &wt, &r, |x, w| conv2d(x, w, p));
            let loss = |x: &Tensor, w: &Tensor| -> f64 {
                (conv2d(x, w, p).expect("forward") * &r)
                    .and_then(|t| t.sum_all())
                    .and_then(|t| t.to_scalar())
                    .expect("loss")
            };
            for (which, base, analytic) in [(0, &x, &gx), (1, &wt, &gw)] {
                let values: Vec<f64> = base.flatten_all().and_then(|t| t.to_vec1()).expect("v");
                let g: Vec<f64> = analytic.flatten_all().and_then(|t| t.to_vec1()).expect("g");
                for j in 0..values.len() {
                    let shifted = |delta: f64| {
                        let mut v = values.clone();
                        v[j] += delta;
                        Tensor::from_vec(v, base.dims(), &Device::Cpu).expect("tensor")
                    };
                    let e = 1e-6;
                    let fd = if which == 0 {
                        (loss(&shifted(e), &wt) - loss(&shifted(-e), &wt)) / (2.0 * e)
                    } else {
                        (loss(&x, &shifted(e)) - loss(&x, &shifted(-e))) / (2.0 * e)
                    };
                    let err = (g[j] - fd).abs() / fd.abs().max(1e-3);
                    assert!(
                        err < 1e-6,
                        "case {i} arg {which} element {j}: {} vs {fd}",
                        g[j]
                    );
                }
            }
        }
    }

    #[test]
    fn untracked_arguments_get_no_route() {
        let x = testutil::tensor(&[1, 2, 5, 5], 1);
        let w = testutil::tensor(&[3, 2, 3, 3], 2);
        let p = Conv2dParams {
            stride: 1,
            padding: 1,
            dilation: 1,
        };
        let y = conv2d(&x, &w, p).expect("forward");
        assert!(!y.track_op());
        let wv = Var::from_tensor(&w).expect("var");
        let g = conv2d(&x, wv.as_tensor(), p)
            .and_then(|y| y.sum_all())
            .and_then(|s| s.backward())
            .expect("backward");
        assert!(g.get(&x).is_none());
        assert!(g.get(wv.as_tensor()).is_some());
    }
}
