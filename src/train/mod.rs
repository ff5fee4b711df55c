//! Training the default model from a `nacre datagen` dataset, in three stages:
//!
//! 1. **autoencoder**: encoder and decoder learn to compress frames to latent tokens and back;
//! 2. **dynamics**: with the encoder frozen and every frame's latent computed once, the dynamics
//!    and the audio head learn to predict the next latent and its sound from the last `context`
//!    latents, the action and the controls. Context latents get Gaussian noise of a random level
//!    (given to the network as an input), and the loss is taken over `unroll` steps in which the
//!    model's own predictions become its context: both keep long rollouts from drifting. It may
//!    first run free on its own predictions ([`TrainConfig::free_run`]), and part of each batch
//!    may come from standing still ([`TrainConfig::still_share`]) or show its context in a wrong
//!    light ([`TrainConfig::light_shift_share`]), and a fine-tune may be held to the model it
//!    starts from ([`TrainConfig::distill_weight`], and on the shifted samples toward its
//!    prediction in the true light, [`TrainConfig::distill_shifted_weight`]). The latent loss weighs each channel by its
//!    pixel cost ([`TrainConfig::latent_weighting`]);
//! 3. **decoder**: the decoder is fine-tuned to turn the dynamics' predicted latents (rather
//!    than only encoded ones) into the true frames;
//! 4. **outpainter** (when the model has one): it learns to draw the line of tokens beyond a
//!    frame's edge from the lines next to it, on single frames, after its codebook is set to
//!    k-means centres of the data's tokens.
//!
//! The files: `config` (what to train), `init` (where it starts), `run` and `losses` (the
//! steps), `checkpoint` (stop and `resume`), `log` and `plot` (the CSV log and loss curve),
//! `light` (the wrong light of `light_shift_share`), `data`, `motion` and `pca` (what is read
//! from the dataset), `optim` (AdamW).

pub(crate) mod checkpoint;
pub(crate) mod config;
pub(crate) mod data;
pub(crate) mod init;
pub(crate) mod light;
pub(crate) mod log;
pub(crate) mod losses;
pub(crate) mod motion;
pub(crate) mod optim;
pub(crate) mod pca;
pub(crate) mod plot;
pub(crate) mod run;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::default_model::config::{Config, GenerationConfig};
use crate::default_model::network::{DTYPE, Networks};
use crate::default_model::weights::save_varmap;
use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::rng::Gaussian;
use crate::spec::ChannelLayout;
use checkpoint::{CHECKPOINT_DIR, STATE_FILE, load_checkpoint, save_checkpoint};
pub use checkpoint::{TrainState, resumable_with};
pub use config::{Stage, StageConfig, TrainConfig};
use data::TrainingData;
pub use log::{LOG_FILE, PLOT_FILE};
use losses::{channel_weights, learning_rate};
use optim::{AdamW, AdamWParams};
use run::Run;

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

/// The run's clock and step counter, carried across stages and sessions.
struct Clock {
    started: Instant,
    elapsed_before: f64,
    done: u64,
}

impl Clock {
    /// Seconds of training over all sessions of the run.
    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.started.elapsed().as_secs_f64()
    }
}

/// The CSV log and the loss curves drawn from it.
struct Log {
    file: std::fs::File,
    curves: HashMap<String, Vec<(f64, f64)>>,
}

