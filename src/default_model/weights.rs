//! Loading and saving the default model's weights (safetensors), with every mismatch between the
//! file and the configuration reported at once: missing tensors, unexpected tensors, wrong
//! shapes, wrong dtypes and non-finite values, each by name.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{VarBuilder, VarMap};

use super::config::Config;
use super::network::{DTYPE, Networks};
use crate::error::{Error, Result};

/// Names and shapes of every tensor the networks of `cfg` need, sorted by name.
///
/// The networks are built on a shape recorder (a `SimpleBackend`), which allocates nothing for
/// their weights: a `config.json` may describe a network far larger than memory, and that must
/// come back as a mismatch with the weights file, not abort the process while the expected list
/// is made.
pub fn expected_tensors(cfg: &Config) -> Result<Vec<(String, Vec<usize>)>> {
    let recorder = ShapeRecorder::default();
    let vb = VarBuilder::from_backend(Box::new(recorder.clone()), DTYPE, Device::Cpu);
    Networks::new(cfg, vb)?;
    let mut names = std::mem::take(&mut *recorder.lock());
    names.sort();
    names.dedup_by(|a, b| a.0 == b.0);
    Ok(names)
}

/// A [`VarBuilder`] backend that records the name and shape of every tensor asked for and
/// answers with zeros broadcast to that shape (one element of memory, whatever the shape).
/// Clones share one list, so the caller keeps a handle while the builder owns the other.
#[derive(Clone, Default)]
struct ShapeRecorder(Arc<Mutex<Shapes>>);

/// Tensor names with their shapes.
type Shapes = Vec<(String, Vec<usize>)>;

impl ShapeRecorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shapes> {
        // A poisoned list is still a list of names: nothing half-written can be in it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl SimpleBackend for ShapeRecorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.lock().push((name.to_string(), s.dims().to_vec()));
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        Err(candle_core::Error::Msg(format!(
            "tensor `{name}` was asked for without a shape"
        )))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.lock().iter().any(|(n, _)| n == name)
    }
}

/// Reads a safetensors file, checks it against what `cfg` needs, and builds the networks.
pub fn load_networks(path: &Path, cfg: &Config, device: &Device) -> Result<Networks> {
    let tensors = read_checked(path, cfg, device)?;
    let vb = VarBuilder::from_tensors(tensors, DTYPE, device);
    Networks::new(cfg, vb).map_err(|e| Error::bad_file(path, e.to_string()))
}

/// Reads a safetensors file and checks names, shapes, dtypes and values against `cfg`.
pub fn read_checked(path: &Path, cfg: &Config, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| Error::bad_file(path, format!("not a readable safetensors file: {e}")))?;
    let expected = expected_tensors(cfg)?;
    let mut problems = Vec::new();
    for (name, shape) in &expected {
        match tensors.get(name) {
            None => problems.push(format!("missing tensor `{name}` (shape {shape:?})")),
            Some(t) => {
                if t.dims() != shape.as_slice() {
                    problems.push(format!(
                        "tensor `{name}` has shape {:?}, the config needs {shape:?}",
                        t.dims()
                    ));
                }
                if t.dtype() != DType::F32 {
                    problems.push(format!("tensor `{name}` is {:?}, expected F32", t.dtype()));
                } else if !all_finite(t)? {
                    problems.push(format!("tensor `{name}` contains NaN or infinite values"));
                }
            }
        }
    }
    let known: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let mut extra: Vec<&String> = tensors
        .keys()
        .filter(|k| !known.contains(k.as_str()))
        .collect();
    extra.sort();
    for name in extra {
        problems.push(format!("unexpected tensor `{name}`"));
    }
    if !problems.is_empty() {
        return Err(Error::bad_file(
            path,
            format!(
                "weights do not match the model config ({} problems):\n  {}",
                problems.len(),
                problems.join("\n  ")
            ),
        ));
    }
    Ok(tensors)
}

fn all_finite(t: &Tensor) -> Result<bool> {
    let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
    Ok(v.iter().all(|x| x.is_finite()))
}

/// Writes every variable of `varmap` to `path` atomically.
pub fn save_varmap(varmap: &VarMap, path: &Path) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    let tensors: HashMap<String, Tensor> = data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    drop(data);
    save_tensors(&tensors, path)
}

/// Writes named tensors to `path` as safetensors, atomically.
pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    crate::files::write_atomic_with(path, |tmp| {
        candle_core::safetensors::save(tensors, tmp)
            .map_err(|e| Error::bad_file(tmp, e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_tensors_match_the_built_networks_without_allocating_them() {
        let cfg = Config::tiny();
        let varmap = VarMap::new();
        Networks::new(&cfg, VarBuilder::from_varmap(&varmap, DTYPE, &Device::Cpu)).unwrap();
        let mut built: Vec<(String, Vec<usize>)> = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(name, var)| (name.clone(), var.dims().to_vec()))
            .collect();
        built.sort();
        assert_eq!(expected_tensors(&cfg).unwrap(), built);

        // A config.json may describe terabytes of weights: listing them allocates none.
        let huge = Config {
            dim: 8192,
            heads: 8,
            mlp_ratio: 64,
            encoder_layers: 256,
            decoder_layers: 256,
            dynamics_layers: 256,
            ..Config::tiny()
        };
        let params: u128 = expected_tensors(&huge)
            .unwrap()
            .iter()
            .map(|(_, shape)| shape.iter().map(|&d| d as u128).product::<u128>())
            .sum();
        assert!(params > 1_000_000_000_000, "{params}");
    }
}
