//! A linear layer's forward pass for inference on the CPU: the bias written first and the
//! matrix product accumulated onto it, in blocks of rows on the calling thread's rayon pool.
//!
//! candle's `Linear` adds the bias in a separate pass, and for outputs of 65,536 elements or
//! more (the transformer's `qkv` and first MLP layer at 256 tokens) that pass runs on candle's
//! own global pool, sized from the machine's cores rather than from the pool the caller runs
//! in, so one inference thread still woke a second core and waited for it.

use candle_core::{Module, Result, Tensor};
use candle_nn::Linear;
use rayon::prelude::*;

use super::cpu::{is_cpu_f32, tensor_from_vec, with_f32};
use super::gemm::{MatMut, MatRef, gemm};

/// Rows of the output per parallel task.
const ROWS_PER_TASK: usize = 64;

/// `layer.forward(x)`: the fused kernel for CPU `f32` input that tracks no gradient (and a
/// CPU `f32` layer), candle's forward otherwise. `x` is `(…, in)`; the result `(…, out)`.
pub fn linear(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    let w = layer.weight();
    if !is_cpu_f32(x) || !is_cpu_f32(w) || x.track_op() || w.track_op() {
        return layer.forward(x);
    }
    let (n, k) = w.dims2()?;
    let dims = x.dims();
    if dims.last() != Some(&k) {
        // candle reports the shape mismatch in its own words.
        return layer.forward(x);
    }
    let m = x.elem_count() / k.max(1);
    let bias = match layer.bias() {
        Some(b) => Some(b.flatten_all()?.to_vec1::<f32>()?),
        None => None,
    };
    if bias.as_ref().is_some_and(|b| b.len() != n) {
        return layer.forward(x);
    }
    let mut out = vec![0.0f32; m * n];
    with_f32(x, |xs| {
        with_f32(w, |ws| {
            out.par_chunks_mut(ROWS_PER_TASK * n.max(1))
                .enumerate()
                .for_each(|(task, dst)| {
                    let rows = dst.len() / n.max(1);
                    if let Some(bias) = &bias {
                        for row in dst.chunks_exact_mut(n) {
                            row.copy_from_slice(bias);
                        }
                    }
                    let lhs = MatRef::row_major(xs, task * ROWS_PER_TASK * k, rows, k, k);
                    // The weight is `(out, in)` row-major: read as `(in, out)` it is the
                    // transpose, column stride `in`.
                    let rhs = MatRef {
                        data: ws,
                        offset: 0,
                        rows: k,
                        cols: n,
                        row_stride: 1,
                        col_stride: k,
                    };
                    let dst = MatMut {
                        data: dst,
                        offset: 0,
                        rows,
                        cols: n,
                        row_stride: n,
                    };
                    gemm(dst, lhs, rhs, bias.is_some());
                });
        })
    })??;
    let mut shape = dims.to_vec();
    *shape.last_mut().expect("x has a last dimension") = n;
    tensor_from_vec(out, shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::max_abs_difference;
    use candle_core::{Device, Var};

    fn layer(inputs: usize, outputs: usize, bias: bool) -> Linear {
        let w = Tensor::randn(0f32, 0.5, (outputs, inputs), &Device::Cpu).unwrap();
        let b = bias.then(|| Tensor::randn(0f32, 0.5, outputs, &Device::Cpu).unwrap());
        Linear::new(w, b)
    }

    #[test]
    fn matches_candles_linear() {
        // More rows than one task (and not a multiple of it), a batch dimension, both with and
        // without a bias.
        for bias in [true, false] {
            let l = layer(37, 70, bias);
            let x = Tensor::randn(0f32, 1.0, (2, 131, 37), &Device::Cpu).unwrap();
            let got = linear(&l, &x).unwrap();
            let want = l.forward(&x).unwrap();
            assert_eq!(got.dims(), &[2, 131, 70]);
            assert!(max_abs_difference(&got, &want) < 1e-4);
        }
        // A non-contiguous input.
        let l = layer(16, 8, true);
        let x = Tensor::randn(0f32, 1.0, (16, 5), &Device::Cpu)
            .unwrap()
            .t()
            .unwrap();
        let got = linear(&l, &x).unwrap();
        assert!(max_abs_difference(&got, &l.forward(&x).unwrap()) < 1e-4);
    }

    #[test]
    fn inputs_that_track_gradients_get_candles_forward() {
        let l = layer(4, 3, true);
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 4), &Device::Cpu).unwrap()).unwrap();
        let y = linear(&l, x.as_tensor()).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(x.as_tensor()).is_some());
    }

    #[test]
    fn a_wrong_width_is_candles_error() {
        let l = layer(4, 3, true);
        let x = Tensor::zeros((2, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(linear(&l, &x).is_err());
    }
}
