//! How real a set of generated frames looks next to the reference world's: a Fréchet distance
//! over a fixed, hand-made feature set, calibrated so that 0 is the reference world itself and 1
//! is the reference blurred, plus the two measures blur shows most plainly (sharpness and colour
//! count).
//!
//! **Features** (every frame, [`FEATURES`] numbers; luminance `L` = Rec. 709 weights, 0–255):
//!
//! - at each of three scales (the frame, and box-averaged by 2 and by 4): the mean gradient
//!   magnitude of `L`, its 90th percentile, the share of pixels whose gradient exceeds 10, and the
//!   mean absolute Laplacian — how much detail there is, and how fine;
//! - the mean and standard deviation of R, G and B, the mean saturation, and log₂ of the number
//!   of distinct colours at 5 bits per channel — the palette;
//! - the mean standard deviation of `L` in 8×8 blocks of the frame and in 4×4 blocks of the
//!   half-size frame — local contrast;
//! - the mean `L` of the top, middle and bottom thirds — the layout of sky and ground.
//!
//! Nothing is learned or downloaded, so the distance means the same in every run. Each feature is
//! divided by its standard deviation over the reference frames before the distance is taken, so
//! that no feature counts more for its units.

use crate::frame::Frame;

/// Numbers in a frame's feature vector.
pub const FEATURES: usize = 3 * 4 + 8 + 2 + 3;

/// Luminance (Rec. 709) of every pixel, 0 to 255.
fn luminance(f: &Frame) -> Vec<f32> {
    f.rgba
        .chunks_exact(4)
        .map(|p| 0.2126 * p[0] as f32 + 0.7152 * p[1] as f32 + 0.0722 * p[2] as f32)
        .collect()
}

/// `img` (`w`×`h`) averaged over `s`×`s` boxes.
fn downsample(img: &[f32], w: usize, h: usize, s: usize) -> (Vec<f32>, usize, usize) {
    let (ws, hs) = (w / s, h / s);
    let mut out = vec![0.0; ws * hs];
    for y in 0..hs * s {
        for x in 0..ws * s {
            out[(y / s) * ws + x / s] += img[y * w + x];
        }
    }
    let n = (s * s) as f32;
    out.iter_mut().for_each(|v| *v /= n);
    (out, ws, hs)
}

/// Gradient magnitude of every pixel but the last row and column (forward differences).
fn gradient_magnitudes(img: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(w.saturating_sub(1) * h.saturating_sub(1));
    for y in 0..h.saturating_sub(1) {
        for x in 0..w.saturating_sub(1) {
            let i = y * w + x;
            let (dx, dy) = (img[i + 1] - img[i], img[i + w] - img[i]);
            out.push((dx * dx + dy * dy).sqrt());
        }
    }
    out
}

/// Mean gradient magnitude of a frame's luminance: its sharpness.
pub fn sharpness(f: &Frame) -> f64 {
    let g = gradient_magnitudes(&luminance(f), f.width as usize, f.height as usize);
    g.iter().map(|&v| v as f64).sum::<f64>() / g.len().max(1) as f64
}

/// Mean absolute luminance difference between horizontal neighbours (`across`, along a row) and
/// between vertical neighbours (`down`, along a column). A picture smeared sideways into
/// horizontal streaks keeps its `down` detail and loses its `across` detail, while its
/// [`sharpness`] (both together) can look normal.
pub fn directional_detail(f: &Frame) -> (f64, f64) {
    let (w, h) = (f.width as usize, f.height as usize);
    let l = luminance(f);
    let (mut across, mut down) = (0.0f64, 0.0f64);
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if x + 1 < w {
                across += (l[i + 1] - l[i]).abs() as f64;
            }
            if y + 1 < h {
                down += (l[i + w] - l[i]).abs() as f64;
            }
        }
    }
    (
        across / (w.saturating_sub(1) * h).max(1) as f64,
        down / (w * h.saturating_sub(1)).max(1) as f64,
    )
}

/// Distinct colours at 5 bits per channel.
pub fn colour_count(f: &Frame) -> usize {
    let mut seen = vec![false; 1 << 15];
    let mut n = 0;
    for p in f.rgba.chunks_exact(4) {
        let key = ((p[0] as usize >> 3) << 10) | ((p[1] as usize >> 3) << 5) | (p[2] as usize >> 3);
        if !seen[key] {
            seen[key] = true;
            n += 1;
        }
    }
    n
}

