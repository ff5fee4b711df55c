//! The default model's networks: a frame encoder and decoder between pixels and a grid of latent
//! tokens, the dynamics that predicts the next latent frame from the last few, the action and the
//! director controls, and the audio head that predicts the frame's sound spectrum.
//!
//! ```text
//! pixels (3×H×W) ─patchify─▶ tokens (T×p²·3) ─Encoder─▶ latent (T×C)
//! latent t ─MotionWarp(action)─▶ latent t moved by a global shift and zoom (optional)
//! latents t-k+1..t (+ noise σ), moved latent ─Dynamics(action, controls, σ)─▶ mean, hidden
//! hidden, mean, moved latent, noise ─Sampler─▶ latent t+1 = mean + sampled residual (optional)
//! latent t+1 ─Decoder─▶ tokens ─unpatchify─▶ pixels t+1
//! hidden, condition ─AudioHead─▶ log band energies of frame t+1's sound
//! ```

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};

use super::blocks::{Block, Norm, block_flops};
use super::conditions::{action_len, condition_len};
use super::config::{Config, GenerationConfig};
use super::outpaint::Outpainter;
pub use super::patches::{patchify, unpatchify};
use super::sampler::{Sampler, SamplerCondition};
use super::warp::MotionWarp;

fn positions(cfg: &Config, vb: &VarBuilder) -> Result<Tensor> {
    vb.get_with_hints(
        (1, cfg.tokens(), cfg.dim),
        "pos",
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        },
    )
}

/// Pixels to latent tokens: a linear projection of each patch (which alone is a PCA-like code
/// and makes training start fast) plus a transformer's correction that sees all patches.
#[derive(Clone, Debug)]
pub struct Encoder {
    embed: Linear,
    pos: Tensor,
    blocks: Vec<Block>,
    norm: Norm,
    out: Linear,
    skip: Linear,
    patch: usize,
}

impl Encoder {
    /// Weights under `vb`: `embed`, `pos`, `blocks.N`, `norm`, `out`, `skip`.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let blocks = (0..cfg.encoder_layers)
            .map(|i| {
                Block::new(
                    cfg.dim,
                    cfg.heads,
                    cfg.mlp_ratio,
                    0,
                    vb.pp(format!("blocks.{i}")),
                )
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            embed: linear(cfg.patch_values(), cfg.dim, vb.pp("embed"))?,
            pos: positions(cfg, &vb)?,
            blocks,
            norm: Norm::new(cfg.dim, 1e-6, vb.pp("norm"))?,
            out: linear(cfg.dim, cfg.latent_channels, vb.pp("out"))?,
            skip: linear(cfg.patch_values(), cfg.latent_channels, vb.pp("skip"))?,
            patch: cfg.patch,
        })
    }

    /// `pixels`: `(batch, 3, H, W)` in [-1, 1]. Returns `(batch, tokens, C)`; training starts the
    /// linear path as a whitened principal-component code, so latents are near unit variance.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let patches = patchify(pixels, self.patch)?;
        let mut x = crate::nn::linear(&self.embed, &patches)?.broadcast_add(&self.pos)?;
        for block in &self.blocks {
            x = block.forward(&x, None)?;
        }
        crate::nn::linear(&self.out, &self.norm.forward(&x)?)?
            + crate::nn::linear(&self.skip, &patches)?
    }
}

/// Latent tokens to pixels: a linear map of each token to its patch plus a transformer's
/// correction that sees all tokens.
#[derive(Clone, Debug)]
pub struct Decoder {
    embed: Linear,
    pos: Tensor,
    blocks: Vec<Block>,
    norm: Norm,
    out: Linear,
    skip: Linear,
    patch: usize,
    height: usize,
    width: usize,
}

