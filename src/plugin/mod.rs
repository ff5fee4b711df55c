//! The Bevy plugin: [`NacrePlugin`] runs the inference worker, starts a session for every
//! [`WorldView`], sends it the player's input and writes its frames into the view's image.
//!
//! Each frame, in three system sets users can order their own systems against:
//!
//! 1. [`NacreSystems::Input`] (`PreUpdate`, after Bevy's input): worker events are handled,
//!    sessions started, and [`ActionState`] read from the bindings.
//! 2. [`NacreSystems::Submit`] (`Update`): each view's action and changed controls go to the
//!    worker. Systems that drive a view themselves run in `Update` before this set.
//! 3. [`NacreSystems::Present`] (`PostUpdate`): the newest finished frame of each view is moved
//!    into its `Image` (only when a new one arrived), sound chunks and messages are sent, and
//!    [`WorldViewStats`] updated.
//!
//! The game never waits for the network: every call into the worker is a non-blocking channel
//! operation.

mod capture;
mod input;
mod material;
mod session_io;
mod snapshot;
mod stats;
mod view;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bevy::app::AppExit;
use bevy::input::InputSystems;
use bevy::prelude::*;
use bevy::render::render_resource::Extent3d;
use candle_core::Device;

pub use capture::{
    Capture, CaptureAudio, CaptureDriver, CaptureEpisodeStarted, CaptureFinished, CaptureOutcome,
    CapturePlugin, CaptureStatus, CaptureSystems,
};
pub use input::{ActionBindings, ActionState, Binding, InputSource};
pub use material::WorldViewMaterial;
pub use session_io::{
    LoadWorldViewFromFile, SaveWorldViewToFile, SessionFileEvent, SessionFileEventKind,
    SessionFilesPlugin, StartRecording, StopRecording, ViewRecording,
};
pub use snapshot::{SNAPSHOT_MAX_FRAMES, SnapshotTaken, TakeSnapshot, readable_target};
pub use stats::{ViewStatus, WorldViewStats};
pub use view::{
    RestartWorldView, RestoreWorldView, SaveWorldView, ViewControls, ViewSession, WorldView,
    WorldViewAudio, WorldViewError, WorldViewFrame, WorldViewSaved, view_image,
};

use crate::error::Result;
use crate::spec::ModelSpec;
use crate::worker::{SessionId, Worker, WorkerConfig, WorkerEvent};
use crate::world_model::WorldModel;

/// The plugin's public types: `use bevy_nacre::plugin::prelude::*;`.
pub mod prelude {
    pub use super::{
        ActionBindings, ActionState, InputSource, NacreAppExt, NacrePlugin, NacreRuntime,
        NacreSystems, RestartWorldView, RestoreWorldView, SaveWorldView, ViewControls, ViewSession,
        ViewStatus, WorldView, WorldViewAudio, WorldViewError, WorldViewFrame, WorldViewSaved,
        WorldViewStats, view_image,
    };
    pub use super::{
        Capture, CaptureAudio, CaptureDriver, CaptureEpisodeStarted, CaptureFinished,
        CaptureOutcome, CapturePlugin, CaptureStatus, CaptureSystems, SnapshotTaken, TakeSnapshot,
        readable_target,
    };
    pub use super::{
        LoadWorldViewFromFile, SaveWorldViewToFile, SessionFileEvent, SessionFileEventKind,
        SessionFilesPlugin, StartRecording, StopRecording, ViewRecording, WorldViewMaterial,
    };
}

/// Runs world models for [`WorldView`]s. Add it once; register models with
/// [`NacreAppExt::add_world_model`].
#[derive(Default)]
pub struct NacrePlugin {
    /// Settings of the inference worker (device, CPU threads, queue sizes).
    pub worker: WorkerConfig,
}

/// The phases of bevy_nacre's work in a frame. See the [module docs](self).
#[derive(SystemSet, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NacreSystems {
    /// `PreUpdate`: worker events, session start-up, input devices to [`ActionState`].
    Input,
    /// `Update`: actions and controls to the worker.
    Submit,
    /// `PostUpdate`: finished frames into images, sound and messages out, statistics.
    Present,
}

