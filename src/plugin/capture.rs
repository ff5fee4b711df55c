//! Capture: a Bevy game recorded as a world-model dataset, so a model can be trained on it.
//!
//! Put a [`Capture`] on a 3D camera and [`CapturePlugin`] renders that camera into an image at the
//! dataset's resolution, reads the pixels back from the GPU ([`Readback`]) and writes each frame
//! with the step's action ([`ActionState`] on the camera), director controls ([`ViewControls`]
//! on the camera), sound ([`CaptureAudio`]) and camera pose into the sharded dataset format of
//! `nacre datagen` ([`DatasetWriter`]).
//!
//! Frames are taken on a fixed simulated clock: a capture step advances [`Time`] by exactly one
//! frame of the dataset's frame rate (through [`TimeUpdateStrategy`]), and the clock then stands
//! still (game time does not move) until that frame's pixels are back from the GPU. A game that
//! moves things by `Time::delta` therefore records the same dataset however fast the machine is.
//!
//! Each step, in [`CaptureSystems`]:
//!
//! 1. [`CaptureSystems::Drive`] (`PreUpdate`, after the plugin's input): the [`Explorer`] writes
//!    the step's action and controls into the camera's [`ActionState`] and [`ViewControls`]
//!    ([`CaptureDriver::Explorer`]); with [`CaptureDriver::Game`] the game's own systems (its bot,
//!    or [`ActionBindings`](super::ActionBindings) for a person) set them before `PostUpdate`.
//! 2. `Update`: the game moves its player and its world from them, as it always does.
//! 3. [`CaptureSystems::Record`] (`PostUpdate`, after transforms): the step's action, controls,
//!    sound and pose are kept and the frame is requested from the GPU.
//!
//! At the start of every episode a [`CaptureEpisodeStarted`] message asks the game to put its
//! player back at a start (seeded with the episode's seed, so a resumed capture records the same
//! episodes). An interrupted capture continues after its last whole shard when the app starts
//! again with the same settings. One capture runs at a time: the clock is the whole app's.
//!
//! A Bevy `Screenshot` of the capture's image renders the camera's picture of that frame into
//! the screenshot instead of the image, so a screenshot requested in a step's frame would leave
//! the previous picture in the dataset; request it a frame later (the clock is still held then,
//! the scene the same), as `examples/capture.rs` does.

use std::path::PathBuf;
use std::time::Duration;

use bevy::camera::RenderTarget;
use bevy::prelude::*;
use bevy::render::gpu_readback::{Readback, ReadbackComplete};
use bevy::render::{Render, RenderApp, RenderSystems};
use bevy::time::{TimeSystems, TimeUpdateStrategy};
use bevy::transform::TransformSystems;

use super::snapshot::{
    self, SettledRenders, SnapshotTaken, TakeSnapshot, count_settled_renders, frame_from_texture,
    readable_target,
};
use super::{ActionState, NacreSystems, ViewControls};
use crate::dataset::{CapturedStep, DatasetWriter, GeneratorInfo, episode_seed};
use crate::explorer::{Explorer, ExplorerConfig};
use crate::spec::ModelSpec;

/// Frames a capture waits for its picture to come back from the GPU before it gives up.
const MAX_FRAMES_WAITED: u32 = 600;
/// Before its first step a capture holds the clock until a snapshot of its camera has settled
/// ([`TakeSnapshot`]: no shader compiling, the picture the same three frames in a row, so the
/// render target exists and nothing pops in)... or this many frames have passed (then it starts
/// with a warning).
const WARM_UP_MAX_FRAMES: u32 = 300;

/// Records the camera it is on as a dataset; see the [module](self) documentation. The camera's
/// render target is replaced by an image of `spec.width × spec.height`.
#[derive(Component, Clone, Debug)]
pub struct Capture {
    /// The dataset folder (created if missing; an unfinished capture with the same settings in it
    /// is continued).
    pub dir: PathBuf,
    /// The game's layout: picture size, frame rate, action channels, director controls and sound.
    /// A model trained on the capture has this spec's channels.
    pub spec: ModelSpec,
    /// Episodes to record.
    pub episodes: u64,
    /// Frames in every episode.
    pub frames_per_episode: u32,
    /// Episodes per shard file.
    pub episodes_per_shard: u32,
    /// Dataset seed: episode `e` is played from a seed derived from it and `e`.
    pub seed: u64,
    /// Who plays.
    pub driver: CaptureDriver,
    /// Name of the game, written into the manifest (`generator.world`).
    pub world: String,
}

