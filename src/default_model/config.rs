//! Configuration of the default model, stored as `config.json` next to its weights: the
//! architecture ([`Config`], what the weights were trained as) and how it generates
//! ([`GenerationConfig`], the file's `generation` section, settings that need no retraining).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::memory::MemoryConfig;
use super::outpaint::{OutpaintHead, OutpainterConfig};
use crate::error::{Error, Result};
use crate::spec::ChannelLayout;

/// Every size and constant of the default model's networks. Training writes it next to the
/// weights; loading reads it back, and the weights must match it tensor by tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format of this file, for clear errors when it changes.
    pub format_version: u32,
    /// Model name recorded in saved sessions.
    pub name: String,
    /// Weights version recorded in saved sessions; training sets it to a hash of the run.
    pub version: String,
    /// Output width (pixels).
    pub width: usize,
    /// Output height (pixels).
    pub height: usize,
    /// Side of the square pixel patch that one token stands for.
    pub patch: usize,
    /// Channels of the latent of one token.
    pub latent_channels: usize,
    /// Width of the transformer.
    pub dim: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP hidden width as a multiple of `dim`.
    pub mlp_ratio: usize,
    /// Transformer blocks of the frame encoder.
    pub encoder_layers: usize,
    /// Transformer blocks of the frame decoder.
    pub decoder_layers: usize,
    /// Transformer blocks of the dynamics.
    pub dynamics_layers: usize,
    /// Past latent frames the dynamics sees.
    pub context: usize,
    /// Largest context-noise level used in training (noise augmentation).
    pub train_noise_max: f32,
    /// Frames per second of the world it was trained on.
    pub fps: f32,
    /// Audio sample rate.
    pub sample_rate: u32,
    /// Audio samples per frame (`sample_rate / fps`).
    pub samples_per_frame: usize,
    /// Frequency bands of the generated sound's spectrum.
    pub audio_bands: usize,
    /// Spectra per frame (each covers `samples_per_frame / audio_subframes` samples).
    pub audio_subframes: usize,
    /// Motion-compensated dynamics: the last frame is first moved by a global shift and zoom
    /// that the action predicts (see [`MotionWarp`](super::warp::MotionWarp)), and the
    /// transformer predicts only what that leaves. Absent in older configs, which mean `false`.
    #[serde(default)]
    pub motion_warp: bool,
    /// The flow-matching head that samples what the deterministic prediction leaves out (see
    /// [`Sampler`](super::sampler::Sampler)). Absent in older configs, which predict the mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<SamplerSize>,
    /// The outpainter that draws what comes into view (see
    /// [`Outpainter`](super::outpaint::Outpainter)). Absent in older configs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outpainter: Option<OutpainterConfig>,
    /// The action channels and director controls the model was trained with (the dataset's),
    /// written by `nacre train`. Folders written before it existed have none and get the
    /// [first-person layout](crate::spec::first_person) they were all trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ChannelLayout>,
}

/// Size of the [`Sampler`](super::sampler::Sampler) head (`sampler` in `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerSize {
    /// Width of the head's hidden layers.
    pub width: usize,
    /// Hidden layers (each a linear map and a SiLU).
    pub layers: usize,
}

impl Default for SamplerSize {
    fn default() -> Self {
        Self {
            width: 256,
            layers: 3,
        }
    }
}

