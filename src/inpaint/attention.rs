//! Contextual attention (DeepFill v1, "Generative Image Inpainting with Contextual Attention").
//!
//! Every foreground position borrows features from known background positions that look like
//! its surroundings:
//! 1. matching runs at half resolution (rate 2): the foreground is convolved with the
//!    L2-normalised 3x3 patches of the background, so each score is a cosine similarity times
//!    the foreground patch's norm;
//! 2. the scores are propagated along both image axes with a 3x3 identity kernel ("fuse"), so
//!    coherent neighbouring matches reinforce each other;
//! 3. background patches that touch the hole are excluded (their scores are zeroed before and
//!    their weights after the softmax, of scale 10, over all background patches);
//! 4. the 4x4 raw background patches at full resolution, stride 2, are pasted back weighted by
//!    the attention (a transposed convolution), divided by 4 for the overlap.
//!
//! The transposed convolution has no groups, so each batch element is its own loop iteration,
//! as in the reference code. Everything is candle ops and [`crate::nn::conv`] ops, so gradients
//! reach both the foreground and the background features.

use candle_core::backend::BackendStorage as _;
use candle_core::{D, DType, Result, Tensor, bail};

use crate::nn::conv::{Conv2dParams, contiguous, conv_transpose2d, conv2d};

/// Settings of the attention layer (the reference values are the defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionConfig {
    /// Side of the matching patches, at the reduced resolution.
    pub ksize: usize,
    /// Resolution reduction for matching; raw patches are `2 * rate` wide with stride `rate`.
    pub rate: usize,
    /// Side of the identity kernel of attention propagation (0 or 1: none).
    pub fuse_k: usize,
    /// Scale of the scores before the softmax.
    pub softmax_scale: f64,
}

impl Default for AttentionConfig {
    fn default() -> Self {
        Self {
            ksize: 3,
            rate: 2,
            fuse_k: 3,
            softmax_scale: 10.0,
        }
    }
}

/// What the layer returns besides its output.
#[derive(Debug, Clone)]
pub struct Attention {
    /// The reconstructed features, `(N, C, H, W)`.
    pub output: Tensor,
    /// `(h, w)` of the matching resolution.
    pub grid: (usize, usize),
    /// For each batch element, whether each background patch was usable (not touching the hole).
    pub usable: Vec<Vec<bool>>,
    /// For each batch element, the attention weights, `(P, Q)`: foreground position by
    /// background patch, both row-major at the matching resolution.
    pub weights: Vec<Tensor>,
}

impl Attention {
    /// For each batch element, the best background patch of every foreground position at the
    /// matching resolution, row-major (`y * w + x`), `h * w` entries. Computed on demand: reading
    /// it back to the host waits for the device, which the training step must not do per sample.
    pub fn best(&self) -> Result<Vec<Vec<u32>>> {
        self.weights
            .iter()
            .map(|att| {
                att.argmax(D::Minus1)?
                    .to_dtype(DType::U32)?
                    .to_vec1::<u32>()
            })
            .collect()
    }
}

/// Every `k x k` patch of `x (C, H, W)` at stride `s` after zero padding `pad` on the top/left
/// (and enough on the bottom/right), as `(L, C, k, k)` with `L = ceil(H/s) * ceil(W/s)` in
/// row-major order of the patch positions. One gather on the CPU (backward: one scatter-add);
/// candle tensor ops elsewhere.
fn patches(x: &Tensor, k: usize, s: usize, pad: usize) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        let (c, h, w) = x.dims3()?;
        let g = PatchGeom { c, h, w, k, s, pad };
        return x.contiguous()?.apply_op1(PatchesOp(g));
    }
    patches_by_ops(x, k, s, pad)
}

/// Sizes of a patch extraction.
#[derive(Debug, Clone, Copy)]
struct PatchGeom {
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    pad: usize,
}

impl PatchGeom {
    fn grid(&self) -> (usize, usize) {
        (self.h.div_ceil(self.s), self.w.div_ceil(self.s))
    }