/// Mean standard deviation of `img` over `b`×`b` blocks.
fn block_contrast(img: &[f32], w: usize, h: usize, b: usize) -> f32 {
    let (bw, bh) = (w / b, h / b);
    let mut total = 0.0;
    for by in 0..bh {
        for bx in 0..bw {
            let (mut s, mut s2) = (0.0f32, 0.0f32);
            for y in by * b..(by + 1) * b {
                for x in bx * b..(bx + 1) * b {
                    let v = img[y * w + x];
                    s += v;
                    s2 += v * v;
                }
            }
            let n = (b * b) as f32;
            total += (s2 / n - (s / n).powi(2)).max(0.0).sqrt();
        }
    }
    total / (bw * bh).max(1) as f32
}

/// The frame's feature vector (see the module docs).
pub fn features(f: &Frame) -> Vec<f64> {
    let (w, h) = (f.width as usize, f.height as usize);
    let l = luminance(f);
    let mut out = Vec::with_capacity(FEATURES);
    for s in [1, 2, 4] {
        let (img, ws, hs) = downsample(&l, w, h, s);
        let mut g = gradient_magnitudes(&img, ws, hs);
        let n = g.len().max(1) as f64;
        out.push(g.iter().map(|&v| v as f64).sum::<f64>() / n);
        out.push(g.iter().filter(|&&v| v > 10.0).count() as f64 / n);
        let mut lap = 0.0f64;
        for y in 1..hs.saturating_sub(1) {
            for x in 1..ws.saturating_sub(1) {
                let i = y * ws + x;
                let v = 4.0 * img[i] - img[i - 1] - img[i + 1] - img[i - ws] - img[i + ws];
                lap += v.abs() as f64;
            }
        }
        out.push(lap / (ws.saturating_sub(2) * hs.saturating_sub(2)).max(1) as f64);
        g.sort_by(f32::total_cmp);
        out.push(g.get(g.len() * 9 / 10).copied().unwrap_or(0.0) as f64);
    }
    let pixels = (w * h).max(1) as f64;
    for c in 0..3 {
        let mean = f.rgba.chunks_exact(4).map(|p| p[c] as f64).sum::<f64>() / pixels;
        let var = f
            .rgba
            .chunks_exact(4)
            .map(|p| (p[c] as f64 - mean).powi(2))
            .sum::<f64>()
            / pixels;
        out.push(mean);
        out.push(var.sqrt());
    }
    let saturation = f
        .rgba
        .chunks_exact(4)
        .map(|p| {
            let (hi, lo) = (p[0].max(p[1]).max(p[2]), p[0].min(p[1]).min(p[2]));
            if hi == 0 {
                0.0
            } else {
                (hi - lo) as f64 / hi as f64
            }
        })
        .sum::<f64>()
        / pixels;
    out.push(saturation);
    out.push((colour_count(f) as f64 + 1.0).log2());
    out.push(block_contrast(&l, w, h, 8) as f64);
    let (half, wh, hh) = downsample(&l, w, h, 2);
    out.push(block_contrast(&half, wh, hh, 4) as f64);
    for third in 0..3 {
        let (y0, y1) = (third * h / 3, (third + 1) * h / 3);
        let band = &l[y0 * w..y1 * w];
        out.push(band.iter().map(|&v| v as f64).sum::<f64>() / band.len().max(1) as f64);
    }
    out
}

/// A Gaussian blur of `f` with standard deviation `sigma` pixels (separable, edges clamped).
pub fn blur(f: &Frame, sigma: f32) -> Frame {
    let (w, h) = (f.width as usize, f.height as usize);
    let radius = (3.0 * sigma).ceil() as i32;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let pass = |src: &[f32], horizontal: bool| -> Vec<f32> {
        let mut out = vec![0.0; src.len()];
        for y in 0..h as i32 {
            for x in 0..w as i32 {
                for c in 0..3 {
                    let mut acc = 0.0;
                    for (k, weight) in (-radius..=radius).zip(&kernel) {
                        let (sx, sy) = if horizontal {
                            ((x + k).clamp(0, w as i32 - 1), y)
                        } else {
                            (x, (y + k).clamp(0, h as i32 - 1))
                        };
                        acc += weight * src[(sy as usize * w + sx as usize) * 3 + c];
                    }
                    out[(y as usize * w + x as usize) * 3 + c] = acc;
                }
            }
        }
        out
    };
    let rgb: Vec<f32> = f
        .rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0] as f32, p[1] as f32, p[2] as f32])
        .collect();
    let blurred = pass(&pass(&rgb, true), false);
    let rgb: Vec<u8> = blurred
        .iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    Frame::from_rgb(f.width, f.height, &rgb)
}

