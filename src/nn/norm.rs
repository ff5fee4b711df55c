//! Group normalisation fused with a per-sample affine map and an optional SiLU, in one pass over
//! the data on the CPU (candle's composed ops take about ten passes).
//!
//! `y = act((x − mean_g) / sqrt(var_g + eps) · gamma[b, c] + beta[b, c])`, with the mean and the
//! (biased) variance taken over each group of channels of each sample, as PyTorch's
//! `group_norm`. Plain `GroupNorm` is `gamma = weight`, `beta = bias`; DIAMOND's adaptive group
//! norm is `gamma = 1 + scale(cond)`, `beta = shift(cond)`.

use candle_core::{D, DType, Result, Tensor};
use rayon::prelude::*;

use super::cpu::{Kernel, is_cpu_f32, tensor_from_vec, vectorize, with_f32};

/// An approximation of `exp(x)` for `f32` (Cephes' `expf` polynomial: relative error about 2
/// ulp), written with plain arithmetic only (no `floor`, no branches) so that loops over it
/// vectorise on any x86-64 level.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // Adding 1.5·2²³ rounds to the nearest integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let k = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = x - n * C1 - n * C2;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((k + 127) as u32) << 23)
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

/// A per-sample, per-channel affine map followed by an activation, `act(x · scale + shift)`:
/// what a group norm (with its affine or adaptive parameters) does once its statistics are
/// known. Convolutions can apply it while they read their input
/// ([`FastConv2d::forward_mapped`](super::FastConv2d::forward_mapped)), so the normalised
/// tensor is never written out.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelMap {
    /// Samples `B`.
    pub batch: usize,
    /// Channels `C`.
    pub channels: usize,
    /// `B × C` scales.
    pub scale: Vec<f32>,
    /// `B × C` shifts.
    pub shift: Vec<f32>,
    /// Activation after the affine map.
    pub act: Activation,
}

impl ChannelMap {
    /// `dst = act(src · scale + shift)` for channel `c` of sample `b`, vectorised.
    #[inline(always)]
    pub fn apply_slice(&self, b: usize, c: usize, src: &[f32], dst: &mut [f32]) {
        let k = b * self.channels + c;
        let (a, s) = (self.scale[k], self.shift[k]);
        match self.act {
            Activation::Identity => {
                for (d, &x) in dst.iter_mut().zip(src) {
                    *d = x * a + s;
                }
            }
            Activation::Silu => {
                for (d, &x) in dst.iter_mut().zip(src) {
                    *d = fast_silu(x * a + s);
                }
            }
        }
    }

    /// `x[c] = act(x[c] · scale + shift)` for a pixel's (or a run of pixels') channel vector
    /// `x` of sample `b` (channel-last data), vectorised over channels.
    #[inline(always)]
    pub fn apply_pixels(&self, b: usize, pixels: &mut [f32]) {
        let sc = &self.scale[b * self.channels..][..self.channels];
        let sh = &self.shift[b * self.channels..][..self.channels];
        for px in pixels.chunks_exact_mut(self.channels) {
            match self.act {
                Activation::Identity => {
                    for ((x, &a), &s) in px.iter_mut().zip(sc).zip(sh) {
                        *x = *x * a + s;
                    }
                }
                Activation::Silu => {
                    for ((x, &a), &s) in px.iter_mut().zip(sc).zip(sh) {
                        *x = fast_silu(*x * a + s);
                    }
                }
            }
        }
    }

    /// Applies the map to `(B, C, …)` `x` and returns the result.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        if dims.len() < 2 || dims[0] != self.batch || dims[1] != self.channels {
            candle_core::bail!(
                "channel map for ({}, {}) applied to {dims:?}",
                self.batch,
                self.channels
            );
        }
        if !is_cpu_f32(x) {
            let mut shape = vec![self.batch, self.channels];
            shape.extend(std::iter::repeat_n(1, dims.len() - 2));
            let dev = x.device();
            let a = Tensor::from_slice(&self.scale, shape.as_slice(), dev)?.to_dtype(x.dtype())?;
            let s = Tensor::from_slice(&self.shift, shape.as_slice(), dev)?.to_dtype(x.dtype())?;
            let y = x.broadcast_mul(&a)?.broadcast_add(&s)?;
            return match self.act {
                Activation::Identity => Ok(y),
                Activation::Silu => candle_nn::ops::silu(&y),
            };
        }
        let spatial: usize = dims[2..].iter().product();
        let out = with_f32(x, |xs| {
            let mut out = vec![0.0f32; xs.len()];
            out.par_chunks_mut(spatial.max(1))
                .zip(xs.par_chunks(spatial.max(1)))
                .enumerate()
                .for_each(|(idx, (d, s))| {
                    let (b, c) = (idx / self.channels, idx % self.channels);
                    vectorize(MapSlice {
                        map: self,
                        b,
                        c,
                        src: s,
                        dst: d,
                    });
                });
            out
        })?;
        tensor_from_vec(out, dims)
    }
}

/// The statistics of a group norm of `(B, C, …)` `x`, folded with `gamma` and `beta` (shape
/// `(C)`, shared by the batch, or `(B, C)`, per sample) into a [`ChannelMap`]:
/// `scale = gamma / sqrt(var + eps)`, `shift = beta − mean · scale`, as PyTorch's CPU kernel
/// folds them. Mean and (biased) variance are taken over each group of channels of each sample,
/// accumulated in f64.
pub fn group_norm_map(
    x: &Tensor,
    groups: usize,
    eps: f64,
    gamma: &Tensor,
    beta: &Tensor,
    act: Activation,
) -> Result<ChannelMap> {
    let host =
        |t: &Tensor| -> Result<Vec<f32>> { t.to_dtype(DType::F32)?.flatten_all()?.to_vec1() };
    group_norm_map_slices(x, groups, eps, &host(gamma)?, &host(beta)?, act)
}

