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
//!   the tests against candle's `conv2d`).
//! - **1×1** convolutions are plain matrix products on the input.
//!
//! All matrix products go through the `gemm` crate (candle's own CPU backend) single-threaded per
//! block, with blocks spread over the current rayon pool. Block sizes do not depend on the number
//! of threads, so results are bit-identical whatever the pool size. Tensors on other devices, or
//! of other dtypes, fall back to candle's `conv2d`.

use candle_core::{Module, Result, Tensor};
use candle_nn::Conv2dConfig;
use rayon::prelude::*;

use super::cpu::{Kernel, Scratch, is_cpu_f32, tensor_from_vec, vectorize, with_f32, with_scratch};
use super::gemm::{MatMut, MatRef, gemm};
use super::norm::{ChannelMap, MapSlice};

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

/// Shapes of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geom {
    b: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    pad: usize,
    stride: usize,
    dil: usize,
    groups: usize,
    ho: usize,
    wo: usize,
}

impl Geom {
    fn new(x: &[usize], k: &[usize], cfg: &Conv2dConfig) -> Result<Self> {
        let (&[b, cin, h, w], &[cout, cin_g, kh, kw]) = (x, k) else {
            candle_core::bail!("conv2d: input {x:?} and weight {k:?} must both have rank 4");
        };
        let groups = cfg.groups.max(1);
        if cfg.stride == 0 || cfg.dilation == 0 {
            candle_core::bail!("conv2d: stride and dilation must be at least 1");
        }
        if cin != cin_g * groups || cout % groups != 0 {
            candle_core::bail!(
                "conv2d: input has {cin} channels, weight {k:?} with {groups} groups expects {}",
                cin_g * groups
            );
        }
        let hp = h + 2 * cfg.padding;
        let wp = w + 2 * cfg.padding;
        let span_h = (kh - 1) * cfg.dilation + 1;
        let span_w = (kw - 1) * cfg.dilation + 1;
        if kh == 0 || kw == 0 || hp < span_h || wp < span_w {
            candle_core::bail!(
                "conv2d: kernel {kh}x{kw} (dilation {}) does not fit input {h}x{w} with padding {}",
                cfg.dilation,
                cfg.padding
            );
        }
        Ok(Self {
            b,
            cin,
            h,
            w,
            cout,
            kh,
            kw,
            pad: cfg.padding,
            stride: cfg.stride,
            dil: cfg.dilation,
            groups,
            ho: (hp - span_h) / cfg.stride + 1,
            wo: (wp - span_w) / cfg.stride + 1,
        })
    }

