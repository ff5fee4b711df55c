//! Wrong light in the context, for [`TrainConfig::light_shift_share`](super::TrainConfig::light_shift_share).
//!
//! Trained only on true context, the dynamics copies the light of its context and uses the
//! time of day and the weather it is told for little more than the slow drift of a day: its
//! context always agrees with them. Generating, its own frames drift in light, and a director
//! switch makes the context disagree with the controls all at once; it has never learned what
//! to do then, so it follows its context (a night that comes 100 frames late, a day that comes
//! back at midnight). Showing it context frames whose light is wrong, with the true next
//! frames as targets, teaches it to bring the light back to what the controls and the scene
//! say.

use crate::rng::Gaussian;

/// One random change of light, applied alike to every pixel of every context frame of a
/// sample: a gain (darker or brighter), a tint (a gain per colour channel) and a haze (a blend
/// toward a grey), on pixel values in 0..1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LightShift {
    /// Per colour channel: overall gain times tint.
    gain: [f32; 3],
    /// How far toward `haze_level` (0 none, 1 all the way).
    haze: f32,
    /// The grey the haze blends toward, 0..1.
    haze_level: f32,
}

/// Overall gains are drawn log-uniform between these: a frame a third as bright as it should be
/// to 1.6 times as bright (the generated light seen drifting in `nacre eval`'s long rollout).
const GAIN_RANGE: (f32, f32) = (0.3, 1.6);
/// Standard deviation of the log of each channel's tint.
const TINT_SPREAD: f32 = 0.12;
/// The most haze drawn.
const MAX_HAZE: f32 = 0.35;

impl LightShift {
    /// A random shift.
    pub(crate) fn draw(rng: &mut Gaussian) -> Self {
        let (lo, hi) = (GAIN_RANGE.0.ln(), GAIN_RANGE.1.ln());
        let overall = (lo + (hi - lo) * rng.uniform()).exp();
        let gain = std::array::from_fn(|_| overall * (TINT_SPREAD * rng.normal()).exp());
        Self {
            gain,
            haze: MAX_HAZE * rng.uniform(),
            haze_level: 0.3 + 0.6 * rng.uniform(),
        }
    }

    /// Applies the shift to one frame's pixels in place: channel-major `(3, H, W)`, values in
    /// -1..1 as the trainer reads them.
    pub(crate) fn apply(&self, pixels: &mut [f32]) {
        let per_channel = pixels.len() / 3;
        for (c, plane) in pixels.chunks_exact_mut(per_channel).enumerate() {
            for v in plane {
                let lit = self.gain[c] * (*v + 1.0) / 2.0;
                let hazed = lit + (self.haze_level - lit) * self.haze;
                *v = hazed.clamp(0.0, 1.0) * 2.0 - 1.0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_neutral_shift_changes_nothing_and_any_shift_stays_in_range() {
        let frame: Vec<f32> = (0..3 * 16).map(|i| (i as f32 / 24.0) - 1.0).collect();
        let neutral = LightShift {
            gain: [1.0; 3],
            haze: 0.0,
            haze_level: 0.5,
        };
        let mut same = frame.clone();
        neutral.apply(&mut same);
        for (a, b) in frame.iter().zip(&same) {
            assert!((a - b).abs() < 1e-6);
        }
        let mut rng = Gaussian::new(3);
        for _ in 0..50 {
            let shift = LightShift::draw(&mut rng);
            let mut shifted = frame.clone();
            shift.apply(&mut shifted);
            assert!(shifted.iter().all(|v| (-1.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn a_darker_bluer_shift_darkens_red_more_than_blue() {
        let shift = LightShift {
            gain: [0.3, 0.35, 0.5],
            haze: 0.0,
            haze_level: 0.5,
        };
        let mut frame = vec![0.6f32; 3 * 4];
        shift.apply(&mut frame);
        let (r, b) = (frame[0], frame[8]);
        assert!(r < b && b < 0.6, "red {r}, blue {b}");
        // 0.6 in -1..1 is 0.8 in 0..1; times 0.3 is 0.24, back to -0.52.
        assert!((r + 0.52).abs() < 1e-5);
    }
}
