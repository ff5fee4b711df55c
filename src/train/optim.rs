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
                    Some(t) if t.dims() != var.dims() => problems.push(format!(
                        "`{key}` has shape {:?}, expected {:?}",
                        t.dims(),
                        var.dims()
                    )),
                    Some(t) if t.dtype() != var.dtype() => problems.push(format!(
                        "`{key}` is {:?}, expected {:?}",
                        t.dtype(),
                        var.dtype()
                    )),
                    Some(t) => slot.set(t)?,
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
        self.steps = step_count(steps)
            .map_err(|why| Error::Other(format!("optimizer state: `steps` {why}")))?;
        Ok(())
    }
}

/// The step count held in a `steps` tensor: exactly one value, a whole number of 0 or more
/// (a malformed checkpoint must be refused, not indexed blindly or cast into a huge count).
fn step_count(steps: &Tensor) -> std::result::Result<u64, String> {
    if steps.elem_count() != 1 {
        return Err(format!(
            "has shape {:?}, expected a single value",
            steps.dims()
        ));
    }
    let value = steps
        .flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F64))
        .and_then(|t| t.to_vec1::<f64>())
        .map_err(|e| format!("cannot be read: {e}"))?[0];
    // The bias correction raises the decay rates to the step count as an `i32`.
    let max = i32::MAX as f64;
    if !(value.is_finite() && (0.0..=max).contains(&value) && value.fract() == 0.0) {
        return Err(format!(
            "is {value}, expected a whole number from 0 to {max}"
        ));
    }
    Ok(value as u64)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    fn optimizer() -> AdamW {
        let var = Var::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        AdamW::new(vec![("w".into(), var)], AdamWParams::default()).unwrap()
    }

    #[test]
    fn state_round_trips_and_malformed_state_is_refused() {
        let mut opt = optimizer();
        opt.steps = 12;
        let good = opt.state().unwrap();
        let mut other = optimizer();
        other.load_state(&good).unwrap();
        assert_eq!(other.steps, 12);

        let dev = Device::Cpu;
        let with_steps = |steps: Tensor| {
            let mut s = good.clone();
            s.insert("steps".into(), steps);
            s
        };
        let cases = [
            (
                with_steps(Tensor::zeros(0, DType::F64, &dev).unwrap()),
                "shape [0]",
            ),
            (
                with_steps(Tensor::new(&[1.0f64, 2.0], &dev).unwrap()),
                "shape [2]",
            ),
            (with_steps(Tensor::new(&[f64::NAN], &dev).unwrap()), "NaN"),
            (with_steps(Tensor::new(&[-3.0f64], &dev).unwrap()), "-3"),
            (with_steps(Tensor::new(&[2.5f64], &dev).unwrap()), "2.5"),
            (
                with_steps(Tensor::new(&[1e300f64], &dev).unwrap()),
                "whole number",
            ),
        ];
        for (state, expected) in cases {
            let err = optimizer().load_state(&state).unwrap_err().to_string();
            assert!(err.contains("`steps`") && err.contains(expected), "{err}");
        }
        // Another dtype holding a whole number is read.
        let mut opt = optimizer();
        opt.load_state(&with_steps(Tensor::new(&[[7.0f32]], &dev).unwrap()))
            .unwrap();
        assert_eq!(opt.steps, 7);

        let mut no_steps = good.clone();
        no_steps.remove("steps");
        let err = optimizer().load_state(&no_steps).unwrap_err().to_string();
        assert!(err.contains("no `steps`"), "{err}");
        let mut wrong_dtype = good.clone();
        wrong_dtype.insert(
            "m.w".into(),
            Tensor::zeros((2, 3), DType::F64, &dev).unwrap(),
        );
        let err = optimizer()
            .load_state(&wrong_dtype)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`m.w` is F64, expected F32"), "{err}");
    }
}
