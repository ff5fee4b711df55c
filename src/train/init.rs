//! How a training run starts: seeded initialisation, and starting points taken from the data
//! (principal components for the codec, the measured motion for the warp, the mean sound for
//! the audio head) or from a trained model.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;

use super::data::TrainingData;
use super::{motion, pca};
use crate::default_model::config::Config;
use crate::default_model::network::DTYPE;
use crate::default_model::warp::SHIFT_SCALE;
use crate::error::{Error, Result};
use crate::rng::Gaussian;

/// Redraws every randomly initialised variable from a generator seeded by `seed` and the
/// variable's name: linear weights N(0, 1/fan-in), biases zero, positions N(0, 0.02). candle's
/// CPU generator cannot be seeded, and a training run must be reproducible. Constant variables
/// (zero-initialised gates and outputs, layer-norm scales and shifts) are left as they are.
pub(crate) fn reseed(varmap: &VarMap, seed: u64) -> Result<()> {
    reseed_matching(varmap, seed, |_| true)
}

/// [`reseed`] for the variables whose names `matches` accepts.
pub(crate) fn reseed_matching(
    varmap: &VarMap,
    seed: u64,
    matches: impl Fn(&str) -> bool,
) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().filter(|n| matches(n)).collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let values: Vec<f32> = var.as_tensor().flatten_all()?.to_vec1()?;
        if values.iter().all(|&v| v == values[0]) {
            continue;
        }
        let mut rng = Gaussian::new(seed ^ fnv(name));
        let fresh: Vec<f32> = if name == "outpaint.codebook" {
            // Set from the data when the outpainter's stage starts.
            continue;
        } else if name.starts_with("dynamics.motion.") {
            // The motion head starts near the identity warp, but not at it: the interpolation's
            // gradient with respect to the shift vanishes at exactly zero.
            (0..values.len()).map(|_| rng.normal() * 1e-4).collect()
        } else if name.ends_with("pos") || name == "outpaint.mask" || name == "outpaint.sides" {
            (0..values.len()).map(|_| rng.normal() * 0.02).collect()
        } else if name.ends_with(".weight") {
            // 1/√fan-in keeps activations at unit scale through the residual stream.
            let fan_in = var.dims()[var.rank() - 1] as f32;
            let std = 1.0 / fan_in.sqrt();
            (0..values.len()).map(|_| rng.normal() * std).collect()
        } else if name.ends_with(".bias") {
            vec![0.0; values.len()]
        } else {
            return Err(Error::Other(format!(
                "no seeded initialisation rule for variable `{name}`"
            )));
        };
        var.set(&Tensor::from_vec(fresh, var.shape(), var.device())?)?;
    }
    Ok(())
}

/// Starts the audio head at the dataset's mean spectrum (its last layer's bias) with small
/// weights, so the sound loss begins at the spectra's variance instead of their squared
/// magnitude (log energies sit far below zero) and does not swamp the picture loss.
pub(crate) fn start_audio_at_mean(varmap: &VarMap, data: &TrainingData) -> Result<()> {
    let map = varmap.data().lock().expect("varmap lock");
    let (Some(bias), Some(weight)) = (map.get("audio.fc3.bias"), map.get("audio.fc3.weight"))
    else {
        return Ok(());
    };
    let per = bias.dims()[0];
    let rows = data.audio.len() / per;
    let mut mean = vec![0f64; per];
    for row in data.audio.chunks_exact(per) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += *v as f64 / rows as f64;
        }
    }
    let mean: Vec<f32> = mean.into_iter().map(|m| m as f32).collect();
    bias.set(&Tensor::from_vec(mean, per, bias.device())?)?;
    weight.set(&(weight.as_tensor() * 0.1)?)?;
    Ok(())
}

/// Starts the autoencoder as the best linear code of the data's patches (principal components;
/// see [`pca`]): the encoder's and decoder's `skip` layers get the whitened projection and its
/// inverse, and their transformer outputs start at zero, so the transformers learn corrections.
pub(crate) fn start_codec_at_pca(
    varmap: &VarMap,
    data: &TrainingData,
    cfg: &Config,
    device: &Device,
) -> Result<()> {
    let n = data.frame_count();
    let rows: Vec<usize> = (0..n).step_by((n / 1500).max(1)).collect();
    let patches = crate::default_model::network::patchify(&data.pixels(&rows, device)?, cfg.patch)?;
    let patches = patches.reshape((rows.len() * cfg.tokens(), cfg.patch_values()))?;
    let components = pca::principal_components(&patches, cfg.latent_channels)?;
    let [enc_w, enc_b, dec_w, dec_b] = pca::linear_codec(&components, device)?;
    let map = varmap.data().lock().expect("varmap lock");
    let set = |name: &str, t: &Tensor| -> Result<()> {
        named(&map, name)?.set(&t.to_dtype(DTYPE)?)?;
        Ok(())
    };
    set("encoder.skip.weight", &enc_w)?;
    set("encoder.skip.bias", &enc_b)?;
    set("decoder.skip.weight", &dec_w)?;
    set("decoder.skip.bias", &dec_b)?;
    for name in [
        "encoder.out.weight",
        "encoder.out.bias",
        "decoder.out.weight",
        "decoder.out.bias",
    ] {
        let var = &map[name];
        set(name, &var.as_tensor().zeros_like()?)?;
    }
    Ok(())
}