impl Capture {
    /// A capture of `episodes` episodes of `frames_per_episode` frames into `dir`, played by the
    /// explorer with its default mix, four episodes to a shard.
    pub fn new(
        dir: impl Into<PathBuf>,
        spec: ModelSpec,
        episodes: u64,
        frames_per_episode: u32,
    ) -> Self {
        Self {
            dir: dir.into(),
            world: spec.name.clone(),
            spec,
            episodes,
            frames_per_episode,
            episodes_per_shard: 4,
            seed: 0,
            driver: CaptureDriver::Explorer(ExplorerConfig::default()),
        }
    }

    fn generator(&self) -> GeneratorInfo {
        let director_changes_per_minute = match &self.driver {
            CaptureDriver::Explorer(config) => config.director_changes_per_minute,
            CaptureDriver::Game => 0.0,
        };
        GeneratorInfo {
            world: self.world.clone(),
            world_version: self.spec.version.clone(),
            seed: self.seed,
            episodes: self.episodes,
            frames_per_episode: self.frames_per_episode,
            episodes_per_shard: self.episodes_per_shard,
            director_changes_per_minute,
        }
    }

    fn frame_duration(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.spec.fps))
    }
}

/// Who decides each captured step's action and controls.
#[derive(Clone, Debug, PartialEq)]
pub enum CaptureDriver {
    /// A seeded [`Explorer`] (reseeded for every episode).
    Explorer(ExplorerConfig),
    /// The game: its systems set the camera's [`ActionState`] and [`ViewControls`] in `Update`.
    Game,
}

/// Sound of the current step, `samples_per_frame × channels` interleaved values in [-1, 1]. A
/// game that has sound writes it here during the step (before `PostUpdate`); it is taken with
/// the frame and cleared. Left empty, the step is stored as silence.
#[derive(Component, Clone, Debug, Default)]
pub struct CaptureAudio(pub Vec<f32>);

/// How far a capture has come; on the camera, updated every step.
#[derive(Component, Clone, Debug, Default, PartialEq)]
pub struct CaptureStatus {
    /// Frames written to the dataset (including those of earlier runs it continues).
    pub frames: u64,
    /// Frames the whole dataset will have.
    pub total_frames: u64,
    /// The episode being recorded.
    pub episode: u64,
    /// The dataset index of the frame on its way back from the GPU (`None` between steps).
    pub taking: Option<u64>,
    /// `Some` once the capture is over.
    pub outcome: Option<CaptureOutcome>,
}

/// How a capture ended.
#[derive(Clone, Debug, PartialEq)]
pub enum CaptureOutcome {
    /// Every episode is written and the manifest says complete.
    Complete,
    /// It stopped with this error (the dataset keeps its whole shards).
    Failed(String),
}

/// Sent when a capture starts an episode: put the player back at a start (and reset anything
/// else the episode should not inherit). `seed` is the episode's seed, so a game that draws its
/// start from it records the same episode again when an interrupted capture resumes.
#[derive(Message, Clone, Debug, PartialEq)]
pub struct CaptureEpisodeStarted {
    /// The capturing camera.
    pub camera: Entity,
    /// Index of the episode in the dataset.
    pub episode: u64,
    /// The episode's seed.
    pub seed: u64,
}

/// Sent once when a capture is over (see [`CaptureStatus::outcome`]).
#[derive(Message, Clone, Debug, PartialEq)]
pub struct CaptureFinished {
    /// The capturing camera.
    pub camera: Entity,
    /// How it ended.
    pub outcome: CaptureOutcome,
}

/// The phases of a capture step; see the [module](self) documentation.
#[derive(SystemSet, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CaptureSystems {
    /// `PreUpdate`: the explorer sets the step's action and controls.
    Drive,
    /// `PostUpdate`: the step is recorded and its frame requested from the GPU.
    Record,
}

/// Records [`Capture`] cameras as datasets and takes snapshots of cameras
/// ([`TakeSnapshot`](super::TakeSnapshot)). Needs Bevy's rendering (and [`NacrePlugin`]'s input
/// sets, so add [`NacrePlugin`](super::NacrePlugin) too).
pub struct CapturePlugin;

