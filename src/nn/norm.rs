//! Group normalisation fused with a per-sample affine map and an optional SiLU, in one pass over
//! the data on the CPU (candle's composed ops take about ten passes).
//!
//! `y = act((x − mean_g) / sqrt(var_g + eps) · gamma[b, c] + beta[b, c])`, with the mean and the
//! (biased) variance taken over each group of channels of each sample, as PyTorch's
//! `group_norm`. Plain `GroupNorm` is `gamma = weight`, `beta = bias`; DIAMOND's adaptive group
//! norm is `gamma = 1 + scale(cond)`, `beta = shift(cond)`.

use candle_core::{D, DType, Result, Tensor};
use rayon::prelude::*;

use super::cpu::{is_cpu_f32, tensor_from_vec, with_f32};

/// An approximation of `exp(x)` for `f32` (Cephes' `expf` polynomial: relative error about 2
/// ulp), written without branches so loops over it vectorise.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * C1 - n * C2;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let pow2n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    y * pow2n
}

/// `x · sigmoid(x)`, with [`fast_exp`].
#[inline(always)]
pub fn fast_silu(x: f32) -> f32 {
    x / (1.0 + fast_exp(-x))
}

/// The activation applied after the affine map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// None.
    Identity,
    /// `x · sigmoid(x)`.
    Silu,
}

/// Group norm of NCHW (or any `(B, C, …)`) `x` followed by `x · gamma + beta` and `act`.
///
/// `gamma` and `beta` have shape `(C)` (shared by the batch) or `(B, C)` (per sample). On CPU
/// `f32` tensors this runs as one fused parallel kernel; elsewhere it is composed of candle ops.
pub fn group_norm_affine(
    x: &Tensor,
    groups: usize,
    eps: f64,
    gamma: &Tensor,
    beta: &Tensor,
    act: Activation,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    if dims.len() < 2 {
        candle_core::bail!("group_norm: input must be (B, C, ...), got {dims:?}");
    }
    let (b, c) = (dims[0], dims[1]);
    if groups == 0 || c % groups != 0 {
        candle_core::bail!("group_norm: {groups} groups do not divide {c} channels");
    }
    let per_sample = |t: &Tensor, name: &str| -> Result<Tensor> {
        match t.dims() {
            [n] if *n == c => t.unsqueeze(0)?.broadcast_as((b, c))?.contiguous(),
            [bb, n] if *bb == b && *n == c => Ok(t.clone()),
            other => {
                candle_core::bail!("group_norm: {name} must be ({c}) or ({b}, {c}), got {other:?}")
            }
        }
    };
    let gamma = per_sample(gamma, "gamma")?;
    let beta = per_sample(beta, "beta")?;
    if !(is_cpu_f32(x) && is_cpu_f32(&gamma) && is_cpu_f32(&beta)) {
        return group_norm_candle(x, groups, eps, &gamma, &beta, act);
    }
    let spatial: usize = dims[2..].iter().product();
    let cg = c / groups;
    let block = cg * spatial;
    let out = with_f32(x, |xs| {
        with_f32(&gamma, |gs| {
            with_f32(&beta, |bs| {
                let mut out = vec![0.0f32; xs.len()];
                out.par_chunks_mut(block.max(1))
                    .zip(xs.par_chunks(block.max(1)))
                    .enumerate()
                    .for_each(|(idx, (dst, src))| {
                        let (bi, gi) = (idx / groups, idx % groups);
                        let (sum, sq) = src.iter().fold((0.0f64, 0.0f64), |(s, q), &v| {
                            let v = v as f64;
                            (s + v, q + v * v)
                        });
                        let n = src.len().max(1) as f64;
                        let mean = sum / n;
                        let var = (sq / n - mean * mean).max(0.0);
                        let rstd = (1.0 / (var + eps).sqrt()) as f32;
                        let mean = mean as f32;
                        for (k, (d, s)) in dst
                            .chunks_mut(spatial.max(1))
                            .zip(src.chunks(spatial.max(1)))
                            .enumerate()
                        {
                            let ch = bi * c + gi * cg + k;
                            let (ga, be) = (gs[ch], bs[ch]);
                            apply_affine(d, s, mean, rstd, ga, be, act);
                        }
                    });
                out
            })
        })
    })???;
    tensor_from_vec(out, dims)
}

