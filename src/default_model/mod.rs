//! The default world model: a small latent transformer that plays a world on a laptop CPU,
//! drawing each frame and its sound from the player's action and the director's controls.
//!
//! Laid out like a candle-transformers model folder:
//!
//! - [`config`]: [`Config`] (the architecture, and the action and control layout the model was
//!   trained with) and [`GenerationConfig`] (how it generates), both in `config.json`.
//! - [`network`]: encoder and decoder between pixels and a grid of latent tokens, the dynamics
//!   that predicts the next latent frame (conditioned through adaptive layer norm), and the audio
//!   head that predicts the frame's band spectrum; each built by `new(cfg, vb)`.
//! - [`memory`]: the place memory that keeps what a session has seen where it was.
//! - [`outpaint`]: the outpainter that draws the tokens just beyond the view's edge.
//! - [`patches`]: pixels to the grid of patch tokens and back.
//! - [`warp`]: the motion warp that moves the last frame by the shift and zoom the action causes,
//!   and texture transport, which carries detail over by the same motion.
//! - [`sampler`]: an optional per-token flow-matching head that samples the part of the next
//!   latent the dynamics' mean prediction leaves out.
//! - `blocks`, `conditions`: transformer blocks; the condition vector of a step.
//! - [`weights`]: loading and checking `model.safetensors`.
//! - [`world`]: the [`WorldModel`](crate::world_model::WorldModel) implementation; a session
//!   keeps only its last `context` latents, so cost and memory per frame are constant.
//!
//! The model knows nothing of the world it was trained on: its channels come from `config.json`,
//! and a session starts from frames in its prompt, or from a start-frame source the caller
//! sets ([`DefaultModel::with_start_frames`]). Training is in [`crate::train`]; evaluation in
//! [`crate::eval`].

pub(crate) mod blocks;
pub(crate) mod conditions;
pub mod config;
pub mod memory;
pub mod network;
pub mod outpaint;
pub mod patches;
pub mod quilt;
pub mod sampler;
mod transport;
pub mod warp;
pub mod weights;
pub mod world;

use std::path::Path;

use candle_core::Device;

use crate::error::Result;
pub use config::{Config, GenerationConfig};
pub use world::DefaultModel;

/// Where the shipped default model lives, relative to the project root.
pub const SHIPPED_DIR: &str = "assets/models/default";

/// Loads a trained default model from `dir` (`config.json` + `model.safetensors`). Its sessions
/// need start frames; see [`DefaultModel::with_start_frames`].
pub fn load(dir: &Path, device: &Device) -> Result<DefaultModel> {
    DefaultModel::load(dir, device)
}
