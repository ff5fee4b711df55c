//! DIAMOND's inner denoising network: noise-level and action conditioning, and a U-Net of
//! residual blocks with adaptive group norm and optional self-attention (DIAMOND's
//! `InnerModel` and `blocks.py`).
//!
//! Constructors take a `VarBuilder` whose `pp` paths mirror the PyTorch names, as in
//! candle-transformers. Convolutions are [`FastConv2d`] and group norms the fused
//! [`group_norm_affine`], so the network runs fast on the CPU and falls back to candle's ops on
//! other devices.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Conv2dConfig, Linear, VarBuilder};

use super::config::{DenoiserConfig, GROUP_NORM_EPS, attention_heads, level_blocks, norm_groups};
use crate::nn::{
    Activation, ChannelMap, ConvAlgorithm, FastConv2d, group_norm_affine, group_norm_map,
    group_norm_map_slices,
};

fn conv(
    vb: &VarBuilder,
    cin: usize,
    cout: usize,
    k: usize,
    padding: usize,
    stride: usize,
    algo: ConvAlgorithm,
) -> Result<FastConv2d> {
    let weight = vb.get((cout, cin, k, k), "weight")?;
    let bias = vb.get(cout, "bias")?;
    let cfg = Conv2dConfig {
        padding,
        stride,
        dilation: 1,
        groups: 1,
        cudnn_fwd_algo: None,
    };
    FastConv2d::new(weight, Some(bias), cfg, algo)
}

fn linear(vb: &VarBuilder, cin: usize, cout: usize) -> Result<Linear> {
    Ok(Linear::new(
        vb.get((cout, cin), "weight")?,
        Some(vb.get(cout, "bias")?),
    ))
}

/// Counts FLOPs of the convolutions of one forward pass, as they run.
#[derive(Clone, Copy, Debug, Default)]
struct FlopCounter(f64);

/// Collects the adaptive norms' linear layers while the network is built, so that one matrix
/// product per forward pass computes every norm's scale and shift (instead of ~50 tiny ones).
#[derive(Default)]
struct CondBank {
    weights: Vec<Tensor>,
    biases: Vec<Tensor>,
    width: usize,
}

impl CondBank {
    /// Registers a `(out, cond)` linear layer; returns where its outputs start.
    fn add(&mut self, weight: Tensor, bias: Tensor) -> Result<usize> {
        let offset = self.width;
        self.width += weight.dim(0)?;
        self.weights.push(weight);
        self.biases.push(bias);
        Ok(offset)
    }

    /// The stacked layer: weight transposed to `(cond, N)` and bias `(N)`.
    fn finish(self) -> Result<(Tensor, Tensor)> {
        let w = Tensor::cat(&self.weights, 0)?.t()?.contiguous()?;
        Ok((w, Tensor::cat(&self.biases, 0)?))
    }
}

/// Every adaptive norm's linear output for one forward pass: `B` rows of `width` values.
struct AdaParams {
    data: Vec<f32>,
    width: usize,
}

/// Adaptive group norm: group norm without affine parameters, then `x · (1 + scale) + shift`
/// with `scale, shift = linear(cond)` (the linear layer lives in the [`CondBank`]).
#[derive(Clone, Debug)]
struct AdaGroupNorm {
    offset: usize,
    channels: usize,
}

impl AdaGroupNorm {
    fn new(vb: VarBuilder, channels: usize, cond: usize, bank: &mut CondBank) -> Result<Self> {
        let vb = vb.pp("linear");
        let offset = bank.add(
            vb.get((2 * channels, cond), "weight")?,
            vb.get(2 * channels, "bias")?,
        )?;
        Ok(Self { offset, channels })
    }

