//! Plays a DIAMOND Atari world model (github.com/eloialonso/diamond) in a Bevy window.
//!
//! ```text
//! cargo run --release --example atari -- --checkpoint Breakout.pt [--start-frames DIR]
//! ```
//!
//! The checkpoint is one of DIAMOND's published agent files (`.pt`) or a safetensors file with
//! the same tensor names; its configuration and action count are read from the tensors.
//! `--start-frames DIR` starts the world from the PNG images in `DIR` (sorted by name, oldest
//! first, any size: they are resized to 64×64). Without it the session starts from a neutral
//! black frame, which the window and the log say: a model trained on a real game first has to
//! invent a screen from nothing.
//!
//! Keys follow DIAMOND's own key map: Space fires, W/A/S/D or the arrow keys move, and
//! combinations (W+D = "upright", D+Space = "rightfire", …) choose the combined action where the
//! game has one; the digit keys choose actions by number (useful when the action count does not
//! say which game it is and the actions are called `a0`, `a1`, …). The window shows the generated frame, the action and the generation speed.
//! `--screenshot out.png --after-frames 30` saves the window after 30 frames and quits.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bevy::image::ImageSampler;
use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, ScreenshotCaptured, save_to_disk};
use bevy_nacre::diamond::{DiamondOptions, DiamondWorldModel};
use bevy_nacre::frame::Frame;
use bevy_nacre::plugin::prelude::*;
use bevy_nacre::worker::WorkerConfig;
use bevy_nacre::world_model::{Prompt, WorldModel};
use clap::Parser;

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "Play a DIAMOND Atari world model")]
struct Args {
    /// DIAMOND checkpoint: a `.pt` agent file or safetensors.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Folder of PNG frames to start from (oldest first by file name).
    #[arg(long)]
    start_frames: Option<PathBuf>,
    /// Seed of the session's noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// CPU threads for inference (0: all cores but one).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Save a screenshot of the window here once `--after-frames` frames were shown, then quit
    /// (for smoke tests and documentation).
    #[arg(long)]
    screenshot: Option<PathBuf>,
    /// Frames to show before `--screenshot` is taken.
    #[arg(long, default_value_t = 30)]
    after_frames: u64,
}

/// Where and when to take the screenshot, if asked for.
#[derive(Resource)]
struct ScreenshotAt {
    path: PathBuf,
    after_frames: u64,
    taken: bool,
}

/// What the session starts from, for the status line.
#[derive(Resource)]
struct Launch {
    prompt: Prompt,
    start: String,
}

/// The status text.
#[derive(Component)]
struct StatusText;

/// DIAMOND's key map: which key means which part of an action name.
const KEYS: [(KeyCode, &str); 9] = [
    (KeyCode::Space, "fire"),
    (KeyCode::KeyW, "up"),
    (KeyCode::ArrowUp, "up"),
    (KeyCode::KeyS, "down"),
    (KeyCode::ArrowDown, "down"),
    (KeyCode::KeyD, "right"),
    (KeyCode::ArrowRight, "right"),
    (KeyCode::KeyA, "left"),
    (KeyCode::ArrowLeft, "left"),
];