    fn is_winograd_shape(&self) -> bool {
        self.kh == 3 && self.kw == 3 && self.stride == 1 && self.dil == 1 && self.groups == 1
    }

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

/// Output pixels from which [`ConvAlgorithm::Auto`] uses Winograd F(4×4) (32×32).
const WINOGRAD4_MIN_PIXELS: usize = 32 * 32;
/// Output pixels from which the automatic choices use Winograd F(2×2) (16×16).
const WINOGRAD2_MIN_PIXELS: usize = 16 * 16;
/// Output columns (of the widened grid) per block of the direct form.
const DIRECT_BLOCK: usize = 512;
/// Tiles per block of the Winograd forms: the transformed input and products of one block,
/// `2·(m+2)²·tiles·channels` floats, stay in a core's L2 cache.
const WINOGRAD_BLOCK_TILES: usize = 32;
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

/// What is added to a convolution's output: bias, then residual.
#[derive(Clone, Copy)]
struct Epilogue<'a> {
    bias: Option<&'a [f32]>,
    residual: Option<&'a [f32]>,
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

/// One Winograd F(m×m, 3×3) variant: its 1-D input, output and filter transforms.
///
/// The 1-D transforms work on `n` lanes at once: lane `i` of row `k` is `src[offs[k] + i]`, and
/// output row `k` goes to `dst[dst_off + k·dst_stride ..][..n]`, so the 2-D transforms vectorise
/// across tiles.
trait Winograd {
    /// Output tile size `m`.
    const M: usize;
    /// Input tile size `m + 2`.
    const A: usize;
    fn input(
        src: &[f32],
        offs: &[usize],
        dst: &mut [f32],
        dst_off: usize,
        dst_stride: usize,
        n: usize,
    );
    fn output(
        src: &[f32],
        offs: &[usize],
        dst: &mut [f32],
        dst_off: usize,
        dst_stride: usize,
        n: usize,
    );
    /// `G g` for one filter row or column `g`; the first `A` values are used.
    fn filter(g: [f64; 3]) -> [f64; 6];
}

/// `K` disjoint rows of `n` elements, `stride` apart, starting at `off`.
#[inline(always)]
fn rows_mut<const K: usize>(
    dst: &mut [f32],
    off: usize,
    stride: usize,
    n: usize,
) -> [&mut [f32]; K] {
    assert!(stride >= n, "rows_mut: rows would overlap");
    let mut rest = &mut dst[off..];
    let mut out: [&mut [f32]; K] = std::array::from_fn(|_| <&mut [f32]>::default());
    for (k, slot) in out.iter_mut().enumerate() {
        let take = if k + 1 < K { stride } else { n };
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(take);
        *slot = &mut head[..n];
        rest = tail;
    }
    out
}

/// `K` rows of `n` elements at `offs`.
#[inline(always)]
fn rows<'a, const K: usize>(src: &'a [f32], offs: &[usize], n: usize) -> [&'a [f32]; K] {
    std::array::from_fn(|k| &src[offs[k]..offs[k] + n])
}

/// Winograd F(2×2, 3×3) (Lavin & Gray), interpolation points 0, ±1, ∞.
struct F2;

impl Winograd for F2 {
    const M: usize = 2;
    const A: usize = 4;

    #[inline(always)]
    fn input(
        src: &[f32],
        offs: &[usize],
        dst: &mut [f32],
        dst_off: usize,
        dst_stride: usize,
        n: usize,
    ) {
        let [d0, d1, d2, d3] = rows::<4>(src, offs, n);
        let [o0, o1, o2, o3] = rows_mut::<4>(dst, dst_off, dst_stride, n);
        for i in 0..n {
            o0[i] = d0[i] - d2[i];
            o1[i] = d1[i] + d2[i];
            o2[i] = d2[i] - d1[i];
            o3[i] = d1[i] - d3[i];
        }
    }

    #[inline(always)]
    fn output(
        src: &[f32],
        offs: &[usize],
        dst: &mut [f32],
        dst_off: usize,
        dst_stride: usize,
        n: usize,
    ) {
        let [m0, m1, m2, m3] = rows::<4>(src, offs, n);
        let [y0, y1] = rows_mut::<2>(dst, dst_off, dst_stride, n);
        for i in 0..n {
            y0[i] = m0[i] + m1[i] + m2[i];
            y1[i] = m1[i] - m2[i] - m3[i];
        }
    }

    fn filter([g0, g1, g2]: [f64; 3]) -> [f64; 6] {
        [g0, (g0 + g1 + g2) / 2.0, (g0 - g1 + g2) / 2.0, g2, 0.0, 0.0]
    }
}

/// Winograd F(4×4, 3×3) (Lavin & Gray), interpolation points 0, ±1, ±2, ∞.
struct F4;

impl Winograd for F4 {
    const M: usize = 4;
    const A: usize = 6;

    #[inline(always)]
    fn input(
        src: &[f32],
        offs: &[usize],
        dst: &mut [f32],
        dst_off: usize,
        dst_stride: usize,
        n: usize,
    ) {
        let [d0, d1, d2, d3, d4, d5] = rows::<6>(src, offs, n);
        let [o0, o1, o2, o3, o4, o5] = rows_mut::<6>(dst, dst_off, dst_stride, n);
        for i in 0..n {
            let (a, b) = (d4[i] - 4.0 * d2[i], d3[i] - 4.0 * d1[i]);
            let (c, e) = (d4[i] - d2[i], 2.0 * (d3[i] - d1[i]));
            o0[i] = 4.0 * d0[i] - 5.0 * d2[i] + d4[i];
            o1[i] = a + b;
            o2[i] = a - b;
            o3[i] = c + e;
            o4[i] = c - e;
            o5[i] = 4.0 * d1[i] - 5.0 * d3[i] + d5[i];
        }
    }

