//! The inference worker: a named OS thread that owns the candle device and the loaded models,
//! and steps every session off the game's thread.
//!
//! The game talks to it through [`Worker`] and [`SessionHandle`]: commands go in over one bounded
//! crossbeam channel (sending never blocks; a full queue is an error the caller sees), frames come
//! back through a per-session mailbox where the newest frame wins, and everything else
//! (models loaded, errors) comes back as [`WorkerEvent`]s.

pub(crate) mod mailbox;
mod runtime;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use candle_core::Device;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use serde::{Deserialize, Serialize};

use crate::action::{Action, Controls};
use crate::device::DevicePreference;
use crate::error::{Error, Result};
use crate::frame::{AudioChunk, Frame};
use crate::spec::ModelSpec;
use crate::world_model::{Prompt, StepInput, StepTimings, WorldModel};
use mailbox::{MailboxReceiver, MailboxSender, mailbox};

/// Name of a loaded model inside one worker, e.g. `"default"`.
pub type ModelId = String;

/// Identifies a session inside one worker.
pub type SessionId = u64;

/// Builds a model on the worker thread, given the device the worker chose.
pub type ModelLoader = Box<dyn FnOnce(&Device) -> Result<Arc<dyn WorldModel>> + Send>;

/// How often the worker steps a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Pacing {
    /// At the frame rate the model declares ([`ModelSpec::fps`]).
    #[default]
    ModelRate,
    /// At a fixed rate in frames per second.
    Fixed(f32),
    /// As fast as the model can go.
    Free,
    /// Only when asked, one frame per [`SessionHandle::step`] request.
    Manual,
}

/// Settings of the inference worker.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Which device to run on; falls back to the CPU with a message.
    pub device: DevicePreference,
    /// CPU threads that inference may use. `0` means all cores but one, leaving one to the game.
    pub cpu_threads: usize,
    /// Commands that can wait in the queue before sending fails.
    pub command_capacity: usize,
    /// Finished frames kept per session before the oldest is dropped.
    pub frame_capacity: usize,
    /// How long shutting down waits for a model step in progress before giving up on the thread.
    pub shutdown_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            device: DevicePreference::Auto,
            cpu_threads: 0,
            command_capacity: 1024,
            frame_capacity: 2,
            shutdown_timeout: Duration::from_secs(1),
        }
    }
}

