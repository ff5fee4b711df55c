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

use super::cpu::{is_cpu_f32, tensor_from_vec, with_f32, with_scratch};
use super::gemm::{MatMut, MatRef, gemm};

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
/// Tiles per block of the Winograd forms (rounded to whole rows of tiles).
const WINOGRAD_BLOCK_TILES: usize = 64;
/// Blocks per image the Winograd forms aim for, so that small images still spread over threads.
const WINOGRAD_MIN_BLOCKS: usize = 4;
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
        let g = Geom::new(x.dims(), self.weight.dims(), &self.cfg)?;
        let plan = if self.taps.is_empty() || !is_cpu_f32(x) {
            Plan::Candle
        } else {
            g.plan(self.algo)
        };
        let bias = (!self.bias_data.is_empty()).then_some(self.bias_data.as_slice());
        let y = match plan {
            Plan::Candle => return self.forward_candle(x),
            Plan::Direct => with_f32(x, |x| direct(x, &g, &self.taps, bias))?,
            Plan::OneByOne => with_f32(x, |x| one_by_one(x, &g, &self.taps, bias))?,
            Plan::Winograd2 => with_f32(x, |x| winograd::<F2>(x, &g, &self.wino2, bias))?,
            Plan::Winograd4 => with_f32(x, |x| winograd::<F4>(x, &g, &self.wino4, bias))?,
        };
        tensor_from_vec(y, (g.b, g.cout, g.ho, g.wo))
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

/// The direct shifted-slice convolution (any kernel, stride, dilation, groups).
fn direct(x: &[f32], g: &Geom, taps: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
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

    let mut staged = vec![0.0f32; g.b * per_image];
    staged
        .par_chunks_mut(per_channel)
        .enumerate()
        .for_each(|(idx, dst)| {
            let src = &x[idx * g.h * g.w..][..g.h * g.w];
            for py in 0..s {
                for px in 0..s {
                    let dst = &mut dst[(py * s + px) * plane..][..plane];
                    fill_phase_plane(src, g, py, px, wq, dst);
                }
            }
        });

    let n_virtual = g.ho * wq;
    let nc = DIRECT_BLOCK.min(n_virtual);
    let nchunks = n_virtual.div_ceil(nc);
    let (cin_g, cout_g) = (g.cin / g.groups, g.cout / g.groups);
    let ntaps = g.kh * g.kw;
    let mut stage = vec![0.0f32; g.b * nchunks * g.cout * nc];
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
            let bv = bias.map_or(0.0, |b| b[co]);
            for oy in 0..g.ho {
                let row = &mut dst[oy * g.wo..][..g.wo];
                let mut ox = 0;
                while ox < g.wo {
                    let j = oy * wq + ox;
                    let (ch, jj) = (j / nc, j % nc);
                    let len = (nc - jj).min(g.wo - ox);
                    let src = &stage[((bi * nchunks + ch) * g.cout + co) * nc + jj..][..len];
                    for (o, v) in row[ox..ox + len].iter_mut().zip(src) {
                        *o = v + bv;
                    }
                    ox += len;
                }
            }
        });
    y
}

/// Writes phase plane `(py, px)` of the zero-padded channel `src` (`h × w`): element `(r, c)` is
/// padded pixel `(py + s·r, px + s·c)`.
fn fill_phase_plane(src: &[f32], g: &Geom, py: usize, px: usize, wq: usize, dst: &mut [f32]) {
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
            row[start..end].copy_from_slice(&srow[..end - start]);
            row[end..].fill(0.0);
        } else {
            for (c, v) in row.iter_mut().enumerate() {
                let ix = (px + s * c).wrapping_sub(g.pad);
                *v = if ix < g.w { srow[ix] } else { 0.0 };
            }
        }
    }
}

/// A 1×1 stride-1 unpadded convolution: one matrix product per image and block of columns.
fn one_by_one(x: &[f32], g: &Geom, taps: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let hw = g.h * g.w;
    let nc = ONE_BY_ONE_BLOCK.min(hw);
    let nchunks = hw.div_ceil(nc);
    let mut stage = vec![0.0f32; g.b * nchunks * g.cout * nc];
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
        let bv = bias.map_or(0.0, |b| b[co]);
        for (ch, dst) in dst.chunks_mut(nc).enumerate() {
            let src = &stage[((bi * nchunks + ch) * g.cout + co) * nc..][..dst.len()];
            for (o, v) in dst.iter_mut().zip(src) {
                *o = v + bv;
            }
        }
    });
    y
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

/// Transformed filters `U = G g Gᵀ`, laid out `[A²][cout][cin]`, computed in f64.
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
                    u[((r * a + c) * cout + co) * cin + ci] = *v as f32;
                }
            }
        }
    }
    u
}

