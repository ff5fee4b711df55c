//! The world-model interface: a model declares a [`ModelSpec`], loads its weights once, and runs
//! any number of independent [`Session`]s, each with its own state.

use std::any::Any;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::action::{Action, Controls};
use crate::error::Result;
use crate::frame::{AudioChunk, Frame};
use crate::spec::ModelSpec;

/// How a session begins.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    /// Seed for everything random in the session (noise, procedural content).
    pub seed: u64,
    /// Frames to start from, oldest first. Models that need context pad or generate what is missing.
    pub start_frames: Vec<Frame>,
    /// Director controls at the start; `None` means the spec's defaults.
    pub controls: Option<Controls>,
}

impl Prompt {
    /// A prompt with only a seed.
    pub fn seeded(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }
}

/// The input of one step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepInput {
    /// The player's action.
    pub action: Action,
    /// The director's controls.
    pub controls: Controls,
}

/// Where the time of one step went, as the model saw it: an optional breakdown by stage (e.g.
/// `("video", …)`, `("audio", …)`). The worker measures the whole call itself
/// ([`GeneratedFrame::compute`](crate::worker::GeneratedFrame::compute)).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepTimings {
    /// Stages and their wall time.
    pub stages: Vec<(&'static str, Duration)>,
}

/// What one step produces.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutput {
    /// The new picture.
    pub frame: Frame,
    /// The sound that goes with it.
    pub audio: AudioChunk,
    /// Timings.
    pub timings: StepTimings,
}

/// One running world: the model's per-session state (frame history, recurrent state, random state).
///
/// A session holds whatever it needs from its model (usually an `Arc` of the weights), so stepping
/// needs nothing else. Cost and memory per step must not grow with the session's length.
pub trait Session: Send + Any {
    /// Generates the next frame and its sound.
    fn step(&mut self, input: &StepInput) -> Result<StepOutput>;
    /// Serialises the complete state, so [`WorldModel::restore`] continues exactly here.
    fn save(&self) -> Result<Vec<u8>>;
    /// How many frames this session has generated.
    fn frame_index(&self) -> u64;
}

/// A world model: weights loaded once and shared by all its sessions.
///
/// Implementations are engine-agnostic and run on the inference worker's thread. Errors are
/// returned, not panicked; the worker still catches panics and reports them per session.
pub trait WorldModel: Send + Sync + 'static {
    /// What the model declares about itself.
    fn spec(&self) -> &ModelSpec;

    /// Starts a new session.
    fn start(&self, prompt: &Prompt) -> Result<Box<dyn Session>>;

    /// Rebuilds a session from [`Session::save`] bytes written by the same model and version.
    fn restore(&self, state: &[u8]) -> Result<Box<dyn Session>>;

    /// Steps several sessions of this model at once; element `i` of the result belongs to
    /// `batch[i]`. The default steps them one after another; models that gain from batching
    /// (one matrix product for all views) override it, downcasting sessions with
    /// `(&mut **session as &mut dyn Any).downcast_mut::<MySession>()`.
    fn step_batch(&self, batch: &mut [BatchItem<'_>]) -> Vec<Result<StepOutput>> {
        batch
            .iter_mut()
            .map(|item| item.session.step(item.input))
            .collect()
    }
}

/// One session and its input in a batched step.
pub struct BatchItem<'a> {
    /// The session to step.
    pub session: &'a mut Box<dyn Session>,
    /// Its input.
    pub input: &'a StepInput,
}

/// Checks a model's output against its spec, so a broken model is reported, not shown.
pub fn validate_output(spec: &ModelSpec, output: &StepOutput) -> Result<()> {
    let f = &output.frame;
    if f.width != spec.width || f.height != spec.height || !f.is_well_formed() {
        return Err(crate::Error::BadOutput(format!(
            "frame is {}x{} with {} bytes, spec says {}x{} RGBA8",
            f.width,
            f.height,
            f.rgba.len(),
            spec.width,
            spec.height
        )));
    }
    let a = &output.audio;
    if !spec.audio.is_silent() {
        let expected = spec.audio.samples_per_frame as usize * spec.audio.channels as usize;
        if a.samples.len() != expected {
            return Err(crate::Error::BadOutput(format!(
                "audio chunk has {} samples, spec says {expected}",
                a.samples.len()
            )));
        }
    }
    if let Some(bad) = a.samples.iter().find(|s| !s.is_finite()) {
        return Err(crate::Error::BadOutput(format!(
            "audio chunk contains a non-finite sample ({bad})"
        )));
    }
    Ok(())
}
