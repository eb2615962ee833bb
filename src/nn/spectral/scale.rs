//! The spectral norm's rescaling of a weight, `gain * W / sigma` with `sigma = u^T W v`, as one
//! op on the CPU.
//!
//! Written with candle's ops, the rescaling and its gradient take a dozen passes over the weight
//! (the bilinear form, the division, the gain, and for each of them a gradient that candle
//! allocates, zeroes and adds). Here the forward pass reads the weight twice (`sigma`, then the
//! scaled copy) and the backward pass twice (`<dY, W>`, then `dW`):
//!
//! `dW = (gain / sigma) dY - (gain <dY, W> / sigma^2) u v^T` and `d gain = <dY, W> / sigma`,
//!
//! the first term from the scaling, the second from `sigma`'s dependence on `W` (`u` and `v` are
//! held fixed, as the power iteration's detached vectors are).

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Storage, Tensor, bail};
use rayon::prelude::*;

use crate::nn::conv::{ELEMENTWISE_CHUNK as CHUNK, Float, contiguous};

/// `gain * w / sigma` with `sigma = u^T W v`, `W` being `w` viewed as an `(out, rest)` matrix
/// and `u` (`out`), `v` (`rest`) fixed; `gain` holds one element. Gradients reach `w` (through
/// `sigma` too) and `gain`. CPU tensors of f32 or f64 only. Returns the result and `sigma`.
pub(super) fn scale_by_sigma(
    w: &Tensor,
    gain: &Tensor,
    u: Vec<f64>,
    v: Vec<f64>,
) -> Result<(Tensor, f64)> {
    let out = w.dim(0)?;
    let rest = w.elem_count() / out.max(1);
    if u.len() != out || v.len() != rest || gain.elem_count() != 1 {
        bail!(
            "spectral scale: weight {:?} with u of {}, v of {} and a gain of {} elements",
            w.dims(),
            u.len(),
            v.len(),
            gain.elem_count()
        );
    }
    let sigma = Arc::new(OnceLock::new());
    let op = SnScale {
        u,
        v,
        sigma: sigma.clone(),
    };
    let y = w.contiguous()?.apply_op2(&gain.contiguous()?, op)?;
    match sigma.get() {
        Some(&s) => Ok((y, s)),
        None => bail!("spectral scale: the forward pass left no sigma"),
    }
}

struct SnScale {
    u: Vec<f64>,
    v: Vec<f64>,
    /// `u^T W v`, set by the forward pass for the backward pass.
    sigma: Arc<OnceLock<f64>>,
}

impl SnScale {
    fn sigma_of<T: Float>(&self, w: &[T]) -> f64 {
        let rest = self.v.len();
        w.par_chunks(rest.max(1))
            .zip(&self.u)
            .map(|(row, &ur)| {
                ur * row
                    .iter()
                    .zip(&self.v)
                    .map(|(&a, &b)| a.to_f64() * b)
                    .sum::<f64>()
            })
            .sum()
    }

    fn forward<T: Float>(&self, w: &[T], gain: f64) -> Vec<T> {
        let sigma = *self.sigma.get_or_init(|| self.sigma_of(w));
        let s = T::from_f64(gain / sigma);
        let mut y = vec![T::default(); w.len()];
        y.par_chunks_mut(CHUNK)
            .zip(w.par_chunks(CHUNK))
            .for_each(|(y, w)| y.iter_mut().zip(w).for_each(|(y, &w)| *y = w * s));
        y
    }

    /// `(dW, d gain)` for the incoming gradient `dy`.
    fn backward<T: Float>(&self, w: &[T], dy: &[T], gain: f64, sigma: f64) -> (Vec<T>, f64) {
        let dot: f64 = w
            .par_chunks(CHUNK)
            .zip(dy.par_chunks(CHUNK))
            .map(|(w, d)| {
                w.iter()
                    .zip(d)
                    .map(|(&a, &b)| a.to_f64() * b.to_f64())
                    .sum::<f64>()
            })
            .sum();
        let s = gain / sigma;
        let k = gain * dot / (sigma * sigma);
        let rest = self.v.len().max(1);
        let mut dw = vec![T::default(); w.len()];
        dw.par_chunks_mut(rest)
            .zip(dy.par_chunks(rest))
            .zip(&self.u)
            .for_each(|((dw, dy), &ur)| {
                let ku = k * ur;
                for ((o, &d), &vc) in dw.iter_mut().zip(dy).zip(&self.v) {
                    *o = T::from_f64(s * d.to_f64() - ku * vc);
                }
            });
        (dw, dot / sigma)
    }
}

impl SnScale {
    /// [`SnScale::backward`] on two CPU storages, `dW` as a tensor shaped like `w`.
    fn gradients<T: Float + candle_core::WithDType>(
        &self,
        (wd, wl): (&[T], &Layout),
        (dd, dl): (&[T], &Layout),
        (gain, sigma): (f64, f64),
        w: &Tensor,
    ) -> Result<(Tensor, f64)> {
        let name = "spectral-scale";
        let (dw, dg) = self.backward(
            contiguous(wd, wl, name)?,
            contiguous(dd, dl, name)?,
            gain,
            sigma,
        );
        Ok((Tensor::from_vec(dw, w.shape(), w.device())?, dg))
    }
}

/// The one value of a one-element CPU storage, as f64.
fn scalar(s: &CpuStorage, l: &Layout) -> Result<f64> {
    let at = l.start_offset();
    match s {
        CpuStorage::F32(v) => v.get(at).map(|&x| f64::from(x)),
        CpuStorage::F64(v) => v.get(at).copied(),
        _ => None,
    }
    .ok_or_else(|| candle_core::Error::Msg("spectral scale: f32 or f64 gain expected".into()))
}

impl CustomOp2 for SnScale {
    fn name(&self) -> &'static str {
        "spectral-scale"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let gain = scalar(s2, l2)?;
        let y = match s1 {
            CpuStorage::F32(w) => {
                CpuStorage::F32(self.forward(contiguous(w, l1, self.name())?, gain))
            }
            CpuStorage::F64(w) => {
                CpuStorage::F64(self.forward(contiguous(w, l1, self.name())?, gain))
            }
            _ => bail!("spectral scale: f32 or f64 weights expected"),
        };
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        w: &Tensor,
        gain: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let Some(&sigma) = self.sigma.get() else {
            bail!("spectral scale: backward pass without a forward pass");
        };
        let g = gain.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?[0];
        let dy = dy.contiguous()?;
        let (ws, wl) = w.storage_and_layout();
        let (ds, dl) = dy.storage_and_layout();
        let (dw, dgain) = match (&*ws, &*ds) {
            (Storage::Cpu(CpuStorage::F32(wd)), Storage::Cpu(CpuStorage::F32(dd))) => {
                self.gradients((wd, wl), (dd, dl), (g, sigma), w)?
            }
            (Storage::Cpu(CpuStorage::F64(wd)), Storage::Cpu(CpuStorage::F64(dd))) => {
                self.gradients((wd, wl), (dd, dl), (g, sigma), w)?
            }
            _ => bail!("spectral scale: CPU tensors of the weight's dtype expected"),
        };
        let dgain = Tensor::new(&[dgain], gain.device())?
            .to_dtype(gain.dtype())?
            .reshape(gain.shape())?;
        Ok((Some(dw), Some(dgain)))
    }
}
