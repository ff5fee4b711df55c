//! Multi-head self-attention for inference on the CPU, read straight from the packed `qkv`
//! projection and written straight into the `(batch, tokens, dim)` layout the output
//! projection reads.
//!
//! Composed from candle ops, attention permutes `qkv` into per-head copies, runs two batched
//! matrix products through candle (which asks the operating system for the core count on every
//! call) and transposes the result back: copies and calls that cost as much as the products at
//! 256 tokens. Here each head of each block of query rows is two strided matrix products and a
//! softmax over one row of scores at a time.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use super::activation::softmax_row;
use super::cpu::{Scratch, is_cpu_f32, tensor_from_vec, with_f32, with_scratch};
use super::gemm::{MatMut, MatRef, gemm};

/// Query rows per parallel task: at 256 tokens, four tasks a sample.
const QUERY_ROWS: usize = 64;

/// `softmax(q·kᵀ / √head_dim)·v` for every head, from `qkv` `(batch, tokens, 3·dim)` laid out
/// as `(3, heads, head_dim)` along its last dimension (queries, then keys, then values, each
/// head's `head_dim` channels together). Returns `(batch, tokens, dim)` with each head's output
/// in its own `head_dim` channels. `None` when the kernel does not apply (not a CPU `f32`
/// tensor, a gradient tracked, or a width that does not split into `heads`): the caller then
/// composes candle's ops.
pub fn fused_attention(qkv: &Tensor, heads: usize) -> Result<Option<Tensor>> {
    if !is_cpu_f32(qkv) || qkv.track_op() || heads == 0 {
        return Ok(None);
    }
    let (b, n, three_d) = qkv.dims3()?;
    if three_d % (3 * heads) != 0 || n == 0 {
        return Ok(None);
    }
    let d = three_d / 3;
    let hd = d / heads;
    let scale = (hd as f32).powf(-0.5);
    let mut out = vec![0.0f32; b * n * d];
    with_f32(qkv, |src| {
        // One task per block of query rows of one sample (the block's output rows are its
        // own); within it, heads one after another, each writing its `head_dim` columns.
        out.par_chunks_mut(n * d)
            .enumerate()
            .flat_map(|(sample, rows)| {
                rows.par_chunks_mut(QUERY_ROWS * d)
                    .enumerate()
                    .map(move |(block, dst)| (sample, block * QUERY_ROWS, dst))
            })
            .for_each(|(sample, first, dst)| {
                let rows = dst.len() / d;
                let base = sample * n * three_d;
                with_scratch(Scratch::Task, rows * n, |scores| {
                    let mut weights = vec![0.0f32; n];
                    for h in 0..heads {
                        let q = MatRef::row_major(
                            src,
                            base + first * three_d + h * hd,
                            rows,
                            hd,
                            three_d,
                        );
                        let k_t = MatRef {
                            data: src,
                            offset: base + d + h * hd,
                            rows: hd,
                            cols: n,
                            row_stride: 1,
                            col_stride: three_d,
                        };
                        let s = MatMut {
                            data: scores,
                            offset: 0,
                            rows,
                            cols: n,
                            row_stride: n,
                        };
                        gemm(s, q, k_t, false);
                        for row in scores.chunks_exact_mut(n) {
                            softmax_row(row, &mut weights, scale);
                            row.copy_from_slice(&weights);
                        }
                        let p = MatRef::row_major(scores, 0, rows, n, n);
                        let v = MatRef::row_major(src, base + 2 * d + h * hd, n, hd, three_d);
                        let o = MatMut {
                            data: dst,
                            offset: h * hd,
                            rows,
                            cols: hd,
                            row_stride: d,
                        };
                        gemm(o, p, v, false);
                    }
                });
            });
    })?;
    Ok(Some(tensor_from_vec(out, (b, n, d))?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::max_abs_difference;
    use candle_core::{D, Device};

    /// Attention composed from candle ops, the way the default model's blocks compose it.
    fn composed(qkv: &Tensor, heads: usize) -> Tensor {
        let (b, n, three_d) = qkv.dims3().unwrap();
        let d = three_d / 3;
        let hd = d / heads;
        let qkv = qkv
            .reshape((b, n, 3, heads, hd))
            .unwrap()
            .permute((2, 0, 3, 1, 4))
            .unwrap();
        let q = (qkv.get(0).unwrap() * (hd as f64).powf(-0.5))
            .unwrap()
            .contiguous()
            .unwrap();
        let k = qkv.get(1).unwrap().contiguous().unwrap();
        let v = qkv.get(2).unwrap().contiguous().unwrap();
        let scores = q.matmul(&k.t().unwrap()).unwrap();
        let attn = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
        attn.matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, n, d))
            .unwrap()
    }

    #[test]
    fn matches_composed_candle_ops() {
        // Sequences shorter than, equal to and longer than a task's block of query rows.
        for (b, n, heads, hd) in [(2, 37, 4, 8), (1, 64, 2, 16), (3, 5, 1, 3), (2, 150, 2, 4)] {
            let qkv = Tensor::randn(0f32, 1.5, (b, n, 3 * heads * hd), &Device::Cpu).unwrap();
            let got = fused_attention(&qkv, heads).unwrap().expect("applies");
            let want = composed(&qkv, heads);
            let diff = max_abs_difference(&got, &want);
            assert!(diff < 1e-5, "{b}×{n}, {heads} heads of {hd}: {diff}");
        }
    }

    #[test]
    fn declines_what_it_cannot_do() {
        let qkv = Tensor::zeros((1, 4, 10), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(fused_attention(&qkv, 4).unwrap().is_none());
        let var =
            candle_core::Var::zeros((1, 4, 12), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(fused_attention(var.as_tensor(), 2).unwrap().is_none());
    }
}
