//! Fast CPU 2-D convolution on candle tensors, without im2col.
//!
//! candle's CPU `conv2d` copies every input pixel `k·k` times into an im2col matrix before its
//! matrix product, and reaches about a tenth of the machine's matrix-product rate. This module
//! computes the same convolution (NCHW input, OIHW weights, symmetric zero padding, stride,
//! dilation, groups) with three copy-light algorithms, chosen per layer:
//!
//! - **Direct (shifted slices).** The input is zero-padded once and split into `stride²` phase
//!   planes, each flattened row by row. For one kernel tap `(ky, kx)`, the pixels it reads for
//!   every output position form a *contiguous offset slice* of one phase plane, if the output is
//!   computed on a grid as wide as the plane (the few extra columns are discarded). So the
//!   convolution is `k·k` accumulating matrix products `W_tap (Cout×Cin) · X[:, off..off+N]`, with
//!   no im2col. A 3×3 stride-1 convolution on a 64×64 image wastes 2 of 66 columns.
//! - **Winograd** F(2×2, 3×3) and F(4×4, 3×3) for 3×3 stride-1 convolutions: the input is cut
//!   into overlapping tiles, transformed, multiplied by the transformed filters in `(m+2)²`
//!   independent matrix products, and transformed back. This needs 2.25× (F(2)) or 4× (F(4))
//!   fewer multiplications than the direct form, at a small cost in rounding error (measured by
//!   the tests against candle's `conv2d`). These kernels live in `nn/winograd.rs`.
//! - **1×1** convolutions are plain matrix products on the input.
//!
//! All matrix products go through the `gemm` crate (candle's own CPU backend) single-threaded per
//! block, with blocks spread over the current rayon pool. Block sizes do not depend on the number
//! of threads, so results are bit-identical whatever the pool size. Tensors on other devices, or
//! of other dtypes, fall back to candle's `conv2d`.

use candle_core::{Module, Result, Tensor};
use candle_nn::Conv2dConfig;
use rayon::prelude::*;

use super::cpu::{Scratch, is_cpu_f32, tensor_from_vec, vectorize, with_f32, with_scratch};
use super::gemm::{MatMut, MatRef, gemm};
use super::geometry::{Epilogue, Geom, finish_planes};
use super::norm::{ChannelMap, MapSlice};
use super::winograd::{F2, F4, winograd, winograd_filters};

/// How a convolution is computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvAlgorithm {
    /// Pick per layer: Winograd F(4×4) or F(2×2) for 3×3 stride-1 convolutions on images large
    /// enough for the tiles to pay off, a plain matrix product for 1×1, the direct
    /// shifted-slice form otherwise.
    #[default]
    Auto,
    /// Like [`Auto`](Self::Auto) but never Winograd F(4×4), whose rounding error is about ten
    /// times that of the direct form: Winograd F(2×2) where it applies, else direct.
    AutoPrecise,
    /// Always the direct shifted-slice form (closest to the textbook sum, slowest of the fast
    /// ones for 3×3 convolutions).
    Direct,
    /// Winograd F(2×2, 3×3) where it applies (3×3, stride 1, dilation 1, one group), else direct.
    Winograd2,
    /// Winograd F(4×4, 3×3) where it applies, else direct.
    Winograd4,
    /// candle's own `conv2d` (the reference; also what non-CPU devices always use).
    Candle,
}

/// The algorithm actually used for one layer shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Candle,
    Direct,
    OneByOne,
    Winograd2,
    Winograd4,
}

/// Output pixels from which [`ConvAlgorithm::Auto`] uses Winograd F(4×4) (32×32).
const WINOGRAD4_MIN_PIXELS: usize = 32 * 32;
/// Output pixels from which the automatic choices use Winograd F(2×2) (16×16).
const WINOGRAD2_MIN_PIXELS: usize = 16 * 16;
/// Output columns (of the widened grid) per block of the direct form.
const DIRECT_BLOCK: usize = 512;
/// Output columns per block of a 1×1 convolution.
const ONE_BY_ONE_BLOCK: usize = 1024;