    #[inline(always)]
    fn output(
        src: &[f32],
        offs: &[usize],
        dst: &mut [f32],
        dst_off: usize,
        dst_stride: usize,
        n: usize,
    ) {
        let [m0, m1, m2, m3, m4, m5] = rows::<6>(src, offs, n);
        let [y0, y1, y2, y3] = rows_mut::<4>(dst, dst_off, dst_stride, n);
        for i in 0..n {
            let (p12, d12) = (m1[i] + m2[i], m1[i] - m2[i]);
            let (p34, d34) = (m3[i] + m4[i], m3[i] - m4[i]);
            y0[i] = m0[i] + p12 + p34;
            y1[i] = d12 + 2.0 * d34;
            y2[i] = p12 + 4.0 * p34;
            y3[i] = d12 + 8.0 * d34 + m5[i];
        }
    }

    fn filter([g0, g1, g2]: [f64; 3]) -> [f64; 6] {
        [
            g0 / 4.0,
            -(g0 + g1 + g2) / 6.0,
            -(g0 - g1 + g2) / 6.0,
            g0 / 24.0 + g1 / 12.0 + g2 / 6.0,
            g0 / 24.0 - g1 / 12.0 + g2 / 6.0,
            g2,
        ]
    }
}

/// Transformed filters `U = G g Gᵀ`, laid out `[A²][cin][cout]` (each position's matrix
/// transposed, ready to be the right operand), computed in f64.
fn winograd_filters<T: Winograd>(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let a = T::A;
    let mut u = vec![0.0f32; a * a * cout * cin];
    for co in 0..cout {
        for ci in 0..cin {
            let k = &w[(co * cin + ci) * 9..][..9];
            // Columns first: G applied to each kernel column gives an A×3 matrix.
            let cols: [[f64; 6]; 3] =
                std::array::from_fn(|c| T::filter([k[c] as f64, k[3 + c] as f64, k[6 + c] as f64]));
            for r in 0..a {
                let row = T::filter([cols[0][r], cols[1][r], cols[2][r]]);
                for (c, v) in row.iter().take(a).enumerate() {
                    u[((r * a + c) * cin + ci) * cout + co] = *v as f32;
                }
            }
        }
    }
    u
}

/// Shapes of a Winograd convolution's staged input, tiles and blocks.
#[derive(Clone, Copy, Debug)]
struct WinoGeom {
    m: usize,
    a: usize,
    cin: usize,
    cout: usize,
    /// Tile rows and columns.
    tyn: usize,
    txn: usize,
    /// Floats per staged (padded, channel-last) input row, and per staged image.
    row_len: usize,
    per_image: usize,
    /// Tiles per block (whole tile rows) and blocks per image.
    tc: usize,
    nblk: usize,
    /// Width of the channel-last output (whole tiles), and floats per output block.
    wpad: usize,
    block_out: usize,
}

impl WinoGeom {
    fn new<T: Winograd>(g: &Geom) -> Self {
        let (m, a) = (T::M, T::A);
        let tyn = g.ho.div_ceil(m);
        let txn = g.wo.div_ceil(m);
        // Padded rows and columns the tiles read.
        let nrows = tyn * m + 2;
        let ncols = txn * m + 2;
        let row_len = ncols * g.cin;
        // Blocks of whole tile rows, so that each block's output is a band of rows of the
        // channel-last output image `[row][col][co]`.
        let rows_per_block = (WINOGRAD_BLOCK_TILES / txn).clamp(1, tyn);
        let wpad = txn * m;
        Self {
            m,
            a,
            cin: g.cin,
            cout: g.cout,
            tyn,
            txn,
            row_len,
            per_image: nrows * row_len,
            tc: rows_per_block * txn,
            nblk: tyn.div_ceil(rows_per_block),
            wpad,
            block_out: rows_per_block * m * wpad * g.cout,
        }
    }
}

