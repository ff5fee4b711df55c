//! Player input to action channels: [`ActionBindings`] say which keys, buttons, mouse motion and
//! gamepad inputs drive which named channel; [`ActionState`] holds this frame's values.

use std::time::Instant;

use bevy::input::gamepad::{Gamepad, GamepadAxis, GamepadButton};
use bevy::input::mouse::AccumulatedMouseMotion;
use bevy::prelude::*;

use crate::action::Action;
use crate::spec::{ActionChannel, NamedValues, index_of};

/// Where a binding's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Reflect)]
pub enum InputSource {
    /// A keyboard key: `scale` while held, else 0.
    Key(KeyCode),
    /// A mouse button: `scale` while held, else 0.
    Mouse(MouseButton),
    /// Horizontal mouse motion this frame, in pixels, times `scale`.
    MouseMotionX,
    /// Vertical mouse motion this frame, in pixels (down is positive), times `scale`.
    MouseMotionY,
    /// A gamepad axis (any connected gamepad), -1 to 1, times `scale`.
    GamepadAxis(GamepadAxis),
    /// A gamepad button (any connected gamepad): `scale` while held, else 0.
    GamepadButton(GamepadButton),
}

/// One input source driving one action channel.
#[derive(Clone, Debug, PartialEq, Reflect)]
pub struct Binding {
    /// Name of the action channel, as in the model's spec.
    pub channel: String,
    /// The input.
    pub source: InputSource,
    /// Multiplier; negative for the "back" half of an axis (S for `move_forward`, say).
    pub scale: f32,
}

impl Binding {
    /// A binding of `source` to `channel` with `scale`.
    pub fn new(channel: impl Into<String>, source: InputSource, scale: f32) -> Self {
        Self {
            channel: channel.into(),
            source,
            scale,
        }
    }
}

/// Which inputs drive a view's action channels. Contributions to one channel add up and are then
/// clamped to the channel's range. Bindings to channels the model does not have are ignored.
#[derive(Component, Clone, Debug, Reflect)]
pub struct ActionBindings {
    /// The bindings.
    pub bindings: Vec<Binding>,
    /// When false, the view receives neutral input (e.g. while a menu is open).
    pub enabled: bool,
}

/// Mouse pixels per frame that make a full-speed turn.
const MOUSE_PIXELS_FULL_TURN: f32 = 20.0;

impl Default for ActionBindings {
    /// First-person defaults for the channel names the shipped models use: WASD and arrows to
    /// move (left/right arrows turn), mouse to look, Space to jump, Shift to sprint, and the
    /// left stick, right stick, South and left-trigger buttons on a gamepad.
    fn default() -> Self {
        use InputSource::*;
        let m = 1.0 / MOUSE_PIXELS_FULL_TURN;
        let bindings = vec![
            Binding::new("move_forward", Key(KeyCode::KeyW), 1.0),
            Binding::new("move_forward", Key(KeyCode::ArrowUp), 1.0),
            Binding::new("move_forward", Key(KeyCode::KeyS), -1.0),
            Binding::new("move_forward", Key(KeyCode::ArrowDown), -1.0),
            Binding::new(
                "move_forward",
                GamepadAxis(self::GamepadAxis::LeftStickY),
                1.0,
            ),
            Binding::new("strafe", Key(KeyCode::KeyD), 1.0),
            Binding::new("strafe", Key(KeyCode::KeyA), -1.0),
            Binding::new("strafe", GamepadAxis(self::GamepadAxis::LeftStickX), 1.0),
            Binding::new("turn", Key(KeyCode::ArrowRight), 1.0),
            Binding::new("turn", Key(KeyCode::ArrowLeft), -1.0),
            Binding::new("turn", MouseMotionX, m),
            Binding::new("turn", GamepadAxis(self::GamepadAxis::RightStickX), 1.0),
            Binding::new("look", MouseMotionY, -m),
            Binding::new("look", Key(KeyCode::PageUp), 1.0),
            Binding::new("look", Key(KeyCode::PageDown), -1.0),
            Binding::new("look", GamepadAxis(self::GamepadAxis::RightStickY), 1.0),
            Binding::new("jump", Key(KeyCode::Space), 1.0),
            Binding::new("jump", GamepadButton(self::GamepadButton::South), 1.0),
            Binding::new("sprint", Key(KeyCode::ShiftLeft), 1.0),
            Binding::new(
                "sprint",
                GamepadButton(self::GamepadButton::LeftTrigger),
                1.0,
            ),
        ];
        Self {
            bindings,
            enabled: true,
        }
    }
}

