//! Scripted rollouts from held-out starts, where a world model has to draw what comes into view:
//! how real its frames look while the player turns and walks ([`realism`](super::realism)), and
//! whether turning away and back brings back the place it showed before.
//!
//! The reference world and the model play the same script from the same start (the model starts
//! from the reference's first frames at that world seed, standing still):
//!
//! - **turning**: stand for 5 frames, turn right at full rate for 40 frames (180°), turn left
//!   for 40 frames back to the start; the 80 turning frames are measured, and the frame before
//!   turning is compared with the frame after turning back (**revisit**);
//! - **walking**: stand for 5 frames, walk forward for 60 frames (3 s);
//! - **both**: stand for 5 frames, walk forward and turn right at half rate for 60 frames.
//!
//! The realism score of each script compares the model's frames with the reference's frames of
//! the same seeds, calibrated on reference frames of as many other seeds (the same script).

use serde::{Deserialize, Serialize};

use super::metrics::psnr;
use super::realism::{colour_count, directional_detail, realism_score, sharpness};
use crate::error::Result;
use crate::frame::Frame;
use crate::reference::ReferenceWorld;
use crate::world_model::{Prompt, Session, StepInput, WorldModel};

/// Frames of standing still before a script's moves.
const STAND: usize = 5;
/// Frames of turning at full rate for 180° (90° per second at 20 frames/s).
const HALF_TURN: usize = 40;
/// Frames of walking (3 s).
const WALK: usize = 60;

/// One scripted move: its name and the action of each of its frames.
struct Script {
    name: &'static str,
    /// `(move_forward, turn)` of every frame after the standing start.
    moves: Vec<(f32, f32)>,
}

fn scripts() -> Vec<Script> {
    let turning = (0..2 * HALF_TURN)
        .map(|i| (0.0, if i < HALF_TURN { 1.0 } else { -1.0 }))
        .collect();
    vec![
        Script {
            name: "turning",
            moves: turning,
        },
        Script {
            name: "walking",
            moves: vec![(1.0, 0.0); WALK],
        },
        Script {
            name: "both",
            moves: vec![(1.0, 0.5); WALK],
        },
    ]
}

/// The measures of one script.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScriptScore {
    /// Which script: `turning`, `walking` or `both`.
    pub name: String,
    /// Frames measured (over all seeds).
    pub frames: usize,
    /// How far toward blur the model's frames are: 0 = the reference world (other seeds), 1 =
    /// the reference blurred with σ 1.5 px (see [`realism_score`]).
    pub realism: f64,
    /// The raw Fréchet distances `(generated, other seeds, blurred)` from the reference frames.
    pub frechet: [f64; 3],
    /// Mean gradient magnitude of the model's frames ÷ the reference's.
    pub sharpness_ratio: f64,
    /// The model's detail along rows ÷ the reference's, and the same down columns (see
    /// [`directional_detail`]): a view smeared sideways into streaks while turning keeps a
    /// normal `sharpness_ratio` but a low first figure. Absent in reports written before it.
    #[serde(default)]
    pub detail_across_down_ratio: [f64; 2],
    /// Distinct colours (5 bits per channel) per model frame ÷ per reference frame.
    pub colour_ratio: f64,
}

/// Everything the scripted rollouts measure.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Scripted {
    /// World seeds the model played (as many others calibrate the score).
    pub seeds: Vec<u64>,
    /// One entry per script.
    pub scripts: Vec<ScriptScore>,
    /// PSNR (dB) between the model's frame before turning 180° right and its frame after
    /// turning back, mean over seeds.
    pub revisit_psnr_db: f64,
    /// The same for the reference world (clouds move, so it is not 100 dB).
    pub reference_revisit_psnr_db: f64,
}

/// A contact-sheet row: reference frames above generated frames.
pub type SheetRow = (Vec<Frame>, Vec<Frame>);

/// The frames of one script played from one seed, after the standing start, and the frame
/// just before the moves.
fn play(
    session: &mut dyn Session,
    base: &StepInput,
    script: &Script,
) -> Result<(Frame, Vec<Frame>)> {
    let mut before = None;
    for _ in 0..STAND {
        before = Some(session.step(base)?.frame);
    }
    let mut frames = Vec::with_capacity(script.moves.len());
    for &(forward, turn) in &script.moves {
        let mut input = base.clone();
        input.action.values[0] = forward;
        input.action.values[2] = turn;
        frames.push(session.step(&input)?.frame);
    }
    Ok((before.expect("a standing start"), frames))
}

