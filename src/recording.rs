//! Recording, replaying and exporting sessions.
//!
//! A **recording** is a folder:
//!
//! | file | content |
//! | --- | --- |
//! | `start.nacre` | the session as it was when recording began ([saved-session format](crate::session_file)) |
//! | `actions.json` | the [`ActionLog`]: the exact action and controls of every step after that |
//! | `frames/000123.png` | the frames that were shown, named by their index in the session |
//! | `audio.wav` | every step's sound, 16-bit PCM |
//! | `recording.gif` | the shown frames as an animated GIF (optional) |
//! | `steps.journal` | while recording: every step's input and sound, appended as they come |
//!
//! Every file is written atomically (a temporary file, then a rename), so an interrupted recording
//! never leaves a half-written file under its real name. Steps go to the journal as they happen;
//! finishing the recording turns it into `actions.json` and `audio.wav`. A recording whose program
//! was killed keeps its journal, and [`recover`] (or `nacre export`, which calls it) finishes it
//! with every step written before the kill.
//!
//! Because the log holds the exact inputs of *every* step (also of frames that were generated but
//! never shown), [`replay`] can run the model again from `start.nacre` and produce the complete
//! session at the model's full frame rate — bit for bit the same for a deterministic model, which
//! it checks against the recorded frames. `nacre export` is the command-line front end.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, unbounded};
use serde::{Deserialize, Serialize};

use crate::action::{Action, Controls};
use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::frame::Frame;
use crate::session_file;
use crate::spec::ModelSpec;
use crate::world_model::{Prompt, StepInput, WorldModel};

mod journal;

pub use journal::JOURNAL;
use journal::{Journal, JournalWriter};

/// File name of the action log inside a recording.
pub const ACTION_LOG: &str = "actions.json";
/// File name of the saved session a recording starts from.
pub const START_SESSION: &str = "start.nacre";
/// File name of the sound of a recording.
pub const AUDIO: &str = "audio.wav";
/// Folder of the PNG frames inside a recording.
pub const FRAMES: &str = "frames";
/// File name of the animated GIF of a recording.
pub const GIF: &str = "recording.gif";
/// Version of the action-log format this build writes and reads.
pub const LOG_FORMAT_VERSION: u32 = 1;

/// One step of a session: its index and the exact input the model stepped with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedStep {
    /// Index of the frame the step produced.
    pub index: u64,
    /// Action channel values, in the order of [`ActionLog::action_names`].
    pub action: Vec<f32>,
    /// Director control values, in the order of [`ActionLog::control_names`].
    pub controls: Vec<f32>,
}

impl LoggedStep {
    /// The step's input, as the model takes it.
    pub fn input(&self) -> StepInput {
        StepInput {
            action: Action::new(self.action.clone()),
            controls: Controls::new(self.controls.clone()),
        }
    }
}

/// The JSON action log of a recording (`actions.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionLog {
    /// [`LOG_FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// [`ModelSpec::name`] of the model that generated the session.
    pub model: String,
    /// [`ModelSpec::version`] of that model.
    pub model_version: String,
    /// Frame size.
    pub width: u32,
    /// Frame size.
    pub height: u32,
    /// Frames per second of the model.
    pub fps: f32,
    /// Sound sample rate (0 for a silent model).
    pub sample_rate: u32,
    /// Interleaved sound channels.
    pub channels: u16,
    /// Names of the action channels.
    pub action_names: Vec<String>,
    /// Names of the director controls.
    pub control_names: Vec<String>,
    /// The saved session the steps continue from (a file name inside the recording), if any.
    pub start_session: Option<String>,
    /// Without a start session: the seed the session was started with.
    pub seed: Option<u64>,
    /// Without a start session: the controls it was started with (`None`: the model's defaults).
    pub start_controls: Option<Vec<f32>>,
    /// Index of the first step; with a start session, the frame index it was saved at.
    pub first_index: u64,
    /// Every step, in order, without gaps.
    pub steps: Vec<LoggedStep>,
}