impl WorkerConfig {
    /// The thread count that `cpu_threads` resolves to on this machine.
    pub fn resolved_cpu_threads(&self) -> usize {
        if self.cpu_threads > 0 {
            return self.cpu_threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores.saturating_sub(1).max(1)
    }
}

/// A finished frame, as delivered to the game.
#[derive(Clone, Debug)]
pub struct GeneratedFrame {
    /// The session it belongs to.
    pub session: SessionId,
    /// Which start of the session produced it (restarts count up), so frames from before a
    /// restart are never shown after it.
    pub generation: u32,
    /// Index of the frame within the session (0 for the first generated frame).
    pub index: u64,
    /// The picture. (Its sound arrives separately, as an [`AudioPacket`], so that no chunk is
    /// lost when a newer frame replaces this one.)
    pub frame: Frame,
    /// Wall time of the model call that made it, measured by the worker (for a batch, the whole
    /// batch's).
    pub compute: Duration,
    /// The model's own breakdown of the step's time.
    pub timings: StepTimings,
    /// When the newest input this frame used was sampled by the game (`None` if no new input
    /// arrived since the previous frame).
    pub input_sampled_at: Option<Instant>,
    /// When the worker finished the frame.
    pub finished_at: Instant,
}

/// One step's sound and the input that made it, delivered separately from pictures so that no
/// chunk is lost when a newer picture replaces an older one. One packet is sent for every step
/// (with an empty chunk for silent models), so the inputs form a complete log of the session.
#[derive(Clone, Debug)]
pub struct AudioPacket {
    /// Which start of the session produced it.
    pub generation: u32,
    /// Index of the frame it belongs to.
    pub index: u64,
    /// The samples (empty for a silent model).
    pub chunk: AudioChunk,
    /// The exact action and controls the model stepped with (buttons latched, triggers armed),
    /// so the step can be replayed bit for bit.
    pub input: StepInput,
}

/// Sound chunks kept per session before the oldest is dropped (about 3 s at 20 frames/s).
const AUDIO_CAPACITY: usize = 64;

/// Things the worker tells the game, other than frames.
#[derive(Clone, Debug)]
pub enum WorkerEvent {
    /// The worker picked its device; `fallback` says why it is not the one asked for.
    DeviceChosen {
        /// Device name (`cpu`, `cuda`, `metal`).
        device: String,
        /// Why the preference was not honoured, if it was not.
        fallback: Option<String>,
    },
    /// A model finished loading.
    ModelLoaded {
        /// Its id.
        model: ModelId,
        /// What it declares.
        spec: ModelSpec,
    },
    /// A model could not be loaded.
    ModelFailed {
        /// Its id.
        model: ModelId,
        /// Why.
        error: String,
    },
    /// A session started or was restored, and will produce frames.
    SessionStarted {
        /// The session.
        session: SessionId,
        /// Its generation (see [`GeneratedFrame::generation`]).
        generation: u32,
    },
    /// A session failed (error or panic inside the model, bad output, bad saved state). It
    /// produces no more frames until it is restarted.
    SessionFailed {
        /// The session.
        session: SessionId,
        /// What went wrong.
        error: String,
    },
}

/// Commands from the game to the worker thread.
pub(crate) enum Command {
    LoadModel {
        model: ModelId,
        loader: ModelLoader,
    },
    Start {
        session: SessionId,
        generation: u32,
        model: ModelId,
        start: SessionStart,
        pacing: Pacing,
        frames: MailboxSender<GeneratedFrame>,
        audio: MailboxSender<AudioPacket>,
    },
    Input {
        session: SessionId,
        action: Action,
        sampled_at: Instant,
    },
    SetControls {
        session: SessionId,
        controls: Controls,
    },
    SetPacing {
        session: SessionId,
        pacing: Pacing,
    },
    Step {
        session: SessionId,
        count: u32,
    },
    Save {
        session: SessionId,
        reply: Sender<Result<Vec<u8>>>,
    },
    Stop {
        session: SessionId,
    },
    Shutdown,
}

/// How a session begins: from a prompt, or from saved bytes.
pub(crate) enum SessionStart {
    Prompt(Prompt),
    Saved(Vec<u8>),
}

/// The game's handle on the inference worker. Dropping it stops the worker and joins its thread
/// (waiting at most [`WorkerConfig::shutdown_timeout`]).
pub struct Worker {
    commands: Sender<Command>,
    events: Receiver<WorkerEvent>,
    finished: Receiver<()>,
    thread: Option<JoinHandle<()>>,
    next_session: AtomicU64,
    config: WorkerConfig,
}

impl Worker {
    /// Starts the worker thread (named `nacre-inference`).
    pub fn spawn(config: WorkerConfig) -> Result<Self> {
        let (commands, command_rx) = bounded(config.command_capacity.max(1));
        let (event_tx, events) = bounded(4096);
        let (finished_tx, finished) = bounded(1);
        let threads = config.resolved_cpu_threads();
        let device = config.device;
        let thread = std::thread::Builder::new()
            .name("nacre-inference".into())
            .spawn(move || {
                runtime::run(device, threads, command_rx, event_tx);
                let _ = finished_tx.send(());
            })
            .map_err(|e| Error::Worker(format!("could not start the inference thread: {e}")))?;
        Ok(Self {
            commands,
            events,
            finished,
            thread: Some(thread),
            next_session: AtomicU64::new(1),
            config,
        })
    }