/// Sets every variable to a trained model's weights; a sampler the trained model lacks starts
/// from `seed`. The trained model's architecture must build the same networks as `cfg`'s.
pub(crate) fn start_from_trained(
    varmap: &VarMap,
    dir: &Path,
    cfg: &Config,
    seed: u64,
) -> Result<()> {
    let config_path = dir.join("config.json");
    let (trained, _) = Config::load(&config_path)?;
    if trained.motion_warp != cfg.motion_warp {
        return Err(Error::bad_file(
            config_path,
            "the model to start from and the training config differ in `motion_warp`",
        ));
    }
    if let Some(differences) = trained
        .spec
        .as_ref()
        .map(|spec| cfg.layout().differences(spec))
        .filter(|d| !d.is_empty())
    {
        return Err(Error::bad_file(
            config_path,
            format!(
                "the model to start from has other channels than the data:\n  {}",
                differences.join("\n  ")
            ),
        ));
    }
    // A sampler or an outpainter added to a trained model starts fresh (seeded; the sampler's
    // output layer is zero, so the model starts as the trained one); everything else comes from
    // the weights.
    let mut without = cfg.clone();
    let mut fresh = Vec::new();
    if cfg.sampler.is_some() && trained.sampler.is_none() {
        without.sampler = None;
        fresh.push("sampler.");
    }
    if cfg.outpainter.is_some() && trained.outpainter.is_none() {
        without.outpainter = None;
        fresh.push("outpaint.");
    }
    set_from_weights(varmap, &dir.join("model.safetensors"), &without)?;
    reseed_matching(varmap, seed, |name| {
        fresh.iter().any(|p| name.starts_with(p))
    })
}

/// Sets the variables that `cfg` names from a weights file (names, shapes and dtypes checked
/// against `cfg`); any others, such as a sampler `cfg` leaves out, keep their values.
pub(crate) fn set_from_weights(varmap: &VarMap, weights: &Path, cfg: &Config) -> Result<()> {
    let tensors = crate::default_model::weights::read_checked(weights, cfg, &Device::Cpu)?;
    let data = varmap.data().lock().expect("varmap lock");
    for (name, var) in data.iter() {
        if let Some(t) = tensors.get(name) {
            var.set(t)?;
        }
    }
    Ok(())
}

/// Copies the encoder's and decoder's linear paths into the motion warp's frozen codec
/// ([`MotionWarp`](crate::default_model::warp::MotionWarp)) as the dynamics stage starts.
pub(crate) fn start_warp_at_codec(varmap: &VarMap) -> Result<()> {
    let map = varmap.data().lock().expect("varmap lock");
    for (from, to) in [
        ("encoder.skip.weight", "warp.encode.weight"),
        ("encoder.skip.bias", "warp.encode.bias"),
        ("decoder.skip.weight", "warp.decode.weight"),
        ("decoder.skip.bias", "warp.decode.bias"),
    ] {
        named(&map, to)?.set(&named(&map, from)?.as_tensor().detach())?;
    }
    Ok(())
}

/// Starts the motion head's shifts at a least-squares fit of the global image motion measured
/// between consecutive training frames to their actions (see [`motion`]).
pub(crate) fn start_motion_at_measured(
    varmap: &VarMap,
    data: &TrainingData,
    device: &Device,
) -> Result<()> {
    let fits = motion::fit_shifts_to_actions(data, 2, device)?;
    let map = varmap.data().lock().expect("varmap lock");
    let head = named(&map, "dynamics.motion.weight")?;
    let mut weight: Vec<Vec<f32>> = head.as_tensor().to_vec2()?;
    // Rows 0 and 2 of the head are the horizontal and vertical shift. The head has no bias (no
    // action, no motion); the fit's intercept takes up the measurement's own bias.
    for (row, (w, _intercept)) in [0, 2].into_iter().zip(fits) {
        weight[row] = w.iter().map(|v| v / SHIFT_SCALE as f32).collect();
    }
    let (rows, cols) = (weight.len(), weight[0].len());
    let flat: Vec<f32> = weight.into_iter().flatten().collect();
    head.set(&Tensor::from_vec(flat, (rows, cols), device)?)?;
    Ok(())
}

/// The variable `name` of a model's variable map, or an error naming it.
pub(crate) fn named<'a>(map: &'a HashMap<String, Var>, name: &str) -> Result<&'a Var> {
    map.get(name)
        .ok_or_else(|| Error::Other(format!("model has no `{name}`")))
}

/// FNV-1a hash of a string (stable across runs and platforms).
pub(crate) fn fnv(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x1000_0000_01b3)
    })
}