impl ActionLog {
    /// An empty log for a session of the model described by `spec`.
    pub fn new(spec: &ModelSpec) -> Self {
        Self {
            format_version: LOG_FORMAT_VERSION,
            model: spec.name.clone(),
            model_version: spec.version.clone(),
            width: spec.width,
            height: spec.height,
            fps: spec.fps,
            sample_rate: spec.audio.sample_rate,
            channels: spec.audio.channels,
            action_names: spec.actions.iter().map(|c| c.name.clone()).collect(),
            control_names: spec.controls.iter().map(|c| c.name.clone()).collect(),
            start_session: None,
            seed: None,
            start_controls: None,
            first_index: 0,
            steps: Vec::new(),
        }
    }

    /// Reads and checks a log file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let log: ActionLog = serde_json::from_slice(&bytes)
            .map_err(|e| Error::bad_file(path, format!("not a bevy_nacre action log: {e}")))?;
        if log.format_version != LOG_FORMAT_VERSION {
            return Err(Error::bad_file(
                path,
                format!(
                    "action-log format version {}; this build reads version {LOG_FORMAT_VERSION}",
                    log.format_version
                ),
            ));
        }
        for (i, step) in log.steps.iter().enumerate() {
            // Checked: a first index near the end of `u64` must be refused, not overflow.
            let Some(expected) = log.first_index.checked_add(i as u64) else {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "first_index {} leaves no room for {} steps",
                        log.first_index,
                        log.steps.len()
                    ),
                ));
            };
            if step.index != expected {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "step {i} has index {} but {expected} was expected (the log has a gap)",
                        step.index
                    ),
                ));
            }
        }
        Ok(log)
    }

    /// Checks that the log was written by the model described by `spec`.
    pub fn check_model(&self, spec: &ModelSpec) -> Result<()> {
        if self.model != spec.name || self.model_version != spec.version {
            return Err(Error::Other(format!(
                "the recording was made with model '{}' version '{}', but this model is '{}' \
                 version '{}'",
                self.model, self.model_version, spec.name, spec.version
            )));
        }
        if self.width != spec.width || self.height != spec.height {
            return Err(Error::Other(format!(
                "the recording is {}x{} but the model draws {}x{}",
                self.width, self.height, spec.width, spec.height
            )));
        }
        Ok(())
    }
}

/// Encodes interleaved samples in [-1, 1] as a 16-bit PCM WAV file. Sizes a WAV header cannot
/// hold (over 4 GiB of samples, a byte rate past `u32`, as a log from a file may ask for) are
/// saturated rather than overflowing.
pub fn wav_bytes(samples: &[f32], sample_rate: u32, channels: u16) -> Vec<u8> {
    let channels = channels.max(1);
    let data_len = u32::try_from(samples.len())
        .unwrap_or(u32::MAX)
        .saturating_mul(2);
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&data_len.saturating_add(36).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    let byte_rate = sample_rate.saturating_mul(channels as u32 * 2);
    out.extend_from_slice(&byte_rate.to_le_bytes());
    out.extend_from_slice(&channels.saturating_mul(2).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// A decoded 16-bit PCM WAV file.
#[derive(Clone, Debug, PartialEq)]
pub struct Wav {
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
    /// The samples.
    pub samples: Vec<i16>,
}

/// Reads a 16-bit PCM WAV file as [`wav_bytes`] writes it (other chunks are skipped).
pub fn read_wav(bytes: &[u8]) -> Result<Wav> {
    let bad = |m: &str| Error::Other(format!("not a 16-bit PCM WAV file: {m}"));
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad("no RIFF/WAVE header"));
    }
    let mut pos = 12;
    let mut format: Option<(u32, u16)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = bytes
            .get(pos + 8..pos + 8 + len)
            .ok_or_else(|| bad("truncated chunk"))?;
        if id == b"fmt " {
            if len < 16 {
                return Err(bad("short fmt chunk"));
            }
            let tag = u16::from_le_bytes([body[0], body[1]]);
            let channels = u16::from_le_bytes([body[2], body[3]]);
            let rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
            let bits = u16::from_le_bytes([body[14], body[15]]);
            if tag != 1 || bits != 16 {
                return Err(bad("only 16-bit PCM is read"));
            }
            format = Some((rate, channels));
        } else if id == b"data" {
            let (sample_rate, channels) = format.ok_or_else(|| bad("data before fmt"))?;
            let samples = body
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            return Ok(Wav {
                sample_rate,
                channels,
                samples,
            });
        }
        pos += 8 + len + (len & 1);
    }
    Err(bad("no data chunk"))
}