/// How a trained model generates: settings that change what it draws without retraining (the
/// `generation` section of `config.json`). Training copies them from its config's own
/// `generation` section, or from the model it fine-tunes, into the folder it writes, so a model
/// folder always says how it is meant to be played.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationConfig {
    /// Context-noise level used when generating (the "stabilisation level"), in the units of
    /// [`Config::train_noise_max`].
    pub inference_noise: f32,
    /// Texture transport: latent channels from this one on (the fine detail; the encoder's
    /// channels are ordered by variance, coarse first) are not taken from the network's
    /// prediction but carried over from the last frame, moved by the motion warp
    /// ([`MotionWarp::transport`](super::warp::MotionWarp::transport)); the prediction fills
    /// them in only at the pixels the warp brings in from beyond the frame's edge. The
    /// channels before it come from the network everywhere. Why: a mean-squared-error prediction
    /// answers detail it cannot predict with its mean and so fades it a little at every step
    /// (a gain of 0.7–0.93 per step on these channels in every trained model; see the model
    /// card), while moving what is already there keeps it. Needs `motion_warp`. With a
    /// `sampler`, only these channels take its draw, so the new content at the edge gets drawn
    /// detail and the coarse channels stay the mean. `None` takes every channel from the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub texture_transport_from: Option<usize>,
    /// Euler steps of the sampler from noise to sample.
    #[serde(default = "default_sampler_steps")]
    pub sampler_steps: usize,
    /// Scale of the sampler's starting noise: 1 samples the learned distribution, lower values
    /// trade variety for a calmer picture, 0 gives the flow's deterministic path from zero.
    #[serde(default = "default_sampler_temperature")]
    pub sampler_temperature: f32,
    /// Passes the outpainter draws a line of tokens in (more: each token sees more of the
    /// others' draws, at more cost).
    #[serde(default = "default_outpaint_passes")]
    pub outpaint_passes: usize,
    /// Temperature of the outpainter's draws: 1 samples its distribution, lower values keep to
    /// its likeliest tokens.
    #[serde(default = "default_sampler_temperature")]
    pub outpaint_temperature: f32,
    /// A place memory, so that what the player saw comes back when it comes back into view
    /// (see [`PlaceMemory`](super::memory::PlaceMemory)). Needs texture transport. `None`
    /// remembers nothing beyond the context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryConfig>,
}

fn default_sampler_steps() -> usize {
    4
}

fn default_sampler_temperature() -> f32 {
    1.0
}

fn default_outpaint_passes() -> usize {
    2
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            inference_noise: 0.1,
            texture_transport_from: None,
            sampler_steps: default_sampler_steps(),
            sampler_temperature: default_sampler_temperature(),
            outpaint_passes: default_outpaint_passes(),
            outpaint_temperature: default_sampler_temperature(),
            memory: None,
        }
    }
}

/// Version of [`Config`] this build reads.
pub const CONFIG_FORMAT: u32 = 1;

impl Default for Config {
    /// The configuration `configs/default.json` trains: 128×128 output, 8×8 patches (a 16×16
    /// token grid), width 128, motion warp.
    fn default() -> Self {
        Self {
            format_version: CONFIG_FORMAT,
            name: "nacre-default".into(),
            version: "untrained".into(),
            width: 128,
            height: 128,
            patch: 8,
            latent_channels: 32,
            dim: 128,
            heads: 4,
            mlp_ratio: 4,
            encoder_layers: 2,
            decoder_layers: 3,
            dynamics_layers: 4,
            context: 2,
            train_noise_max: 0.7,
            fps: 20.0,
            sample_rate: 16_000,
            samples_per_frame: 800,
            audio_bands: 24,
            audio_subframes: 4,
            motion_warp: true,
            sampler: None,
            outpainter: None,
            spec: None,
        }
    }
}

/// Largest sizes a config may ask for: far above any model this crate trains, low enough that a
/// corrupt or hostile `config.json` cannot make loading allocate without bound.
const MAX_SIDE: usize = 4096;
const MAX_WIDTH: usize = 8192;
const MAX_LAYERS: usize = 256;
const MAX_CONTEXT: usize = 64;

impl Config {
    /// A very small configuration for tests: 32×32 output, 8×8 patches, width 32.
    pub fn tiny() -> Self {
        Self {
            width: 32,
            height: 32,
            dim: 32,
            heads: 2,
            mlp_ratio: 2,
            encoder_layers: 1,
            decoder_layers: 1,
            dynamics_layers: 1,
            latent_channels: 8,
            ..Self::default()
        }
    }

    /// Tokens per frame.
    pub fn tokens(&self) -> usize {
        (self.width / self.patch) * (self.height / self.patch)
    }

    /// Values in one pixel patch (RGB).
    pub fn patch_values(&self) -> usize {
        self.patch * self.patch * 3
    }

    /// The action channels and director controls: the stored ones, or the first-person layout
    /// for folders written before they were stored.
    pub fn layout(&self) -> ChannelLayout {
        self.spec
            .clone()
            .unwrap_or_else(ChannelLayout::first_person)
    }

