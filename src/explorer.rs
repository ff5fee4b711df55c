//! An explorer: a seeded bot that plays any first-person game in the mix of behaviour a world
//! model learns from (walking, turning, looking around, strafing, backing up, standing, turning
//! back the way it came), and changes the game's declared director controls at random moments,
//! so that capture can run unattended. It reads nothing from the game: it drives the
//! [first-person](crate::spec::first_person) action channels the spec has (by name; others stay
//! neutral) and every control the spec declares, whatever they are called. The reference world's
//! trajectory generator is the model for it; a game with its own idea of play replaces it with
//! its own bot.

use crate::action::{Action, Controls};
use crate::rng::SplitMix64;
use crate::spec::{ControlKind, ModelSpec};
use crate::world_model::StepInput;

/// How an explorer (or the reference world's [trajectory](crate::reference::trajectory)) behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct ExplorerConfig {
    /// Average director changes per minute (0: the controls keep their start values).
    pub director_changes_per_minute: f32,
    /// Whether the controls start at random values (or at the spec's defaults).
    pub random_start_controls: bool,
    /// Share of the explorer's turns made as with keys: at full rate from the first step to the
    /// last, as a player holding an arrow key turns (the others ease in and out like a mouse).
    /// A model only answers inputs like those it was trained on, and games bind keys to full
    /// rate. The reference world's trajectory has its own turn-back mode for that and ignores
    /// this.
    pub key_turns: f32,
}

impl Default for ExplorerConfig {
    fn default() -> Self {
        Self {
            director_changes_per_minute: 4.0,
            random_start_controls: true,
            key_turns: 0.5,
        }
    }
}

/// What a player-like bot is doing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Mode {
    Walk {
        sprint: bool,
    },
    LookAround,
    Turn {
        rate: f32,
    },
    Strafe {
        dir: f32,
        forward: f32,
    },
    Backpedal,
    /// Turn by half a circle (`turned` radians so far), then walk back as long as the last walk
    /// took.
    TurnBack {
        turned: f32,
        walk_back: u32,
    },
    Stand,
}

/// Picks the next behaviour and for how many steps (at `fps`) it lasts; `walked` counts the
/// steps of the walk going on (a turn back walks that far back) and restarts with any other
/// behaviour. The reference world's trajectory draws from `rng` exactly as this does, so its
/// datasets do not change with the explorer.
pub(crate) fn pick_mode(rng: &mut SplitMix64, walked: &mut u32, fps: f32) -> (Mode, u32) {
    let r = rng.next_f32();
    let sign = |rng: &mut SplitMix64| if rng.chance(0.5) { 1.0 } else { -1.0 };
    let (mode, secs) = if r < 0.42 {
        let sprint = rng.chance(0.2);
        (Mode::Walk { sprint }, rng.range(2.0, 8.0))
    } else if r < 0.54 {
        (Mode::LookAround, rng.range(1.5, 4.0))
    } else if r < 0.68 {
        let rate = rng.range(0.5, 1.0) * sign(rng);
        (Mode::Turn { rate }, rng.range(0.4, 1.8))
    } else if r < 0.77 {
        let dir = sign(rng);
        let forward = if rng.chance(0.5) { 1.0 } else { 0.0 };
        (Mode::Strafe { dir, forward }, rng.range(0.8, 2.0))
    } else if r < 0.82 {
        (Mode::Backpedal, rng.range(0.5, 1.5))
    } else if r < 0.9 && *walked > 40 {
        let walk_back = (*walked).min(200);
        (
            Mode::TurnBack {
                turned: 0.0,
                walk_back,
            },
            30.0,
        )
    } else {
        (Mode::Stand, rng.range(0.5, 2.5))
    };
    if !matches!(mode, Mode::Walk { .. }) {
        *walked = 0;
    }
    (mode, (secs * fps) as u32)
}

