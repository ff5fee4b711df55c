//! The default world model: a small latent transformer that plays the reference world on a
//! laptop CPU, drawing each frame and its sound from the player's action and the director's
//! controls.
//!
//! - [`network`]: encoder and decoder between 128×128 pixels and a 16×16 grid of latent tokens,
//!   the dynamics that predicts the next latent frame (conditioned through adaptive layer norm,
//!   after a motion warp that moves the last frame by the shift and zoom the action causes), and
//!   the audio head that predicts the frame's band spectrum.
//! - [`sampler`]: an optional per-token flow-matching head that samples the part of the next
//!   latent the dynamics' mean prediction leaves out, so fine texture is kept instead of fading.
//! - [`model`]: the [`WorldModel`](crate::model::WorldModel) implementation; a session keeps
//!   only its last `context` latents, so cost and memory per frame are constant.
//! - Training is in [`crate::train`]; evaluation in [`crate::eval`].

pub mod blocks;
pub mod conditions;
pub mod config;
pub mod model;
pub mod network;
pub mod sampler;
pub mod weights;

use std::path::Path;

use candle_core::Device;

use crate::error::Result;
use crate::frame::Frame;
use crate::model::{Prompt, StepInput};
use crate::reference::{ReferenceWorld, reference_spec};
use crate::spec::ModelSpec;
pub use config::Config;
pub use model::DefaultModel;

/// Where the shipped default model lives, relative to the project root.
pub const SHIPPED_DIR: &str = "assets/models/default";

/// The action and control layout of the default model (the reference world's), at `cfg`'s size.
pub fn spec_for(cfg: &Config) -> ModelSpec {
    reference_spec(cfg.width as u32, cfg.height as u32)
}

/// Start frames for a prompt without any: the first `count` frames of the reference world at the
/// prompt's seed and controls, standing still. The default model was trained on that world, so
/// this is the place it knows how to continue.
pub fn reference_start_frames(
    prompt: &Prompt,
    spec: &ModelSpec,
    count: usize,
) -> Result<Vec<Frame>> {
    let world = ReferenceWorld::new(spec.width, spec.height);
    let mut session = world.start_session(&Prompt {
        seed: prompt.seed,
        start_frames: Vec::new(),
        controls: prompt.controls.clone(),
    })?;
    let reference = reference_spec(spec.width, spec.height);
    let input = StepInput {
        action: reference.neutral_action(),
        controls: match &prompt.controls {
            Some(c) => reference.sanitize_controls(c)?,
            None => reference.default_controls(),
        },
    };
    (0..count)
        .map(|_| crate::model::Session::step(&mut session, &input).map(|o| o.frame))
        .collect()
}

/// Loads a trained default model from `dir` (`config.json` + `model.safetensors`), starting
/// prompts without frames from the reference world.
pub fn load(dir: &Path, device: &Device) -> Result<DefaultModel> {
    let cfg = Config::load(&dir.join("config.json"))?;
    let model = DefaultModel::load(dir, spec_for(&cfg), device)?;
    Ok(model.with_start_frames(reference_start_frames))
}
