//! Starts the motion warp's head (see [`MotionWarp`](crate::default_model::warp::MotionWarp))
//! at the global image motion measured in the training data.
//!
//! Learned from the prediction loss alone, the head hardly moves: the loss's gradient with respect
//! to a shift only sees one pixel either side (linear interpolation), while turning moves the view
//! five pixels per frame, so the gradient is weak and noisy (a first run reached 0.2 of the needed
//! shift after 200 steps). The motion is measurable, though: for pairs of consecutive frames, the
//! horizontal and vertical shift that best aligns them is found by search, and a least-squares
//! fit of those shifts to the actions gives the head's start, the way the principal
//! components give the codec's. Nothing here knows the reference world; any dataset works.

use candle_core::Device;

use crate::default_model::conditions::action_len;
use crate::error::{Error, Result};

use super::data::TrainingData;

/// Largest shift searched, pixels per frame.
pub const MAX_SHIFT: usize = 10;

/// Luminance of an RGB8 frame `(H, W, 3)`, 0–255.
fn luma(rgb: &[u8]) -> Vec<f32> {
    rgb.chunks_exact(3)
        .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
        .collect()
}

/// Mean squared difference between `a` moved by `(dx, dy)` and `b` over the pixels that stay
/// inside both frames for every searched shift.
fn cost(a: &[f32], b: &[f32], width: usize, height: usize, dx: isize, dy: isize) -> f32 {
    let m = MAX_SHIFT as isize;
    let (w, h) = (width as isize, height as isize);
    let mut sum = 0.0f32;
    let mut n = 0usize;
    for y in m..h - m {
        let row_a = ((y - dy) * w) as usize;
        let row_b = (y * w) as usize;
        for x in m..w - m {
            let d = a[row_a + (x - dx) as usize] - b[row_b + x as usize];
            sum += d * d;
            n += 1;
        }
    }
    sum / n.max(1) as f32
}

/// The minimum of a parabola through the costs at -1, 0 and +1 around the best integer shift.
fn refine(best: isize, left: f32, centre: f32, right: f32) -> f32 {
    let curvature = left - 2.0 * centre + right;
    let offset = if curvature > 1e-6 {
        (0.5 * (left - right) / curvature).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    best as f32 + offset
}

/// The global shift `(dx, dy)` in pixels (positive: content moved right or down) from frame `a`
/// to frame `b` (luminance, `width × height`): the horizontal shift is searched first, then the
/// vertical one at it, each refined below a pixel.
pub fn global_shift(a: &[f32], b: &[f32], width: usize, height: usize) -> (f32, f32) {
    let m = MAX_SHIFT as isize;
    if width <= 2 * MAX_SHIFT + 2 || height <= 2 * MAX_SHIFT + 2 {
        return (0.0, 0.0);
    }
    let search = |along_x: bool, other: isize| -> f32 {
        let at = |s: isize| {
            if along_x {
                cost(a, b, width, height, s, other)
            } else {
                cost(a, b, width, height, other, s)
            }
        };
        let costs: Vec<f32> = (-m..=m).map(at).collect();
        let (i, _) = costs
            .iter()
            .enumerate()
            .min_by(|x, y| x.1.total_cmp(y.1))
            .expect("at least one shift");
        if i == 0 || i == costs.len() - 1 {
            return (i as isize - m) as f32;
        }
        refine(i as isize - m, costs[i - 1], costs[i], costs[i + 1])
    };
    let dx = search(true, 0);
    let dy = search(false, dx.round() as isize);
    (dx, dy)
}

/// Least-squares fit `y ≈ W·x + b` for `x` of length `k` (rows of `inputs`) and scalar targets,
/// with a small ridge on `W` for inputs that never vary. Returns `(W, b)`.
pub fn fit_linear(inputs: &[Vec<f32>], targets: &[f32]) -> Result<(Vec<f32>, f32)> {
    let k = inputs.first().map_or(0, Vec::len);
    if inputs.len() < k + 2 || inputs.len() != targets.len() {
        return Err(Error::Other(format!(
            "cannot fit {k} inputs to {} motion measurements",
            targets.len()
        )));
    }
    // Normal equations over [x, 1]: (XᵀX + λI)·θ = Xᵀy, solved by Gaussian elimination.
    let n = k + 1;
    let mut a = vec![0f64; n * n];
    let mut rhs = vec![0f64; n];
    for (x, &y) in inputs.iter().zip(targets) {
        let xs: Vec<f64> = x.iter().map(|&v| v as f64).chain([1.0]).collect();
        for i in 0..n {
            rhs[i] += xs[i] * y as f64;
            for j in 0..n {
                a[i * n + j] += xs[i] * xs[j];
            }
        }
    }
    let ridge = 1e-3 * inputs.len() as f64;
    for i in 0..k {
        a[i * n + i] += ridge;
    }
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&p, &q| a[p * n + col].abs().total_cmp(&a[q * n + col].abs()))
            .expect("rows left");
        if a[pivot * n + col].abs() < 1e-12 {
            return Err(Error::Other("motion fit is singular".into()));
        }
        for j in 0..n {
            a.swap(col * n + j, pivot * n + j);
        }
        rhs.swap(col, pivot);
        for row in 0..n {
            if row != col {
                let f = a[row * n + col] / a[col * n + col];
                for j in 0..n {
                    a[row * n + j] -= f * a[col * n + j];
                }
                rhs[row] -= f * rhs[col];
            }
        }
    }
    let theta: Vec<f32> = (0..n).map(|i| (rhs[i] / a[i * n + i]) as f32).collect();
    Ok((theta[..k].to_vec(), theta[k]))
}

