//! Training the default model from a `nacre datagen` dataset, in three stages:
//!
//! 1. **autoencoder**: encoder and decoder learn to compress frames to latent tokens and back;
//! 2. **dynamics**: with the encoder frozen and every frame's latent computed once, the dynamics
//!    and the audio head learn to predict the next latent and its sound from the last `context`
//!    latents, the action and the controls. Context latents get Gaussian noise of a random level
//!    (given to the network as an input), and the loss is taken over `unroll` steps in which the
//!    model's own predictions become its context: both keep long rollouts from drifting. It may
//!    first run free on its own predictions ([`TrainConfig::free_run`]), and part of each batch
//!    may come from standing still ([`TrainConfig::still_share`]). The latent loss weighs each
//!    channel by its pixel cost ([`TrainConfig::latent_weighting`]);
//! 3. **decoder**: the decoder is fine-tuned to turn the dynamics' predicted latents (rather
//!    than only encoded ones) into the true frames.
//!
//! A checkpoint (weights, optimizer moments, position, config) is written atomically every
//! `checkpoint_every` steps and when training is stopped; `resume` continues from it exactly.

pub mod data;
pub mod motion;
pub mod optim;
pub mod pca;
pub mod plot;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::default_model::conditions::condition_len;
use crate::default_model::config::Config;
use crate::default_model::model::NoiseRng;
use crate::default_model::network::{DTYPE, Networks, Prediction};
use crate::default_model::sampler::{Sampler, SamplerCondition};
use crate::default_model::weights::{save_tensors, save_varmap};
use crate::error::{Error, Result};
use crate::session_file::write_atomic;
use data::TrainingData;
use optim::{AdamW, AdamWParams};

/// Steps, batch size and learning rate of one stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// Samples per step.
    pub batch: usize,
    /// Peak learning rate (after warm-up; cosine decay to a tenth).
    pub lr: f64,
}

/// Everything a training run needs besides the data (`--config FILE`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The model to train.
    pub model: Config,
    /// Seed of initialisation, batch sampling and noise.
    pub seed: u64,
    /// CPU threads (0 = all cores).
    pub threads: usize,
    /// Stage 1.
    pub autoencoder: StageConfig,
    /// Stage 2.
    pub dynamics: StageConfig,
    /// Steps of self-rollout per dynamics sample.
    pub unroll: usize,
    /// At most this many steps the dynamics first runs on its own predictions, without
    /// gradients, before the `unroll` steps whose loss is taken (drawn anew each step, 0 to
    /// this). The loss then teaches it to bring its own drifted, blurred context back to the
    /// true frames, which the `unroll` steps from true context alone rarely show it. The decoder
    /// stage fine-tunes on latents predicted the same way. 0 turns it off.
    #[serde(default)]
    pub free_run: usize,
    /// Share of each dynamics batch drawn from windows in which the player stands still through
    /// every predicted step. Standing still is about a tenth of recorded play, yet it is where a
    /// drifting model shows most: the picture should not change at all. 0 draws every window
    /// alike.
    #[serde(default)]
    pub still_share: f64,
    /// Start from this trained model's weights (a folder with `config.json` and
    /// `model.safetensors`, relative to where `nacre train` runs) instead of from scratch: for
    /// fine-tuning. Its config must build the same networks as `model`. The initialisations
    /// from the data (principal components, measured motion, mean sound) are then skipped, and
    /// so is copying the codec into the motion warp, which keeps the copy it was trained with.
    /// The result's version is the base's, then `+seedS-stepsN-` and 8 hex digits of a hash of
    /// this config, which tell fine-tunings with other configs apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<std::path::PathBuf>,
    /// How the dynamics' latent loss weighs the latent channels: each channel by its pixel cost
    /// (the squared norm of its column in the decoder's linear path) to this power, normalised
    /// to a mean of 1. 0 weighs every channel alike; 1 makes the loss the pixel MSE of the
    /// linear decode, so the coarse picture (one channel carries ~28 times the average pixel
    /// cost) counts for what it shows, rather than for 1/32 like the least predictable texture
    /// channel. See [`channel_weights`].
    #[serde(default)]
    pub latent_weighting: f64,
    /// The highest context-noise level drawn for dynamics samples, when below the model's
    /// `train_noise_max`. The model is still told each level as a share of `train_noise_max`,
    /// so a fine-tuning can train on lighter noise without changing what the levels it learned
    /// mean. Heavy noise is what teaches a model to pull drifted context back, but its large
    /// residuals dominate the loss, and the exact copy that standing still needs is learned
    /// from the lightly noised samples only. `None` draws up to `train_noise_max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_noise_max: Option<f32>,
    /// Train only the sampler (`model.sampler`) in the dynamics stage: the dynamics and the
    /// audio head keep the weights they start from, and the loss is the sampler's alone. For
    /// adding a sampler to a trained model; a step then costs a fraction of one that trains
    /// the dynamics (0.8 s against 4–7 s for the default model here), since nothing is
    /// differentiated through the transformer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sampler_only: bool,
    /// Weight of an energy-matching term next to the latent loss: the squared difference, per
    /// sample and latent channel, between the standard deviation over tokens of the prediction
    /// and of the true latent. Mean squared error alone rewards predicting less texture than
    /// there is wherever the texture is uncertain, and the model carries that shrinking over
    /// to standing still; this term prices the lost energy (the idea of the adjusted MSE of
    /// Subich et al. 2025 for weather models, per latent channel instead of per spherical
    /// harmonic). 0 turns it off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub energy_weight: f64,
    /// Weight of the sound loss next to the latent loss.
    pub audio_weight: f64,
    /// Stage 3.
    pub decoder: StageConfig,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// Steps between log lines.
    pub log_every: u64,
}

