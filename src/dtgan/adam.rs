//! Adam with its moments exposed, so that checkpoints can save and restore them.
//!
//! candle-nn's `AdamW` keeps its moments private, which would make a resumed run restart its
//! moment estimates and leave the curve it was on. This is the same update (no weight decay).
//! On the CPU each variable's update is three in-place passes (the two moments, then the
//! variable) instead of about fifteen tensor ops, each with a fresh buffer.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor, Var, bail};
use candle_nn::VarMap;
use rayon::prelude::*;

use crate::nn::conv::{
    ELEMENTWISE_CHUNK as CHUNK, Float, contiguous, contiguous_mut, cpu_floats_of_one_dtype,
};

const EPS: f64 = 1e-8;

/// Adam over the variables of one [`VarMap`].
#[derive(Debug)]
pub struct Adam {
    params: Vec<(String, Var, Var, Var)>,
    /// Steps taken (for bias correction).
    pub t: u64,
    lr: f64,
    beta1: f64,
    beta2: f64,
}

impl Adam {
    /// An optimizer for every variable in `vars` (sorted by name, so the order is stable).
    pub fn new(vars: &VarMap, lr: f64, beta1: f64, beta2: f64) -> Result<Self> {
        let data = vars
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        let mut params = Vec::with_capacity(names.len());
        for name in names {
            let var = data[name].clone();
            let m = Var::zeros(var.shape(), var.dtype(), var.device())?;
            let v = Var::zeros(var.shape(), var.dtype(), var.device())?;
            params.push((name.clone(), var, m, v));
        }
        Ok(Self {
            params,
            t: 0,
            lr,
            beta1,
            beta2,
        })
    }

    /// Changes the learning rate (for a schedule).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Applies one update from `grads`; variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step_with(grads, true)
    }

    /// [`Adam::step`]; `in_place` allows the in-place CPU passes (the tests compare both ways).
    fn step_with(&mut self, grads: &GradStore, in_place: bool) -> Result<()> {
        self.t += 1;
        let t = self.t as i32;
        let c1 = 1.0 - self.beta1.powi(t);
        let c2 = 1.0 - self.beta2.powi(t);
        for (_, var, m, v) in &self.params {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            if in_place
                && cpu_floats_of_one_dtype([var.as_tensor(), m.as_tensor(), v.as_tensor(), g])
            {
                let g = g.contiguous()?;
                m.inplace_op2(
                    &g,
                    &Moment {
                        beta: self.beta1,
                        square: false,
                    },
                )?;
                v.inplace_op2(
                    &g,
                    &Moment {
                        beta: self.beta2,
                        square: true,
                    },
                )?;
                let update = Update {
                    lr: self.lr,
                    c1,
                    c2,
                };
                var.inplace_op3(m.as_tensor(), v.as_tensor(), &update)?;
                continue;
            }
            let m_new = ((m.as_tensor() * self.beta1)? + (g * (1.0 - self.beta1))?)?;
            let v_new = ((v.as_tensor() * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let update = ((&m_new / c1)? / ((&v_new / c2)?.sqrt()? + EPS)?)?;
            var.set(&(var.as_tensor() - (update * self.lr)?)?)?;
            m.set(&m_new)?;
            v.set(&v_new)?;
        }
        Ok(())
    }

    /// Computes the gradients of `loss` and applies one update.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        self.step(&grads)
    }

    /// The moments as named tensors (`<prefix>m.<var>`, `<prefix>v.<var>`), for checkpoints.
    pub fn state_tensors(&self, prefix: &str) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (name, _, m, v) in &self.params {
            out.insert(format!("{prefix}m.{name}"), m.as_tensor().clone());
            out.insert(format!("{prefix}v.{name}"), v.as_tensor().clone());
        }
        out
    }

    /// Restores the moments saved by [`Adam::state_tensors`]; a missing one is an error naming it.
    pub fn load_state(
        &mut self,
        prefix: &str,
        tensors: &HashMap<String, Tensor>,
    ) -> std::result::Result<(), String> {
        for (name, var, m, v) in &self.params {
            for (kind, slot) in [("m", m), ("v", v)] {
                let key = format!("{prefix}{kind}.{name}");
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| format!("missing optimizer tensor {key}"))?;
                let t = t
                    .to_device(var.device())
                    .and_then(|t| t.to_dtype(var.dtype()))
                    .map_err(|e| format!("{key}: {e}"))?;
                slot.set(&t).map_err(|e| format!("{key}: {e}"))?;
            }
        }
        Ok(())
    }
}