impl Plugin for CapturePlugin {
    fn build(&self, app: &mut App) {
        app.add_message::<CaptureEpisodeStarted>()
            .add_message::<CaptureFinished>()
            .configure_sets(PreUpdate, CaptureSystems::Drive.after(NacreSystems::Input))
            .configure_sets(
                PostUpdate,
                CaptureSystems::Record.after(TransformSystems::Propagate),
            )
            .add_systems(First, pace_clock.before(TimeSystems))
            .add_systems(
                PreUpdate,
                (start_captures, drive)
                    .chain()
                    .in_set(CaptureSystems::Drive),
            )
            .add_systems(PostUpdate, record.in_set(CaptureSystems::Record))
            .add_observer(receive_frame)
            .add_message::<SnapshotTaken>()
            .add_systems(PostUpdate, snapshot::request_snapshots)
            .add_observer(snapshot::receive_snapshot);
        let settled = SettledRenders::default();
        app.insert_resource(settled.clone());
        if let Some(render_app) = app.get_sub_app_mut(RenderApp) {
            render_app
                .insert_resource(settled)
                .add_systems(Render, count_settled_renders.in_set(RenderSystems::Cleanup));
        }
    }
}

/// Where a running capture is in its step.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// An episode starts this frame (the clock stands still while the game resets).
    EpisodeStart,
    /// The game resets for the new episode in this frame; its first step comes next frame.
    Resetting,
    /// Before the first step: the clock stands still until the camera's snapshot settles.
    WarmUp { frames: u32 },
    /// The clock advanced one frame; the step's input applies.
    Step,
    /// The step's frame is on its way back from the GPU; the clock stands still.
    Await { step: u64, frames: u32 },
    /// Over (see [`CaptureStatus::outcome`]).
    Done,
}

/// A running capture's state (on the camera).
#[derive(Component)]
struct CaptureRun {
    writer: DatasetWriter,
    image: Handle<Image>,
    explorer: Option<Explorer>,
    phase: Phase,
    /// Steps taken (numbers the readbacks).
    steps: u64,
    /// The step waiting for its frame.
    pending: Option<PendingStep>,
    /// Whether the picture has settled (see [`WARM_UP_MAX_FRAMES`]).
    warmed: bool,
}

/// What a step used, kept until its frame arrives.
struct PendingStep {
    action: Vec<f32>,
    controls: Vec<f32>,
    audio: Vec<f32>,
    pose: [f32; 5],
}

/// One readback request: the capture and the step it belongs to. Despawned when its first
/// picture arrives; any later one (the GPU is asked every frame until then) is ignored.
#[derive(Component)]
struct StepReadback {
    camera: Entity,
    step: u64,
}

/// Runs the clock one dataset frame forward on a step, holds it otherwise; gives the clock back
/// to the wall once no capture runs.
fn pace_clock(
    runs: Query<(&Capture, &CaptureRun)>,
    mut strategy: ResMut<TimeUpdateStrategy>,
    mut held: Local<bool>,
) {
    let running = runs.iter().find(|(_, run)| run.phase != Phase::Done);
    match running {
        Some((capture, run)) => {
            let step = match run.phase {
                Phase::Step => capture.frame_duration(),
                _ => Duration::ZERO,
            };
            *strategy = TimeUpdateStrategy::ManualDuration(step);
            *held = true;
        }
        None if *held => {
            *strategy = TimeUpdateStrategy::Automatic;
            *held = false;
        }
        None => {}
    }
}