/// Winograd F(m×m, 3×3) convolution, stride 1, any padding, computed channel-last: the input
/// is staged as zero-padded `[row][col][channel]`, so every transform works on whole channel
/// vectors, and each block of tiles does its `(m+2)²` products `V[ξ] (tiles×cin) · U[ξ]
/// (cin×cout)` in cache.
fn winograd<T: Winograd>(
    x: &[f32],
    g: &Geom,
    ut: &[f32],
    map: Option<&ChannelMap>,
    epi: Epilogue,
) -> Vec<f32> {
    let w = WinoGeom::new::<T>(g);
    let nrows = w.per_image / w.row_len;
    with_scratch(Scratch::Input, g.b * w.per_image, |staged| {
        staged
            .par_chunks_mut(w.row_len)
            .enumerate()
            .for_each(|(idx, row)| {
                let (bi, r) = (idx / nrows, idx % nrows);
                let iy = r.wrapping_sub(g.pad);
                if iy >= g.h {
                    row.fill(0.0);
                } else {
                    // Zero the padding columns; the kernel writes the image columns.
                    let (left, right) = (g.pad * g.cin, (g.pad + g.w) * g.cin);
                    row[..left].fill(0.0);
                    row[right..].fill(0.0);
                    let chw = g.cin * g.h * g.w;
                    vectorize(StageRow {
                        src: &x[bi * chw..][..chw],
                        iy,
                        g,
                        row,
                        map: map.map(|m| (m, bi)),
                    });
                }
            });
        winograd_products::<T>(staged, g, &w, ut, epi)
    })
}

/// One padded row of the channel-last Winograd input, mapped.
struct StageRow<'a> {
    src: &'a [f32],
    iy: usize,
    g: &'a Geom,
    row: &'a mut [f32],
    map: Option<(&'a ChannelMap, usize)>,
}

impl Kernel for StageRow<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let g = self.g;
        let (cin, pad) = (g.cin, g.pad);
        transpose(
            self.src,
            self.iy * g.w,
            g.h * g.w,
            cin,
            g.w,
            self.row,
            pad * cin,
            cin,
        );
        if let Some((m, bi)) = self.map {
            m.apply_pixels(bi, &mut self.row[pad * cin..][..g.w * cin]);
        }
    }
}

/// The input transform of one block of tiles: `V[ξ][t][ci] = (Bᵀ d B)[ξ]`.
struct InputTransform<'a, T> {
    w: &'a WinoGeom,
    img: &'a [f32],
    t0: usize,
    tcur: usize,
    tmp: &'a mut [f32],
    v: &'a mut [f32],
    _t: std::marker::PhantomData<T>,
}

impl<T: Winograd> Kernel for InputTransform<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let w = self.w;
        let (m, a, cin) = (w.m, w.a, w.cin);
        for tl in 0..self.tcur {
            let t = self.t0 + tl;
            let base = (t / w.txn) * m * w.row_len + (t % w.txn) * m * cin;
            let offs: [usize; 6] = std::array::from_fn(|k| base + k * w.row_len);
            // Rows mixed: tmp[r][c][ci], all A columns at once.
            T::input(self.img, &offs, self.tmp, 0, a * cin, a * cin);
            for r in 0..a {
                let offs: [usize; 6] = std::array::from_fn(|k| (r * a + k) * cin);
                T::input(
                    self.tmp,
                    &offs,
                    self.v,
                    (r * a * w.tc + tl) * cin,
                    w.tc * cin,
                    cin,
                );
            }
        }
    }
}

/// The output transform of one block: `Y = Aᵀ M A`, into the block's band of the channel-last
/// output `[row][col][co]`.
struct OutputTransform<'a, T> {
    w: &'a WinoGeom,
    tcur: usize,
    mm: &'a [f32],
    tmp: &'a mut [f32],
    out: &'a mut [f32],
    _t: std::marker::PhantomData<T>,
}

