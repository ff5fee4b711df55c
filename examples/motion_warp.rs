//! What a trained default model's motion warp learned: for a few actions, the global shift and
//! zoom its motion head gives the last frame, next to how far the reference world's view moves
//! at the centre of the picture for the same action in one frame.
//!
//! ```sh
//! cargo run --release --example motion_warp -- assets/models/default
//! ```

use std::path::PathBuf;

use bevy_nacre::default_model::conditions::{condition_len, encode_condition};
use bevy_nacre::default_model::weights::load_networks;
use bevy_nacre::default_model::{Config, spec_for};
use bevy_nacre::reference::render::HALF_FOV;
use bevy_nacre::reference::{LOOK_RATE, TURN_RATE, action_index as ai};
use candle_core::{Device, Tensor};

/// A named action: `(channel, value)` pairs, and the reference's horizontal shift if known.
type Case = (&'static str, &'static [(usize, f32)], Option<f32>);

fn main() -> bevy_nacre::Result<()> {
    let Some(model_dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: motion_warp MODEL_DIR");
        std::process::exit(2);
    };
    let device = Device::Cpu;
    let cfg = Config::load(&model_dir.join("config.json"))?;
    let spec = spec_for(&cfg);
    let nets = load_networks(
        &model_dir.join("model.safetensors"),
        &cfg,
        condition_len(&spec),
        &device,
    )?;
    let Some(warp) = nets.dynamics.warp() else {
        println!("{}: this model has no motion warp", model_dir.display());
        return Ok(());
    };

    // Pixels the view moves at the picture's centre when the camera rotates by `angle`.
    let focal = cfg.width as f32 / 2.0 / HALF_FOV.tan();
    let centre_shift = |rate: f32| focal * (rate / cfg.fps).tan();
    let cases: [Case; 8] = [
        ("standing still", &[], Some(0.0)),
        // Turning right moves the world left across the picture.
        (
            "turn right, full",
            &[(ai::TURN, 1.0)],
            Some(-centre_shift(TURN_RATE)),
        ),
        (
            "turn right, half",
            &[(ai::TURN, 0.5)],
            Some(-centre_shift(TURN_RATE / 2.0)),
        ),
        (
            "turn left, full",
            &[(ai::TURN, -1.0)],
            Some(centre_shift(TURN_RATE)),
        ),
        ("look up, full", &[(ai::LOOK, 1.0)], None),
        ("walk forward", &[(ai::MOVE_FORWARD, 1.0)], None),
        (
            "sprint forward",
            &[(ai::MOVE_FORWARD, 1.0), (ai::SPRINT, 1.0)],
            None,
        ),
        ("strafe right", &[(ai::STRAFE, 1.0)], None),
    ];
    let noise = cfg.inference_noise / cfg.train_noise_max.max(f32::EPSILON);
    let controls = spec.default_controls();
    println!(
        "{:<16} {:>9} {:>7} {:>9} {:>7} {:>15}",
        "action", "shift x", "zoom x", "shift y", "zoom y", "reference x"
    );
    for (name, values, reference) in cases {
        let mut action = spec.neutral_action();
        for &(i, v) in values {
            action.values[i] = v;
        }
        let mut cond = Vec::new();
        encode_condition(&spec, &action.values, &controls.values, noise, &mut cond);
        let len = cond.len();
        let cond = Tensor::from_vec(cond, (1, len), &device)?;
        let [sx, zx, sy, zy] = warp.motion(&cond)?.map(|t| {
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map(|v| v[0])
        });
        let reference = reference.map_or("-".to_string(), |r| format!("{r:+.2} px"));
        println!(
            "{name:<16} {:>+9.2} {:>7.4} {:>+9.2} {:>7.4} {reference:>15}",
            sx?, zx?, sy?, zy?
        );
    }
    println!(
        "(shifts in pixels per frame, positive = content moves right or down; the reference \
         column is the view's movement at the centre, {:.0}° per s turning at {} frames/s; \
         looking up turns {:.0}° per s)",
        TURN_RATE.to_degrees(),
        cfg.fps,
        LOOK_RATE.to_degrees()
    );
    Ok(())
}