impl TrainConfig {
    /// A configuration that trains [`Config::tiny`] for a handful of steps (for tests).
    pub fn tiny() -> Self {
        let stage = |steps| StageConfig {
            steps,
            batch: 4,
            lr: 2e-3,
        };
        Self {
            model: Config::tiny(),
            seed: 1,
            threads: 1,
            autoencoder: stage(30),
            dynamics: stage(40),
            unroll: 2,
            free_run: 0,
            still_share: 0.0,
            init_from: None,
            latent_weighting: 1.0,
            context_noise_max: None,
            sampler_only: false,
            energy_weight: 0.0,
            audio_weight: 0.05,
            decoder: stage(10),
            checkpoint_every: 25,
            log_every: 1,
        }
    }

    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: TrainConfig = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not a valid training config: {e}")))?;
        cfg.validate()
            .map_err(|e| Error::bad_file(path, e.to_string()))?;
        Ok(cfg)
    }

    /// Checks the model config and that the training options fit it.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        if self.sampler_only && self.model.sampler.is_none() {
            return Err(Error::Other(
                "`sampler_only` trains the sampler, but the model config has no `sampler`".into(),
            ));
        }
        Ok(())
    }

    fn stage(&self, stage: Stage) -> &StageConfig {
        match stage {
            Stage::Autoencoder => &self.autoencoder,
            Stage::Dynamics => &self.dynamics,
            Stage::Decoder => &self.decoder,
        }
    }

    fn stage_mut(&mut self, stage: Stage) -> &mut StageConfig {
        match stage {
            Stage::Autoencoder => &mut self.autoencoder,
            Stage::Dynamics => &mut self.dynamics,
            Stage::Decoder => &mut self.decoder,
        }
    }

    /// Steps over all stages.
    pub fn total_steps(&self) -> u64 {
        self.autoencoder.steps + self.dynamics.steps + self.decoder.steps
    }
}

/// The three stages, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Encoder and decoder.
    Autoencoder,
    /// Dynamics and audio head.
    Dynamics,
    /// Decoder fine-tuning on predicted latents.
    Decoder,
}

impl Stage {
    const ALL: [Stage; 3] = [Stage::Autoencoder, Stage::Dynamics, Stage::Decoder];

    /// Name used in logs.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Autoencoder => "autoencoder",
            Stage::Dynamics => "dynamics",
            Stage::Decoder => "decoder",
        }
    }

    /// Whether this stage trains variable `var` (`sampler_only`: see
    /// [`TrainConfig::sampler_only`]).
    fn trains(self, var: &str, sampler_only: bool) -> bool {
        match self {
            Stage::Autoencoder => var.starts_with("encoder.") || var.starts_with("decoder."),
            Stage::Dynamics if sampler_only => var.starts_with("sampler."),
            Stage::Dynamics => {
                var.starts_with("dynamics.")
                    || var.starts_with("audio.")
                    || var.starts_with("sampler.")
            }
            Stage::Decoder => var.starts_with("decoder."),
        }
    }
}

/// Where a run stands; saved in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Current stage.
    pub stage: Stage,
    /// Steps done in the current stage.
    pub step: u64,
    /// Seconds of training so far, over all sessions.
    pub elapsed_s: f64,
    /// Step counts changed on resuming (see [`resumable_with`]), oldest first: a record of how
    /// this run differs from a run of its final config from scratch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule_changes: Vec<String>,
}

/// What a progress callback sees after each step.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Current stage.
    pub stage: Stage,
    /// Steps done over all stages.
    pub done: u64,
    /// Steps over all stages.
    pub total: u64,
    /// Loss of the last step.
    pub loss: f64,
    /// Samples per second over the last log interval.
    pub samples_per_s: f64,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// All stages done; the final weights are in the output folder.
    Finished,
    /// Stopped on request; a checkpoint was written and `resume` continues.
    Interrupted,
}

/// Files of a checkpoint folder.
const CHECKPOINT_DIR: &str = "checkpoint";
const STATE_FILE: &str = "train_state.json";
const TRAIN_CONFIG_FILE: &str = "train_config.json";
/// The training log, one line per `log_every` steps.
pub const LOG_FILE: &str = "train_log.csv";
/// The loss curve.
pub const PLOT_FILE: &str = "loss.png";

/// One predicted step of a training rollout.
struct RolloutStep {
    /// Dataset rows of the frames predicted.
    rows: Vec<usize>,
    /// The latents carried on as context (see [`Run::rollout`]).
    next: Tensor,
    /// The audio head's prediction.
    audio: Tensor,
    /// Everything the dynamics computed.
    prediction: Prediction,
}

struct Run<'a> {
    cfg: &'a TrainConfig,
    data: TrainingData,
    varmap: VarMap,
    nets: Networks,
    device: Device,
    latents: Option<Vec<f32>>,
    /// Per-channel weights `(1, 1, C)` of the latent loss, set with `latents`.
    channel_weights: Option<Tensor>,
    rng: NoiseRng,
}

/// Trains the default model on the dataset in `data_dir`, writing checkpoints, the log, the
/// loss curve and finally `model.safetensors` and `config.json` into `out`. Stops cleanly
/// (with a checkpoint) when `stop` becomes true.
pub fn train(
    data_dir: &Path,
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    stop: &AtomicBool,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<Outcome> {
    cfg.validate()?;
    let threads = if cfg.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cfg.threads
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Other(format!("thread pool: {e}")))?;
    pool.install(|| train_in_pool(data_dir, cfg, out, resume, stop, progress))
}