fn train_in_pool(
    data_dir: &Path,
    user_cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    stop: &AtomicBool,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<Outcome> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let device = Device::Cpu;
    let data = TrainingData::load(data_dir, &user_cfg.model)?;
    let cfg = &with_data_layout(user_cfg, &data, data_dir)?;
    let generation = generation_for(cfg)?;
    let varmap = VarMap::new();
    let nets = Networks::new(&cfg.model, VarBuilder::from_varmap(&varmap, DTYPE, &device))?;
    let ckpt = out.join(CHECKPOINT_DIR);
    checkpoint::recover(&ckpt)?;
    let (mut state, mut optimizer_state) = if resume {
        // The checkpoint sets every variable: no initialisation to do.
        let (state, optimizer) = load_checkpoint(&ckpt, cfg, &varmap)?;
        (state, Some(optimizer))
    } else if ckpt.join(STATE_FILE).exists() {
        return Err(Error::Other(format!(
            "{} already holds a checkpoint; pass --resume to continue it or choose another --out",
            out.display()
        )));
    } else {
        initialise(cfg, &varmap, &data, &device)?;
        (TrainState::new(), None)
    };
    let teacher = teacher_for(cfg, &device)?;
    let mut run = Run {
        cfg,
        generation,
        data,
        varmap,
        nets,
        device,
        latents: None,
        channel_weights: None,
        rng: Gaussian::new(cfg.seed),
        switches: None,
        teacher,
    };
    let done_before: u64 = Stage::ALL
        .iter()
        .take_while(|s| **s != state.stage)
        .map(|s| cfg.stage(*s).steps)
        .sum();
    // A resumed run logs again the steps after its checkpoint: the log is cut back to it.
    let mut log = Log {
        file: log::open_log(out, resume.then_some(done_before + state.step))?,
        curves: log::read_curves(&out.join(LOG_FILE)),
    };
    let mut clock = Clock {
        started: Instant::now(),
        elapsed_before: state.elapsed_s,
        done: done_before + state.step,
    };
    let first_stage = state.stage;
    for stage in Stage::ALL.into_iter().skip_while(|s| *s != first_stage) {
        prepare_stage(&mut run, stage, &state)?;
        let resumed = optimizer_state.is_some();
        let mut opt = optimizer_for(&run, stage, optimizer_state.take()).map_err(|e| {
            let path = out.join(CHECKPOINT_DIR).join("optimizer.safetensors");
            if resumed {
                Error::bad_file(&path, e.to_string())
            } else {
                e
            }
        })?;
        let ctx = StageContext {
            out,
            stop,
            clock: &mut clock,
            log: &mut log,
        };
        if train_stage(&mut run, stage, &mut state, &mut opt, ctx, progress)?
            == Outcome::Interrupted
        {
            return Ok(Outcome::Interrupted);
        }
        // The next stage starts at its step 0 with a fresh optimizer.
        if let Some(next) = Stage::ALL.iter().skip_while(|s| **s != stage).nth(1) {
            state.stage = *next;
            state.step = 0;
            state.elapsed_s = clock.elapsed();
            let fresh = AdamW::new(Vec::new(), AdamWParams::default())?;
            save_checkpoint(&ckpt, cfg, &run.generation, &state, &run.varmap, &fresh)?;
        }
    }
    log::plot_curves(out, &log.curves)?;
    write_model(out, user_cfg, cfg, &run)?;
    Ok(Outcome::Finished)
}

/// The frozen model that [`TrainConfig::distill_weight`] (and
/// [`TrainConfig::distill_shifted_weight`]) hold the fine-tuned dynamics to: the
/// `init_from` model, in networks of its own that no optimizer sees.
fn teacher_for(cfg: &TrainConfig, device: &Device) -> Result<Option<Networks>> {
    let Some(dir) = cfg
        .init_from
        .as_ref()
        .filter(|_| cfg.distill_weight > 0.0 || cfg.distill_shifted_weight > 0.0)
    else {
        return Ok(None);
    };
    let varmap = VarMap::new();
    let nets = Networks::new(&cfg.model, VarBuilder::from_varmap(&varmap, DTYPE, device))?;
    init::start_from_trained(&varmap, dir, &cfg.model, cfg.seed)?;
    Ok(Some(nets))
}

/// `cfg` with the data's action and control layout as the model's `spec`: the networks'
/// condition vectors are sized from it, and the trained model's `config.json` records it. A
/// config that names a layout of its own must name the data's.
fn with_data_layout(cfg: &TrainConfig, data: &TrainingData, dir: &Path) -> Result<TrainConfig> {
    let layout = ChannelLayout::of(&data.spec);
    if let Some(own) = &cfg.model.spec {
        let differences = own.differences(&layout);
        if !differences.is_empty() {
            return Err(Error::bad_file(
                dir.join(crate::dataset::MANIFEST_FILE),
                format!(
                    "the dataset's channels differ from the training config's `spec` \
                     (here: the config; there: the data):\n  {}",
                    differences.join("\n  ")
                ),
            ));
        }
    }
    let mut cfg = cfg.clone();
    cfg.model.spec = Some(layout);
    Ok(cfg)
}

/// How the trained model will generate: the config's own settings, or those of the model it
/// fine-tunes, or the defaults.
fn generation_for(cfg: &TrainConfig) -> Result<GenerationConfig> {
    let generation = match (&cfg.generation, &cfg.init_from) {
        (Some(own), _) => own.clone(),
        (None, Some(dir)) => Config::load(&dir.join("config.json"))?.1,
        (None, None) => GenerationConfig::default(),
    };
    cfg.model.validate_generation(&generation)?;
    Ok(generation)
}

