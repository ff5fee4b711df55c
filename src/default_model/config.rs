//! Configuration of the default model, stored as `config.json` next to its weights.

use serde::{Deserialize, Serialize};

use super::sampler::SamplerConfig;
use crate::error::{Error, Result};

/// Every size and constant of the default model. Training writes it next to the weights; loading
/// reads it back, and the weights must match it tensor by tensor.
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
    /// Context-noise level used when generating (the "stabilisation level").
    pub inference_noise: f32,
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
    /// that the action predicts (see [`MotionWarp`](super::network::MotionWarp)), and the
    /// transformer predicts only what that leaves. Absent in older configs, which mean `false`.
    #[serde(default)]
    pub motion_warp: bool,
    /// The flow-matching head that samples what the deterministic prediction leaves out (see
    /// [`Sampler`](super::sampler::Sampler)). Absent in older configs, which predict the mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<SamplerConfig>,
    /// Texture transport: latent channels from this one on (the fine detail; the encoder's
    /// channels are ordered by variance, coarse first) are not taken from the network's
    /// prediction but carried over from the last frame, moved by the motion warp
    /// ([`MotionWarp::transport`](super::network::MotionWarp::transport)); the prediction fills
    /// them in only at the pixels the warp brings in from beyond the frame's edge. The
    /// channels before it come from the network everywhere. Why: a mean-squared-error prediction
    /// answers detail it cannot predict with its mean and so fades it a little at every step
    /// (a gain of 0.7–0.93 per step on these channels in every trained model; see the model
    /// card), while moving what is already there keeps it. Needs `motion_warp`. Generation only:
    /// training does not read it. Absent in older configs, which take every channel from the
    /// network. With a `sampler`, only these channels take its draw, so the new content at the
    /// edge gets drawn detail and the coarse channels stay the mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub texture_transport_from: Option<usize>,
}

/// Version of [`Config`] this build reads.
pub const CONFIG_FORMAT: u32 = 1;

impl Default for Config {
    /// The configuration `configs/default.json` trains: 128×128 output, 8×8 patches (a 16×16
    /// token grid), width 128, motion warp. (The shipped weights' `config.json` adds texture
    /// transport and a sampler, which fine-tunings of this configuration train or set.)
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
            inference_noise: 0.1,
            fps: 20.0,
            sample_rate: 16_000,
            samples_per_frame: 800,
            audio_bands: 24,
            audio_subframes: 4,
            motion_warp: true,
            sampler: None,
            texture_transport_from: None,
        }
    }
}

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

    /// Checks that the sizes fit together.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Other(format!("invalid model config: {m}")));
        if self.format_version != CONFIG_FORMAT {
            return bad(format!(
                "format_version {} (this build reads {CONFIG_FORMAT})",
                self.format_version
            ));
        }
        if self.patch == 0
            || !self.width.is_multiple_of(self.patch)
            || !self.height.is_multiple_of(self.patch)
        {
            return bad(format!(
                "{}x{} is not a multiple of the patch size {}",
                self.width, self.height, self.patch
            ));
        }
        if self.heads == 0 || !self.dim.is_multiple_of(self.heads) {
            return bad(format!(
                "dim {} is not divisible by {} heads",
                self.dim, self.heads
            ));
        }
        if let Some(s) = &self.sampler {
            if s.width == 0 || s.layers == 0 || s.steps == 0 {
                return bad(format!(
                    "the sampler needs a width, layers and steps above 0 (got {}, {}, {})",
                    s.width, s.layers, s.steps
                ));
            }
            if !(s.temperature.is_finite() && s.temperature >= 0.0) {
                return bad(format!(
                    "the sampler's temperature {} is not a number of 0 or more",
                    s.temperature
                ));
            }
        }
        if let Some(first) = self.texture_transport_from {
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
        if self.context == 0 {
            return bad("context must be at least 1".into());
        }
        if self.audio_subframes == 0 || !self.samples_per_frame.is_multiple_of(self.audio_subframes)
        {
            return bad(format!(
                "{} samples per frame do not split into {} subframes",
                self.samples_per_frame, self.audio_subframes
            ));
        }
        Ok(())
    }

    /// Reads and validates a config file.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: Config = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not a valid model config: {e}")))?;
        cfg.validate()
            .map_err(|e| Error::bad_file(path, e.to_string()))?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sampler_without_steps_or_with_a_negative_temperature_is_refused() {
        let with = |sampler: SamplerConfig| Config {
            sampler: Some(sampler),
            ..Config::tiny()
        };
        assert!(with(SamplerConfig::default()).validate().is_ok());
        let refusal = |sampler: SamplerConfig| with(sampler).validate().unwrap_err().to_string();
        let no_steps = refusal(SamplerConfig {
            steps: 0,
            ..SamplerConfig::default()
        });
        assert!(no_steps.contains("steps"), "{no_steps}");
        let negative = refusal(SamplerConfig {
            temperature: -1.0,
            ..SamplerConfig::default()
        });
        assert!(negative.contains("temperature"), "{negative}");
        // Configs without a sampler write no `sampler` key, so older readers still load them.
        let json = serde_json::to_string(&Config::tiny()).unwrap();
        assert!(!json.contains("sampler"));
    }

    #[test]
    fn texture_transport_needs_the_warp_and_a_channel_to_carry() {
        let with = |first: usize, motion_warp: bool| Config {
            texture_transport_from: Some(first),
            motion_warp,
            ..Config::tiny()
        };
        assert!(with(3, true).validate().is_ok());
        let no_warp = with(3, false).validate().unwrap_err().to_string();
        assert!(no_warp.contains("motion_warp"), "{no_warp}");
        let too_far = with(8, true).validate().unwrap_err().to_string();
        assert!(too_far.contains("no channel"), "{too_far}");
        let json = serde_json::to_string(&Config::tiny()).unwrap();
        assert!(!json.contains("texture_transport_from"));
    }
}