fn train_in_pool(
    data_dir: &Path,
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    stop: &AtomicBool,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<Outcome> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let device = Device::Cpu;
    let data = TrainingData::load(data_dir, &cfg.model)?;
    let cond_len = condition_len(&data.spec);
    let varmap = VarMap::new();
    let nets = Networks::new(
        &cfg.model,
        cond_len,
        VarBuilder::from_varmap(&varmap, DTYPE, &device),
    )?;
    let ckpt = out.join(CHECKPOINT_DIR);
    let mut state = TrainState {
        stage: Stage::Autoencoder,
        step: 0,
        elapsed_s: 0.0,
        schedule_changes: Vec::new(),
    };
    let mut optimizer_state = None;
    if resume {
        // The checkpoint sets every variable: no initialisation to do.
        let (s, opt) = load_checkpoint(&ckpt, cfg, &varmap, cond_len)?;
        state = s;
        optimizer_state = Some(opt);
    } else if ckpt.join(STATE_FILE).exists() {
        return Err(Error::Other(format!(
            "{} already holds a checkpoint; pass --resume to continue it or choose another --out",
            out.display()
        )));
    } else {
        match &cfg.init_from {
            Some(dir) => start_from_trained(&varmap, dir, &cfg.model, cond_len, cfg.seed)?,
            None => {
                reseed(&varmap, cfg.seed)?;
                start_audio_at_mean(&varmap, &data)?;
                start_codec_at_pca(&varmap, &data, &cfg.model, &device)?;
            }
        }
    }
    let mut run = Run {
        cfg,
        data,
        varmap,
        nets,
        device,
        latents: None,
        channel_weights: None,
        rng: NoiseRng::new(cfg.seed),
    };
    let mut log = open_log(out, resume)?;
    let mut curves = read_curves(&out.join(LOG_FILE));
    let started = Instant::now();
    let elapsed_before = state.elapsed_s;
    let done_before: u64 = Stage::ALL
        .iter()
        .take_while(|s| **s != state.stage)
        .map(|s| cfg.stage(*s).steps)
        .sum();
    let mut done = done_before + state.step;

    let first_stage = state.stage;
    for stage in Stage::ALL.into_iter().skip_while(|s| *s != first_stage) {
        let sc = cfg.stage(stage);
        if stage == Stage::Dynamics
            && state.step == 0
            && cfg.model.motion_warp
            && cfg.init_from.is_none()
        {
            start_warp_at_codec(&run.varmap)?;
            start_motion_at_measured(&run.varmap, &run.data, &run.device)?;
        }
        if stage != Stage::Autoencoder && run.latents.is_none() && sc.steps > state.step {
            run.latents = Some(run.encode_all()?);
            let decoder_skip = named(
                &run.varmap.data().lock().expect("varmap lock"),
                "decoder.skip.weight",
            )?
            .as_tensor()
            .detach();
            run.channel_weights = Some(channel_weights(&decoder_skip, cfg.latent_weighting)?);
        }
        let vars: Vec<(String, Var)> = run
            .varmap
            .data()
            .lock()
            .expect("varmap lock")
            .iter()
            .filter(|(k, _)| stage.trains(k, cfg.sampler_only))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut opt = AdamW::new(
            vars,
            AdamWParams {
                lr: sc.lr,
                ..AdamWParams::default()
            },
        )?;
        if let Some(s) = optimizer_state.take() {
            opt.load_state(&s)?;
        }
        let mut interval = (Instant::now(), 0u64);
        while state.step < sc.steps {
            if stop.load(Ordering::SeqCst) {
                state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
                save_checkpoint(&ckpt, cfg, &state, &run.varmap, &opt)?;
                return Ok(Outcome::Interrupted);
            }
            // The batch for step `s` depends only on the seed, the stage and `s`, so a resumed
            // run sees exactly the batches it would have seen.
            run.rng = NoiseRng::new(
                cfg.seed ^ ((stage as u64 + 1) << 56) ^ state.step.wrapping_mul(0x9E37_79B9),
            );
            opt.params.lr = learning_rate(sc, state.step);
            let (loss, parts) = match stage {
                Stage::Autoencoder => run.autoencoder_loss(sc.batch)?,
                Stage::Dynamics => run.dynamics_loss(sc.batch)?,
                Stage::Decoder => run.decoder_loss(sc.batch)?,
            };
            let loss_value = loss.to_scalar::<f32>()? as f64;
            if !loss_value.is_finite() {
                return Err(Error::Other(format!(
                    "{} loss became {loss_value} at step {}; lower the learning rate",
                    stage.name(),
                    state.step
                )));
            }
            let grads = loss.backward()?;
            opt.step(&grads)?;
            state.step += 1;
            done += 1;
            interval.1 += sc.batch as u64;
            let samples_per_s = interval.1 as f64 / interval.0.elapsed().as_secs_f64().max(1e-9);
            progress(&Progress {
                stage,
                done,
                total: cfg.total_steps(),
                loss: loss_value,
                samples_per_s,
            });
            if state.step.is_multiple_of(cfg.log_every) || state.step == sc.steps {
                let elapsed = elapsed_before + started.elapsed().as_secs_f64();
                writeln!(
                    log,
                    "{done},{},{},{loss_value:.6},{},{:.6e},{samples_per_s:.2},{elapsed:.1}",
                    stage.name(),
                    state.step,
                    parts
                        .iter()
                        .map(|(n, v)| format!("{n}={v:.5}"))
                        .collect::<Vec<_>>()
                        .join(";"),
                    opt.params.lr,
                )
                .map_err(|e| Error::io(out.join(LOG_FILE), e))?;
                log.flush().map_err(|e| Error::io(out.join(LOG_FILE), e))?;
                curves
                    .entry(stage.name().to_string())
                    .or_default()
                    .push((done as f64, loss_value));
                interval = (Instant::now(), 0);
            }
            if state.step.is_multiple_of(cfg.checkpoint_every) && state.step < sc.steps {
                state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
                save_checkpoint(&ckpt, cfg, &state, &run.varmap, &opt)?;
                plot_curves(out, &curves)?;
            }
        }
        // The next stage starts at its step 0 with a fresh optimizer.
        if let Some(next) = Stage::ALL.iter().skip_while(|s| **s != stage).nth(1) {
            state.stage = *next;
            state.step = 0;
            state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
            let fresh = AdamW::new(Vec::new(), AdamWParams::default())?;
            save_checkpoint(&ckpt, cfg, &state, &run.varmap, &fresh)?;
        }
    }
    plot_curves(out, &curves)?;
    let mut model_cfg = cfg.model.clone();
    if model_cfg.version == "untrained" {
        let own = format!("seed{}-steps{}", cfg.seed, cfg.total_steps());
        model_cfg.version = match &cfg.init_from {
            // Fine-tunings of one base with the same step count differ in their config, so the
            // version ends with a hash of it (the first 8 hex digits of FNV-1a over its JSON).
            Some(dir) => {
                let config = serde_json::to_string(cfg).expect("config serialises");
                format!(
                    "{}+{own}-{:08x}",
                    Config::load(&dir.join("config.json"))?.version,
                    fnv(&config) >> 32
                )
            }
            None => own,
        };
    }
    save_varmap(&run.varmap, &out.join("model.safetensors"))?;
    write_atomic(
        &out.join("config.json"),
        serde_json::to_string_pretty(&model_cfg)
            .expect("config serialises")
            .as_bytes(),
    )?;
    Ok(Outcome::Finished)
}

