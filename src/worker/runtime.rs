//! The loop that runs on the `nacre-inference` thread.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::mailbox::MailboxSender;
use super::{
    AudioPacket, Command, GeneratedFrame, ModelId, Pacing, SessionId, SessionStart, WorkerEvent,
};
use crate::action::{Action, Controls};
use crate::device::{DevicePreference, choose_device, device_name};
use crate::error::{Error, Result};
use crate::session_file::{self, SessionHeader};
use crate::spec::ModelSpec;
use crate::world_model::{BatchItem, Session, StepInput, StepOutput, WorldModel, validate_output};

/// The longest time between two paced steps, seconds.
const MAX_PERIOD_S: f64 = 3600.0;

/// The state the worker keeps for one session.
struct Slot {
    generation: u32,
    model_id: ModelId,
    model: Arc<dyn WorldModel>,
    /// `None` after a failure, until the session is restarted.
    session: Option<Box<dyn Session>>,
    /// Newest input, with buttons latched since the previous step.
    action: Action,
    /// Newest input exactly as sent (buttons not latched), to go back to after a step.
    raw_action: Action,
    input_sampled_at: Option<Instant>,
    controls: Controls,
    pacing: Pacing,
    next_due: Instant,
    manual_steps: u64,
    frames: MailboxSender<GeneratedFrame>,
    audio: MailboxSender<AudioPacket>,
}

impl Slot {
    fn spec(&self) -> &ModelSpec {
        self.model.spec()
    }

    fn period(&self) -> Option<Duration> {
        let fps = match self.pacing {
            Pacing::ModelRate => self.spec().fps,
            Pacing::Fixed(fps) => fps,
            Pacing::Free | Pacing::Manual => return None,
        };
        // Any positive rate gives a period, however slow (at most an hour, so no rate from a
        // model's config or a game's setting can overflow a `Duration`).
        (fps > 0.0).then(|| Duration::from_secs_f64((1.0 / fps as f64).min(MAX_PERIOD_S)))
    }

    /// When this session next wants a step (`now` if at once); `None` if it waits for a command.
    fn due_at(&self, now: Instant) -> Option<Instant> {
        self.session.as_ref()?;
        match self.pacing {
            Pacing::Manual => (self.manual_steps > 0).then_some(now),
            Pacing::Free => Some(now),
            Pacing::ModelRate | Pacing::Fixed(_) => Some(self.next_due),
        }
    }

    fn apply_input(&mut self, action: Action, sampled_at: Instant) {
        let Ok(action) = self.model.spec().sanitize_action(&action) else {
            return;
        };
        self.model.spec().latch_buttons(&mut self.action, &action);
        self.raw_action = action;
        self.input_sampled_at = Some(sampled_at);
    }

    fn apply_controls(&mut self, controls: Controls) -> Result<()> {
        let controls = self.model.spec().sanitize_controls(&controls)?;
        self.model
            .spec()
            .arm_triggers(&mut self.controls, &controls);
        Ok(())
    }

    /// After a step: buttons go back to their current state, triggers disarm, pacing advances.
    fn after_step(&mut self, now: Instant) {
        self.action = self.raw_action.clone();
        self.input_sampled_at = None;
        self.model.spec().disarm_triggers(&mut self.controls.values);
        if self.pacing == Pacing::Manual {
            self.manual_steps = self.manual_steps.saturating_sub(1);
        }
        if let Some(period) = self.period() {
            self.next_due += period;
            // Far behind (a slow model, a pause): start counting again from now instead of
            // bursting to catch up.
            if self.next_due + period < now {
                self.next_due = now + period;
            }
        }
    }
}

struct Runtime {
    device: candle_core::Device,
    pool: rayon::ThreadPool,
    models: HashMap<ModelId, Arc<dyn WorldModel>>,
    /// Model load failures, so sessions of a missing model get the real reason.
    failed_models: HashMap<ModelId, String>,
    slots: HashMap<SessionId, Slot>,
    events: Sender<WorkerEvent>,
}