impl<T: Winograd> Kernel for OutputTransform<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let w = self.w;
        let (m, a, cout) = (w.m, w.a, w.cout);
        for tl in 0..self.tcur {
            for c in 0..a {
                let offs: [usize; 6] = std::array::from_fn(|k| ((k * a + c) * w.tc + tl) * cout);
                // tmp[y][c][co]
                T::output(self.mm, &offs, self.tmp, c * cout, a * cout, cout);
            }
            let (lr, tx) = (tl / w.txn, tl % w.txn);
            for y in 0..m {
                let offs: [usize; 6] = std::array::from_fn(|k| (y * a + k) * cout);
                let at = ((lr * m + y) * w.wpad + tx * m) * cout;
                T::output(self.tmp, &offs, self.out, at, cout, cout);
            }
        }
    }
}

/// Channel-last output rows to NCHW planes `co0..co0 + planes` (`dst` holds those planes).
struct ToPlanes<'a> {
    src: &'a [f32],
    g: &'a Geom,
    wpad: usize,
    co0: usize,
    dst: &'a mut [f32],
}

impl Kernel for ToPlanes<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let g = self.g;
        let plane = g.ho * g.wo;
        let ncb = self.dst.len() / plane;
        for oy in 0..g.ho {
            let src_off = oy * self.wpad * g.cout + self.co0;
            transpose(
                self.src,
                src_off,
                g.cout,
                g.wo,
                ncb,
                self.dst,
                oy * g.wo,
                plane,
            );
        }
    }
}

/// The transforms and matrix products of the Winograd form, on the staged channel-last input.
fn winograd_products<T: Winograd>(
    staged: &[f32],
    g: &Geom,
    w: &WinoGeom,
    ut: &[f32],
    epi: Epilogue,
) -> Vec<f32> {
    let (a, cin, cout, tc) = (w.a, w.cin, w.cout, w.tc);
    with_scratch(Scratch::Output, g.b * w.nblk * w.block_out, |hwc| {
        hwc.par_chunks_mut(w.block_out)
            .enumerate()
            .for_each(|(idx, out)| {
                let (bi, blk) = (idx / w.nblk, idx % w.nblk);
                let t0 = blk * tc;
                let tcur = tc.min(w.tyn * w.txn - t0);
                let img = &staged[bi * w.per_image..][..w.per_image];
                let v_len = a * a * tc * cin;
                let m_len = a * a * tc * cout;
                let tmp_len = a * a * cin.max(cout);
                with_scratch(Scratch::Task, v_len + m_len + tmp_len, |scratch| {
                    let (v, rest) = scratch.split_at_mut(v_len);
                    let (mm, tmp) = rest.split_at_mut(m_len);
                    vectorize(InputTransform::<T> {
                        w,
                        img,
                        t0,
                        tcur,
                        tmp: &mut *tmp,
                        v: &mut *v,
                        _t: std::marker::PhantomData,
                    });
                    for xi in 0..a * a {
                        gemm(
                            MatMut {
                                data: mm,
                                offset: xi * tc * cout,
                                rows: tcur,
                                cols: cout,
                                row_stride: cout,
                            },
                            MatRef::row_major(v, xi * tc * cin, tcur, cin, cin),
                            MatRef::row_major(ut, xi * cin * cout, cin, cout, cout),
                            false,
                        );
                    }
                    vectorize(OutputTransform::<T> {
                        w,
                        tcur,
                        mm,
                        tmp,
                        out,
                        _t: std::marker::PhantomData,
                    });
                });
            });

        // Back to NCHW, in blocks of channels.
        let plane = g.ho * g.wo;
        let mut y = vec![0.0f32; g.b * cout * plane];
        for (bi, img_out) in y.chunks_mut(cout * plane).enumerate() {
            let src = &hwc[bi * w.nblk * w.block_out..][..w.nblk * w.block_out];
            img_out
                .par_chunks_mut(CHANNEL_BLOCK * plane)
                .enumerate()
                .for_each(|(k, dst)| {
                    let co0 = k * CHANNEL_BLOCK;
                    vectorize(ToPlanes {
                        src,
                        g,
                        wpad: w.wpad,
                        co0,
                        dst: &mut *dst,
                    });
                    finish_planes(dst, plane, bi, co0, cout, epi);
                });
        }
        y
    })
}