fn main() -> AppExit {
    let args = Args::parse();
    let (start_frames, start) = match &args.start_frames {
        Some(dir) => match load_frames(dir) {
            Ok(frames) => {
                let msg = format!("started from {} frames in {}", frames.len(), dir.display());
                (frames, msg)
            }
            Err(e) => {
                eprintln!("--start-frames: {e}");
                return AppExit::error();
            }
        },
        None => (
            Vec::new(),
            "no --start-frames: started from a neutral black frame".to_string(),
        ),
    };
    let prompt = Prompt {
        seed: args.seed,
        start_frames,
        controls: None,
    };
    let checkpoint = args.checkpoint.clone();
    let title = format!("DIAMOND: {}", args.checkpoint.display());
    let screenshot = args.screenshot.clone().map(|path| ScreenshotAt {
        path,
        after_frames: args.after_frames,
        taken: false,
    });

    let mut app = App::new();
    app.add_plugins((
        DefaultPlugins.set(WindowPlugin {
            primary_window: Some(Window {
                title,
                resolution: (560, 640).into(),
                ..default()
            }),
            ..default()
        }),
        NacrePlugin {
            worker: WorkerConfig {
                cpu_threads: args.threads,
                ..default()
            },
        },
    ))
    .add_world_model("diamond", move |device| {
        let model = DiamondWorldModel::load(&checkpoint, device, DiamondOptions::default())?;
        Ok(Arc::new(model) as Arc<dyn WorldModel>)
    })
    .insert_resource(Launch { prompt, start })
    .add_systems(Startup, setup)
    .add_systems(
        Update,
        take_screenshot.run_if(resource_exists::<ScreenshotAt>),
    )
    .add_systems(
        Update,
        (bind_keys, combine_keys)
            .chain()
            .before(NacreSystems::Submit),
    )
    .add_systems(Update, show_status);
    if let Some(s) = screenshot {
        app.insert_resource(s);
    }
    app.run()
}

/// Saves the window once enough frames were shown, then quits.
fn take_screenshot(
    mut commands: Commands,
    mut at: ResMut<ScreenshotAt>,
    views: Query<&WorldViewStats, With<WorldView>>,
) {
    let shown = views.iter().map(|s| s.frames_presented).max().unwrap_or(0);
    if at.taken || shown < at.after_frames {
        return;
    }
    at.taken = true;
    info!(
        "saving a screenshot to {} after {shown} frames",
        at.path.display()
    );
    commands
        .spawn(Screenshot::primary_window())
        .observe(save_to_disk(at.path.clone()))
        .observe(
            |_: On<ScreenshotCaptured>, mut exit: MessageWriter<AppExit>| {
                exit.write(AppExit::Success);
            },
        );
}

/// PNG files of `dir`, sorted by name, as frames.
fn load_frames(dir: &Path) -> Result<Vec<Frame>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png")))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("{}: no PNG files", dir.display()));
    }
    paths
        .iter()
        .map(|p| {
            let img = image::open(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .to_rgba8();
            Ok(Frame {
                width: img.width(),
                height: img.height(),
                rgba: img.into_raw(),
            })
        })
        .collect()
}

fn setup(mut commands: Commands, mut images: ResMut<Assets<Image>>, launch: Res<Launch>) {
    info!("DIAMOND example: {}", launch.start);
    commands.spawn(Camera2d);
    let mut image = view_image(64, 64);
    image.sampler = ImageSampler::nearest();
    let handle = images.add(image);
    commands.spawn((
        WorldView::new("diamond")
            .with_image(handle.clone())
            .with_prompt(launch.prompt.clone()),
        ActionBindings::empty(),
    ));
    commands
        .spawn(Node {
            width: Val::Percent(100.0),
            height: Val::Percent(100.0),
            flex_direction: FlexDirection::Column,
            align_items: AlignItems::Center,
            row_gap: Val::Px(8.0),
            padding: UiRect::all(Val::Px(12.0)),
            ..default()
        })
        .with_children(|root| {
            root.spawn((
                ImageNode::new(handle),
                Node {
                    width: Val::Px(512.0),
                    height: Val::Px(512.0),
                    ..default()
                },
            ));
            root.spawn((
                Text::new("loading the model..."),
                TextFont::from_font_size(14.0),
                StatusText,
            ));
        });
}

/// Marks a view whose keys are bound.
#[derive(Component)]
struct KeysBound;

/// Digit keys, which choose an action by its number (for games whose action names are unknown).
const DIGITS: [KeyCode; 10] = [
    KeyCode::Digit0,
    KeyCode::Digit1,
    KeyCode::Digit2,
    KeyCode::Digit3,
    KeyCode::Digit4,
    KeyCode::Digit5,
    KeyCode::Digit6,
    KeyCode::Digit7,
    KeyCode::Digit8,
    KeyCode::Digit9,
];