/// Multiply-adds × 2 of a convolution of input shape `(b, cin, h, w)` with weights `(cout,
/// cin/groups, kh, kw)`: the usual FLOP count, independent of the algorithm.
pub fn conv2d_flops(x_dims: &[usize], w_dims: &[usize], cfg: &Conv2dConfig) -> Result<f64> {
    let g = Geom::new(x_dims, w_dims, cfg)?;
    Ok(2.0 * (g.b * g.cout * g.ho * g.wo) as f64 * (g.cin / g.groups * g.kh * g.kw) as f64)
}

/// A convolution layer with weights prepared for the fast CPU kernels (repacked per tap, and
/// Winograd-transformed where the layer uses Winograd), like `candle_nn::Conv2d` but faster on
/// the CPU. On other devices it calls candle's `conv2d`.
#[derive(Clone, Debug)]
pub struct FastConv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: Conv2dConfig,
    algo: ConvAlgorithm,
    /// Weights per group and tap: `[group][tap][cout/groups][cin/groups]`.
    taps: Vec<f32>,
    /// Winograd F(2×2) filters, `[16][cout][cin]`, when the layer shape allows it.
    wino2: Vec<f32>,
    /// Winograd F(4×4) filters, `[36][cout][cin]`, when the layer shape allows it.
    wino4: Vec<f32>,
    bias_data: Vec<f32>,
}

impl FastConv2d {
    /// Prepares a layer from OIHW `weight`, optional `bias` (one value per output channel),
    /// the convolution parameters and an algorithm choice.
    pub fn new(
        weight: Tensor,
        bias: Option<Tensor>,
        cfg: Conv2dConfig,
        algo: ConvAlgorithm,
    ) -> Result<Self> {
        let dims = weight.dims().to_vec();
        let &[cout, cin_g, kh, kw] = dims.as_slice() else {
            candle_core::bail!("conv2d weight must have rank 4, got shape {dims:?}");
        };
        if let Some(b) = &bias
            && b.dims() != [cout]
        {
            candle_core::bail!("conv2d bias must have shape [{cout}], got {:?}", b.dims());
        }
        let groups = cfg.groups.max(1);
        if cout % groups != 0 {
            candle_core::bail!("conv2d: {cout} output channels do not split into {groups} groups");
        }
        let mut layer = Self {
            weight,
            bias,
            cfg,
            algo,
            taps: Vec::new(),
            wino2: Vec::new(),
            wino4: Vec::new(),
            bias_data: Vec::new(),
        };
        if !is_cpu_f32(&layer.weight) || algo == ConvAlgorithm::Candle {
            return Ok(layer);
        }
        let w = with_f32(&layer.weight, <[f32]>::to_vec)?;
        layer.taps = pack_taps(&w, cout, cin_g, kh, kw, groups);
        let winograd_shape =
            kh == 3 && kw == 3 && groups == 1 && cfg.stride == 1 && cfg.dilation == 1;
        if winograd_shape {
            if matches!(
                algo,
                ConvAlgorithm::Auto | ConvAlgorithm::AutoPrecise | ConvAlgorithm::Winograd2
            ) {
                layer.wino2 = winograd_filters::<F2>(&w, cout, cin_g);
            }
            if matches!(algo, ConvAlgorithm::Auto | ConvAlgorithm::Winograd4) {
                layer.wino4 = winograd_filters::<F4>(&w, cout, cin_g);
            }
        }
        if let Some(b) = &layer.bias {
            if !is_cpu_f32(b) {
                candle_core::bail!("conv2d bias must be an f32 CPU tensor like the weight");
            }
            layer.bias_data = with_f32(b, <[f32]>::to_vec)?;
        }
        Ok(layer)
    }

    /// The OIHW weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Padding, stride, dilation and groups.
    pub fn config(&self) -> &Conv2dConfig {
        &self.cfg
    }

