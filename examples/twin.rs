//! The garden and its neural twin side by side: on the left the real garden (Bevy meshes and
//! lights, the scene `examples/capture.rs` records), on the right the world model trained on
//! captures of it (`assets/models/garden`), both driven by the same keys.
//!
//! ```sh
//! cargo run --release --example twin
//! ```
//!
//! The twin starts from a snapshot of the garden's view ([`TakeSnapshot`]), not from anything it
//! was trained on. Then every step the twin generates moves the garden's player by that step's
//! action for one model frame (1/20 s): the garden's clock follows the twin, so the two show the
//! same moment whatever the machine's speed, and where they differ is the model's doing.
//!
//! WASD/arrows move, the mouse looks (click to grab it), PageUp/PageDown change the time of day,
//! G brings the fog in and out, T starts the twin again from the garden's view; F5/F9 save and
//! load the twin, R records it, F12 takes a screenshot. `--model PATH` plays another model
//! trained on the garden; `--seed N` starts somewhere else.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bevy::camera::RenderTarget;
use bevy::prelude::*;
use bevy::time::{TimeSystems, TimeUpdateStrategy};
use bevy_nacre::default_model;
use bevy_nacre::prelude::*;
use common::garden;
use common::hud::HudPlugin;
use common::keys::{ExampleKeys, PrimaryView};
use common::options::Options;

const HELP: &str = "WASD/arrows move both | mouse looks (click) | PgUp/PgDn time of day | G fog | \
                    T twin from the garden's view | F5 save | F9 load | R record | F12 screenshot";

/// Id of the twin model.
const TWIN_ID: &str = "garden-twin";
/// Where the shipped twin lives, under the project root.
const TWIN_DIR: &str = "assets/models/garden";
/// The garden's picture size: the twin's.
const SIZE: u32 = 128;

fn main() {
    let mut options = Options::from_args();
    if !std::env::args().any(|a| a == "--model") {
        options.model = twin_dir();
    }
    let mut app = common::example_app(ExampleKeys {
        name: "twin",
        grab_on_click: true,
    });
    let found = options.model.join("config.json").is_file();
    let label = if found {
        // Scripted runs wait for the twin's first frame, which comes after the first snapshot.
        app.insert_resource(common::automation::ViewStartsLater);
        let dir = options.model.clone();
        app.add_world_model(TWIN_ID, move |device| {
            // No start frames of its own: every session starts from the garden's snapshot.
            Ok(Arc::new(default_model::load(&dir, device)?) as Arc<dyn WorldModel>)
        });
        format!(
            "left: the garden (Bevy) | right: its neural twin ({})",
            options.model.display()
        )
    } else {
        eprintln!(
            "bevy_nacre: no twin model at {} (expected config.json and model.safetensors); \
             showing the garden alone. Capture and train one as docs/your-game.md says, or pass \
             --model PATH.",
            options.model.display()
        );
        format!(
            "the garden alone: no twin model at {}",
            options.model.display()
        )
    };
    app.add_plugins((
        CapturePlugin,
        garden::GardenPlugin,
        HudPlugin {
            model_label: label,
            help: HELP,
        },
    ))
    .insert_resource(TwinSteps::default())
    .insert_resource(TwinFound(found))
    .insert_resource(options)
    .add_systems(Startup, setup)
    .add_systems(First, pace_garden.before(TimeSystems))
    .add_systems(
        Update,
        (
            (start_twin, director_keys, take_snapshots, drive_garden).before(garden::MovePlayer),
            common::keep_aspect,
        ),
    )
    .add_systems(PostUpdate, count_twin_steps.after(NacreSystems::Present))
    .run();
}

/// `assets/models/garden` under the working directory if it is there, else under this project.
fn twin_dir() -> PathBuf {
    let here = PathBuf::from(TWIN_DIR);
    if here.is_dir() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(TWIN_DIR)
}

/// Whether a twin model was found.
#[derive(Resource)]
struct TwinFound(bool);

/// The garden's camera.
#[derive(Component)]
struct RealCamera;