/// Views whose keys are not bound yet.
type UnboundViews<'w, 's> = Query<
    'w,
    's,
    (Entity, &'static ActionState, &'static mut ActionBindings),
    (With<WorldView>, Without<KeysBound>),
>;

/// Once the model is loaded, binds each key to its single action (the binding's scale is the
/// action's index, which the discrete channel rounds to a choice), and digit keys to the first
/// ten actions by number.
fn bind_keys(mut commands: Commands, mut views: UnboundViews) {
    for (entity, state, mut bindings) in &mut views {
        let Some(choices) = action_choices(state) else {
            continue;
        };
        let mut b = ActionBindings::empty();
        for (key, name) in KEYS {
            if let Some(i) = choices.iter().position(|c| c == name) {
                b = b.bind("action", InputSource::Key(key), i as f32);
            }
        }
        for (i, key) in DIGITS.iter().enumerate().take(choices.len()) {
            b = b.bind("action", InputSource::Key(*key), i as f32);
        }
        info!("DIAMOND actions: {}", choices.join(", "));
        *bindings = b;
        commands.entity(entity).insert(KeysBound);
    }
}

/// Key combinations, as DIAMOND's key map has them: up/down, then right/left, then fire
/// ("uprightfire"); when the game lacks the combination, the closest action it has.
fn combine_keys(
    keys: Res<ButtonInput<KeyCode>>,
    mut views: Query<&mut ActionState, With<WorldView>>,
) {
    let held = |part: &str| KEYS.iter().any(|(k, p)| *p == part && keys.pressed(*k));
    let vertical = if held("up") {
        "up"
    } else if held("down") {
        "down"
    } else {
        ""
    };
    let horizontal = if held("right") {
        "right"
    } else if held("left") {
        "left"
    } else {
        ""
    };
    let fire = if held("fire") { "fire" } else { "" };
    let candidates = [
        format!("{vertical}{horizontal}{fire}"),
        format!("{vertical}{horizontal}"),
        format!("{horizontal}{fire}"),
        format!("{vertical}{fire}"),
        horizontal.to_string(),
        vertical.to_string(),
        fire.to_string(),
    ];
    if candidates[0].is_empty() {
        // No named key held: the bindings (digit keys) decide.
        return;
    }
    for mut state in &mut views {
        let Some(choices) = action_choices(&state) else {
            continue;
        };
        let index = candidates
            .iter()
            .filter(|c| !c.is_empty())
            .find_map(|c| choices.iter().position(|x| x == c))
            .unwrap_or(0);
        state.set("action", index as f32);
    }
}

/// The names of the model's actions, once it is loaded.
fn action_choices(state: &ActionState) -> Option<Vec<String>> {
    state
        .channels()
        .iter()
        .find(|c| c.name == "action")
        .and_then(|c| match &c.kind {
            bevy_nacre::spec::ActionKind::Discrete { choices } => Some(choices.clone()),
            _ => None,
        })
}

fn show_status(
    launch: Res<Launch>,
    views: Query<(&WorldViewStats, &ActionState), With<WorldView>>,
    mut text: Query<&mut Text, With<StatusText>>,
) {
    let Ok((stats, state)) = views.single() else {
        return;
    };
    let action = action_choices(state)
        .and_then(|c| {
            let i = state.get("action")? as usize;
            c.get(i).cloned()
        })
        .unwrap_or_else(|| "-".into());
    let status = format!(
        "{}\n{:?}: {:.1} frames/s generated, {:.0} ms per frame, latency p50 {:.0} ms\n\
         action: {action}   (Space fire, WASD / arrows move, combinations allowed, 0-9 by number){}",
        launch.start,
        stats.status,
        stats.generated_fps,
        stats.step_ms,
        stats.latency_p50_ms,
        stats
            .last_error
            .as_ref()
            .map(|e| format!("\nerror: {e}"))
            .unwrap_or_default(),
    );
    for mut t in &mut text {
        if t.0 != status {
            t.0.clone_from(&status);
        }
    }
}
