//! One training run's steps: the batches and losses of the three stages, and the dynamics'
//! rollouts on which the dynamics and decoder losses are taken.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use super::config::TrainConfig;
use super::data::TrainingData;
use super::losses::{context_noise_levels, mse, weighted_mse};
use crate::default_model::config::GenerationConfig;
use crate::default_model::network::{DTYPE, Networks, Prediction};
use crate::default_model::sampler::{Sampler, SamplerCondition};
use crate::error::Result;
use crate::rng::Gaussian;

/// One predicted step of a training rollout.
pub(crate) struct RolloutStep {
    /// Dataset rows of the frames predicted.
    rows: Vec<usize>,
    /// The latents carried on as context (see [`Run::rollout`]).
    next: Tensor,
    /// The audio head's prediction.
    audio: Tensor,
    /// Everything the dynamics computed.
    prediction: Prediction,
}

/// A training run in progress: the data, the networks being trained and the random stream of
/// the current step.
pub(crate) struct Run<'a> {
    pub(crate) cfg: &'a TrainConfig,
    /// How the trained model will generate (its context-noise level is trained for).
    pub(crate) generation: GenerationConfig,
    pub(crate) data: TrainingData,
    pub(crate) varmap: VarMap,
    pub(crate) nets: Networks,
    pub(crate) device: Device,
    /// Every frame's latent, once the autoencoder stage is done.
    pub(crate) latents: Option<Vec<f32>>,
    /// Per-channel weights `(1, 1, C)` of the latent loss, set with `latents`.
    pub(crate) channel_weights: Option<Tensor>,
    pub(crate) rng: Gaussian,
}

impl Run<'_> {
    fn normal_tensor(&mut self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| self.rng.normal()).collect();
        Ok(Tensor::from_vec(v, shape, &self.device)?)
    }

    pub(crate) fn autoencoder_loss(
        &mut self,
        batch: usize,
    ) -> Result<(Tensor, Vec<(&'static str, f64)>)> {
        let rows = self.data.random_rows(batch, &mut self.rng);
        let x = self.data.pixels(&rows, &self.device)?;
        let z = self.nets.encoder.forward(&x)?;
        let loss = mse(&self.nets.decoder.forward(&z)?, &x)?;
        let v = loss.to_scalar::<f32>()? as f64;
        Ok((loss, vec![("pixel", v)]))
    }

    /// Latents of every row, computed with the current encoder in batches of 32.
    pub(crate) fn encode_all(&self) -> Result<Vec<f32>> {
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
                        let drawn = sampler.sample(
                            &noise,
                            &condition,
                            self.generation.sampler_steps,
                            self.generation.sampler_temperature,
                        )?;
                        (&prediction.mean + drawn)?.detach()
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

    pub(crate) fn dynamics_loss(
        &mut self,
        batch: usize,
    ) -> Result<(Tensor, Vec<(&'static str, f64)>)> {
        let sigma = context_noise_levels(
            self.cfg,
            self.generation.inference_noise,
            batch,
            &mut self.rng,
        );
        let steps = self.rollout(batch, &sigma, true)?;
        let weights = self
            .channel_weights
            .clone()
            .expect("channel weights set with the latents");
        let zero = Tensor::zeros((), DTYPE, &self.device)?;
        let (mut latent, mut audio, mut sampler) = (zero.clone(), zero.clone(), zero);
        let head = self.nets.sampler.clone();
        for step in &steps {
            let truth = self.latents_at(&step.rows)?;
            latent = (latent + weighted_mse(&step.next, &truth, &weights)?)?;
            let target = self.data.audio_targets(&step.rows, &self.device)?;
            audio = (audio + mse(&step.audio, &target)?)?;
            if let Some(head) = &head {
                sampler = (sampler + self.sampler_loss(head, step, &truth)?)?;
            }
        }
        let n = steps.len() as f64;
        let (latent, audio, sampler) = ((latent / n)?, (audio / n)?, (sampler / n)?);
        let loss = if self.cfg.sampler_only {
            sampler.clone()
        } else {
            ((&latent + (&audio * self.cfg.audio_weight)?)? + &sampler)?
        };
        let mut parts = vec![
            ("latent", latent.to_scalar::<f32>()? as f64),
            ("audio", audio.to_scalar::<f32>()? as f64),
        ];
        if head.is_some() {
            parts.push(("sampler", sampler.to_scalar::<f32>()? as f64));
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

    pub(crate) fn decoder_loss(
        &mut self,
        batch: usize,
    ) -> Result<(Tensor, Vec<(&'static str, f64)>)> {
        let sigma = vec![self.generation.inference_noise; batch];
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
