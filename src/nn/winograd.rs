//! Winograd F(2×2, 3×3) and F(4×4, 3×3) convolution for the 3×3 stride-1 layers of [`conv`]:
//! the input is cut into overlapping tiles, transformed, multiplied by the transformed filters in
//! `(m+2)²` independent matrix products, and transformed back (see the [`conv`] module for when
//! each form is chosen and what it costs in rounding error).
//!
//! [`conv`]: crate::nn::conv

use rayon::prelude::*;

use super::cpu::{Kernel, Scratch, vectorize, with_scratch};
use super::gemm::{MatMut, MatRef, gemm};
use super::geometry::{Epilogue, Geom, finish_planes};
use super::norm::ChannelMap;

/// Tiles per block of the Winograd forms: the transformed input and products of one block,
/// `2·(m+2)²·tiles·channels` floats, stay in a core's L2 cache.
const WINOGRAD_BLOCK_TILES: usize = 32;

/// One Winograd F(m×m, 3×3) variant: its 1-D input, output and filter transforms.
///
/// The 1-D transforms work on `n` lanes at once: lane `i` of row `k` is `src[offs[k] + i]`, and
/// output row `k` goes to `dst[dst_off + k·dst_stride ..][..n]`, so the 2-D transforms vectorise
/// across tiles.
pub(super) trait Winograd {
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
pub(super) struct F2;

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
pub(super) struct F4;

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
pub(super) fn winograd_filters<T: Winograd>(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
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
pub(super) fn winograd<T: Winograd>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::conv::tests::{cfg, compare};
    use crate::nn::conv::{ConvAlgorithm, conv2d};
    use candle_core::{DType, Device, Tensor};

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
}
