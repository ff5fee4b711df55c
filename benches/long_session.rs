//! A long session of the shipped default model, played as a game plays it: on the inference
//! worker, stepped frame by frame, a scripted player who walks, turns and stands, the director
//! changing time of day and weather, and the session saved and restored every few minutes of game
//! time. Reports resident memory (from `/proc/self/status`) after the warm-up, at every save and
//! at the end; counts malformed frames (wrong size, wrong sound length, non-finite sound); and
//! after every restore replays the frames that followed the save and requires them bit for bit.
//!
//! `cargo bench --no-default-features --bench long_session` (an hour of game time: 72,000 frames,
//! about 40 minutes on one thread here). `NACRE_SOAK_MINUTES` sets the game time,
//! `NACRE_SOAK_SAVE_EVERY_S` the seconds of game time between saves (default 180),
//! `NACRE_BENCH_THREADS` the inference threads (default 1). Exits non-zero if a frame was
//! malformed or a restore did not continue bit for bit.

#[path = "common/quick.rs"]
mod quick;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy_nacre::action::{Action, Controls};
use bevy_nacre::spec::{ControlKind, ModelSpec};
use bevy_nacre::worker::{Pacing, SessionHandle, Worker, WorkerConfig};
use bevy_nacre::world_model::{Prompt, WorldModel};

/// Frames the session plays before memory is first measured (allocations that are made once).
const WARM_UP: u64 = 200;
/// Frames replayed after each restore and compared with the frames that followed the save.
const REPLAY: usize = 20;

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

fn main() -> std::process::ExitCode {
    quick::announce();
    let minutes = env_f64(
        "NACRE_SOAK_MINUTES",
        if quick::quick() { 0.25 } else { 60.0 },
    );
    let save_every_s = env_f64(
        "NACRE_SOAK_SAVE_EVERY_S",
        if quick::quick() { 5.0 } else { 180.0 },
    );
    let threads = env_f64("NACRE_BENCH_THREADS", 1.0) as usize;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(bevy_nacre::default_model::SHIPPED_DIR);
    let worker = Worker::spawn(WorkerConfig {
        cpu_threads: threads,
        ..WorkerConfig::default()
    })
    .expect("worker starts");
    let model_dir = dir.clone();
    worker
        .load_model("default", move |device| {
            let model = bevy_nacre::default_model::load(&model_dir, device)?
                .with_start_frames(bevy_nacre::reference::start_frames);
            Ok(Arc::new(model) as Arc<dyn WorldModel>)
        })
        .expect("model loads");
    let spec = bevy_nacre::default_model::load(&dir, &candle_core::Device::Cpu)
        .expect("model loads")
        .spec()
        .clone();
    let fps = spec.fps;
    let total = (minutes * 60.0 * fps as f64) as u64;
    let save_every = ((save_every_s * fps as f64) as u64).max(REPLAY as u64 + 1);
    println!(
        "long session: {} at {}x{}, {total} frames ({minutes} min of game time at {fps} frames/s), \
         saved and restored every {save_every} frames, {threads} inference thread(s)",
        dir.display(),
        spec.width,
        spec.height
    );
    let session = worker
        .start_session("default", Prompt::seeded(11), Pacing::Manual)
        .expect("session starts");
    let mut script = Script(0x9E37_79B9_7F4A_7C15);
    let (mut action, mut hold) = script.player(&spec, fps);
    let mut problems: Vec<String> = Vec::new();
    let mut rss = Vec::new();
    let started = Instant::now();
    let mut frame = 0u64;
    while frame < total {
        if hold == 0 {
            (action, hold) = script.player(&spec, fps);
        }
        // The director changes about twice a minute.
        if frame % (30 * fps as u64) == 0 {
            session
                .set_controls(script.controls(&spec))
                .expect("controls sent");
        }
        if frame == WARM_UP {
            rss.push((frame, resident_mb()));
        }
        if frame > 0 && frame % save_every == 0 {
            let saved = session
                .save()
                .expect("save sent")
                .recv()
                .expect("save answered")
                .expect("session saves");
            // Play on from the save, then restore it and play the same inputs again.
            let mut after = Vec::new();
            for _ in 0..REPLAY {
                match step(&session, &spec, &action) {
                    Ok(f) => after.push(f),
                    Err(p) => problems.push(p),
                }
            }
            session.restore(saved).expect("restore sent");
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
            rss.push((frame, resident_mb()));
            println!(
                "  frame {frame:>6} ({:>4.1} min of game time, {:>5.0} s): resident {:.1} MB",
                frame as f64 / fps as f64 / 60.0,
                started.elapsed().as_secs_f64(),
                resident_mb()
            );
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
    rss.push((frame, resident_mb()));
    let (first, last) = (rss[0].1, rss[rss.len() - 1].1);
    let peak = rss.iter().map(|r| r.1).fold(f64::NAN, f64::max);
    println!(
        "resident memory: {first:.1} MB at frame {}, {last:.1} MB at the end \
         ({:+.1} MB), highest measured {peak:.1} MB",
        rss[0].0,
        last - first
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
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
