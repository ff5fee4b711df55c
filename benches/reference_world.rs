//! Reference-world speed: frames per second of one session (physics + rendering + sound) on one
//! thread, at 64×64 and 128×128, driven by a player-like trajectory (walking, turning, director
//! changes). Run with `cargo bench --no-default-features --bench reference_world`.
//!
//! Prints the median per-frame rate (`bevy_nacre::timing::time_runs`) and the mean rate over the
//! whole run, which also pays for generating new land as the player explores.

#[path = "common/quick.rs"]
mod quick;

use std::time::Instant;

use bevy_nacre::reference::ReferenceWorld;
use bevy_nacre::reference::trajectory::{Trajectory, TrajectoryConfig};
use bevy_nacre::timing::time_runs;
use bevy_nacre::world_model::{Prompt, WorldModel};

/// CPU time this thread has used, in seconds, from `/proc/thread-self/stat` (Linux; 10 ms
/// resolution). `None` elsewhere. Unlike wall time it does not count time lost to other
/// processes on a busy machine.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn bench(width: u32, height: u32, frames: usize) {
    let world = ReferenceWorld::new(width, height);
    let spec = world.spec().clone();
    let mut trajectory = Trajectory::new(7, spec.default_controls(), TrajectoryConfig::default());
    let mut session = world
        .start_session(&Prompt {
            seed: 7,
            start_frames: Vec::new(),
            controls: Some(trajectory.start_controls().clone()),
        })
        .expect("session starts");
    let mut video = 0.0;
    let mut audio = 0.0;
    let started = Instant::now();
    let cpu_start = thread_cpu_seconds();
    let mut count = 0usize;
    let stats = time_runs(quick::iterations(20, 2), frames, || {
        let input = trajectory.next(&mut session);
        let out = session.step_world(&input).expect("step");
        for (name, d) in &out.timings.stages {
            match *name {
                "video" => video += d.as_secs_f64(),
                "audio" => audio += d.as_secs_f64(),
                _ => {}
            }
        }
        count += 1;
        std::hint::black_box(out);
    });
    let mean = started.elapsed().as_secs_f64() / count as f64;
    let cpu = match (cpu_start, thread_cpu_seconds()) {
        (Some(a), Some(b)) if b > a => format!("{:.0} frames/s", count as f64 / (b - a)),
        _ => "n/a".into(),
    };
    println!(
        "reference world {width}x{height}: median {:.0} frames/s ({stats}); mean over {count} frames incl. {} new chunks of land {:.0} frames/s (by this thread's CPU time: {cpu}); video {:.3} ms, audio {:.3} ms per frame",
        1.0 / stats.median.as_secs_f64(),
        session.terrain().chunks_generated,
        1.0 / mean,
        video / count as f64 * 1e3,
        audio / count as f64 * 1e3,
    );
}

fn main() {
    quick::announce();
    println!(
        "one thread; {} logical CPUs on this machine",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    bench(64, 64, quick::iterations(2000, 10));
    bench(128, 128, quick::iterations(1000, 10));
}