/// Winograd F(m×m, 3×3) convolution, stride 1, any padding.
fn winograd<T: Winograd>(x: &[f32], g: &Geom, u: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (m, a) = (T::M, T::A);
    let tyn = g.ho.div_ceil(m);
    let txn = g.wo.div_ceil(m);
    // Padded input, rows `tyn·m + 2`, each row split into `m` column phases of `q` values:
    // element `[row][ph][qq]` is padded pixel `(row, qq·m + ph)`.
    let q = txn + 1;
    let row_len = m * q;
    let nrows = tyn * m + 2;
    let per_channel = nrows * row_len;
    let mut staged = vec![0.0f32; g.b * g.cin * per_channel];
    staged
        .par_chunks_mut(per_channel)
        .enumerate()
        .for_each(|(idx, dst)| {
            let src = &x[idx * g.h * g.w..][..g.h * g.w];
            for (r, row) in dst.chunks_exact_mut(row_len).enumerate() {
                let iy = r.wrapping_sub(g.pad);
                if iy >= g.h {
                    row.fill(0.0);
                    continue;
                }
                let srow = &src[iy * g.w..][..g.w];
                for (ph, part) in row.chunks_exact_mut(q).enumerate() {
                    for (qq, v) in part.iter_mut().enumerate() {
                        let ix = (qq * m + ph).wrapping_sub(g.pad);
                        *v = if ix < g.w { srow[ix] } else { 0.0 };
                    }
                }
            }
        });

    // Blocks of whole tile rows of one image.
    let rows_per_block = WINOGRAD_BLOCK_TILES
        .div_ceil(txn)
        .min(tyn.div_ceil(WINOGRAD_MIN_BLOCKS))
        .max(1);
    let blocks_per_image = tyn.div_ceil(rows_per_block);
    let tc = rows_per_block * txn;
    let block_out = g.cout * tc * m * m;
    let (cin, cout) = (g.cin, g.cout);
    let mut stage = vec![0.0f32; g.b * blocks_per_image * block_out];
    stage
        .par_chunks_mut(block_out)
        .enumerate()
        .for_each(|(idx, out)| {
            let (bi, blk) = (idx / blocks_per_image, idx % blocks_per_image);
            let ty0 = blk * rows_per_block;
            let nrow = rows_per_block.min(tyn - ty0);
            let tcur = nrow * txn;
            let img = &staged[bi * cin * per_channel..][..cin * per_channel];
            let v_len = a * a * cin * tc;
            let m_len = a * a * cout * tc;
            let tmp_len = a * row_len.max(a * txn);
            with_scratch(v_len + m_len + tmp_len, |scratch| {
                let (v, rest) = scratch.split_at_mut(v_len);
                let (mm, tmp) = rest.split_at_mut(m_len);
                pulp::Arch::new().dispatch(|| {
                    // Input transform: V[ξ][ci][t] = (Bᵀ d B)[ξ] for the tile t.
                    let row_offs: [usize; 6] = std::array::from_fn(|k| k * row_len);
                    let col_offs: [usize; 6] = std::array::from_fn(|c| (c % m) * q + c / m);
                    for ci in 0..cin {
                        for tl in 0..nrow {
                            let band =
                                &img[ci * per_channel + (ty0 + tl) * m * row_len..][..a * row_len];
                            T::input(band, &row_offs, tmp, 0, row_len, row_len);
                            for r in 0..a {
                                let src = &tmp[r * row_len..][..row_len];
                                T::input(
                                    src,
                                    &col_offs,
                                    v,
                                    ((r * a) * cin + ci) * tc + tl * txn,
                                    cin * tc,
                                    txn,
                                );
                            }
                        }
                    }
                });
                for xi in 0..a * a {
                    gemm(
                        MatMut {
                            data: mm,
                            offset: xi * cout * tc,
                            rows: cout,
                            cols: tcur,
                            row_stride: tc,
                        },
                        MatRef::row_major(u, xi * cout * cin, cout, cin, cin),
                        MatRef::row_major(v, xi * cin * tc, cin, tcur, tc),
                        false,
                    );
                }
                pulp::Arch::new().dispatch(|| {
                    // Output transform: Y = Aᵀ M A, stored `[co][tl][y][x][tx]`.
                    let tmp = &mut tmp[..a * m * txn];
                    for co in 0..cout {
                        for tl in 0..nrow {
                            for c in 0..a {
                                let offs: [usize; 6] = std::array::from_fn(|r| {
                                    ((r * a + c) * cout + co) * tc + tl * txn
                                });
                                // tmp[y][c][tx]
                                T::output(mm, &offs, tmp, c * txn, a * txn, txn);
                            }
                            for y in 0..m {
                                let offs: [usize; 6] = std::array::from_fn(|c| (y * a + c) * txn);
                                T::output(
                                    tmp,
                                    &offs,
                                    out,
                                    ((co * rows_per_block + tl) * m + y) * m * txn,
                                    txn,
                                    txn,
                                );
                            }
                        }
                    }
                });
            });
        });

    let mut y = vec![0.0f32; g.b * g.cout * g.ho * g.wo];
    y.par_chunks_mut(g.ho * g.wo)
        .enumerate()
        .for_each(|(idx, dst)| {
            let (bi, co) = (idx / g.cout, idx % g.cout);
            let bv = bias.map_or(0.0, |b| b[co]);
            for (oy, row) in dst.chunks_exact_mut(g.wo).enumerate() {
                let (ty, yy) = (oy / m, oy % m);
                let (blk, tl) = (ty / rows_per_block, ty % rows_per_block);
                let base = (bi * blocks_per_image + blk) * block_out
                    + ((co * rows_per_block + tl) * m + yy) * m * txn;
                let src = &stage[base..][..m * txn];
                for (ox, o) in row.iter_mut().enumerate() {
                    *o = src[(ox % m) * txn + ox / m] + bv;
                }
            }
        });
    y
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
    fn flop_count() {
        let f = conv2d_flops(&[1, 64, 64, 64], &[64, 64, 3, 3], &cfg(1, 1, 1, 1)).unwrap();
        assert_eq!(f, 2.0 * 64.0 * 64.0 * 4096.0 * 9.0);
    }
}
