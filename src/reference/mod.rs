//! The reference world: a procedural first-person landscape drawn by a CPU software renderer,
//! with director controls and synthesised sound.
//!
//! It is not a neural network. It is the *teacher* whose frames and sound the default model is
//! trained to imitate, the ground truth for evaluation, and a [`WorldModel`](crate::world_model::WorldModel)
//! the plugin can play ([`ReferenceWorld`]).
//!
//! - `noise`: deterministic hashing, gradient noise and fractal sums.
//! - `terrain`: biomes, heights, surface colours and objects, generated in cached chunks.
//! - `player`: first-person walking, jumping, swimming and collisions.
//! - `sky`: time of day, sun, moon, stars, clouds and the lighting they give.
//! - `weather`: weather, storms, lightning and snow cover, changing smoothly.
//! - `sprites`: the pictures of trees, rocks and landmarks.
//! - `render`: the column ray caster ("voxel space") with depth-tested sprites and fog.
//! - `sound`: wind, rain, footsteps, water, birds, insects and thunder.
//! - [`trajectory`]: scripted player-like action sequences for datasets.
//! - [`world`]: the [`WorldModel`](crate::world_model::WorldModel) implementation.
//!
//! Those are internal; the public part is [`ReferenceWorld`], [`start_frames`], the spec and its
//! options ([`Weather`], [`Biome`]), [`trajectory`] (player-like scripts) and [`sheet`].
//!
//! Everything is deterministic: the same seed, actions and controls give bit-identical frames and
//! sound, and a saved session continues bit-identically after a restore.

pub(crate) mod noise;
pub(crate) mod player;
pub(crate) mod render;
pub mod sheet;
pub(crate) mod sky;
pub(crate) mod sound;
pub(crate) mod sprites;
pub(crate) mod terrain;
pub mod trajectory;
pub(crate) mod weather;
pub mod world;

pub use player::{Camera, SWIM_DEPTH};
pub use sound::Stems;
pub use world::{ReferenceSession, ReferenceWorld, start_frames};

pub use crate::spec::first_person::{
    ACTION_NAMES, BIOME_OPTIONS, CONTROL_NAMES, WEATHER_OPTIONS, action_channels, action_index,
    control_index, control_specs,
};
use crate::spec::{AudioFormat, ModelSpec};

/// Name recorded in [`ModelSpec::name`] and in saved sessions.
pub const MODEL_NAME: &str = "nacre-reference";
/// Version of the world's rules and state layout; saved sessions from another version are refused.
pub const MODEL_VERSION: &str = "1";
/// Frames per second; one step advances the world by `1 / FPS` seconds.
pub const FPS: f32 = 20.0;
/// Seconds per step.
pub const DT: f32 = 1.0 / FPS;
/// Audio sample rate (mono).
pub const SAMPLE_RATE: u32 = 16_000;
/// Audio samples generated with each frame (`SAMPLE_RATE / FPS`).
pub const SAMPLES_PER_FRAME: usize = 800;

/// Turn rate at full `turn` input, radians per second (90 degrees per second).
pub const TURN_RATE: f32 = std::f32::consts::FRAC_PI_2;
/// Pitch rate at full `look` input, radians per second (60 degrees per second).
pub const LOOK_RATE: f32 = std::f32::consts::FRAC_PI_3;

/// The audio format: mono, 16 kHz, 800 samples per frame.
pub fn audio_format() -> AudioFormat {
    AudioFormat {
        sample_rate: SAMPLE_RATE,
        channels: 1,
        samples_per_frame: SAMPLES_PER_FRAME as u32,
    }
}

/// The reference world's spec at a resolution. The one place that defines its channels,
/// controls, frame rate and audio format.
pub fn reference_spec(width: u32, height: u32) -> ModelSpec {
    ModelSpec {
        name: MODEL_NAME.into(),
        version: MODEL_VERSION.into(),
        width,
        height,
        fps: FPS,
        actions: action_channels(),
        controls: control_specs(),
        audio: audio_format(),
        context_frames: 1,
    }
}

/// The five weathers of the `weather` control.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Weather {
    /// Blue sky with a few clouds.
    Clear,
    /// Grey, fully clouded sky, flat light.
    Overcast,
    /// Overcast with rain.
    Rain,
    /// Overcast with falling snow that slowly whitens the ground.
    Snow,
    /// Thick fog.
    Fog,
}

impl Weather {
    /// All weathers in control-index order.
    pub const ALL: [Weather; 5] = [
        Weather::Clear,
        Weather::Overcast,
        Weather::Rain,
        Weather::Snow,
        Weather::Fog,
    ];

    /// The weather for a control value (rounded and clamped).
    pub fn from_control(value: f32) -> Weather {
        let i = if value.is_finite() {
            value.round().clamp(0.0, 4.0) as usize
        } else {
            0
        };
        Weather::ALL[i]
    }

    /// The control value of this weather.
    pub fn control_value(self) -> f32 {
        self as usize as f32
    }

    /// The option name (`clear`, `overcast`, ...).
    pub fn name(self) -> &'static str {
        WEATHER_OPTIONS[self as usize]
    }
}

/// The five biomes of the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Biome {
    /// Rolling green meadows with flowers, bushes and a few trees.
    Grassland,
    /// Dense trees on hills.
    Forest,
    /// Sand dunes, cacti and rocks.
    Desert,
    /// Snowy mountains with snow-laden firs.
    Snow,
    /// Low land at sea level: beaches, water and palms.
    Shore,
}

impl Biome {
    /// All biomes, in the order of the `biome` control's options after `any`.
    pub const ALL: [Biome; 5] = [
        Biome::Grassland,
        Biome::Forest,
        Biome::Desert,
        Biome::Snow,
        Biome::Shore,
    ];

    /// The biome preference for a `biome` control value: `None` for `any`.
    pub fn preference_from_control(value: f32) -> Option<Biome> {
        let i = if value.is_finite() {
            value.round().clamp(0.0, 5.0) as usize
        } else {
            0
        };
        if i == 0 {
            None
        } else {
            Some(Biome::ALL[i - 1])
        }
    }

    /// The `biome` control value that prefers this biome.
    pub fn control_value(self) -> f32 {
        (self as usize + 1) as f32
    }

    /// The option name (`grassland`, `forest`, ...).
    pub fn name(self) -> &'static str {
        BIOME_OPTIONS[self as usize + 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_matches_the_shared_conventions() {
        let spec = reference_spec(64, 48);
        assert_eq!(spec.actions.len(), 6);
        assert_eq!(spec.action_index("turn"), Some(action_index::TURN));
        assert_eq!(spec.control_index("storm"), Some(control_index::STORM));
        assert_eq!(
            spec.audio.samples_per_frame as f32,
            SAMPLE_RATE as f32 / FPS
        );
        let weather = &spec.controls[control_index::WEATHER];
        assert_eq!(weather.option_index("fog"), Some(Weather::Fog as usize));
        let biome = &spec.controls[control_index::BIOME];
        assert_eq!(
            biome.option_index("shore"),
            Some(Biome::Shore.control_value() as usize)
        );
        assert_eq!(Biome::preference_from_control(0.0), None);
        assert_eq!(Biome::preference_from_control(3.0), Some(Biome::Desert));
        assert_eq!(Weather::from_control(2.2), Weather::Rain);
    }
}
