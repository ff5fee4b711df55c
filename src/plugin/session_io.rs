//! Sessions to and from files: save a view to a file, load it back, and record it into a folder
//! (PNG frames, WAV sound, JSON action log, GIF; see [`crate::recording`]).
//!
//! Add [`SessionFilesPlugin`] after [`NacrePlugin`](super::NacrePlugin), then send
//! [`SaveWorldViewToFile`], [`LoadWorldViewFromFile`], [`StartRecording`] and [`StopRecording`];
//! every outcome comes back as a [`SessionFileEvent`] (never a panic). The game's thread never
//! waits: frames are encoded and written by the recorder's own thread, and the GIF is made after
//! [`StopRecording`] on another one.

use std::path::PathBuf;
use std::time::Instant;

use bevy::prelude::*;
use crossbeam_channel::Receiver;

use super::{NacreRuntime, NacreSystems, RestoreWorldView, SaveWorldView, WorldView};
use super::{WorldViewAudio, WorldViewFrame, WorldViewSaved};
use crate::frame::Frame;
use crate::recording::{Recorder, RecordingSummary};
use crate::{files, session_file};

/// Saving, loading and recording of world views. Needs [`NacrePlugin`](super::NacrePlugin).
pub struct SessionFilesPlugin;

impl Plugin for SessionFilesPlugin {
    fn build(&self, app: &mut App) {
        app.add_message::<SaveWorldViewToFile>()
            .add_message::<LoadWorldViewFromFile>()
            .add_message::<StartRecording>()
            .add_message::<StopRecording>()
            .add_message::<SessionFileEvent>()
            .init_resource::<FinishingRecordings>()
            .add_systems(
                Update,
                (request_saves, load_files, stop_recordings, start_recordings)
                    .chain()
                    .before(NacreSystems::Submit),
            )
            .add_systems(
                PostUpdate,
                (collect_saves, record_steps, poll_finished)
                    .chain()
                    .after(NacreSystems::Present),
            );
    }
}

/// Send this to save a view's session to `path` (written atomically: a temporary file, then a
/// rename). A [`SessionFileEvent`] follows.
#[derive(Message, Clone, Debug)]
pub struct SaveWorldViewToFile {
    /// The view entity.
    pub view: Entity,
    /// Where to write the saved session.
    pub path: PathBuf,
}

/// Send this to continue a view from a file written by [`SaveWorldViewToFile`]. A file from
/// another model, model version or format version is refused with a clear
/// [`SessionFileEvent`]; the running session then goes on untouched.
#[derive(Message, Clone, Debug)]
pub struct LoadWorldViewFromFile {
    /// The view entity.
    pub view: Entity,
    /// The saved session.
    pub path: PathBuf,
}

/// Send this to start recording a view into the folder `dir` (created if missing).
#[derive(Message, Clone, Debug)]
pub struct StartRecording {
    /// The view entity.
    pub view: Entity,
    /// The recording's folder.
    pub dir: PathBuf,
    /// Also make `recording.gif` when the recording stops.
    pub gif: bool,
}

/// Send this to stop recording a view. The files are finished in the background; a
/// [`SessionFileEvent`] with [`SessionFileEventKind::RecordingFinished`] follows.
#[derive(Message, Clone, Debug)]
pub struct StopRecording {
    /// The view entity.
    pub view: Entity,
}

/// What happened to a save, load or recording request.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionFileEventKind {
    /// The session was written to this file.
    Saved(PathBuf),
    /// The file was read and checked, and the view continues from it.
    Loaded(PathBuf),
    /// Recording into this folder began.
    RecordingStarted(PathBuf),
    /// A recording is complete.
    RecordingFinished(RecordingSummary),
    /// A request failed; the message says why.
    Failed,
}

/// The outcome of a [`SaveWorldViewToFile`], [`LoadWorldViewFromFile`], [`StartRecording`] or
/// [`StopRecording`], with a sentence for the player.
#[derive(Message, Clone, Debug)]
pub struct SessionFileEvent {
    /// The view entity.
    pub view: Entity,
    /// What happened.
    pub kind: SessionFileEventKind,
    /// A one-line description (the error, for [`SessionFileEventKind::Failed`]).
    pub message: String,
}

/// Present on a view while it is being recorded.
#[derive(Component)]
pub struct ViewRecording {
    recorder: Option<Recorder>,
    dir: PathBuf,
    gif: bool,
    waiting_for_start: bool,
    started: Instant,
    steps: u64,
    frames: u64,
}

impl ViewRecording {
    /// The recording's folder.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Seconds since recording began.
    pub fn seconds(&self) -> f32 {
        self.started.elapsed().as_secs_f32()
    }

    /// Steps logged so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }
}

/// Files a view's pending saves go to, in request order.
#[derive(Component, Default)]
struct PendingFileSaves(Vec<PathBuf>);

