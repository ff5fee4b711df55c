//! Picture and motion measures on RGBA8 frames: PSNR, SSIM, the horizontal shift and the zoom
//! between two frames, and simple statistics for spotting a collapsed rollout.

use crate::frame::Frame;

/// Peak signal-to-noise ratio in dB over RGB (alpha ignored); 100 dB for identical frames.
pub fn psnr(a: &Frame, b: &Frame) -> f64 {
    let mut sum = 0.0f64;
    let mut n = 0usize;
    for (pa, pb) in a.rgba.chunks_exact(4).zip(b.rgba.chunks_exact(4)) {
        for c in 0..3 {
            let d = pa[c] as f64 - pb[c] as f64;
            sum += d * d;
        }
        n += 3;
    }
    let mse = sum / n.max(1) as f64;
    if mse == 0.0 {
        100.0
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Luminance (Rec. 601) of each pixel, 0 to 255.
pub fn luma(f: &Frame) -> Vec<f32> {
    f.rgba
        .chunks_exact(4)
        .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
        .collect()
}

/// Structural similarity of the luminance, averaged over 7×7 windows (stride 2).
pub fn ssim(a: &Frame, b: &Frame) -> f64 {
    let (w, h) = (a.width as usize, a.height as usize);
    let (la, lb) = (luma(a), luma(b));
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let win = 7.min(w).min(h);
    let mut total = 0.0;
    let mut count = 0;
    for y in (0..=h - win).step_by(2) {
        for x in (0..=w - win).step_by(2) {
            let (mut ma, mut mb, mut va, mut vb, mut cov) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
            for dy in 0..win {
                for dx in 0..win {
                    let i = (y + dy) * w + x + dx;
                    ma += la[i] as f64;
                    mb += lb[i] as f64;
                }
            }
            let n = (win * win) as f64;
            ma /= n;
            mb /= n;
            for dy in 0..win {
                for dx in 0..win {
                    let i = (y + dy) * w + x + dx;
                    let (da, db) = (la[i] as f64 - ma, lb[i] as f64 - mb);
                    va += da * da;
                    vb += db * db;
                    cov += da * db;
                }
            }
            va /= n - 1.0;
            vb /= n - 1.0;
            cov /= n - 1.0;
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            count += 1;
        }
    }
    total / count.max(1) as f64
}

/// The horizontal shift (pixels, positive = content moved right) from `a` to `b` that best
/// aligns them, searched over ±`max_shift`, with the mean absolute luminance difference at it.
pub fn horizontal_shift(a: &Frame, b: &Frame, max_shift: i32) -> (i32, f32) {
    let (w, h) = (a.width as i32, a.height as i32);
    let (la, lb) = (luma(a), luma(b));
    let mut best = (0, f32::INFINITY);
    for s in -max_shift..=max_shift {
        let mut sum = 0.0f32;
        let mut n = 0;
        for y in 0..h {
            for x in max_shift..w - max_shift {
                let (xa, xb) = (x, x + s);
                sum += (la[(y * w + xa) as usize] - lb[(y * w + xb) as usize]).abs();
                n += 1;
            }
        }
        let cost = sum / n.max(1) as f32;
        if cost < best.1 {
            best = (s, cost);
        }
    }
    best
}

/// The scale about the centre (e.g. 1.05 = content grew 5 %) from `a` to `b` that best aligns
/// their central regions, searched over `scales`.
pub fn zoom(a: &Frame, b: &Frame, scales: &[f32]) -> f32 {
    let (w, h) = (a.width as usize, a.height as usize);
    let (la, lb) = (luma(a), luma(b));
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let sample = |img: &[f32], x: f32, y: f32| -> f32 {
        let (x0, y0) = (x.floor().max(0.0) as usize, y.floor().max(0.0) as usize);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let top = img[y0 * w + x0] * (1.0 - fx) + img[y0 * w + x1] * fx;
        let bottom = img[y1 * w + x0] * (1.0 - fx) + img[y1 * w + x1] * fx;
        top * (1.0 - fy) + bottom * fy
    };
    let mut best = (1.0, f32::INFINITY);
    for &s in scales {
        let mut sum = 0.0;
        let mut n = 0;
        // The middle half of `b`, compared with `a` sampled at positions shrunk by the scale.
        for y in h / 4..3 * h / 4 {
            for x in w / 4..3 * w / 4 {
                let (ax, ay) = (cx + (x as f32 - cx) / s, cy + (y as f32 - cy) / s);
                sum += (sample(&la, ax, ay) - lb[y * w + x]).abs();
                n += 1;
            }
        }
        let cost = sum / n as f32;
        if cost < best.1 {
            best = (s, cost);
        }
    }
    best.0
}

/// Per-frame statistics used to spot a collapsed rollout.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FrameStats {
    /// Mean luminance (0–255).
    pub brightness: f32,
    /// Standard deviation of luminance (contrast).
    pub contrast: f32,
    /// Mean absolute difference between horizontally adjacent pixels (fine detail or noise).
    pub detail: f32,
    /// How much stronger edges are on a square grid than between grid lines (see
    /// [`block_edges`]): about 1 for a natural picture, well above 1 for a mosaic of blocks.
    pub block_edges: f32,
}

impl FrameStats {
    /// Statistics of one frame.
    pub fn of(f: &Frame) -> Self {
        let l = luma(f);
        let n = l.len() as f32;
        let mean = l.iter().sum::<f32>() / n;
        let var = l.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
        let w = f.width as usize;
        let mut detail = 0.0;
        let mut count = 0;
        for row in l.chunks_exact(w) {
            for pair in row.windows(2) {
                detail += (pair[1] - pair[0]).abs();
                count += 1;
            }
        }
        Self {
            brightness: mean,
            contrast: var.sqrt(),
            detail: detail / count.max(1) as f32,
            block_edges: block_edges(&l, w),
        }
    }
}

/// Grid periods [`block_edges`] looks for: the patch sizes of patch-based models (the default
/// model's is 8) and of block codecs.
pub const BLOCK_PERIODS: [usize; 3] = [4, 8, 16];

/// Block artefacts in a luminance image `w` pixels wide: for each period in
/// [`BLOCK_PERIODS`], the mean absolute step between neighbouring pixels across grid lines
/// (horizontal and vertical) divided by the mean step everywhere else; the largest ratio.
///
/// A patch-based model that loses its structure decodes each patch on its own, and the picture
/// turns into a mosaic whose seams sit exactly on the patch grid; brightness, contrast and
/// detail can all stay in range while this ratio climbs from about 1 to 2 or more.
pub fn block_edges(l: &[f32], w: usize) -> f32 {
    let h = l.len() / w.max(1);
    let mut worst = 0.0f32;
    for period in BLOCK_PERIODS {
        if w < 2 * period || h < 2 * period {
            continue;
        }
        let (mut on, mut n_on, mut off, mut n_off) = (0.0f64, 0usize, 0.0f64, 0usize);
        let mut add = |d: f32, seam: bool| {
            if seam {
                on += d as f64;
                n_on += 1;
            } else {
                off += d as f64;
                n_off += 1;
            }
        };
        for y in 0..h {
            for x in 1..w {
                add((l[y * w + x] - l[y * w + x - 1]).abs(), x % period == 0);
            }
        }
        for y in 1..h {
            for x in 0..w {
                add((l[y * w + x] - l[(y - 1) * w + x]).abs(), y % period == 0);
            }
        }
        let seam = on / n_on.max(1) as f64;
        let rest = off / n_off.max(1) as f64;
        // A flat picture has no edges anywhere: call it 1 (no blocks), not 0/0.
        let ratio = if rest < 1e-3 && seam < 1e-3 {
            1.0
        } else {
            seam / rest.max(1e-3)
        };
        worst = worst.max(ratio as f32);
    }
    worst
}

/// Mean colour (R, G, B) of a frame.
pub fn mean_colour(f: &Frame) -> [f32; 3] {
    let mut sum = [0.0f64; 3];
    for p in f.rgba.chunks_exact(4) {
        for c in 0..3 {
            sum[c] += p[c] as f64;
        }
    }
    let n = (f.rgba.len() / 4).max(1) as f64;
    [
        (sum[0] / n) as f32,
        (sum[1] / n) as f32,
        (sum[2] / n) as f32,
    ]
}

/// Pearson correlation of two series (0 when either is constant).
pub fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let ma = a[..n].iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let mb = b[..n].iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (da, db) = (a[i] as f64 - ma, b[i] as f64 - mb);
        cov += da * db;
        va += da * da;
        vb += db * db;
    }
    if va == 0.0 || vb == 0.0 {
        0.0
    } else {
        cov / (va * vb).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(w: u32, h: u32, offset: i32) -> Frame {
        let mut rgba = Vec::new();
        for y in 0..h as i32 {
            for x in 0..w as i32 {
                let v = (((x - offset) * 37 + y * 11) % 97 * 2) as u8;
                rgba.extend_from_slice(&[v, v, v, 255]);
            }
        }
        Frame {
            width: w,
            height: h,
            rgba,
        }
    }

    #[test]
    fn measures_behave() {
        let a = pattern(32, 32, 0);
        assert_eq!(psnr(&a, &a), 100.0);
        assert!((ssim(&a, &a) - 1.0).abs() < 1e-9);
        let b = pattern(32, 32, 3);
        assert_eq!(horizontal_shift(&a, &b, 6).0, 3);
        assert!(psnr(&a, &b) < 20.0);
        assert!((correlation(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-9);
        let s = FrameStats::of(&Frame::solid(8, 8, [100, 100, 100, 255]));
        assert_eq!((s.contrast, s.detail), (0.0, 0.0));
        assert_eq!(s.block_edges, 1.0);
    }

    #[test]
    fn psnr_of_a_known_error_and_zoom_of_a_magnified_frame() {
        let a = pattern(32, 32, 0);
        let mut c = a.clone();
        for (pc, pa) in c.rgba.chunks_exact_mut(4).zip(a.rgba.chunks_exact(4)) {
            for i in 0..3 {
                pc[i] = if pa[i] <= 245 { pa[i] + 10 } else { pa[i] - 10 };
            }
        }
        // Every value off by 10: MSE 100, PSNR 10·log10(255²/100).
        let want = 10.0 * (255.0f64 * 255.0 / 100.0).log10();
        assert!((psnr(&a, &c) - want).abs() < 1e-9, "{}", psnr(&a, &c));
        // A smooth picture magnified by 4 % about its centre.
        let smooth = |scale: f32| {
            let mut rgba = Vec::new();
            for y in 0..64 {
                for x in 0..64 {
                    let (u, v) = ((x as f32 - 32.0) / scale, (y as f32 - 32.0) / scale);
                    let l = 128.0 + 60.0 * (u * 0.3).sin() * (v * 0.25).cos();
                    rgba.extend_from_slice(&[l as u8, l as u8, l as u8, 255]);
                }
            }
            Frame {
                width: 64,
                height: 64,
                rgba,
            }
        };
        let scales: Vec<f32> = (0..=16).map(|i| 0.92 + i as f32 * 0.01).collect();
        let z = zoom(&smooth(1.0), &smooth(1.04), &scales);
        assert!((z - 1.04).abs() < 0.011, "zoom {z}");
        let z = zoom(&smooth(1.0), &smooth(0.97), &scales);
        assert!((z - 0.97).abs() < 0.011, "zoom {z}");
    }

    #[test]
    fn block_edges_find_a_mosaic() {
        // A smooth gradient with fine texture has no grid; the same picture averaged over 8×8
        // blocks has all its steps on the grid.
        let (w, h) = (64usize, 64usize);
        let smooth: Vec<f32> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32, (i / w) as f32);
                100.0 + x * 1.5 + y * 0.7 + ((x * 0.9).sin() + (y * 1.3).cos()) * 6.0
            })
            .collect();
        let mut blocks = smooth.clone();
        for by in (0..h).step_by(8) {
            for bx in (0..w).step_by(8) {
                let idx = |x: usize, y: usize| (by + y) * w + bx + x;
                let mean = (0..64).map(|k| smooth[idx(k % 8, k / 8)]).sum::<f32>() / 64.0;
                for k in 0..64 {
                    // Keep some texture inside the block so "elsewhere" is not zero.
                    blocks[idx(k % 8, k / 8)] = mean + (smooth[idx(k % 8, k / 8)] - mean) * 0.2;
                }
            }
        }
        let natural = block_edges(&smooth, w);
        let mosaic = block_edges(&blocks, w);
        assert!(natural < 1.3, "natural {natural}");
        assert!(mosaic > 2.0, "mosaic {mosaic}");
    }
}
