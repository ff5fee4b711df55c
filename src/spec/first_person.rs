//! The first-person layout the project's own models share: six action channels (walk, strafe,
//! turn, look, jump, sprint) and five director controls (time of day, weather, biome, and the
//! landmark and storm events).
//!
//! The reference world declares it, the default model was trained on it (and assumes it for model
//! folders written before `config.json` stored its own layout), and the plugin's default
//! `ActionBindings` bind its action names. A model with other channels declares its own.

use crate::spec::{ActionChannel, ControlSpec};

/// Names of the action channels, in order.
pub const ACTION_NAMES: [&str; 6] = ["move_forward", "strafe", "turn", "look", "jump", "sprint"];

/// Indices of the action channels in [`Action::values`](crate::action::Action::values).
pub mod action_index {
    /// `move_forward`: axis, -1 (back) to 1 (forward).
    pub const MOVE_FORWARD: usize = 0;
    /// `strafe`: axis, -1 (left) to 1 (right).
    pub const STRAFE: usize = 1;
    /// `turn`: axis rate, positive turns right; 1 is about 90 degrees per second.
    pub const TURN: usize = 2;
    /// `look`: axis rate, positive looks up.
    pub const LOOK: usize = 3;
    /// `jump`: button.
    pub const JUMP: usize = 4;
    /// `sprint`: button.
    pub const SPRINT: usize = 5;
}

/// Names of the director controls, in order.
pub const CONTROL_NAMES: [&str; 5] = ["time_of_day", "weather", "biome", "landmark", "storm"];

/// Indices of the director controls in [`Controls::values`](crate::action::Controls::values).
pub mod control_index {
    /// `time_of_day`: hours, cyclic 0 to 24.
    pub const TIME_OF_DAY: usize = 0;
    /// `weather`: index into [`WEATHER_OPTIONS`](super::WEATHER_OPTIONS).
    pub const WEATHER: usize = 1;
    /// `biome`: index into [`BIOME_OPTIONS`](super::BIOME_OPTIONS).
    pub const BIOME: usize = 2;
    /// `landmark`: trigger, a landmark appears ahead.
    pub const LANDMARK: usize = 3;
    /// `storm`: trigger, a storm starts with a lightning flash.
    pub const STORM: usize = 4;
}

/// Options of the `weather` control, in index order.
pub const WEATHER_OPTIONS: [&str; 5] = ["clear", "overcast", "rain", "snow", "fog"];
/// Options of the `biome` control, in index order (`any` lets the climate decide).
pub const BIOME_OPTIONS: [&str; 6] = ["any", "grassland", "forest", "desert", "snow", "shore"];

/// The action channels, in order.
pub fn action_channels() -> Vec<ActionChannel> {
    vec![
        ActionChannel::axis(ACTION_NAMES[0], -1.0, 1.0),
        ActionChannel::axis(ACTION_NAMES[1], -1.0, 1.0),
        ActionChannel::axis(ACTION_NAMES[2], -1.0, 1.0),
        ActionChannel::axis(ACTION_NAMES[3], -1.0, 1.0),
        ActionChannel::button(ACTION_NAMES[4]),
        ActionChannel::button(ACTION_NAMES[5]),
    ]
}

/// The director controls, in order.
pub fn control_specs() -> Vec<ControlSpec> {
    vec![
        ControlSpec::cyclic(CONTROL_NAMES[0], 0.0, 24.0, 12.0),
        ControlSpec::choice(CONTROL_NAMES[1], &WEATHER_OPTIONS, 0),
        ControlSpec::choice(CONTROL_NAMES[2], &BIOME_OPTIONS, 0),
        ControlSpec::trigger(CONTROL_NAMES[3]),
        ControlSpec::trigger(CONTROL_NAMES[4]),
    ]
}
