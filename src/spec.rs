//! What a world model declares about itself: resolution, frame rate, action channels, director
//! controls, audio format and context length.
//!
//! Everything that talks to a model (input mapping, the worker, the director panel, datasets) reads
//! the spec instead of assuming a layout, so one game can drive models with different channels.

use serde::{Deserialize, Serialize};

use crate::action::{Action, Controls};

/// The kind and range of one action channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActionKind {
    /// A continuous axis, such as "move forward" (-1 = back, +1 = forward) or a turn rate.
    Axis {
        /// Smallest value the model was trained with.
        min: f32,
        /// Largest value the model was trained with.
        max: f32,
    },
    /// A button: 0 (released) or 1 (pressed).
    Button,
    /// One of several named choices; the value is the choice's index.
    Discrete {
        /// The choices, in index order.
        choices: Vec<String>,
    },
}

/// One named input channel of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionChannel {
    /// Name that input bindings refer to, e.g. `move_forward`.
    pub name: String,
    /// Kind and range.
    #[serde(flatten)]
    pub kind: ActionKind,
}

impl ActionChannel {
    /// A continuous axis from `min` to `max`.
    pub fn axis(name: impl Into<String>, min: f32, max: f32) -> Self {
        Self {
            name: name.into(),
            kind: ActionKind::Axis { min, max },
        }
    }

    /// A button (0 or 1).
    pub fn button(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: ActionKind::Button,
        }
    }

    /// A discrete choice among `choices`.
    pub fn discrete(name: impl Into<String>, choices: &[&str]) -> Self {
        Self {
            name: name.into(),
            kind: ActionKind::Discrete {
                choices: choices.iter().map(|c| c.to_string()).collect(),
            },
        }
    }

    /// Brings `value` into the channel's range: clamps axes, thresholds buttons at 0.5 and rounds
    /// discrete choices to a valid index. NaN becomes the neutral value.
    pub fn clamp(&self, value: f32) -> f32 {
        let value = if value.is_finite() { value } else { 0.0 };
        match &self.kind {
            ActionKind::Axis { min, max } => value.clamp(*min, *max),
            ActionKind::Button => {
                if value >= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            ActionKind::Discrete { choices } => value
                .round()
                .clamp(0.0, choices.len().saturating_sub(1) as f32),
        }
    }

    /// The value meaning "no input": 0 clamped into range, or the first choice.
    pub fn neutral(&self) -> f32 {
        self.clamp(0.0)
    }
}

/// The kind of one director control.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlKind {
    /// A continuous value, such as time of day in hours.
    Continuous {
        /// Smallest value.
        min: f32,
        /// Largest value.
        max: f32,
        /// Value at the start of a session.
        default: f32,
        /// Whether the range wraps around (time of day: 24 h = 0 h).
        #[serde(default)]
        wraps: bool,
    },
    /// One of several named options; the value is the option's index.
    Choice {
        /// The options, in index order.
        options: Vec<String>,
        /// Index of the option at the start of a session.
        default: usize,
    },
    /// A one-shot event ("a landmark appears"): set to 1 for one step, then back to 0.
    Trigger,
}

/// One named director control of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControlSpec {
    /// Name, e.g. `time_of_day`.
    pub name: String,
    /// Kind, range and default.
    #[serde(flatten)]
    pub kind: ControlKind,
}

impl ControlSpec {
    /// A continuous control.
    pub fn continuous(name: impl Into<String>, min: f32, max: f32, default: f32) -> Self {
        Self {
            name: name.into(),
            kind: ControlKind::Continuous {
                min,
                max,
                default,
                wraps: false,
            },
        }
    }

    /// A continuous control whose range wraps around, such as time of day.
    pub fn cyclic(name: impl Into<String>, min: f32, max: f32, default: f32) -> Self {
        Self {
            name: name.into(),
            kind: ControlKind::Continuous {
                min,
                max,
                default,
                wraps: true,
            },
        }
    }

    /// A choice among named options.
    pub fn choice(name: impl Into<String>, options: &[&str], default: usize) -> Self {
        Self {
            name: name.into(),
            kind: ControlKind::Choice {
                options: options.iter().map(|o| o.to_string()).collect(),
                default,
            },
        }
    }