/// The node the twin is shown in (its `WorldView` is added when the first snapshot arrives).
#[derive(Component)]
struct TwinNode;

/// Steps the twin generated since the garden last moved, and the action of the latest.
#[derive(Resource, Default)]
struct TwinSteps {
    steps: u32,
    action: Option<Vec<f32>>,
}

fn setup(
    mut commands: Commands,
    mut images: ResMut<Assets<Image>>,
    options: Res<Options>,
    found: Res<TwinFound>,
) {
    let spec = garden::spec(SIZE, SIZE);
    let image = images.add(readable_target(SIZE, SIZE));
    // The garden's player, at the place the seed gives; its first picture starts the twin.
    let mut player = garden::Player::default();
    let mut transform = Transform::default();
    garden::reset_player(options.seed, &mut player, &mut transform);
    let mut camera = commands.spawn((
        garden::player_camera(),
        RenderTarget::Image(image.clone().into()),
        ActionState::with_channels(&spec.actions),
        ViewControls::new(&spec.controls, &spec.default_controls()),
        RealCamera,
    ));
    camera.insert((player, transform));
    if !found.0 {
        // No twin: the keys drive the garden directly.
        camera.insert(ActionBindings::default());
    }
    commands.spawn((Camera2d, IsDefaultUiCamera));

    // Two pictures side by side, each under its caption.
    let column = |commands: &mut Commands, caption: &str| {
        commands
            .spawn(Node {
                width: percent(50),
                height: percent(100),
                flex_direction: FlexDirection::Column,
                justify_content: JustifyContent::Center,
                align_items: AlignItems::Center,
                row_gap: px(8),
                ..default()
            })
            .with_child((
                Text::new(caption),
                TextFont::from_font_size(18.0),
                TextColor(Color::WHITE),
            ))
            .id()
    };
    let root = commands
        .spawn((
            Node {
                width: percent(100),
                height: percent(100),
                padding: UiRect::top(px(90)),
                ..default()
            },
            BackgroundColor(Color::BLACK),
        ))
        .id();
    let left = column(&mut commands, "the garden (Bevy meshes and lights)");
    let right = column(&mut commands, "its neural twin (generated)");
    commands.entity(root).add_children(&[left, right]);
    let picture = || Node {
        width: percent(92),
        max_height: percent(85),
        aspect_ratio: Some(1.0),
        ..default()
    };
    commands
        .entity(left)
        .with_child((ImageNode::new(image), picture(), common::ViewNode));
    commands.entity(right).with_child((
        ImageNode::default(),
        picture(),
        common::ViewNode,
        TwinNode,
    ));
}

/// The prompt that continues the garden from `frame`: its seed, and the garden's controls where
/// the twin has controls of the same name (its defaults elsewhere: a model with other controls
/// still starts).
fn prompt_from(frame: Frame, seed: u64, garden: &ViewControls, twin: &ModelSpec) -> Prompt {
    let mut controls = ViewControls::new(&twin.controls, &twin.default_controls());
    for spec in garden.specs() {
        if let Some(value) = garden.get(&spec.name) {
            controls.set(&spec.name, value);
        }
    }
    Prompt {
        seed,
        start_frames: vec![frame],
        controls: Some(controls.to_controls()),
    }
}

/// Starts the twin from each snapshot of the garden (the first one makes the view).
#[allow(clippy::type_complexity)]
fn start_twin(
    mut commands: Commands,
    mut snapshots: MessageReader<SnapshotTaken>,
    real: Single<(Entity, &ViewControls), With<RealCamera>>,
    twin: Single<(Entity, Has<WorldView>), With<TwinNode>>,
    mut restarts: MessageWriter<RestartWorldView>,
    runtime: Option<Res<NacreRuntime>>,
    options: Res<Options>,
) {
    let (camera, controls) = *real;
    let (node, has_view) = *twin;
    for snapshot in snapshots.read().filter(|s| s.camera == camera) {
        let Some(spec) = runtime.as_ref().and_then(|r| r.spec(TWIN_ID)) else {
            continue;
        };
        let prompt = prompt_from(snapshot.frame.clone(), options.seed, controls, spec);
        if has_view {
            restarts.write(RestartWorldView {
                view: node,
                prompt: Some(prompt),
            });
        } else {
            commands
                .entity(node)
                .insert((WorldView::new(TWIN_ID).with_prompt(prompt), PrimaryView));
        }
    }
}