/// Mean and covariance of row vectors.
fn moments(rows: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let d = rows.first().map_or(0, Vec::len);
    let n = rows.len().max(1) as f64;
    let mut mean = vec![0.0; d];
    for r in rows {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += v / n;
        }
    }
    let mut cov = vec![vec![0.0; d]; d];
    for r in rows {
        for i in 0..d {
            for j in 0..d {
                cov[i][j] += (r[i] - mean[i]) * (r[j] - mean[j]) / (n - 1.0).max(1.0);
            }
        }
    }
    (mean, cov)
}

/// Eigenvalues and eigenvectors (as columns) of a symmetric matrix, by cyclic Jacobi rotations.
fn jacobi(a: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let mut m = a.to_vec();
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i][j] * m[i][j])
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if m[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (m[q][q] - m[p][p]) / (2.0 * m[p][q]);
                let t = if theta == 0.0 {
                    1.0
                } else {
                    theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
                };
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for row in m.iter_mut() {
                    let (mkp, mkq) = (row[p], row[q]);
                    row[p] = c * mkp - s * mkq;
                    row[q] = s * mkp + c * mkq;
                }
                let (row_p, row_q) = (m[p].clone(), m[q].clone());
                for (k, (mpk, mqk)) in row_p.into_iter().zip(row_q).enumerate() {
                    m[p][k] = c * mpk - s * mqk;
                    m[q][k] = s * mpk + c * mqk;
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    ((0..n).map(|i| m[i][i]).collect(), v)
}

/// The symmetric square root of a symmetric positive semi-definite matrix.
fn symmetric_sqrt(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = a.len();
    let (values, v) = jacobi(a);
    let roots: Vec<f64> = values.iter().map(|e| e.max(0.0).sqrt()).collect();
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| (0..n).map(|k| v[i][k] * roots[k] * v[j][k]).sum())
                .collect()
        })
        .collect()
}

fn matmul(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = a.len();
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| (0..n).map(|k| a[i][k] * b[k][j]).sum())
                .collect()
        })
        .collect()
}

/// The Fréchet distance between Gaussians fitted to two sets of feature vectors:
/// `|μa − μb|² + tr(Σa + Σb − 2 (Σa^½ Σb Σa^½)^½)`.
pub fn frechet_distance(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    let (ma, ca) = moments(a);
    let (mb, cb) = moments(b);
    let mean_term: f64 = ma.iter().zip(&mb).map(|(x, y)| (x - y).powi(2)).sum();
    let root_a = symmetric_sqrt(&ca);
    let inner = matmul(&matmul(&root_a, &cb), &root_a);
    let cross: f64 = jacobi(&inner).0.iter().map(|e| e.max(0.0).sqrt()).sum();
    let trace: f64 = (0..ca.len()).map(|i| ca[i][i] + cb[i][i]).sum();
    (mean_term + trace - 2.0 * cross).max(0.0)
}

/// Feature vectors divided, feature by feature, by the standard deviation of `reference`'s.
pub fn standardised(rows: &[Vec<f64>], reference: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let (_, cov) = moments(reference);
    let scale: Vec<f64> = (0..cov.len())
        .map(|i| {
            let s = cov[i][i].sqrt();
            if s > 1e-9 { 1.0 / s } else { 0.0 }
        })
        .collect();
    rows.iter()
        .map(|r| r.iter().zip(&scale).map(|(v, s)| v * s).collect())
        .collect()
}

