//! `nacre soak`: a long session of a default-model folder, played as a game plays it: on the
//! inference worker, stepped frame by frame, a scripted player who walks, turns and stands, the
//! director changing every control about twice a minute, and the session saved and restored every
//! few minutes of game time. Reports resident memory (`VmRSS` from `/proc/self/status`) at every
//! save and at the end, counts malformed frames (wrong size, wrong sound length, non-finite sound),
//! and after every restore replays the frames that followed the save and requires them bit for
//! bit. An hour of game time (the default) is 72,000 frames of the shipped model.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy_nacre::action::{Action, Controls};
use bevy_nacre::spec::{ControlKind, ModelSpec};
use bevy_nacre::worker::{Pacing, SessionHandle, Worker, WorkerConfig};
use bevy_nacre::world_model::{Prompt, WorldModel};
use bevy_nacre::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};

/// Frames the session plays before memory is first measured (allocations that are made once).
const WARM_UP: u64 = 200;
/// Frames replayed after each restore and compared with the frames that followed the save.
const REPLAY: usize = 20;

/// Arguments of `nacre soak`.
#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// Model folder (`config.json` + `model.safetensors`).
    #[arg(long, default_value = bevy_nacre::default_model::SHIPPED_DIR)]
    pub model: PathBuf,
    /// Minutes of game time to play (at the model's frame rate).
    #[arg(long, default_value_t = 60.0)]
    pub minutes: f64,
    /// Seconds of game time between a save and restore and the next.
    #[arg(long, default_value_t = 180.0)]
    pub save_every: f64,
    /// Inference threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Seed of the session and of the scripted player.
    #[arg(long, default_value_t = 11)]
    pub seed: u64,
}

/// Resident memory of this process in MB (`VmRSS`), or NaN where `/proc` is missing.
fn resident_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A small deterministic generator (xorshift64*), so every run plays the same script.
struct Script(u64);

impl Script {
    fn unit(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
    }

    /// The player's next move, held for 1–4 s: stand, walk, turn, walk and turn, or back up.
    fn player(&mut self, spec: &ModelSpec, fps: f32) -> (Action, u64) {
        let mut action = spec.neutral_action();
        let set = |action: &mut Action, name: &str, v: f32| {
            if let Some(i) = spec.action_index(name) {
                action.values[i] = spec.actions[i].clamp(v);
            }
        };
        let turn = if self.unit() < 0.5 { -1.0 } else { 1.0 };
        match (self.unit() * 5.0) as u32 {
            0 => {}
            1 => set(&mut action, "move_forward", 1.0),
            2 => set(&mut action, "turn", turn),
            3 => {
                set(&mut action, "move_forward", 1.0);
                set(&mut action, "turn", 0.5 * turn);
            }
            _ => set(&mut action, "move_forward", -1.0),
        }
        let frames = ((1.0 + 3.0 * self.unit()) * fps) as u64;
        (action, frames.max(1))
    }

    /// New director controls: every continuous control and choice drawn at random.
    fn controls(&mut self, spec: &ModelSpec) -> Controls {
        let mut controls = spec.default_controls();
        for (value, control) in controls.values.iter_mut().zip(&spec.controls) {
            let u = self.unit();
            *value = match &control.kind {
                ControlKind::Continuous { min, max, .. } => min + u * (max - min),
                ControlKind::Choice { options, .. } => (u * options.len() as f32).floor(),
                ControlKind::Trigger => 0.0,
            };
            *value = control.clamp(*value);
        }
        controls
    }
}

/// What is wrong with a frame, if anything.
fn malformed(frame: &bevy_nacre::frame::Frame, spec: &ModelSpec) -> Option<String> {
    let expected = (spec.width * spec.height * 4) as usize;
    (frame.width != spec.width || frame.height != spec.height || frame.rgba.len() != expected).then(
        || {
            format!(
                "{}x{} with {} bytes, expected {}x{}",
                frame.width,
                frame.height,
                frame.rgba.len(),
                spec.width,
                spec.height
            )
        },
    )
}

/// Steps once with `action` and returns the frame, or what was malformed about the step.
fn step(
    session: &SessionHandle,
    spec: &ModelSpec,
    action: &Action,
) -> Result<bevy_nacre::frame::Frame, String> {
    session.send_input(action.clone(), Instant::now());
    session.step(1).map_err(|e| e.to_string())?;
    let frame = session
        .next_frame_timeout(Duration::from_secs(60))
        .ok_or("no frame within 60 s")?;
    let mut problem = malformed(&frame.frame, spec);
    for packet in session.drain_audio() {
        let samples = &packet.chunk.samples;
        if samples.len() != spec.audio.samples_per_frame as usize * packet.chunk.channels as usize {
            problem.get_or_insert(format!("{} sound samples", samples.len()));
        }
        if samples.iter().any(|s| !s.is_finite()) {
            problem.get_or_insert("non-finite sound".into());
        }
    }
    match problem {
        None => Ok(frame.frame),
        Some(p) => Err(format!("frame {}: {p}", frame.index)),
    }
}

