//! GELU and the last-dimension softmax for inference on the CPU, vectorised, on the calling
//! thread's rayon pool.
//!
//! candle computes GELU with the C library's `tanhf` one element at a time and, for tensors of
//! 65,536 elements or more, on a global pool of its own sized from the machine's cores, not
//! from the pool the caller runs in: with one inference thread the transformer's MLP still
//! woke a second core and waited for it (a fifth of a frame's time was that wait). Its softmax
//! calls `expf` per element. Both kernels here use [`fast_exp`] and plain loops that compile
//! to SIMD. They have no backward pass: callers use them only where no gradient is tracked.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use super::cpu::{Kernel, is_cpu_f32, tensor_from_vec, vectorize, with_f32};
use super::norm::fast_exp;

/// Elements per parallel task: big enough that a task is worth handing out.
const TASK: usize = 16_384;

/// `sqrt(2 / π)`, the tanh approximation's constant.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// GELU in its tanh form, `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (candle's `gelu`),
/// written as `x · sigmoid(2·√(2/π)·(x + 0.044715·x³))`, which is the same function.
#[inline(always)]
pub fn fast_gelu(x: f32) -> f32 {
    let inner = 2.0 * SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x);
    x / (1.0 + fast_exp(-inner))
}

/// GELU (tanh form) of any tensor: the vectorised kernel on CPU `f32` tensors that track no
/// gradient, candle's op otherwise.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if !is_cpu_f32(x) || x.track_op() {
        return x.gelu();
    }
    let out = with_f32(x, |xs| {
        let mut out = vec![0.0f32; xs.len()];
        out.par_chunks_mut(TASK)
            .zip(xs.par_chunks(TASK))
            .for_each(|(d, s)| vectorize(Gelu { src: s, dst: d }));
        out
    })?;
    tensor_from_vec(out, x.dims())
}

/// Softmax over the last dimension: the vectorised kernel on CPU `f32` tensors that track no
/// gradient, candle-nn's fused op otherwise (which has no backward pass either; training
/// composes it, see `default_model::blocks`).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if !is_cpu_f32(x) || x.track_op() {
        return candle_nn::ops::softmax_last_dim(x);
    }
    let row = x.dims().last().copied().unwrap_or(1).max(1);
    let rows_per_task = (TASK / row).max(1);
    let out = with_f32(x, |xs| {
        let mut out = vec![0.0f32; xs.len()];
        out.par_chunks_mut(rows_per_task * row)
            .zip(xs.par_chunks(rows_per_task * row))
            .for_each(|(d, s)| {
                for (d, s) in d.chunks_exact_mut(row).zip(s.chunks_exact(row)) {
                    softmax_row(s, d, 1.0);
                }
            });
        out
    })?;
    tensor_from_vec(out, x.dims())
}

struct Gelu<'a> {
    src: &'a [f32],
    dst: &'a mut [f32],
}

impl Kernel for Gelu<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        for (d, &s) in self.dst.iter_mut().zip(self.src) {
            *d = fast_gelu(s);
        }
    }
}

/// `dst = softmax(scale · src)` for one row; `scale` must be positive.
pub(crate) fn softmax_row(src: &[f32], dst: &mut [f32], scale: f32) {
    vectorize(SoftmaxRow { src, dst, scale });
}

struct SoftmaxRow<'a> {
    src: &'a [f32],
    dst: &'a mut [f32],
    scale: f32,
}

impl Kernel for SoftmaxRow<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        // Eight running maxima and sums, so that both reductions vectorise (one running value
        // would have to stay in order).
        let mut lanes = [f32::NEG_INFINITY; 8];
        let mut src = self.src.chunks_exact(8);
        for s in &mut src {
            for i in 0..8 {
                lanes[i] = lanes[i].max(s[i]);
            }
        }
        let max = src
            .remainder()
            .iter()
            .chain(&lanes)
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        for (d, &s) in self.dst.iter_mut().zip(self.src) {
            *d = fast_exp((s - max) * self.scale);
        }
        let mut sums = [0.0f32; 8];
        let mut dst = self.dst.chunks_exact(8);
        for d in &mut dst {
            for i in 0..8 {
                sums[i] += d[i];
            }
        }
        let sum: f32 = sums.iter().chain(dst.remainder()).sum();
        let inverse = 1.0 / sum;
        for d in self.dst.iter_mut() {
            *d *= inverse;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::max_abs_difference;
    use candle_core::{Device, Var};

    #[test]
    fn gelu_matches_candles_tanh_form() {
        // Wide enough to cover both tails, big enough to take candle's parallel path.
        let x = Tensor::randn(0f32, 4.0, (3, 257, 131), &Device::Cpu).unwrap();
        let got = gelu(&x).unwrap();
        let want = x.gelu().unwrap();
        assert!(max_abs_difference(&got, &want) < 2e-6);
        assert!(fast_gelu(-100.0).abs() < 1e-30);
        assert!((fast_gelu(100.0) - 100.0).abs() < 1e-4);
        assert_eq!(fast_gelu(0.0), 0.0);
    }

    #[test]
    fn softmax_matches_candle_nns() {
        // A row length that is not a multiple of 8, and rows with a large spread.
        let x = Tensor::randn(0f32, 6.0, (2, 4, 37, 29), &Device::Cpu).unwrap();
        let got = softmax_last_dim(&x).unwrap();
        let want = candle_nn::ops::softmax_last_dim(&x).unwrap();
        assert!(max_abs_difference(&got, &want) < 1e-6);
        let sums = got
            .sum(3)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    }

    #[test]
    fn tensors_that_track_gradients_get_candles_ops() {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 8), &Device::Cpu).unwrap()).unwrap();
        let y = gelu(x.as_tensor()).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(x.as_tensor()).is_some());
    }
}
