//! Transformer building blocks of the default model: multi-head self-attention over a grid of
//! tokens, an MLP, and a pre-norm block that can be modulated by a conditioning vector
//! (adaptive layer norm, as in DiT), which is how actions and director controls steer the
//! dynamics. Everything is matrix products, which candle runs near the CPU's peak.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::nn::{fused_attention, gelu, linear, softmax_last_dim};

/// Multi-head self-attention over `(batch, tokens, dim)`.
#[derive(Clone, Debug)]
pub struct Attention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
}

impl Attention {
    /// Weights: `qkv` (dim → 3·dim) and `proj` (dim → dim).
    pub fn new(dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            qkv: candle_nn::linear(dim, 3 * dim, vb.pp("qkv"))?,
            proj: candle_nn::linear(dim, dim, vb.pp("proj"))?,
            heads,
        })
    }
}

impl Module for Attention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let hd = d / self.heads;
        let qkv = linear(&self.qkv, x)?;
        if let Some(out) = fused_attention(&qkv, self.heads)? {
            return linear(&self.proj, &out);
        }
        // (b, n, 3, heads, hd) -> (3, b, heads, n, hd)
        let qkv = qkv
            .reshape((b, n, 3, self.heads, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let q = (qkv.get(0)? * (hd as f64).powf(-0.5))?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scores = q.matmul(&k.t()?)?;
        // candle-nn's fused softmax has no backward pass: train through the composed one.
        let attn = if scores.track_op() {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            softmax_last_dim(&scores)?
        };
        let out = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
        linear(&self.proj, &out)
    }
}

/// Two-layer MLP with a GELU.
#[derive(Clone, Debug)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    /// Weights: `fc1` (dim → hidden), `fc2` (hidden → dim).
    pub fn new(dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: candle_nn::linear(dim, hidden, vb.pp("fc1"))?,
            fc2: candle_nn::linear(hidden, dim, vb.pp("fc2"))?,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        linear(&self.fc2, &gelu(&linear(&self.fc1, x)?)?)
    }
}

/// A pre-norm transformer block. Without conditioning its norms have learned affine parameters;
/// with conditioning (`cond_dim > 0`) a linear map of the condition gives each sub-layer a shift,
/// a scale and a gate (zero-initialised gate means the block starts as the identity).
#[derive(Clone, Debug)]
pub struct Block {
    norm1: Norm,
    attn: Attention,
    norm2: Norm,
    mlp: Mlp,
    modulation: Option<Linear>,
}

impl Block {
    /// Weights: `norm1`, `attn`, `norm2`, `mlp`, and `modulation` (cond → 6·dim) when conditioned.
    pub fn new(
        dim: usize,
        heads: usize,
        mlp_ratio: usize,
        cond_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let conditioned = cond_dim > 0;
        let norm = |name: &str| -> Result<Norm> {
            if conditioned {
                // Affine-free: the modulation provides scale and shift.
                Ok(Norm::without_affine(1e-6))
            } else {
                Norm::new(dim, 1e-6, vb.pp(name))
            }
        };
        let modulation = if conditioned {
            let init = candle_nn::Init::Const(0.0);
            let w = vb
                .pp("modulation")
                .get_with_hints((6 * dim, cond_dim), "weight", init)?;
            let b = vb.pp("modulation").get_with_hints(6 * dim, "bias", init)?;
            Some(Linear::new(w, Some(b)))
        } else {
            None
        };
        Ok(Self {
            norm1: norm("norm1")?,
            attn: Attention::new(dim, heads, vb.pp("attn"))?,
            norm2: norm("norm2")?,
            mlp: Mlp::new(dim, dim * mlp_ratio, vb.pp("mlp"))?,
            modulation,
        })
    }

    /// `x`: `(batch, tokens, dim)`; `cond`: `(batch, cond_dim)` for conditioned blocks.
    pub fn forward(&self, x: &Tensor, cond: Option<&Tensor>) -> Result<Tensor> {
        match (&self.modulation, cond) {
            (Some(modulation), Some(cond)) => {
                // (batch, 6, 1, dim): shift, scale, gate for attention, then for the MLP.
                let (b, _, d) = x.dims3()?;
                let m = linear(modulation, cond)?.reshape((b, 6, 1, d))?;
                let part = |i: usize| m.narrow(1, i, 1)?.squeeze(1);
                let (shift1, scale1, gate1) = (part(0)?, part(1)?, part(2)?);
                let (shift2, scale2, gate2) = (part(3)?, part(4)?, part(5)?);
                let h = self
                    .norm1
                    .forward(x)?
                    .broadcast_mul(&(scale1 + 1.0)?)?
                    .broadcast_add(&shift1)?;
                let x = (x + self.attn.forward(&h)?.broadcast_mul(&gate1)?)?;
                let h = self
                    .norm2
                    .forward(&x)?
                    .broadcast_mul(&(scale2 + 1.0)?)?
                    .broadcast_add(&shift2)?;
                x + self.mlp.forward(&h)?.broadcast_mul(&gate2)?
            }
            _ => {
                let x = (x + self.attn.forward(&self.norm1.forward(x)?)?)?;
                &x + self.mlp.forward(&self.norm2.forward(&x)?)?
            }
        }
    }
}