    /// `silu(norm(x, cond))` as a per-channel map for the next convolution to apply.
    fn silu_map(&self, x: &Tensor, p: &AdaParams) -> Result<ChannelMap> {
        let (b, c) = (x.dim(0)?, self.channels);
        let mut gamma = Vec::with_capacity(b * c);
        let mut beta = Vec::with_capacity(b * c);
        for row in p.data.chunks_exact(p.width).take(b) {
            let row = &row[self.offset..][..2 * c];
            gamma.extend(row[..c].iter().map(|s| s + 1.0));
            beta.extend_from_slice(&row[c..]);
        }
        group_norm_map_slices(
            x,
            norm_groups(c),
            GROUP_NORM_EPS,
            &gamma,
            &beta,
            Activation::Silu,
        )
    }
}

/// Applies `f` to each row of `x` separately and stacks the results, so that a sample's result
/// never depends on the other samples in the batch (bit for bit).
fn per_sample(x: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let b = x.dim(0)?;
    if b == 1 {
        return f(x);
    }
    let rows = (0..b)
        .map(|i| f(&x.narrow(0, i, 1)?))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&rows, 0)
}

/// DIAMOND's `SelfAttention2d`: group norm, 1×1 QKV projection, multi-head attention over the
/// pixels, 1×1 output projection, added to the *normalised* input (as the reference does).
#[derive(Clone, Debug)]
struct SelfAttention2d {
    norm_weight: Tensor,
    norm_bias: Tensor,
    qkv: FastConv2d,
    out: FastConv2d,
    channels: usize,
    heads: usize,
}

impl SelfAttention2d {
    fn new(vb: VarBuilder, channels: usize, algo: ConvAlgorithm) -> Result<Self> {
        let norm = vb.pp("norm").pp("norm");
        Ok(Self {
            norm_weight: norm.get(channels, "weight")?,
            norm_bias: norm.get(channels, "bias")?,
            qkv: conv(&vb.pp("qkv_proj"), channels, 3 * channels, 1, 0, 1, algo)?,
            out: conv(&vb.pp("out_proj"), channels, channels, 1, 0, 1, algo)?,
            channels,
            heads: attention_heads(channels),
        })
    }

    fn forward(&self, x: &Tensor, flops: &mut FlopCounter) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let x = group_norm_affine(
            x,
            norm_groups(self.channels),
            GROUP_NORM_EPS,
            &self.norm_weight,
            &self.norm_bias,
            Activation::Identity,
        )?;
        flops.0 += self.qkv.flops(x.dims())?;
        let qkv = self.qkv.forward(&x)?;
        let hd = c / self.heads;
        let qkv = qkv
            .reshape((n, 3 * self.heads, hd, h * w))?
            .transpose(2, 3)?
            .contiguous()?;
        let q = qkv.narrow(1, 0, self.heads)?.contiguous()?;
        let k = qkv.narrow(1, self.heads, self.heads)?.contiguous()?;
        let v = qkv.narrow(1, 2 * self.heads, self.heads)?.contiguous()?;
        let scale = Tensor::new((hd as f32).sqrt(), x.device())?;
        let att = q.matmul(&k.t()?.contiguous()?)?.broadcast_div(&scale)?;
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v)?;
        flops.0 += 4.0 * (n * self.heads * h * w * h * w * hd) as f64;
        let y = y.transpose(2, 3)?.reshape((n, c, h, w))?;
        flops.0 += self.out.flops(y.dims())?;
        self.out.forward_add(&y, &x)
    }
}

/// DIAMOND's `ResBlock`: two (adaptive norm, SiLU, 3×3 conv) stages, a residual connection
/// (projected by a 1×1 conv when the width changes) and optional self-attention.
#[derive(Clone, Debug)]
struct ResBlock {
    proj: Option<FastConv2d>,
    norm1: AdaGroupNorm,
    conv1: FastConv2d,
    norm2: AdaGroupNorm,
    conv2: FastConv2d,
    attn: Option<SelfAttention2d>,
}

