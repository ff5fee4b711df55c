//! Driving an example without a person, for end-to-end tests and measurements. Everything is
//! off unless its environment variable is set:
//!
//! | variable | effect |
//! | --- | --- |
//! | `NACRE_EXIT_AFTER_FRAMES=N` | quit N frames after the first generated frame was shown |
//! | `NACRE_SCREENSHOT=PATH` | save a screenshot of the window (PNG) just before quitting |
//! | `NACRE_SCRIPT="30 press ArrowRight; 60 release ArrowRight; 61 screenshot a.png"` | synthetic input and screenshots at given frames (same clock) |
//! | `NACRE_PROFILE=1` | print the median game frame time when quitting |
//! | `NACRE_NO_VSYNC=1` | do not wait for the display (for measuring the game's own rate) |
//! | `NACRE_LOCKSTEP=1` | one model step per script frame: every view is paced by hand, and the clock waits for all of them |
//!
//! Without `NACRE_LOCKSTEP` the script's frames are game frames, and how many model steps fall
//! between two of them depends on the machine (generation is paced by the wall clock). With it,
//! every `WorldView` gets [`Pacing::Manual`]: each script frame asks each view for exactly one
//! step, with the input of that frame, and the clock moves on only when every view has shown
//! it. A scripted run then sees the same frames on any machine.
//!
//! The clock starts when the first `WorldView` shows its first frame (at once in an example
//! without views), so scripts do not depend on how long the model took to load. If nothing has
//! been shown after `NACRE_START_TIMEOUT_FRAMES` frames (default 3000) the example quits with
//! exit code 3; a screenshot that could not be saved makes it quit with code 4.
//!
//! Script commands: `press KEY`, `release KEY`, `tap KEY` (press for one frame), `mouse DX DY`
//! (mouse motion for one frame), `click X Y` (move the cursor to window pixel X, Y and click the
//! left button there, released a frame later: what egui panels see), `screenshot PATH`, `exit`.
//! Keys are `KeyCode` names (`KeyW`, `ArrowLeft`, `Space`, `F5`, ...).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bevy::input::ButtonState;
use bevy::input::InputSystems;
use bevy::input::mouse::{AccumulatedMouseMotion, MouseButtonInput};
use bevy::prelude::*;
use bevy::render::view::window::screenshot::{Screenshot, ScreenshotCaptured, save_to_disk};
use bevy::window::{CursorMoved, PrimaryWindow, WindowEvent};
use bevy_nacre::prelude::*;

/// One scripted action.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Hold a key down.
    Press(KeyCode),
    /// Let a key go.
    Release(KeyCode),
    /// Press a key for one frame.
    Tap(KeyCode),
    /// Mouse motion for one frame, in pixels.
    Mouse(f32, f32),
    /// Cursor to a window position (logical pixels from the top left) and a left click there.
    Click(f32, f32),
    /// Save a screenshot of the window.
    Screenshot(PathBuf),
    /// Quit.
    Exit,
}

/// Says that the example spawns its `WorldView` later than its first frames (the twin example
/// waits for a snapshot of its scene): the clock then waits for that view's first frame rather
/// than starting at once when no view is there.
#[derive(Resource, Clone, Copy, Debug, Default)]
pub struct ViewStartsLater;

/// What the environment asked for.
#[derive(Resource, Clone, Debug, Default)]
pub struct Automation {
    /// Quit this many frames after the clock started.
    pub exit_after: Option<u64>,
    /// Screenshot taken before quitting.
    pub screenshot: Option<PathBuf>,
    /// Scripted actions by frame.
    pub script: Vec<(u64, Command)>,
    /// Print frame-time statistics when quitting.
    pub profile: bool,
    /// Do not wait for vertical sync.
    pub no_vsync: bool,
    /// Frames to wait for the first generated frame.
    pub start_timeout: u64,
    /// One model step per script frame (see the module docs).
    pub lockstep: bool,
}

