//! Records a real Bevy game as a world-model dataset: the garden (a small first-person 3D scene
//! of meshes and lights, `examples/common/garden.rs`) played by the explorer, unattended, on a
//! fixed clock, into the dataset format `nacre train` and `nacre eval` read.
//!
//! ```text
//! cargo run --release --example capture -- --out data/garden --episodes 16 --frames 300
//! ```
//!
//! Options: `--out DIR` (default `data/garden`), `--episodes N` (8), `--frames N` per episode
//! (300), `--episodes-per-shard N` (4), `--seed N` (1; use another seed for held-out captures),
//! `--size WxH` (128x128), `--play` (you drive with WASD, arrows, mouse and Space instead of the
//! explorer; the director still changes nothing then), `--exit` (quit when done),
//! `--screenshot-frame N PATH` (also save frame N of the capture through Bevy's screenshot path,
//! which the end-to-end test compares with the dataset). Stop it at any time and run it again
//! with the same options: it continues after the last whole shard.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use bevy::camera::RenderTarget;
use bevy::prelude::*;
use bevy::render::view::screenshot::{Screenshot, save_to_disk};
use bevy_nacre::prelude::*;
use common::garden;

const USAGE: &str = "options:
  --out DIR                  dataset folder (default data/garden)
  --episodes N               episodes to record (default 8)
  --frames N                 frames per episode (default 300)
  --episodes-per-shard N     episodes per shard file (default 4)
  --seed N                   dataset seed (default 1)
  --size WxH                 picture size (default 128x128)
  --play                     you drive (keyboard and mouse) instead of the explorer
  --exit                     quit when the capture is done
  --screenshot-frame N PATH  save frame N through Bevy's screenshot path too";

#[derive(Resource, Clone, Debug)]
struct Options {
    out: PathBuf,
    episodes: u64,
    frames: u32,
    episodes_per_shard: u32,
    seed: u64,
    size: (u32, u32),
    play: bool,
    exit: bool,
    screenshot: Option<(u64, PathBuf)>,
}

fn options() -> Options {
    let mut o = Options {
        out: PathBuf::from("data/garden"),
        episodes: 8,
        frames: 300,
        episodes_per_shard: 4,
        seed: 1,
        size: (128, 128),
        play: false,
        exit: false,
        screenshot: None,
    };
    let fail = |m: String| -> ! {
        eprintln!("{m}\n{USAGE}");
        std::process::exit(2)
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(format!("{name} needs a value")))
        };
        fn number<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("bad {name} {v}"))
        }
        let parsed = match a.as_str() {
            "--out" => {
                o.out = PathBuf::from(value("--out"));
                Ok(())
            }
            "--episodes" => number("--episodes", value("--episodes")).map(|v| o.episodes = v),
            "--frames" => number("--frames", value("--frames")).map(|v| o.frames = v),
            "--episodes-per-shard" => number("--episodes-per-shard", value("--episodes-per-shard"))
                .map(|v| o.episodes_per_shard = v),
            "--seed" => number("--seed", value("--seed")).map(|v| o.seed = v),
            "--size" => {
                let v = value("--size");
                v.split_once('x')
                    .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                    .filter(|&(w, h): &(u32, u32)| {
                        (8..=1024).contains(&w) && (8..=1024).contains(&h)
                    })
                    .map(|size| o.size = size)
                    .ok_or(format!("bad --size {v}"))
            }
            "--play" => {
                o.play = true;
                Ok(())
            }
            "--exit" => {
                o.exit = true;
                Ok(())
            }
            "--screenshot-frame" => {
                let n = number("--screenshot-frame", value("--screenshot-frame"));
                n.map(|n| o.screenshot = Some((n, PathBuf::from(value("--screenshot-frame")))))
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => Err(format!("unknown option {other}")),
        };
        if let Err(m) = parsed {
            fail(m)
        }
    }
    o
}

fn main() -> AppExit {
    let options = options();
    let mut app = App::new();
    app.add_plugins((
        DefaultPlugins.set(WindowPlugin {
            primary_window: Some(Window {
                title: "bevy_nacre · capture".into(),
                resolution: bevy::window::WindowResolution::new(960, 720),
                ..default()
            }),
            ..default()
        }),
        NacrePlugin::default(),
        CapturePlugin,
        garden::GardenPlugin,
    ))
    .insert_resource(options)
    .add_systems(Startup, setup)
    .add_systems(
        Update,
        (start_episodes, show_progress, common::keep_aspect).before(garden::MovePlayer),
    )
    .add_systems(
        PostUpdate,
        (show_capture, screenshot).after(CaptureSystems::Record),
    )
    .add_systems(Last, finish)
    .run()
}

/// The progress line and when the capture started (for its frames a second).
#[derive(Component)]
struct Progress {
    started: Instant,
    first_frame: Option<u64>,
}