impl ResBlock {
    fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        cond: usize,
        attn: bool,
        algo: ConvAlgorithm,
        bank: &mut CondBank,
    ) -> Result<Self> {
        Ok(Self {
            proj: if cin != cout {
                Some(conv(&vb.pp("proj"), cin, cout, 1, 0, 1, algo)?)
            } else {
                None
            },
            norm1: AdaGroupNorm::new(vb.pp("norm1"), cin, cond, bank)?,
            conv1: conv(&vb.pp("conv1"), cin, cout, 3, 1, 1, algo)?,
            norm2: AdaGroupNorm::new(vb.pp("norm2"), cout, cond, bank)?,
            conv2: conv(&vb.pp("conv2"), cout, cout, 3, 1, 1, algo)?,
            attn: if attn {
                Some(SelfAttention2d::new(vb.pp("attn"), cout, algo)?)
            } else {
                None
            },
        })
    }

    fn forward(&self, x: &Tensor, cond: &AdaParams, flops: &mut FlopCounter) -> Result<Tensor> {
        let r = match &self.proj {
            Some(p) => {
                flops.0 += p.flops(x.dims())?;
                p.forward(x)?
            }
            None => x.clone(),
        };
        let map1 = self.norm1.silu_map(x, cond)?;
        flops.0 += self.conv1.flops(x.dims())?;
        let h = self.conv1.forward_mapped(x, Some(&map1), None)?;
        let map2 = self.norm2.silu_map(&h, cond)?;
        flops.0 += self.conv2.flops(h.dims())?;
        let h = self.conv2.forward_mapped(&h, Some(&map2), Some(&r))?;
        match &self.attn {
            Some(a) => a.forward(&h, flops),
            None => Ok(h),
        }
    }
}

/// DIAMOND's `UNet`.
#[derive(Clone, Debug)]
struct UNet {
    d_blocks: Vec<Vec<ResBlock>>,
    /// Deepest level first, as PyTorch stores them.
    u_blocks: Vec<Vec<ResBlock>>,
    mid_blocks: Vec<ResBlock>,
    /// `downsamples[i]` is applied before level `i + 1`.
    downsamples: Vec<FastConv2d>,
    /// `upsamples[k]` is applied before up level `k + 1` (counted from the deepest).
    upsamples: Vec<FastConv2d>,
}

