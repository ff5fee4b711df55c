//! AdamW with decoupled weight decay and global-norm gradient clipping.
//!
//! Same update rule as candle-nn's `AdamW`, but with its moment estimates exposed, because a
//! training checkpoint must hold the optimizer state for `--resume` to continue exactly, and
//! candle-nn keeps those private.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWParams {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator guard.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Largest global gradient norm; larger gradients are scaled down. 0 disables clipping.
    pub clip_norm: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self {
            lr: 3e-4,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.01,
            clip_norm: 1.0,
        }
    }
}

/// The optimizer over a named set of variables.
pub struct AdamW {
    vars: Vec<(String, Var)>,
    m: Vec<Var>,
    v: Vec<Var>,
    steps: u64,
    /// Hyper-parameters (the learning rate may be changed between steps).
    pub params: AdamWParams,
}

impl AdamW {
    /// An optimizer over `vars` (sorted by name so the state layout is stable).
    pub fn new(mut vars: Vec<(String, Var)>, params: AdamWParams) -> Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |v: &Var| Var::zeros(v.shape(), v.dtype(), v.device());
        let m = vars
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<candle_core::Result<_>>()?;
        let v = vars
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            vars,
            m,
            v,
            steps: 0,
            params,
        })
    }

    /// One update from `grads`. Returns the global gradient norm before clipping.
    pub fn step(&mut self, grads: &GradStore) -> Result<f64> {
        let mut sq = 0.0f64;
        for (_, var) in &self.vars {
            if let Some(g) = grads.get(var.as_tensor()) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            return Err(Error::Other(
                "gradient is NaN or infinite; lower the learning rate".into(),
            ));
        }
        let p = &self.params;
        let clip = if p.clip_norm > 0.0 && norm > p.clip_norm {
            p.clip_norm / norm
        } else {
            1.0
        };
        self.steps += 1;
        let t = self.steps as i32;
        let c1 = 1.0 - p.beta1.powi(t);
        let c2 = 1.0 - p.beta2.powi(t);
        for (((_, var), m), v) in self.vars.iter().zip(&self.m).zip(&self.v) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = (g * clip)?;
            let m_new = ((m.as_tensor() * p.beta1)? + (&g * (1.0 - p.beta1))?)?;
            let v_new = ((v.as_tensor() * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let update = ((&m_new / c1)? / ((&v_new / c2)?.sqrt()? + p.eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - p.lr * p.weight_decay))?;
            var.set(&(decayed - (update * p.lr)?)?)?;
            m.set(&m_new)?;
            v.set(&v_new)?;
        }
        Ok(norm)
    }

    /// The moments, named `m.<var>` and `v.<var>`, plus the step count as `steps` (a 1-element
    /// tensor holding it as two u32 halves would be overkill: it fits f64 exactly).
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (((name, _), m), v) in self.vars.iter().zip(&self.m).zip(&self.v) {
            out.insert(format!("m.{name}"), m.as_tensor().clone());
            out.insert(format!("v.{name}"), v.as_tensor().clone());
        }
        let dev = self.vars.first().map(|(_, v)| v.device().clone());
        let dev = dev.unwrap_or(candle_core::Device::Cpu);
        out.insert("steps".into(), Tensor::new(&[self.steps as f64], &dev)?);
        Ok(out)
    }

    /// Restores moments and step count from [`state`](Self::state); every variable's moments
    /// must be present with the right shape.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let mut problems = Vec::new();
        for (((name, var), m), v) in self.vars.iter().zip(&self.m).zip(&self.v) {
            for (prefix, slot) in [("m", m), ("v", v)] {
                let key = format!("{prefix}.{name}");
                match state.get(&key) {
                    Some(t) if t.dims() == var.dims() => slot.set(t)?,
                    Some(t) => problems.push(format!(
                        "`{key}` has shape {:?}, expected {:?}",
                        t.dims(),
                        var.dims()
                    )),
                    None => problems.push(format!("`{key}` is missing")),
                }
            }
        }
        if !problems.is_empty() {
            return Err(Error::Other(format!(
                "optimizer state does not match the model: {}",
                problems.join("; ")
            )));
        }
        let steps = state
            .get("steps")
            .ok_or_else(|| Error::Other("optimizer state has no `steps`".into()))?;
        self.steps = steps.to_vec1::<f64>()?[0] as u64;
        Ok(())
    }
}
