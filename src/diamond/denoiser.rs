//! DIAMOND's EDM denoiser (preconditioning around the inner network, with offset noise and
//! 256-level quantisation) and its sampler (Karras σ schedule, Euler or Heun).

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{DenoiserConfig, SamplerConfig, SamplerOrder};
use super::unet::InnerModel;
use crate::nn::ConvAlgorithm;

/// EDM's preconditioning factors for one noise level (DIAMOND's `compute_conditioners`, which
/// first folds the offset noise into σ).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conditioners {
    /// Input scale.
    pub c_in: f32,
    /// Output scale.
    pub c_out: f32,
    /// Skip scale.
    pub c_skip: f32,
    /// Noise-level input of the network.
    pub c_noise: f32,
}

impl Conditioners {
    /// The factors for `sigma`, in `f32` operations in the reference's order.
    pub fn new(sigma: f32, cfg: &DenoiserConfig) -> Self {
        let off = cfg.sigma_offset_noise * cfg.sigma_offset_noise;
        let sd2 = cfg.sigma_data * cfg.sigma_data;
        let sigma = (sigma * sigma + off).sqrt();
        let c_in = 1.0 / (sigma * sigma + sd2).sqrt();
        let c_skip = sd2 / (sigma * sigma + sd2);
        let c_out = sigma * c_skip.sqrt();
        let c_noise = sigma.ln() / 4.0;
        Self {
            c_in,
            c_out,
            c_skip,
            c_noise,
        }
    }
}

/// DIAMOND's `Denoiser`: the inner network with EDM preconditioning.
#[derive(Clone, Debug)]
pub struct Denoiser {
    inner: InnerModel,
    cfg: DenoiserConfig,
    device: Device,
}