/// Names of the keys scripts may use.
pub fn key_code(name: &str) -> Option<KeyCode> {
    use KeyCode::*;
    let name = name.strip_prefix("Key").unwrap_or(name);
    Some(match name {
        "W" => KeyW,
        "A" => KeyA,
        "S" => KeyS,
        "D" => KeyD,
        "R" => KeyR,
        "M" => KeyM,
        "G" => KeyG,
        "T" => KeyT,
        "ArrowLeft" => ArrowLeft,
        "ArrowRight" => ArrowRight,
        "ArrowUp" => ArrowUp,
        "ArrowDown" => ArrowDown,
        "PageUp" => PageUp,
        "PageDown" => PageDown,
        "Space" => Space,
        "ShiftLeft" => ShiftLeft,
        "Escape" => Escape,
        "Enter" => Enter,
        "Tab" => Tab,
        "F1" => F1,
        "F5" => F5,
        "F9" => F9,
        "F12" => F12,
        _ => return None,
    })
}

/// Exactly two numbers, as `mouse` and `click` take.
fn two_numbers(words: &[&str]) -> Option<(f32, f32)> {
    match words {
        [a, b] => Some((a.parse().ok()?, b.parse().ok()?)),
        _ => None,
    }
}

/// Parses a script (`FRAME COMMAND [ARGS]`, separated by `;`).
pub fn parse_script(text: &str) -> Result<Vec<(u64, Command)>, String> {
    let mut out = Vec::new();
    for item in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let mut words = item.split_whitespace();
        let frame: u64 = words
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("script item '{item}' does not start with a frame number"))?;
        let verb = words
            .next()
            .ok_or_else(|| format!("script item '{item}' has no command"))?;
        let rest: Vec<&str> = words.collect();
        let key = |rest: &[&str]| {
            rest.first()
                .and_then(|k| key_code(k))
                .ok_or_else(|| format!("script item '{item}': unknown key"))
        };
        let command = match verb {
            "press" => Command::Press(key(&rest)?),
            "release" => Command::Release(key(&rest)?),
            "tap" => Command::Tap(key(&rest)?),
            "mouse" => {
                let (dx, dy) = two_numbers(&rest)
                    .ok_or_else(|| format!("script item '{item}': mouse needs DX DY"))?;
                Command::Mouse(dx, dy)
            }
            "click" => {
                let (x, y) = two_numbers(&rest)
                    .ok_or_else(|| format!("script item '{item}': click needs X Y"))?;
                Command::Click(x, y)
            }
            "screenshot" => Command::Screenshot(PathBuf::from(
                rest.first()
                    .ok_or_else(|| format!("script item '{item}': screenshot needs a path"))?,
            )),
            "exit" => Command::Exit,
            other => return Err(format!("script item '{item}': unknown command '{other}'")),
        };
        out.push((frame, command));
    }
    out.sort_by_key(|(f, _)| *f);
    Ok(out)
}

impl Automation {
    /// Reads the environment; exits with a message on a malformed variable.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &str| {
            var(name).map(|v| {
                v.parse::<u64>().unwrap_or_else(|_| {
                    eprintln!("{name}={v} is not a number");
                    std::process::exit(2)
                })
            })
        };
        let script = var("NACRE_SCRIPT").map_or_else(Vec::new, |s| {
            parse_script(&s).unwrap_or_else(|e| {
                eprintln!("NACRE_SCRIPT: {e}");
                std::process::exit(2)
            })
        });
        Self {
            exit_after: number("NACRE_EXIT_AFTER_FRAMES"),
            screenshot: var("NACRE_SCREENSHOT").map(PathBuf::from),
            script,
            profile: var("NACRE_PROFILE").is_some(),
            no_vsync: var("NACRE_NO_VSYNC").is_some(),
            start_timeout: number("NACRE_START_TIMEOUT_FRAMES").unwrap_or(3000),
            lockstep: var("NACRE_LOCKSTEP").is_some(),
        }
    }

    fn is_active(&self) -> bool {
        self.exit_after.is_some() || !self.script.is_empty() || self.profile
    }
}