impl Plugin for NacrePlugin {
    fn build(&self, app: &mut App) {
        let worker = match Worker::spawn(self.worker.clone()) {
            Ok(worker) => worker,
            Err(e) => {
                error!("bevy_nacre: {e}; world views will stay black");
                return;
            }
        };
        app.insert_resource(NacreRuntime {
            worker,
            specs: HashMap::new(),
            model_errors: HashMap::new(),
            sessions: HashMap::new(),
            device: None,
        })
        .add_message::<WorldViewFrame>()
        .add_message::<WorldViewAudio>()
        .add_message::<WorldViewError>()
        .add_message::<RestartWorldView>()
        .add_message::<SaveWorldView>()
        .add_message::<WorldViewSaved>()
        .add_message::<RestoreWorldView>()
        .configure_sets(PreUpdate, NacreSystems::Input.after(InputSystems))
        .configure_sets(Update, NacreSystems::Submit)
        .configure_sets(PostUpdate, NacreSystems::Present)
        .add_systems(
            PreUpdate,
            (
                handle_worker_events,
                start_sessions,
                handle_view_requests,
                input::read_input,
            )
                .chain()
                .in_set(NacreSystems::Input),
        )
        .add_systems(Update, submit.in_set(NacreSystems::Submit))
        .add_systems(
            PostUpdate,
            (present, material::touch_materials)
                .chain()
                .in_set(NacreSystems::Present),
        )
        .add_systems(Last, stop_worker_on_exit);
    }
}

/// Registers world models with the app.
pub trait NacreAppExt {
    /// Loads a model on the inference worker under `id`; [`WorldView`]s name it by that id.
    /// The loader runs on the worker thread with the worker's device. Needs [`NacrePlugin`].
    fn add_world_model(
        &mut self,
        id: impl Into<String>,
        loader: impl FnOnce(&Device) -> Result<Arc<dyn WorldModel>> + Send + 'static,
    ) -> &mut Self;
}

impl NacreAppExt for App {
    fn add_world_model(
        &mut self,
        id: impl Into<String>,
        loader: impl FnOnce(&Device) -> Result<Arc<dyn WorldModel>> + Send + 'static,
    ) -> &mut Self {
        let id = id.into();
        match self.world().get_resource::<NacreRuntime>() {
            Some(runtime) => {
                if let Err(e) = runtime.worker.load_model(id.clone(), loader) {
                    error!("bevy_nacre: could not queue model '{id}': {e}");
                }
            }
            None => error!("bevy_nacre: add NacrePlugin before adding world model '{id}'"),
        }
        self
    }
}

/// The inference worker and what the game knows about its models.
#[derive(Resource)]
pub struct NacreRuntime {
    worker: Worker,
    specs: HashMap<String, ModelSpec>,
    model_errors: HashMap<String, String>,
    sessions: HashMap<SessionId, Entity>,
    device: Option<(String, Option<String>)>,
}

impl NacreRuntime {
    /// The worker, for loading models at run time or running sessions outside of views.
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// The spec of a loaded model.
    pub fn spec(&self, model: &str) -> Option<&ModelSpec> {
        self.specs.get(model)
    }

    /// Why a model failed to load, if it did.
    pub fn model_error(&self, model: &str) -> Option<&str> {
        self.model_errors.get(model).map(String::as_str)
    }

    /// The device the worker runs on (`cpu`, `cuda`, `metal`), once it has chosen.
    pub fn device(&self) -> Option<&str> {
        self.device.as_ref().map(|(d, _)| d.as_str())
    }
}

