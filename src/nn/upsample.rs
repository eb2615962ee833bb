//! Nearest-neighbour x2 upsampling that is safe for back-propagation.
//!
//! candle 0.11's `upsample_nearest2d` backward pass overwrites, instead of accumulating, the
//! gradient of its input when that input also feeds other operations, which silently corrupts
//! training of any generator with skip connections. On the CPU this module's own op does the
//! forward copy and the backward 2x2 sums in one parallel pass each; elsewhere the same result
//! comes from reshape and broadcast, whose backward passes accumulate correctly.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::conv::contiguous;

/// Upsamples a `(B, C, H, W)` tensor to `(B, C, 2H, 2W)` by repeating every pixel in a 2x2 block.
///
/// Numerically identical to `x.upsample_nearest2d(2 * h, 2 * w)`, but its gradient is correct
/// when `x` has several consumers.
pub fn upsample_nearest2x(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        return x.contiguous()?.apply_op1(Up2x);
    }
    x.reshape((b, c, h, 1, w, 1))?
        .broadcast_as((b, c, h, 2, w, 2))?
        .contiguous()?
        .reshape((b, c, 2 * h, 2 * w))
}

/// `x.apply_op1(Up2x)`: the forward copy.
struct Up2x;

/// `grad.apply_op1_no_bwd(&Down2xSum)`: each 2x2 block summed, the adjoint of [`Up2x`].
struct Down2xSum;

pub(crate) fn up<T: Copy + Default + Send + Sync>(x: &[T], (h, w): (usize, usize)) -> Vec<T> {
    let mut out = vec![T::default(); 4 * x.len()];
    out.par_chunks_mut(4 * h * w)
        .zip(x.par_chunks(h * w))
        .for_each(|(o, i)| {
            for (y, row) in i.chunks_exact(w).enumerate() {
                let (top, bottom) = o[4 * y * w..4 * (y + 1) * w].split_at_mut(2 * w);
                for (pair, &v) in top.chunks_exact_mut(2).zip(row) {
                    pair[0] = v;
                    pair[1] = v;
                }
                bottom.copy_from_slice(top);
            }
        });
    out
}

pub(crate) fn down_sum<T: Copy + Default + Send + Sync + std::ops::Add<Output = T>>(
    g: &[T],
    (h, w): (usize, usize),
) -> Vec<T> {
    let mut out = vec![T::default(); g.len() / 4];
    out.par_chunks_mut(h * w)
        .zip(g.par_chunks(4 * h * w))
        .for_each(|(o, gp)| {
            for (y, row) in o.chunks_exact_mut(w).enumerate() {
                let top = &gp[4 * y * w..][..2 * w];
                let bottom = &gp[(4 * y + 2) * w..][..2 * w];
                for ((v, t), b) in row
                    .iter_mut()
                    .zip(top.chunks_exact(2))
                    .zip(bottom.chunks_exact(2))
                {
                    *v = t[0] + t[1] + b[0] + b[1];
                }
            }
        });
    out
}

impl CustomOp1 for Up2x {
    fn name(&self) -> &'static str {
        "upsample-nearest-2x"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let storage = match s {
            CpuStorage::F32(x) => CpuStorage::F32(up(contiguous(x, l, "upsample")?, (h, w))),
            CpuStorage::F64(x) => CpuStorage::F64(up(contiguous(x, l, "upsample")?, (h, w))),
            _ => bail!("upsample: f32 or f64 expected, got {:?}", s.dtype()),
        };
        Ok((storage, Shape::from((b, c, 2 * h, 2 * w))))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Down2xSum)?))
    }
}

impl CustomOp1 for Down2xSum {
    fn name(&self) -> &'static str {
        "upsample-nearest-2x-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h2, w2) = l.shape().dims4()?;
        if h2 % 2 != 0 || w2 % 2 != 0 {
            bail!("upsample backward: odd gradient size {h2}x{w2}");
        }
        let hw = (h2 / 2, w2 / 2);
        let storage = match s {
            CpuStorage::F32(g) => {
                CpuStorage::F32(down_sum(contiguous(g, l, "upsample backward")?, hw))
            }
            CpuStorage::F64(g) => {
                CpuStorage::F64(down_sum(contiguous(g, l, "upsample backward")?, hw))
            }
            _ => bail!(
                "upsample backward: f32 or f64 expected, got {:?}",
                s.dtype()
            ),
        };
        Ok((storage, Shape::from((b, c, h2 / 2, w2 / 2))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::testutil;
    use candle_core::Var;

    #[test]
    fn forward_matches_candle_nearest() {
        let x = testutil::tensor(&[2, 3, 4, 5], 1);
        let ours = upsample_nearest2x(&x).expect("upsample");
        let theirs = x.upsample_nearest2d(8, 10).expect("candle upsample");
        assert_eq!(ours.dims(), &[2, 3, 8, 10]);
        let a: Vec<f64> = ours.flatten_all().and_then(|t| t.to_vec1()).expect("a");
        let b: Vec<f64> = theirs.flatten_all().and_then(|t| t.to_vec1()).expect("b");
        assert_eq!(a, b);
    }

    /// loss = sum(w1 * up(x)) + sum(w2 * x): `x` has two consumers.
    fn loss(x: &Tensor, w1: &Tensor, w2: &Tensor) -> Tensor {
        let up = upsample_nearest2x(x).expect("up");
        let a = (up * w1).and_then(|t| t.sum_all()).expect("a");
        let b = (x * w2).and_then(|t| t.sum_all()).expect("b");
        (a + b).expect("sum")
    }

    #[test]
    fn gradient_accumulates_with_two_consumers() {
        let shape = [1, 2, 3, 3];
        let x0 = testutil::values(18, 2);
        let w1 = testutil::tensor(&[1, 2, 6, 6], 3);
        let w2 = testutil::tensor(&shape, 4);
        let x = Var::from_tensor(&testutil::tensor(&shape, 2)).expect("var");
        let grads = loss(x.as_tensor(), &w1, &w2).backward().expect("backward");
        let g: Vec<f64> = grads
            .get(x.as_tensor())
            .expect("x has a gradient")
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .expect("grad values");
        let h = 1e-5;
        let eval = |xs: Vec<f64>| -> f64 {
            let t = Tensor::from_vec(xs, &shape, &candle_core::Device::Cpu).expect("t");
            loss(&t, &w1, &w2).to_scalar().expect("scalar")
        };
        for i in 0..x0.len() {
            let mut plus = x0.clone();
            plus[i] += h;
            let mut minus = x0.clone();
            minus[i] -= h;
            let fd = (eval(plus) - eval(minus)) / (2.0 * h);
            let err = (g[i] - fd).abs() / fd.abs().max(1e-3);
            assert!(err < 1e-6, "element {i}: autograd {} vs fd {fd}", g[i]);
        }
    }
}
