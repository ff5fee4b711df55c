//! A small per-token flow-matching head that samples what the dynamics' deterministic prediction
//! leaves out.
//!
//! Trained on mean squared error alone, the dynamics predicts the mean of the next latent. Fine
//! texture is nearly unpredictable while the player moves, so its mean is close to zero, and the
//! one network carries that shrinking over to standing still: every step multiplies the texture
//! channels by 0.7–0.9 and the picture fades within a few dozen frames (see the model card). The
//! sampler instead draws the residual `next − mean` from its learned distribution given the
//! dynamics' hidden state of the token, the mean and the (warped) last latent: when the future
//! is certain — standing still — that distribution is narrow and the sample restores the detail
//! the mean lost; when it is not, the sample is one plausible texture rather than none.
//!
//! It is rectified flow (Liu et al. 2022; Lipman et al. 2022) per token, as in MAR's diffusion
//! head (Li et al. 2024): `z_τ = (1 − τ)·ε + τ·r`, the head predicts the velocity `r − ε`, and
//! sampling integrates it from `ε ~ N(0, I)` at τ = 0 to τ = 1 in a few Euler steps. Every token
//! is sampled independently given the transformer's hidden state, so each step is a few
//! matrix products over the token grid.

use candle_core::{D, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};

use super::config::SamplerSize;

/// Sine and cosine features of the flow time τ.
const TIME_FEATURES: usize = 8;

/// What the sampler is conditioned on for each token.
pub struct SamplerCondition<'a> {
    /// The dynamics' hidden state after its final norm, `(batch, tokens, dim)`.
    pub hidden: &'a Tensor,
    /// The deterministic prediction, `(batch, tokens, C)`.
    pub mean: &'a Tensor,
    /// The last latent as the dynamics saw it (moved by the motion warp when it has one),
    /// `(batch, tokens, C)`.
    pub base: &'a Tensor,
}

impl SamplerCondition<'_> {
    fn features(&self) -> Result<Tensor> {
        Tensor::cat(&[self.hidden, self.mean, self.base], D::Minus1)
    }
}

/// The flow-matching head: an MLP from `(z_τ, τ features, hidden, mean, base)` of one token to
/// the velocity of its residual.
#[derive(Clone, Debug)]
pub struct Sampler {
    layers: Vec<Linear>,
    out: Linear,
}

impl Sampler {
    /// Weights under `vb`: `layers.N`, `out` (zero-initialised, so an untrained head moves
    /// nothing and the model starts as its deterministic prediction).
    pub fn new(size: &SamplerSize, dim: usize, channels: usize, vb: VarBuilder) -> Result<Self> {
        let inputs = channels + TIME_FEATURES + dim + 2 * channels;
        let layers = (0..size.layers)
            .map(|i| {
                let fan_in = if i == 0 { inputs } else { size.width };
                linear(fan_in, size.width, vb.pp(format!("layers.{i}")))
            })
            .collect::<Result<_>>()?;
        let out_vb = vb.pp("out");
        let zero = candle_nn::Init::Const(0.0);
        let out = Linear::new(
            out_vb.get_with_hints((channels, size.width), "weight", zero)?,
            Some(out_vb.get_with_hints(channels, "bias", zero)?),
        );
        Ok(Self { layers, out })
    }

    /// The velocity at `z` `(batch, tokens, C)` and flow times `tau` `(batch, tokens, 1)`.
    pub fn velocity(
        &self,
        z: &Tensor,
        tau: &Tensor,
        condition: &SamplerCondition<'_>,
    ) -> Result<Tensor> {
        let mut x = Tensor::cat(
            &[z, &time_features(tau)?, &condition.features()?],
            D::Minus1,
        )?;
        for layer in &self.layers {
            x = candle_nn::ops::silu(&crate::nn::linear(layer, &x)?)?;
        }
        crate::nn::linear(&self.out, &x)
    }

    /// The training loss: the mean squared error of the velocity at `z_τ` between `noise` and
    /// the true residual, at flow times `tau` `(batch, tokens, 1)` drawn uniformly in [0, 1).
    pub fn loss(
        &self,
        residual: &Tensor,
        noise: &Tensor,
        tau: &Tensor,
        condition: &SamplerCondition<'_>,
    ) -> Result<Tensor> {
        let z = (noise.broadcast_mul(&(1.0 - tau)?)? + residual.broadcast_mul(tau)?)?;
        let target = (residual - noise)?;
        (self.velocity(&z, tau, condition)? - target)?
            .sqr()?
            .mean_all()
    }

