//! Deterministic randomness: integer hashing, 2D gradient noise, fractal sums and a tileable
//! noise texture. (The session's random-number generator is [`crate::rng::SplitMix64`].)
//!
//! Everything here is a pure function of its inputs (no global state, no hash-map order), so the
//! world is identical from run to run.

use crate::rng::mix64;

/// Hashes a seed and two lattice coordinates to 32 bits.
#[inline]
pub fn hash2(seed: u32, x: i32, y: i32) -> u32 {
    let mut h = seed
        .wrapping_mul(0x9E37_79B1)
        .wrapping_add((x as u32).wrapping_mul(0x85EB_CA77))
        .wrapping_add((y as u32).wrapping_mul(0xC2B2_AE3D));
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297A_2D39);
    h ^= h >> 15;
    h
}

/// Hashes three integers to 32 bits.
#[inline]
pub fn hash3(seed: u32, x: i32, y: i32, z: i32) -> u32 {
    hash2(hash2(seed, x, y), z, 0x5bd1)
}

/// A hash mapped to `[0, 1)`.
#[inline]
pub fn unit(h: u32) -> f32 {
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Derives a 32-bit sub-seed for a named purpose from a session seed.
pub fn sub_seed(seed: u64, purpose: u32) -> u32 {
    (mix64(seed ^ (purpose as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 32) as u32
}

/// `x.floor() as i32` without a library call (exact for |x| < 2^31).
#[inline]
pub fn floor_i(x: f32) -> i32 {
    let i = x as i32;
    i - ((i as f32 > x) as i32)
}

/// `x.ceil() as i32` without a library call.
#[inline]
pub fn ceil_i(x: f32) -> i32 {
    let i = x as i32;
    i + (((i as f32) < x) as i32)
}

#[inline]
fn fade(t: f32) -> f32 {
    t * t * t * (t * (t * 6.0 - 15.0) + 10.0)
}

/// Gradient directions: four axes and four diagonals.
const GRAD: [(f32, f32); 8] = [
    (1.0, 1.0),
    (1.0, -1.0),
    (-1.0, 1.0),
    (-1.0, -1.0),
    (1.0, 0.0),
    (-1.0, 0.0),
    (0.0, 1.0),
    (0.0, -1.0),
];

#[inline]
fn grad(h: u32, x: f32, y: f32) -> f32 {
    let (gx, gy) = GRAD[(h & 7) as usize];
    gx * x + gy * y
}

/// 2D gradient noise in about `[-1, 1]`, smooth, zero at lattice points, period-free.
#[inline]
pub fn gradient(seed: u32, x: f32, y: f32) -> f32 {
    let xi = floor_i(x);
    let yi = floor_i(y);
    let fx = x - xi as f32;
    let fy = y - yi as f32;
    let g00 = grad(hash2(seed, xi, yi), fx, fy);
    let g10 = grad(hash2(seed, xi + 1, yi), fx - 1.0, fy);
    let g01 = grad(hash2(seed, xi, yi + 1), fx, fy - 1.0);
    let g11 = grad(hash2(seed, xi + 1, yi + 1), fx - 1.0, fy - 1.0);
    let u = fade(fx);
    let v = fade(fy);
    let a = g00 + (g10 - g00) * u;
    let b = g01 + (g11 - g01) * u;
    (a + (b - a) * v) * 0.9
}

/// Fractal sum of `octaves` of gradient noise (each twice the frequency, `gain` times the
/// amplitude), normalised to about `[-1, 1]`.
pub fn fbm(seed: u32, x: f32, y: f32, octaves: u32, gain: f32) -> f32 {
    let mut sum = 0.0;
    let mut amp = 1.0;
    let mut norm = 0.0;
    let mut fx = x;
    let mut fy = y;
    for o in 0..octaves {
        sum += amp * gradient(seed.wrapping_add(o.wrapping_mul(0x6A09_E667)), fx, fy);
        norm += amp;
        amp *= gain;
        // Rotate a little between octaves to hide the lattice.
        let nx = fx * 1.6 - fy * 1.2;
        let ny = fx * 1.2 + fy * 1.6;
        fx = nx + 17.3;
        fy = ny - 5.1;
    }
    sum / norm * 1.4
}

/// Ridged fractal noise in `[0, 1]`: sharp crests, for mountains.
pub fn ridged(seed: u32, x: f32, y: f32, octaves: u32) -> f32 {
    let mut sum = 0.0;
    let mut amp = 1.0;
    let mut norm = 0.0;
    let mut fx = x;
    let mut fy = y;
    let mut weight = 1.0f32;
    for o in 0..octaves {
        let n = 1.0 - gradient(seed.wrapping_add(o.wrapping_mul(0x3C6E_F372)), fx, fy).abs();
        let n = n * n * weight;
        weight = (n * 1.5).clamp(0.0, 1.0);
        sum += amp * n;
        norm += amp;
        amp *= 0.5;
        let nx = fx * 1.6 - fy * 1.2;
        let ny = fx * 1.2 + fy * 1.6;
        fx = nx + 3.7;
        fy = ny + 11.9;
    }
    sum / norm
}

/// A square noise texture that tiles (its edges wrap), for clouds: values in `[0, 1]`.
#[derive(Clone, Debug)]
pub struct TileNoise {
    size: usize,
    data: Vec<f32>,
}

impl TileNoise {
    /// Builds a `size`×`size` (power of two) tileable fractal value-noise texture.
    pub fn new(seed: u32, size: usize, base_period: usize, octaves: u32) -> Self {
        assert!(size.is_power_of_two() && base_period > 0 && size.is_multiple_of(base_period));
        let mut data = vec![0.0f32; size * size];
        let mut amp = 1.0;
        let mut norm = 0.0;
        let mut period = base_period;
        for o in 0..octaves {
            let cells = size / period;
            if cells == 0 || period == 0 {
                break;
            }
            let s = seed.wrapping_add(o * 101);
            for y in 0..size {
                for x in 0..size {
                    let gx = x as f32 / period as f32;
                    let gy = y as f32 / period as f32;
                    let x0 = gx.floor() as i32;
                    let y0 = gy.floor() as i32;
                    let tx = fade(gx - x0 as f32);
                    let ty = fade(gy - y0 as f32);
                    let c = cells as i32;
                    let v = |i: i32, j: i32| unit(hash2(s, i.rem_euclid(c), j.rem_euclid(c)));
                    let a = v(x0, y0) + (v(x0 + 1, y0) - v(x0, y0)) * tx;
                    let b = v(x0, y0 + 1) + (v(x0 + 1, y0 + 1) - v(x0, y0 + 1)) * tx;
                    data[y * size + x] += amp * (a + (b - a) * ty);
                }
            }
            norm += amp;
            amp *= 0.5;
            period = (period / 2).max(1);
        }
        for v in &mut data {
            *v /= norm;
        }
        Self { size, data }
    }

    /// Bilinear sample at texel coordinates (wrapping).
    #[inline]
    pub fn sample(&self, x: f32, y: f32) -> f32 {
        let m = self.size as i32 - 1;
        let xi = floor_i(x);
        let yi = floor_i(y);
        let tx = x - xi as f32;
        let ty = y - yi as f32;
        let x0 = xi & m;
        let y0 = yi & m;
        let x1 = (x0 + 1) & m;
        let y1 = (y0 + 1) & m;
        let s = self.size;
        let d = &self.data;
        let a = d[y0 as usize * s + x0 as usize];
        let b = d[y0 as usize * s + x1 as usize];
        let c = d[y1 as usize * s + x0 as usize];
        let e = d[y1 as usize * s + x1 as usize];
        let top = a + (b - a) * tx;
        let bottom = c + (e - c) * tx;
        top + (bottom - top) * ty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_deterministic_and_bounded() {
        let mut lo = f32::MAX;
        let mut hi = f32::MIN;
        for i in 0..2000 {
            let x = i as f32 * 0.37 - 300.0;
            let y = i as f32 * 0.11 + 40.0;
            let v = fbm(7, x, y, 5, 0.5);
            assert_eq!(v, fbm(7, x, y, 5, 0.5));
            lo = lo.min(v);
            hi = hi.max(v);
            let r = ridged(3, x, y, 4);
            assert!((0.0..=1.0).contains(&r));
        }
        assert!(lo < -0.3 && hi > 0.3 && lo > -1.6 && hi < 1.6, "{lo} {hi}");
        assert_ne!(fbm(7, 1.5, 2.5, 3, 0.5), fbm(8, 1.5, 2.5, 3, 0.5));
    }

    #[test]
    fn tile_noise_wraps() {
        let t = TileNoise::new(1, 64, 16, 3);
        assert!((t.sample(0.0, 5.0) - t.sample(64.0, 5.0)).abs() < 1e-6);
        assert!((t.sample(3.5, -0.5) - t.sample(3.5, 63.5)).abs() < 1e-6);
    }
}
