//! The garden's neural twin the project ships in `assets/models/garden` (what `examples/twin.rs`
//! plays): the default architecture trained on captures of the garden (`examples/capture.rs`).
//!
//! It starts from a picture of the garden, as the twin example starts it from a snapshot of the
//! real camera: `tests/fixtures/garden/start.png` is the first frame of held-out episode 1 of
//! `data/garden-heldout` (capture seed 2, by day, 12:02, fog 0.03), which the model never saw.

use std::path::Path;

use bevy_nacre::action::Controls;
use bevy_nacre::default_model;
use bevy_nacre::eval::metrics::psnr;
use bevy_nacre::frame::Frame;
use bevy_nacre::spec::ModelSpec;
use bevy_nacre::world_model::{Prompt, StepInput, WorldModel};
use candle_core::Device;

/// The shipped twin's folder.
fn twin_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/garden")
}

/// The held-out garden picture the sessions start from.
fn start_frame() -> Frame {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/garden/start.png");
    let img = image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    Frame::from_rgb(img.width(), img.height(), img.as_raw())
}

/// The start picture, a prompt that starts from it with the controls it was captured with
/// (12:02, fog 0.03), and the input of standing still under those controls.
fn from_the_start_picture(spec: &ModelSpec) -> (Frame, Prompt, StepInput) {
    let start = start_frame();
    let controls = Controls::new(vec![12.04, 0.03]);
    let prompt = Prompt {
        seed: 1,
        start_frames: vec![start.clone()],
        controls: Some(controls.clone()),
    };
    let still = StepInput {
        action: spec.neutral_action(),
        controls,
    };
    (start, prompt, still)
}

/// The shipped twin has the garden's layout (the first-person actions, `time_of_day` and
/// `fog`, 128×128 at 20 frames/s), starts from the garden picture it is given, and is
/// deterministic.
#[test]
fn the_garden_twin_has_the_garden_layout_and_starts_from_the_given_picture() {
    let model = default_model::load(&twin_dir(), &Device::Cpu).unwrap_or_else(|e| {
        panic!(
            "the shipped twin at {} must load: {e}",
            twin_dir().display()
        )
    });
    let spec = model.spec().clone();
    assert_eq!((spec.width, spec.height, spec.fps), (128, 128, 20.0));
    let actions: Vec<&str> = spec.actions.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        actions,
        ["move_forward", "strafe", "turn", "look", "jump", "sprint"]
    );
    let controls: Vec<&str> = spec.controls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(controls, ["time_of_day", "fog"]);

    let (start, prompt, still) = from_the_start_picture(&spec);
    let mut session = model.start(&prompt).unwrap();
    let first = session.step(&still).unwrap().frame;
    let db = psnr(&first, &start);
    assert!(
        db >= 20.0,
        "the first frame should continue the start picture: {db:.1} dB"
    );
    let mut again = model.start(&prompt).unwrap();
    assert_eq!(again.step(&still).unwrap().frame, first, "deterministic");
}

/// Turning for eight frames changes the twin's view much more than standing still for eight.
#[test]
fn the_garden_twin_turns_with_the_player() {
    let model = default_model::load(&twin_dir(), &Device::Cpu).unwrap();
    let spec = model.spec().clone();
    let (start, prompt, still) = from_the_start_picture(&spec);
    let mut turning = still.clone();
    turning.action.values[2] = 1.0;
    let mut idle = model.start(&prompt).unwrap();
    let mut turn = model.start(&prompt).unwrap();
    let (mut idle_frame, mut turn_frame) = (start.clone(), start.clone());
    for _ in 0..8 {
        idle_frame = idle.step(&still).unwrap().frame;
        turn_frame = turn.step(&turning).unwrap().frame;
    }
    let (still_db, turned_db) = (psnr(&start, &idle_frame), psnr(&start, &turn_frame));
    eprintln!("against the start: standing {still_db:.1} dB, turning {turned_db:.1} dB");
    assert!(
        still_db > turned_db + 5.0,
        "standing still should keep the view and turning change it: standing {still_db:.1} dB, \
         turning {turned_db:.1} dB against the start picture"
    );
}