/// Encodes a frame as PNG.
pub fn png_bytes(frame: &Frame) -> Result<Vec<u8>> {
    let img = image::RgbaImage::from_raw(frame.width, frame.height, frame.rgba.clone())
        .ok_or_else(|| Error::Other("frame has the wrong number of bytes".into()))?;
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| Error::Other(format!("PNG encoding failed: {e}")))?;
    Ok(out.into_inner())
}

/// Reads a PNG (or any image the `image` crate reads) as an RGBA frame.
pub fn read_frame(path: &Path) -> Result<Frame> {
    let img = image::open(path)
        .map_err(|e| Error::bad_file(path, format!("not a readable image: {e}")))?
        .to_rgba8();
    Ok(Frame {
        width: img.width(),
        height: img.height(),
        rgba: img.into_raw(),
    })
}

/// The path of frame `index` in a recording's frame folder.
pub fn frame_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(FRAMES).join(format!("{index:06}.png"))
}

/// Encodes frames as a looping animated GIF; each frame comes with how long it shows.
pub fn gif_bytes(frames: impl IntoIterator<Item = (Frame, Duration)>) -> Result<Vec<u8>> {
    use image::codecs::gif::{GifEncoder, Repeat};
    let mut out = Vec::new();
    {
        // Speed 20 of 30: a quick colour quantiser, good enough for a preview.
        let mut encoder = GifEncoder::new_with_speed(&mut out, 20);
        encoder
            .set_repeat(Repeat::Infinite)
            .map_err(|e| Error::Other(format!("GIF encoding failed: {e}")))?;
        for (frame, shown) in frames {
            let img = image::RgbaImage::from_raw(frame.width, frame.height, frame.rgba)
                .ok_or_else(|| Error::Other("frame has the wrong number of bytes".into()))?;
            let delay =
                image::Delay::from_saturating_duration(shown.max(Duration::from_millis(20)));
            encoder
                .encode_frame(image::Frame::from_parts(img, 0, 0, delay))
                .map_err(|e| Error::Other(format!("GIF encoding failed: {e}")))?;
        }
    }
    Ok(out)
}

/// The indices of the PNG frames in a recording, sorted.
pub fn recorded_frames(dir: &Path) -> Result<Vec<u64>> {
    let frames = dir.join(FRAMES);
    let entries = match std::fs::read_dir(&frames) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&frames, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&frames, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".png")
            && let Ok(i) = stem.parse::<u64>()
        {
            out.push(i);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Makes an animated GIF of a recording's PNG frames, each shown until the next one (by frame
/// index at `fps`). Returns the number of frames.
pub fn gif_from_recording(dir: &Path, out: &Path, fps: f32) -> Result<usize> {
    let indices = recorded_frames(dir)?;
    if indices.is_empty() {
        return Err(Error::Other(format!(
            "{} has no frames to make a GIF of",
            dir.join(FRAMES).display()
        )));
    }
    let period = 1.0 / fps.max(1.0) as f64;
    let mut frames = Vec::with_capacity(indices.len());
    for (k, &i) in indices.iter().enumerate() {
        // Saturating: frame file names are any number up to `u64::MAX`.
        let next = indices.get(k + 1).copied().unwrap_or(i.saturating_add(1));
        let shown =
            Duration::try_from_secs_f64(period * (next - i).max(1) as f64).unwrap_or(Duration::MAX);
        frames.push((read_frame(&frame_path(dir, i))?, shown));
    }
    let n = frames.len();
    write_atomic(out, &gif_bytes(frames)?)?;
    Ok(n)
}

/// What a finished recording holds.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordingSummary {
    /// The folder.
    pub dir: PathBuf,
    /// Steps in the action log.
    pub steps: usize,
    /// PNG frames written.
    pub frames: usize,
    /// Seconds of sound in `audio.wav`.
    pub audio_seconds: f32,
    /// Whether `recording.gif` was written.
    pub gif: bool,
    /// Steps that were missed (a stalled game lets the worker's sound queue overflow); a log
    /// with missed steps cannot be replayed exactly, so it is cut at the first gap.
    pub missed_steps: u64,
}