    /// A one-shot event.
    pub fn trigger(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: ControlKind::Trigger,
        }
    }

    /// The value at the start of a session.
    pub fn default_value(&self) -> f32 {
        match &self.kind {
            ControlKind::Continuous { default, .. } => *default,
            ControlKind::Choice { default, .. } => *default as f32,
            ControlKind::Trigger => 0.0,
        }
    }

    /// Brings `value` into range (wrapping cyclic controls). NaN becomes the default.
    pub fn clamp(&self, value: f32) -> f32 {
        if !value.is_finite() {
            return self.default_value();
        }
        match &self.kind {
            ControlKind::Continuous {
                min, max, wraps, ..
            } => {
                if *wraps && max > min {
                    min + (value - min).rem_euclid(max - min)
                } else {
                    value.clamp(*min, *max)
                }
            }
            ControlKind::Choice { options, .. } => value
                .round()
                .clamp(0.0, options.len().saturating_sub(1) as f32),
            ControlKind::Trigger => {
                if value >= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// For a choice control, the index of the option called `option` (case-insensitive).
    pub fn option_index(&self, option: &str) -> Option<usize> {
        match &self.kind {
            ControlKind::Choice { options, .. } => {
                options.iter().position(|o| o.eq_ignore_ascii_case(option))
            }
            _ => None,
        }
    }
}

/// The format of the sound a model generates with each frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioFormat {
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Interleaved channels (1 = mono).
    pub channels: u16,
    /// Samples per channel in each frame's chunk (`sample_rate / fps`).
    pub samples_per_frame: u32,
}

impl AudioFormat {
    /// A model without sound.
    pub const SILENT: AudioFormat = AudioFormat {
        sample_rate: 0,
        channels: 0,
        samples_per_frame: 0,
    };

    /// Whether the model generates sound at all.
    pub fn is_silent(&self) -> bool {
        self.channels == 0 || self.samples_per_frame == 0
    }
}

/// Everything a world model declares about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Stable identifier of the model family, e.g. `nacre-default`. Saved sessions record it.
    pub name: String,
    /// Version of the weights or of the state layout. Saved sessions from another version are refused.
    pub version: String,
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Frame rate the model was trained at; the worker paces generation to it by default.
    pub fps: f32,
    /// Input channels, in the order of [`Action::values`].
    pub actions: Vec<ActionChannel>,
    /// Director controls, in the order of [`Controls::values`].
    pub controls: Vec<ControlSpec>,
    /// Sound generated with each frame.
    pub audio: AudioFormat,
    /// How many past frames the model looks at.
    pub context_frames: usize,
}

impl ModelSpec {
    /// Index of the action channel called `name`.
    pub fn action_index(&self, name: &str) -> Option<usize> {
        self.actions.iter().position(|c| c.name == name)
    }

    /// Index of the control called `name`.
    pub fn control_index(&self, name: &str) -> Option<usize> {
        self.controls.iter().position(|c| c.name == name)
    }

    /// An action with every channel at its neutral value.
    pub fn neutral_action(&self) -> Action {
        Action {
            values: self.actions.iter().map(ActionChannel::neutral).collect(),
        }
    }

    /// Controls with every control at its default.
    pub fn default_controls(&self) -> Controls {
        Controls {
            values: self
                .controls
                .iter()
                .map(ControlSpec::default_value)
                .collect(),
        }
    }

    /// Bytes in one RGBA8 frame.
    pub fn frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 4
    }

    /// Checks an action against the spec and returns it clamped into range.
    pub fn sanitize_action(&self, action: &Action) -> Result<Action, SpecMismatch> {
        if action.values.len() != self.actions.len() {
            return Err(SpecMismatch::ActionLength {
                expected: self.actions.len(),
                got: action.values.len(),
            });
        }
        Ok(Action {
            values: self
                .actions
                .iter()
                .zip(&action.values)
                .map(|(c, v)| c.clamp(*v))
                .collect(),
        })
    }

    /// Checks controls against the spec and returns them clamped into range.
    pub fn sanitize_controls(&self, controls: &Controls) -> Result<Controls, SpecMismatch> {
        if controls.values.len() != self.controls.len() {
            return Err(SpecMismatch::ControlsLength {
                expected: self.controls.len(),
                got: controls.values.len(),
            });
        }
        Ok(Controls {
            values: self
                .controls
                .iter()
                .zip(&controls.values)
                .map(|(c, v)| c.clamp(*v))
                .collect(),
        })
    }
}

/// An action or control vector that does not fit a model's spec.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SpecMismatch {
    /// Wrong number of action values.
    #[error("action has {got} values but the model has {expected} action channels")]
    ActionLength {
        /// Channels in the spec.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// Wrong number of control values.
    #[error("controls have {got} values but the model has {expected} controls")]
    ControlsLength {
        /// Controls in the spec.
        expected: usize,
        /// Values given.
        got: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_each_kind() {
        let axis = ActionChannel::axis("turn", -1.0, 1.0);
        assert_eq!(axis.clamp(3.0), 1.0);
        assert_eq!(axis.clamp(f32::NAN), 0.0);
        assert_eq!(ActionChannel::button("jump").clamp(0.7), 1.0);
        let d = ActionChannel::discrete("a", &["noop", "fire", "left"]);
        assert_eq!(d.clamp(7.0), 2.0);
        let tod = ControlSpec::cyclic("time_of_day", 0.0, 24.0, 12.0);
        assert_eq!(tod.clamp(25.0), 1.0);
        assert_eq!(tod.clamp(-1.0), 23.0);
        let w = ControlSpec::choice("weather", &["clear", "rain"], 0);
        assert_eq!(w.option_index("RAIN"), Some(1));
    }

    #[test]
    fn spec_roundtrips_through_json() {
        let spec = ModelSpec {
            name: "x".into(),
            version: "1".into(),
            width: 8,
            height: 8,
            fps: 20.0,
            actions: vec![
                ActionChannel::axis("move_forward", -1.0, 1.0),
                ActionChannel::button("jump"),
            ],
            controls: vec![ControlSpec::trigger("storm")],
            audio: AudioFormat::SILENT,
            context_frames: 4,
        };
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), spec);
        assert!(spec.sanitize_action(&Action { values: vec![0.0] }).is_err());
    }
}
