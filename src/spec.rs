//! What a world model declares about itself: resolution, frame rate, action channels, director
//! controls, audio format and context length.
//!
//! Everything that talks to a model (input mapping, the worker, the director panel, datasets) reads
//! the spec instead of assuming a layout, so one game can drive models with different channels.

pub mod first_person;

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
            ActionKind::Axis { min, max } => value.max(*min).min(*max),
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
                    value.max(*min).min(*max)
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
        index_of(&self.actions, name)
    }

    /// Index of the control called `name`.
    pub fn control_index(&self, name: &str) -> Option<usize> {
        index_of(&self.controls, name)
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

    /// The controls a session starts with: `prompt`'s, checked and clamped, or the defaults.
    pub fn start_controls(&self, prompt: Option<&Controls>) -> Result<Controls, SpecMismatch> {
        match prompt {
            Some(c) => self.sanitize_controls(c),
            None => Ok(self.default_controls()),
        }
    }

    /// Merges a new input into the action a step will see (`pending`): axes take the newest
    /// value, while a button pressed in `pending` stays pressed until a step has seen it, so a
    /// tap between two steps is never missed. `next` must fit the spec (see
    /// [`sanitize_action`](Self::sanitize_action)).
    pub fn latch_buttons(&self, pending: &mut Action, next: &Action) {
        for ((channel, held), new) in self
            .actions
            .iter()
            .zip(&mut pending.values)
            .zip(&next.values)
        {
            let latched = matches!(channel.kind, ActionKind::Button) && *held > 0.5;
            *held = if latched { 1.0 } else { *new };
        }
    }

    /// Merges new controls into those a step will see (`pending`): every value takes the newest,
    /// except that a trigger fired in `pending` stays armed until a step has seen it, so it fires
    /// exactly once. `next` must fit the spec (see [`sanitize_controls`](Self::sanitize_controls)).
    pub fn arm_triggers(&self, pending: &mut Controls, next: &Controls) {
        for ((control, armed), new) in self
            .controls
            .iter()
            .zip(&mut pending.values)
            .zip(&next.values)
        {
            let keep = matches!(control.kind, ControlKind::Trigger) && *armed > 0.5;
            *armed = if keep { 1.0 } else { *new };
        }
    }

    /// Sets every trigger in `values` (controls in spec order) back to 0: after the step that saw
    /// them, or once the game has sent them.
    pub fn disarm_triggers(&self, values: &mut [f32]) {
        disarm_triggers(&self.controls, values);
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

/// Sets every trigger among `controls` back to 0 in `values` (in the same order).
pub fn disarm_triggers(controls: &[ControlSpec], values: &mut [f32]) {
    for (control, value) in controls.iter().zip(values) {
        if matches!(control.kind, ControlKind::Trigger) {
            *value = 0.0;
        }
    }
}

/// An action channel or a director control: something with a name and a range.
pub trait Channel {
    /// Its name.
    fn name(&self) -> &str;
    /// `value` brought into its range.
    fn clamp(&self, value: f32) -> f32;
    /// Its value at the start.
    fn initial(&self) -> f32;
}

impl Channel for ActionChannel {
    fn name(&self) -> &str {
        &self.name
    }
    fn clamp(&self, value: f32) -> f32 {
        ActionChannel::clamp(self, value)
    }
    fn initial(&self) -> f32 {
        self.neutral()
    }
}

impl Channel for ControlSpec {
    fn name(&self) -> &str {
        &self.name
    }
    fn clamp(&self, value: f32) -> f32 {
        ControlSpec::clamp(self, value)
    }
    fn initial(&self) -> f32 {
        self.default_value()
    }
}

/// The position of the channel called `name` among `channels`.
pub fn index_of<C: Channel>(channels: &[C], name: &str) -> Option<usize> {
    channels.iter().position(|c| c.name() == name)
}

/// Values of a model's channels or controls, read and written by name: what a view's
/// `ActionState` and `ViewControls` hold. Empty until the model's spec is known.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedValues<C> {
    channels: Vec<C>,
    values: Vec<f32>,
}

impl<C> Default for NamedValues<C> {
    fn default() -> Self {
        Self {
            channels: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<C: Channel + Clone> NamedValues<C> {
    /// `channels` at their initial values (neutral actions, default controls).
    pub fn new(channels: &[C]) -> Self {
        Self {
            channels: channels.to_vec(),
            values: channels.iter().map(Channel::initial).collect(),
        }
    }

    /// `channels` with `values` (in the same order; missing values are initial, extra ones
    /// ignored, every value clamped).
    pub fn with_values(channels: &[C], values: &[f32]) -> Self {
        let mut out = Self::new(channels);
        for ((slot, channel), v) in out.values.iter_mut().zip(channels).zip(values) {
            *slot = channel.clamp(*v);
        }
        out
    }

    /// The channels, in order.
    pub fn channels(&self) -> &[C] {
        &self.channels
    }

    /// All values, in channel order.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// All values, to change in place (the caller keeps them in range).
    pub fn values_mut(&mut self) -> &mut [f32] {
        &mut self.values
    }

    /// The channels and their values, to change in place.
    pub fn split_mut(&mut self) -> (&[C], &mut [f32]) {
        (&self.channels, &mut self.values)
    }

    /// The value of the channel called `name`.
    pub fn get(&self, name: &str) -> Option<f32> {
        Some(self.values[index_of(&self.channels, name)?])
    }

    /// Sets the channel called `name` (clamped to its range, wrapped for cyclic controls).
    /// Returns false if there is none.
    pub fn set(&mut self, name: &str, value: f32) -> bool {
        match index_of(&self.channels, name) {
            Some(i) => {
                self.values[i] = self.channels[i].clamp(value);
                true
            }
            None => false,
        }
    }
}

/// The part of a [`ModelSpec`] a trained model learns from its data: the action channels and
/// director controls, in order. Stored with trained weights (the `spec` of a default model's
/// `config.json`) and compared with a dataset's before training or evaluating on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelLayout {
    /// Input channels, in order.
    pub actions: Vec<ActionChannel>,
    /// Director controls, in order.
    pub controls: Vec<ControlSpec>,
}

impl ChannelLayout {
    /// The layout of `spec`.
    pub fn of(spec: &ModelSpec) -> Self {
        Self {
            actions: spec.actions.clone(),
            controls: spec.controls.clone(),
        }
    }

    /// The [first-person layout](first_person) the project's own models share.
    pub fn first_person() -> Self {
        Self {
            actions: first_person::action_channels(),
            controls: first_person::control_specs(),
        }
    }

    /// What makes the layout unusable, naming the channel or control: a range whose ends are
    /// not numbers or are the wrong way round, a choice with no options, a default out of range.
    pub fn problem(&self) -> Option<String> {
        let range = |min: f32, max: f32| min.is_finite() && max.is_finite() && min <= max;
        for a in &self.actions {
            let bad = match &a.kind {
                ActionKind::Axis { min, max } => !range(*min, *max),
                ActionKind::Button => false,
                ActionKind::Discrete { choices } => choices.is_empty(),
            };
            if bad {
                return Some(format!(
                    "action `{}` has an unusable range: {:?}",
                    a.name, a.kind
                ));
            }
        }
        for c in &self.controls {
            let bad = match &c.kind {
                ControlKind::Continuous {
                    min, max, default, ..
                } => !range(*min, *max) || !(min..=max).contains(&default),
                ControlKind::Choice { options, default } => *default >= options.len(),
                ControlKind::Trigger => false,
            };
            if bad {
                return Some(format!(
                    "control `{}` has an unusable range: {:?}",
                    c.name, c.kind
                ));
            }
        }
        None
    }

    /// How `other` differs from this layout, one line per channel or control, naming it; empty
    /// when they are the same.
    pub fn differences(&self, other: &ChannelLayout) -> Vec<String> {
        let mut out = list_differences("action", &self.actions, &other.actions);
        out.extend(list_differences("control", &self.controls, &other.controls));
        out
    }
}

/// `kind i: A here, B there` for every position where `here` and `there` differ.
fn list_differences<T: Serialize + PartialEq>(kind: &str, here: &[T], there: &[T]) -> Vec<String> {
    let describe = |v: Option<&T>| v.map_or("none".into(), |v| serde_json::json!(v).to_string());
    (0..here.len().max(there.len()))
        .filter(|&i| here.get(i) != there.get(i))
        .map(|i| {
            format!(
                "{kind} {i}: {} here, {} there",
                describe(here.get(i)),
                describe(there.get(i))
            )
        })
        .collect()
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
impl ModelSpec {
    /// A small spec with no channels, for tests to fill in.
    fn test_spec() -> Self {
        Self {
            name: "t".into(),
            version: "1".into(),
            width: 8,
            height: 8,
            fps: 20.0,
            actions: Vec::new(),
            controls: Vec::new(),
            audio: AudioFormat::SILENT,
            context_frames: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_layout_names_its_channel_and_clamping_never_panics() {
        assert_eq!(ChannelLayout::first_person().problem(), None);
        let mut layout = ChannelLayout::first_person();
        layout.actions[0] = ActionChannel::axis("move_forward", 65536.0, 1.0);
        let why = layout.problem().unwrap();
        assert!(why.contains("move_forward"), "{why}");
        assert_eq!(layout.actions[0].clamp(0.5), 1.0);
        let mut layout = ChannelLayout::first_person();
        layout.controls[0] = ControlSpec::continuous("time_of_day", 0.0, 24.0, 30.0);
        assert!(layout.problem().unwrap().contains("time_of_day"));
        layout.controls[0] = ControlSpec::choice("weather", &[], 0);
        assert!(layout.problem().unwrap().contains("weather"));
    }

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
    fn buttons_latch_and_triggers_fire_once() {
        let spec = ModelSpec {
            actions: vec![
                ActionChannel::axis("turn", -1.0, 1.0),
                ActionChannel::button("jump"),
            ],
            controls: vec![
                ControlSpec::trigger("storm"),
                ControlSpec::continuous("fog", 0.0, 1.0, 0.0),
            ],
            ..ModelSpec::test_spec()
        };
        // A tap between two steps: pressed, then released before the step.
        let mut pending = spec.neutral_action();
        spec.latch_buttons(&mut pending, &Action::new(vec![0.5, 1.0]));
        spec.latch_buttons(&mut pending, &Action::new(vec![-0.2, 0.0]));
        assert_eq!(
            pending.values,
            vec![-0.2, 1.0],
            "axes take the newest, the tap stays"
        );
        // A trigger fired and then cleared by the game before a step still reaches the step.
        let mut controls = spec.default_controls();
        spec.arm_triggers(&mut controls, &Controls::new(vec![1.0, 0.3]));
        spec.arm_triggers(&mut controls, &Controls::new(vec![0.0, 0.6]));
        assert_eq!(controls.values, vec![1.0, 0.6]);
        spec.disarm_triggers(&mut controls.values);
        assert_eq!(controls.values, vec![0.0, 0.6], "after the step, once only");
        let start = spec
            .start_controls(Some(&Controls::new(vec![0.0, 7.0])))
            .unwrap();
        assert_eq!(start.values, vec![0.0, 1.0], "clamped");
        assert!(
            spec.start_controls(Some(&Controls::new(vec![0.0])))
                .is_err()
        );
        assert_eq!(spec.start_controls(None).unwrap(), spec.default_controls());
    }

    #[test]
    fn named_values_are_read_and_written_by_name_within_range() {
        let mut v = NamedValues::new(&[
            ControlSpec::cyclic("time_of_day", 0.0, 24.0, 12.0),
            ControlSpec::choice("weather", &["clear", "rain"], 1),
        ]);
        assert_eq!(v.values(), &[12.0, 1.0]);
        assert!(v.set("time_of_day", 25.0));
        assert_eq!(v.get("time_of_day"), Some(1.0));
        assert!(!v.set("wind", 1.0));
        assert_eq!(v.get("wind"), None);
        let w = NamedValues::with_values(v.channels(), &[30.0]);
        assert_eq!(w.values(), &[6.0, 1.0]);
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