    /// Checks that the sizes fit together and stay within bounds.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Other(format!("invalid model config: {m}")));
        if self.format_version != CONFIG_FORMAT {
            return bad(format!(
                "format_version {} (this build reads {CONFIG_FORMAT})",
                self.format_version
            ));
        }
        for (name, value, max) in [
            ("width", self.width, MAX_SIDE),
            ("height", self.height, MAX_SIDE),
            ("patch", self.patch, MAX_SIDE),
            ("latent_channels", self.latent_channels, MAX_WIDTH),
            ("dim", self.dim, MAX_WIDTH),
            ("heads", self.heads, MAX_WIDTH),
            ("mlp_ratio", self.mlp_ratio, 64),
            ("context", self.context, MAX_CONTEXT),
            ("audio_bands", self.audio_bands, 1024),
            ("audio_subframes", self.audio_subframes, 1024),
            ("samples_per_frame", self.samples_per_frame, 1 << 20),
        ] {
            if value == 0 || value > max {
                return bad(format!("{name} {value} is outside 1..={max}"));
            }
        }
        for (name, value) in [
            ("encoder_layers", self.encoder_layers),
            ("decoder_layers", self.decoder_layers),
            ("dynamics_layers", self.dynamics_layers),
        ] {
            if value > MAX_LAYERS {
                return bad(format!("{name} {value} is above {MAX_LAYERS}"));
            }
        }
        if !self.width.is_multiple_of(self.patch) || !self.height.is_multiple_of(self.patch) {
            return bad(format!(
                "{}x{} is not a multiple of the patch size {}",
                self.width, self.height, self.patch
            ));
        }
        if !self.dim.is_multiple_of(self.heads) {
            return bad(format!(
                "dim {} is not divisible by {} heads",
                self.dim, self.heads
            ));
        }
        if !(self.fps.is_finite() && self.fps >= 1.0 && self.fps <= 1000.0) {
            return bad(format!("fps {} is outside 1 to 1000", self.fps));
        }
        if !(self.train_noise_max.is_finite() && self.train_noise_max >= 0.0) {
            return bad(format!(
                "train_noise_max {} is not a number of 0 or more",
                self.train_noise_max
            ));
        }
        if self.sample_rate == 0 || self.sample_rate > 384_000 {
            return bad(format!(
                "sample_rate {} is outside 1..=384000",
                self.sample_rate
            ));
        }
        if !self.samples_per_frame.is_multiple_of(self.audio_subframes)
            || self.samples_per_frame / self.audio_subframes < 2
        {
            return bad(format!(
                "{} samples per frame do not split into {} subframes of at least 2 samples",
                self.samples_per_frame, self.audio_subframes
            ));
        }
        if self.audio_bands > self.samples_per_frame / self.audio_subframes / 2 {
            return bad(format!(
                "{} audio bands are more than a subframe of {} samples can resolve",
                self.audio_bands,
                self.samples_per_frame / self.audio_subframes
            ));
        }
        if let Some(s) = &self.sampler
            && (s.width == 0 || s.width > MAX_WIDTH || s.layers == 0 || s.layers > MAX_LAYERS)
        {
            return bad(format!(
                "the sampler needs a width in 1..={MAX_WIDTH} and layers in 1..={MAX_LAYERS} \
                 (got {}, {})",
                s.width, s.layers
            ));
        }
        if let Some(o) = &self.outpainter {
            let size = match o.head {
                OutpaintHead::Codebook { size } => size,
                OutpaintHead::Flow { width, layers } => width.min(layers),
                OutpaintHead::Retrieval { entries, key } => entries.min(key),
            };
            if o.dim == 0
                || o.dim > MAX_WIDTH
                || o.heads == 0
                || !o.dim.is_multiple_of(o.heads)
                || o.layers > MAX_LAYERS
                || o.context == 0
                || o.context > 64
                || size == 0
                || size > 1 << 16
            {
                return bad(format!("invalid outpainter {o:?}"));
            }
        }
        if let Some(layout) = &self.spec
            && layout.actions.is_empty()
        {
            return bad("the spec declares no action channels".into());
        }
        if let Some(problem) = self.spec.as_ref().and_then(|l| l.problem()) {
            return bad(format!("spec: {problem}"));
        }
        Ok(())
    }

    /// Checks `generation` against this architecture.
    pub fn validate_generation(&self, generation: &GenerationConfig) -> Result<()> {
        let bad = |m: String| Err(Error::Other(format!("invalid generation settings: {m}")));
        let g = generation;
        for (name, value) in [
            ("inference_noise", g.inference_noise),
            ("sampler_temperature", g.sampler_temperature),
            ("outpaint_temperature", g.outpaint_temperature),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return bad(format!("{name} {value} is not a number of 0 or more"));
            }
        }
        if g.sampler_steps == 0 || g.sampler_steps > 1000 {
            return bad(format!(
                "sampler_steps {} is outside 1..=1000",
                g.sampler_steps
            ));
        }
        if self.outpainter.is_some() && g.memory.is_none() {
            return bad("the outpainter draws into the place memory: it needs `memory`".into());
        }
        if g.outpaint_passes == 0 || g.outpaint_passes > 64 {
            return bad(format!(
                "outpaint_passes {} is outside 1..=64",
                g.outpaint_passes
            ));
        }
        if let Some(m) = &g.memory {
            if g.texture_transport_from.is_none() {
                return bad(
                    "a place memory needs texture transport (texture_transport_from)".into(),
                );
            }
            if m.width > MAX_SIDE * 4 || m.height > MAX_SIDE * 4 {
                return bad(format!(
                    "a place memory of {}x{} is too large",
                    m.width, m.height
                ));
            }
            if let Some(problem) = m.quilt.as_ref().and_then(|q| q.problem()) {
                return bad(problem);
            }
            if !(m.forget_after.is_finite() && m.forget_after >= 0.0) {
                return bad(format!(
                    "the memory's forget_after {} is not a number of 0 or more",
                    m.forget_after
                ));
            }
        }
        if let Some(first) = g.texture_transport_from {
            if !self.motion_warp {
                return bad(
                    "texture_transport_from needs motion_warp (the warp moves the texture)".into(),
                );
            }
            if first >= self.latent_channels {
                return bad(format!(
                    "texture_transport_from {first} leaves no channel to transport ({} latent channels)",
                    self.latent_channels
                ));
            }
        }
        Ok(())
    }

    /// Reads and validates a model folder's `config.json`: the architecture and its
    /// `generation` section (files written before the sections were split keep their
    /// generation settings at the top level; they are read the same way).
    pub fn load(path: &Path) -> Result<(Self, GenerationConfig)> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not a valid model config: {e}")))?;
        let (cfg, generation) = Self::from_json(value)
            .map_err(|e| Error::bad_file(path, format!("not a valid model config: {e}")))?;
        cfg.validate()
            .and_then(|()| cfg.validate_generation(&generation))
            .map_err(|e| Error::bad_file(path, e.to_string()))?;
        Ok((cfg, generation))
    }

    /// The architecture and generation settings of a parsed `config.json` (see
    /// [`load`](Self::load)).
    pub fn from_json(mut value: serde_json::Value) -> serde_json::Result<(Self, GenerationConfig)> {
        let generation = split_generation(&mut value);
        Ok((
            serde_json::from_value(value)?,
            serde_json::from_value(generation)?,
        ))
    }

    /// `config.json` for this architecture and `generation`.
    pub fn to_json(&self, generation: &GenerationConfig) -> String {
        let mut value = serde_json::to_value(self).expect("config serialises");
        value["generation"] = serde_json::to_value(generation).expect("settings serialise");
        serde_json::to_string_pretty(&value).expect("config serialises")
    }
}