/// Recordings being finished in the background.
#[derive(Resource, Default)]
struct FinishingRecordings(Vec<(Entity, Receiver<crate::Result<RecordingSummary>>)>);

/// Asks the worker for the session of each view to be saved to a file; [`collect_saves`]
/// writes it when the answer arrives.
fn request_saves(
    mut commands: Commands,
    mut requests: MessageReader<SaveWorldViewToFile>,
    mut views: Query<Option<&mut PendingFileSaves>, With<WorldView>>,
    mut saves: MessageWriter<SaveWorldView>,
    mut events: MessageWriter<SessionFileEvent>,
) {
    for r in requests.read() {
        let Ok(pending) = views.get_mut(r.view) else {
            fail(
                &mut events,
                r.view,
                format!("cannot save: {} is not a world view", r.view),
            );
            continue;
        };
        match pending {
            Some(mut pending) => pending.0.push(r.path.clone()),
            None => {
                commands
                    .entity(r.view)
                    .insert(PendingFileSaves(vec![r.path.clone()]));
            }
        }
        saves.write(SaveWorldView { view: r.view });
    }
}

/// Reads each file to load and checks it against the view's model before the running session
/// is touched; the worker checks it again when it restores.
fn load_files(
    runtime: Option<Res<NacreRuntime>>,
    mut requests: MessageReader<LoadWorldViewFromFile>,
    views: Query<&WorldView>,
    mut restores: MessageWriter<RestoreWorldView>,
    mut events: MessageWriter<SessionFileEvent>,
) {
    for r in requests.read() {
        let Ok(view) = views.get(r.view) else {
            fail(
                &mut events,
                r.view,
                format!("cannot load: {} is not a world view", r.view),
            );
            continue;
        };
        let checked = std::fs::read(&r.path)
            .map_err(|e| crate::Error::Other(e.to_string()))
            .and_then(|bytes| {
                let saved = session_file::decode(&bytes)?;
                match runtime.as_ref().and_then(|rt| rt.spec(&view.model)) {
                    Some(spec) => saved.check_model(spec)?,
                    None => {
                        return Err(crate::Error::Other(format!(
                            "model '{}' is not loaded yet",
                            view.model
                        )));
                    }
                }
                Ok(bytes)
            });
        match checked {
            Ok(bytes) => {
                restores.write(RestoreWorldView {
                    view: r.view,
                    saved: bytes,
                });
                events.write(SessionFileEvent {
                    view: r.view,
                    kind: SessionFileEventKind::Loaded(r.path.clone()),
                    message: format!("loaded {}", r.path.display()),
                });
            }
            Err(e) => fail(
                &mut events,
                r.view,
                format!("cannot load {}: {e}", r.path.display()),
            ),
        }
    }
}

/// Stops recordings: their files are finished in the background ([`poll_finished`] reports).
fn stop_recordings(
    mut commands: Commands,
    mut requests: MessageReader<StopRecording>,
    mut views: Query<&mut ViewRecording>,
    mut finishing: ResMut<FinishingRecordings>,
    mut events: MessageWriter<SessionFileEvent>,
) {
    for r in requests.read() {
        let Ok(mut recording) = views.get_mut(r.view) else {
            fail(&mut events, r.view, "not recording".into());
            continue;
        };
        if let Some(recorder) = recording.recorder.take() {
            let rx = recorder.finish_in_background(recording.gif);
            finishing.0.push((r.view, rx));
        }
        commands.entity(r.view).remove::<ViewRecording>();
    }
}

/// Starts recordings: the recorder's folder is created, and the session is saved as its start.
fn start_recordings(
    mut commands: Commands,
    runtime: Option<Res<NacreRuntime>>,
    mut requests: MessageReader<StartRecording>,
    views: Query<(&WorldView, Has<ViewRecording>)>,
    mut saves: MessageWriter<SaveWorldView>,
    mut events: MessageWriter<SessionFileEvent>,
) {
    for r in requests.read() {
        let Ok((view, recording)) = views.get(r.view) else {
            fail(
                &mut events,
                r.view,
                format!("cannot record: {} is not a world view", r.view),
            );
            continue;
        };
        if recording {
            fail(&mut events, r.view, "already recording; stop first".into());
            continue;
        }
        let Some(spec) = runtime.as_ref().and_then(|rt| rt.spec(&view.model)) else {
            fail(
                &mut events,
                r.view,
                format!("cannot record: model '{}' is not loaded yet", view.model),
            );
            continue;
        };
        match Recorder::create(&r.dir, spec) {
            Ok(recorder) => {
                commands.entity(r.view).insert(ViewRecording {
                    dir: recorder.dir().to_path_buf(),
                    recorder: Some(recorder),
                    gif: r.gif,
                    waiting_for_start: true,
                    started: Instant::now(),
                    steps: 0,
                    frames: 0,
                });
                saves.write(SaveWorldView { view: r.view });
                events.write(SessionFileEvent {
                    view: r.view,
                    kind: SessionFileEventKind::RecordingStarted(r.dir.clone()),
                    message: format!("recording into {}", r.dir.display()),
                });
            }
            Err(e) => fail(
                &mut events,
                r.view,
                format!("cannot record into {}: {e}", r.dir.display()),
            ),
        }
    }
}