    /// The settings the worker was started with.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Loads a model on the worker thread. A [`WorkerEvent::ModelLoaded`] or
    /// [`WorkerEvent::ModelFailed`] follows; sessions of the model may be started right away.
    pub fn load_model(
        &self,
        model: impl Into<ModelId>,
        loader: impl FnOnce(&Device) -> Result<Arc<dyn WorldModel>> + Send + 'static,
    ) -> Result<()> {
        self.send(Command::LoadModel {
            model: model.into(),
            loader: Box::new(loader),
        })
    }

    /// Starts a session of `model` and returns its handle at once; frames follow.
    pub fn start_session(
        &self,
        model: impl Into<ModelId>,
        prompt: Prompt,
        pacing: Pacing,
    ) -> Result<SessionHandle> {
        let handle = self.new_handle(model.into(), pacing);
        handle.restart(prompt)?;
        Ok(handle)
    }

    /// Continues a session from bytes written by [`SessionHandle::save`].
    pub fn restore_session(
        &self,
        model: impl Into<ModelId>,
        saved: Vec<u8>,
        pacing: Pacing,
    ) -> Result<SessionHandle> {
        let handle = self.new_handle(model.into(), pacing);
        handle.restore(saved)?;
        Ok(handle)
    }

    fn new_handle(&self, model: ModelId, pacing: Pacing) -> SessionHandle {
        let (frames_tx, frames) = mailbox(self.config.frame_capacity);
        let (audio_tx, audio) = mailbox(AUDIO_CAPACITY);
        SessionHandle {
            audio_tx,
            audio,
            id: self.next_session.fetch_add(1, Ordering::Relaxed),
            model,
            pacing,
            commands: self.commands.clone(),
            frames_tx,
            frames,
            generation: Arc::new(AtomicU32::new(0)),
            inputs_dropped: AtomicU64::new(0),
        }
    }

    /// The next event, if one is waiting.
    pub fn try_event(&self) -> Option<WorkerEvent> {
        self.events.try_recv().ok()
    }

    /// Waits up to `timeout` for the next event.
    pub fn event_timeout(&self, timeout: Duration) -> Option<WorkerEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Whether the worker thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the worker: asks the thread to finish, waits up to the shutdown timeout, and joins
    /// it. Returns `true` if the thread was joined, `false` if it was still busy in a model step
    /// after the timeout (it is then left to finish on its own; it holds nothing the game needs).
    pub fn shutdown(&mut self) -> bool {
        let Some(thread) = self.thread.take() else {
            return true;
        };
        let _ = self
            .commands
            .send_timeout(Command::Shutdown, self.config.shutdown_timeout);
        if thread.is_finished()
            || self
                .finished
                .recv_timeout(self.config.shutdown_timeout)
                .is_ok()
        {
            let _ = thread.join();
            true
        } else {
            tracing::warn!(
                "bevy_nacre: the inference worker did not stop within {:?}; leaving it to finish",
                self.config.shutdown_timeout
            );
            false
        }
    }

