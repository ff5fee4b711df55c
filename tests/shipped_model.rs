//! The model the project ships in `assets/models/default` (what `scripts/play.sh` plays).

use std::path::Path;

use bevy_nacre::default_model;
use bevy_nacre::frame::Frame;
use bevy_nacre::world_model::{BatchItem, Prompt, StepInput, WorldModel};
use candle_core::Device;

/// Mean absolute difference per byte between two RGBA frames.
fn frame_difference(a: &Frame, b: &Frame) -> f64 {
    let sum: u64 = a
        .rgba
        .iter()
        .zip(&b.rgba)
        .map(|(x, y)| x.abs_diff(*y) as u64)
        .sum();
    sum as f64 / a.rgba.len() as f64
}

/// Eight steps of the shipped model from seed 3, standing still and turning right.
fn rollouts() -> (Vec<(Frame, Frame)>, Frame) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(default_model::SHIPPED_DIR);
    let model = default_model::load(&dir, &Device::Cpu)
        .unwrap_or_else(|e| panic!("the shipped model at {} must load: {e}", dir.display()))
        .with_start_frames(bevy_nacre::reference::start_frames);
    let spec = model.spec().clone();
    assert_eq!((spec.width, spec.height), (128, 128));
    let still = StepInput {
        action: spec.neutral_action(),
        controls: spec.default_controls(),
    };
    let mut turning = still.clone();
    turning.action.values[2] = 1.0;
    let mut idle = model.start(&Prompt::seeded(3)).unwrap();
    let mut turn = model.start(&Prompt::seeded(3)).unwrap();
    let strip: Vec<(Frame, Frame)> = (0..8)
        .map(|_| {
            (
                idle.step(&still).unwrap().frame,
                turn.step(&turning).unwrap().frame,
            )
        })
        .collect();
    save_strip(&strip);
    let mut again = model.start(&Prompt::seeded(3)).unwrap();
    let first = again.step(&still).unwrap().frame;
    assert_eq!(
        first, strip[0].0,
        "the same prompt and input give the same frame"
    );
    (strip, first)
}

/// The model the project ships (what `scripts/play.sh` plays) loads, has the size the model
/// card states, is deterministic, and draws a picture (not a flat colour).
#[test]
fn the_shipped_default_model_loads_and_draws_a_picture() {
    let (strip, _) = rollouts();
    let frame = &strip.last().unwrap().0;
    let lum: Vec<f64> = frame
        .rgba
        .chunks_exact(4)
        .map(|p| 0.2126 * p[0] as f64 + 0.7152 * p[1] as f64 + 0.0722 * p[2] as f64)
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    let std = (lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len() as f64).sqrt();
    assert!(std > 8.0, "the frame looks flat: luminance std {std:.1}");
}

/// Turning changes the view more than standing still. (Every model shipped before
/// `seed1-steps710+seed1-steps170-363d2683+seed1-steps500-793373e8` failed this; see the model
/// card.)
#[test]
fn the_shipped_default_model_responds_to_turning() {
    let (strip, first) = rollouts();
    let (idle, turn) = strip.last().unwrap();
    let drift = frame_difference(&first, idle);
    let turned = frame_difference(&first, turn);
    assert!(
        turned > 2.0 * drift && turned > 6.0,
        "turning for 8 frames should change the view more than standing still: \
         still {drift:.2}, turning {turned:.2}"
    );
}

/// Both rollouts side by side (standing still above, turning below) in
/// `shipped-model-rollout.png` next to the test binary's profile folder (`target/debug/` in a
/// plain build, wherever `CARGO_TARGET_DIR` puts it otherwise), for people to look at.
fn save_strip(frames: &[(Frame, Frame)]) {
    let (w, h) = (frames[0].0.width, frames[0].0.height);
    let mut sheet = image::RgbaImage::new(w * frames.len() as u32, h * 2);
    for (i, (a, b)) in frames.iter().enumerate() {
        for (row, f) in [a, b].into_iter().enumerate() {
            let img = image::RgbaImage::from_raw(w, h, f.rgba.clone()).unwrap();
            image::imageops::replace(
                &mut sheet,
                &img,
                (i as u32 * w) as i64,
                (row as u32 * h) as i64,
            );
        }
    }
    // The test binary is `<target>/<profile>/deps/shipped_model-…`.
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap();
    let path = profile.join("shipped-model-rollout.png");
    sheet
        .save(&path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Twelve frames of two sessions (seeds 3 and 4) of the shipped model, turning right for six
/// steps and then walking, each stepped alone or both in one `step_batch`, inside a rayon pool
/// of `threads` threads.
fn two_sessions(batched: bool, threads: usize) -> Vec<Frame> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(default_model::SHIPPED_DIR);
    let model = default_model::load(&dir, &Device::Cpu)
        .unwrap()
        .with_start_frames(bevy_nacre::reference::start_frames);
    let spec = model.spec().clone();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut sessions = [3, 4].map(|seed| model.start(&Prompt::seeded(seed)).unwrap());
        let mut frames = Vec::new();
        for t in 0..12 {
            let mut input = StepInput {
                action: spec.neutral_action(),
                controls: spec.default_controls(),
            };
            input.action.values[if t < 6 { 2 } else { 0 }] = 1.0;
            if batched {
                let [a, b] = &mut sessions;
                let mut batch = [
                    BatchItem {
                        session: a,
                        input: &input,
                    },
                    BatchItem {
                        session: b,
                        input: &input,
                    },
                ];
                for out in model.step_batch(&mut batch) {
                    frames.push(out.unwrap().frame);
                }
            } else {
                for s in &mut sessions {
                    frames.push(s.step(&input).unwrap().frame);
                }
            }
        }
        frames
    })
}

/// A view's frames do not depend on whether the worker batches it with another view, nor on
/// how many inference threads it runs: a recording made in one setting replays bit for bit in
/// another.
#[test]
fn batching_and_thread_count_do_not_change_the_frames() {
    let alone = two_sessions(false, 1);
    assert_eq!(alone.len(), 24);
    assert!(alone[0] != alone[1], "the two seeds draw different worlds");
    let batched = two_sessions(true, 1);
    assert_same_frames(&alone, &batched, "batched and alone");
    assert_same_frames(&batched, &two_sessions(true, 2), "2 threads and 1");
}

fn assert_same_frames(a: &[Frame], b: &[Frame], what: &str) {
    for (i, (a, b)) in a.iter().zip(b).enumerate() {
        assert!(
            a == b,
            "frame {i}: {what} differ by {:.4}",
            frame_difference(a, b)
        );
    }
}
