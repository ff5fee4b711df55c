//! Reading DIAMOND checkpoints: PyTorch `.pt` agent state dicts as DIAMOND publishes them, and
//! safetensors files with the same tensor names.
//!
//! The world model's tensors are `denoiser.inner_model.*` (a bare denoiser state dict,
//! `inner_model.*`, is accepted too). The agent's other networks, `rew_end_model.*` and
//! `actor_critic.*`, are skipped without being read. The format is recognised from the file's
//! first bytes, not its extension. Every problem is reported with the file's path and, where
//! there is one, the tensor's name.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

use super::config::{DenoiserConfig, infer_config};
use crate::error::{Error, Result};

/// Prefixes of agent sub-networks that are not part of the world model.
const SKIPPED_PREFIXES: [&str; 2] = ["rew_end_model.", "actor_critic."];
/// Prefixes under which the inner model's tensors may be stored.
const MODEL_PREFIXES: [&str; 2] = ["denoiser.inner_model.", "inner_model."];

/// Reads one tensor's data by its name in the file.
type Fetch = Box<dyn FnMut(&str) -> candle_core::Result<Tensor>>;

/// A loaded DIAMOND denoiser checkpoint.
#[derive(Clone, Debug)]
pub struct DiamondCheckpoint {
    /// The file it came from.
    pub path: PathBuf,
    /// The configuration inferred from its tensors.
    pub config: DenoiserConfig,
    /// The inner model's tensors, as `f32`, keyed relative to `inner_model.`.
    pub tensors: HashMap<String, Tensor>,
    /// The prefix the file stores them under (`denoiser.inner_model.` or `inner_model.`).
    pub prefix: String,
    /// SHA-256 of the file, hex; identifies the weights in saved sessions.
    pub sha256: String,
}

/// The container formats understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// A PyTorch zip archive written by `torch.save`.
    PyTorch,
    /// A safetensors file.
    Safetensors,
}

/// Recognises the format from the file's first bytes.
pub fn detect_format(path: &Path) -> Result<CheckpointFormat> {
    let mut head = [0u8; 9];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = read_up_to(&mut f, &mut head).map_err(|e| Error::io(path, e))?;
    if n >= 4 && head[..4] == *b"PK\x03\x04" {
        return Ok(CheckpointFormat::PyTorch);
    }
    if n == 9 && head[8] == b'{' {
        return Ok(CheckpointFormat::Safetensors);
    }
    Err(Error::bad_file(
        path,
        "neither a PyTorch checkpoint (zip archive) nor a safetensors file",
    ))
}

/// The message of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

