//! One training run's steps: the batches and losses of the three stages, and the dynamics'
//! rollouts on which the dynamics and decoder losses are taken.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use super::config::TrainConfig;
use super::data::TrainingData;
use super::light::LightShift;
use super::losses::{context_noise_levels, masked_weighted_mse, mse, weighted_mse};
use crate::default_model::config::GenerationConfig;
use crate::default_model::network::{DTYPE, Networks, Prediction};
use crate::default_model::outpaint::{Side, window};
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
    /// The teacher's mean for the same input (see [`TrainConfig::distill_weight`]), detached.
    teacher: Option<Tensor>,
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
    /// Rows where a director control changes, listed when first needed.
    pub(crate) switches: Option<Vec<usize>>,
    /// The frozen model fine-tuned from, when [`TrainConfig::distill_weight`] is above 0.
    pub(crate) teacher: Option<Networks>,
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
    ///
    /// Also returns, per sample, whether its context was shown in a wrong light.
    fn rollout(
        &mut self,
        batch: usize,
        sigma: &[f32],
        grad: bool,
    ) -> Result<(Vec<RolloutStep>, Vec<bool>)> {
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
        let still = if grad {
            (batch as f64 * self.cfg.still_share).round() as usize
        } else {
            0
        };
        for start in starts.iter_mut().take(still) {
            match self
                .data
                .random_still_window(k + free + unroll, k, &mut self.rng)?
            {
                Some(s) => *start = s,
                None => break,
            }
        }
        if grad && self.cfg.director_share > 0.0 {
            let switches = (batch as f64 * self.cfg.director_share).round() as usize;
            for start in starts.iter_mut().skip(still).take(switches) {
                match self.random_switch_window(k + free + unroll, k + free) {
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
        // The context in its true light, from which the teacher rolls the shifted samples on
        // (see `TrainConfig::distill_shifted_weight`).
        let mut teacher_context =
            (grad && self.teacher.is_some() && self.cfg.distill_shifted_weight > 0.0)
                .then(|| context.clone());
        let shifted = if grad && self.cfg.light_shift_share > 0.0 {
            self.shift_light(&mut context, &starts)?
        } else {
            vec![false; batch]
        };
        let shifted_mask: Vec<f32> = shifted.iter().map(|&s| f32::from(u8::from(s))).collect();
        let shifted_mask = Tensor::from_vec(shifted_mask, (batch, 1, 1), &self.device)?;
        let true_mask = (1.0 - &shifted_mask)?;
        let sigma_t = Tensor::from_vec(sigma.to_vec(), (batch, 1, 1, 1), &self.device)?;
        let relative: Vec<f32> = sigma.iter().map(|s| s / m.train_noise_max).collect();
        let mut steps = Vec::with_capacity(unroll);
        for r in 0..free + unroll {
            let rows: Vec<usize> = starts.iter().map(|s| s + k + r).collect();
            let stacked = Tensor::stack(&context, 1)?;
            let noise = self.normal_tensor(stacked.dims())?;
            let scaled_noise = noise.broadcast_mul(&sigma_t)?;
            let noisy = (stacked + &scaled_noise)?;
            let cond = self.data.conditions(&rows, &relative, &self.device)?;
            let prediction = self.nets.dynamics.forward(&noisy, &cond)?;
            let teacher = match &self.teacher {
                Some(teacher) if grad && (r >= free || teacher_context.is_some()) => {
                    let input = match &teacher_context {
                        Some(own) => (Tensor::stack(own, 1)? + &scaled_noise)?,
                        None => noisy.detach(),
                    };
                    Some(teacher.dynamics.forward(&input, &cond)?.mean.detach())
                }
                _ => None,
            };
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
            if let (Some(own), Some(teacher)) = (teacher_context.as_mut(), teacher.as_ref()) {
                // Shifted samples go on from the teacher's own prediction in the true light;
                // the others see what the student sees, as without a teacher context.
                own.remove(0);
                own.push(
                    (teacher.broadcast_mul(&shifted_mask)?
                        + next.detach().broadcast_mul(&true_mask)?)?,
                );
            }
            if r >= free {
                steps.push(RolloutStep {
                    rows,
                    next,
                    audio,
                    prediction,
                    teacher,
                });
            }
        }
        Ok((steps, shifted))
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
        let (steps, shifted) = self.rollout(batch, &sigma, true)?;
        let weights = self
            .channel_weights
            .clone()
            .expect("channel weights set with the latents");
        let mask = |wanted: bool| -> Result<Tensor> {
            let m: Vec<f32> = shifted
                .iter()
                .map(|&s| f32::from(u8::from(s == wanted)))
                .collect();
            Ok(Tensor::from_vec(m, (batch, 1, 1), &self.device)?)
        };
        let (true_light, wrong_light) = (mask(false)?, mask(true)?);
        let zero = Tensor::zeros((), DTYPE, &self.device)?;
        let (mut latent, mut audio, mut sampler) = (zero.clone(), zero.clone(), zero.clone());
        let (mut distill, mut distill_shifted) = (zero.clone(), zero);
        let head = self.nets.sampler.clone();
        for step in &steps {
            let truth = self.latents_at(&step.rows)?;
            latent = (latent + weighted_mse(&step.next, &truth, &weights)?)?;
            if let Some(teacher) = &step.teacher {
                distill =
                    (distill + masked_weighted_mse(&step.next, teacher, &weights, &true_light)?)?;
                if self.cfg.distill_shifted_weight > 0.0 {
                    distill_shifted = (distill_shifted
                        + masked_weighted_mse(&step.next, teacher, &weights, &wrong_light)?)?;
                }
            }
            let target = self.data.audio_targets(&step.rows, &self.device)?;
            audio = (audio + mse(&step.audio, &target)?)?;
            if let Some(head) = &head {
                sampler = (sampler + self.sampler_loss(head, step, &truth)?)?;
            }
        }
        let n = steps.len() as f64;
        let (latent, audio, sampler) = ((latent / n)?, (audio / n)?, (sampler / n)?);
        let (distill, distill_shifted) = ((distill / n)?, (distill_shifted / n)?);
        let loss = if self.cfg.sampler_only {
            sampler.clone()
        } else {
            (((&latent + (&audio * self.cfg.audio_weight)?)? + &sampler)?
                + (&distill * self.cfg.distill_weight)?
                + (&distill_shifted * self.cfg.distill_shifted_weight)?)?
        };
        let mut parts = vec![
            ("latent", latent.to_scalar::<f32>()? as f64),
            ("audio", audio.to_scalar::<f32>()? as f64),
        ];
        if self.teacher.is_some() {
            parts.push(("distill", distill.to_scalar::<f32>()? as f64));
            if self.cfg.distill_shifted_weight > 0.0 {
                parts.push((
                    "distill_shifted",
                    distill_shifted.to_scalar::<f32>()? as f64,
                ));
            }
        }
        if head.is_some() {
            parts.push(("sampler", sampler.to_scalar::<f32>()? as f64));
        }
        Ok((loss, parts))
    }

    /// Shows a random [`light_shift_share`](TrainConfig::light_shift_share) of the samples
    /// their context frames (`context[j]` holds row `starts[i] + j` of sample `i`) in a wrong
    /// light: the frames' pixels shifted by one [`LightShift`] per sample and encoded again.
    /// Returns, per sample, whether it was shifted.
    fn shift_light(&mut self, context: &mut [Tensor], starts: &[usize]) -> Result<Vec<bool>> {
        let share = self.cfg.light_shift_share as f32;
        let mut shifted = Vec::new();
        for i in 0..starts.len() {
            if self.rng.uniform() < share {
                shifted.push((i, LightShift::draw(&mut self.rng)));
            }
        }
        let mut is_shifted = vec![false; starts.len()];
        for (i, _) in &shifted {
            is_shifted[*i] = true;
        }
        if shifted.is_empty() {
            return Ok(is_shifted);
        }
        for (j, frames) in context.iter_mut().enumerate() {
            let rows: Vec<usize> = shifted.iter().map(|(i, _)| starts[*i] + j).collect();
            let pixels = self.data.pixels(&rows, &self.device)?;
            let dims = pixels.dims().to_vec();
            let mut values: Vec<f32> = pixels.flatten_all()?.to_vec1()?;
            let per_frame = values.len() / rows.len();
            for ((_, shift), frame) in shifted.iter().zip(values.chunks_exact_mut(per_frame)) {
                shift.apply(frame);
            }
            let pixels = Tensor::from_vec(values, dims, &self.device)?;
            let encoded = self.nets.encoder.forward(&pixels)?.detach();
            let mut samples: Vec<Tensor> = (0..starts.len())
                .map(|i| frames.narrow(0, i, 1))
                .collect::<candle_core::Result<_>>()?;
            for (n, (i, _)) in shifted.iter().enumerate() {
                samples[*i] = encoded.narrow(0, n, 1)?;
            }
            *frames = Tensor::cat(&samples, 0)?;
        }
        Ok(is_shifted)
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
        let (steps, _) = self.rollout(batch, &sigma, false)?;
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

    /// The outpainter's loss on single frames: for each sample, a random frame's window on one
    /// side (the same side for the batch, drawn per step), with a random share of its edge line
    /// masked, as MaskGIT's schedule draws it (`cos(π/2·u)` of the line, at least one token).
    pub(crate) fn outpainter_loss(
        &mut self,
        batch: usize,
    ) -> Result<(Tensor, Vec<(&'static str, f64)>)> {
        let m = &self.cfg.model;
        let outpainter = self
            .nets
            .outpainter
            .clone()
            .expect("the outpainter stage has an outpainter");
        let (rows, cols) = (m.height / m.patch, m.width / m.patch);
        let side = Side::ALL[((self.rng.uniform() * 4.0) as usize).min(3)];
        let (ctx, new) = window(side, rows, cols, outpainter.context());
        let positions: Vec<u32> = ctx.iter().chain(&new).copied().collect();
        let frames = self.data.random_rows(batch, &mut self.rng);
        let all = self.latents_at(&frames)?;
        let index = Tensor::new(positions.as_slice(), &self.device)?;
        let tokens = all.index_select(&index, 1)?;
        let (n, l) = (positions.len(), new.len());
        let mut known = Vec::with_capacity(batch * n);
        let mut masked = Vec::with_capacity(batch * n);
        for _ in 0..batch {
            let share = (std::f32::consts::FRAC_PI_2 * self.rng.uniform()).cos();
            let count = ((share * l as f32).ceil() as usize).clamp(1, l);
            // A random `count` of the line's tokens are masked (a partial Fisher–Yates shuffle).
            let mut order: Vec<usize> = (0..l).collect();
            for i in 0..count {
                let j = i + ((self.rng.uniform() * (l - i) as f32) as usize).min(l - i - 1);
                order.swap(i, j);
            }
            let mut line_mask = vec![0.0f32; l];
            for &j in &order[..count] {
                line_mask[j] = 1.0;
            }
            known.extend(std::iter::repeat_n(1.0, n - l));
            known.extend(line_mask.iter().map(|v| 1.0 - v));
            masked.extend(std::iter::repeat_n(0.0, n - l));
            masked.extend(line_mask);
        }
        let known = Tensor::from_vec(known, (batch, n, 1), &self.device)?;
        let masked = Tensor::from_vec(masked, (batch, n, 1), &self.device)?;
        if outpainter.is_retrieval() {
            // Nothing to train: the bank was filled from the data. The loss logged is how far
            // the line drawn for each frame's context lies from its true line.
            let context = tokens.narrow(1, 0, n - l)?;
            let truth = tokens.narrow(1, n - l, l)?;
            let mut rngs: Vec<Gaussian> = (0..batch).map(|i| Gaussian::new(i as u64)).collect();
            let mut refs: Vec<&mut Gaussian> = rngs.iter_mut().collect();
            let drawn = outpainter.draw(&context, side, (rows, cols), 1, 1.0, &mut refs)?;
            let loss = mse(&drawn, &truth)?;
            let value = loss.to_scalar::<f32>()? as f64;
            return Ok((loss, vec![("retrieval", value)]));
        }
        let hidden = outpainter.hidden(&tokens, &known, &positions, side)?;
        let loss = if outpainter.has_codebook() {
            let codes = outpainter.nearest_codes(&tokens)?;
            outpainter.loss(&hidden, &masked, &tokens, Some(&codes), None)?
        } else {
            let noise = self.normal_tensor(tokens.dims())?;
            let tau: Vec<f32> = (0..batch * n)
                .map(|_| self.rng.uniform().min(0.999_999))
                .collect();
            let tau = Tensor::from_vec(tau, (batch, n, 1), &self.device)?;
            outpainter.loss(&hidden, &masked, &tokens, None, Some((&noise, &tau)))?
        };
        let value = loss.to_scalar::<f32>()? as f64;
        Ok((loss, vec![("outpaint", value)]))
    }

    /// A random window of `len` rows inside one episode whose predicted rows (from `skip` on)
    /// fall within the first [`SWITCH_FRAMES`] rows after a director control changed: the
    /// lighting and weather are still moving toward the new setting there. `None` if the data
    /// has no such window.
    fn random_switch_window(&mut self, len: usize, skip: usize) -> Option<usize> {
        if self.switches.is_none() {
            self.switches = Some(switch_rows(&self.data));
        }
        let switches = self.switches.as_ref().expect("listed above");
        if switches.is_empty() || len > skip + SWITCH_FRAMES {
            return None;
        }
        for _ in 0..1000 {
            let r = switches
                [((self.rng.uniform() * switches.len() as f32) as usize).min(switches.len() - 1)];
            let offset = (self.rng.uniform() * (SWITCH_FRAMES + skip - len + 1) as f32) as usize;
            let Some(start) = (r + offset).checked_sub(skip) else {
                continue;
            };
            if same_episode(&self.data, start, start + len - 1) {
                return Some(start);
            }
        }
        None
    }
}

/// Frames after a director switch in which windows of [`Run::random_switch_window`] predict.
const SWITCH_FRAMES: usize = 15;

/// The rows at which a director control differs from the row before, within an episode.
fn switch_rows(data: &TrainingData) -> Vec<usize> {
    let c = data.spec.controls.len();
    let mut rows = Vec::new();
    for &(start, len) in &data.episodes {
        for row in start + 1..start + len {
            let (before, now) = (
                &data.controls[(row - 1) * c..row * c],
                &data.controls[row * c..(row + 1) * c],
            );
            if before != now {
                rows.push(row);
            }
        }
    }
    rows
}

/// Whether rows `a` and `b` lie in the same episode.
fn same_episode(data: &TrainingData, a: usize, b: usize) -> bool {
    data.episodes
        .iter()
        .any(|&(start, len)| (start..start + len).contains(&a) && (start..start + len).contains(&b))
}