/// Redraws every randomly initialised variable from a generator seeded by `seed` and the
/// variable's name: linear weights N(0, 1/fan-in), biases zero, positions N(0, 0.02). candle's
/// CPU generator cannot be seeded, and a training run must be reproducible. Constant variables
/// (zero-initialised gates and outputs, layer-norm scales and shifts) are left as they are.
fn reseed(varmap: &VarMap, seed: u64) -> Result<()> {
    reseed_matching(varmap, seed, |_| true)
}

/// [`reseed`] for the variables whose names `matches` accepts.
fn reseed_matching(varmap: &VarMap, seed: u64, matches: impl Fn(&str) -> bool) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().filter(|n| matches(n)).collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let values: Vec<f32> = var.as_tensor().flatten_all()?.to_vec1()?;
        if values.iter().all(|&v| v == values[0]) {
            continue;
        }
        let mut rng = NoiseRng::new(seed ^ fnv(name));
        let fresh: Vec<f32> = if name.starts_with("dynamics.motion.") {
            // The motion head starts near the identity warp, but not at it: the interpolation's
            // gradient with respect to the shift vanishes at exactly zero.
            (0..values.len()).map(|_| rng.normal() * 1e-4).collect()
        } else if name.ends_with("pos") {
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
fn start_audio_at_mean(varmap: &VarMap, data: &TrainingData) -> Result<()> {
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
fn start_codec_at_pca(
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
/// from `seed`.
fn start_from_trained(
    varmap: &VarMap,
    dir: &Path,
    cfg: &Config,
    cond_len: usize,
    seed: u64,
) -> Result<()> {
    let trained = Config::load(&dir.join("config.json"))?;
    if trained.motion_warp != cfg.motion_warp {
        return Err(Error::bad_file(
            dir.join("config.json"),
            "the model to start from and the training config differ in `motion_warp`",
        ));
    }
    if cfg.sampler.is_some() && trained.sampler.is_none() {
        // A sampler added to a trained model starts fresh (seeded, with a zero output layer,
        // so the model starts as the trained one); everything else comes from the weights.
        let without = Config {
            sampler: None,
            ..cfg.clone()
        };
        set_from_weights(varmap, &dir.join("model.safetensors"), &without, cond_len)?;
        return reseed_matching(varmap, seed, |name| name.starts_with("sampler."));
    }
    set_from_weights(varmap, &dir.join("model.safetensors"), cfg, cond_len)
}

/// Sets the variables that `cfg` names from a weights file (names, shapes and dtypes checked
/// against `cfg`); any others, such as a sampler `cfg` leaves out, keep their values.
fn set_from_weights(varmap: &VarMap, weights: &Path, cfg: &Config, cond_len: usize) -> Result<()> {
    let tensors =
        crate::default_model::weights::read_checked(weights, cfg, cond_len, &Device::Cpu)?;
    let data = varmap.data().lock().expect("varmap lock");
    for (name, var) in data.iter() {
        if let Some(t) = tensors.get(name) {
            var.set(t)?;
        }
    }
    Ok(())
}

/// Copies the encoder's and decoder's linear paths into the motion warp's frozen codec
/// ([`MotionWarp`](crate::default_model::network::MotionWarp)) as the dynamics stage starts.
fn start_warp_at_codec(varmap: &VarMap) -> Result<()> {
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
fn start_motion_at_measured(varmap: &VarMap, data: &TrainingData, device: &Device) -> Result<()> {
    use crate::default_model::network::SHIFT_SCALE;
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
fn named<'a>(map: &'a HashMap<String, Var>, name: &str) -> Result<&'a Var> {
    map.get(name)
        .ok_or_else(|| Error::Other(format!("model has no `{name}`")))
}

/// FNV-1a hash of a string (stable across runs and platforms).
fn fnv(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x1000_0000_01b3)
    })
}