fn setup(mut commands: Commands, options: Res<Options>) {
    let spec = garden::spec(options.size.0, options.size.1);
    let mut capture = Capture::new(&options.out, spec, options.episodes, options.frames);
    capture.episodes_per_shard = options.episodes_per_shard;
    capture.seed = options.seed;
    if options.play {
        capture.driver = CaptureDriver::Game;
    }
    let mut camera = commands.spawn((garden::player_camera(), capture));
    if options.play {
        camera.insert(ActionBindings::default());
    }
    // The window shows what is captured, scaled up, and the progress.
    commands.spawn((Camera2d, IsDefaultUiCamera));
    common::spawn_fullscreen_view(&mut commands, CaptureImage);
    commands.spawn((
        Text::new("starting the capture"),
        Node {
            position_type: PositionType::Absolute,
            left: px(12),
            top: px(8),
            ..default()
        },
        Progress {
            started: Instant::now(),
            first_frame: None,
        },
    ));
}

/// The node showing the captured picture.
#[derive(Component)]
struct CaptureImage;

/// Each episode starts at the place its seed gives.
fn start_episodes(
    mut started: MessageReader<CaptureEpisodeStarted>,
    mut players: Query<(&mut garden::Player, &mut Transform)>,
) {
    for episode in started.read() {
        if let Ok((mut player, mut transform)) = players.get_mut(episode.camera) {
            garden::reset_player(episode.seed, &mut player, &mut transform);
        }
    }
}

/// Shows the capture's render target in the window.
fn show_capture(
    cameras: Query<&RenderTarget, (With<Capture>, Changed<RenderTarget>)>,
    mut nodes: Query<&mut ImageNode, With<CaptureImage>>,
) {
    for target in &cameras {
        if let Some(handle) = target.as_image() {
            for mut node in &mut nodes {
                node.image = handle.clone();
            }
        }
    }
}

fn show_progress(
    status: Query<&CaptureStatus, Changed<CaptureStatus>>,
    mut text: Single<(&mut Text, &mut Progress)>,
    mut logged: Local<u64>,
) {
    let Ok(status) = status.single() else {
        return;
    };
    let (text, progress) = &mut *text;
    let first = *progress.first_frame.get_or_insert(status.frames);
    let rate = (status.frames - first) as f64 / progress.started.elapsed().as_secs_f64().max(1e-3);
    text.0 = format!(
        "capturing: frame {} of {}, episode {}, {rate:.1} frames/s",
        status.frames, status.total_frames, status.episode
    );
    // The status changes more than once a frame number (the picture is asked for, then back).
    if status.frames % 100 == 0 && status.frames > first && status.frames != *logged {
        *logged = status.frames;
        info!(
            "capture: {} of {} frames, {rate:.1} frames/s",
            status.frames, status.total_frames
        );
    }
}

/// Saves frame N of the capture through Bevy's own screenshot path. A screenshot sends the
/// camera's picture of its frame to itself instead of the image, so it is taken one frame after
/// the capture's request: the clock is held until the capture's picture is back, so that frame
/// shows the same scene.
fn screenshot(
    mut commands: Commands,
    options: Res<Options>,
    cameras: Query<(&CaptureStatus, &RenderTarget)>,
    mut requested: Local<bool>,
    mut done: Local<bool>,
) {
    let Some((frame, path)) = &options.screenshot else {
        return;
    };
    for (status, target) in &cameras {
        if status.taking != Some(*frame) || *done {
            continue;
        }
        if !*requested {
            *requested = true;
        } else if let Some(image) = target.as_image() {
            commands
                .spawn(Screenshot::image(image.clone()))
                .observe(save_to_disk(path.clone()));
            *done = true;
        }
    }
}

/// Reports the result and, with `--exit`, quits (with an error code if the capture failed).
fn finish(
    mut finished: MessageReader<CaptureFinished>,
    options: Res<Options>,
    progress: Single<&Progress>,
    status: Query<&CaptureStatus>,
    mut exit: MessageWriter<AppExit>,
) {
    for message in finished.read() {
        let frames = status.get(message.camera).map_or(0, |s| s.frames);
        let seconds = progress.started.elapsed().as_secs_f64();
        let captured = frames - progress.first_frame.unwrap_or(0);
        match &message.outcome {
            CaptureOutcome::Complete => println!(
                "capture: {frames} frames in {} ({captured} captured in {seconds:.1} s, \
                 {:.1} frames/s)",
                options.out.display(),
                captured as f64 / seconds.max(1e-3)
            ),
            CaptureOutcome::Failed(reason) => eprintln!("capture failed: {reason}"),
        }
        if options.exit {
            exit.write(match message.outcome {
                CaptureOutcome::Complete => AppExit::Success,
                CaptureOutcome::Failed(_) => AppExit::error(),
            });
        }
    }
}