/// `m = beta m + (1 - beta) g` (`g²` with `square`), in place; the same arithmetic, in the same
/// order, as the tensor ops of [`Adam::step`].
struct Moment {
    beta: f64,
    square: bool,
}

/// `w -= lr (m / c1) / (sqrt(v / c2) + eps)`, in place.
struct Update {
    lr: f64,
    c1: f64,
    c2: f64,
}

impl Moment {
    fn apply<T: Float>(&self, m: &mut [T], g: &[T]) {
        let (beta, rest) = (T::from_f64(self.beta), T::from_f64(1.0 - self.beta));
        let square = self.square;
        m.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(m, g)| {
                for (m, &g) in m.iter_mut().zip(g) {
                    let g = if square { g * g } else { g };
                    *m = *m * beta + g * rest;
                }
            });
    }
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "adam-moment"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        match (s1, s2) {
            (CpuStorage::F32(m), CpuStorage::F32(g)) => {
                self.apply(contiguous_mut(m, l1, "adam")?, contiguous(g, l2, "adam")?)
            }
            (CpuStorage::F64(m), CpuStorage::F64(g)) => {
                self.apply(contiguous_mut(m, l1, "adam")?, contiguous(g, l2, "adam")?)
            }
            _ => bail!("adam: f32 or f64 moments and gradients of one dtype expected"),
        }
        Ok(())
    }
}

impl Update {
    fn apply<T: Float>(&self, w: &mut [T], m: &[T], v: &[T]) {
        let (lr, r1, r2, eps) = (
            T::from_f64(self.lr),
            T::from_f64(1.0 / self.c1),
            T::from_f64(1.0 / self.c2),
            T::from_f64(EPS),
        );
        w.par_chunks_mut(CHUNK)
            .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)))
            .for_each(|(w, (m, v))| {
                for ((w, &m), &v) in w.iter_mut().zip(m).zip(v) {
                    *w = *w - (m * r1) / ((v * r2).sqrt() + eps) * lr;
                }
            });
    }
}