/// Sets the outpainter's codebook (`outpaint.codebook`, `(K, C)`) to K centres of the data's
/// latent tokens found by k-means (Lloyd's iterations from K distinct tokens drawn with `seed`),
/// on up to 200,000 tokens drawn from `latents` (every frame's tokens, `C` values each).
pub(crate) fn start_codebook_at_kmeans(
    varmap: &VarMap,
    latents: &[f32],
    seed: u64,
    device: &Device,
) -> Result<()> {
    let map = varmap.data().lock().expect("varmap lock");
    let Some(var) = map.get("outpaint.codebook") else {
        return Ok(());
    };
    let (k, c) = (var.dims()[0], var.dims()[1]);
    let total = latents.len() / c;
    let mut rng = Gaussian::new(seed ^ 0xC0DE_B00C);
    let n = total.min(200_000).max(k);
    let picks: Vec<usize> = (0..n)
        .map(|_| ((rng.uniform() * total as f32) as usize).min(total - 1))
        .collect();
    let samples: Vec<f32> = picks
        .iter()
        .flat_map(|&i| latents[i * c..(i + 1) * c].iter().copied())
        .collect();
    let samples_t = Tensor::from_vec(samples.clone(), (1, n, c), device)?;
    let mut centres: Vec<f32> = (0..k)
        .flat_map(|j| samples[(j * n / k) * c..(j * n / k + 1) * c].to_vec())
        .collect();
    for _ in 0..20 {
        let codebook = Tensor::from_vec(centres.clone(), (k, c), device)?;
        let assigned: Vec<u32> = crate::default_model::outpaint::nearest(&samples_t, &codebook)?
            .flatten_all()?
            .to_vec1()?;
        let mut sums = vec![0f64; k * c];
        let mut counts = vec![0usize; k];
        for (i, &a) in assigned.iter().enumerate() {
            let a = a as usize;
            counts[a] += 1;
            for j in 0..c {
                sums[a * c + j] += samples[i * c + j] as f64;
            }
        }
        for a in 0..k {
            if counts[a] == 0 {
                // An empty centre restarts at a random token.
                let i = ((rng.uniform() * n as f32) as usize).min(n - 1);
                centres[a * c..(a + 1) * c].copy_from_slice(&samples[i * c..(i + 1) * c]);
            } else {
                for j in 0..c {
                    centres[a * c + j] = (sums[a * c + j] / counts[a] as f64) as f32;
                }
            }
        }
    }
    var.set(&Tensor::from_vec(centres, (k, c), device)?)?;
    Ok(())
}

/// Fills the retrieval outpainter's banks (`outpaint.SIDE.{projection,keys,values}`) from the
/// data: for each side, `entries` frames spread evenly over the data (with a seeded jitter)
/// give their edge line as a value and the seeded random projection of the lines next to it as
/// its key.
pub(crate) fn start_bank_from_data(
    varmap: &VarMap,
    latents: &[f32],
    model: &Config,
    seed: u64,
    device: &Device,
) -> Result<()> {
    use crate::default_model::outpaint::{OutpaintHead, Side, window};
    let Some(outpainter) = &model.outpainter else {
        return Ok(());
    };
    let OutpaintHead::Retrieval { entries, key } = outpainter.head else {
        return Ok(());
    };
    let (t, c) = (model.tokens(), model.latent_channels);
    let (rows, cols) = (model.height / model.patch, model.width / model.patch);
    let frames = latents.len() / (t * c);
    let map = varmap.data().lock().expect("varmap lock");
    for (side, name) in Side::ALL.into_iter().zip(["right", "left", "down", "up"]) {
        let (ctx, new) = window(side, rows, cols, outpainter.context);
        let mut rng = Gaussian::new(seed ^ fnv(name));
        let gather = |frame: usize, positions: &[u32], out: &mut Vec<f32>| {
            for &p in positions {
                let at = (frame * t + p as usize) * c;
                out.extend_from_slice(&latents[at..at + c]);
            }
        };
        let (mut contexts, mut values) = (Vec::new(), Vec::new());
        for e in 0..entries {
            let jitter = (rng.uniform() * (frames / entries).max(1) as f32) as usize;
            let frame = (e * frames / entries + jitter).min(frames - 1);
            gather(frame, &ctx, &mut contexts);
            gather(frame, &new, &mut values);
        }
        let ctx_len = ctx.len() * c;
        let scale = 1.0 / (key as f32).sqrt();
        let projection: Vec<f32> = (0..ctx_len * key).map(|_| rng.normal() * scale).collect();
        let projection = Tensor::from_vec(projection, (ctx_len, key), device)?;
        let contexts = Tensor::from_vec(contexts, (entries, ctx_len), device)?;
        let keys = contexts.matmul(&projection)?;
        let values = Tensor::from_vec(values, (entries, new.len() * c), device)?;
        for (part, tensor) in [
            ("projection", projection),
            ("keys", keys),
            ("values", values),
        ] {
            named(&map, &format!("outpaint.{name}.{part}"))?.set(&tensor)?;
        }
    }
    Ok(())
}
