//! What a default model draws where the view opens up: from three start seeds it stands for 10
//! frames, turns right and walks for 40, then stands for 10, and prints the last frame's
//! luminance standard deviation and its number of distinct colours (5 bits per channel) — the
//! two numbers the hybrid example's end-to-end check asks of its screen (above 8 and 64), where
//! a view that turning washed out into flat streaks fails. Every sixth frame goes into a
//! contact sheet, one row per seed, to look at.
//!
//! ```sh
//! cargo run --release --example turn_and_walk -- assets/models/default target/turn_and_walk.png
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use bevy_nacre::default_model;
use bevy_nacre::frame::Frame;
use bevy_nacre::model::{Prompt, StepInput, WorldModel};
use bevy_nacre::reference::action_index as ai;
use bevy_nacre::reference::sheet::save_png;
use candle_core::Device;

/// Start seeds of the three rollouts.
const SEEDS: [u64; 3] = [3, 5, 11];
/// Frames of each rollout, and the ones that turn and walk.
const FRAMES: usize = 60;
const MOVING: std::ops::Range<usize> = 10..50;

fn main() -> bevy_nacre::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [model_dir, sheet_path] = args.as_slice() else {
        eprintln!("usage: turn_and_walk MODEL_DIR SHEET.png");
        std::process::exit(2);
    };
    let model = default_model::load(model_dir, &Device::Cpu)?;
    let spec = model.spec().clone();
    let mut rows = Vec::new();
    for seed in SEEDS {
        let mut session = model.start(&Prompt::seeded(seed))?;
        let mut row = Vec::new();
        let mut last = None;
        for i in 0..FRAMES {
            let mut input = StepInput {
                action: spec.neutral_action(),
                controls: spec.default_controls(),
            };
            if MOVING.contains(&i) {
                input.action.values[ai::TURN] = 1.0;
                input.action.values[ai::MOVE_FORWARD] = 1.0;
            }
            let frame = session.step(&input)?.frame;
            if i % 6 == 5 {
                row.push(frame.clone());
            }
            last = Some(frame);
        }
        let (std, colours) = spread(&last.expect("at least one frame"));
        println!("seed {seed:>2}: last frame luminance std {std:5.1}, {colours:4} colours");
        rows.push(row);
    }
    save_sheet(&rows, sheet_path)?;
    println!("contact sheet: {}", sheet_path.display());
    Ok(())
}

/// Luminance standard deviation and distinct colours at 5 bits per channel.
fn spread(frame: &Frame) -> (f64, usize) {
    let mut colours = HashSet::new();
    let lum: Vec<f64> = frame
        .rgba
        .chunks_exact(4)
        .map(|p| {
            colours.insert((p[0] >> 3, p[1] >> 3, p[2] >> 3));
            0.2126 * p[0] as f64 + 0.7152 * p[1] as f64 + 0.0722 * p[2] as f64
        })
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    let var = lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len() as f64;
    (var.sqrt(), colours.len())
}

/// One row of frames per rollout, written atomically.
fn save_sheet(rows: &[Vec<Frame>], path: &Path) -> bevy_nacre::Result<()> {
    let (w, h) = (rows[0][0].width, rows[0][0].height);
    let mut sheet = image::RgbImage::new(w * rows[0].len() as u32, h * rows.len() as u32);
    for (r, row) in rows.iter().enumerate() {
        for (i, frame) in row.iter().enumerate() {
            for (p, px) in frame.rgba.chunks_exact(4).enumerate() {
                let (x, y) = (p as u32 % w, p as u32 / w);
                let at = (i as u32 * w + x, r as u32 * h + y);
                sheet.put_pixel(at.0, at.1, image::Rgb([px[0], px[1], px[2]]));
            }
        }
    }
    save_png(path, &sheet)
}
