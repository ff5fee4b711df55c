//! Scripted trajectories that look like a player: walking with momentum, turning, looking around,
//! stopping, strafing, jumping, sprinting, turning back to revisit a place; plus director changes
//! (time, weather, biome, landmarks, storms) at random moments. Used to record datasets.
//!
//! A trajectory reads the session (position, ground ahead) so it steers away from deep water the
//! way a player would. Everything is seeded, so a trajectory is reproducible.

use super::player::MAX_PITCH;
use super::terrain::WATER_LEVEL;
use super::{Biome, ReferenceSession, Weather, action_index as ai, control_index as ci};
use crate::action::{Action, Controls};
use crate::rng::SplitMix64;
use crate::world_model::StepInput;

/// How a trajectory behaves: the explorer's settings (a trajectory is the explorer's model, with
/// the reference world's feedback).
pub use crate::explorer::ExplorerConfig as TrajectoryConfig;
use crate::explorer::{Mode, pick_mode};

/// A player-like action generator.
#[derive(Clone, Debug)]
pub struct Trajectory {
    rng: SplitMix64,
    config: TrajectoryConfig,
    mode: Mode,
    left: u32,
    turn: f32,
    turn_target: f32,
    look: f32,
    look_target: f32,
    walked: u32,
    controls: Controls,
    drift: Option<(f32, u32)>,
}

const FPS: f32 = super::FPS;

impl Trajectory {
    /// A trajectory from a seed. `start` are the controls at the start of the episode; with
    /// `random_start_controls` they are replaced by a random time, weather and biome.
    pub fn new(seed: u64, start: Controls, config: TrajectoryConfig) -> Self {
        let mut rng = SplitMix64::hashed(seed ^ 0x7A3E_C70F);
        let mut controls = start;
        if config.random_start_controls && controls.values.len() >= 5 {
            controls.values[ci::TIME_OF_DAY] = if rng.chance(0.7) {
                rng.range(6.5, 18.5)
            } else {
                rng.range(0.0, 24.0)
            };
            controls.values[ci::WEATHER] = random_weather(&mut rng).control_value();
            controls.values[ci::BIOME] = if rng.chance(0.5) {
                0.0
            } else {
                Biome::ALL[rng.below(5) as usize].control_value()
            };
        }
        Self {
            rng,
            config,
            mode: Mode::Walk { sprint: false },
            // The first call picks a random behaviour.
            left: 0,
            turn: 0.0,
            turn_target: 0.0,
            look: 0.0,
            look_target: 0.0,
            walked: 0,
            controls,
            drift: None,
        }
    }

    /// The controls the episode starts with (pass them in the session's prompt).
    pub fn start_controls(&self) -> &Controls {
        &self.controls
    }