impl Denoiser {
    /// Builds the denoiser; `vb` is rooted at the inner model's tensors (`inner_model.`).
    pub fn new(vb: VarBuilder, cfg: &DenoiserConfig, algo: ConvAlgorithm) -> Result<Self> {
        Ok(Self {
            device: vb.device().clone(),
            inner: InnerModel::new(vb, cfg, algo)?,
            cfg: cfg.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DenoiserConfig {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Brings conditioning frames to `(B, n·C, H, W)` (accepting `(B, n, C, H, W)` too).
    fn flat_obs(obs: &Tensor) -> Result<Tensor> {
        match obs.dims() {
            &[b, n, c, h, w] => obs.reshape((b, n * c, h, w)),
            _ => Ok(obs.clone()),
        }
    }

    fn check(&self, noisy: &Tensor, sigma: &[f32], obs: &Tensor, act: &Tensor) -> Result<usize> {
        let (b, c, h, w) = noisy.dims4()?;
        let n = self.cfg.num_steps_conditioning;
        if c != self.cfg.img_channels || (sigma.len() != b && sigma.len() != 1) {
            candle_core::bail!(
                "denoiser: noisy frame {:?} with {} noise levels; expected (B, {}, H, W) and B or 1 levels",
                noisy.dims(),
                sigma.len(),
                self.cfg.img_channels
            );
        }
        if obs.dims() != [b, n * c, h, w] || act.dims() != [b, n] {
            candle_core::bail!(
                "denoiser: conditioning frames {:?} and actions {:?} do not match ({b}, {}, {h}, {w}) and ({b}, {n})",
                obs.dims(),
                act.dims(),
                n * c
            );
        }
        Ok(b)
    }

    /// A `(B, 1, 1, 1)` (or `(1, 1, 1, 1)`) tensor of one factor per sample.
    fn per_sample(&self, v: Vec<f32>) -> Result<Tensor> {
        let n = v.len();
        Tensor::from_vec(v, (n, 1, 1, 1), &self.device)
    }

    /// The inner network's raw output (`compute_model_output`) for the noisy next frame at noise
    /// levels `sigma` (one per sample, or one for all), conditioning frames and `u32` actions.
    /// Also returns the FLOPs of the call.
    pub fn model_output_counted(
        &self,
        noisy: &Tensor,
        sigma: &[f32],
        obs: &Tensor,
        act: &Tensor,
    ) -> Result<(Tensor, f64)> {
        let obs = Self::flat_obs(obs)?;
        let act = act.to_dtype(DType::U32)?;
        self.check(noisy, sigma, &obs, &act)?;
        let cs: Vec<Conditioners> = sigma
            .iter()
            .map(|&s| Conditioners::new(s, &self.cfg))
            .collect();
        let sd = Tensor::new(self.cfg.sigma_data, &self.device)?;
        let rescaled_obs = obs.broadcast_div(&sd)?;
        let c_in = self.per_sample(cs.iter().map(|c| c.c_in).collect())?;
        let rescaled_noise = noisy.broadcast_mul(&c_in)?;
        let c_noise = Tensor::from_vec(
            cs.iter().map(|c| c.c_noise).collect::<Vec<_>>(),
            cs.len(),
            &self.device,
        )?;
        self.inner
            .forward_counted(&rescaled_noise, &c_noise, &rescaled_obs, &act)
    }

    /// [`model_output_counted`](Self::model_output_counted) without the count.
    pub fn model_output(
        &self,
        noisy: &Tensor,
        sigma: &[f32],
        obs: &Tensor,
        act: &Tensor,
    ) -> Result<Tensor> {
        Ok(self.model_output_counted(noisy, sigma, obs, act)?.0)
    }

    /// The denoised estimate (`denoise`): `c_skip · noisy + c_out · output`, clamped to
    /// [-1, 1] and quantised to 256 levels exactly as the reference (truncating, like
    /// PyTorch's `.byte()`).
    pub fn denoise(
        &self,
        noisy: &Tensor,
        sigma: &[f32],
        obs: &Tensor,
        act: &Tensor,
    ) -> Result<Tensor> {
        let out = self.model_output(noisy, sigma, obs, act)?;
        self.wrap_output(noisy, &out, sigma)
    }

    /// `wrap_model_output`: preconditioning and quantisation of a raw network output.
    pub fn wrap_output(&self, noisy: &Tensor, out: &Tensor, sigma: &[f32]) -> Result<Tensor> {
        let dims = noisy.dims().to_vec();
        let b = dims[0];
        let per = noisy.elem_count() / b.max(1);
        let x = noisy.flatten_all()?.to_vec1::<f32>()?;
        let o = out.flatten_all()?.to_vec1::<f32>()?;
        let d: Vec<f32> = x
            .iter()
            .zip(&o)
            .enumerate()
            .map(|(i, (&x, &o))| {
                let c =
                    Conditioners::new(sigma[if sigma.len() == 1 { 0 } else { i / per }], &self.cfg);
                quantise(c.c_skip * x + c.c_out * o)
            })
            .collect();
        Tensor::from_vec(d, dims, &self.device)
    }
}

/// DIAMOND's quantisation of a denoised value: clamp to [-1, 1], map to 0..=255 and truncate,
/// map back.
#[inline]
pub fn quantise(d: f32) -> f32 {
    let q = ((d.clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0) as u8;
    q as f32 / 255.0 * 2.0 - 1.0
}

/// A pixel value in [-1, 1] as a byte, as DIAMOND displays frames (clamped first).
#[inline]
pub fn to_byte(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0) as u8
}

/// The Karras σ schedule of `cfg`, followed by 0 (DIAMOND's `build_sigmas`), in `f32` like the
/// reference.
pub fn karras_sigmas(cfg: &SamplerConfig) -> Vec<f32> {
    let rho = cfg.rho;
    let min_inv = cfg.sigma_min.powf(1.0 / rho);
    let max_inv = cfg.sigma_max.powf(1.0 / rho);
    let n = cfg.num_steps;
    let mut s: Vec<f32> = (0..n)
        .map(|i| {
            let l = if n > 1 {
                i as f32 / (n - 1) as f32
            } else {
                0.0
            };
            let base = max_inv as f32 + l * (min_inv - max_inv) as f32;
            base.powf(cfg.rho as f32)
        })
        .collect();
    s.push(0.0);
    s
}

/// Runs DIAMOND's sampler from `init` noise (`(B, C, H, W)`) over `sigmas`: Euler steps (or
/// Heun, per `cfg.order`), with optional churn noise drawn by `churn_noise` (called with the
/// number of values it must return). Returns the final frame batch, in [-1, 1] up to rounding.
pub fn sample(
    denoiser: &Denoiser,
    obs: &Tensor,
    act: &Tensor,
    init: &Tensor,
    sigmas: &[f32],
    cfg: &SamplerConfig,
    mut churn_noise: impl FnMut(usize) -> Vec<f32>,
) -> Result<Tensor> {
    let dims = init.dims().to_vec();
    let device = init.device().clone();
    let mut x = init.flatten_all()?.to_vec1::<f32>()?;
    let to_tensor = |v: &[f32]| Tensor::from_slice(v, dims.as_slice(), &device);
    let steps = sigmas.len().saturating_sub(1);
    let gamma_max = if steps > 0 {
        (cfg.s_churn / steps as f64).min(std::f64::consts::SQRT_2 - 1.0)
    } else {
        0.0
    };
    for w in sigmas.windows(2) {
        let (sigma, next) = (w[0], w[1]);
        let in_range = cfg.s_tmin <= sigma as f64 && sigma as f64 <= cfg.s_tmax;
        let gamma = if in_range { gamma_max } else { 0.0 };
        let sigma_hat = sigma * (gamma + 1.0) as f32;
        if gamma > 0.0 {
            let eps = churn_noise(x.len());
            let scale = (sigma_hat * sigma_hat - sigma * sigma).sqrt();
            for (v, e) in x.iter_mut().zip(eps) {
                *v += e * cfg.s_noise as f32 * scale;
            }
        }
        // As the reference, the denoiser sees σ, not σ̂.
        let denoised = denoiser.denoise(&to_tensor(&x)?, &[sigma], obs, act)?;
        let den = denoised.flatten_all()?.to_vec1::<f32>()?;
        let d: Vec<f32> = x
            .iter()
            .zip(&den)
            .map(|(x, y)| (x - y) / sigma_hat)
            .collect();
        let dt = next - sigma_hat;
        if cfg.order == SamplerOrder::Euler || next == 0.0 {
            for (v, d) in x.iter_mut().zip(&d) {
                *v += d * dt;
            }
        } else {
            let x2: Vec<f32> = x.iter().zip(&d).map(|(x, d)| x + d * dt).collect();
            let den2 = denoiser
                .denoise(&to_tensor(&x2)?, &[next], obs, act)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            for ((v, d), (x2, y2)) in x.iter_mut().zip(&d).zip(x2.iter().zip(&den2)) {
                let d2 = (x2 - y2) / next;
                *v += (d + d2) / 2.0 * dt;
            }
        }
    }
    to_tensor(&x)
}