impl InplaceOp3 for Update {
    fn name(&self) -> &'static str {
        "adam-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        match (s1, s2, s3) {
            (CpuStorage::F32(w), CpuStorage::F32(m), CpuStorage::F32(v)) => self.apply(
                contiguous_mut(w, l1, "adam")?,
                contiguous(m, l2, "adam")?,
                contiguous(v, l3, "adam")?,
            ),
            (CpuStorage::F64(w), CpuStorage::F64(m), CpuStorage::F64(v)) => self.apply(
                contiguous_mut(w, l1, "adam")?,
                contiguous(m, l2, "adam")?,
                contiguous(v, l3, "adam")?,
            ),
            _ => bail!("adam: f32 or f64 variables and moments of one dtype expected"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::Init;

    /// The in-place CPU passes against the tensor ops they replace, over a few steps with
    /// gradients of changing size and sign, in f32 and f64.
    #[test]
    fn in_place_update_matches_the_tensor_ops() {
        use crate::nn::testutil;
        for (dtype, tol) in [(DType::F64, 1e-14), (DType::F32, 1e-6)] {
            let make = || {
                let vars = VarMap::new();
                let w = vars
                    .get((7, 5), "w", Init::Const(0.0), dtype, &Device::Cpu)
                    .expect("var");
                let start = testutil::tensor(&[7, 5], 3).to_dtype(dtype).expect("dtype");
                vars.data().lock().expect("lock")["w"]
                    .set(&start)
                    .expect("set");
                (vars, w)
            };
            let ((va, wa), (vb, wb)) = (make(), make());
            let mut a = Adam::new(&va, 0.01, 0.5, 0.9).expect("adam");
            let mut b = Adam::new(&vb, 0.01, 0.5, 0.9).expect("adam");
            for step in 0..5u64 {
                let r = testutil::tensor(&[7, 5], 10 + step)
                    .to_dtype(dtype)
                    .expect("dtype");
                let loss = |w: &Tensor| {
                    (w.sqr().expect("sqr") * &r)
                        .and_then(|t| t.sum_all())
                        .expect("loss")
                };
                let grads = loss(&wa).backward().expect("grads");
                // The condition of the in-place branch holds, so `a` takes it (else this test
                // would compare the tensor ops with themselves).
                let (_, _, m, v) = &a.params[0];
                let g = grads.get(&wa).expect("a gradient");
                assert!(cpu_floats_of_one_dtype([
                    &wa,
                    m.as_tensor(),
                    v.as_tensor(),
                    g
                ]));
                a.step_with(&grads, true).expect("a");
                b.step_with(&loss(&wb).backward().expect("grads"), false)
                    .expect("b");
            }
            let flat = |t: &Tensor| -> Vec<f64> {
                t.to_dtype(DType::F64)
                    .and_then(|t| t.flatten_all())
                    .and_then(|t| t.to_vec1())
                    .expect("values")
            };
            let (ta, tb) = (a.state_tensors(""), b.state_tensors(""));
            for (name, x, y) in [
                ("w", flat(&wa), flat(&wb)),
                ("m", flat(&ta["m.w"]), flat(&tb["m.w"])),
                ("v", flat(&ta["v.w"]), flat(&tb["v.w"])),
            ] {
                assert!(x != flat(&Tensor::zeros((7, 5), DType::F64, &Device::Cpu).expect("0")));
                for (i, (x, y)) in x.iter().zip(&y).enumerate() {
                    assert!(
                        (x - y).abs() <= tol * y.abs().max(1e-3),
                        "{dtype:?} {name}[{i}]: in place {x} vs tensor ops {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn minimises_a_quadratic() {
        let vars = VarMap::new();
        let x = vars
            .get(3, "x", Init::Const(5.0), DType::F32, &Device::Cpu)
            .expect("var");
        let target = Tensor::new(&[1f32, -2.0, 0.5], &Device::Cpu).expect("target");
        let mut opt = Adam::new(&vars, 0.1, 0.9, 0.999).expect("adam");
        let loss = |x: &Tensor| {
            (x - &target)
                .and_then(|d| d.sqr())
                .and_then(|d| d.sum_all())
        };
        let start: f32 = loss(&x).and_then(|l| l.to_scalar()).expect("loss");
        for _ in 0..300 {
            opt.backward_step(&loss(&x).expect("loss")).expect("step");
        }
        let end: f32 = loss(&x).and_then(|l| l.to_scalar()).expect("loss");
        assert!(end < start * 1e-3, "loss {start} -> {end}");
        assert_eq!(opt.t, 300);
    }

    #[test]
    fn first_step_moves_each_weight_by_the_learning_rate() {
        // Adam's first bias-corrected step is lr * sign(g) whatever the gradient's size.
        let vars = VarMap::new();
        let x = vars
            .get(2, "x", Init::Const(0.0), DType::F64, &Device::Cpu)
            .expect("var");
        let mut opt = Adam::new(&vars, 0.01, 0.5, 0.9).expect("adam");
        let w = Tensor::new(&[3.0f64, -0.001], &Device::Cpu).expect("w");
        opt.backward_step(&(&x * &w).and_then(|t| t.sum_all()).expect("loss"))
            .expect("step");
        let got: Vec<f64> = x.to_vec1().expect("values");
        assert!(
            (got[0] + 0.01).abs() < 1e-6 && (got[1] - 0.01).abs() < 1e-4,
            "{got:?}"
        );
    }
}
