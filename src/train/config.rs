//! The training configuration (`nacre train --config FILE`): the model to train, how it will
//! generate, and the steps, batches and learning rates of the three stages.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::default_model::config::{Config, GenerationConfig};
use crate::error::{Error, Result};

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

impl StageConfig {
    /// A stage that does not run.
    pub fn none() -> Self {
        Self {
            steps: 0,
            batch: 1,
            lr: 0.0,
        }
    }

    fn is_none(&self) -> bool {
        self.steps == 0
    }
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// Everything a training run needs besides the data (`--config FILE`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The model to train: its architecture.
    pub model: Config,
    /// How the trained model generates, written into its `config.json`. Training itself uses
    /// its `inference_noise`: a quarter of the dynamics samples see context noise at exactly
    /// that level, and the decoder stage fine-tunes on latents predicted with it. `None` takes
    /// the settings of the model named by `init_from`, or the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationConfig>,
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
    /// Share of each dynamics batch drawn from windows whose predicted frames fall within 15
    /// frames of a director switch (time of day, weather, biome, an event), after the
    /// standing-still share. Switches happen about four times a minute in recorded play, so a
    /// model trained on windows drawn alike sees few and answers them too weakly. 0 draws every
    /// window alike.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub director_share: f64,
    /// Share of dynamics samples whose context frames are shown in a wrong light (a random
    /// gain, tint and haze, the same on each context frame; see `train::light`) while the
    /// targets stay the true frames, so the model learns to bring its light back to what the
    /// controls and the scene say rather than copy its context's. 0 shows true context only.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub light_shift_share: f64,
    /// Keep the motion warp's head (`dynamics.motion.weight`, how far each action moves and
    /// zooms the picture) as the model it fine-tunes has it. Fine-tuning on other aims can
    /// otherwise teach a turn a little zoom, which brings new rows in at the top and bottom of
    /// every turning frame and makes the place memory count a turn as walking.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub freeze_motion: bool,
    /// Weight of a loss that keeps the dynamics' prediction, on the samples whose context is
    /// shown in its true light, where the model named by `init_from` (the teacher, kept
    /// frozen) puts it for the same input. Light-shift fine-tuning alone makes the model trust
    /// its context less everywhere and costs next-frame accuracy; this holds the plain
    /// prediction while the shifted samples teach the light. 0 (the default) turns it off;
    /// above 0 it needs `init_from`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub distill_weight: f64,
    /// Weight of a loss that draws the prediction for a sample shown in a wrong light (see
    /// `light_shift_share`) toward the teacher's prediction for the same window in its *true*
    /// light, the teacher rolling its own context forward over the unrolled steps. The light is
    /// then taught from a target as smooth as the one `distill_weight` holds the other samples
    /// to, instead of from the true frame's unpredictable detail. 0 (the default) turns it off;
    /// above 0 it needs `init_from` and a `light_shift_share` above 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub distill_shifted_weight: f64,
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
    /// channel. See `train::losses::channel_weights`.
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
    /// Weight of the sound loss next to the latent loss.
    pub audio_weight: f64,
    /// Stage 3.
    pub decoder: StageConfig,
    /// Stage 4: the outpainter (`model.outpainter`) learns to draw the line of tokens beyond a
    /// frame's edge from the lines next to it, on single frames (the rest of the model frozen).
    /// Absent in older configs, which have no such stage.
    #[serde(
        default = "StageConfig::none",
        skip_serializing_if = "StageConfig::is_none"
    )]
    pub outpainter: StageConfig,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// Steps between log lines.
    pub log_every: u64,
}

