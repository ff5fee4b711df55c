//! Transformer building blocks of the default model: multi-head self-attention over a grid of
//! tokens, an MLP, and a pre-norm block that can be modulated by a conditioning vector
//! (adaptive layer norm, as in DiT), which is how actions and director controls steer the
//! dynamics. Everything is matrix products, which candle runs near the CPU's peak.

use candle_core::{Module, Result, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder, layer_norm, linear};

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
            qkv: linear(dim, 3 * dim, vb.pp("qkv"))?,
            proj: linear(dim, dim, vb.pp("proj"))?,
            heads,
        })
    }
}

impl Module for Attention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let hd = d / self.heads;
        // (b, n, 3, heads, hd) -> (3, b, heads, n, hd)
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, n, 3, self.heads, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let q = (qkv.get(0)? * (hd as f64).powf(-0.5))?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let attn = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
        let out = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
        self.proj.forward(&out)
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
            fc1: linear(dim, hidden, vb.pp("fc1"))?,
            fc2: linear(hidden, dim, vb.pp("fc2"))?,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(x)?.gelu()?)
    }
}

/// A pre-norm transformer block. Without conditioning its norms have learned affine parameters;
/// with conditioning (`cond_dim > 0`) a linear map of the condition gives each sub-layer a shift,
/// a scale and a gate (zero-initialised gate means the block starts as the identity).
#[derive(Clone, Debug)]
pub struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
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
        let norm = |name: &str| -> Result<LayerNorm> {
            if conditioned {
                // Affine-free: the modulation provides scale and shift.
                Ok(LayerNorm::new_no_bias(
                    Tensor::ones(dim, vb.dtype(), vb.device())?,
                    1e-6,
                ))
            } else {
                layer_norm(dim, 1e-6, vb.pp(name))
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
                let m = modulation.forward(cond)?.reshape((b, 6, 1, d))?;
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
