//! The losses of the training stages and the learning-rate schedule.

use candle_core::Tensor;

use super::config::{StageConfig, TrainConfig};
use crate::rng::Gaussian;

/// Warm-up over the first tenth (at most 200 steps), then cosine decay to a tenth of the peak.
pub(crate) fn learning_rate(sc: &StageConfig, step: u64) -> f64 {
    let warmup = (sc.steps / 10).clamp(1, 200);
    if step < warmup {
        return sc.lr * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (sc.steps - warmup).max(1) as f64;
    sc.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

pub(crate) fn mse(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    (a - b)?.sqr()?.mean_all()
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
pub(crate) fn weighted_mse(
    a: &Tensor,
    b: &Tensor,
    weights: &Tensor,
) -> candle_core::Result<Tensor> {
    (a - b)?.sqr()?.broadcast_mul(weights)?.mean_all()
}

/// [`weighted_mse`] over the samples whose `mask` `(B, 1, 1)` is 1 only: their mean of
/// `weights · (a − b)²`; 0 when no sample is masked in.
pub(crate) fn masked_weighted_mse(
    a: &Tensor,
    b: &Tensor,
    weights: &Tensor,
    mask: &Tensor,
) -> candle_core::Result<Tensor> {
    let per_sample = (a - b)?
        .sqr()?
        .broadcast_mul(weights)?
        .mean_keepdim(2)?
        .mean_keepdim(1)?;
    let count = mask.sum_all()?.to_scalar::<f32>()?;
    (per_sample * mask)?.sum_all()? / f64::from(count.max(1.0))
}

/// The context-noise level of each dynamics sample: a quarter exactly at the level used when
/// generating (`generating`), the rest uniform up to `train_noise_max` (or the lower
/// `context_noise_max`).
pub(crate) fn context_noise_levels(
    cfg: &TrainConfig,
    generating: f32,
    batch: usize,
    rng: &mut Gaussian,
) -> Vec<f32> {
    let max = cfg.model.train_noise_max;
    let max = cfg.context_noise_max.map_or(max, |m| m.min(max));
    (0..batch)
        .map(|i| {
            if i % 4 == 0 {
                generating
            } else {
                rng.uniform() * max
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

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

    /// Only the masked-in samples count, each by its own mean, and a mask of none gives 0.
    #[test]
    fn masked_loss_averages_the_masked_in_samples() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::new(&[[[2f32, 0.0]]], &dev)?;
        // Three samples of one token and two channels; only channel 0 counts (weight 2).
        let a = Tensor::new(&[[[1f32, 5.0]], [[3.0, 5.0]], [[0.0, 9.0]]], &dev)?;
        let b = Tensor::zeros((3, 1, 2), DType::F32, &dev)?;
        let mask = |m: [f32; 3]| Tensor::new(&m, &dev)?.reshape((3, 1, 1));
        let loss = |m| -> candle_core::Result<f32> {
            masked_weighted_mse(&a, &b, &w, &mask(m)?)?.to_scalar::<f32>()
        };
        // Per sample: 2·1²/2 = 1, 2·3²/2 = 9, 0.
        let all = loss([1.0, 1.0, 1.0])?;
        assert!((all - 10.0 / 3.0).abs() < 1e-6, "{all}");
        assert_eq!(loss([1.0, 1.0, 0.0])?, 5.0);
        assert_eq!(loss([0.0, 1.0, 0.0])?, 9.0);
        assert_eq!(loss([0.0, 0.0, 0.0])?, 0.0);
        Ok(())
    }

    #[test]
    fn context_noise_stays_below_its_bound() {
        let mut cfg = TrainConfig::tiny();
        cfg.model.train_noise_max = 0.7;
        let mut rng = Gaussian::new(3);
        let full = context_noise_levels(&cfg, 0.1, 400, &mut rng);
        assert!(full.iter().all(|&s| (0.0..=0.7).contains(&s)));
        assert!(full.iter().any(|&s| s > 0.5), "draws use the whole range");
        cfg.context_noise_max = Some(0.2);
        let light = context_noise_levels(&cfg, 0.1, 400, &mut rng);
        assert!(light.iter().all(|&s| (0.0..=0.2).contains(&s)));
        assert!(
            light.iter().step_by(4).all(|&s| s == 0.1),
            "a quarter at the generating level"
        );
    }
}