/// Initialises every variable of a new run: from a trained model (`init_from`), or seeded and
/// then from the data (mean sound, principal components).
fn initialise(
    cfg: &TrainConfig,
    varmap: &VarMap,
    data: &TrainingData,
    device: &Device,
) -> Result<()> {
    match &cfg.init_from {
        Some(dir) => init::start_from_trained(varmap, dir, &cfg.model, cfg.seed),
        None => {
            init::reseed(varmap, cfg.seed)?;
            init::start_audio_at_mean(varmap, data)?;
            init::start_codec_at_pca(varmap, data, &cfg.model, device)
        }
    }
}

/// What a stage needs before its first step: the motion warp's start (dynamics of a new model)
/// and every frame's latent (every stage after the autoencoder).
fn prepare_stage(run: &mut Run, stage: Stage, state: &TrainState) -> Result<()> {
    let cfg = run.cfg;
    if stage == Stage::Dynamics
        && state.step == 0
        && cfg.model.motion_warp
        && cfg.init_from.is_none()
    {
        init::start_warp_at_codec(&run.varmap)?;
        init::start_motion_at_measured(&run.varmap, &run.data, &run.device)?;
    }
    if stage != Stage::Autoencoder && run.latents.is_none() && cfg.stage(stage).steps > state.step {
        run.latents = Some(run.encode_all()?);
        let decoder_skip = init::named(
            &run.varmap.data().lock().expect("varmap lock"),
            "decoder.skip.weight",
        )?
        .as_tensor()
        .detach();
        run.channel_weights = Some(channel_weights(&decoder_skip, cfg.latent_weighting)?);
    }
    if stage == Stage::Outpainter && state.step == 0 && cfg.outpainter.steps > 0 {
        let latents = run
            .latents
            .as_ref()
            .expect("latents computed for the outpainter");
        init::start_codebook_at_kmeans(&run.varmap, latents, cfg.seed, &run.device)?;
        init::start_bank_from_data(&run.varmap, latents, &cfg.model, cfg.seed, &run.device)?;
    }
    Ok(())
}

/// An optimizer over the variables `stage` trains, continuing from a checkpoint's moments.
fn optimizer_for(run: &Run, stage: Stage, saved: Option<HashMap<String, Tensor>>) -> Result<AdamW> {
    let vars: Vec<(String, Var)> = run
        .varmap
        .data()
        .lock()
        .expect("varmap lock")
        .iter()
        .filter(|(k, _)| stage.trains(k, run.cfg))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut opt = AdamW::new(
        vars,
        AdamWParams {
            lr: run.cfg.stage(stage).lr,
            ..AdamWParams::default()
        },
    )?;
    if let Some(s) = saved {
        opt.load_state(&s)?;
    }
    Ok(opt)
}

/// Where a stage writes and what it answers to.
struct StageContext<'a> {
    out: &'a Path,
    stop: &'a AtomicBool,
    clock: &'a mut Clock,
    log: &'a mut Log,
}