fn handle_worker_events(
    mut runtime: ResMut<NacreRuntime>,
    mut views: Query<(&WorldView, &ViewSession, &mut WorldViewStats)>,
    mut errors: MessageWriter<WorldViewError>,
) {
    while let Some(event) = runtime.worker.try_event() {
        match event {
            WorkerEvent::DeviceChosen { device, fallback } => {
                info!("bevy_nacre: inference runs on {device}");
                runtime.device = Some((device, fallback));
            }
            WorkerEvent::ModelLoaded { model, spec } => {
                info!(
                    "bevy_nacre: model '{model}' loaded ({} {}, {}x{} at {} frames/s)",
                    spec.name, spec.version, spec.width, spec.height, spec.fps
                );
                runtime.model_errors.remove(&model);
                runtime.specs.insert(model, spec);
            }
            WorkerEvent::ModelFailed { model, error } => {
                runtime.model_errors.insert(model, error);
            }
            WorkerEvent::SessionStarted { .. } => {}
            WorkerEvent::SessionFailed { session, error } => {
                let Some(&entity) = runtime.sessions.get(&session) else {
                    continue;
                };
                let Ok((view, session, mut stats)) = views.get_mut(entity) else {
                    continue;
                };
                stats.record_error(&error);
                errors.write(WorldViewError {
                    view: entity,
                    message: error,
                });
                if view.restart_on_error {
                    if let Err(e) = session.handle.restart(view.prompt.clone()) {
                        warn!("bevy_nacre: could not restart view {entity}: {e}");
                    } else {
                        stats.status = ViewStatus::Starting;
                    }
                }
            }
        }
    }
}

/// Starts a session for each view whose model is loaded and that has none yet.
#[allow(clippy::type_complexity)]
fn start_sessions(
    mut commands: Commands,
    mut runtime: ResMut<NacreRuntime>,
    mut images: ResMut<Assets<Image>>,
    mut views: Query<
        (
            Entity,
            &WorldView,
            &mut ActionState,
            &mut ViewControls,
            &mut WorldViewStats,
        ),
        Without<ViewSession>,
    >,
    mut errors: MessageWriter<WorldViewError>,
) {
    for (entity, view, mut actions, mut controls, mut stats) in &mut views {
        let Some(spec) = runtime.specs.get(&view.model).cloned() else {
            if let Some(e) = runtime.model_errors.get(&view.model)
                && stats.status != ViewStatus::Failed
            {
                let message = format!("model '{}' failed to load: {e}", view.model);
                stats.record_error(&message);
                errors.write(WorldViewError {
                    view: entity,
                    message,
                });
            }
            continue;
        };
        actions.reset_channels(&spec.actions);
        // Controls that do not fit fail the session on the worker, which reports why.
        let start_controls = spec
            .start_controls(view.prompt.controls.as_ref())
            .unwrap_or_else(|_| spec.default_controls());
        *controls.bypass_change_detection() = ViewControls::new(&spec.controls, &start_controls);
        if let Some(mut image) = images.get_mut(&view.image) {
            fit_image(&mut image, spec.width, spec.height);
        }
        match runtime
            .worker
            .start_session(view.model.clone(), view.prompt.clone(), view.pacing)
        {
            Ok(handle) => {
                runtime.sessions.insert(handle.id(), entity);
                stats.status = ViewStatus::Starting;
                commands.entity(entity).insert(ViewSession {
                    handle,
                    pending_save: None,
                });
            }
            Err(e) => {
                stats.record_error(&e.to_string());
                errors.write(WorldViewError {
                    view: entity,
                    message: e.to_string(),
                });
            }
        }
    }
}