/// `dst[dst_off + c·dst_stride + r] = src[src_off + r·src_stride + c]` for `r < rows`,
/// `c < cols`, in 8×8 blocks (AVX shuffles where the CPU has them).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn transpose(
    src: &[f32],
    src_off: usize,
    src_stride: usize,
    rows: usize,
    cols: usize,
    dst: &mut [f32],
    dst_off: usize,
    dst_stride: usize,
) {
    const B: usize = 8;
    #[cfg(target_arch = "x86_64")]
    let avx = pulp::x86::V3::try_new();
    let mut r0 = 0;
    while r0 + B <= rows {
        let mut c0 = 0;
        while c0 + B <= cols {
            let block: [[f32; B]; B] = std::array::from_fn(|i| {
                let at = src_off + (r0 + i) * src_stride + c0;
                src[at..at + B].try_into().expect("8 values")
            });
            #[cfg(target_arch = "x86_64")]
            let block = match avx {
                Some(simd) => transpose8_avx(simd, block),
                None => transpose8(block),
            };
            #[cfg(not(target_arch = "x86_64"))]
            let block = transpose8(block);
            for (j, col) in block.iter().enumerate() {
                let at = dst_off + (c0 + j) * dst_stride + r0;
                dst[at..at + B].copy_from_slice(col);
            }
            c0 += B;
        }
        for c in c0..cols {
            for r in r0..r0 + B {
                dst[dst_off + c * dst_stride + r] = src[src_off + r * src_stride + c];
            }
        }
        r0 += B;
    }
    for r in r0..rows {
        for c in 0..cols {
            dst[dst_off + c * dst_stride + r] = src[src_off + r * src_stride + c];
        }
    }
}

/// The transpose of an 8×8 block.
#[inline(always)]
fn transpose8(m: [[f32; 8]; 8]) -> [[f32; 8]; 8] {
    std::array::from_fn(|j| std::array::from_fn(|i| m[i][j]))
}

/// The transpose of an 8×8 block with AVX unpacks and shuffles (24 instructions).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn transpose8_avx(simd: pulp::x86::V3, m: [[f32; 8]; 8]) -> [[f32; 8]; 8] {
    use core::arch::x86_64::__m256;
    let a = simd.avx;
    let r: [__m256; 8] = std::array::from_fn(|i| pulp::cast(m[i]));
    let t0 = a._mm256_unpacklo_ps(r[0], r[1]);
    let t1 = a._mm256_unpackhi_ps(r[0], r[1]);
    let t2 = a._mm256_unpacklo_ps(r[2], r[3]);
    let t3 = a._mm256_unpackhi_ps(r[2], r[3]);
    let t4 = a._mm256_unpacklo_ps(r[4], r[5]);
    let t5 = a._mm256_unpackhi_ps(r[4], r[5]);
    let t6 = a._mm256_unpacklo_ps(r[6], r[7]);
    let t7 = a._mm256_unpackhi_ps(r[6], r[7]);
    let s0 = a._mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = a._mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = a._mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = a._mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = a._mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = a._mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = a._mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = a._mm256_shuffle_ps::<0xEE>(t5, t7);
    let c = [
        a._mm256_permute2f128_ps::<0x20>(s0, s4),
        a._mm256_permute2f128_ps::<0x20>(s1, s5),
        a._mm256_permute2f128_ps::<0x20>(s2, s6),
        a._mm256_permute2f128_ps::<0x20>(s3, s7),
        a._mm256_permute2f128_ps::<0x31>(s0, s4),
        a._mm256_permute2f128_ps::<0x31>(s1, s5),
        a._mm256_permute2f128_ps::<0x31>(s2, s6),
        a._mm256_permute2f128_ps::<0x31>(s3, s7),
    ];
    std::array::from_fn(|j| pulp::cast(c[j]))
}

/// Channels per task when transposing channel-last results back to NCHW.
const CHANNEL_BLOCK: usize = 16;