enum Job {
    Start(Vec<u8>),
    Step(LoggedStep, Vec<f32>),
    Frame(u64, Frame),
    Flush(crossbeam_channel::Sender<()>),
    Finish { gif: bool },
}

/// Records a session into a folder on a background thread, so the game never waits for PNG
/// encoding or the disk. Feed it every step ([`add_step`](Self::add_step)) and the frames you
/// show ([`add_frame`](Self::add_frame)); [`finish`](Self::finish) writes the sound, the log
/// and the GIF.
pub struct Recorder {
    dir: PathBuf,
    jobs: Sender<Job>,
    thread: Option<JoinHandle<Result<RecordingSummary>>>,
}

impl Recorder {
    /// Starts a recording of a session of the model described by `spec` into `dir` (created if
    /// missing). Send the session's saved state with [`set_start`](Self::set_start) as soon as
    /// it is known: steps before it are left out of the log.
    ///
    /// A finished recording already in `dir` is replaced: its start session, log, sound and GIF
    /// are removed (its frames stay, and are overwritten where the new one writes the same index).
    pub fn create(dir: &Path, spec: &ModelSpec) -> Result<Self> {
        std::fs::create_dir_all(dir.join(FRAMES)).map_err(|e| Error::io(dir, e))?;
        for old in [START_SESSION, ACTION_LOG, AUDIO, GIF] {
            let path = dir.join(old);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        let (jobs, rx) = unbounded::<Job>();
        let log = ActionLog::new(spec);
        let worker_dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("nacre-recorder".into())
            .spawn(move || write_recording(worker_dir, log, rx))
            .map_err(|e| Error::Other(format!("could not start the recorder thread: {e}")))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            jobs,
            thread: Some(thread),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The session's saved state (saved-session bytes) at the moment recording began.
    pub fn set_start(&self, saved: Vec<u8>) {
        let _ = self.jobs.send(Job::Start(saved));
    }

    /// One step: its frame index, the input it used and its sound.
    pub fn add_step(&self, index: u64, input: &StepInput, audio: &[f32]) {
        let step = LoggedStep {
            index,
            action: input.action.values.clone(),
            controls: input.controls.values.clone(),
        };
        let _ = self.jobs.send(Job::Step(step, audio.to_vec()));
    }

    /// A frame that was shown.
    pub fn add_frame(&self, index: u64, frame: Frame) {
        let _ = self.jobs.send(Job::Frame(index, frame));
    }

    /// Waits until every step and frame sent so far is on disk (the steps in the journal), so
    /// that a crash after it loses none of them.
    pub fn flush(&self) -> Result<()> {
        let (done, wait) = crossbeam_channel::bounded(1);
        self.jobs
            .send(Job::Flush(done))
            .map_err(|_| Error::Other("the recorder thread has stopped".into()))?;
        wait.recv()
            .map_err(|_| Error::Other("the recorder thread has stopped".into()))
    }

    /// Finishes the recording and waits for the files to be written (the GIF takes a while for
    /// long recordings; call this off the game's thread, or use [`finish_in_background`]).
    ///
    /// [`finish_in_background`]: Self::finish_in_background
    pub fn finish(mut self, gif: bool) -> Result<RecordingSummary> {
        let _ = self.jobs.send(Job::Finish { gif });
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Other("the recorder thread panicked".into())),
            None => Err(Error::Other("the recording was already finished".into())),
        }
    }

    /// Finishes the recording without waiting; the summary arrives on the returned channel.
    pub fn finish_in_background(
        self,
        gif: bool,
    ) -> crossbeam_channel::Receiver<Result<RecordingSummary>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = tx.send(self.finish(gif));
        });
        rx
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // Dropped without `finish`: write what there is, without a GIF.
            let _ = self.jobs.send(Job::Finish { gif: false });
            let _ = thread.join();
        }
    }
}