impl Decoder {
    /// Weights under `vb`: `embed`, `pos`, `blocks.N`, `norm`, `out`, `skip`.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let blocks = (0..cfg.decoder_layers)
            .map(|i| {
                Block::new(
                    cfg.dim,
                    cfg.heads,
                    cfg.mlp_ratio,
                    0,
                    vb.pp(format!("blocks.{i}")),
                )
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            embed: linear(cfg.latent_channels, cfg.dim, vb.pp("embed"))?,
            pos: positions(cfg, &vb)?,
            blocks,
            norm: Norm::new(cfg.dim, 1e-6, vb.pp("norm"))?,
            out: linear(cfg.dim, cfg.patch_values(), vb.pp("out"))?,
            skip: linear(cfg.latent_channels, cfg.patch_values(), vb.pp("skip"))?,
            patch: cfg.patch,
            height: cfg.height,
            width: cfg.width,
        })
    }

    /// `latent`: `(batch, tokens, C)`. Returns pixels `(batch, 3, H, W)`, roughly in [-1, 1].
    pub fn forward(&self, latent: &Tensor) -> Result<Tensor> {
        let mut x = crate::nn::linear(&self.embed, latent)?.broadcast_add(&self.pos)?;
        for block in &self.blocks {
            x = block.forward(&x, None)?;
        }
        let patches = (crate::nn::linear(&self.out, &self.norm.forward(&x)?)?
            + crate::nn::linear(&self.skip, latent)?)?;
        unpatchify(&patches, self.patch, self.height, self.width)
    }
}

/// Embeds the per-step condition (action, controls, context-noise level) into one vector.
#[derive(Clone, Debug)]
pub struct ConditionEmbedding {
    fc1: Linear,
    fc2: Linear,
}

impl ConditionEmbedding {
    /// Weights: `fc1` (inputs → dim), `fc2` (dim → dim).
    pub fn new(inputs: usize, dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: linear(inputs, dim, vb.pp("fc1"))?,
            fc2: linear(dim, dim, vb.pp("fc2"))?,
        })
    }
}

impl Module for ConditionEmbedding {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::nn::linear(
            &self.fc2,
            &candle_nn::ops::silu(&crate::nn::linear(&self.fc1, x)?)?,
        )
    }
}

/// Predicts the next latent frame.
#[derive(Clone, Debug)]
pub struct Dynamics {
    embed: Linear,
    pos: Tensor,
    cond: ConditionEmbedding,
    blocks: Vec<Block>,
    norm: Norm,
    out: Linear,
    warp: Option<MotionWarp>,
}

impl Dynamics {
    /// Weights under `vb`: `embed`, `pos`, `cond`, `blocks.N`, `norm`, `out` (zero-initialised,
    /// so an untrained model predicts "nothing changes"), and `motion` when `cfg.motion_warp`
    /// (its codec's weights are under `codec_vb`).
    pub fn new(cfg: &Config, vb: VarBuilder, codec_vb: VarBuilder) -> Result<Self> {
        let layout = cfg.layout();
        let blocks = (0..cfg.dynamics_layers)
            .map(|i| {
                Block::new(
                    cfg.dim,
                    cfg.heads,
                    cfg.mlp_ratio,
                    cfg.dim,
                    vb.pp(format!("blocks.{i}")),
                )
            })
            .collect::<Result<_>>()?;
        let out_vb = vb.pp("out");
        let zero = candle_nn::Init::Const(0.0);
        let out = Linear::new(
            out_vb.get_with_hints((cfg.latent_channels, cfg.dim), "weight", zero)?,
            Some(out_vb.get_with_hints(cfg.latent_channels, "bias", zero)?),
        );
        let warp = if cfg.motion_warp {
            Some(MotionWarp::new(
                cfg,
                action_len(&layout),
                vb.pp("motion"),
                codec_vb,
            )?)
        } else {
            None
        };
        // The warped last frame is one more input frame.
        let inputs = (cfg.context + usize::from(cfg.motion_warp)) * cfg.latent_channels;
        Ok(Self {
            embed: linear(inputs, cfg.dim, vb.pp("embed"))?,
            pos: positions(cfg, &vb)?,
            cond: ConditionEmbedding::new(condition_len(&layout), cfg.dim, vb.pp("cond"))?,
            blocks,
            norm: Norm::new(cfg.dim, 1e-6, vb.pp("norm"))?,
            out,
            warp,
        })
    }