/// The motion warp's head, which [`TrainConfig::freeze_motion`] keeps as it is.
const MOTION_HEAD: &str = "dynamics.motion.weight";

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
            generation: None,
            seed: 1,
            threads: 1,
            autoencoder: stage(30),
            dynamics: stage(40),
            unroll: 2,
            free_run: 0,
            still_share: 0.0,
            director_share: 0.0,
            light_shift_share: 0.0,
            freeze_motion: false,
            distill_weight: 0.0,
            distill_shifted_weight: 0.0,
            init_from: None,
            latent_weighting: 1.0,
            context_noise_max: None,
            sampler_only: false,
            audio_weight: 0.05,
            decoder: stage(10),
            outpainter: StageConfig::none(),
            checkpoint_every: 25,
            log_every: 1,
        }
    }

    /// Reads a config file. Files written before the model's generation settings had a
    /// section of their own keep them in `model`; they are read into `generation`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let bad = |e: serde_json::Error| {
            Error::bad_file(path, format!("not a valid training config: {e}"))
        };
        let mut value: serde_json::Value = serde_json::from_str(&text).map_err(bad)?;
        let legacy = value
            .get("model")
            .is_some_and(|m| m.get("inference_noise").is_some());
        if legacy && let Some(model) = value.get_mut("model") {
            let (model_cfg, generation) = Config::from_json(model.take()).map_err(bad)?;
            *model = serde_json::to_value(model_cfg).map_err(bad)?;
            if value.get("generation").is_none() {
                value["generation"] = serde_json::to_value(generation).map_err(bad)?;
            }
        }
        let cfg: TrainConfig = serde_json::from_value(value).map_err(bad)?;
        cfg.validate()
            .map_err(|e| Error::bad_file(path, e.to_string()))?;
        Ok(cfg)
    }

    /// Checks the model config and that the training options fit it.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        if let Some(generation) = &self.generation {
            self.model.validate_generation(generation)?;
        }
        if self.outpainter.steps > 0 && self.model.outpainter.is_none() {
            return Err(Error::Other(
                "the outpainter stage trains `model.outpainter`, but the model config has none"
                    .into(),
            ));
        }
        for (name, stage) in [
            ("autoencoder", &self.autoencoder),
            ("dynamics", &self.dynamics),
            ("decoder", &self.decoder),
            ("outpainter", &self.outpainter),
        ] {
            if stage.steps > 0 && stage.batch == 0 {
                return Err(Error::Other(format!("the {name} stage has a batch of 0")));
            }
            if !(stage.lr.is_finite() && stage.lr >= 0.0) {
                return Err(Error::Other(format!(
                    "the {name} stage's learning rate {} is not a number of 0 or more",
                    stage.lr
                )));
            }
        }
        if self.checkpoint_every == 0 || self.log_every == 0 {
            return Err(Error::Other(
                "checkpoint_every and log_every must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.director_share)
            || self.still_share + self.director_share > 1.0
        {
            return Err(Error::Other(format!(
                "director_share {} is outside 0 to 1, or with still_share {} above 1",
                self.director_share, self.still_share
            )));
        }
        if !(0.0..=1.0).contains(&self.light_shift_share) {
            return Err(Error::Other(format!(
                "light_shift_share {} is outside 0 to 1",
                self.light_shift_share
            )));
        }
        for (name, weight) in [
            ("distill_weight", self.distill_weight),
            ("distill_shifted_weight", self.distill_shifted_weight),
        ] {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(Error::Other(format!(
                    "{name} {weight} is not a number of 0 or more"
                )));
            }
        }
        if self.distill_weight > 0.0 && self.init_from.is_none() {
            return Err(Error::Other(
                "distill_weight keeps the prediction of the model fine-tuned from, but the \
                 config has no `init_from`"
                    .into(),
            ));
        }
        if self.distill_shifted_weight > 0.0
            && (self.init_from.is_none() || self.light_shift_share <= 0.0)
        {
            return Err(Error::Other(
                "distill_shifted_weight draws the light-shifted samples toward the prediction \
                 of the model fine-tuned from, so it needs `init_from` and a \
                 `light_shift_share` above 0"
                    .into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.still_share) {
            return Err(Error::Other(format!(
                "still_share {} is outside 0 to 1",
                self.still_share
            )));
        }
        if self.sampler_only && self.model.sampler.is_none() {
            return Err(Error::Other(
                "`sampler_only` trains the sampler, but the model config has no `sampler`".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn stage(&self, stage: Stage) -> &StageConfig {
        match stage {
            Stage::Autoencoder => &self.autoencoder,
            Stage::Dynamics => &self.dynamics,
            Stage::Decoder => &self.decoder,
            Stage::Outpainter => &self.outpainter,
        }
    }

    pub(crate) fn stage_mut(&mut self, stage: Stage) -> &mut StageConfig {
        match stage {
            Stage::Autoencoder => &mut self.autoencoder,
            Stage::Dynamics => &mut self.dynamics,
            Stage::Decoder => &mut self.decoder,
            Stage::Outpainter => &mut self.outpainter,
        }
    }

    /// Steps over all stages.
    pub fn total_steps(&self) -> u64 {
        self.autoencoder.steps + self.dynamics.steps + self.decoder.steps + self.outpainter.steps
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
    /// The outpainter, on single frames.
    Outpainter,
}

impl Stage {
    pub(crate) const ALL: [Stage; 4] = [
        Stage::Autoencoder,
        Stage::Dynamics,
        Stage::Decoder,
        Stage::Outpainter,
    ];

    /// Name used in logs.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Autoencoder => "autoencoder",
            Stage::Dynamics => "dynamics",
            Stage::Decoder => "decoder",
            Stage::Outpainter => "outpainter",
        }
    }

    /// Whether this stage of a run of `cfg` trains variable `var` (see
    /// [`TrainConfig::sampler_only`] and [`TrainConfig::freeze_motion`]).
    pub(crate) fn trains(self, var: &str, cfg: &TrainConfig) -> bool {
        match self {
            Stage::Autoencoder => var.starts_with("encoder.") || var.starts_with("decoder."),
            Stage::Dynamics if cfg.sampler_only => var.starts_with("sampler."),
            Stage::Dynamics if cfg.freeze_motion && var == MOTION_HEAD => false,
            Stage::Dynamics => {
                var.starts_with("dynamics.")
                    || var.starts_with("audio.")
                    || var.starts_with("sampler.")
            }
            Stage::Decoder => var.starts_with("decoder."),
            // The codebook (k-means centres of the data's tokens) and the retrieval banks (lines of
            // the data) are set once, not trained.
            Stage::Outpainter => {
                var.starts_with("outpaint.")
                    && !["codebook", "projection", "keys", "values"]
                        .iter()
                        .any(|part| var.ends_with(part))
            }
        }
    }
}