    /// Calls `f(output index, input index)` for every patch element that falls on the input.
    fn each(&self, mut f: impl FnMut(usize, usize)) {
        let (ph, pw) = self.grid();
        let k = self.k;
        for py in 0..ph {
            for px in 0..pw {
                let q = py * pw + px;
                for ch in 0..self.c {
                    for ky in 0..k {
                        let y = (py * self.s + ky) as isize - self.pad as isize;
                        if y < 0 || y as usize >= self.h {
                            continue;
                        }
                        for kx in 0..k {
                            let x = (px * self.s + kx) as isize - self.pad as isize;
                            if x < 0 || x as usize >= self.w {
                                continue;
                            }
                            let out = ((q * self.c + ch) * k + ky) * k + kx;
                            f(out, (ch * self.h + y as usize) * self.w + x as usize);
                        }
                    }
                }
            }
        }
    }
}

/// `x.apply_op1(PatchesOp)`: the gather.
struct PatchesOp(PatchGeom);

/// `grad.apply_op1_no_bwd(PatchesGradOp)`: the scatter-add back onto the input.
struct PatchesGradOp(PatchGeom);

fn gather<T: Copy + Default>(g: &PatchGeom, x: &[T]) -> Vec<T> {
    let (ph, pw) = g.grid();
    let mut out = vec![T::default(); ph * pw * g.c * g.k * g.k];
    g.each(|o, i| out[o] = x[i]);
    out
}

fn scatter<T: Copy + Default + std::ops::AddAssign>(g: &PatchGeom, grad: &[T]) -> Vec<T> {
    let mut out = vec![T::default(); g.c * g.h * g.w];
    g.each(|o, i| out[i] += grad[o]);
    out
}

impl candle_core::CustomOp1 for PatchesOp {
    fn name(&self) -> &'static str {
        "attention-patches"
    }

    fn cpu_fwd(
        &self,
        st: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::CpuStorage;
        let g = &self.0;
        let (ph, pw) = g.grid();
        let storage = match st {
            CpuStorage::F32(x) => CpuStorage::F32(gather(g, contiguous(x, l, "patches")?)),
            CpuStorage::F64(x) => CpuStorage::F64(gather(g, contiguous(x, l, "patches")?)),
            _ => bail!("patches: f32 or f64 expected, got {:?}", st.dtype()),
        };
        Ok((storage, (ph * pw, g.c, g.k, g.k).into()))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            grad.contiguous()?
                .apply_op1_no_bwd(&PatchesGradOp(self.0))?,
        ))
    }
}

impl candle_core::CustomOp1 for PatchesGradOp {
    fn name(&self) -> &'static str {
        "attention-patches-backward"
    }

    fn cpu_fwd(
        &self,
        st: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::CpuStorage;
        let g = &self.0;
        let storage = match st {
            CpuStorage::F32(x) => CpuStorage::F32(scatter(g, contiguous(x, l, "patches")?)),
            CpuStorage::F64(x) => CpuStorage::F64(scatter(g, contiguous(x, l, "patches")?)),
            _ => bail!(
                "patches backward: f32 or f64 expected, got {:?}",
                st.dtype()
            ),
        };
        Ok((storage, (g.c, g.h, g.w).into()))
    }
}

/// [`patches`] from candle tensor ops (any device).
fn patches_by_ops(x: &Tensor, k: usize, s: usize, pad: usize) -> Result<Tensor> {
    let (c, h, w) = x.dims3()?;
    let (ph, pw) = (h.div_ceil(s), w.div_ceil(s));
    // Rows needed: (ph - 1) * s + k; pad the rest with zeros.
    let need_h = (ph - 1) * s + k;
    let need_w = (pw - 1) * s + k;
    let x = x
        .pad_with_zeros(1, pad, need_h.saturating_sub(h + pad))?
        .pad_with_zeros(2, pad, need_w.saturating_sub(w + pad))?;
    let full_w = x.dim(2)?;
    let mut taps = Vec::with_capacity(k * k);
    for ky in 0..k {
        // Rows ky, ky + s, ... : take s * ph rows from ky and keep the first of each group.
        let rows = x
            .pad_with_zeros(1, 0, s)?
            .narrow(1, ky, s * ph)?
            .reshape((c, ph, s, full_w))?
            .narrow(2, 0, 1)?
            .squeeze(2)?;
        for kx in 0..k {
            let tap = rows
                .pad_with_zeros(2, 0, s)?
                .narrow(2, kx, s * pw)?
                .reshape((c, ph, pw, s))?
                .narrow(3, 0, 1)?
                .reshape((c, ph * pw))?;
            taps.push(tap);
        }
    }
    // (C, L, k*k) -> (L, C, k, k)
    Tensor::stack(&taps, 2)?
        .permute((1, 0, 2))?
        .contiguous()?
        .reshape((ph * pw, c, k, k))
}