    /// The motion warp, when the config has one.
    pub fn warp(&self) -> Option<&MotionWarp> {
        self.warp.as_ref()
    }

    /// `context`: `(batch, k, tokens, C)`, oldest first; `condition`: `(batch, cond_inputs)`.
    pub fn forward(&self, context: &Tensor, condition: &Tensor) -> Result<Prediction> {
        let (b, k, t, c) = context.dims4()?;
        let stacked = context.permute((0, 2, 1, 3))?.reshape((b, t, k * c))?;
        let cond = self.cond.forward(condition)?;
        let last = context.narrow(1, k - 1, 1)?.squeeze(1)?;
        let (base, stacked) = match &self.warp {
            Some(warp) => {
                let moved = warp.forward(&last, condition)?;
                let stacked = Tensor::cat(&[&stacked, &moved], D::Minus1)?;
                (moved, stacked)
            }
            None => (last, stacked),
        };
        let mut x = crate::nn::linear(&self.embed, &stacked)?.broadcast_add(&self.pos)?;
        for block in &self.blocks {
            x = block.forward(&x, Some(&cond))?;
        }
        let hidden = self.norm.forward(&x)?;
        let mean = (&base + crate::nn::linear(&self.out, &hidden)?)?;
        Ok(Prediction {
            mean,
            base,
            pooled: hidden.mean(1)?,
            hidden,
            cond,
        })
    }
}

/// What the dynamics computes for one step.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// The predicted next latent `(batch, tokens, C)`: the mean of what may come, which is
    /// the next latent itself for a model without a sampler.
    pub mean: Tensor,
    /// The last latent it started from, moved by the motion warp when it has one.
    pub base: Tensor,
    /// The hidden state of every token after the final norm `(batch, tokens, dim)`.
    pub hidden: Tensor,
    /// `hidden` pooled over tokens `(batch, dim)`, for the audio head.
    pub pooled: Tensor,
    /// The embedded condition `(batch, dim)`, for the audio head.
    pub cond: Tensor,
}

impl Prediction {
    /// What the sampler is conditioned on.
    pub fn sampler_condition(&self) -> SamplerCondition<'_> {
        SamplerCondition {
            hidden: &self.hidden,
            mean: &self.mean,
            base: &self.base,
        }
    }
}

/// Predicts the log energy of each frequency band of each audio subframe of the next frame.
#[derive(Clone, Debug)]
pub struct AudioHead {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl AudioHead {
    /// Weights: `fc1` (2·dim → dim), `fc2` (dim → dim), `fc3` (dim → bands·subframes).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: linear(2 * cfg.dim, cfg.dim, vb.pp("fc1"))?,
            fc2: linear(cfg.dim, cfg.dim, vb.pp("fc2"))?,
            fc3: linear(cfg.dim, cfg.audio_bands * cfg.audio_subframes, vb.pp("fc3"))?,
        })
    }

    /// `hidden`, `cond`: `(batch, dim)`. Returns `(batch, subframes·bands)`.
    pub fn forward(&self, hidden: &Tensor, cond: &Tensor) -> Result<Tensor> {
        let x = Tensor::cat(&[hidden, cond], D::Minus1)?;
        let x = candle_nn::ops::silu(&crate::nn::linear(&self.fc1, &x)?)?;
        let x = candle_nn::ops::silu(&crate::nn::linear(&self.fc2, &x)?)?;
        crate::nn::linear(&self.fc3, &x)
    }
}

/// All networks of the default model, with the weight names of the shipped safetensors file.
#[derive(Clone, Debug)]
pub struct Networks {
    /// `encoder.*`
    pub encoder: Encoder,
    /// `decoder.*`
    pub decoder: Decoder,
    /// `dynamics.*`
    pub dynamics: Dynamics,
    /// `audio.*`
    pub audio: AudioHead,
    /// `sampler.*`, when the config has one.
    pub sampler: Option<Sampler>,
    /// `outpaint.*`, when the config has one.
    pub outpainter: Option<Outpainter>,
}