/// The recorder thread: writes the start session and the frames as they come and appends every
/// step to the journal; at the end builds the log and the sound from the journal.
fn write_recording(
    dir: PathBuf,
    log: ActionLog,
    jobs: crossbeam_channel::Receiver<Job>,
) -> Result<RecordingSummary> {
    let mut journal = JournalWriter::create(&dir, &log)?;
    let mut first_error: Option<Error> = None;
    let mut gif = false;
    for job in jobs.iter() {
        let result = match job {
            Job::Start(saved) => session_file::decode(&saved)
                .and_then(|_| write_atomic(&dir.join(START_SESSION), &saved)),
            Job::Step(step, audio) => journal.append(&step, &audio),
            Job::Frame(index, frame) => {
                png_bytes(&frame).and_then(|b| write_atomic(&frame_path(&dir, index), &b))
            }
            Job::Flush(done) => {
                let _ = done.send(());
                Ok(())
            }
            Job::Finish { gif: g } => {
                gif = g;
                break;
            }
        };
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    drop(journal);
    if let Some(e) = first_error {
        return Err(e);
    }
    assemble(&dir, gif)
}

/// Finishes a recording whose program was killed (or crashed) before the recording was finished:
/// builds `actions.json` and `audio.wav` from the step journal its recorder kept, with every step
/// written before the interruption, and removes the journal. Frames already written stay.
pub fn recover(dir: &Path) -> Result<RecordingSummary> {
    if !dir.join(JOURNAL).exists() {
        return Err(Error::bad_file(
            dir,
            format!("no {JOURNAL}: not a recording that was interrupted"),
        ));
    }
    assemble(dir, false)
}

/// Whether `dir` holds a recording that was interrupted before it was finished (a journal and no
/// action log), which [`recover`] can finish.
pub fn is_interrupted(dir: &Path) -> bool {
    dir.join(JOURNAL).exists() && !dir.join(ACTION_LOG).exists()
}

/// Builds the action log and the sound of the recording in `dir` from its journal: the steps from
/// the start session on, in order, up to the first gap.
fn assemble(dir: &Path, gif: bool) -> Result<RecordingSummary> {
    let journal_path = dir.join(JOURNAL);
    let Journal {
        mut log,
        mut steps,
        cut_short,
    } = journal::read(&journal_path)?;
    if cut_short {
        tracing::warn!(
            "{}: the last record was cut short by an interruption and is left out",
            journal_path.display()
        );
    }
    let start = dir.join(START_SESSION);
    let start_index = if start.exists() {
        let bytes = std::fs::read(&start).map_err(|e| Error::io(&start, e))?;
        let header = session_file::decode(&bytes)
            .map_err(|e| Error::bad_file(&start, e.to_string()))?
            .header;
        log.start_session = Some(START_SESSION.into());
        Some(header.frame_index)
    } else {
        None
    };
    // Keep the steps from the start session on, up to the first gap.
    let first = start_index.unwrap_or_else(|| steps.first().map_or(0, |(s, _)| s.index));
    steps.retain(|(s, _)| s.index >= first);
    steps.sort_by_key(|(s, _)| s.index);
    steps.dedup_by_key(|(s, _)| s.index);
    let mut missed = 0;
    if let Some(gap) =
        (0..steps.len()).find(|&i| first.checked_add(i as u64) != Some(steps[i].0.index))
    {
        missed = steps[gap]
            .0
            .index
            .saturating_sub(first.saturating_add(gap as u64));
        steps.truncate(gap);
    }
    log.first_index = first;
    let mut audio = Vec::new();
    for (step, samples) in steps {
        log.steps.push(step);
        audio.extend_from_slice(&samples);
    }
    let channels = log.channels.max(1);
    let audio_seconds = if log.sample_rate > 0 {
        audio.len() as f32 / channels as f32 / log.sample_rate as f32
    } else {
        0.0
    };
    if log.sample_rate > 0 {
        write_atomic(
            &dir.join(AUDIO),
            &wav_bytes(&audio, log.sample_rate, channels),
        )?;
    }
    let json = serde_json::to_vec_pretty(&log)
        .map_err(|e| Error::Other(format!("could not encode the action log: {e}")))?;
    write_atomic(&dir.join(ACTION_LOG), &json)?;
    std::fs::remove_file(&journal_path).map_err(|e| Error::io(&journal_path, e))?;
    let frames = recorded_frames(dir)?.len();
    let gif = gif && frames > 0 && gif_from_recording(dir, &dir.join(GIF), log.fps).is_ok();
    Ok(RecordingSummary {
        dir: dir.to_path_buf(),
        steps: log.steps.len(),
        frames,
        audio_seconds,
        gif,
        missed_steps: missed,
    })
}

/// What [`replay`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Write every frame as PNG into `OUT/frames/`.
    pub frames: bool,
    /// Write `OUT/audio.wav`.
    pub wav: bool,
    /// Write `OUT/recording.gif` with every frame.
    pub gif: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            frames: true,
            wav: true,
            gif: true,
        }
    }
}