/// Nearest-neighbour reduction by `rate` (pixel `rate * i`), `(N, C, H, W)` -> `(N, C, H/r, W/r)`.
fn reduce(x: &Tensor, rate: usize) -> Result<Tensor> {
    if rate == 1 {
        return Ok(x.clone());
    }
    let (n, c, h, w) = x.dims4()?;
    let (h2, w2) = (h / rate, w / rate);
    x.narrow(2, 0, h2 * rate)?
        .narrow(3, 0, w2 * rate)?
        .reshape((n, c, h2, rate, w2, rate))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((n, c, h2, w2))
}

/// Attention propagation along the flattened index: `out[p, q] = sum_{d} m[p + d, q + d]` for
/// `d` in `-k/2 ..= k/2`, zero outside (the reference's conv with a `k x k` identity kernel).
fn fuse_diagonal(m: &Tensor, k: usize) -> Result<Tensor> {
    let (p, q) = m.dims2()?;
    let r = k / 2;
    let padded = m.pad_with_zeros(0, r, r)?.pad_with_zeros(1, r, r)?;
    let mut sum = padded.narrow(0, 0, p)?.narrow(1, 0, q)?;
    for d in 1..k {
        sum = (sum + padded.narrow(0, d, p)?.narrow(1, d, q)?)?;
    }
    Ok(sum)
}

/// Contextual attention of foreground `f` on background `b` (both `(N, C, H, W)`, `H` and `W`
/// multiples of `rate`), with `mask` `(N, 1, H, W)`, 1 in the hole. Returns the reconstruction
/// and the matches.
pub fn contextual_attention(
    f: &Tensor,
    b: &Tensor,
    mask: &Tensor,
    cfg: AttentionConfig,
) -> Result<Attention> {
    let (n, c, hh, ww) = f.dims4()?;
    if b.dims4()? != (n, c, hh, ww) {
        bail!(
            "contextual attention: background {:?} does not match foreground {:?}",
            b.dims(),
            f.dims()
        );
    }
    let rate = cfg.rate.max(1);
    if !hh.is_multiple_of(rate) || !ww.is_multiple_of(rate) || cfg.ksize.is_multiple_of(2) {
        bail!(
            "contextual attention: {hh}x{ww} features with rate {rate} and patch {}",
            cfg.ksize
        );
    }
    let (h, w) = (hh / rate, ww / rate);
    let l = h * w;
    let raw_k = 2 * rate;
    let f_s = reduce(f, rate)?;
    let b_s = reduce(b, rate)?;
    let m_s = reduce(&mask.to_dtype(DType::F32)?, rate)?;
    let pad = cfg.ksize / 2;
    // The hole at the matching resolution, read back once for the whole batch (one wait for the
    // device instead of one per sample).
    let holes: Vec<f32> = m_s.flatten_all()?.to_vec1()?;
    let mut outputs = Vec::with_capacity(n);
    let mut usable_all = Vec::with_capacity(n);
    let mut weights = Vec::with_capacity(n);
    for i in 0..n {
        // Raw patches for pasting, from the full-resolution background.
        let raw = patches(&b.get(i)?, raw_k, rate, rate / 2)?;
        // Matching patches, normalised.
        let wi = patches(&b_s.get(i)?, cfg.ksize, 1, pad)?;
        let norm = wi.sqr()?.sum_keepdim((1, 2, 3))?.sqrt()?.maximum(1e-4)?;
        let wi = wi.broadcast_div(&norm)?;
        let params = Conv2dParams {
            stride: 1,
            padding: pad,
            dilation: 1,
        };
        // (1, L, h, w): channel q = background patch, position p = foreground position.
        let scores = conv2d(&f_s.narrow(0, i, 1)?, &wi, params)?;
        let mut m = scores.reshape((l, l))?.t()?; // (P, Q)
        if cfg.fuse_k > 1 {
            let k = cfg.fuse_k;
            m = fuse_diagonal(&m.contiguous()?, k)?;
            // The same along the other axis: flatten both indices column-major.
            let swap = |t: &Tensor, (a, b): (usize, usize)| -> Result<Tensor> {
                t.reshape((a, b, a, b))?
                    .permute((1, 0, 3, 2))?
                    .contiguous()?
                    .reshape((l, l))
            };
            m = swap(&fuse_diagonal(&swap(&m, (h, w))?, k)?, (w, h))?;
        }
        // Background patches whose 3x3 neighbourhood holds no hole pixel.
        let hole = &holes[i * l..(i + 1) * l];
        let usable: Vec<bool> = (0..l)
            .map(|q| {
                let (qy, qx) = ((q / w) as isize, (q % w) as isize);
                let r = pad as isize;
                !(-r..=r).any(|dy| {
                    (-r..=r).any(|dx| {
                        let (y, x) = (qy + dy, qx + dx);
                        y >= 0
                            && x >= 0
                            && (y as usize) < h
                            && (x as usize) < w
                            && hole[y as usize * w + x as usize] > 0.5
                    })
                })
            })
            .collect();
        let mm: Vec<f32> = usable.iter().map(|&u| if u { 1.0 } else { 0.0 }).collect();
        let mm = Tensor::from_vec(mm, (1, l), f.device())?.to_dtype(f.dtype())?;
        let m = m.broadcast_mul(&mm)?;
        let att =
            candle_nn::ops::softmax(&(m * cfg.softmax_scale)?, D::Minus1)?.broadcast_mul(&mm)?;
        usable_all.push(usable);
        weights.push(att.clone());
        // (P, Q) -> (1, Q, h, w): each background patch's weight at every foreground position.
        let y = att.t()?.contiguous()?.reshape((1, l, h, w))?;
        let paste = Conv2dParams {
            stride: rate,
            padding: rate / 2,
            dilation: 1,
        };
        // Each output pixel is covered by (raw_k / rate)^2 patches.
        let overlap = ((raw_k / rate) * (raw_k / rate)) as f64;
        let out = (conv_transpose2d(&y, &raw, (hh, ww), paste)? / overlap)?;
        outputs.push(out);
    }
    Ok(Attention {
        output: Tensor::cat(&outputs, 0)?,
        grid: (h, w),
        usable: usable_all,
        weights,
    })
}