/// Sets up new captures: the render-target image, the camera's action and control components,
/// the dataset writer. A capture that cannot start ends at once with the reason.
#[allow(clippy::type_complexity)]
fn start_captures(
    mut commands: Commands,
    mut images: ResMut<Assets<Image>>,
    added: Query<(Entity, &Capture), Added<Capture>>,
    runs: Query<&CaptureRun>,
    mut finished: MessageWriter<CaptureFinished>,
) {
    let mut running = runs.iter().any(|run| run.phase != Phase::Done);
    for (camera, capture) in &added {
        let total_frames = capture
            .episodes
            .saturating_mul(u64::from(capture.frames_per_episode));
        let mut status = CaptureStatus {
            total_frames,
            ..default()
        };
        let opened = if running {
            Err("another capture is running (one at a time: the clock is the app's)".to_string())
        } else if capture.spec.width == 0
            || capture.spec.height == 0
            || !(capture.spec.fps.is_finite() && capture.spec.fps >= 1.0)
        {
            Err(format!(
                "a capture needs a picture size and a frame rate of at least 1 (spec: {}×{} at \
                 {} frames/s)",
                capture.spec.width, capture.spec.height, capture.spec.fps
            ))
        } else {
            DatasetWriter::open(&capture.dir, &capture.spec, capture.generator())
                .map_err(|e| e.to_string())
        };
        let writer = match opened {
            Ok(writer) => writer,
            Err(reason) => {
                error!("bevy_nacre capture: {reason}");
                report_end(
                    camera,
                    &mut status,
                    &mut finished,
                    CaptureOutcome::Failed(reason),
                );
                commands.entity(camera).insert(status);
                continue;
            }
        };
        running = true;
        status.frames = writer
            .episode()
            .saturating_mul(u64::from(capture.frames_per_episode));
        let image = images.add(readable_target(capture.spec.width, capture.spec.height));
        let mut action = ActionState::default();
        action.reset_channels(&capture.spec.actions);
        let controls = ViewControls::new(&capture.spec.controls, &capture.spec.default_controls());
        commands.entity(camera).insert((
            RenderTarget::Image(image.clone().into()),
            action,
            controls,
            CaptureAudio::default(),
            status,
            CaptureRun {
                writer,
                image,
                explorer: None,
                phase: Phase::EpisodeStart,
                steps: 0,
                pending: None,
                warmed: false,
            },
        ));
    }
}

/// Starts episodes and lets the explorer play the step.
fn drive(
    mut runs: Query<(
        Entity,
        &Capture,
        &mut CaptureRun,
        &mut CaptureStatus,
        &mut ActionState,
        &mut ViewControls,
    )>,
    mut started: MessageWriter<CaptureEpisodeStarted>,
    mut finished: MessageWriter<CaptureFinished>,
) {
    for (camera, capture, mut run, mut status, mut action, mut controls) in &mut runs {
        match run.phase {
            Phase::EpisodeStart => {
                if run.writer.is_complete() {
                    run.phase = Phase::Done;
                    info!(
                        "bevy_nacre capture: {} frames in {}",
                        status.frames,
                        capture.dir.display()
                    );
                    report_end(camera, &mut status, &mut finished, CaptureOutcome::Complete);
                    continue;
                }
                let episode = run.writer.episode();
                let seed = episode_seed(capture.seed, episode);
                status.episode = episode;
                if let CaptureDriver::Explorer(config) = &capture.driver {
                    let explorer = Explorer::new(&capture.spec, seed, config.clone());
                    *controls =
                        ViewControls::new(&capture.spec.controls, explorer.start_controls());
                    run.explorer = Some(explorer);
                }
                action.reset_channels(&capture.spec.actions);
                started.write(CaptureEpisodeStarted {
                    camera,
                    episode,
                    seed,
                });
                run.phase = Phase::Resetting;
            }
            Phase::Step => {
                if let Some(explorer) = run.explorer.as_mut() {
                    let input = explorer.next_input();
                    for (channel, value) in capture.spec.actions.iter().zip(&input.action.values) {
                        action.set(&channel.name, *value);
                    }
                    *controls = ViewControls::new(&capture.spec.controls, &input.controls);
                }
            }
            Phase::Resetting | Phase::WarmUp { .. } | Phase::Await { .. } | Phase::Done => {}
        }
    }
}