impl ActionBindings {
    /// No bindings at all; add your own with [`bind`](Self::bind).
    pub fn empty() -> Self {
        Self {
            bindings: Vec::new(),
            enabled: true,
        }
    }

    /// Adds a binding.
    pub fn bind(mut self, channel: impl Into<String>, source: InputSource, scale: f32) -> Self {
        self.bindings.push(Binding::new(channel, source, scale));
        self
    }
}

/// This frame's value of every action channel of a view. Written by [`NacreSystems::Input`]
/// from the bindings; your systems may change it before [`NacreSystems::Submit`] sends it (an
/// AI driver, a cut-scene, a replay).
///
/// [`NacreSystems::Input`]: crate::plugin::NacreSystems::Input
/// [`NacreSystems::Submit`]: crate::plugin::NacreSystems::Submit
#[derive(Component, Clone, Debug, Default)]
pub struct ActionState {
    values: NamedValues<ActionChannel>,
    sampled_at: Option<Instant>,
}

impl ActionState {
    /// Neutral values of `channels` (a model's or a game's [`ModelSpec::actions`]). Views and
    /// captures make their own; a game makes one for a player that is driven by the same
    /// actions without being a view (the real side of a neural twin, say).
    ///
    /// [`ModelSpec::actions`]: crate::spec::ModelSpec::actions
    pub fn with_channels(channels: &[ActionChannel]) -> Self {
        Self {
            values: NamedValues::new(channels),
            sampled_at: None,
        }
    }

    /// The model's channels, in order (empty until the model is loaded).
    pub fn channels(&self) -> &[ActionChannel] {
        self.values.channels()
    }

    /// The value of the channel called `name`.
    pub fn get(&self, name: &str) -> Option<f32> {
        self.values.get(name)
    }

    /// Sets the channel called `name` (clamped to its range). Returns false if there is none.
    pub fn set(&mut self, name: &str, value: f32) -> bool {
        self.values.set(name, value)
    }

    /// All values, in channel order.
    pub fn values(&self) -> &[f32] {
        self.values.values()
    }

    /// The values as an [`Action`].
    pub fn to_action(&self) -> Action {
        Action::new(self.values().to_vec())
    }

    /// When the values were last read from the input devices.
    pub fn sampled_at(&self) -> Option<Instant> {
        self.sampled_at
    }

    pub(crate) fn reset_channels(&mut self, channels: &[ActionChannel]) {
        self.values = NamedValues::new(channels);
    }
}

/// Reads the input devices into every view's [`ActionState`].
pub(crate) fn read_input(
    keys: Option<Res<ButtonInput<KeyCode>>>,
    mouse_buttons: Option<Res<ButtonInput<MouseButton>>>,
    mouse_motion: Option<Res<AccumulatedMouseMotion>>,
    gamepads: Query<&Gamepad>,
    mut views: Query<(&ActionBindings, &mut ActionState)>,
) {
    let now = Instant::now();
    let motion = mouse_motion.map_or(Vec2::ZERO, |m| m.delta);
    let source_value = |source: &InputSource| -> f32 {
        let held = |b: bool| if b { 1.0 } else { 0.0 };
        match *source {
            InputSource::Key(k) => held(keys.as_ref().is_some_and(|i| i.pressed(k))),
            InputSource::Mouse(b) => held(mouse_buttons.as_ref().is_some_and(|i| i.pressed(b))),
            InputSource::MouseMotionX => motion.x,
            InputSource::MouseMotionY => motion.y,
            // The stick pushed furthest wins when several gamepads are connected.
            InputSource::GamepadAxis(a) => {
                gamepads
                    .iter()
                    .filter_map(|g| g.get(a))
                    .fold(
                        0.0,
                        |best, v| if v.abs() > f32::abs(best) { v } else { best },
                    )
            }
            InputSource::GamepadButton(b) => held(gamepads.iter().any(|g| g.pressed(b))),
        }
    };
    for (bindings, mut state) in &mut views {
        let state = state.bypass_change_detection();
        state.sampled_at = Some(now);
        let mut sums = vec![0.0f32; state.channels().len()];
        if bindings.enabled {
            for binding in &bindings.bindings {
                if let Some(i) = index_of(state.channels(), &binding.channel) {
                    sums[i] += source_value(&binding.source) * binding.scale;
                }
            }
        }
        // Neutral without input; contributions add up, then are clamped to the range.
        state.values = NamedValues::with_values(state.channels(), &sums);
    }
}
