//! Test doubles for the world-model interface.
//!
//! `PatternModel` stands for a real world model in tests of the worker and the plugin: it does no
//! neural work, but its frames are an exact, checkable function of the seed, the frame index,
//! the action and the controls, and it can be made slow, failing or panicking on purpose.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bevy_nacre::action::{Action, Controls};
use bevy_nacre::error::{Error, Result};
use bevy_nacre::frame::{AudioChunk, Frame};
use bevy_nacre::spec::{ActionChannel, AudioFormat, ControlSpec, ModelSpec};
use bevy_nacre::world_model::{Prompt, Session, StepInput, StepOutput, StepTimings, WorldModel};

/// How the test double misbehaves.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Sleep this long in every step (a slow model).
    pub delay: Duration,
    /// Panic when asked for this frame index.
    pub panic_at: Option<u64>,
    /// Return an error when asked for this frame index.
    pub error_at: Option<u64>,
}

pub struct PatternModel {
    pub spec: ModelSpec,
    pub behaviour: Behaviour,
    /// Set when the model is dropped (the worker released it).
    pub dropped: Arc<AtomicBool>,
}

pub fn pattern_spec(width: u32, height: u32) -> ModelSpec {
    ModelSpec {
        name: "pattern".into(),
        version: "1".into(),
        width,
        height,
        fps: 50.0,
        actions: vec![
            ActionChannel::axis("move_forward", -1.0, 1.0),
            ActionChannel::axis("strafe", -1.0, 1.0),
            ActionChannel::axis("turn", -1.0, 1.0),
            ActionChannel::axis("look", -1.0, 1.0),
            ActionChannel::button("jump"),
            ActionChannel::button("sprint"),
        ],
        controls: vec![
            ControlSpec::cyclic("time_of_day", 0.0, 24.0, 12.0),
            ControlSpec::choice("weather", &["clear", "rain"], 0),
            ControlSpec::trigger("storm"),
        ],
        audio: AudioFormat {
            sample_rate: 1000,
            channels: 1,
            samples_per_frame: 20,
        },
        context_frames: 1,
    }
}

impl PatternModel {
    pub fn new(width: u32, height: u32, behaviour: Behaviour) -> Self {
        Self {
            spec: pattern_spec(width, height),
            behaviour,
            dropped: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn shared(width: u32, height: u32, behaviour: Behaviour) -> Arc<dyn WorldModel> {
        Arc::new(Self::new(width, height, behaviour))
    }
}

impl Drop for PatternModel {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

/// The exact frame the pattern model draws.
pub fn expected_pattern(
    width: u32,
    height: u32,
    seed: u64,
    index: u64,
    input: &StepInput,
    accumulated: u8,
) -> Frame {
    let mut rgba = Vec::with_capacity((width * height * 4) as usize);
    let a = |i: usize| ((input.action.values[i] + 1.0) * 100.0) as u8;
    for y in 0..height {
        for x in 0..width {
            rgba.extend_from_slice(&[
                (x as u64 + seed) as u8,
                (y as u64 + index) as u8,
                a(0) ^ a(2)
                    ^ (input.controls.values[0] as u8)
                    ^ accumulated
                    ^ (input.action.values[4] as u8 * 128),
                255,
            ]);
        }
    }
    Frame {
        width,
        height,
        rgba,
    }
}

pub struct PatternSession {
    width: u32,
    height: u32,
    seed: u64,
    index: u64,
    /// A running state that depends on every action, so restoring must restore it too.
    accumulated: u8,
    behaviour: Behaviour,
}

impl Session for PatternSession {
    fn step(&mut self, input: &StepInput) -> Result<StepOutput> {
        std::thread::sleep(self.behaviour.delay);
        if self.behaviour.panic_at == Some(self.index) {
            panic!("pattern model panics at frame {}", self.index);
        }
        if self.behaviour.error_at == Some(self.index) {
            return Err(Error::Other(format!(
                "pattern model fails at frame {}",
                self.index
            )));
        }
        let frame = expected_pattern(
            self.width,
            self.height,
            self.seed,
            self.index,
            input,
            self.accumulated,
        );
        self.accumulated = self
            .accumulated
            .wrapping_add((input.action.values[0] * 10.0) as i32 as u8)
            .wrapping_add(input.controls.values[2] as u8 * 7);
        self.index += 1;
        Ok(StepOutput {
            frame,
            audio: AudioChunk {
                sample_rate: 1000,
                channels: 1,
                samples: vec![self.index as f32 / 1000.0; 20],
            },
            timings: StepTimings::default(),
        })
    }

    fn save(&self) -> Result<Vec<u8>> {
        let mut out = self.seed.to_le_bytes().to_vec();
        out.extend_from_slice(&self.index.to_le_bytes());
        out.push(self.accumulated);
        Ok(out)
    }

    fn frame_index(&self) -> u64 {
        self.index
    }
}

impl WorldModel for PatternModel {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn start(&self, prompt: &Prompt) -> Result<Box<dyn Session>> {
        Ok(Box::new(PatternSession {
            width: self.spec.width,
            height: self.spec.height,
            seed: prompt.seed,
            index: 0,
            accumulated: 0,
            behaviour: self.behaviour.clone(),
        }))
    }

    fn restore(&self, state: &[u8]) -> Result<Box<dyn Session>> {
        if state.len() != 17 {
            return Err(Error::BadSessionState(format!(
                "pattern state is 17 bytes, got {}",
                state.len()
            )));
        }
        Ok(Box::new(PatternSession {
            width: self.spec.width,
            height: self.spec.height,
            seed: u64::from_le_bytes(state[0..8].try_into().unwrap()),
            index: u64::from_le_bytes(state[8..16].try_into().unwrap()),
            accumulated: state[16],
            behaviour: self.behaviour.clone(),
        }))
    }
}

/// A neutral input for the pattern spec with the given forward value.
pub fn input(forward: f32) -> StepInput {
    let spec = pattern_spec(1, 1);
    let mut action = spec.neutral_action();
    action.values[0] = forward;
    StepInput {
        action,
        controls: spec.default_controls(),
    }
}

pub fn controls(values: &[f32]) -> Controls {
    Controls::new(values.to_vec())
}

pub fn action(values: &[f32]) -> Action {
    Action::new(values.to_vec())
}

/// A headless Bevy app with bevy_nacre and what its views need (assets, images, input), but no
/// window or renderer; the worker runs inference on one thread.
#[cfg(feature = "bevy")]
pub fn headless_app() -> bevy::app::App {
    use bevy::prelude::*;
    use bevy_nacre::prelude::*;
    let mut app = App::new();
    app.add_plugins((
        MinimalPlugins,
        bevy::input::InputPlugin,
        AssetPlugin::default(),
        ImagePlugin::default(),
        NacrePlugin {
            worker: WorkerConfig {
                cpu_threads: 1,
                ..Default::default()
            },
        },
    ));
    app
}

/// Updates `app` until `done` says so; panics after `wait`.
#[cfg(feature = "bevy")]
pub fn update_until(
    app: &mut bevy::app::App,
    wait: Duration,
    mut done: impl FnMut(&mut bevy::app::App) -> bool,
) {
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        app.update();
        if done(app) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("condition not reached within {wait:?}");
}