/// Keeps the step's input and asks the GPU for its frame; counts the frames waited.
#[allow(clippy::type_complexity)]
fn record(
    mut commands: Commands,
    mut runs: Query<(
        Entity,
        &mut CaptureRun,
        &mut CaptureStatus,
        &ActionState,
        &mut ViewControls,
        &mut CaptureAudio,
        &GlobalTransform,
    )>,
    mut finished: MessageWriter<CaptureFinished>,
    mut snapshots: MessageReader<SnapshotTaken>,
) {
    let settled: Vec<Entity> = snapshots.read().map(|s| s.camera).collect();
    for (camera, mut run, mut status, action, mut controls, mut audio, transform) in &mut runs {
        match run.phase {
            Phase::Step => {
                let (yaw, pitch, _) = transform.rotation().to_euler(EulerRot::YXZ);
                let position = transform.translation();
                run.pending = Some(PendingStep {
                    action: action.values().to_vec(),
                    controls: controls.values().to_vec(),
                    audio: std::mem::take(&mut audio.0),
                    pose: [position.x, position.y, position.z, yaw, pitch],
                });
                // A trigger fires for one step.
                controls.bypass_change_detection().disarm_triggers();
                let step = run.steps;
                run.steps += 1;
                commands.spawn((
                    StepReadback { camera, step },
                    Readback::texture(run.image.clone()),
                ));
                run.phase = Phase::Await { step, frames: 0 };
                status.taking = Some(status.frames);
            }
            Phase::Await { step, frames } => {
                if frames >= MAX_FRAMES_WAITED {
                    let reason =
                        format!("no picture came back from the GPU in {MAX_FRAMES_WAITED} frames");
                    fail(camera, &mut run, &mut status, &mut finished, reason);
                } else {
                    run.phase = Phase::Await {
                        step,
                        frames: frames + 1,
                    };
                }
            }
            Phase::Resetting if run.warmed => run.phase = Phase::Step,
            Phase::Resetting => {
                commands.entity(camera).insert(TakeSnapshot);
                run.phase = Phase::WarmUp { frames: 0 };
            }
            Phase::WarmUp { .. } if settled.contains(&camera) => {
                end_warm_up(&mut commands, camera, &mut run);
            }
            Phase::WarmUp { frames } if frames >= WARM_UP_MAX_FRAMES => {
                warn!(
                    "bevy_nacre capture: the camera's picture did not settle in \
                     {WARM_UP_MAX_FRAMES} frames (something moves by the wall clock?); \
                     capturing anyway"
                );
                end_warm_up(&mut commands, camera, &mut run);
            }
            Phase::WarmUp { frames } => run.phase = Phase::WarmUp { frames: frames + 1 },
            Phase::EpisodeStart | Phase::Done => {}
        }
    }
}

/// The warm-up is over: the first step comes next frame.
fn end_warm_up(commands: &mut Commands, camera: Entity, run: &mut CaptureRun) {
    // Gone already when the snapshot settled; still reading back after a timeout.
    commands.entity(camera).remove::<TakeSnapshot>();
    run.warmed = true;
    run.phase = Phase::Step;
}

/// Writes a step once its frame is back from the GPU.
fn receive_frame(
    event: On<ReadbackComplete>,
    mut commands: Commands,
    readbacks: Query<&StepReadback>,
    mut runs: Query<(&Capture, &mut CaptureRun, &mut CaptureStatus)>,
    mut finished: MessageWriter<CaptureFinished>,
) {
    let Ok(readback) = readbacks.get(event.entity) else {
        return;
    };
    commands.entity(event.entity).despawn();
    let camera = readback.camera;
    let Ok((capture, mut run, mut status)) = runs.get_mut(camera) else {
        return;
    };
    if !matches!(run.phase, Phase::Await { step, .. } if step == readback.step) {
        return;
    }
    let Some(pending) = run.pending.take() else {
        return;
    };
    let frame = match frame_from_texture(&event.data, capture.spec.width, capture.spec.height) {
        Ok(frame) => frame,
        Err(reason) => {
            fail(camera, &mut run, &mut status, &mut finished, reason);
            return;
        }
    };
    let pushed = run.writer.push(&CapturedStep {
        frame: &frame,
        action: &pending.action,
        controls: &pending.controls,
        audio: &pending.audio,
        pose: pending.pose,
    });
    match pushed {
        Ok(()) => {
            status.frames += 1;
            status.taking = None;
            run.phase = if run.writer.frame_in_episode() == 0 {
                Phase::EpisodeStart
            } else {
                Phase::Step
            };
        }
        Err(e) => fail(camera, &mut run, &mut status, &mut finished, e.to_string()),
    }
}

/// Ends a running capture with an error.
fn fail(
    camera: Entity,
    run: &mut CaptureRun,
    status: &mut CaptureStatus,
    finished: &mut MessageWriter<CaptureFinished>,
    reason: String,
) {
    error!("bevy_nacre capture: {reason}");
    run.phase = Phase::Done;
    report_end(camera, status, finished, CaptureOutcome::Failed(reason));
}

/// Records how a capture ended on its status and sends [`CaptureFinished`].
fn report_end(
    camera: Entity,
    status: &mut CaptureStatus,
    finished: &mut MessageWriter<CaptureFinished>,
    outcome: CaptureOutcome,
) {
    status.outcome = Some(outcome.clone());
    finished.write(CaptureFinished { camera, outcome });
}