/// Warm-up over the first tenth (at most 200 steps), then cosine decay to a tenth of the peak.
fn learning_rate(sc: &StageConfig, step: u64) -> f64 {
    let warmup = (sc.steps / 10).clamp(1, 200);
    if step < warmup {
        return sc.lr * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (sc.steps - warmup).max(1) as f64;
    sc.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

fn mse(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    (a - b)?.sqr()?.mean_all()
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// Mean over samples and channels of the squared difference between the standard deviation
/// over tokens of `a` and of `b` (both `(batch, tokens, C)`). Centred, so that one offset added
/// to every token — which decodes to the same pattern in every patch — is not taken for detail.
fn energy_mismatch(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let std = |x: &Tensor| {
        let centred = x.broadcast_sub(&x.mean_keepdim(1)?)?;
        (centred.sqr()?.mean(1)? + 1e-6)?.sqrt()
    };
    (std(a)? - std(b)?)?.sqr()?.mean_all()
}

/// Weights `(1, 1, C)` of the latent channels for the dynamics loss, from the decoder's linear
/// path `decoder_skip` `(patch values, C)`: column `c`'s squared norm (the pixel error that a
/// unit error in channel `c` causes) to the power `power`, normalised to a mean of 1.
///
/// With `power` 1 the weighted latent MSE equals the linear decode's pixel MSE (times a
/// constant) because the columns start orthogonal (principal components); the dynamics then
/// spends its capacity on the coarse picture rather than on fine texture it cannot predict.
pub fn channel_weights(decoder_skip: &Tensor, power: f64) -> candle_core::Result<Tensor> {
    let cost = decoder_skip.sqr()?.sum(0)?;
    let weights = cost.powf(power)?;
    let weights = weights.broadcast_div(&weights.mean_all()?)?;
    weights.reshape((1, 1, ()))
}

/// Mean over samples, tokens and channels of `weights · (a − b)²` (`weights` `(1, 1, C)`).
fn weighted_mse(a: &Tensor, b: &Tensor, weights: &Tensor) -> candle_core::Result<Tensor> {
    (a - b)?.sqr()?.broadcast_mul(weights)?.mean_all()
}

/// The context-noise level of each dynamics sample: a quarter exactly at the level used when
/// generating, the rest uniform up to `train_noise_max` (or the lower `context_noise_max`).
fn context_noise_levels(cfg: &TrainConfig, batch: usize, rng: &mut NoiseRng) -> Vec<f32> {
    let max = cfg.model.train_noise_max;
    let max = cfg.context_noise_max.map_or(max, |m| m.min(max));
    (0..batch)
        .map(|i| {
            if i % 4 == 0 {
                cfg.model.inference_noise
            } else {
                rng.uniform() * max
            }
        })
        .collect()
}

impl Run<'_> {
    fn normal_tensor(&mut self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| self.rng.normal()).collect();
        Ok(Tensor::from_vec(v, shape, &self.device)?)
    }

    fn autoencoder_loss(&mut self, batch: usize) -> Result<(Tensor, Vec<(&'static str, f64)>)> {
        let rows = self.data.random_rows(batch, &mut self.rng);
        let x = self.data.pixels(&rows, &self.device)?;
        let z = self.nets.encoder.forward(&x)?;
        let loss = mse(&self.nets.decoder.forward(&z)?, &x)?;
        let v = loss.to_scalar::<f32>()? as f64;
        Ok((loss, vec![("pixel", v)]))
    }

    /// Latents of every row, computed with the current encoder in batches of 32.
    fn encode_all(&self) -> Result<Vec<f32>> {
        let n = self.data.frame_count();
        let mut out =
            Vec::with_capacity(n * self.cfg.model.tokens() * self.cfg.model.latent_channels);
        for start in (0..n).step_by(32) {
            let rows: Vec<usize> = (start..(start + 32).min(n)).collect();
            let x = self.data.pixels(&rows, &self.device)?;
            let z = self.nets.encoder.forward(&x)?.detach();
            out.extend(z.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    fn latents_at(&self, rows: &[usize]) -> Result<Tensor> {
        let m = &self.cfg.model;
        let per = m.tokens() * m.latent_channels;
        let cache = self.latents.as_ref().expect("latents computed");
        let mut v = Vec::with_capacity(rows.len() * per);
        for &r in rows {
            v.extend_from_slice(&cache[r * per..(r + 1) * per]);
        }
        Ok(Tensor::from_vec(
            v,
            (rows.len(), m.tokens(), m.latent_channels),
            &self.device,
        )?)
    }

    /// Rolls the dynamics forward from true context latents with context noise `sigma` (one
    /// level per sample): first a random number (up to `free_run`) of steps without gradients,
    /// then `unroll` steps. Steps without gradients continue from the model's output as it
    /// generates (the mean plus a sample of the sampler, when it has one); steps with gradients
    /// from the mean, through which the latent loss of later steps reaches earlier ones.
    fn rollout(&mut self, batch: usize, sigma: &[f32], grad: bool) -> Result<Vec<RolloutStep>> {
        let m = &self.cfg.model;
        let (k, unroll) = (m.context, self.cfg.unroll.max(1));
        let free = if self.cfg.free_run > 0 {
            ((self.rng.uniform() * (self.cfg.free_run + 1) as f32) as usize).min(self.cfg.free_run)
        } else {
            0
        };
        let mut starts = self
            .data
            .random_windows(batch, k + free + unroll, &mut self.rng)?;
        if grad && self.cfg.still_share > 0.0 {
            let still = (batch as f64 * self.cfg.still_share).round() as usize;
            for start in starts.iter_mut().take(still) {
                match self
                    .data
                    .random_still_window(k + free + unroll, k, &mut self.rng)?
                {
                    Some(s) => *start = s,
                    None => break,
                }
            }
        }
        let mut context: Vec<Tensor> = (0..k)
            .map(|j| {
                let rows: Vec<usize> = starts.iter().map(|s| s + j).collect();
                self.latents_at(&rows)
            })
            .collect::<Result<_>>()?;
        let sigma_t = Tensor::from_vec(sigma.to_vec(), (batch, 1, 1, 1), &self.device)?;
        let relative: Vec<f32> = sigma.iter().map(|s| s / m.train_noise_max).collect();
        let mut steps = Vec::with_capacity(unroll);
        for r in 0..free + unroll {
            let rows: Vec<usize> = starts.iter().map(|s| s + k + r).collect();
            let stacked = Tensor::stack(&context, 1)?;
            let noise = self.normal_tensor(stacked.dims())?;
            let noisy = (stacked + noise.broadcast_mul(&sigma_t)?)?;
            let cond = self.data.conditions(&rows, &relative, &self.device)?;
            let prediction = self.nets.dynamics.forward(&noisy, &cond)?;
            let audio = self
                .nets
                .audio
                .forward(&prediction.pooled, &prediction.cond)?;
            let next = if grad && r >= free {
                prediction.mean.clone()
            } else {
                match self.nets.sampler.clone() {
                    Some(sampler) => {
                        let noise = self.normal_tensor(prediction.mean.dims())?;
                        let condition = prediction.sampler_condition();
                        (&prediction.mean + sampler.sample(&noise, &condition)?)?.detach()
                    }
                    None => prediction.mean.detach(),
                }
            };
            context.remove(0);
            context.push(next.clone());
            if r >= free {
                steps.push(RolloutStep {
                    rows,
                    next,
                    audio,
                    prediction,
                });
            }
        }
        Ok(steps)
    }

    fn dynamics_loss(&mut self, batch: usize) -> Result<(Tensor, Vec<(&'static str, f64)>)> {
        let sigma = context_noise_levels(self.cfg, batch, &mut self.rng);
        let steps = self.rollout(batch, &sigma, true)?;
        let weights = self
            .channel_weights
            .clone()
            .expect("channel weights set with the latents");
        let zero = Tensor::zeros((), DTYPE, &self.device)?;
        let (mut latent, mut audio, mut sampler) = (zero.clone(), zero.clone(), zero.clone());
        let mut energy = zero;
        let head = self.nets.sampler.clone();
        for step in &steps {
            let truth = self.latents_at(&step.rows)?;
            latent = (latent + weighted_mse(&step.next, &truth, &weights)?)?;
            if self.cfg.energy_weight > 0.0 {
                energy = (energy + energy_mismatch(&step.next, &truth)?)?;
            }
            let target = self.data.audio_targets(&step.rows, &self.device)?;
            audio = (audio + mse(&step.audio, &target)?)?;
            if let Some(head) = &head {
                sampler = (sampler + self.sampler_loss(head, step, &truth)?)?;
            }
        }
        let n = steps.len() as f64;
        let (latent, audio, sampler) = ((latent / n)?, (audio / n)?, (sampler / n)?);
        let energy = (energy / n)?;
        let loss = if self.cfg.sampler_only {
            sampler.clone()
        } else {
            let loss = (&latent + (&audio * self.cfg.audio_weight)?)?;
            ((loss + &sampler)? + (&energy * self.cfg.energy_weight)?)?
        };
        let mut parts = vec![
            ("latent", latent.to_scalar::<f32>()? as f64),
            ("audio", audio.to_scalar::<f32>()? as f64),
        ];
        if head.is_some() {
            parts.push(("sampler", sampler.to_scalar::<f32>()? as f64));
        }
        if self.cfg.energy_weight > 0.0 {
            parts.push(("energy", energy.to_scalar::<f32>()? as f64));
        }
        Ok((loss, parts))
    }

    /// The sampler's flow-matching loss for one step: its condition is detached, so the
    /// sampler learns the distribution of what the dynamics' mean leaves and the dynamics keeps
    /// predicting the mean.
    fn sampler_loss(
        &mut self,
        head: &Sampler,
        step: &RolloutStep,
        truth: &Tensor,
    ) -> Result<Tensor> {
        let p = &step.prediction;
        let (mean, hidden, base) = (p.mean.detach(), p.hidden.detach(), p.base.detach());
        let residual = (truth - &mean)?;
        let noise = self.normal_tensor(residual.dims())?;
        let (b, t, _) = residual.dims3()?;
        let tau: Vec<f32> = (0..b * t)
            .map(|_| self.rng.uniform().min(0.999_999))
            .collect();
        let tau = Tensor::from_vec(tau, (b, t, 1), &self.device)?;
        let condition = SamplerCondition {
            hidden: &hidden,
            mean: &mean,
            base: &base,
        };
        Ok(head.loss(&residual, &noise, &tau, &condition)?)
    }

    fn decoder_loss(&mut self, batch: usize) -> Result<(Tensor, Vec<(&'static str, f64)>)> {
        let sigma = vec![self.cfg.model.inference_noise; batch];
        let steps = self.rollout(batch, &sigma, false)?;
        let RolloutStep {
            rows,
            next: predicted,
            ..
        } = steps.last().expect("at least one step");
        let truth = self.data.pixels(rows, &self.device)?;
        let from_predicted = mse(&self.nets.decoder.forward(predicted)?, &truth)?;
        let from_encoded = mse(&self.nets.decoder.forward(&self.latents_at(rows)?)?, &truth)?;
        let loss = ((&from_predicted + &from_encoded)? * 0.5)?;
        let parts = vec![
            ("predicted", from_predicted.to_scalar::<f32>()? as f64),
            ("encoded", from_encoded.to_scalar::<f32>()? as f64),
        ];
        Ok((loss, parts))
    }
}

fn save_checkpoint(
    dir: &Path,
    cfg: &TrainConfig,
    state: &TrainState,
    varmap: &VarMap,
    opt: &AdamW,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    save_varmap(varmap, &dir.join("model.safetensors"))?;
    save_tensors(&opt.state()?, &dir.join("optimizer.safetensors"))?;
    write_atomic(
        &dir.join(TRAIN_CONFIG_FILE),
        serde_json::to_string_pretty(cfg)
            .expect("serialises")
            .as_bytes(),
    )?;
    write_atomic(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&cfg.model)
            .expect("serialises")
            .as_bytes(),
    )?;
    // The state goes last: a checkpoint counts only once its state file names it.
    write_atomic(
        &dir.join(STATE_FILE),
        serde_json::to_string_pretty(state)
            .expect("serialises")
            .as_bytes(),
    )
}

/// Whether a checkpoint made with `saved` may continue under `cfg`, and what changed.
///
/// Everything must be the same except the thread count and the step counts of the current stage
/// and the stages after it, which may change (to shorten or extend a run that turned out slower or faster than
/// planned); the current stage must not end before the step already reached. Learning-rate
/// schedules follow the new counts from the next step on, so such a run is close to, but not
/// bit for bit, a run of `cfg` from scratch: the changes are returned to be recorded.
pub fn resumable_with(
    saved: &TrainConfig,
    cfg: &TrainConfig,
    state: &TrainState,
) -> std::result::Result<Vec<String>, String> {
    let mut adjusted = saved.clone();
    // How many threads run the training is the machine's business, not the run's.
    adjusted.threads = cfg.threads;
    let mut changes = Vec::new();
    for stage in Stage::ALL.into_iter().skip_while(|s| *s != state.stage) {
        let (old, new) = (saved.stage(stage).steps, cfg.stage(stage).steps);
        if old != new {
            changes.push(format!(
                "{} stage: {new} steps instead of {old}, from its step {}",
                stage.name(),
                if stage == state.stage { state.step } else { 0 }
            ));
            adjusted.stage_mut(stage).steps = new;
        }
    }
    if &adjusted != cfg {
        return Err(
            "the checkpoint was made with a different training config; resume with the \
                    same --config (only the step counts of the current and later stages may change)"
                .into(),
        );
    }
    if cfg.stage(state.stage).steps < state.step {
        return Err(format!(
            "the checkpoint is at step {} of the {} stage, past the {} steps the new config asks for",
            state.step,
            state.stage.name(),
            cfg.stage(state.stage).steps
        ));
    }
    Ok(changes)
}

fn load_checkpoint(
    dir: &Path,
    cfg: &TrainConfig,
    varmap: &VarMap,
    cond_len: usize,
) -> Result<(TrainState, HashMap<String, Tensor>)> {
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state: TrainState = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(&state_path, format!("not a training state: {e}")))?;
    let saved_cfg = TrainConfig::load(&dir.join(TRAIN_CONFIG_FILE))?;
    let mut state = state;
    let changes = resumable_with(&saved_cfg, cfg, &state)
        .map_err(|why| Error::bad_file(dir.join(TRAIN_CONFIG_FILE), why))?;
    for change in changes {
        eprintln!("resuming with a changed schedule: {change}");
        state.schedule_changes.push(change);
    }
    set_from_weights(varmap, &dir.join("model.safetensors"), &cfg.model, cond_len)?;
    let opt_path = dir.join("optimizer.safetensors");
    let opt = candle_core::safetensors::load(&opt_path, &Device::Cpu)
        .map_err(|e| Error::bad_file(&opt_path, e.to_string()))?;
    Ok((state, opt))
}

fn open_log(out: &Path, resume: bool) -> Result<std::fs::File> {
    let path = out.join(LOG_FILE);
    let fresh = !resume || !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(!fresh)
        .write(true)
        .truncate(fresh)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    if fresh {
        writeln!(
            f,
            "step,stage,stage_step,loss,parts,lr,samples_per_s,elapsed_s"
        )
        .map_err(|e| Error::io(&path, e))?;
    }
    Ok(f)
}

/// Loss curves from an existing log (so a resumed run's plot covers the whole run).
fn read_curves(path: &Path) -> HashMap<String, Vec<(f64, f64)>> {
    let mut curves: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(path) {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if let (Some(step), Some(stage), Some(loss)) = (f.first(), f.get(1), f.get(3))
                && let (Ok(s), Ok(l)) = (step.parse(), loss.parse())
            {
                curves.entry(stage.to_string()).or_default().push((s, l));
            }
        }
    }
    curves
}

fn plot_curves(out: &Path, curves: &HashMap<String, Vec<(f64, f64)>>) -> Result<()> {
    let series: Vec<(String, Vec<(f64, f64)>)> = Stage::ALL
        .iter()
        .filter_map(|s| {
            curves
                .get(s.name())
                .map(|c| (s.name().to_string(), c.clone()))
        })
        .collect();
    plot::save_loss_plot(&out.join(PLOT_FILE), &series)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stage: Stage, step: u64) -> TrainState {
        TrainState {
            stage,
            step,
            elapsed_s: 0.0,
            schedule_changes: Vec::new(),
        }
    }

    #[test]
    fn energy_mismatch_prices_lost_texture_not_its_placement() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let truth = Tensor::randn(0f32, 1.0, (2, 16, 4), &dev)?;
        let value = |t: Tensor| t.to_scalar::<f32>();
        // Tokens in another order carry the same energy: no penalty (MSE would give one).
        let reversed = Tensor::cat(
            &(0..16)
                .rev()
                .map(|i| truth.narrow(1, i, 1))
                .collect::<candle_core::Result<Vec<_>>>()?,
            1,
        )?;
        assert!(value(energy_mismatch(&reversed, &truth)?)? < 1e-8);
        // An offset shared by every token is no detail: a flat frame plus one is still flat.
        let flat = Tensor::zeros((2, 16, 4), DTYPE, &dev)?;
        let offset = (&flat + 3.0)?;
        assert!(value(energy_mismatch(&offset, &flat)?)? < 1e-6);
        // A shrunk copy is penalised, and the gradient asks for more energy.
        let scale = candle_core::Var::new(&[0.8f32], &dev)?;
        let shrunk = truth.broadcast_mul(scale.as_tensor())?;
        let loss = energy_mismatch(&shrunk, &truth)?;
        assert!(value(loss.clone())? > 1e-3);
        let grad: Vec<f32> = loss.backward()?.get(&scale).unwrap().to_vec1()?;
        assert!(
            grad[0] < 0.0,
            "gradient {grad:?} should ask for a larger scale"
        );
        Ok(())
    }

    /// With orthogonal decoder columns (as principal components start), power 1 makes the
    /// weighted latent MSE proportional to the pixel MSE of the linear decode; power 0 weighs
    /// the channels alike.
    #[test]
    fn pixel_weighted_latent_loss_is_the_linear_decodes_pixel_loss() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        // Two orthogonal columns of squared norm 9 and 1 in a 3-value patch.
        let skip = Tensor::new(&[[3f32, 0.0], [0.0, 0.6], [0.0, 0.8]], &dev)?;
        let w = channel_weights(&skip, 1.0)?;
        assert_eq!(w.dims(), &[1, 1, 2]);
        assert_eq!(w.flatten_all()?.to_vec1::<f32>()?, vec![1.8, 0.2]);
        let even = channel_weights(&skip, 0.0)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(even, vec![1.0, 1.0]);

        let a = Tensor::new(&[[[0.5f32, -1.0], [2.0, 0.0]]], &dev)?;
        let b = Tensor::new(&[[[0.0f32, 1.0], [1.0, 0.5]]], &dev)?;
        let latent = weighted_mse(&a, &b, &w)?.to_scalar::<f32>()?;
        let decode = |t: &Tensor| t.broadcast_matmul(&skip.t()?);
        let pixel = mse(&decode(&a)?, &decode(&b)?)?.to_scalar::<f32>()?;
        // Per token, pixel MSE = Σ_c |col c|² e_c² / 3 values and latent = Σ_c w_c e_c² / 2
        // channels with w_c = |col c|² / 5 (the mean cost): the ratio is 5 · 2 / 3.
        assert!(
            (pixel / latent - 10.0 / 3.0).abs() < 1e-5,
            "{pixel} / {latent}"
        );
        Ok(())
    }

    #[test]
    fn context_noise_stays_below_its_bound() {
        let mut cfg = TrainConfig::tiny();
        cfg.model.train_noise_max = 0.7;
        cfg.model.inference_noise = 0.1;
        let mut rng = NoiseRng::new(3);
        let full = context_noise_levels(&cfg, 400, &mut rng);
        assert!(full.iter().all(|&s| (0.0..=0.7).contains(&s)));
        assert!(full.iter().any(|&s| s > 0.5), "draws use the whole range");
        cfg.context_noise_max = Some(0.2);
        let light = context_noise_levels(&cfg, 400, &mut rng);
        assert!(light.iter().all(|&s| (0.0..=0.2).contains(&s)));
        assert!(
            light.iter().step_by(4).all(|&s| s == 0.1),
            "a quarter at the generating level"
        );
    }

    #[test]
    fn resuming_may_change_only_the_remaining_step_counts() {
        let saved = TrainConfig::tiny();
        assert_eq!(
            resumable_with(&saved, &saved, &at(Stage::Dynamics, 5)),
            Ok(vec![])
        );

        // Shorter dynamics and longer decoder stages, from the middle of the dynamics stage.
        let mut shorter = saved.clone();
        shorter.dynamics.steps = 20;
        shorter.decoder.steps = 15;
        let changes = resumable_with(&saved, &shorter, &at(Stage::Dynamics, 5)).unwrap();
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes[0].contains("dynamics stage: 20 steps instead of 40, from its step 5"));

        // Not below the step already reached, not a finished stage, nothing else.
        assert!(resumable_with(&saved, &shorter, &at(Stage::Dynamics, 25)).is_err());
        let mut ae = saved.clone();
        ae.autoencoder.steps = 10;
        assert!(resumable_with(&saved, &ae, &at(Stage::Dynamics, 5)).is_err());
        let mut lr = saved.clone();
        lr.dynamics.lr *= 2.0;
        assert!(resumable_with(&saved, &lr, &at(Stage::Dynamics, 5)).is_err());
    }
}