/// Runs `stage` from `state.step` to its end, logging and checkpointing; returns
/// [`Outcome::Interrupted`] (after a checkpoint) when `stop` is set.
fn train_stage(
    run: &mut Run,
    stage: Stage,
    state: &mut TrainState,
    opt: &mut AdamW,
    ctx: StageContext,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<Outcome> {
    let cfg = run.cfg;
    let sc = cfg.stage(stage);
    let ckpt = ctx.out.join(CHECKPOINT_DIR);
    let mut interval = (Instant::now(), 0u64);
    while state.step < sc.steps {
        if ctx.stop.load(Ordering::SeqCst) {
            state.elapsed_s = ctx.clock.elapsed();
            save_checkpoint(&ckpt, cfg, &run.generation, state, &run.varmap, opt)?;
            return Ok(Outcome::Interrupted);
        }
        // The batch for step `s` depends only on the seed, the stage and `s`, so a resumed
        // run sees exactly the batches it would have seen.
        run.rng = Gaussian::new(
            cfg.seed ^ ((stage as u64 + 1) << 56) ^ state.step.wrapping_mul(0x9E37_79B9),
        );
        opt.params.lr = learning_rate(sc, state.step);
        let (loss, parts) = match stage {
            Stage::Autoencoder => run.autoencoder_loss(sc.batch)?,
            Stage::Dynamics => run.dynamics_loss(sc.batch)?,
            Stage::Decoder => run.decoder_loss(sc.batch)?,
            Stage::Outpainter => run.outpainter_loss(sc.batch)?,
        };
        let loss_value = loss.to_scalar::<f32>()? as f64;
        if !loss_value.is_finite() {
            return Err(Error::Other(format!(
                "{} loss became {loss_value} at step {}; lower the learning rate",
                stage.name(),
                state.step
            )));
        }
        opt.step(&loss.backward()?)?;
        state.step += 1;
        ctx.clock.done += 1;
        interval.1 += sc.batch as u64;
        let samples_per_s = interval.1 as f64 / interval.0.elapsed().as_secs_f64().max(1e-9);
        progress(&Progress {
            stage,
            done: ctx.clock.done,
            total: cfg.total_steps(),
            loss: loss_value,
            samples_per_s,
        });
        if state.step.is_multiple_of(cfg.log_every) || state.step == sc.steps {
            let line = LogLine {
                stage,
                step: state.step,
                loss: loss_value,
                parts: &parts,
                lr: opt.params.lr,
                samples_per_s,
            };
            write_log_line(ctx.out, ctx.log, ctx.clock, &line)?;
            interval = (Instant::now(), 0);
        }
        if state.step.is_multiple_of(cfg.checkpoint_every) && state.step < sc.steps {
            state.elapsed_s = ctx.clock.elapsed();
            save_checkpoint(&ckpt, cfg, &run.generation, state, &run.varmap, opt)?;
            log::plot_curves(ctx.out, &ctx.log.curves)?;
        }
    }
    Ok(Outcome::Finished)
}

/// One line of the training log.
struct LogLine<'a> {
    stage: Stage,
    step: u64,
    loss: f64,
    parts: &'a [(&'static str, f64)],
    lr: f64,
    samples_per_s: f64,
}

/// A loss part for the log: five decimals, or three significant digits when smaller than that
/// shows (a distillation loss starts near 0).
fn part_value(v: f64) -> String {
    if v == 0.0 || v.abs() >= 1e-3 {
        format!("{v:.5}")
    } else {
        format!("{v:.3e}")
    }
}

fn write_log_line(out: &Path, log: &mut Log, clock: &Clock, line: &LogLine) -> Result<()> {
    let parts = line
        .parts
        .iter()
        .map(|(n, v)| format!("{n}={}", part_value(*v)))
        .collect::<Vec<_>>()
        .join(";");
    writeln!(
        log.file,
        "{},{},{},{:.6},{parts},{:.6e},{:.2},{:.1}",
        clock.done,
        line.stage.name(),
        line.step,
        line.loss,
        line.lr,
        line.samples_per_s,
        clock.elapsed()
    )
    .and_then(|()| log.file.flush())
    .map_err(|e| Error::io(out.join(LOG_FILE), e))?;
    log.curves
        .entry(line.stage.name().to_string())
        .or_default()
        .push((clock.done as f64, line.loss));
    Ok(())
}

/// Writes the trained model: `model.safetensors` and `config.json` (with the data's layout and
/// the generation settings). An untrained version is replaced by `seedS-stepsN`, after the
/// base's version and with a hash of the user's config for fine-tunings.
fn write_model(out: &Path, user_cfg: &TrainConfig, cfg: &TrainConfig, run: &Run) -> Result<()> {
    let mut model_cfg = cfg.model.clone();
    if model_cfg.version == "untrained" {
        let own = format!("seed{}-steps{}", cfg.seed, cfg.total_steps());
        model_cfg.version = match &cfg.init_from {
            // Fine-tunings of one base with the same step count differ in their config, so the
            // version ends with a hash of it (the first 8 hex digits of FNV-1a over its JSON).
            Some(dir) => {
                let config = serde_json::to_string(user_cfg).expect("config serialises");
                format!(
                    "{}+{own}-{:08x}",
                    Config::load(&dir.join("config.json"))?.0.version,
                    init::fnv(&config) >> 32
                )
            }
            None => own,
        };
    }
    save_varmap(&run.varmap, &out.join("model.safetensors"))?;
    write_atomic(
        &out.join("config.json"),
        model_cfg.to_json(&run.generation).as_bytes(),
    )
}