/// FLOPs of one block over `tokens` tokens of width `dim` (multiply-adds count two).
pub fn block_flops(tokens: usize, dim: usize, mlp_ratio: usize, cond_dim: usize) -> u64 {
    let (n, d) = (tokens as u64, dim as u64);
    let qkv_proj = 2 * n * d * 4 * d;
    let attention = 2 * 2 * n * n * d;
    let mlp = 2 * 2 * n * d * d * mlp_ratio as u64;
    let modulation = 2 * cond_dim as u64 * 6 * d;
    qkv_proj + attention + mlp + modulation
}

/// Layer norm over the last dimension, built from differentiable tensor operations.
///
/// candle-nn's `LayerNorm` switches to a fused kernel for contiguous input with a bias, and
/// that kernel has no backward pass: gradients silently stop there. The first trained default
/// model lost the training of every layer below such a norm to it. This computes the same
/// function (so weights trained either way load unchanged) and passes gradients on.
#[derive(Clone, Debug)]
pub struct Norm {
    affine: Option<(Tensor, Tensor)>,
    eps: f64,
}

impl Norm {
    /// A norm with a learned scale (`weight`, starting at 1) and shift (`bias`, starting at 0).
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?;
        let bias = vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self {
            affine: Some((weight, bias)),
            eps,
        })
    }

    /// A norm without scale and shift (adaptive layer norm supplies them).
    pub fn without_affine(eps: f64) -> Self {
        Self { affine: None, eps }
    }
}

impl Module for Norm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let y = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        match &self.affine {
            Some((w, b)) => y.broadcast_mul(w)?.broadcast_add(b),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    use crate::nn::max_abs_difference;

    /// A block of width 32 (4 heads, MLP ratio 4) with random weights, as variables in the
    /// returned map. Zero-initialised modulation would hide the conditioned path, so every
    /// weight is randomised.
    fn random_block(cond_dim: usize) -> (Block, VarMap) {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let block = Block::new(32, 4, 4, cond_dim, vb).unwrap();
        for var in varmap.all_vars() {
            var.set(&Tensor::randn(0f32, 0.3, var.dims(), &dev).unwrap())
                .unwrap();
        }
        (block, varmap)
    }

    /// The weights of `varmap` as plain tensors, as a loaded model's are (variables track
    /// gradients, which sends every op to candle's composed path).
    fn plain_weights(varmap: &VarMap) -> VarBuilder<'static> {
        let tensors = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu)
    }

    /// The inference kernels (`crate::nn`'s fused linear, attention, GELU) compute what the
    /// composed, differentiable ops compute: a block run on a plain tensor and on one that
    /// tracks gradients (which takes candle's ops) agree, with and without conditioning.
    #[test]
    fn inference_kernels_match_the_training_ops() {
        let dev = Device::Cpu;
        for cond_dim in [0, 6] {
            let (block, varmap) = random_block(cond_dim);
            let x = Tensor::randn(0f32, 1.0, (2, 40, 32), &dev).unwrap();
            let cond =
                (cond_dim > 0).then(|| Tensor::randn(0f32, 1.0, (2, cond_dim), &dev).unwrap());
            let tracked = Var::from_tensor(&x).unwrap();
            let want = block.forward(tracked.as_tensor(), cond.as_ref()).unwrap();
            assert!(want.track_op());
            // The weights are variables too: run the plain input through a copy whose weights
            // are plain tensors, as a loaded model's are.
            let plain = plain_weights(&varmap);
            let fast = Block::new(32, 4, 4, cond_dim, plain).unwrap();
            let got = fast.forward(&x, cond.as_ref()).unwrap();
            assert!(!got.track_op());
            let diff = max_abs_difference(&got, &want.detach());
            assert!(diff < 1e-4, "conditioned {}: {diff}", cond_dim > 0);
        }
    }

    /// The inference kernels split work by rows, so a frame does not depend on how many
    /// threads computed it (a saved session continues bit for bit on another machine).
    #[test]
    fn inference_kernels_give_the_same_bits_on_any_thread_count() {
        let dev = Device::Cpu;
        let (_, varmap) = random_block(6);
        let plain = plain_weights(&varmap);
        let block = Block::new(32, 4, 4, 6, plain).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 300, 32), &dev).unwrap();
        let cond = Tensor::randn(0f32, 1.0, (2, 6), &dev).unwrap();
        let run = |threads: usize| -> Vec<f32> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| block.forward(&x, Some(&cond)))
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let one = run(1);
        assert!(one.iter().all(|v| v.is_finite()));
        assert_eq!(one, run(3));
    }
}
