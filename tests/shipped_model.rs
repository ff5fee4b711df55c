//! The model the project ships in `assets/models/default` (what `scripts/play.sh` plays).

use std::path::Path;

use bevy_nacre::default_model;
use bevy_nacre::model::{Prompt, StepInput, WorldModel};
use candle_core::Device;

/// Mean absolute difference per byte between two RGBA frames.
fn frame_difference(a: &bevy_nacre::frame::Frame, b: &bevy_nacre::frame::Frame) -> f64 {
    let sum: u64 = a
        .rgba
        .iter()
        .zip(&b.rgba)
        .map(|(x, y)| x.abs_diff(*y) as u64)
        .sum();
    sum as f64 / a.rgba.len() as f64
}

/// The model the project ships (what `scripts/play.sh` plays): it loads, declares the size the
/// model card states, draws a picture (not a flat colour), and turning changes the picture more
/// than standing still does.
#[test]
fn the_shipped_default_model_draws_a_world_that_responds_to_turning() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(default_model::SHIPPED_DIR);
    let model = default_model::load(&dir, &Device::Cpu)
        .unwrap_or_else(|e| panic!("the shipped model at {} must load: {e}", dir.display()));
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
    let (mut idle_frame, mut turn_frame) = (None, None);
    for _ in 0..8 {
        idle_frame = Some(idle.step(&still).unwrap().frame);
        turn_frame = Some(turn.step(&turning).unwrap().frame);
    }
    let (idle_frame, turn_frame) = (idle_frame.unwrap(), turn_frame.unwrap());
    let first = model
        .start(&Prompt::seeded(3))
        .unwrap()
        .step(&still)
        .unwrap()
        .frame;

    // A picture: the luminance varies across the frame.
    let lum: Vec<f64> = idle_frame
        .rgba
        .chunks_exact(4)
        .map(|p| 0.2126 * p[0] as f64 + 0.7152 * p[1] as f64 + 0.0722 * p[2] as f64)
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    let std = (lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len() as f64).sqrt();
    assert!(std > 8.0, "the frame looks flat: luminance std {std:.1}");

    let drift = frame_difference(&first, &idle_frame);
    let turned = frame_difference(&first, &turn_frame);
    assert!(
        turned > 2.0 * drift && turned > 6.0,
        "turning for 8 frames should change the view more than standing still: \
         still {drift:.2}, turning {turned:.2}"
    );
}