/// Runs what [`Automation`] asks for.
pub struct AutomationPlugin;

impl Plugin for AutomationPlugin {
    fn build(&self, app: &mut App) {
        let automation = Automation::from_env();
        if !automation.is_active() {
            return;
        }
        let lockstep = automation.lockstep;
        app.insert_resource(automation)
            .init_resource::<AutomationState>()
            .add_systems(
                PreUpdate,
                drive.after(InputSystems).before(NacreSystems::Input),
            )
            .add_systems(Last, finish);
        if lockstep {
            app.add_systems(
                PreUpdate,
                pace_by_hand
                    .after(InputSystems)
                    .before(drive)
                    .before(NacreSystems::Input),
            )
            .add_systems(Update, request_steps.after(NacreSystems::Submit));
        }
    }
}

#[derive(Resource, Default)]
struct AutomationState {
    last_frame: Option<Instant>,
    app_frames: u64,
    /// With lockstep: frames each view had shown when the last step was asked for, and
    /// whether the clock may move this frame.
    asked: Vec<(Entity, u64)>,
    ready: bool,
    /// Frames since the clock started.
    frame: Option<u64>,
    next_item: usize,
    taps: Vec<KeyCode>,
    /// A click to release next frame.
    pressed_mouse: bool,
    shots: Vec<(PathBuf, Arc<AtomicBool>)>,
    exit_at: Option<u64>,
    frame_times: Vec<f32>,
}

fn take_screenshot(commands: &mut Commands, state: &mut AutomationState, path: PathBuf) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    commands
        .spawn(Screenshot::primary_window())
        .observe(save_to_disk(path.clone()))
        .observe(move |_: On<ScreenshotCaptured>| flag.store(true, Ordering::Release));
    state.shots.push((path, done));
}

#[allow(clippy::too_many_arguments)]
fn drive(
    mut commands: Commands,
    automation: Res<Automation>,
    mut state: ResMut<AutomationState>,
    mut keys: ResMut<ButtonInput<KeyCode>>,
    mut mouse: ResMut<AccumulatedMouseMotion>,
    mut window_events: MessageWriter<WindowEvent>,
    window: Query<Entity, With<PrimaryWindow>>,
    views: Query<&WorldViewStats>,
    view_starts_later: Option<Res<ViewStartsLater>>,
    mut exit: MessageWriter<AppExit>,
) {
    state.app_frames += 1;
    for key in std::mem::take(&mut state.taps) {
        keys.release(key);
    }
    let window = window.single().ok();
    if std::mem::take(&mut state.pressed_mouse)
        && let Some(window) = window
    {
        window_events.write(left_button(window, ButtonState::Released));
    }
    if automation.lockstep && state.frame.is_some() && !state.ready {
        // Keys stay as they are until every view has shown the step asked for.
        return;
    }
    let frame = match state.frame {
        Some(f) => f + 1,
        None => {
            let shown = views.iter().any(|s| s.frames_presented > 0);
            // An example without views starts at once (after a few frames for the window).
            let no_views = views.is_empty() && state.app_frames > 10 && view_starts_later.is_none();
            if !(shown || no_views) {
                if state.app_frames > automation.start_timeout {
                    let why = views
                        .iter()
                        .find_map(|s| s.last_error.clone())
                        .unwrap_or_else(|| "no generated frame was shown".into());
                    eprintln!(
                        "automation: gave up after {} frames: {why}",
                        state.app_frames
                    );
                    exit.write(AppExit::from_code(3));
                }
                return;
            }
            info!(
                "automation: first generated frame after {} frames",
                state.app_frames
            );
            0
        }
    };
    state.frame = Some(frame);
    // Frame times on the wall clock (a game may hold Bevy's clocks, real time included).
    let now = Instant::now();
    let frame_time = state.last_frame.map_or(0.0, |t| (now - t).as_secs_f32());
    state.last_frame = Some(now);
    if automation.profile && frame > 30 {
        state.frame_times.push(frame_time);
    }
    while let Some((at, command)) = automation.script.get(state.next_item) {
        if *at > frame {
            break;
        }
        state.next_item += 1;
        match command {
            Command::Press(k) => keys.press(*k),
            Command::Release(k) => keys.release(*k),
            Command::Tap(k) => {
                keys.press(*k);
                state.taps.push(*k);
            }
            Command::Mouse(dx, dy) => mouse.delta += Vec2::new(*dx, *dy),
            Command::Click(x, y) => {
                if let Some(window) = window {
                    // The order a windowing system delivers them in: the cursor moves, then the
                    // button goes down.
                    window_events.write(WindowEvent::CursorMoved(CursorMoved {
                        window,
                        position: Vec2::new(*x, *y),
                        delta: None,
                    }));
                    window_events.write(left_button(window, ButtonState::Pressed));
                    state.pressed_mouse = true;
                }
            }
            Command::Screenshot(path) => take_screenshot(&mut commands, &mut state, path.clone()),
            Command::Exit => {
                state.exit_at.get_or_insert(frame);
            }
        }
    }
    if automation.exit_after == Some(frame) {
        if let Some(path) = automation.screenshot.clone() {
            take_screenshot(&mut commands, &mut state, path);
        }
        state.exit_at.get_or_insert(frame);
    }
}