/// Indices of the first-person channels the spec has.
#[derive(Clone, Copy, Debug)]
struct Channels {
    forward: Option<usize>,
    strafe: Option<usize>,
    turn: Option<usize>,
    look: Option<usize>,
    jump: Option<usize>,
    sprint: Option<usize>,
}

/// A player-like action generator for any spec; see the [module](self) documentation.
#[derive(Clone, Debug)]
pub struct Explorer {
    spec: ModelSpec,
    channels: Channels,
    config: ExplorerConfig,
    rng: SplitMix64,
    mode: Mode,
    left: u32,
    walked: u32,
    turn: f32,
    turn_target: f32,
    /// Whether the turn going on is made as with keys (see [`ExplorerConfig::key_turns`]).
    key_turn: bool,
    look: f32,
    look_target: f32,
    controls: Controls,
}

impl Explorer {
    /// An explorer for a game described by `spec`, from `seed`.
    pub fn new(spec: &ModelSpec, seed: u64, config: ExplorerConfig) -> Self {
        let find = |name| spec.action_index(name);
        let channels = Channels {
            forward: find("move_forward"),
            strafe: find("strafe"),
            turn: find("turn"),
            look: find("look"),
            jump: find("jump"),
            sprint: find("sprint"),
        };
        let mut rng = SplitMix64::hashed(seed ^ 0xE8_9107_3E5A);
        let mut controls = spec.default_controls();
        if config.random_start_controls {
            for i in 0..controls.values.len() {
                if !matches!(spec.controls[i].kind, ControlKind::Trigger) {
                    controls.values[i] = random_value(&spec.controls[i].kind, &mut rng);
                }
            }
        }
        Self {
            spec: spec.clone(),
            channels,
            config,
            rng,
            mode: Mode::Stand,
            left: 0,
            walked: 0,
            turn: 0.0,
            turn_target: 0.0,
            key_turn: false,
            look: 0.0,
            look_target: 0.0,
            controls,
        }
    }

    /// The controls the episode starts with (start the game's session with them).
    pub fn start_controls(&self) -> &Controls {
        &self.controls
    }

    fn fps(&self) -> f32 {
        self.spec.fps.max(1.0)
    }

    /// The next step's input.
    pub fn next_input(&mut self) -> StepInput {
        let fps = self.fps();
        if self.left == 0 {
            (self.mode, self.left) = pick_mode(&mut self.rng, &mut self.walked, fps);
            self.left = self.left.max(1);
            self.key_turn =
                matches!(self.mode, Mode::Turn { .. }) && self.rng.chance(self.config.key_turns);
        }
        self.left -= 1;
        let (mut forward, mut strafe, mut jump, mut sprint) = (0.0, 0.0, false, false);
        // Default: the view drifts back to level, the heading wanders a little.
        self.look_target = 0.0;
        if self.rng.chance(0.05) {
            self.turn_target = self.rng.range(-0.25, 0.25);
        }
        match &mut self.mode {
            Mode::Walk { sprint: s } => {
                forward = 1.0;
                sprint = *s;
                jump = self.rng.chance(0.012);
                self.walked += 1;
            }
            Mode::LookAround => {
                if self.rng.chance(0.04) {
                    self.turn_target = self.rng.range(-0.8, 0.8);
                }
                // Looks up or down for a moment, then back: the view stays near level.
                let phase = self.left as f32 / fps;
                self.look_target = 0.5 * (phase * 2.1).sin();
            }
            Mode::Turn { rate } => {
                self.turn_target = if self.key_turn { rate.signum() } else { *rate };
                if self.rng.chance(0.5) {
                    forward = 1.0;
                }
            }
            Mode::Strafe { dir, forward: f } => {
                strafe = *dir;
                forward = *f;
                self.turn_target *= 0.5;
            }
            Mode::Backpedal => {
                forward = -1.0;
                self.turn_target = 0.0;
            }
            Mode::TurnBack { turned, walk_back } => {
                // The first-person layout's turn rate 1 is about 90° a second.
                // It lasts until it is done, however long its 30 s allowance says.
                if *turned < std::f32::consts::PI {
                    self.turn_target = 1.0;
                    *turned += self.turn.abs() * std::f32::consts::FRAC_PI_2 / fps;
                    self.left = self.left.max(1);
                } else if *walk_back > 0 {
                    self.turn_target = 0.0;
                    forward = 1.0;
                    *walk_back -= 1;
                    self.left = self.left.max(1);
                } else {
                    self.left = 0;
                }
            }
            Mode::Stand => self.turn_target = 0.0,
        }
        // Mouse-like smooth turning and looking; a key turn is at its rate at once.
        if self.key_turn && matches!(self.mode, Mode::Turn { .. }) {
            self.turn = self.turn_target;
        } else {
            self.turn += (self.turn_target - self.turn) * 0.25;
        }
        self.look += (self.look_target - self.look) * 0.3;
        let mut action = self.spec.neutral_action();
        let mut set = |channel: Option<usize>, value: f32| {
            if let Some(i) = channel {
                action.values[i] = self.spec.actions[i].clamp(value);
            }
        };
        set(self.channels.forward, forward);
        set(self.channels.strafe, strafe);
        set(self.channels.turn, self.turn);
        set(self.channels.look, self.look);
        set(self.channels.jump, jump as u8 as f32);
        set(self.channels.sprint, sprint as u8 as f32);
        self.direct();
        StepInput {
            action: Action::new(action.values),
            controls: self.controls.clone(),
        }
    }