    /// FLOPs (2 × multiply-adds) of this layer on an input of shape `x_dims`.
    pub fn flops(&self, x_dims: &[usize]) -> Result<f64> {
        conv2d_flops(x_dims, self.weight.dims(), &self.cfg)
    }

    /// Applies the convolution to an NCHW input.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_mapped(x, None, None)
    }

    /// `forward(x) + residual` in one pass over the output (the residual has the output's
    /// shape); the sum is formed as `(conv + bias) + residual`, like the unfused ops.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.forward_mapped(x, None, Some(residual))
    }

    /// `conv(map(x)) + residual`: the per-channel map (for instance a group norm and SiLU, from
    /// [`group_norm_map`](super::group_norm_map)) is applied to the input as the kernel stages
    /// it, so the mapped tensor is never materialised (except for 1×1 layers and on non-CPU
    /// devices, where it is applied first).
    pub fn forward_mapped(
        &self,
        x: &Tensor,
        map: Option<&ChannelMap>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let g = Geom::new(x.dims(), self.weight.dims(), &self.cfg)?;
        let out_dims = [g.b, g.cout, g.ho, g.wo];
        if let Some(r) = residual
            && r.dims() != out_dims
        {
            candle_core::bail!(
                "conv2d: residual {:?} does not match the output {out_dims:?}",
                r.dims()
            );
        }
        if let Some(m) = map
            && (m.batch, m.channels) != (g.b, g.cin)
        {
            candle_core::bail!(
                "conv2d: channel map for ({}, {}) but the input is {:?}",
                m.batch,
                m.channels,
                x.dims()
            );
        }
        let fast = !self.taps.is_empty() && is_cpu_f32(x) && residual.is_none_or(is_cpu_f32);
        let plan = if fast {
            g.plan(self.algo)
        } else {
            Plan::Candle
        };
        let mapped;
        let (x, map) = match (plan, map) {
            (Plan::Candle | Plan::OneByOne, Some(m)) => {
                mapped = m.apply(x)?;
                (&mapped, None)
            }
            _ => (x, map),
        };
        if plan == Plan::Candle {
            let y = self.forward_candle(x)?;
            return match residual {
                Some(r) => y + r,
                None => Ok(y),
            };
        }
        let bias = (!self.bias_data.is_empty()).then_some(self.bias_data.as_slice());
        let compute = |x: &[f32], residual: Option<&[f32]>| {
            let epi = Epilogue { bias, residual };
            match plan {
                Plan::Candle => unreachable!("handled above"),
                Plan::Direct => direct(x, &g, &self.taps, map, epi),
                Plan::OneByOne => one_by_one(x, &g, &self.taps, epi),
                Plan::Winograd2 => winograd::<F2>(x, &g, &self.wino2, map, epi),
                Plan::Winograd4 => winograd::<F4>(x, &g, &self.wino4, map, epi),
            }
        };
        let y = match residual {
            None => with_f32(x, |x| compute(x, None))?,
            Some(r) => with_f32(x, |x| with_f32(r, |r| compute(x, Some(r))))??,
        };
        tensor_from_vec(y, out_dims.to_vec())
    }

    fn forward_candle(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.conv2d(
            &self.weight,
            self.cfg.padding,
            self.cfg.stride,
            self.cfg.dilation,
            self.cfg.groups.max(1),
        )?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, b.dims1()?, 1, 1))?),
            None => Ok(y),
        }
    }
}

impl Module for FastConv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        FastConv2d::forward(self, x)
    }
}

/// One-off convolution of NCHW `x` with OIHW `weight` and optional `bias`, with the
/// [`ConvAlgorithm::Auto`] choice. Layers applied repeatedly should use [`FastConv2d`], which
/// prepares the weights once.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv2dConfig,
    algo: ConvAlgorithm,
) -> Result<Tensor> {
    FastConv2d::new(weight.clone(), bias.cloned(), cfg, algo)?.forward(x)
}

