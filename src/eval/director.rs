//! Director response: how much of the reference world's change a model shows 15 frames after the
//! director switches the time of day or the weather.
//!
//! For each switch and each of [`DIRECTOR_SEEDS`] held-out seeds, the reference world and the
//! model walk slowly for 12 frames at noon in clear weather, then go on for 15 frames twice: once
//! with the switch, once without. The change a switch makes is the difference between the two
//! last frames (16×16 colour averages, so the motion both runs share cancels); the model's
//! **strength** is its change projected on the reference's, as a fraction of the reference's:
//! `Σ ⟨Δmodel, Δreference⟩ / Σ |Δreference|²` over the seeds. 1 is the reference's change, 0 none
//! (or one at right angles to it), and a change the wrong way is negative. A switch counts as
//! visible at a strength of at least 0.5.
//!
//! The reference world eases into a change (the time of day in about a second, the weather in
//! three), so 15 frames show how fast a model follows as much as how far. The runs go on to
//! [`SETTLED`] frames, and the **settled strength** is the same measure there: a model that
//! changes faster than the reference scores above 1 at 15 frames and near 1 when settled; one
//! that goes too far or the wrong way shows it in both.

use serde::{Deserialize, Serialize};

use super::metrics::{FrameStats, mean_colour};
use crate::error::Result;
use crate::frame::Frame;
use crate::reference::ReferenceWorld;
use crate::world_model::{Prompt, Session, StepInput, WorldModel};

/// Seeds each switch is measured on.
pub const DIRECTOR_SEEDS: u64 = 4;
/// The strength at which a switch counts as visible.
pub const VISIBLE_STRENGTH: f64 = 0.5;
/// Frames after the switch.
const AFTER: usize = 15;
/// Frames after the switch when the change counts as settled (5 s: the weather's easing is
/// four fifths of the way).
pub const SETTLED: usize = 100;
/// Frames of walking before it.
const BEFORE: usize = 12;

/// One director switch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DirectorCase {
    /// What was switched.
    pub name: String,
    /// The model's change as a fraction of the reference's (see the module docs).
    pub strength: f64,
    /// Reference brightness change (0–255 luminance) 15 frames after the switch, against the
    /// run without it; mean over seeds.
    pub reference_brightness_change: f32,
    /// Generated brightness change, likewise.
    pub generated_brightness_change: f32,
    /// Reference mean-colour change (RGB), likewise.
    pub reference_colour_change: [f32; 3],
    /// Generated mean-colour change (RGB), likewise.
    pub generated_colour_change: [f32; 3],
    /// `strength` ≥ [`VISIBLE_STRENGTH`].
    pub visible_within_15_frames: bool,
    /// The strength [`SETTLED`] frames after the switch.
    #[serde(default)]
    pub settled_strength: f64,
    /// Reference brightness change [`SETTLED`] frames after the switch; mean over seeds.
    #[serde(default)]
    pub settled_reference_brightness_change: f32,
    /// Generated brightness change, likewise.
    #[serde(default)]
    pub settled_generated_brightness_change: f32,
}

/// The four switches: name, control and value.
const SWITCHES: [(&str, &str, f32); 4] = [
    ("noon to night", "time_of_day", 0.0),
    ("noon to sunset", "time_of_day", 18.5),
    ("clear to rain", "weather", 2.0),
    ("clear to fog", "weather", 4.0),
];

/// 16×16 colour averages of a frame, 768 values.
fn coarse(f: &Frame) -> Vec<f64> {
    let (w, h) = (f.width as usize, f.height as usize);
    let mut out = vec![0.0; 16 * 16 * 3];
    let mut counts = vec![0.0; 16 * 16];
    for y in 0..h {
        for x in 0..w {
            let cell = (y * 16 / h) * 16 + x * 16 / w;
            let p = &f.rgba[(y * w + x) * 4..];
            for c in 0..3 {
                out[cell * 3 + c] += p[c] as f64;
            }
            counts[cell] += 1.0;
        }
    }
    for (i, v) in out.iter_mut().enumerate() {
        *v /= f64::max(counts[i / 3], 1.0);
    }
    out
}

/// The change from `a` to `b`, on 16×16 colour averages.
fn change(a: &Frame, b: &Frame) -> Vec<f64> {
    coarse(b)
        .iter()
        .zip(coarse(a))
        .map(|(y, x)| y - x)
        .collect()
}

/// `(⟨generated, reference⟩, |reference|²)`: the model's change projected on the reference's,
/// and the reference's own size, to be summed over seeds.
fn projection(reference: &[f64], generated: &[f64]) -> (f64, f64) {
    let dot = reference.iter().zip(generated).map(|(r, g)| r * g).sum();
    let norm = reference.iter().map(|r| r * r).sum();
    (dot, norm)
}

/// Continues a session from its saved bytes.
type Restore<'a> = &'a dyn Fn(&[u8]) -> Result<Box<dyn Session>>;

/// The frames of a run without and with the switch, `AFTER` and [`SETTLED`] frames after it:
/// `[(without, with); 2]`.
fn runs(
    mut session: Box<dyn Session>,
    restore: Restore,
    walk: &StepInput,
    switched: &StepInput,
) -> Result<[(Frame, Frame); 2]> {
    let saved = session.save()?;
    let mut other = restore(&saved)?;
    let mut at = Vec::with_capacity(2);
    for i in 1..=SETTLED {
        let plain = session.step(walk)?.frame;
        let changed = other.step(switched)?.frame;
        if i == AFTER || i == SETTLED {
            at.push((plain, changed));
        }
    }
    Ok(at.try_into().expect("two frames"))
}