    /// Triggers fire for one step; now and then one control takes a new random value.
    fn direct(&mut self) {
        for (value, control) in self.controls.values.iter_mut().zip(&self.spec.controls) {
            if matches!(control.kind, ControlKind::Trigger) {
                *value = 0.0;
            }
        }
        let p = self.config.director_changes_per_minute / 60.0 / self.fps();
        if self.controls.values.is_empty() || p <= 0.0 || !self.rng.chance(p) {
            return;
        }
        let i = self.rng.below(self.controls.values.len() as u32) as usize;
        self.controls.values[i] = random_value(&self.spec.controls[i].kind, &mut self.rng);
    }
}

/// A random value of a control: anywhere in a continuous range, any choice, a trigger fired.
fn random_value(kind: &ControlKind, rng: &mut SplitMix64) -> f32 {
    match kind {
        ControlKind::Continuous { min, max, .. } => rng.range(*min, *max),
        ControlKind::Choice { options, .. } => rng.below(options.len().max(1) as u32) as f32,
        ControlKind::Trigger => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::first_person::action_index as ai;
    use crate::world_model::WorldModel;

    fn spec() -> ModelSpec {
        crate::reference::ReferenceWorld::new(16, 16).spec().clone()
    }

    fn run(seed: u64, steps: usize) -> Vec<StepInput> {
        let mut explorer = Explorer::new(&spec(), seed, ExplorerConfig::default());
        (0..steps).map(|_| explorer.next_input()).collect()
    }

    /// Half the turns are made as with keys, at full rate from their first step (a model
    /// trained on mouse-like turns alone does not know what a held arrow key does); with
    /// `key_turns` 0 every turn eases in.
    #[test]
    fn some_turns_are_at_full_rate_from_the_first_step() {
        let steps = 20 * 60 * 10;
        let full = |config: ExplorerConfig| {
            let mut explorer = Explorer::new(&spec(), 7, config);
            let inputs: Vec<StepInput> = (0..steps).map(|_| explorer.next_input()).collect();
            let at_full_rate = |s: &StepInput| s.action.values[ai::TURN].abs() > 0.99;
            let full = inputs.iter().filter(|s| at_full_rate(s)).count() as f32 / steps as f32;
            // A key turn starts at full rate: the step before it does not turn hard.
            let sudden = inputs
                .windows(2)
                .filter(|w| at_full_rate(&w[1]) && w[0].action.values[ai::TURN].abs() < 0.5)
                .count();
            (full, sudden)
        };
        let (share, sudden) = full(ExplorerConfig::default());
        assert!(
            share > 0.02 && sudden > 10,
            "{:.1} % of steps at full rate, {sudden} sudden starts",
            share * 100.0
        );
        let (eased, sudden) = full(ExplorerConfig {
            key_turns: 0.0,
            ..ExplorerConfig::default()
        });
        assert_eq!(sudden, 0, "no sudden turns without key turns");
        assert!(eased < share, "{eased} against {share}");
    }

    #[test]
    fn an_explorer_is_repeatable_and_plays_the_whole_mix() {
        let steps = 20 * 60 * 10; // ten minutes at 20 frames/s
        let a = run(7, steps);
        assert_eq!(a, run(7, steps), "same seed, same inputs");
        assert_ne!(a, run(8, steps), "another seed, other inputs");
        let share = |f: &dyn Fn(&StepInput) -> bool| {
            a.iter().filter(|s| f(s)).count() as f32 / a.len() as f32
        };
        let walking = share(&|s| s.action.values[ai::MOVE_FORWARD] > 0.5);
        let backing = share(&|s| s.action.values[ai::MOVE_FORWARD] < -0.5);
        let turning = share(&|s| s.action.values[ai::TURN].abs() > 0.4);
        let strafing = share(&|s| s.action.values[ai::STRAFE].abs() > 0.5);
        let standing = share(&|s| s.action.values.iter().all(|v| v.abs() < 0.1));
        eprintln!(
            "walking {walking:.3}, backing {backing:.3}, turning {turning:.3}, strafing \
             {strafing:.3}, standing {standing:.3}"
        );
        // Expected shares from the mode mix: backing up is the rarest, about 1.6 % of the time
        // (5 % of the picks, a second each), so it is only required to happen.
        for (what, v, least) in [
            ("walking", walking, 0.3),
            ("backing up", backing, 0.002),
            ("turning", turning, 0.02),
            ("strafing", strafing, 0.02),
            ("standing", standing, 0.02),
        ] {
            assert!(v > least, "{what}: {:.1} % of steps", v * 100.0);
        }
        // Every action value is inside its channel's range.
        let spec = spec();
        for s in &a {
            for (v, c) in s.action.values.iter().zip(&spec.actions) {
                assert_eq!(*v, c.clamp(*v));
            }
        }
        // The view stays near level: looking up and down balance out.
        let pitch: f32 = a.iter().map(|s| s.action.values[ai::LOOK]).sum::<f32>() / 20.0;
        assert!(pitch.abs() < 20.0, "summed look {pitch} s");
    }

    #[test]
    fn every_declared_control_changes_about_as_often_as_asked() {
        let spec = spec();
        let steps = 20 * 60 * 30; // half an hour
        let a = run(3, steps);
        let changes = a
            .windows(2)
            .filter(|w| w[0].controls != w[1].controls)
            .count();
        // About 4 a minute (two changes for a trigger: on, then off).
        let per_minute = changes as f32 / 30.0;
        assert!((2.5..9.0).contains(&per_minute), "{per_minute} a minute");
        for (i, control) in spec.controls.iter().enumerate() {
            let values: std::collections::HashSet<u32> =
                a.iter().map(|s| s.controls.values[i].to_bits()).collect();
            assert!(values.len() > 1, "{} never changed", control.name);
            for s in &a {
                let v = s.controls.values[i];
                assert_eq!(v, control.clamp(v), "{} out of range", control.name);
            }
        }
    }

    #[test]
    fn channels_a_spec_lacks_are_left_out() {
        let mut spec = spec();
        spec.actions.truncate(3); // walk, strafe, turn
        spec.controls.clear();
        let mut explorer = Explorer::new(&spec, 1, ExplorerConfig::default());
        for _ in 0..2000 {
            let s = explorer.next_input();
            assert_eq!(s.action.values.len(), 3);
            assert!(s.controls.values.is_empty());
        }
    }
}