/// Restart, save and restore requests.
fn handle_view_requests(
    mut restarts: MessageReader<RestartWorldView>,
    mut saves: MessageReader<SaveWorldView>,
    mut restores: MessageReader<RestoreWorldView>,
    mut views: Query<(&WorldView, &mut ViewSession, &mut WorldViewStats)>,
    mut errors: MessageWriter<WorldViewError>,
) {
    let mut report = |view: Entity, stats: &mut WorldViewStats, e: crate::Error| {
        stats.record_error(&e.to_string());
        errors.write(WorldViewError {
            view,
            message: e.to_string(),
        });
    };
    for r in restarts.read() {
        if let Ok((view, session, mut stats)) = views.get_mut(r.view) {
            let prompt = r.prompt.clone().unwrap_or_else(|| view.prompt.clone());
            match session.handle.restart(prompt) {
                Ok(()) => stats.status = ViewStatus::Starting,
                Err(e) => report(r.view, &mut stats, e),
            }
        }
    }
    for s in saves.read() {
        if let Ok((_, mut session, mut stats)) = views.get_mut(s.view) {
            match session.handle.save() {
                Ok(rx) => session.pending_save = Some(rx),
                Err(e) => report(s.view, &mut stats, e),
            }
        }
    }
    for r in restores.read() {
        if let Ok((_, session, mut stats)) = views.get_mut(r.view) {
            match session.handle.restore(r.saved.clone()) {
                Ok(()) => stats.status = ViewStatus::Starting,
                Err(e) => report(r.view, &mut stats, e),
            }
        }
    }
}

/// Sends each view's action, and its controls when they changed.
fn submit(mut views: Query<(&ActionState, Mut<ViewControls>, &ViewSession)>) {
    for (actions, mut controls, session) in &mut views {
        if actions.channels().is_empty() {
            continue;
        }
        let sampled_at = actions.sampled_at().unwrap_or_else(Instant::now);
        session.handle.send_input(actions.to_action(), sampled_at);
        if controls.is_changed() && !controls.specs().is_empty() {
            if let Err(e) = session.handle.set_controls(controls.to_controls()) {
                warn!("bevy_nacre: controls not sent: {e}");
                continue;
            }
            controls.bypass_change_detection().disarm_triggers();
        }
    }
}

/// Moves the newest finished frame of each view into its image, and reports sound, saves and
/// statistics.
#[allow(clippy::type_complexity)]
fn present(
    mut images: ResMut<Assets<Image>>,
    mut views: Query<(Entity, &WorldView, &mut ViewSession, &mut WorldViewStats)>,
    mut frames: MessageWriter<WorldViewFrame>,
    mut audio: MessageWriter<WorldViewAudio>,
    mut saved: MessageWriter<WorldViewSaved>,
) {
    let now = Instant::now();
    for (entity, view, mut session, mut stats) in &mut views {
        for packet in session.handle.drain_audio() {
            audio.write(WorldViewAudio {
                view: entity,
                index: packet.index,
                chunk: packet.chunk,
                input: packet.input,
            });
        }
        if let Some(rx) = &session.pending_save
            && let Ok(result) = rx.try_recv()
        {
            saved.write(WorldViewSaved {
                view: entity,
                result: result.map_err(|e| e.to_string()),
            });
            session.pending_save = None;
        }
        stats.dropped_frames = session.handle.dropped_frames();
        stats.inputs_dropped = session.handle.inputs_dropped();
        let Some(generated) = session.handle.latest_frame() else {
            continue;
        };
        if let Some(mut image) = images.get_mut(&view.image) {
            let frame = generated.frame;
            fit_image(&mut image, frame.width, frame.height);
            image.data = Some(frame.rgba);
        }
        stats.record_frame(
            now,
            generated.index,
            generated.input_sampled_at,
            generated.compute,
        );
        frames.write(WorldViewFrame {
            view: entity,
            index: generated.index,
        });
    }
}

/// Gives `image` the size of the model's frames (a cheap no-op when it already has it).
fn fit_image(image: &mut Image, width: u32, height: u32) {
    let size = Extent3d {
        width,
        height,
        depth_or_array_layers: 1,
    };
    if image.texture_descriptor.size != size {
        image.texture_descriptor.size = size;
        image.data = Some(vec![0; width as usize * height as usize * 4]);
    }
}

fn stop_worker_on_exit(mut exits: MessageReader<AppExit>, runtime: Option<ResMut<NacreRuntime>>) {
    if exits.read().next().is_some()
        && let Some(mut runtime) = runtime
    {
        runtime.worker.shutdown();
    }
}