/// Writes answered saves to their files, and hands the first save of a new recording to it.
fn collect_saves(
    mut commands: Commands,
    mut saved: MessageReader<WorldViewSaved>,
    mut views: Query<(Option<&mut PendingFileSaves>, Option<&mut ViewRecording>)>,
    mut events: MessageWriter<SessionFileEvent>,
) {
    for s in saved.read() {
        let Ok((pending, recording)) = views.get_mut(s.view) else {
            continue;
        };
        if let Some(mut pending) = pending
            && !pending.0.is_empty()
        {
            let path = pending.0.remove(0);
            let (kind, message) = match &s.result {
                Ok(bytes) => match files::write_atomic(&path, bytes) {
                    Ok(()) => (
                        SessionFileEventKind::Saved(path.clone()),
                        format!("saved {}", path.display()),
                    ),
                    Err(e) => (SessionFileEventKind::Failed, format!("cannot save: {e}")),
                },
                Err(e) => (
                    SessionFileEventKind::Failed,
                    format!("cannot save {}: {e}", path.display()),
                ),
            };
            if kind == SessionFileEventKind::Failed {
                warn!("bevy_nacre: {message}");
            }
            events.write(SessionFileEvent {
                view: s.view,
                kind,
                message,
            });
        }
        if let Some(mut recording) = recording
            && recording.waiting_for_start
        {
            recording.waiting_for_start = false;
            match (&s.result, &recording.recorder) {
                (Ok(bytes), Some(recorder)) => recorder.set_start(bytes.clone()),
                (Err(e), _) => {
                    let message = format!("recording stopped: the session could not be saved: {e}");
                    warn!("bevy_nacre: {message}");
                    events.write(SessionFileEvent {
                        view: s.view,
                        kind: SessionFileEventKind::Failed,
                        message,
                    });
                    commands.entity(s.view).remove::<ViewRecording>();
                }
                _ => {}
            }
        }
    }
}

/// Feeds every step and every shown frame of recorded views to their recorders.
fn record_steps(
    mut steps: MessageReader<WorldViewAudio>,
    mut frames: MessageReader<WorldViewFrame>,
    images: Res<Assets<Image>>,
    mut views: Query<(&WorldView, &mut ViewRecording)>,
) {
    for step in steps.read() {
        if let Ok((_, mut rec)) = views.get_mut(step.view)
            && let Some(recorder) = &rec.recorder
        {
            recorder.add_step(step.index, &step.input, &step.chunk.samples);
            rec.steps += 1;
        }
    }
    for frame in frames.read() {
        let Ok((view, mut rec)) = views.get_mut(frame.view) else {
            continue;
        };
        // The plugin has just moved the frame into the image; it is still in the main world
        // until the render world extracts it at the end of this update.
        let Some(image) = images.get(&view.image) else {
            continue;
        };
        let Some(data) = &image.data else {
            continue;
        };
        let size = image.texture_descriptor.size;
        if let Some(recorder) = &rec.recorder {
            recorder.add_frame(
                frame.index,
                Frame {
                    width: size.width,
                    height: size.height,
                    rgba: data.clone(),
                },
            );
            rec.frames += 1;
        }
    }
}

/// Reports recordings whose files are complete.
fn poll_finished(
    mut finishing: ResMut<FinishingRecordings>,
    mut events: MessageWriter<SessionFileEvent>,
) {
    finishing.0.retain(|(view, rx)| match rx.try_recv() {
        Ok(result) => {
            let (kind, message) = match result {
                Ok(summary) => {
                    let message = format!(
                        "recorded {} steps, {} frames, {:.1} s of sound into {}{}",
                        summary.steps,
                        summary.frames,
                        summary.audio_seconds,
                        summary.dir.display(),
                        if summary.missed_steps > 0 {
                            format!(
                                " ({} steps missed; the log stops there)",
                                summary.missed_steps
                            )
                        } else {
                            String::new()
                        }
                    );
                    (SessionFileEventKind::RecordingFinished(summary), message)
                }
                Err(e) => (
                    SessionFileEventKind::Failed,
                    format!("recording failed: {e}"),
                ),
            };
            events.write(SessionFileEvent {
                view: *view,
                kind,
                message,
            });
            false
        }
        Err(crossbeam_channel::TryRecvError::Empty) => true,
        Err(crossbeam_channel::TryRecvError::Disconnected) => false,
    });
}

fn fail(events: &mut MessageWriter<SessionFileEvent>, view: Entity, message: String) {
    warn!("bevy_nacre: {message}");
    events.write(SessionFileEvent {
        view,
        kind: SessionFileEventKind::Failed,
        message,
    });
}