/// Adds the bias and the residual to output planes `co0..` of image `bi` (`dst` holds whole
/// `plane`-sized planes), in the order `(conv + bias) + residual` of the reference.
fn finish_planes(dst: &mut [f32], plane: usize, bi: usize, co0: usize, cout: usize, epi: Epilogue) {
    if epi.bias.is_some() || epi.residual.is_some() {
        vectorize(Finish {
            dst,
            plane,
            bi,
            co0,
            cout,
            epi,
        });
    }
}

/// [`finish_planes`] as a vectorised kernel.
struct Finish<'a> {
    dst: &'a mut [f32],
    plane: usize,
    bi: usize,
    co0: usize,
    cout: usize,
    epi: Epilogue<'a>,
}

impl Kernel for Finish<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Finish {
            dst,
            plane,
            bi,
            co0,
            cout,
            epi,
        } = self;
        finish_planes_scalar(dst, plane, bi, co0, cout, epi);
    }
}

#[inline(always)]
fn finish_planes_scalar(
    dst: &mut [f32],
    plane: usize,
    bi: usize,
    co0: usize,
    cout: usize,
    epi: Epilogue,
) {
    for (j, p) in dst.chunks_mut(plane).enumerate() {
        let co = co0 + j;
        if let Some(b) = epi.bias {
            let bv = b[co];
            p.iter_mut().for_each(|v| *v += bv);
        }
        if let Some(r) = epi.residual {
            let r = &r[(bi * cout + co) * plane..][..plane];
            p.iter_mut().zip(r).for_each(|(v, r)| *v += r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Relative L2 distance and largest absolute difference.
    fn compare(a: &Tensor, b: &Tensor) -> (f64, f64) {
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

    fn cfg(padding: usize, stride: usize, dilation: usize, groups: usize) -> Conv2dConfig {
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

    /// The error of each algorithm, against a float64 reference, stays at the level the module
    /// documentation promises: direct and F(2×2) near float32 rounding, F(4×4) within 1e-5.
    #[test]
    fn winograd_rounding_error_is_small() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 64, 32, 32), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.05, (64, 64, 3, 3), &dev).unwrap();
        let c = cfg(1, 1, 1, 1);
        let want = x
            .to_dtype(DType::F64)
            .unwrap()
            .conv2d(&w.to_dtype(DType::F64).unwrap(), 1, 1, 1, 1)
            .unwrap();
        let err = |algo| {
            let got = conv2d(&x, &w, None, c, algo).unwrap();
            compare(&got, &want).0
        };
        let (direct, w2, w4) = (
            err(ConvAlgorithm::Direct),
            err(ConvAlgorithm::Winograd2),
            err(ConvAlgorithm::Winograd4),
        );
        assert!(direct < 1e-6, "direct {direct:e}");
        assert!(w2 < 2e-6, "F(2x2) {w2:e}");
        assert!(w4 < 1e-5, "F(4x4) {w4:e}");
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
    fn transposes_any_shape() {
        for (rows, cols) in [(8, 8), (16, 24), (13, 5), (9, 17), (64, 16)] {
            let src: Vec<f32> = (0..rows * cols + 7).map(|i| i as f32).collect();
            let mut dst = vec![-1.0; cols * (rows + 3) + 2];
            transpose(&src, 7, cols, rows, cols, &mut dst, 2, rows + 3);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        dst[2 + c * (rows + 3) + r],
                        src[7 + r * cols + c],
                        "{rows}x{cols}"
                    );
                }
            }
        }
        let m: [[f32; 8]; 8] = std::array::from_fn(|i| std::array::from_fn(|j| (i * 8 + j) as f32));
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            assert_eq!(transpose8_avx(simd, m), transpose8(m));
        }
    }

    #[test]
    fn flop_count() {
        let f = conv2d_flops(&[1, 64, 64, 64], &[64, 64, 3, 3], &cfg(1, 1, 1, 1)).unwrap();
        assert_eq!(f, 2.0 * 64.0 * 64.0 * 4096.0 * 9.0);
    }
}