/// [`group_norm_map`] with `gamma` and `beta` given as host slices of `C` (shared by the batch)
/// or `B × C` values.
pub fn group_norm_map_slices(
    x: &Tensor,
    groups: usize,
    eps: f64,
    gamma: &[f32],
    beta: &[f32],
    act: Activation,
) -> Result<ChannelMap> {
    let dims = x.dims().to_vec();
    if dims.len() < 2 {
        candle_core::bail!("group_norm: input must be (B, C, ...), got {dims:?}");
    }
    let (b, c) = (dims[0], dims[1]);
    if groups == 0 || c % groups != 0 {
        candle_core::bail!("group_norm: {groups} groups do not divide {c} channels");
    }
    let per_sample = |v: &[f32], name: &str| -> Result<Vec<f32>> {
        if v.len() == c {
            Ok(v.repeat(b))
        } else if v.len() == b * c {
            Ok(v.to_vec())
        } else {
            candle_core::bail!(
                "group_norm: {name} must have {c} or {} values, got {}",
                b * c,
                v.len()
            )
        }
    };
    let gamma = per_sample(gamma, "gamma")?;
    let beta = per_sample(beta, "beta")?;
    // (mean, rstd) per sample and group.
    let stats: Vec<(f64, f64)> = if is_cpu_f32(x) {
        let block = (x.elem_count() / (b * groups).max(1)).max(1);
        with_f32(x, |xs| {
            xs.par_chunks(block)
                .map(|src| {
                    let (sum, sq) = moments(src);
                    let n = src.len().max(1) as f64;
                    let mean = sum / n;
                    let var = (sq / n - mean * mean).max(0.0);
                    (mean, 1.0 / (var + eps).sqrt())
                })
                .collect()
        })?
    } else {
        let xg = x.to_dtype(DType::F64)?.reshape((b * groups, ()))?;
        let mean = xg.mean_keepdim(D::Minus1)?;
        let var = xg.broadcast_sub(&mean)?.sqr()?.mean_keepdim(D::Minus1)?;
        let mean = mean.flatten_all()?.to_vec1::<f64>()?;
        let var = var.flatten_all()?.to_vec1::<f64>()?;
        mean.into_iter()
            .zip(var)
            .map(|(m, v)| (m, 1.0 / (v + eps).sqrt()))
            .collect()
    };
    let cg = c / groups;
    let mut scale = vec![0.0f32; b * c];
    let mut shift = vec![0.0f32; b * c];
    for k in 0..b * c {
        let (mean, rstd) = stats[(k / c) * groups + (k % c) / cg];
        let a = rstd as f32 * gamma[k];
        scale[k] = a;
        shift[k] = beta[k] - mean as f32 * a;
    }
    Ok(ChannelMap {
        batch: b,
        channels: c,
        scale,
        shift,
        act,
    })
}

/// Group norm of NCHW (or any `(B, C, …)`) `x` followed by `x · gamma + beta` and `act`:
/// [`group_norm_map`] then [`ChannelMap::apply`].
pub fn group_norm_affine(
    x: &Tensor,
    groups: usize,
    eps: f64,
    gamma: &Tensor,
    beta: &Tensor,
    act: Activation,
) -> Result<Tensor> {
    group_norm_map(x, groups, eps, gamma, beta, act)?.apply(x)
}

/// Sum and sum of squares of `src`, accumulated in f64 over eight lanes (vectorised).
fn moments(src: &[f32]) -> (f64, f64) {
    vectorize(Moments(src))
}

struct Moments<'a>(&'a [f32]);

impl Kernel for Moments<'_> {
    type Output = (f64, f64);

    #[inline(always)]
    fn run(self) -> (f64, f64) {
        // f32 partial sums over blocks of 64 values (8 lanes), folded into f64 per block: as
        // accurate as f64 throughout for all practical purposes, at f32 vector speed.
        let mut s = [0.0f64; 8];
        let mut q = [0.0f64; 8];
        let blocks = self.0.chunks_exact(64);
        let rest = blocks.remainder();
        for block in blocks {
            let mut bs = [0.0f32; 8];
            let mut bq = [0.0f32; 8];
            for c in block.chunks_exact(8) {
                for l in 0..8 {
                    bs[l] += c[l];
                    bq[l] += c[l] * c[l];
                }
            }
            for l in 0..8 {
                s[l] += bs[l] as f64;
                q[l] += bq[l] as f64;
            }
        }
        let mut sum: f64 = s.iter().sum();
        let mut sq: f64 = q.iter().sum();
        for &v in rest {
            sum += v as f64;
            sq += v as f64 * v as f64;
        }
        (sum, sq)
    }
}

/// [`ChannelMap::apply_slice`] as a vectorised kernel.
pub(crate) struct MapSlice<'a> {
    pub map: &'a ChannelMap,
    pub b: usize,
    pub c: usize,
    pub src: &'a [f32],
    pub dst: &'a mut [f32],
}

impl Kernel for MapSlice<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        self.map.apply_slice(self.b, self.c, self.src, self.dst);
    }
}

struct Silu<'a> {
    src: &'a [f32],
    dst: &'a mut [f32],
}

impl Kernel for Silu<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        for (d, &s) in self.dst.iter_mut().zip(self.src) {
            *d = fast_silu(s);
        }
    }
}

/// The same computation with composed candle ops: the reference the tests compare against.
#[cfg(test)]
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
            .for_each(|(d, s)| vectorize(Silu { src: s, dst: d }));
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