/// Takes the generation settings out of a `config.json` value: its `generation` section, or
/// the top-level keys that held them before the split (`inference_noise`,
/// `texture_transport_from`, and `steps` and `temperature` inside `sampler`). Whatever is left
/// is the architecture.
fn split_generation(value: &mut serde_json::Value) -> serde_json::Value {
    let Some(map) = value.as_object_mut() else {
        return serde_json::Value::Null;
    };
    if let Some(generation) = map.remove("generation") {
        return generation;
    }
    let mut generation = serde_json::Map::new();
    for key in ["inference_noise", "texture_transport_from"] {
        if let Some(v) = map.remove(key) {
            generation.insert(key.into(), v);
        }
    }
    if let Some(sampler) = map.get_mut("sampler").and_then(|s| s.as_object_mut()) {
        for (old, new) in [
            ("steps", "sampler_steps"),
            ("temperature", "sampler_temperature"),
        ] {
            if let Some(v) = sampler.remove(old) {
                generation.insert(new.into(), v);
            }
        }
    }
    generation
        .entry("inference_noise")
        .or_insert(serde_json::json!(
            GenerationConfig::default().inference_noise
        ));
    serde_json::Value::Object(generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_settings_are_checked_against_the_architecture() {
        let cfg = Config::tiny();
        let refusal = |g: GenerationConfig, cfg: &Config| {
            cfg.validate_generation(&g).unwrap_err().to_string()
        };
        let no_steps = refusal(
            GenerationConfig {
                sampler_steps: 0,
                ..GenerationConfig::default()
            },
            &cfg,
        );
        assert!(no_steps.contains("sampler_steps"), "{no_steps}");
        let negative = refusal(
            GenerationConfig {
                sampler_temperature: -1.0,
                ..GenerationConfig::default()
            },
            &cfg,
        );
        assert!(negative.contains("temperature"), "{negative}");
        let transport = |first| GenerationConfig {
            texture_transport_from: Some(first),
            ..GenerationConfig::default()
        };
        assert!(cfg.validate_generation(&transport(3)).is_ok());
        let no_warp = Config {
            motion_warp: false,
            ..Config::tiny()
        };
        assert!(refusal(transport(3), &no_warp).contains("motion_warp"));
        assert!(refusal(transport(8), &cfg).contains("no channel"));
    }

    #[test]
    fn sizes_that_would_allocate_without_bound_or_divide_by_zero_are_refused() {
        for bad in [
            Config {
                encoder_layers: 4_294_967_297,
                ..Config::tiny()
            },
            Config {
                audio_bands: 0,
                ..Config::tiny()
            },
            Config {
                audio_bands: 1000,
                ..Config::tiny()
            },
            Config {
                fps: 1e-30,
                ..Config::tiny()
            },
            Config {
                patch: 0,
                ..Config::tiny()
            },
            Config {
                context: 0,
                ..Config::tiny()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?} was accepted");
        }
        assert!(Config::tiny().validate().is_ok());
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn files_from_before_the_split_read_the_same() {
        let old = serde_json::json!({
            "format_version": 1, "name": "n", "version": "v", "width": 32, "height": 32,
            "patch": 8, "latent_channels": 8, "dim": 32, "heads": 2, "mlp_ratio": 2,
            "encoder_layers": 1, "decoder_layers": 1, "dynamics_layers": 1, "context": 2,
            "train_noise_max": 0.7, "inference_noise": 0.0, "fps": 20.0, "sample_rate": 16000,
            "samples_per_frame": 800, "audio_bands": 24, "audio_subframes": 4,
            "motion_warp": true,
            "sampler": {"width": 64, "layers": 2, "steps": 3, "temperature": 0.5},
            "texture_transport_from": 1
        });
        let (cfg, generation) = Config::from_json(old).unwrap();
        assert_eq!(
            cfg.sampler,
            Some(SamplerSize {
                width: 64,
                layers: 2
            })
        );
        assert_eq!(
            generation,
            GenerationConfig {
                inference_noise: 0.0,
                texture_transport_from: Some(1),
                sampler_steps: 3,
                sampler_temperature: 0.5,
                ..GenerationConfig::default()
            }
        );
        // Written back, it has the new layout and reads back the same.
        let json: serde_json::Value = serde_json::from_str(&cfg.to_json(&generation)).unwrap();
        assert!(json.get("inference_noise").is_none());
        assert_eq!(Config::from_json(json).unwrap(), (cfg, generation));
        // Configs without a sampler, spec or transport write none of those keys.
        let json = Config::tiny().to_json(&GenerationConfig::default());
        for key in ["\"sampler\"", "\"spec\"", "texture_transport_from"] {
            assert!(!json.contains(key), "{key} in {json}");
        }
    }
}
