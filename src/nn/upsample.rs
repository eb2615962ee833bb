//! Nearest-neighbour x2 upsampling that is safe for back-propagation.
//!
//! candle 0.11's `upsample_nearest2d` backward pass overwrites, instead of accumulating, the
//! gradient of its input when that input also feeds other operations, which silently corrupts
//! training of any generator with skip connections. Expressing the same result with reshape and
//! broadcast uses only ops whose backward passes accumulate correctly.

use candle_core::{Result, Tensor};

/// Upsamples a `(B, C, H, W)` tensor to `(B, C, 2H, 2W)` by repeating every pixel in a 2x2 block.
///
/// Numerically identical to `x.upsample_nearest2d(2 * h, 2 * w)`, but its gradient is correct
/// when `x` has several consumers.
pub fn upsample_nearest2x(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    x.reshape((b, c, h, 1, w, 1))?
        .broadcast_as((b, c, h, 2, w, 2))?
        .contiguous()?
        .reshape((b, c, 2 * h, 2 * w))
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