/// A switch's change at one moment, summed over the seeds: the projection of the generated
/// change on the reference's and the brightness changes.
#[derive(Default)]
struct Sums {
    dot: f64,
    norm: f64,
    reference_brightness: f32,
    generated_brightness: f32,
}

impl Sums {
    /// Adds one seed's `(without, with)` frames of the reference world and of the model.
    fn add(&mut self, (r0, r1): &(Frame, Frame), (g0, g1): &(Frame, Frame)) {
        let (d, n) = projection(&change(r0, r1), &change(g0, g1));
        self.dot += d;
        self.norm += n;
        self.reference_brightness += FrameStats::of(r1).brightness - FrameStats::of(r0).brightness;
        self.generated_brightness += FrameStats::of(g1).brightness - FrameStats::of(g0).brightness;
    }

    fn strength(&self) -> f64 {
        self.dot / self.norm.max(1e-9)
    }
}

/// Measures every switch the model's spec has a control for.
pub fn director_cases(model: &dyn WorldModel, seed: u64) -> Result<Vec<DirectorCase>> {
    let spec = model.spec().clone();
    let k = spec.context_frames.max(1);
    let world = ReferenceWorld::new(spec.width, spec.height);
    let base = spec.default_controls();
    let mut action = spec.neutral_action();
    action.values[0] = 0.5;
    let walk = StepInput {
        action,
        controls: base.clone(),
    };
    let mut cases = Vec::new();
    for (i, (name, control, value)) in SWITCHES.into_iter().enumerate() {
        let Some(ci) = spec.control_index(control) else {
            continue;
        };
        let mut switched = walk.clone();
        switched.controls.values[ci] = value;
        let (mut early, mut settled) = (Sums::default(), Sums::default());
        let (mut rc, mut gc) = ([0.0f32; 3], [0.0f32; 3]);
        for s in 0..DIRECTOR_SEEDS {
            let mut reference = world.start_session(&Prompt {
                seed: seed + 10 * i as u64 + s,
                start_frames: Vec::new(),
                controls: Some(base.clone()),
            })?;
            let mut frames = Vec::new();
            for _ in 0..BEFORE {
                frames.push(reference.step_world(&walk)?.frame);
            }
            let generated = model.start(&Prompt {
                seed: s,
                start_frames: frames[frames.len().saturating_sub(k)..].to_vec(),
                controls: Some(base.clone()),
            })?;
            let restore_ref =
                |b: &[u8]| -> Result<Box<dyn Session>> { Ok(Box::new(world.restore_session(b)?)) };
            let restore_gen = |b: &[u8]| model.restore(b);
            let [reference_early, reference_late] =
                runs(Box::new(reference), &restore_ref, &walk, &switched)?;
            let [generated_early, generated_late] =
                runs(generated, &restore_gen, &walk, &switched)?;
            early.add(&reference_early, &generated_early);
            settled.add(&reference_late, &generated_late);
            let ((r0, r1), (g0, g1)) = (&reference_early, &generated_early);
            let (a, b, c, d) = (
                mean_colour(r0),
                mean_colour(r1),
                mean_colour(g0),
                mean_colour(g1),
            );
            for ch in 0..3 {
                rc[ch] += b[ch] - a[ch];
                gc[ch] += d[ch] - c[ch];
            }
        }
        let n = DIRECTOR_SEEDS as f32;
        let strength = early.strength();
        cases.push(DirectorCase {
            name: name.to_string(),
            strength,
            reference_brightness_change: early.reference_brightness / n,
            generated_brightness_change: early.generated_brightness / n,
            reference_colour_change: rc.map(|v| v / n),
            generated_colour_change: gc.map(|v| v / n),
            visible_within_15_frames: strength >= VISIBLE_STRENGTH,
            settled_strength: settled.strength(),
            settled_reference_brightness_change: settled.reference_brightness / n,
            settled_generated_brightness_change: settled.generated_brightness / n,
        });
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_is_the_share_of_the_reference_change_in_its_direction() {
        let dark = Frame::solid(32, 32, [40, 40, 60, 255]);
        let day = Frame::solid(32, 32, [200, 200, 220, 255]);
        let dusk = Frame::solid(32, 32, [120, 120, 140, 255]);
        let reference = change(&day, &dark);
        assert_eq!(reference.len(), 768);
        assert!(reference.iter().all(|&v| v == -160.0));
        let (d, n) = projection(&reference, &change(&day, &dusk));
        assert!((d / n - 0.5).abs() < 1e-12, "half the way: {}", d / n);
        let (d, n) = projection(&reference, &change(&day, &day));
        assert_eq!(d / n, 0.0, "no change");
        let (d, n) = projection(&reference, &change(&dark, &day));
        assert_eq!(d / n, -1.0, "the wrong way");
        // The averages follow the picture's layout: a change in the top half only.
        let mut top = day.clone();
        for px in top.rgba.chunks_exact_mut(4).take(32 * 16) {
            px[..3].copy_from_slice(&[40, 40, 60]);
        }
        let (d, n) = projection(&reference, &change(&day, &top));
        assert!((d / n - 0.5).abs() < 1e-12, "{}", d / n);
    }
}
