//! The two element-wise steps around each sub-layer of a modulated (DiT-style) transformer
//! block, for inference on the CPU: the layer norm with its per-sample scale and shift,
//! `norm(x)·(1 + scale) + shift`, and the gated residual, `x + y·gate`, each in one pass over
//! the tokens instead of candle's six and two.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use super::cpu::{Kernel, is_cpu_f32, tensor_from_vec, vectorize, with_f32};

/// Tokens per parallel task.
const TOKENS_PER_TASK: usize = 64;

/// `norm(x)·(1 + scale) + shift` over the last dimension of `x` `(batch, tokens, dim)`, with
/// `scale` and `shift` `(batch, 1, dim)` and the norm without affine parameters (mean and
/// biased variance of each token, `eps` added to the variance). `None` when the kernel does
/// not apply (not CPU `f32`, a gradient tracked, other shapes): the caller composes candle's
/// ops.
pub fn modulated_layer_norm(
    x: &Tensor,
    scale: &Tensor,
    shift: &Tensor,
    eps: f64,
) -> Result<Option<Tensor>> {
    let Some((b, n, d)) = applies(x, &[scale, shift])? else {
        return Ok(None);
    };
    let (gamma, beta) = (per_sample(scale, b, d)?, per_sample(shift, b, d)?);
    let (Some(gamma), Some(beta)) = (gamma, beta) else {
        return Ok(None);
    };
    let eps = eps as f32;
    let out = with_f32(x, |xs| {
        let mut out = vec![0.0f32; xs.len()];
        out.par_chunks_mut(TOKENS_PER_TASK * d)
            .zip(xs.par_chunks(TOKENS_PER_TASK * d))
            .enumerate()
            .for_each(|(task, (dst, src))| {
                let first = task * TOKENS_PER_TASK;
                for (t, (dst, src)) in dst.chunks_exact_mut(d).zip(src.chunks_exact(d)).enumerate()
                {
                    let sample = (first + t) / n;
                    let params = sample * d..(sample + 1) * d;
                    vectorize(NormRow {
                        src,
                        dst,
                        scale: &gamma[params.clone()],
                        shift: &beta[params],
                        eps,
                    });
                }
            });
        out
    })?;
    Ok(Some(tensor_from_vec(out, (b, n, d))?))
}

/// `x + y·gate` with `x`, `y` `(batch, tokens, dim)` and `gate` `(batch, 1, dim)`. `None` when
/// the kernel does not apply, as for [`modulated_layer_norm`].
pub fn gated_residual(x: &Tensor, y: &Tensor, gate: &Tensor) -> Result<Option<Tensor>> {
    let Some((b, n, d)) = applies(x, &[y, gate])? else {
        return Ok(None);
    };
    if y.dims() != x.dims() {
        return Ok(None);
    }
    let Some(gate) = per_sample(gate, b, d)? else {
        return Ok(None);
    };
    let out = with_f32(x, |xs| {
        with_f32(y, |ys| {
            let mut out = vec![0.0f32; xs.len()];
            out.par_chunks_mut(TOKENS_PER_TASK * d)
                .zip(xs.par_chunks(TOKENS_PER_TASK * d))
                .zip(ys.par_chunks(TOKENS_PER_TASK * d))
                .enumerate()
                .for_each(|(task, ((dst, xs), ys))| {
                    let first = task * TOKENS_PER_TASK;
                    for (t, ((dst, x), y)) in dst
                        .chunks_exact_mut(d)
                        .zip(xs.chunks_exact(d))
                        .zip(ys.chunks_exact(d))
                        .enumerate()
                    {
                        let sample = (first + t) / n;
                        let gate = &gate[sample * d..(sample + 1) * d];
                        for (((o, &x), &y), &g) in dst.iter_mut().zip(x).zip(y).zip(gate) {
                            *o = x + y * g;
                        }
                    }
                });
            out
        })
    })??;
    Ok(Some(tensor_from_vec(out, (b, n, d))?))
}