/// Repacks OIHW weights as `[group][tap][cout/groups][cin/groups]`.
fn pack_taps(
    w: &[f32],
    cout: usize,
    cin_g: usize,
    kh: usize,
    kw: usize,
    groups: usize,
) -> Vec<f32> {
    let taps = kh * kw;
    let cout_g = cout / groups;
    let mut out = vec![0.0; w.len()];
    for co in 0..cout {
        let (grp, co_g) = (co / cout_g, co % cout_g);
        for ci in 0..cin_g {
            for t in 0..taps {
                out[((grp * taps + t) * cout_g + co_g) * cin_g + ci] =
                    w[(co * cin_g + ci) * taps + t];
            }
        }
    }
    out
}

impl Geom {
    /// The algorithm that runs this convolution when `algo` is asked for.
    fn plan(&self, algo: ConvAlgorithm) -> Plan {
        let one_by_one =
            self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0 && self.groups == 1;
        let pixels = self.ho * self.wo;
        match algo {
            ConvAlgorithm::Candle => Plan::Candle,
            ConvAlgorithm::Direct => Plan::Direct,
            _ if one_by_one => Plan::OneByOne,
            ConvAlgorithm::Winograd2 if self.is_winograd_shape() => Plan::Winograd2,
            ConvAlgorithm::Winograd4 if self.is_winograd_shape() => Plan::Winograd4,
            ConvAlgorithm::Auto if self.is_winograd_shape() && pixels >= WINOGRAD4_MIN_PIXELS => {
                Plan::Winograd4
            }
            ConvAlgorithm::Auto | ConvAlgorithm::AutoPrecise
                if self.is_winograd_shape() && pixels >= WINOGRAD2_MIN_PIXELS =>
            {
                Plan::Winograd2
            }
            _ => Plan::Direct,
        }
    }
}

/// The direct shifted-slice convolution (any kernel, stride, dilation, groups).
fn direct(x: &[f32], g: &Geom, taps: &[f32], map: Option<&ChannelMap>, epi: Epilogue) -> Vec<f32> {
    let (s, d) = (g.stride, g.dil);
    let qy_max = (g.kh - 1) * d / s;
    let qx_max = (g.kw - 1) * d / s;
    // Each phase plane is `hq × wq`: as wide as the widened output grid plus the largest
    // horizontal tap offset, and one row taller than needed, so that the garbage columns of the
    // last output row still read inside the plane.
    let wq = g.wo + qx_max;
    let hq = g.ho + qy_max + 1;
    let phases = s * s;
    let plane = hq * wq;
    let per_channel = phases * plane;
    let per_image = g.cin * per_channel;

    with_scratch(Scratch::Input, g.b * per_image, |staged| {
        staged
            .par_chunks_mut(per_channel)
            .enumerate()
            .for_each(|(idx, dst)| {
                let src = &x[idx * g.h * g.w..][..g.h * g.w];
                let (bi, ci) = (idx / g.cin, idx % g.cin);
                for py in 0..s {
                    for px in 0..s {
                        let dst = &mut dst[(py * s + px) * plane..][..plane];
                        fill_phase_plane(src, g, py, px, wq, dst, map.map(|m| (m, bi, ci)));
                    }
                }
            });
        direct_products(staged, g, taps, epi, wq, plane)
    })
}