fn read_up_to(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Loads a DIAMOND checkpoint onto `device`, inferring and checking its configuration.
/// `sigma_data` and `sigma_offset_noise` are not stored in checkpoints; DIAMOND uses 0.5 and 0.3.
pub fn load_checkpoint(
    path: impl AsRef<Path>,
    device: &Device,
    sigma_data: f32,
    sigma_offset_noise: f32,
) -> Result<DiamondCheckpoint> {
    let path = path.as_ref();
    let format = detect_format(path)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let sha256 = format!("{:x}", Sha256::digest(&bytes));
    let bad = |m: String| Error::bad_file(path, m);

    // Names and shapes first, without reading tensor data.
    let (shapes, mut fetch): (BTreeMap<String, Vec<usize>>, Fetch) = match format {
        CheckpointFormat::PyTorch => {
            // candle's pickle reader panics on some malformed archives (a too short tuple, a
            // too long integer): caught here, so a damaged file is an error, not a crash.
            let pth = catch_unwind(AssertUnwindSafe(|| {
                candle_core::pickle::PthTensors::new(path, None)
            }))
            .map_err(|p| {
                bad(format!(
                    "cannot read the PyTorch checkpoint: its pickle is malformed ({})",
                    panic_message(p.as_ref())
                ))
            })?
            .map_err(|e| bad(format!("cannot read the PyTorch checkpoint: {e}")))?;
            // A tensor is read into memory of its declared size: refuse one that claims more
            // bytes than the whole file holds before anything is allocated for it.
            for (name, info) in pth.tensor_infos() {
                let dims = info.layout.shape().dims();
                let needed = dims
                    .iter()
                    .try_fold(info.dtype.size_in_bytes(), |n, &d| n.checked_mul(d));
                if needed.is_none_or(|n| n > bytes.len()) {
                    return Err(bad(format!(
                        "tensor '{name}': shape {dims:?} of {:?} needs more bytes than the file's {}",
                        info.dtype,
                        bytes.len()
                    )));
                }
            }
            let shapes = pth
                .tensor_infos()
                .iter()
                .map(|(k, info)| (k.clone(), info.layout.shape().dims().to_vec()))
                .collect();
            let fetch = move |name: &str| -> candle_core::Result<Tensor> {
                catch_unwind(AssertUnwindSafe(|| pth.get(name)))
                    .map_err(|p| candle_core::Error::Msg(panic_message(p.as_ref())))??
                    .ok_or_else(|| candle_core::Error::Msg("listed but not readable".into()))
            };
            (shapes, Box::new(fetch))
        }
        CheckpointFormat::Safetensors => {
            let st = safetensors::SafeTensors::deserialize(&bytes)
                .map_err(|e| bad(format!("cannot read the safetensors file: {e}")))?;
            let shapes = st
                .tensors()
                .into_iter()
                .map(|(k, v)| (k, v.shape().to_vec()))
                .collect();
            let all = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
                .map_err(|e| bad(format!("cannot read the safetensors file: {e}")))?;
            let fetch = move |name: &str| -> candle_core::Result<Tensor> {
                all.get(name)
                    .cloned()
                    .ok_or_else(|| candle_core::Error::Msg("listed but not readable".into()))
            };
            (shapes, Box::new(fetch))
        }
    };

    // Which prefix holds the model, and does anything else hide in the file?
    let prefix = MODEL_PREFIXES
        .iter()
        .find(|p| shapes.keys().any(|k| k.starts_with(*p)))
        .ok_or_else(|| {
            bad(format!(
                "no tensors named denoiser.inner_model.* or inner_model.*: not a DIAMOND world model \
                 checkpoint ({} tensors, first: {:?})",
                shapes.len(),
                shapes.keys().next()
            ))
        })?
        .to_string();
    let mut model_shapes = BTreeMap::new();
    for (name, shape) in &shapes {
        if SKIPPED_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let Some(rel) = name.strip_prefix(prefix.as_str()) else {
            return Err(bad(format!(
                "tensor '{name}' is not part of a DIAMOND agent (expected names under '{prefix}', \
                 'rew_end_model.' or 'actor_critic.')"
            )));
        };
        model_shapes.insert(rel.to_string(), shape.clone());
    }
    let config = infer_config(&model_shapes, &prefix, sigma_data, sigma_offset_noise)
        .map_err(|e| bad(e.to_string()))?;

    let mut tensors = HashMap::with_capacity(model_shapes.len());
    for rel in model_shapes.keys() {
        let name = format!("{prefix}{rel}");
        let t = fetch(&name)
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.to_device(device))
            .map_err(|e| bad(format!("tensor '{name}': cannot read its data: {e}")))?;
        let finite = t
            .abs()
            .and_then(|a| a.sum_all())
            .and_then(|m| m.to_scalar::<f32>())
            .map_err(|e| bad(format!("tensor '{name}': {e}")))?;
        if !finite.is_finite() {
            return Err(bad(format!(
                "tensor '{name}' contains NaN or infinite values"
            )));
        }
        tensors.insert(rel.clone(), t);
    }
    Ok(DiamondCheckpoint {
        path: path.to_path_buf(),
        config,
        tensors,
        prefix,
        sha256,
    })
}