/// What [`replay`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Steps run.
    pub steps: usize,
    /// Recorded PNG frames compared with the replay.
    pub frames_compared: usize,
    /// Of those, how many were identical to the byte.
    pub frames_identical: usize,
    /// The first frame index that differed, if any.
    pub first_mismatch: Option<u64>,
}

/// Runs `model` again through a recording's steps, from its start session (or seed), and writes
/// the complete session into `out` (which may be the recording folder itself only if nothing is
/// to be overwritten; use another folder). Recorded frames are compared with the replayed ones.
pub fn replay(
    model: &dyn WorldModel,
    recording: &Path,
    out: &Path,
    options: &ReplayOptions,
) -> Result<ReplaySummary> {
    let log_path = recording.join(ACTION_LOG);
    let log = ActionLog::load(&log_path)?;
    let spec = model.spec().clone();
    // Every error names the file it is about: a recording folder holds several.
    let in_log = |e: Error| Error::bad_file(&log_path, e.to_string());
    log.check_model(&spec).map_err(in_log)?;
    let mut session = match &log.start_session {
        Some(name) => {
            let mut parts = Path::new(name).components();
            if !matches!(
                (parts.next(), parts.next()),
                (Some(std::path::Component::Normal(_)), None)
            ) {
                return Err(Error::bad_file(
                    &log_path,
                    format!("start_session '{name}' is not a file inside the recording"),
                ));
            }
            let path = recording.join(name);
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let in_file = |e: Error| Error::bad_file(&path, e.to_string());
            let saved = session_file::decode(&bytes).map_err(in_file)?;
            saved.check_model(&spec).map_err(in_file)?;
            let session = model.restore(&saved.state).map_err(in_file)?;
            if session.frame_index() != log.first_index {
                return Err(Error::bad_file(
                    &path,
                    format!(
                        "the start session is at frame {} but {} begins at frame {}",
                        session.frame_index(),
                        log_path.display(),
                        log.first_index
                    ),
                ));
            }
            session
        }
        None => {
            let session = model
                .start(&Prompt {
                    seed: log.seed.unwrap_or(0),
                    start_frames: Vec::new(),
                    controls: log.start_controls.clone().map(Controls::new),
                })
                .map_err(in_log)?;
            if session.frame_index() != log.first_index {
                return Err(Error::bad_file(
                    &log_path,
                    format!(
                        "a new session starts at frame {} but the log begins at frame {}",
                        session.frame_index(),
                        log.first_index
                    ),
                ));
            }
            session
        }
    };
    let recorded: std::collections::HashSet<u64> =
        recorded_frames(recording)?.into_iter().collect();
    if options.frames {
        std::fs::create_dir_all(out.join(FRAMES)).map_err(|e| Error::io(out, e))?;
    } else {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    }
    let period = Duration::from_secs_f64(1.0 / log.fps.max(1.0) as f64);
    let mut summary = ReplaySummary {
        steps: 0,
        frames_compared: 0,
        frames_identical: 0,
        first_mismatch: None,
    };
    let mut audio = Vec::new();
    let mut gif_frames = Vec::new();
    for step in &log.steps {
        let in_log = |e: crate::spec::SpecMismatch| {
            Error::bad_file(&log_path, format!("step {}: {e}", step.index))
        };
        let input = StepInput {
            action: spec
                .sanitize_action(&Action::new(step.action.clone()))
                .map_err(in_log)?,
            controls: spec
                .sanitize_controls(&Controls::new(step.controls.clone()))
                .map_err(in_log)?,
        };
        let output = session.step(&input)?;
        summary.steps += 1;
        if recorded.contains(&step.index) {
            let original = read_frame(&frame_path(recording, step.index))?;
            summary.frames_compared += 1;
            if original == output.frame {
                summary.frames_identical += 1;
            } else {
                summary.first_mismatch.get_or_insert(step.index);
            }
        }
        if options.frames {
            write_atomic(&frame_path(out, step.index), &png_bytes(&output.frame)?)?;
        }
        audio.extend_from_slice(&output.audio.samples);
        if options.gif {
            gif_frames.push((output.frame, period));
        }
    }
    if options.wav && log.sample_rate > 0 {
        write_atomic(
            &out.join(AUDIO),
            &wav_bytes(&audio, log.sample_rate, log.channels),
        )?;
    }
    if options.gif && !gif_frames.is_empty() {
        write_atomic(&out.join(GIF), &gif_bytes(gif_frames)?)?;
    }
    let json = serde_json::to_vec_pretty(&log)
        .map_err(|e| Error::Other(format!("could not encode the action log: {e}")))?;
    write_atomic(&out.join(ACTION_LOG), &json)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_roundtrip_and_header() {
        let samples: Vec<f32> = (0..1600).map(|i| ((i as f32) * 0.05).sin() * 0.5).collect();
        let bytes = wav_bytes(&samples, 16_000, 1);
        assert_eq!(bytes.len(), 44 + 3200);
        assert_eq!(
            u32::from_le_bytes(bytes[4..8].try_into().unwrap()),
            36 + 3200
        );
        let wav = read_wav(&bytes).unwrap();
        assert_eq!((wav.sample_rate, wav.channels), (16_000, 1));
        assert_eq!(wav.samples.len(), 1600);
        for (a, b) in samples.iter().zip(&wav.samples) {
            assert!((a - *b as f32 / 32767.0).abs() < 1.0 / 32767.0);
        }
        // Out-of-range samples are clipped, not wrapped.
        let loud = read_wav(&wav_bytes(&[2.0, -2.0], 8000, 1)).unwrap();
        assert_eq!(loud.samples, vec![32767, -32767]);
        assert!(read_wav(b"RIFF....WAVEjunk").is_err());
    }

    #[test]
    fn extreme_values_in_a_log_are_refused_or_saturated() {
        let dir = std::env::temp_dir().join(format!("nacre-recording-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = crate::reference::reference_spec(8, 6);
        let mut log = ActionLog::new(&spec);
        log.first_index = u64::MAX;
        for index in [u64::MAX, 0] {
            log.steps.push(LoggedStep {
                index,
                action: vec![0.0; spec.actions.len()],
                controls: spec.default_controls().values,
            });
        }
        let path = dir.join(ACTION_LOG);
        std::fs::write(&path, serde_json::to_vec(&log).unwrap()).unwrap();
        let err = ActionLog::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("actions.json") && err.contains("no room for 2 steps"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);

        // A sample rate whose byte rate does not fit a WAV header is saturated, not overflowed.
        let wav = wav_bytes(&[0.5, -0.5], u32::MAX, u16::MAX);
        assert_eq!(
            u32::from_le_bytes(wav[28..32].try_into().unwrap()),
            u32::MAX
        );
        assert_eq!(read_wav(&wav).unwrap().samples.len(), 2);
    }

    #[test]
    fn gif_and_png_encode() {
        let a = Frame::solid(8, 6, [255, 0, 0, 255]);
        let b = Frame::solid(8, 6, [0, 0, 255, 255]);
        let gif = gif_bytes([
            (a.clone(), Duration::from_millis(50)),
            (b, Duration::from_millis(50)),
        ])
        .unwrap();
        assert_eq!(&gif[..6], b"GIF89a");
        let png = png_bytes(&a).unwrap();
        let back = image::load_from_memory(&png).unwrap().to_rgba8();
        assert_eq!(back.into_raw(), a.rgba);
    }
}