/// Least-squares fits `(W, intercept)` of the measured horizontal and vertical shifts of every
/// `stride`-th pair of consecutive frames (see [`measure`]) to the actions that caused them.
pub fn fit_shifts_to_actions(
    data: &TrainingData,
    stride: usize,
    device: &Device,
) -> Result<[(Vec<f32>, f32); 2]> {
    let measured = measure(data, stride);
    let rows: Vec<usize> = measured.iter().map(|m| m.0).collect();
    // The noise level is part of the condition vector but not of its action part.
    let conditions = data.conditions(&rows, &vec![0.0; rows.len()], device)?;
    let inputs: Vec<Vec<f32>> = conditions
        .narrow(1, 0, action_len(&data.layout))?
        .to_vec2()?;
    let xs: Vec<f32> = measured.iter().map(|m| m.1).collect();
    let ys: Vec<f32> = measured.iter().map(|m| m.2).collect();
    Ok([fit_linear(&inputs, &xs)?, fit_linear(&inputs, &ys)?])
}

/// Measured shifts `(dx, dy)` of every `stride`-th pair of consecutive frames inside an
/// episode, with the row of the second frame (whose action caused the move).
pub fn measure(data: &TrainingData, stride: usize) -> Vec<(usize, f32, f32)> {
    let (w, h) = (data.width, data.height);
    let px = w * h * 3;
    let mut out = Vec::new();
    for &(first, len) in &data.episodes {
        for r in (first + 1..first + len).step_by(stride.max(1)) {
            let a = luma(&data.frames[(r - 1) * px..r * px]);
            let b = luma(&data.frames[r * px..(r + 1) * px]);
            let (dx, dy) = global_shift(&a, &b, w, h);
            out.push((r, dx, dy));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth random-looking pattern, sampled at `(x - dx, y - dy)`.
    fn pattern(width: usize, height: usize, dx: f32, dy: f32) -> Vec<f32> {
        let mut out = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                let (u, v) = (x as f32 - dx, y as f32 - dy);
                out.push(
                    128.0
                        + 40.0 * (u * 0.21).sin() * (v * 0.13).cos()
                        + 30.0 * (u * 0.07 + v * 0.11).sin()
                        + 20.0 * (u * 0.37 - v * 0.05).cos(),
                );
            }
        }
        out
    }

    #[test]
    fn a_known_shift_is_measured_to_a_fraction_of_a_pixel() {
        let a = pattern(64, 48, 0.0, 0.0);
        for (dx, dy) in [(3.0, 0.0), (-5.4, 1.0), (0.0, -2.5), (7.2, 3.6)] {
            let b = pattern(64, 48, dx, dy);
            let (mx, my) = global_shift(&a, &b, 64, 48);
            assert!(
                (mx - dx).abs() < 0.35 && (my - dy).abs() < 0.35,
                "moved by ({dx}, {dy}), measured ({mx}, {my})"
            );
        }
    }

    #[test]
    fn the_fit_recovers_a_linear_relation() {
        // y = 5·x0 - 2·x2 + 0.5, x1 never varies (the ridge keeps its weight at zero).
        let inputs: Vec<Vec<f32>> = (0..200)
            .map(|i| {
                let t = i as f32 * 0.37;
                vec![t.sin(), 1.0, (t * 1.7).cos()]
            })
            .collect();
        let targets: Vec<f32> = inputs
            .iter()
            .map(|x| 5.0 * x[0] - 2.0 * x[2] + 0.5)
            .collect();
        let (w, b) = fit_linear(&inputs, &targets).unwrap();
        let predicted = |x: &[f32]| w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>() + b;
        for (x, y) in inputs.iter().zip(&targets) {
            assert!((predicted(x) - y).abs() < 0.05, "{w:?} {b}");
        }
    }
}