/// A reference session at `seed` and the model started from its first frames; both stood still
/// for as many frames as the model's context.
fn start_pair(
    model: &dyn WorldModel,
    world: &ReferenceWorld,
    seed: u64,
    base: &StepInput,
) -> Result<(Box<dyn Session>, Box<dyn Session>)> {
    let k = model.spec().context_frames.max(1);
    let mut reference = world.start_session(&Prompt {
        seed,
        start_frames: Vec::new(),
        controls: Some(base.controls.clone()),
    })?;
    let first = (0..k)
        .map(|_| reference.step_world(base).map(|o| o.frame))
        .collect::<Result<Vec<_>>>()?;
    let generated = model.start(&Prompt {
        seed,
        start_frames: first,
        controls: Some(base.controls.clone()),
    })?;
    Ok((Box::new(reference), generated))
}

/// Plays every script from `seeds` held-out starts (and the reference alone from as many
/// others), and scores them. Returns the measures and one contact-sheet row per script (its
/// first seed, eight frames across the moves).
pub fn scripted_rollouts(
    model: &dyn WorldModel,
    seed: u64,
    seeds: usize,
) -> Result<(Scripted, Vec<SheetRow>)> {
    let spec = model.spec().clone();
    let world = ReferenceWorld::new(spec.width, spec.height);
    let base = StepInput {
        action: spec.neutral_action(),
        controls: spec.default_controls(),
    };
    let own: Vec<u64> = (0..seeds as u64).map(|i| seed + 1000 + i).collect();
    let others: Vec<u64> = (0..seeds as u64).map(|i| seed + 2000 + i).collect();
    let mut report = Scripted {
        seeds: own.clone(),
        ..Scripted::default()
    };
    let mut rows = Vec::new();
    let (mut revisit, mut reference_revisit) = (0.0, 0.0);
    for script in scripts() {
        let (mut generated, mut reference, mut other) = (Vec::new(), Vec::new(), Vec::new());
        for (i, &s) in own.iter().enumerate() {
            let (mut r, mut g) = start_pair(model, &world, s, &base)?;
            let (r_before, r_frames) = play(r.as_mut(), &base, &script)?;
            let (g_before, g_frames) = play(g.as_mut(), &base, &script)?;
            if script.name == "turning" {
                revisit += psnr(&g_before, g_frames.last().expect("frames"));
                reference_revisit += psnr(&r_before, r_frames.last().expect("frames"));
            }
            if i == 0 {
                let pick = |f: &[Frame]| -> Vec<Frame> {
                    (0..8).map(|j| f[j * (f.len() - 1) / 7].clone()).collect()
                };
                rows.push((pick(&r_frames), pick(&g_frames)));
            }
            reference.extend(r_frames);
            generated.extend(g_frames);
        }
        for &s in &others {
            let mut r = world.start_session(&Prompt {
                seed: s,
                start_frames: Vec::new(),
                controls: Some(base.controls.clone()),
            })?;
            for _ in 0..spec.context_frames.max(1) {
                r.step_world(&base)?;
            }
            other.extend(play(&mut r, &base, &script)?.1);
        }
        report
            .scripts
            .push(score(script.name, &generated, &reference, &other));
    }
    report.revisit_psnr_db = revisit / own.len().max(1) as f64;
    report.reference_revisit_psnr_db = reference_revisit / own.len().max(1) as f64;
    Ok((report, rows))
}

/// The measures of one script's frames.
fn score(name: &str, generated: &[Frame], reference: &[Frame], other: &[Frame]) -> ScriptScore {
    let (realism, frechet) = realism_score(generated, reference, other);
    let mean = |frames: &[Frame], f: &dyn Fn(&Frame) -> f64| {
        frames.iter().map(f).sum::<f64>() / frames.len().max(1) as f64
    };
    let colours = |f: &Frame| colour_count(f) as f64;
    // Each frame's detail both ways at once, then the mean of each direction.
    let detail = |frames: &[Frame]| {
        let sum = frames
            .iter()
            .map(directional_detail)
            .fold((0.0, 0.0), |(a, d), (fa, fd)| (a + fa, d + fd));
        let n = frames.len().max(1) as f64;
        (sum.0 / n, sum.1 / n)
    };
    let (across, down) = detail(generated);
    let (ref_across, ref_down) = detail(reference);
    ScriptScore {
        name: name.into(),
        frames: generated.len(),
        realism,
        frechet,
        sharpness_ratio: mean(generated, &sharpness) / mean(reference, &sharpness).max(1e-9),
        detail_across_down_ratio: [across / ref_across.max(1e-9), down / ref_down.max(1e-9)],
        colour_ratio: mean(generated, &colours) / mean(reference, &colours).max(1e-9),
    }
}