pub(super) fn run(
    device: DevicePreference,
    threads: usize,
    commands: Receiver<Command>,
    events: Sender<WorkerEvent>,
) {
    let chosen = choose_device(device);
    if let Some(why) = &chosen.fallback {
        tracing::warn!("bevy_nacre: {why}");
    }
    let _ = events.try_send(WorkerEvent::DeviceChosen {
        device: device_name(&chosen.device),
        fallback: chosen.fallback.clone(),
    });
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("nacre-infer-{i}"))
        .build()
    {
        Ok(pool) => pool,
        Err(e) => {
            tracing::error!("bevy_nacre: could not build the inference thread pool: {e}");
            return;
        }
    };
    let mut rt = Runtime {
        device: chosen.device,
        pool,
        models: HashMap::new(),
        failed_models: HashMap::new(),
        slots: HashMap::new(),
        events,
    };
    loop {
        // Wait for a command until the next session is due; then drain everything queued.
        let now = Instant::now();
        let next_due = rt.slots.values().filter_map(|s| s.due_at(now)).min();
        let first = match next_due {
            Some(due) => {
                let wait = due.saturating_duration_since(Instant::now());
                if wait.is_zero() {
                    commands.try_recv().map_err(|_| RecvTimeoutError::Timeout)
                } else {
                    commands.recv_timeout(wait)
                }
            }
            None => commands.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let mut next = match first {
            Ok(command) => Some(command),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        while let Some(command) = next {
            if matches!(command, Command::Shutdown) {
                return;
            }
            rt.handle(command);
            next = commands.try_recv().ok();
        }
        rt.step_due_sessions();
    }
}

impl Runtime {
    fn emit(&self, event: WorkerEvent) {
        let _ = self.events.try_send(event);
    }

    fn fail(&mut self, session: SessionId, error: String) {
        if let Some(slot) = self.slots.get_mut(&session) {
            slot.session = None;
        }
        tracing::warn!("bevy_nacre: session {session} failed: {error}");
        self.emit(WorkerEvent::SessionFailed { session, error });
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::LoadModel { model, loader } => {
                let device = self.device.clone();
                let loaded = guarded(|| self.pool.install(|| loader(&device)));
                match loaded {
                    Ok(m) => {
                        let spec = m.spec().clone();
                        self.failed_models.remove(&model);
                        self.models.insert(model.clone(), m);
                        self.emit(WorkerEvent::ModelLoaded { model, spec });
                    }
                    Err(e) => {
                        let error = e.to_string();
                        tracing::error!("bevy_nacre: model '{model}' failed to load: {error}");
                        self.failed_models.insert(model.clone(), error.clone());
                        self.emit(WorkerEvent::ModelFailed { model, error });
                    }
                }
            }
            Command::Start {
                session,
                generation,
                model,
                start,
                pacing,
                frames,
                audio,
            } => self.start(session, generation, model, start, pacing, (frames, audio)),
            Command::Input {
                session,
                action,
                sampled_at,
            } => {
                if let Some(slot) = self.slots.get_mut(&session) {
                    slot.apply_input(action, sampled_at);
                }
            }
            Command::SetControls { session, controls } => {
                let result = match self.slots.get_mut(&session) {
                    Some(slot) => slot.apply_controls(controls),
                    None => Ok(()),
                };
                if let Err(e) = result {
                    self.emit(WorkerEvent::SessionFailed {
                        session,
                        error: format!("controls rejected: {e}"),
                    });
                }
            }
            Command::SetPacing { session, pacing } => {
                if let Some(slot) = self.slots.get_mut(&session) {
                    slot.pacing = pacing;
                    slot.next_due = Instant::now();
                }
            }
            Command::Step { session, count } => {
                if let Some(slot) = self.slots.get_mut(&session) {
                    slot.manual_steps += count as u64;
                }
            }
            Command::Save { session, reply } => {
                let result = match self.slots.get(&session) {
                    None => Err(Error::Worker(format!("no session {session}"))),
                    Some(slot) => match &slot.session {
                        None => Err(Error::Worker(format!(
                            "session {session} has failed; restart it before saving"
                        ))),
                        Some(s) => guarded(|| s.save()).map(|state| {
                            let header = SessionHeader {
                                model: slot.spec().name.clone(),
                                model_version: slot.spec().version.clone(),
                                frame_index: s.frame_index(),
                                controls: slot.controls.clone(),
                            };
                            session_file::encode(&header, &state)
                        }),
                    },
                };
                let _ = reply.try_send(result);
            }
            Command::Stop { session } => {
                self.slots.remove(&session);
            }
            Command::Shutdown => {}
        }
    }

    fn start(
        &mut self,
        session: SessionId,
        generation: u32,
        model_id: ModelId,
        start: SessionStart,
        pacing: Pacing,
        (frames, audio): (MailboxSender<GeneratedFrame>, MailboxSender<AudioPacket>),
    ) {
        let Some(model) = self.models.get(&model_id).cloned() else {
            let why = match self.failed_models.get(&model_id) {
                Some(e) => format!("model '{model_id}' failed to load: {e}"),
                None => format!("no model called '{model_id}' was loaded"),
            };
            self.slots.remove(&session);
            self.emit(WorkerEvent::SessionFailed {
                session,
                error: why,
            });
            return;
        };
        let spec = model.spec().clone();
        let started = guarded(|| {
            self.pool.install(|| match start {
                SessionStart::Prompt(prompt) => {
                    let controls = spec.start_controls(prompt.controls.as_ref())?;
                    Ok((model.start(&prompt)?, controls))
                }
                SessionStart::Saved(bytes) => {
                    let saved = session_file::decode(&bytes)?;
                    saved.check_model(&spec)?;
                    let controls = spec.sanitize_controls(&saved.header.controls)?;
                    Ok((model.restore(&saved.state)?, controls))
                }
            })
        });
        match started {
            Ok((s, controls)) => {
                let action = spec.neutral_action();
                self.slots.insert(
                    session,
                    Slot {
                        generation,
                        model_id,
                        model,
                        session: Some(s),
                        raw_action: action.clone(),
                        action,
                        input_sampled_at: None,
                        controls,
                        pacing,
                        next_due: Instant::now(),
                        manual_steps: 0,
                        frames,
                        audio,
                    },
                );
                self.emit(WorkerEvent::SessionStarted {
                    session,
                    generation,
                });
            }
            Err(e) => {
                self.slots.remove(&session);
                self.emit(WorkerEvent::SessionFailed {
                    session,
                    error: e.to_string(),
                });
            }
        }
    }

    /// Steps every session that is due, one batched call per model.
    fn step_due_sessions(&mut self) {
        let now = Instant::now();
        let mut due: Vec<SessionId> = self
            .slots
            .iter()
            .filter(|(_, s)| s.due_at(now).is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        if due.is_empty() {
            return;
        }
        due.sort_unstable();
        let mut by_model: Vec<(ModelId, Vec<SessionId>)> = Vec::new();
        for id in due {
            let model = &self.slots[&id].model_id;
            match by_model.iter_mut().find(|(m, _)| m == model) {
                Some((_, ids)) => ids.push(id),
                None => by_model.push((model.clone(), vec![id])),
            }
        }
        for (_, ids) in by_model {
            self.step_batch(&ids);
        }
    }

    fn step_batch(&mut self, ids: &[SessionId]) {
        let model = self.slots[&ids[0]].model.clone();
        let inputs: Vec<StepInput> = ids
            .iter()
            .map(|id| {
                let slot = &self.slots[id];
                StepInput {
                    action: slot.action.clone(),
                    controls: slot.controls.clone(),
                }
            })
            .collect();
        let sampled: Vec<Option<Instant>> = ids
            .iter()
            .map(|id| self.slots[id].input_sampled_at)
            .collect();

        // Take the sessions out so the model can borrow them all at once.
        let mut sessions: Vec<Box<dyn Session>> = ids
            .iter()
            .map(|id| self.slots.get_mut(id).unwrap().session.take().unwrap())
            .collect();
        let began = Instant::now();
        let outputs = {
            let mut batch: Vec<BatchItem<'_>> = sessions
                .iter_mut()
                .zip(&inputs)
                .map(|(session, input)| BatchItem { session, input })
                .collect();
            let pool = &self.pool;
            guarded(|| Ok(pool.install(|| model.step_batch(&mut batch))))
        };
        let elapsed = began.elapsed();
        let finished_at = Instant::now();

        let outputs: Vec<Result<StepOutput>> = match outputs {
            Ok(outputs) if outputs.len() == ids.len() => outputs,
            Ok(outputs) => {
                let msg = format!(
                    "step_batch returned {} outputs for {} sessions",
                    outputs.len(),
                    ids.len()
                );
                ids.iter()
                    .map(|_| Err(Error::BadOutput(msg.clone())))
                    .collect()
            }
            // A panic leaves every session of the batch in an unknown state: all of them fail.
            Err(e) => {
                let msg = e.to_string();
                for id in ids {
                    self.fail(*id, msg.clone());
                }
                return;
            }
        };

        for ((((id, session), output), sampled_at), input) in ids
            .iter()
            .zip(sessions)
            .zip(outputs)
            .zip(sampled)
            .zip(inputs)
        {
            let output = output.and_then(|o| {
                validate_output(model.spec(), &o)?;
                Ok(o)
            });
            match output {
                Ok(output) => {
                    let slot = self.slots.get_mut(id).unwrap();
                    let frame = GeneratedFrame {
                        session: *id,
                        generation: slot.generation,
                        index: session.frame_index().saturating_sub(1),
                        frame: output.frame,
                        compute: elapsed,
                        timings: output.timings,
                        input_sampled_at: sampled_at,
                        finished_at,
                    };
                    slot.audio.send(AudioPacket {
                        generation: frame.generation,
                        index: frame.index,
                        chunk: output.audio,
                        input,
                    });
                    slot.session = Some(session);
                    slot.after_step(finished_at);
                    slot.frames.send(frame);
                }
                Err(e) => self.fail(*id, e.to_string()),
            }
        }
    }
}

/// Runs `f`, turning a panic into [`Error::Panic`] with the panic's message.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Panic(message))
        }
    }
}