/// Takes the first snapshot once the twin's model has loaded (its layout decides the prompt's
/// controls), and a new one on T, to start the twin again from the garden's view.
fn take_snapshots(
    mut commands: Commands,
    keys: Res<ButtonInput<KeyCode>>,
    real: Single<Entity, With<RealCamera>>,
    runtime: Option<Res<NacreRuntime>>,
    mut first_taken: Local<bool>,
) {
    let loaded = runtime.is_some_and(|r| r.spec(TWIN_ID).is_some());
    if loaded && (!*first_taken || keys.just_pressed(KeyCode::KeyT)) {
        commands.entity(*real).insert(TakeSnapshot);
        *first_taken = true;
    }
}

/// PageUp/PageDown: an hour later or earlier; G: fog in or out. Both worlds get the change.
fn director_keys(keys: Res<ButtonInput<KeyCode>>, mut controls: Query<&mut ViewControls>) {
    let hours = if keys.just_pressed(KeyCode::PageUp) {
        1.0
    } else if keys.just_pressed(KeyCode::PageDown) {
        -1.0
    } else {
        0.0
    };
    let fog = keys.just_pressed(KeyCode::KeyG);
    if hours == 0.0 && !fog {
        return;
    }
    for mut c in &mut controls {
        if c.specs().is_empty() {
            continue;
        }
        if let Some(hour) = c.get("time_of_day") {
            c.set("time_of_day", (hour + hours).rem_euclid(24.0));
        }
        if fog && let Some(thickness) = c.get("fog") {
            c.set("fog", if thickness > 0.5 { 0.1 } else { 0.85 });
        }
    }
}

/// Counts the twin's generated steps (every step, shown or not) and keeps the latest's action.
fn count_twin_steps(
    mut steps: MessageReader<WorldViewAudio>,
    twin: Query<Entity, With<TwinNode>>,
    mut pending: ResMut<TwinSteps>,
) {
    let Ok(twin) = twin.single() else {
        return;
    };
    for step in steps.read().filter(|s| s.view == twin) {
        pending.steps += 1;
        pending.action = Some(step.input.action.values.clone());
    }
}

/// The garden's clock: one model frame forward for every step the twin generated, held while a
/// snapshot is taken (the picture must stand still) and before the twin runs.
fn pace_garden(
    mut pending: ResMut<TwinSteps>,
    mut strategy: ResMut<TimeUpdateStrategy>,
    runtime: Option<Res<NacreRuntime>>,
    snapshot: Query<(), (With<RealCamera>, With<TakeSnapshot>)>,
    found: Res<TwinFound>,
) {
    if !found.0 {
        // No twin: the garden runs on the wall clock.
        return;
    }
    let fps = runtime
        .as_ref()
        .and_then(|r| r.spec(TWIN_ID))
        .map_or(20.0, |s: &ModelSpec| s.fps);
    let steps = if snapshot.is_empty() {
        std::mem::take(&mut pending.steps)
    } else {
        pending.steps = 0;
        0
    };
    *strategy = TimeUpdateStrategy::ManualDuration(Duration::from_secs_f32(steps as f32 / fps));
}

/// The garden's player takes the action the twin last stepped with (by channel name: the twin's
/// layout is the garden's, perhaps in another order).
fn drive_garden(
    mut pending: ResMut<TwinSteps>,
    mut player: Single<&mut ActionState, With<RealCamera>>,
    runtime: Option<Res<NacreRuntime>>,
) {
    let Some(spec) = runtime.as_ref().and_then(|r| r.spec(TWIN_ID)) else {
        return;
    };
    if let Some(values) = pending.action.take() {
        for (channel, value) in spec.actions.iter().zip(values) {
            player.set(&channel.name, value);
        }
    }
}