    /// Draws the residual from `noise` `(batch, tokens, C)`, standard normal (scaled here by
    /// `temperature`), in `steps` Euler steps.
    pub fn sample(
        &self,
        noise: &Tensor,
        condition: &SamplerCondition<'_>,
        steps: usize,
        temperature: f32,
    ) -> Result<Tensor> {
        let steps = steps.max(1);
        let (b, t, _) = noise.dims3()?;
        let mut z = (noise * temperature as f64)?;
        let dt = 1.0 / steps as f64;
        for i in 0..steps {
            let tau = Tensor::full((i as f64 * dt) as f32, (b, t, 1), noise.device())?;
            z = (&z + (self.velocity(&z, &tau, condition)? * dt)?)?;
        }
        Ok(z)
    }
}

/// FLOPs of one Euler step of a head of `size`, for `tokens` tokens of width `dim` with
/// `channels` latent channels.
pub fn flops(size: &SamplerSize, tokens: usize, dim: usize, channels: usize) -> u64 {
    let inputs = (channels + TIME_FEATURES + dim + 2 * channels) as u64;
    let w = size.width as u64;
    let hidden = if size.layers == 0 {
        0
    } else {
        inputs * w + (size.layers as u64 - 1) * w * w
    };
    tokens as u64 * 2 * (hidden + w * channels as u64)
}

/// `sin(2^k·π·τ)`, `cos(2^k·π·τ)` for k = 0..4, `(…, 1)` → `(…, 8)`.
fn time_features(tau: &Tensor) -> Result<Tensor> {
    let mut parts = Vec::with_capacity(TIME_FEATURES);
    for k in 0..TIME_FEATURES / 2 {
        let a = (tau * (std::f64::consts::PI * (1u32 << k) as f64))?;
        parts.push(a.sin()?);
        parts.push(a.cos()?);
    }
    Tensor::cat(&parts, D::Minus1)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};

    use super::*;
    use crate::default_model::network::DTYPE;
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};

    /// The head learns a residual that its condition determines (as standing still does: the
    /// residual is the last latent minus the shrunk mean), and its samples then land on it
    /// whatever the starting noise.
    #[test]
    fn learns_a_residual_that_its_condition_determines() -> crate::error::Result<()> {
        let dev = Device::Cpu;
        let size = SamplerSize {
            width: 64,
            layers: 2,
        };
        let (b, t, c, dim) = (4, 6, 3, 8);
        let varmap = VarMap::new();
        let sampler = Sampler::new(&size, dim, c, VarBuilder::from_varmap(&varmap, DTYPE, &dev))?;
        let hidden = Tensor::randn(0f32, 1.0, (b, t, dim), &dev)?;
        let mean = Tensor::randn(0f32, 1.0, (b, t, c), &dev)?;
        let base = Tensor::randn(0f32, 1.0, (b, t, c), &dev)?;
        let residual = (&base - &mean)?;
        let condition = SamplerCondition {
            hidden: &hidden,
            mean: &mean,
            base: &base,
        };
        let mut opt = AdamW::new(
            varmap.all_vars(),
            ParamsAdamW {
                lr: 3e-3,
                ..ParamsAdamW::default()
            },
        )?;
        let err =
            |s: &Tensor| -> Result<f32> { (s - &residual)?.sqr()?.mean_all()?.to_scalar::<f32>() };
        let noise = Tensor::randn(0f32, 1.0, (b, t, c), &dev)?;
        let before = err(&sampler.sample(&noise, &condition, 8, 1.0)?)?;
        for _ in 0..600 {
            let noise = Tensor::randn(0f32, 1.0, (b, t, c), &dev)?;
            let tau = Tensor::rand(0f32, 1.0, (b, t, 1), &dev)?;
            let loss = sampler.loss(&residual, &noise, &tau, &condition)?;
            opt.backward_step(&loss)?;
        }
        let noise = Tensor::randn(0f32, 1.0, (b, t, c), &dev)?;
        let after = err(&sampler.sample(&noise, &condition, 8, 1.0)?)?;
        assert!(
            after < 0.1 * before,
            "sample error {after} after training, {before} before"
        );
        Ok(())
    }

    #[test]
    fn an_untrained_head_samples_zero_at_temperature_zero() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DTYPE, &dev);
        let sampler = Sampler::new(&SamplerSize::default(), 8, 3, vb)?;
        let hidden = Tensor::randn(0f32, 1.0, (1, 4, 8), &dev)?;
        let mean = Tensor::randn(0f32, 1.0, (1, 4, 3), &dev)?;
        let condition = SamplerCondition {
            hidden: &hidden,
            mean: &mean,
            base: &mean,
        };
        let noise = Tensor::randn(0f32, 1.0, (1, 4, 3), &dev)?;
        let s = sampler.sample(&noise, &condition, 4, 0.0)?;
        assert_eq!(s.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
        Ok(())
    }
}