/// The matrix products of the direct form, on the staged phase planes.
fn direct_products(
    staged: &[f32],
    g: &Geom,
    taps: &[f32],
    epi: Epilogue,
    wq: usize,
    plane: usize,
) -> Vec<f32> {
    let (s, d) = (g.stride, g.dil);
    let per_channel = s * s * plane;
    let per_image = g.cin * per_channel;
    let n_virtual = g.ho * wq;
    let nc = DIRECT_BLOCK.min(n_virtual);
    let nchunks = n_virtual.div_ceil(nc);
    let (cin_g, cout_g) = (g.cin / g.groups, g.cout / g.groups);
    let ntaps = g.kh * g.kw;
    with_scratch(Scratch::Output, g.b * nchunks * g.cout * nc, |stage| {
        stage
            .par_chunks_mut(g.cout * nc)
            .enumerate()
            .for_each(|(idx, out)| {
                let (bi, ch) = (idx / nchunks, idx % nchunks);
                let j0 = ch * nc;
                let ncur = nc.min(n_virtual - j0);
                let img = &staged[bi * per_image..][..per_image];
                for grp in 0..g.groups {
                    for t in 0..ntaps {
                        let (ry, rx) = ((t / g.kw) * d, (t % g.kw) * d);
                        let phase = (ry % s) * s + rx % s;
                        let off = (ry / s) * wq + rx / s;
                        gemm(
                            MatMut {
                                data: out,
                                offset: grp * cout_g * nc,
                                rows: cout_g,
                                cols: ncur,
                                row_stride: nc,
                            },
                            MatRef::row_major(
                                taps,
                                (grp * ntaps + t) * cout_g * cin_g,
                                cout_g,
                                cin_g,
                                cin_g,
                            ),
                            MatRef::row_major(
                                img,
                                grp * cin_g * per_channel + phase * plane + off + j0,
                                cin_g,
                                ncur,
                                per_channel,
                            ),
                            t > 0,
                        );
                    }
                }
            });

        let mut y = vec![0.0f32; g.b * g.cout * g.ho * g.wo];
        y.par_chunks_mut(g.ho * g.wo)
            .enumerate()
            .for_each(|(idx, dst)| {
                let (bi, co) = (idx / g.cout, idx % g.cout);
                for oy in 0..g.ho {
                    let row = &mut dst[oy * g.wo..][..g.wo];
                    let mut ox = 0;
                    while ox < g.wo {
                        let j = oy * wq + ox;
                        let (ch, jj) = (j / nc, j % nc);
                        let len = (nc - jj).min(g.wo - ox);
                        let src = &stage[((bi * nchunks + ch) * g.cout + co) * nc + jj..][..len];
                        row[ox..ox + len].copy_from_slice(src);
                        ox += len;
                    }
                }
                finish_planes(dst, g.ho * g.wo, bi, co, g.cout, epi);
            });
        y
    })
}

/// Writes phase plane `(py, px)` of the zero-padded channel `src` (`h × w`): element `(r, c)` is
/// padded pixel `(py + s·r, px + s·c)`. With a map `(map, sample, channel)`, image pixels are
/// mapped (the zero padding is not).
fn fill_phase_plane(
    src: &[f32],
    g: &Geom,
    py: usize,
    px: usize,
    wq: usize,
    dst: &mut [f32],
    map: Option<(&ChannelMap, usize, usize)>,
) {
    let s = g.stride;
    for (r, row) in dst.chunks_exact_mut(wq).enumerate() {
        let iy = (py + s * r).wrapping_sub(g.pad);
        if iy >= g.h {
            row.fill(0.0);
            continue;
        }
        let srow = &src[iy * g.w..][..g.w];
        if s == 1 {
            // Columns `pad .. pad + w` hold the image, the rest is padding.
            let start = g.pad.min(wq);
            let end = (g.pad + g.w).min(wq);
            row[..start].fill(0.0);
            match map {
                Some((m, b, c)) => vectorize(MapSlice {
                    map: m,
                    b,
                    c,
                    src: &srow[..end - start],
                    dst: &mut row[start..end],
                }),
                None => row[start..end].copy_from_slice(&srow[..end - start]),
            }
            row[end..].fill(0.0);
        } else {
            for (c, v) in row.iter_mut().enumerate() {
                let ix = (px + s * c).wrapping_sub(g.pad);
                *v = if ix < g.w { srow[ix] } else { 0.0 };
            }
            if let Some((m, b, ch)) = map {
                for (c, v) in row.iter_mut().enumerate() {
                    let ix = (px + s * c).wrapping_sub(g.pad);
                    if ix < g.w {
                        m.apply_slice(b, ch, &[*v], std::slice::from_mut(v));
                    }
                }
            }
        }
    }
}

