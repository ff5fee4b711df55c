#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod action;
pub mod dataset;
pub mod default_model;
pub mod device;
pub mod diamond;
pub mod director;
pub(crate) mod dsp;
pub mod error;
pub mod eval;
pub mod explorer;
pub mod files;
pub mod frame;
pub mod nn;
pub mod recording;
pub mod reference;
pub mod rng;
pub mod session_file;
pub mod spec;
pub mod state_codec;
pub mod timing;
pub mod train;
pub mod worker;
pub mod world_model;

#[cfg(feature = "bevy")]
pub mod plugin;

pub use error::{Error, Result};

/// The types most games need: `use bevy_nacre::prelude::*;`.
pub mod prelude {
    pub use crate::action::{Action, Controls};
    pub use crate::frame::{AudioChunk, Frame};
    #[cfg(feature = "bevy")]
    pub use crate::plugin::prelude::*;
    pub use crate::spec::{
        ActionChannel, ActionKind, AudioFormat, ControlKind, ControlSpec, ModelSpec,
    };
    pub use crate::worker::{Pacing, WorkerConfig};
    pub use crate::world_model::{Prompt, Session, StepInput, StepOutput, WorldModel};
}