impl UNet {
    fn new(
        vb: VarBuilder,
        cfg: &DenoiserConfig,
        algo: ConvAlgorithm,
        bank: &mut CondBank,
    ) -> Result<Self> {
        let cond = cfg.cond_channels;
        let levels = cfg.channels.len();
        let blocks = level_blocks(cfg);
        let mut d_blocks = Vec::with_capacity(levels);
        for (i, lb) in blocks.iter().enumerate() {
            let vb = vb.pp("d_blocks").pp(i).pp("resblocks");
            d_blocks.push(
                lb.down
                    .iter()
                    .enumerate()
                    .map(|(j, &(ci, co))| {
                        ResBlock::new(vb.pp(j), ci, co, cond, cfg.attn_depths[i], algo, bank)
                    })
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        let mut u_blocks = Vec::with_capacity(levels);
        for (k, lb) in blocks.iter().rev().enumerate() {
            let i = levels - 1 - k;
            let vb = vb.pp("u_blocks").pp(k).pp("resblocks");
            u_blocks.push(
                lb.up
                    .iter()
                    .enumerate()
                    .map(|(j, &(ci, co))| {
                        ResBlock::new(vb.pp(j), ci, co, cond, cfg.attn_depths[i], algo, bank)
                    })
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        let cl = cfg.channels[levels - 1];
        let mid_blocks = (0..2)
            .map(|j| {
                ResBlock::new(
                    vb.pp("mid_blocks").pp("resblocks").pp(j),
                    cl,
                    cl,
                    cond,
                    true,
                    algo,
                    bank,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let downsamples = (1..levels)
            .map(|i| {
                let c = cfg.channels[i - 1];
                conv(&vb.pp("downsamples").pp(i).pp("conv"), c, c, 3, 1, 2, algo)
            })
            .collect::<Result<Vec<_>>>()?;
        let upsamples = (1..levels)
            .map(|k| {
                let c = cfg.channels[levels - 1 - k];
                conv(&vb.pp("upsamples").pp(k).pp("conv"), c, c, 3, 1, 1, algo)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            d_blocks,
            u_blocks,
            mid_blocks,
            downsamples,
            upsamples,
        })
    }

    fn forward(&self, x: &Tensor, cond: &AdaParams, flops: &mut FlopCounter) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let unit = 1usize << self.downsamples.len();
        let (ph, pw) = (h.div_ceil(unit) * unit - h, w.div_ceil(unit) * unit - w);
        let mut x = x.pad_with_zeros(3, 0, pw)?.pad_with_zeros(2, 0, ph)?;

        let mut d_outputs: Vec<Vec<Tensor>> = Vec::with_capacity(self.d_blocks.len());
        for (i, blocks) in self.d_blocks.iter().enumerate() {
            let x_down = if i == 0 {
                x.clone()
            } else {
                let down = &self.downsamples[i - 1];
                flops.0 += down.flops(x.dims())?;
                down.forward(&x)?
            };
            let mut outs = vec![x_down.clone()];
            x = x_down;
            for block in blocks {
                x = block.forward(&x, cond, flops)?;
                outs.push(x.clone());
            }
            d_outputs.push(outs);
        }
        for block in &self.mid_blocks {
            x = block.forward(&x, cond, flops)?;
        }
        for (k, blocks) in self.u_blocks.iter().enumerate() {
            if k > 0 {
                let (_, _, hh, ww) = x.dims4()?;
                let up = x.upsample_nearest2d(2 * hh, 2 * ww)?;
                let conv = &self.upsamples[k - 1];
                flops.0 += conv.flops(up.dims())?;
                x = conv.forward(&up)?;
            }
            let skips = &d_outputs[self.d_blocks.len() - 1 - k];
            for (block, skip) in blocks.iter().zip(skips.iter().rev()) {
                let cat = Tensor::cat(&[&x, skip], 1)?;
                x = block.forward(&cat, cond, flops)?;
            }
        }
        x.narrow(2, 0, h)?.narrow(3, 0, w)
    }
}

/// DIAMOND's `InnerModel`: the network whose output the EDM preconditioning wraps.
#[derive(Clone, Debug)]
pub struct InnerModel {
    noise_emb: Tensor,
    act_emb: Tensor,
    cond_proj0: Linear,
    cond_proj2: Linear,
    conv_in: FastConv2d,
    unet: UNet,
    norm_out_weight: Tensor,
    norm_out_bias: Tensor,
    conv_out: FastConv2d,
    /// All adaptive norms' linear layers stacked: weight `(cond, N)`, bias `(N)`.
    ada_weight: Tensor,
    ada_bias: Tensor,
    cfg: DenoiserConfig,
}

impl InnerModel {
    /// Builds the network from tensors named as in PyTorch below `inner_model.` (`vb` is rooted
    /// there), using `algo` for every convolution.
    pub fn new(vb: VarBuilder, cfg: &DenoiserConfig, algo: ConvAlgorithm) -> Result<Self> {
        let cond = cfg.cond_channels;
        let c0 = cfg.channels[0];
        let norm_out = vb.pp("norm_out").pp("norm");
        let mut bank = CondBank::default();
        let unet = UNet::new(vb.pp("unet"), cfg, algo, &mut bank)?;
        let (ada_weight, ada_bias) = bank.finish()?;
        Ok(Self {
            noise_emb: vb.pp("noise_emb").get((1, cond / 2), "weight")?,
            act_emb: vb
                .pp("act_emb")
                .pp(0)
                .get((cfg.num_actions, cfg.action_embedding_dim()), "weight")?,
            cond_proj0: linear(&vb.pp("cond_proj").pp(0), cond, cond)?,
            cond_proj2: linear(&vb.pp("cond_proj").pp(2), cond, cond)?,
            conv_in: conv(
                &vb.pp("conv_in"),
                (cfg.num_steps_conditioning + 1) * cfg.img_channels,
                c0,
                3,
                1,
                1,
                algo,
            )?,
            unet,
            norm_out_weight: norm_out.get(c0, "weight")?,
            norm_out_bias: norm_out.get(c0, "bias")?,
            conv_out: conv(&vb.pp("conv_out"), c0, cfg.img_channels, 3, 1, 1, algo)?,
            ada_weight,
            ada_bias,
            cfg: cfg.clone(),
        })
    }

    /// The conditioning vector `(B, cond)` from `c_noise` (`(B,)` or `(1,)`) and the actions
    /// `(B, n)` (`u32`).
    fn conditioning(&self, c_noise: &Tensor, act: &Tensor) -> Result<Tensor> {
        let b = act.dim(0)?;
        let c_noise = c_noise.to_dtype(DType::F32)?;
        let c_noise = if c_noise.dim(0)? == 1 && b > 1 {
            c_noise.broadcast_as(b)?.contiguous()?
        } else {
            c_noise
        };
        let two_pi = Tensor::new(2.0 * std::f32::consts::PI, c_noise.device())?;
        let f = c_noise
            .broadcast_mul(&two_pi)?
            .unsqueeze(1)?
            .broadcast_mul(&self.noise_emb)?;
        let noise = Tensor::cat(&[f.cos()?, f.sin()?], D::Minus1)?;
        let n = act.dim(1)?;
        let actions = self
            .act_emb
            .index_select(&act.flatten_all()?, 0)?
            .reshape((b, n * self.cfg.action_embedding_dim()))?;
        let cond = (noise + actions)?;
        per_sample(&cond, |c| {
            let h = candle_nn::ops::silu(&self.cond_proj0.forward(c)?)?;
            self.cond_proj2.forward(&h)
        })
    }

    /// The raw network output for the rescaled noisy frame `(B, C, H, W)`, `c_noise` and the
    /// rescaled conditioning frames `(B, n·C, H, W)` with their actions `(B, n)` (`u32`).
    /// Returns the output and the FLOPs its convolutions and attention took.
    pub fn forward_counted(
        &self,
        noisy: &Tensor,
        c_noise: &Tensor,
        obs: &Tensor,
        act: &Tensor,
    ) -> Result<(Tensor, f64)> {
        let mut flops = FlopCounter::default();
        let cond = self.conditioning(c_noise, act)?;
        let ada = per_sample(&cond, |c| {
            c.matmul(&self.ada_weight)?.broadcast_add(&self.ada_bias)
        })?;
        let ada = AdaParams {
            width: ada.dim(1)?,
            data: ada.flatten_all()?.to_vec1::<f32>()?,
        };
        let x = Tensor::cat(&[obs, noisy], 1)?;
        flops.0 += self.conv_in.flops(x.dims())?;
        let x = self.conv_in.forward(&x)?;
        let x = self.unet.forward(&x, &ada, &mut flops)?;
        let map = group_norm_map(
            &x,
            norm_groups(self.cfg.channels[0]),
            GROUP_NORM_EPS,
            &self.norm_out_weight,
            &self.norm_out_bias,
            Activation::Silu,
        )?;
        flops.0 += self.conv_out.flops(x.dims())?;
        let x = self.conv_out.forward_mapped(&x, Some(&map), None)?;
        Ok((x, flops.0))
    }

    /// [`forward_counted`](Self::forward_counted) without the count.
    pub fn forward(
        &self,
        noisy: &Tensor,
        c_noise: &Tensor,
        obs: &Tensor,
        act: &Tensor,
    ) -> Result<Tensor> {
        Ok(self.forward_counted(noisy, c_noise, obs, act)?.0)
    }
}
