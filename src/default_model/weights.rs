//! Loading and saving the default model's weights (safetensors), with every mismatch between the
//! file and the configuration reported at once: missing tensors, unexpected tensors, wrong
//! shapes, wrong dtypes and non-finite values, each by name.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::config::Config;
use super::network::{DTYPE, Networks};
use crate::error::{Error, Result};

/// Names and shapes of every tensor the networks of `cfg` need, sorted by name.
pub fn expected_tensors(cfg: &Config) -> Result<Vec<(String, Vec<usize>)>> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DTYPE, &Device::Cpu);
    Networks::new(cfg, vb)?;
    let mut names: Vec<(String, Vec<usize>)> = varmap
        .data()
        .lock()
        .expect("varmap lock")
        .iter()
        .map(|(name, var)| (name.clone(), var.dims().to_vec()))
        .collect();
    names.sort();
    Ok(names)
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