    fn send(&self, command: Command) -> Result<()> {
        send_command(&self.commands, command)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn send_command(commands: &Sender<Command>, command: Command) -> Result<()> {
    commands.try_send(command).map_err(|e| match e {
        TrySendError::Full(_) => Error::Worker("command queue is full".into()),
        TrySendError::Disconnected(_) => Error::Worker("the inference worker has stopped".into()),
    })
}

/// The game's handle on one session. Dropping it stops the session.
pub struct SessionHandle {
    id: SessionId,
    model: ModelId,
    pacing: Pacing,
    commands: Sender<Command>,
    frames_tx: MailboxSender<GeneratedFrame>,
    frames: MailboxReceiver<GeneratedFrame>,
    audio_tx: MailboxSender<AudioPacket>,
    audio: MailboxReceiver<AudioPacket>,
    generation: Arc<AtomicU32>,
    inputs_dropped: AtomicU64,
}

impl SessionHandle {
    /// The session's id within its worker.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The model it runs.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Sends the player's current input. Never blocks: if the worker's queue is full the input is
    /// dropped (counted in [`inputs_dropped`](Self::inputs_dropped)) and `false` is returned.
    ///
    /// Between two frames, axes take the newest value and buttons stay pressed if they were
    /// pressed in any input, so a quick tap is never missed.
    pub fn send_input(&self, action: Action, sampled_at: Instant) -> bool {
        let ok = send_command(
            &self.commands,
            Command::Input {
                session: self.id,
                action,
                sampled_at,
            },
        )
        .is_ok();
        if !ok {
            self.inputs_dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Inputs that could not be queued.
    pub fn inputs_dropped(&self) -> u64 {
        self.inputs_dropped.load(Ordering::Relaxed)
    }

    /// Changes the director controls from the next frame on. Triggers fire once.
    pub fn set_controls(&self, controls: Controls) -> Result<()> {
        send_command(
            &self.commands,
            Command::SetControls {
                session: self.id,
                controls,
            },
        )
    }

    /// Changes how often the session is stepped.
    pub fn set_pacing(&mut self, pacing: Pacing) -> Result<()> {
        self.pacing = pacing;
        send_command(
            &self.commands,
            Command::SetPacing {
                session: self.id,
                pacing,
            },
        )
    }

    /// With [`Pacing::Manual`], asks for `count` more frames.
    pub fn step(&self, count: u32) -> Result<()> {
        send_command(
            &self.commands,
            Command::Step {
                session: self.id,
                count,
            },
        )
    }

    /// Asks for the session's saved state; the answer (bytes in the
    /// [saved-session format](crate::session_file)) arrives on the returned channel.
    pub fn save(&self) -> Result<Receiver<Result<Vec<u8>>>> {
        let (reply, rx) = bounded(1);
        send_command(
            &self.commands,
            Command::Save {
                session: self.id,
                reply,
            },
        )?;
        Ok(rx)
    }

    /// Starts the session again from `prompt` (after an error, or to begin anew). Frames from
    /// before the restart are discarded.
    pub fn restart(&self, prompt: Prompt) -> Result<()> {
        self.begin(SessionStart::Prompt(prompt))
    }

    /// Replaces the session's state with saved bytes from [`save`](Self::save). A file from
    /// another model or version ends in [`WorkerEvent::SessionFailed`] with a clear message.
    pub fn restore(&self, saved: Vec<u8>) -> Result<()> {
        self.begin(SessionStart::Saved(saved))
    }

    fn begin(&self, start: SessionStart) -> Result<()> {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        send_command(
            &self.commands,
            Command::Start {
                session: self.id,
                generation,
                model: self.model.clone(),
                start,
                pacing: self.pacing,
                frames: self.frames_tx.clone(),
                audio: self.audio_tx.clone(),
            },
        )
    }

    /// The newest finished frame of the current generation, if a new one arrived. Older
    /// waiting frames are skipped and counted as dropped.
    pub fn latest_frame(&self) -> Option<GeneratedFrame> {
        let current = self.generation.load(Ordering::Acquire);
        self.frames.latest().filter(|f| f.generation == current)
    }

    /// The oldest waiting frame of the current generation, waiting up to `timeout`. For
    /// consumers that want every frame (recorders, tests, benchmarks).
    pub fn next_frame_timeout(&self, timeout: Duration) -> Option<GeneratedFrame> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = self.frames.next_timeout(left)?;
            if frame.generation == self.generation.load(Ordering::Acquire) {
                return Some(frame);
            }
        }
    }

    /// Every sound chunk of the current generation that arrived since the last call, oldest
    /// first.
    pub fn drain_audio(&self) -> Vec<AudioPacket> {
        let current = self.generation.load(Ordering::Acquire);
        std::iter::from_fn(|| self.audio.next())
            .filter(|p| p.generation == current)
            .collect()
    }

    /// Frames that were generated but never handed to the game because newer ones replaced them.
    pub fn dropped_frames(&self) -> u64 {
        self.frames.dropped()
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        let _ = send_command(&self.commands, Command::Stop { session: self.id });
    }
}
