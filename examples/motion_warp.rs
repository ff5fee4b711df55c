//! What a trained default model's motion warp learned: for a few actions, the global shift and
//! zoom its motion head gives the last frame, next to how far the reference world's view moves
//! at the centre of the picture for the same action in one frame and, given a dataset, the
//! least-squares fit of the shifts measured between its consecutive frames to the actions (what
//! training starts the head at, less the fit's intercept).
//!
//! ```sh
//! cargo run --release --example motion_warp -- assets/models/default [data/heldout128]
//! ```

use std::path::PathBuf;

use bevy_nacre::default_model::conditions::{condition_len, encode_condition};
use bevy_nacre::default_model::weights::load_networks;
use bevy_nacre::default_model::{Config, spec_for};
use bevy_nacre::reference::render::HALF_FOV;
use bevy_nacre::reference::{LOOK_RATE, TURN_RATE, action_index as ai};
use bevy_nacre::train::data::TrainingData;
use bevy_nacre::train::motion;
use candle_core::{Device, Tensor};

/// A named action: `(channel, value)` pairs, and the reference's horizontal shift if known.
type Case = (&'static str, &'static [(usize, f32)], Option<f32>);

fn main() -> bevy_nacre::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let Some(model_dir) = args.first() else {
        eprintln!("usage: motion_warp MODEL_DIR [DATA_DIR]");
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

    // Pixels the view moves at the picture's centre in one frame of rotating at `rate`.
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
    // The data's measured shifts, fitted linearly to the actions.
    let fits = match args.get(1) {
        Some(dir) => {
            let data = TrainingData::load(dir, &cfg)?;
            let pairs: usize = data.episodes.iter().map(|e| e.1.saturating_sub(1)).sum();
            println!("{pairs} frame pairs measured in {}", dir.display());
            Some(motion::fit_shifts_to_actions(&data, 1, &device)?)
        }
        None => None,
    };
    let apply =
        |(w, b): &(Vec<f32>, f32), x: &[f32]| w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>() + b;
    println!(
        "{:<16} {:>9} {:>7} {:>9} {:>7} {:>15} {:>17}",
        "action", "shift x", "zoom x", "shift y", "zoom y", "reference x", "data fit x, y"
    );
    for (name, values, reference) in cases {
        let mut action = spec.neutral_action();
        for &(i, v) in values {
            action.values[i] = v;
        }
        let mut cond = Vec::new();
        encode_condition(&spec, &action.values, &controls.values, noise, &mut cond);
        let len = cond.len();
        let fit = fits.as_ref().map_or("-".to_string(), |[fx, fy]| {
            format!("{:+.2}, {:+.2}", apply(fx, &cond), apply(fy, &cond))
        });
        let cond = Tensor::from_vec(cond, (1, len), &device)?;
        let [sx, zx, sy, zy] = warp.motion(&cond)?.map(|t| {
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map(|v| v[0])
        });
        let reference = reference.map_or("-".to_string(), |r| format!("{r:+.2} px"));
        println!(
            "{name:<16} {:>+9.2} {:>7.4} {:>+9.2} {:>7.4} {reference:>15} {fit:>17}",
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
