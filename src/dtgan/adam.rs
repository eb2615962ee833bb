//! Adam with its moments exposed, so that checkpoints can save and restore them.
//!
//! candle-nn's `AdamW` keeps its moments private, which would make a resumed run restart its
//! moment estimates and leave the curve it was on. This is the same update (no weight decay).

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use candle_nn::VarMap;

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
        self.t += 1;
        let t = self.t as i32;
        let c1 = 1.0 - self.beta1.powi(t);
        let c2 = 1.0 - self.beta2.powi(t);
        for (_, var, m, v) in &self.params {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::Init;

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
