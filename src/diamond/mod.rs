//! DIAMOND's Atari world models (github.com/eloialonso/diamond, MIT): a diffusion model that
//! draws the next 64×64 frame from the last few frames and actions.
//!
//! - [`config`]: the denoiser and sampler configurations, inferred from a checkpoint's tensor
//!   names and shapes.
//! - [`loader`]: PyTorch `.pt` agent checkpoints as published, and safetensors.
//! - [`unet`] and [`denoiser`]: the network, EDM preconditioning with offset noise and 256-level
//!   quantisation, and the Karras-schedule Euler/Heun sampler.
//! - [`world`]: the [`WorldModel`](crate::world_model::WorldModel) implementation.
//!
//! ```no_run
//! use bevy_nacre::diamond::{DiamondOptions, DiamondWorldModel};
//! use bevy_nacre::prelude::*;
//!
//! let model = DiamondWorldModel::load("Breakout.pt", &candle_core::Device::Cpu, DiamondOptions::default())?;
//! let mut session = model.start(&Prompt::seeded(1))?;
//! let fire = StepInput { action: Action::new(vec![1.0]), controls: Controls::default() };
//! let out = session.step(&fire)?;
//! assert_eq!((out.frame.width, out.frame.height), (64, 64));
//! # Ok::<(), bevy_nacre::Error>(())
//! ```

pub mod config;
pub mod denoiser;
pub mod loader;
pub mod unet;
pub mod world;

pub use config::{DenoiserConfig, SamplerConfig, SamplerOrder};
pub use denoiser::{Denoiser, karras_sigmas};
pub use loader::{DiamondCheckpoint, load_checkpoint};
pub use world::{DiamondOptions, DiamondSession, DiamondWorldModel, atari_action_names};