/// How far `generated` is from `reference` toward blur: the Fréchet distance of the generated
/// frames' features from the reference frames', on a scale where `other` (reference frames of
/// other held-out seeds) scores 0 and `reference` blurred with σ 1.5 px scores 1. Also returns
/// the three raw distances `(generated, other, blurred)`.
pub fn realism_score(generated: &[Frame], reference: &[Frame], other: &[Frame]) -> (f64, [f64; 3]) {
    let feats = |frames: &[Frame]| frames.iter().map(features).collect::<Vec<_>>();
    let reference_f = feats(reference);
    let blurred: Vec<Frame> = reference.iter().map(|f| blur(f, 1.5)).collect();
    let [g, o, b] = [feats(generated), feats(other), feats(&blurred)]
        .map(|rows| standardised(&rows, &reference_f));
    let r = standardised(&reference_f, &reference_f);
    let raw = [
        frechet_distance(&g, &r),
        frechet_distance(&o, &r),
        frechet_distance(&b, &r),
    ];
    let span = raw[2] - raw[1];
    let score = if span.abs() < 1e-12 {
        f64::NAN
    } else {
        (raw[0] - raw[1]) / span
    };
    (score, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64×64 test picture: sky above, a ground with texture below, a few dark "trees".
    fn scene(seed: u32) -> Frame {
        let (w, h) = (64u32, 64u32);
        let mut rgb = Vec::with_capacity((w * h * 3) as usize);
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        let mut noise = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 40) as u8
        };
        let trees = [
            (10 + seed % 7, 30),
            (35 + seed % 11, 28),
            (50, 33 + seed % 5),
        ];
        for y in 0..h {
            for x in 0..w {
                let in_tree = trees
                    .iter()
                    .any(|&(tx, ty)| x.abs_diff(tx) < 3 && y > ty - 12 && y < ty + 2);
                let px = if in_tree {
                    [30, 70 + noise(), 30]
                } else if y < 30 {
                    [110 + (y as u8), 160 + (y as u8), 230]
                } else {
                    [120 + noise(), 100 + noise(), 60 + noise()]
                };
                rgb.extend_from_slice(&px);
            }
        }
        Frame::from_rgb(w, h, &rgb)
    }

    #[test]
    fn blur_lowers_sharpness_and_colour_count_and_identical_frames_score_zero() {
        let f = scene(1);
        let b = blur(&f, 1.5);
        assert!(
            sharpness(&b) < 0.6 * sharpness(&f),
            "{} {}",
            sharpness(&b),
            sharpness(&f)
        );
        assert!(colour_count(&b) < colour_count(&f));
        assert_eq!(
            blur(&Frame::solid(8, 8, [9, 9, 9, 255]), 2.0),
            Frame::solid(8, 8, [9, 9, 9, 255])
        );
        assert_eq!(features(&f).len(), FEATURES);
        let set: Vec<Vec<f64>> = (0..30).map(|i| features(&scene(i))).collect();
        assert!(frechet_distance(&set, &set) < 1e-6);
    }

    /// Horizontal streaks have detail down a column and none along a row; vertical ones the
    /// opposite; both count alike in the plain sharpness.
    #[test]
    fn directional_detail_tells_horizontal_streaks_from_vertical_ones() {
        let stripes = |horizontal: bool| {
            let mut rgb = Vec::new();
            for y in 0..16u32 {
                for x in 0..16u32 {
                    let v = if (if horizontal { y } else { x }) % 2 == 0 {
                        200
                    } else {
                        40
                    };
                    rgb.extend_from_slice(&[v, v, v]);
                }
            }
            Frame::from_rgb(16, 16, &rgb)
        };
        let (across, down) = directional_detail(&stripes(true));
        assert_eq!(across, 0.0);
        assert!((down - 160.0).abs() < 0.01, "{down}");
        let (across, down) = directional_detail(&stripes(false));
        assert!(
            (across - 160.0).abs() < 0.01 && down == 0.0,
            "{across} {down}"
        );
        assert!((sharpness(&stripes(true)) - sharpness(&stripes(false))).abs() < 1e-9);
    }

    #[test]
    fn the_score_is_zero_for_other_reference_frames_and_one_for_blur() {
        let reference: Vec<Frame> = (0..40).map(scene).collect();
        let other: Vec<Frame> = (100..140).map(scene).collect();
        let blurred: Vec<Frame> = reference.iter().map(|f| blur(f, 1.5)).collect();
        let (score, [g, o, b]) = realism_score(&other, &reference, &other);
        assert!(
            score.abs() < 1e-9 && (g - o).abs() < 1e-9,
            "{score} {g} {o} {b}"
        );
        let (score, _) = realism_score(&blurred, &reference, &other);
        assert!((score - 1.0).abs() < 1e-9, "{score}");
        // Blurred twice as much is further than blur.
        let more: Vec<Frame> = reference.iter().map(|f| blur(f, 3.0)).collect();
        let (score, _) = realism_score(&more, &reference, &other);
        assert!(score > 1.5, "{score}");
        // A flat grey picture is far from everything.
        let grey = vec![Frame::solid(64, 64, [128, 128, 128, 255]); 40];
        let (score, _) = realism_score(&grey, &reference, &other);
        assert!(score > 2.0, "{score}");
    }

    #[test]
    fn the_frechet_distance_of_shifted_gaussians_is_the_squared_shift() {
        // 1-d features: the same spread, means 0 and 3 → distance 9.
        let a: Vec<Vec<f64>> = (0..1000).map(|i| vec![(i % 10) as f64]).collect();
        let b: Vec<Vec<f64>> = a.iter().map(|r| vec![r[0] + 3.0]).collect();
        assert!((frechet_distance(&a, &b) - 9.0).abs() < 1e-9);
        // Matrix square root: sqrt([[4,0],[0,9]]) = [[2,0],[0,3]] after any rotation.
        let m = vec![vec![6.5, 2.5], vec![2.5, 6.5]];
        let r = symmetric_sqrt(&m);
        let back = matmul(&r, &r);
        for i in 0..2 {
            for j in 0..2 {
                assert!((back[i][j] - m[i][j]).abs() < 1e-9, "{back:?}");
            }
        }
    }
}
