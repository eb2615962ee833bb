//! Nearest x2 upsampling followed by a 3x3 convolution (stride 1, padding 1, no dilation), on
//! the low-resolution input.
//!
//! Output row `2i + a` of such a stage sees upsampled rows `2i + a - 1 ..= 2i + a + 1`, which
//! are only two distinct input rows: `i - 1, i` for `a = 0` (kernel rows 0 | 1 + 2) and
//! `i, i + 1` for `a = 1` (kernel rows 0 + 1 | 2); columns likewise. So each of the four output
//! parities `(a, b)` is a 2x2 convolution of the input with kernel taps summed ("folded"), and
//! all four are one convolution with `4 O` output channels, 2x2 kernels and padding 1, whose
//! output `z` (`(H + 1) x (W + 1)`) holds parity `(a, b)` at `z[i + a, j + b]`. That takes 16
//! multiply-adds per input pixel, channel pair where the upsampled 3x3 convolution takes 36, and
//! its column matrix is built from the small input.
//!
//! The backward pass scatters the output gradient back into `z`'s layout (the positions no
//! parity uses get zero), runs the ordinary gradients of the 2x2 convolution (the input's
//! gradient comes out at low resolution, with no downsampling sum), and unfolds the kernel
//! gradient: each 3x3 tap gets the sum of the folded taps it went into.

use rayon::prelude::*;

use super::ChainStage;
use crate::nn::conv::{Act, Conv2dParams, Float, Geom};

/// The 3x3 kernel rows (or columns) that fold into tap `r` of parity `a`: `FOLD[a][r]`.
const FOLD: [[&[usize]; 2]; 2] = [[&[0], &[1, 2]], [&[0, 1], &[2]]];

/// The folded convolution's parameters.
const FOLDED: Conv2dParams = Conv2dParams {
    stride: 1,
    padding: 1,
    dilation: 1,
};

/// The folded convolution of a stage that upsamples into a 3x3, stride-1, padding-1, undilated
/// convolution with kernel `(o, c, 3, 3)`, for an input `(n, c, h, w)` before upsampling; `None`
/// for every other stage.
pub(super) fn folded_geom(
    stage: &ChainStage,
    (o, c, kh, kw): (usize, usize, usize, usize),
    (n, h, w): (usize, usize, usize),
) -> Option<Geom> {
    let unit = Conv2dParams {
        stride: 1,
        padding: 1,
        dilation: 1,
    };
    if !stage.upsample || (kh, kw) != (3, 3) || stage.params != unit {
        return None;
    }
    Geom::new((n, c, h, w), (4 * o, c, 2, 2), FOLDED).ok()
}

/// The folded kernel `(4 O, C, 2, 2)`, parity `(a, b)` at channels `(2a + b) O ..`, from the
/// 3x3 kernel `(O, C, 3, 3)`.
pub(super) fn fold_kernel<T: Float>(w: &[T], o: usize, c: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; 16 * o * c];
    for (parity, block) in out.chunks_mut(4 * o * c).enumerate() {
        let (a, b) = (parity / 2, parity % 2);
        for (oc, taps) in block.chunks_mut(4).enumerate() {
            let src = &w[oc * 9..][..9];
            for (tap, v) in taps.iter_mut().enumerate() {
                let (r, s) = (tap / 2, tap % 2);
                for &dy in FOLD[a][r] {
                    for &dx in FOLD[b][s] {
                        *v += src[dy * 3 + dx];
                    }
                }
            }
        }
    }
    out
}

/// The 3x3 kernel's gradient `(O, C, 3, 3)` from the folded kernel's (the adjoint of
/// [`fold_kernel`]).
pub(super) fn unfold_gradient<T: Float>(g4: &[T], o: usize, c: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; 9 * o * c];
    for (parity, block) in g4.chunks(4 * o * c).enumerate() {
        let (a, b) = (parity / 2, parity % 2);
        for (oc, taps) in block.chunks(4).enumerate() {
            let dst = &mut out[oc * 9..][..9];
            for (tap, &v) in taps.iter().enumerate() {
                let (r, s) = (tap / 2, tap % 2);
                for &dy in FOLD[a][r] {
                    for &dx in FOLD[b][s] {
                        dst[dy * 3 + dx] += v;
                    }
                }
            }
        }
    }
    out
}

/// The stage's output `(N, O, 2H, 2W)` from the folded convolution's `z` `(N, 4 O, H + 1,
/// W + 1)`: parity `(a, b)` interleaved, then `act(. + bias)`; `(n, o, h, w)` are the sizes
/// before upsampling.
pub(super) fn interleave<T: Float>(
    z: &[T],
    (n, o, h, w): (usize, usize, usize, usize),
    bias: &[T],
    act: Act,
) -> Vec<T> {
    let (zw, zplane, plane) = (w + 1, (h + 1) * (w + 1), 4 * h * w);
    let mut out = vec![T::ZERO; n * o * plane];
    out.par_chunks_mut(plane)
        .enumerate()
        .for_each(|(index, dst)| {
            let (image, ch) = (index / o, index % o);
            for parity in 0..4 {
                let (a, b) = (parity / 2, parity % 2);
                let src = &z[((image * 4 + parity) * o + ch) * zplane..][..zplane];
                for i in 0..h {
                    let row = &src[(i + a) * zw + b..][..w];
                    let dst = &mut dst[(2 * i + a) * 2 * w..][..2 * w];
                    for (j, &v) in row.iter().enumerate() {
                        dst[2 * j + b] = v;
                    }
                }
            }
            act.add_bias_apply(dst, bias.get(ch).copied().unwrap_or(T::ZERO));
        });
    out
}

/// The adjoint of [`interleave`]'s rearrangement: the output gradient `(N, O, 2H, 2W)` in `z`'s
/// layout, zero where no parity reads `z`.
pub(super) fn deinterleave<T: Float>(
    g: &[T],
    (n, o, h, w): (usize, usize, usize, usize),
) -> Vec<T> {
    let (zw, zplane, plane) = (w + 1, (h + 1) * (w + 1), 4 * h * w);
    let mut z = vec![T::ZERO; n * 4 * o * zplane];
    z.par_chunks_mut(zplane)
        .enumerate()
        .for_each(|(index, dst)| {
            let (image, rest) = (index / (4 * o), index % (4 * o));
            let (parity, ch) = (rest / o, rest % o);
            let (a, b) = (parity / 2, parity % 2);
            let src = &g[(image * o + ch) * plane..][..plane];
            for i in 0..h {
                let row = &src[(2 * i + a) * 2 * w..][..2 * w];
                let dst = &mut dst[(i + a) * zw + b..][..w];
                for (j, v) in dst.iter_mut().enumerate() {
                    *v = row[2 * j + b];
                }
            }
        });
    z
}