    /// The next step's input, looking at the session as a player looks at the screen.
    pub fn next(&mut self, session: &mut ReferenceSession) -> StepInput {
        let mut a = [0.0f32; 6];
        if self.left == 0 {
            (self.mode, self.left) = pick_mode(&mut self.rng, &mut self.walked, FPS);
        }
        self.left = self.left.saturating_sub(1);
        let pitch = session.player().pitch;
        // Default: drift the view back to level, gently wandering heading.
        self.look_target = (-pitch * 2.5).clamp(-0.6, 0.6);
        if self.rng.chance(0.05) {
            self.turn_target = self.rng.range(-0.25, 0.25);
        }
        match self.mode {
            Mode::Walk { sprint } => {
                a[ai::MOVE_FORWARD] = 1.0;
                a[ai::SPRINT] = sprint as u8 as f32;
                self.walked += 1;
                if self.rng.chance(0.012) {
                    a[ai::JUMP] = 1.0;
                }
            }
            Mode::LookAround => {
                if self.rng.chance(0.04) {
                    self.turn_target = self.rng.range(-0.8, 0.8);
                }
                if self.rng.chance(0.04) {
                    self.look_target = self.rng.range(-0.7, 0.7);
                } else if pitch.abs() > MAX_PITCH * 0.9 {
                    self.look_target = -pitch.signum() * 0.5;
                } else {
                    self.look_target = self.look;
                }
            }
            Mode::Turn { rate } => {
                self.turn_target = rate;
                if self.rng.chance(0.5) {
                    a[ai::MOVE_FORWARD] = 1.0;
                }
            }
            Mode::Strafe { dir, forward } => {
                a[ai::STRAFE] = dir;
                a[ai::MOVE_FORWARD] = forward;
                self.turn_target *= 0.5;
            }
            Mode::Backpedal => {
                a[ai::MOVE_FORWARD] = -1.0;
                self.turn_target = 0.0;
            }
            Mode::TurnBack { turned, walk_back } => {
                if turned < std::f32::consts::PI {
                    self.turn_target = 1.0;
                    let t = turned + self.turn.abs() * super::TURN_RATE / FPS;
                    self.mode = Mode::TurnBack {
                        turned: t,
                        walk_back,
                    };
                    self.left = self.left.max(2);
                } else {
                    self.turn_target = 0.0;
                    a[ai::MOVE_FORWARD] = 1.0;
                    if walk_back == 0 {
                        self.left = 0;
                    } else {
                        self.mode = Mode::TurnBack {
                            turned,
                            walk_back: walk_back - 1,
                        };
                        self.left = self.left.max(2);
                    }
                }
            }
            Mode::Stand => {
                self.turn_target = 0.0;
            }
        }
        // A player avoids deep water: when it lies ahead, turn away and keep turning until clear.
        if a[ai::MOVE_FORWARD] > 0.0 {
            let p = session.player();
            let (x, z, yaw) = (p.x, p.z, p.yaw);
            let ahead = session
                .terrain_mut()
                .height_at(x + yaw.sin() * 8.0, z + yaw.cos() * 8.0);
            if ahead < WATER_LEVEL - 0.8 {
                self.mode = Mode::Turn {
                    rate: if self.rng.chance(0.5) { 1.0 } else { -1.0 },
                };
                self.turn_target = 1.0;
                self.left = (self.rng.range(0.6, 1.4) * FPS) as u32;
                a[ai::MOVE_FORWARD] = 0.0;
            }
        }
        // Mouse-like smooth turning and looking.
        self.turn += (self.turn_target - self.turn) * 0.25;
        self.look += (self.look_target - self.look) * 0.3;
        a[ai::TURN] = self.turn.clamp(-1.0, 1.0);
        a[ai::LOOK] = self.look.clamp(-1.0, 1.0);

        // Triggers last one frame.
        self.controls.values[ci::LANDMARK] = 0.0;
        self.controls.values[ci::STORM] = 0.0;
        self.direct();
        StepInput {
            action: Action::new(a.to_vec()),
            controls: self.controls.clone(),
        }
    }

    fn direct(&mut self) {
        if let Some((rate, frames)) = self.drift {
            let t = &mut self.controls.values[ci::TIME_OF_DAY];
            *t = (*t + rate).rem_euclid(24.0);
            self.drift = if frames > 1 {
                Some((rate, frames - 1))
            } else {
                None
            };
        }
        let p = self.config.director_changes_per_minute / 60.0 / FPS;
        if p <= 0.0 || !self.rng.chance(p) {
            return;
        }
        let c = &mut self.controls.values;
        match self.rng.below(7) {
            0 => c[ci::TIME_OF_DAY] = self.rng.range(0.0, 24.0),
            1 => {
                // Let time run for a while (a sunset, a sunrise).
                let rate =
                    self.rng.range(0.01, 0.04) * if self.rng.chance(0.8) { 1.0 } else { -1.0 };
                self.drift = Some((rate, (self.rng.range(4.0, 15.0) * FPS) as u32));
            }
            2 | 3 => c[ci::WEATHER] = random_weather(&mut self.rng).control_value(),
            4 => {
                c[ci::BIOME] = if self.rng.chance(0.25) {
                    0.0
                } else {
                    Biome::ALL[self.rng.below(5) as usize].control_value()
                }
            }
            5 => c[ci::LANDMARK] = 1.0,
            _ => c[ci::STORM] = 1.0,
        }
    }
}

fn random_weather(rng: &mut SplitMix64) -> Weather {
    let r = rng.next_f32();
    if r < 0.4 {
        Weather::Clear
    } else if r < 0.55 {
        Weather::Overcast
    } else if r < 0.7 {
        Weather::Rain
    } else if r < 0.85 {
        Weather::Snow
    } else {
        Weather::Fog
    }
}