/// With lockstep: every view is paced by hand, and the clock may move once every view has shown
/// the step last asked of it.
fn pace_by_hand(
    mut state: ResMut<AutomationState>,
    mut new_views: Query<&mut WorldView, Added<WorldView>>,
    views: Query<(Entity, &WorldViewStats), With<ViewSession>>,
) {
    for mut view in &mut new_views {
        view.pacing = Pacing::Manual;
    }
    state.ready = state.asked.iter().all(|(view, shown)| {
        views
            .get(*view)
            .is_ok_and(|(_, stats)| stats.frames_presented > *shown)
    });
}

/// With lockstep: once every view has shown the step last asked of it (or before the first),
/// asks every view for one more step, after the frame's input was sent so the step uses it.
fn request_steps(
    mut state: ResMut<AutomationState>,
    views: Query<(Entity, &ViewSession, &WorldViewStats)>,
) {
    if !state.asked.is_empty() && !state.ready {
        return;
    }
    state.asked.clear();
    for (view, session, stats) in &views {
        if session.handle().step(1).is_ok() {
            state.asked.push((view, stats.frames_presented));
        }
    }
    state.ready = false;
}

fn left_button(window: Entity, state: ButtonState) -> WindowEvent {
    WindowEvent::MouseButtonInput(MouseButtonInput {
        button: MouseButton::Left,
        state,
        window,
    })
}

fn finish(
    automation: Res<Automation>,
    state: Res<AutomationState>,
    mut exit: MessageWriter<AppExit>,
) {
    let (Some(at), Some(frame)) = (state.exit_at, state.frame) else {
        return;
    };
    let saved = state
        .shots
        .iter()
        .all(|(_, done)| done.load(Ordering::Acquire));
    let waited = frame.saturating_sub(at);
    if !saved && waited < 300 {
        return;
    }
    if automation.profile {
        let mut t = state.frame_times.clone();
        t.sort_by(f32::total_cmp);
        if !t.is_empty() {
            let median = t[t.len() / 2] * 1e3;
            let p90 = t[(t.len() * 9 / 10).min(t.len() - 1)] * 1e3;
            println!(
                "profile: frames={} median_frame_ms={median:.2} fps={:.1} p90_frame_ms={p90:.2}",
                t.len(),
                1e3 / median
            );
        }
    }
    if saved {
        for (path, _) in &state.shots {
            println!("automation: screenshot {}", path.display());
        }
        exit.write(AppExit::Success);
    } else {
        eprintln!("automation: a screenshot was not saved within 300 frames");
        exit.write(AppExit::from_code(4));
    }
}