/// A colour picture of where each hole position borrowed its features from: hue is the
/// direction and brightness the distance of the best match, gray outside the hole. One RGB image
/// per batch element at the matching resolution, scaled up by `scale`.
pub fn flow_image(
    att: &Attention,
    mask: &Tensor,
    rate: usize,
    scale: u32,
) -> Result<Vec<image::RgbImage>> {
    let (h, w) = att.grid;
    let m_s = reduce(&mask.to_dtype(DType::F32)?, rate.max(1))?;
    let diag = ((h * h + w * w) as f32).sqrt().max(1.0);
    let best_all = att.best()?;
    let mut out = Vec::with_capacity(best_all.len());
    for (i, best) in best_all.iter().enumerate() {
        let hole: Vec<f32> = m_s.get(i)?.flatten_all()?.to_vec1()?;
        let scale = scale.max(1);
        let mut img = image::RgbImage::from_pixel(
            w as u32 * scale,
            h as u32 * scale,
            image::Rgb([96, 96, 96]),
        );
        for p in 0..h * w {
            if hole.get(p).copied().unwrap_or(0.0) < 0.5 {
                continue;
            }
            let q = best.get(p).copied().unwrap_or(0) as usize;
            let dy = (q / w) as f32 - (p / w) as f32;
            let dx = (q % w) as f32 - (p % w) as f32;
            let hue = dy.atan2(dx).rem_euclid(std::f32::consts::TAU) / std::f32::consts::TAU;
            let value = 0.35 + 0.65 * ((dy * dy + dx * dx).sqrt() / diag * 2.0).min(1.0);
            let rgb = hsv(hue, 0.9, value);
            let (py, px) = ((p / w) as u32 * scale, (p % w) as u32 * scale);
            for y in py..py + scale {
                for x in px..px + scale {
                    img.put_pixel(x, y, rgb);
                }
            }
        }
        out.push(img);
    }
    Ok(out)
}

fn hsv(h: f32, s: f32, v: f32) -> image::Rgb<u8> {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    let (r, g, b) = match (i as i32).rem_euclid(6) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    let c = |x: f32| (x * 255.0).round().clamp(0.0, 255.0) as u8;
    image::Rgb([c(r), c(g), c(b)])
}

#[cfg(test)]
mod tests;