impl Networks {
    /// Builds (or loads, depending on `vb`) every network.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            encoder: Encoder::new(cfg, vb.pp("encoder"))?,
            decoder: Decoder::new(cfg, vb.pp("decoder"))?,
            dynamics: Dynamics::new(cfg, vb.pp("dynamics"), vb.pp("warp"))?,
            audio: AudioHead::new(cfg, vb.pp("audio"))?,
            sampler: cfg
                .sampler
                .as_ref()
                .map(|s| Sampler::new(s, cfg.dim, cfg.latent_channels, vb.pp("sampler")))
                .transpose()?,
            outpainter: cfg
                .outpainter
                .as_ref()
                .map(|o| Outpainter::new(cfg, o, vb.pp("outpaint")))
                .transpose()?,
        })
    }
}

/// FLOPs of one generated frame: dynamics, sampler, decoder and audio head (the encoder runs only on
/// start frames), generating as `generation` says.
pub fn flops_per_frame(cfg: &Config, generation: &GenerationConfig) -> u64 {
    let layout = cfg.layout();
    let (t, d) = (cfg.tokens() as u64, cfg.dim as u64);
    let c = cfg.latent_channels as u64;
    let blocks =
        |n: usize, cond: usize| n as u64 * block_flops(cfg.tokens(), cfg.dim, cfg.mlp_ratio, cond);
    let p = cfg.patch_values() as u64;
    // Motion head, linear decode, two interpolation products over 3 channels, linear encode.
    let one_warp = {
        let (h, w) = (cfg.height as u64, cfg.width as u64);
        2 * 4 * action_len(&layout) as u64
            + 2 * t * c * p
            + 2 * 3 * (h * w * w + h * h * w)
            + 2 * t * p * c
    };
    let warp = if cfg.motion_warp { one_warp } else { 0 };
    // Texture transport warps the clean last latent once more.
    let transport = if generation.texture_transport_from.is_some() {
        one_warp
    } else {
        0
    };
    let inputs = cfg.context as u64 + u64::from(cfg.motion_warp);
    let dynamics = warp
        + 2 * t * inputs * c * d
        + 2 * (condition_len(&layout) as u64 * d + d * d)
        + blocks(cfg.dynamics_layers, cfg.dim)
        + 2 * t * d * c;
    let decoder = 2 * t * c * d + blocks(cfg.decoder_layers, 0) + 2 * t * d * p + 2 * t * c * p;
    let audio = 2 * (2 * d * d + d * d + d * (cfg.audio_bands * cfg.audio_subframes) as u64);
    // With texture transport the sampler draws only the tokens the warp brings new pixels
    // into: none standing still; counted here for one column and one row of tokens (turning
    // and looking up or down by less than a patch per frame, as the player does).
    let sampled_tokens = match generation.texture_transport_from {
        Some(_) => cfg.width / cfg.patch + cfg.height / cfg.patch,
        None => cfg.tokens(),
    };
    let sampler = cfg.sampler.as_ref().map_or(0, |s| {
        generation.sampler_steps as u64
            * super::sampler::flops(s, sampled_tokens, cfg.dim, cfg.latent_channels)
    });
    // The outpainter draws one line of tokens per frame while turning at full rate (5–6 pixels
    // a frame against 8-pixel tokens): counted here for one column.
    let outpainter = cfg.outpainter.as_ref().map_or(0, |o| {
        super::outpaint::flops(
            o,
            cfg.latent_channels,
            cfg.height / cfg.patch,
            generation.outpaint_passes,
        )
    });
    dynamics + decoder + audio + sampler + transport + outpainter
}

/// The dtype all networks use.
pub const DTYPE: DType = DType::F32;
