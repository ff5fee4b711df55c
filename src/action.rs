//! Per-step inputs to a world model: the player's action and the director's controls.

use serde::{Deserialize, Serialize};

/// The player's input for one step: one value per action channel, in the order of
/// [`ModelSpec::actions`](crate::spec::ModelSpec::actions).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Channel values (axes in their range, buttons 0/1, discrete choices as an index).
    pub values: Vec<f32>,
}

impl Action {
    /// An action from raw values.
    pub fn new(values: Vec<f32>) -> Self {
        Self { values }
    }
}

/// The director's controls: one value per control, in the order of
/// [`ModelSpec::controls`](crate::spec::ModelSpec::controls). They persist from step to step,
/// except triggers, which the worker clears after the step that saw them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Controls {
    /// Control values (continuous in range, choices as an index, triggers 0/1).
    pub values: Vec<f32>,
}

impl Controls {
    /// Controls from raw values.
    pub fn new(values: Vec<f32>) -> Self {
        Self { values }
    }
}