/// `dst = act(((src − mean) · rstd) · gamma + beta)`, vectorised.
fn apply_affine(
    dst: &mut [f32],
    src: &[f32],
    mean: f32,
    rstd: f32,
    ga: f32,
    be: f32,
    act: Activation,
) {
    pulp::Arch::new().dispatch(
        #[inline(always)]
        || match act {
            Activation::Identity => {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = ((s - mean) * rstd) * ga + be;
                }
            }
            Activation::Silu => {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = fast_silu(((s - mean) * rstd) * ga + be);
                }
            }
        },
    );
}

/// The same computation with candle ops (other devices and dtypes).
fn group_norm_candle(
    x: &Tensor,
    groups: usize,
    eps: f64,
    gamma: &Tensor,
    beta: &Tensor,
    act: Activation,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (b, c) = (dims[0], dims[1]);
    let dtype = x.dtype();
    let xg = x.to_dtype(DType::F32)?.reshape((b, groups, ()))?;
    let mean = xg.mean_keepdim(D::Minus1)?;
    let centered = xg.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    let mut shape = vec![b, c];
    shape.extend(std::iter::repeat_n(1, dims.len() - 2));
    let y = normed
        .reshape(dims.as_slice())?
        .broadcast_mul(&gamma.to_dtype(DType::F32)?.reshape(shape.as_slice())?)?
        .broadcast_add(&beta.to_dtype(DType::F32)?.reshape(shape.as_slice())?)?;
    let y = match act {
        Activation::Identity => y,
        Activation::Silu => candle_nn::ops::silu(&y)?,
    };
    y.to_dtype(dtype)
}

/// SiLU of any tensor: a vectorised kernel on CPU `f32` tensors, candle's op elsewhere.
pub fn silu(x: &Tensor) -> Result<Tensor> {
    if !is_cpu_f32(x) {
        return candle_nn::ops::silu(x);
    }
    let out = with_f32(x, |xs| {
        let mut out = vec![0.0f32; xs.len()];
        out.par_chunks_mut(16384)
            .zip(xs.par_chunks(16384))
            .for_each(|(d, s)| {
                pulp::Arch::new().dispatch(
                    #[inline(always)]
                    || {
                        for (d, &s) in d.iter_mut().zip(s) {
                            *d = fast_silu(s);
                        }
                    },
                )
            });
        out
    })?;
    tensor_from_vec(out, x.dims())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0.0f64;
        for i in -8000..=8000 {
            let x = i as f32 * 0.01;
            let want = (x as f64).exp();
            let rel = ((fast_exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 5e-7, "worst relative error {worst:e}");
        assert!(fast_silu(-200.0).abs() < 1e-30);
        assert!((fast_silu(200.0) - 200.0).abs() < 1e-3);
    }

    #[test]
    fn matches_composed_candle_ops() {
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 2.0, (2, 64, 9, 7), &dev).unwrap() + 0.5).unwrap();
        let gamma = Tensor::randn(1f32, 0.3, (2, 64), &dev).unwrap();
        let beta = Tensor::randn(0f32, 0.3, 64, &dev).unwrap();
        for act in [Activation::Identity, Activation::Silu] {
            let got = group_norm_affine(&x, 2, 1e-5, &gamma, &beta, act).unwrap();
            let beta2 = beta.unsqueeze(0).unwrap().broadcast_as((2, 64)).unwrap();
            let want = group_norm_candle(&x, 2, 1e-5, &gamma, &beta2, act).unwrap();
            let diff = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-5, "{act:?}: max difference {diff}");
        }
        let got = silu(&x).unwrap();
        let want = candle_nn::ops::silu(&x).unwrap();
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn rejects_bad_shapes() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 6, 2, 2), DType::F32, &dev).unwrap();
        let g = Tensor::ones(6, DType::F32, &dev).unwrap();
        assert!(group_norm_affine(&x, 4, 1e-5, &g, &g, Activation::Identity).is_err());
        let g5 = Tensor::ones(5, DType::F32, &dev).unwrap();
        assert!(group_norm_affine(&x, 2, 1e-5, &g5, &g, Activation::Identity).is_err());
    }
}