/// A 1×1 stride-1 unpadded convolution: one matrix product per image and block of columns.
fn one_by_one(x: &[f32], g: &Geom, taps: &[f32], epi: Epilogue) -> Vec<f32> {
    let hw = g.h * g.w;
    let nc = ONE_BY_ONE_BLOCK.min(hw);
    let nchunks = hw.div_ceil(nc);
    with_scratch(Scratch::Output, g.b * nchunks * g.cout * nc, |stage| {
        stage
            .par_chunks_mut(g.cout * nc)
            .enumerate()
            .for_each(|(idx, out)| {
                let (bi, ch) = (idx / nchunks, idx % nchunks);
                let j0 = ch * nc;
                let ncur = nc.min(hw - j0);
                gemm(
                    MatMut {
                        data: out,
                        offset: 0,
                        rows: g.cout,
                        cols: ncur,
                        row_stride: nc,
                    },
                    MatRef::row_major(taps, 0, g.cout, g.cin, g.cin),
                    MatRef::row_major(x, bi * g.cin * hw + j0, g.cin, ncur, hw),
                    false,
                );
            });
        let mut y = vec![0.0f32; g.b * g.cout * hw];
        y.par_chunks_mut(hw).enumerate().for_each(|(idx, dst)| {
            let (bi, co) = (idx / g.cout, idx % g.cout);
            for (ch, part) in dst.chunks_mut(nc).enumerate() {
                let len = part.len();
                part.copy_from_slice(&stage[((bi * nchunks + ch) * g.cout + co) * nc..][..len]);
            }
            finish_planes(dst, hw, bi, co, g.cout, epi);
        });
        y
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Relative L2 distance and largest absolute difference.
    pub(in crate::nn) fn compare(a: &Tensor, b: &Tensor) -> (f64, f64) {
        let a = a
            .flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let b = b
            .flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(a.len(), b.len());
        let num: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        let den: f64 = b.iter().map(|y| y * y).sum();
        let max = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        ((num / den.max(1e-30)).sqrt(), max)
    }

    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, cfg: &Conv2dConfig) -> Tensor {
        x.conv2d(w, cfg.padding, cfg.stride, cfg.dilation, cfg.groups)
            .unwrap()
            .broadcast_add(&b.reshape((1, (), 1, 1)).unwrap())
            .unwrap()
    }

    pub(in crate::nn) fn cfg(
        padding: usize,
        stride: usize,
        dilation: usize,
        groups: usize,
    ) -> Conv2dConfig {
        Conv2dConfig {
            padding,
            stride,
            dilation,
            groups,
            cudnn_fwd_algo: None,
        }
    }

    /// Every algorithm agrees with candle's `conv2d` on random inputs of many shapes.
    #[test]
    fn matches_candle_conv2d() {
        let dev = Device::Cpu;
        // (batch, cin, h, w, cout, k, padding, stride, dilation, groups)
        let cases = [
            (1, 64, 64, 64, 64, 3, 1, 1, 1, 1),
            (2, 15, 64, 64, 16, 3, 1, 1, 1, 1),
            (2, 32, 17, 23, 8, 3, 1, 1, 1, 1),
            (1, 16, 5, 7, 3, 3, 1, 1, 1, 1),
            (2, 16, 64, 64, 16, 3, 1, 2, 1, 1),
            (1, 8, 33, 31, 12, 3, 1, 2, 1, 1),
            (2, 24, 20, 20, 12, 1, 0, 1, 1, 1),
            (1, 8, 12, 12, 8, 1, 0, 2, 1, 1),
            (1, 12, 19, 21, 18, 3, 2, 1, 2, 3),
            (1, 8, 16, 16, 8, 5, 2, 1, 1, 1),
            (1, 6, 15, 15, 4, 4, 0, 3, 1, 2),
            (1, 4, 9, 9, 4, 3, 0, 1, 1, 1),
            (3, 4, 4, 4, 5, 3, 1, 1, 1, 1),
        ];
        let algos = [
            ConvAlgorithm::Auto,
            ConvAlgorithm::AutoPrecise,
            ConvAlgorithm::Direct,
            ConvAlgorithm::Winograd2,
            ConvAlgorithm::Winograd4,
        ];
        for (b, cin, h, w, cout, k, pad, stride, dil, groups) in cases {
            let x = Tensor::randn(0f32, 1.0, (b, cin, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 0.2, (cout, cin / groups, k, k), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1.0, cout, &dev).unwrap();
            let c = cfg(pad, stride, dil, groups);
            let want = reference(&x, &wt, &bias, &c);
            for algo in algos {
                let layer = FastConv2d::new(wt.clone(), Some(bias.clone()), c, algo).unwrap();
                let got = layer.forward(&x).unwrap();
                assert_eq!(
                    got.dims(),
                    want.dims(),
                    "{algo:?} case {:?}",
                    (b, cin, h, w, cout, k)
                );
                let (rel, max) = compare(&got, &want);
                let res = Tensor::randn(0f32, 1.0, want.dims(), &dev).unwrap();
                let fused = layer.forward_add(&x, &res).unwrap();
                let unfused = (&got + &res).unwrap();
                assert_eq!(compare(&fused, &unfused).1, 0.0, "{algo:?}: fused residual");
                // A channel map applied while staging equals applying it first.
                let map = ChannelMap {
                    batch: b,
                    channels: cin,
                    scale: (0..b * cin).map(|i| 0.5 + (i % 7) as f32 * 0.1).collect(),
                    shift: (0..b * cin).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect(),
                    act: crate::nn::Activation::Silu,
                };
                let mapped = layer.forward_mapped(&x, Some(&map), Some(&res)).unwrap();
                let reference = layer.forward_add(&map.apply(&x).unwrap(), &res).unwrap();
                assert_eq!(
                    compare(&mapped, &reference).1,
                    0.0,
                    "{algo:?}: fused channel map"
                );
                assert!(
                    rel < 1e-4,
                    "{algo:?} on {:?}: relative L2 {rel:e}, max abs {max:e}",
                    (b, cin, h, w, cout, k, pad, stride, dil, groups)
                );
            }
        }
    }

    /// Results do not depend on the size of the thread pool.
    #[test]
    fn bit_identical_across_thread_counts() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 32, 40, 40), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.1, (32, 32, 3, 3), &dev).unwrap();
        for algo in [
            ConvAlgorithm::Direct,
            ConvAlgorithm::Winograd2,
            ConvAlgorithm::Winograd4,
        ] {
            let run = |threads| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| conv2d(&x, &w, None, cfg(1, 1, 1, 1), algo))
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            };
            assert_eq!(run(1), run(3), "{algo:?}");
        }
    }

    #[test]
    fn rejects_mismatched_shapes() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 3, 8, 8), DType::F32, &dev).unwrap();
        let w = Tensor::zeros((4, 5, 3, 3), DType::F32, &dev).unwrap();
        let err = conv2d(&x, &w, None, cfg(1, 1, 1, 1), ConvAlgorithm::Auto).unwrap_err();
        assert!(err.to_string().contains("3 channels"), "{err}");
        let w = Tensor::zeros((4, 3, 9, 9), DType::F32, &dev).unwrap();
        assert!(conv2d(&x, &w, None, cfg(0, 1, 1, 1), ConvAlgorithm::Auto).is_err());
    }

    #[test]
    fn flop_count() {
        let f = conv2d_flops(&[1, 64, 64, 64], &[64, 64, 3, 3], &cfg(1, 1, 1, 1)).unwrap();
        assert_eq!(f, 2.0 * 64.0 * 64.0 * 4096.0 * 9.0);
    }
}