/// `(batch, tokens, dim)` of `x` when `x` and `others` are CPU `f32` tensors that track no
/// gradient and `x` has three dimensions.
fn applies(x: &Tensor, others: &[&Tensor]) -> Result<Option<(usize, usize, usize)>> {
    let usable = |t: &Tensor| is_cpu_f32(t) && !t.track_op();
    if !usable(x) || !others.iter().all(|t| usable(t)) || x.rank() != 3 {
        return Ok(None);
    }
    let (b, n, d) = x.dims3()?;
    Ok((n > 0 && d > 0).then_some((b, n, d)))
}

/// A per-sample parameter `(batch, 1, dim)` as `batch · dim` values, or `None` for another shape.
fn per_sample(t: &Tensor, b: usize, d: usize) -> Result<Option<Vec<f32>>> {
    if t.dims() != [b, 1, d] {
        return Ok(None);
    }
    Ok(Some(t.flatten_all()?.to_vec1::<f32>()?))
}

struct NormRow<'a> {
    src: &'a [f32],
    dst: &'a mut [f32],
    scale: &'a [f32],
    shift: &'a [f32],
    eps: f32,
}

impl Kernel for NormRow<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let d = self.src.len() as f32;
        let mean = lanes_sum(self.src.iter().copied()) / d;
        let var = lanes_sum(self.src.iter().map(|&v| (v - mean) * (v - mean))) / d;
        let inv = 1.0 / (var + self.eps).sqrt();
        for (((o, &v), &s), &t) in self
            .dst
            .iter_mut()
            .zip(self.src)
            .zip(self.scale)
            .zip(self.shift)
        {
            *o = (v - mean) * inv * (1.0 + s) + t;
        }
    }
}

/// A sum in eight interleaved partial sums, so that it vectorises.
#[inline(always)]
fn lanes_sum(values: impl Iterator<Item = f32>) -> f32 {
    let mut lanes = [0.0f32; 8];
    for (i, v) in values.enumerate() {
        lanes[i % 8] += v;
    }
    lanes.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device, Var};

    fn max_abs_difference(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn match_composed_candle_ops() {
        let dev = Device::Cpu;
        // More tokens than one task, not a multiple of it; a width that is not a multiple of 8.
        let (b, n, d) = (2, 150, 36);
        let x = (Tensor::randn(0f32, 2.0, (b, n, d), &dev).unwrap() + 0.7).unwrap();
        let scale = Tensor::randn(0f32, 0.5, (b, 1, d), &dev).unwrap();
        let shift = Tensor::randn(0f32, 0.5, (b, 1, d), &dev).unwrap();
        let eps = 1e-6;
        let got = modulated_layer_norm(&x, &scale, &shift, eps)
            .unwrap()
            .expect("applies");
        let mean = x.mean_keepdim(D::Minus1).unwrap();
        let centred = x.broadcast_sub(&mean).unwrap();
        let var = centred.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        let normed = centred
            .broadcast_div(&(var + eps).unwrap().sqrt().unwrap())
            .unwrap();
        let want = normed
            .broadcast_mul(&(&scale + 1.0).unwrap())
            .unwrap()
            .broadcast_add(&shift)
            .unwrap();
        assert!(max_abs_difference(&got, &want) < 1e-5);

        let y = Tensor::randn(0f32, 1.0, (b, n, d), &dev).unwrap();
        let got = gated_residual(&x, &y, &scale).unwrap().expect("applies");
        let want = (&x + y.broadcast_mul(&scale).unwrap()).unwrap();
        assert!(max_abs_difference(&got, &want) < 1e-6);
    }

    #[test]
    fn declines_gradients_and_other_shapes() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 4, 8), &dev).unwrap();
        let p = Tensor::zeros((1, 1, 8), candle_core::DType::F32, &dev).unwrap();
        let tracked = Var::from_tensor(&x).unwrap();
        assert!(
            modulated_layer_norm(tracked.as_tensor(), &p, &p, 1e-6)
                .unwrap()
                .is_none()
        );
        let wide = Tensor::zeros((1, 1, 9), candle_core::DType::F32, &dev).unwrap();
        assert!(
            modulated_layer_norm(&x, &wide, &wide, 1e-6)
                .unwrap()
                .is_none()
        );
        assert!(gated_residual(&x, &x, &wide).unwrap().is_none());
    }
}