/// Runs `nacre soak`; fails if a frame was malformed or a restore did not continue bit for bit.
pub fn run(args: &SoakArgs) -> Result<()> {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(args.minutes) || !positive(args.save_every) {
        return Err(Error::Other(
            "--minutes and --save-every must be positive numbers".into(),
        ));
    }
    let worker = Worker::spawn(WorkerConfig {
        cpu_threads: args.threads,
        ..WorkerConfig::default()
    })?;
    let model_dir = args.model.clone();
    worker.load_model("soak", move |device| {
        let model = bevy_nacre::default_model::load(&model_dir, device)?
            .with_start_frames(bevy_nacre::reference::start_frames);
        Ok(Arc::new(model) as Arc<dyn WorldModel>)
    })?;
    let spec = bevy_nacre::default_model::load(&args.model, &candle_core::Device::Cpu)?
        .spec()
        .clone();
    let fps = spec.fps;
    let total = (args.minutes * 60.0 * fps as f64) as u64;
    let save_every = ((args.save_every * fps as f64) as u64).max(REPLAY as u64 + 1);
    println!(
        "soak: {} at {}x{}, {total} frames ({} min of game time at {fps} frames/s), saved and \
         restored every {save_every} frames, {} inference thread(s)",
        args.model.display(),
        spec.width,
        spec.height,
        args.minutes,
        args.threads
    );
    let session = worker.start_session("soak", Prompt::seeded(args.seed), Pacing::Manual)?;
    let mut script = Script(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (mut action, mut hold) = script.player(&spec, fps);
    let mut problems: Vec<String> = Vec::new();
    let mut rss = Vec::new();
    let started = Instant::now();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} frames {msg}",
        )
        .expect("valid template"),
    );
    let mut frame = 0u64;
    while frame < total {
        bar.set_position(frame);
        if problems.len() >= 100 {
            bar.abandon();
            break;
        }
        if hold == 0 {
            (action, hold) = script.player(&spec, fps);
        }
        // The director changes about twice a minute.
        if frame.is_multiple_of((30 * fps as u64).max(1)) {
            session.set_controls(script.controls(&spec))?;
        }
        if frame == WARM_UP {
            rss.push((frame, resident_mb()));
        }
        if frame > 0 && frame.is_multiple_of(save_every) {
            let saved = session
                .save()?
                .recv()
                .map_err(|_| Error::Worker("the worker did not answer a save".into()))??;
            // Play on from the save, then restore it and play the same inputs again.
            let mut after = Vec::new();
            for _ in 0..REPLAY {
                match step(&session, &spec, &action) {
                    Ok(f) => after.push(f),
                    Err(p) => problems.push(p),
                }
            }
            session.restore(saved)?;
            for (i, expected) in after.iter().enumerate() {
                match step(&session, &spec, &action) {
                    Ok(f) if f.rgba == expected.rgba => {}
                    Ok(_) => problems.push(format!(
                        "frame {} after the restore at frame {frame} differs from before",
                        i + 1
                    )),
                    Err(p) => problems.push(p),
                }
            }
            let mb = resident_mb();
            rss.push((frame, mb));
            bar.suspend(|| {
                println!(
                    "frame {frame:>6} ({:>5.1} min of game time, {:>5.0} s): resident {mb:.1} MB",
                    frame as f64 / fps as f64 / 60.0,
                    started.elapsed().as_secs_f64(),
                )
            });
            frame += REPLAY as u64;
            hold = hold.saturating_sub(REPLAY as u64);
            continue;
        }
        if let Err(p) = step(&session, &spec, &action) {
            problems.push(p);
        }
        frame += 1;
        hold -= 1;
    }
    bar.finish_and_clear();
    rss.push((frame, resident_mb()));
    let (first, last) = (rss[0], rss[rss.len() - 1]);
    let peak = rss.iter().map(|r| r.1).fold(f64::NAN, f64::max);
    println!(
        "resident memory: {:.1} MB at frame {}, {:.1} MB at the end ({:+.1} MB), highest measured {peak:.1} MB",
        first.1,
        first.0,
        last.1,
        last.1 - first.1
    );
    println!(
        "{frame} frames in {:.0} s ({:.1} frames/s); malformed frames or failed restores: {}",
        started.elapsed().as_secs_f64(),
        frame as f64 / started.elapsed().as_secs_f64(),
        problems.len()
    );
    for p in problems.iter().take(10) {
        println!("  {p}");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "{} malformed frames or failed restores",
            problems.len()
        )))
    }
}
