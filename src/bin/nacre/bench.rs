//! `nacre bench`: the default model on the inference worker, as a game would run it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bevy_nacre::default_model::network::flops_per_frame;
use bevy_nacre::timing::{TimingStats, matmul_gflops};
use bevy_nacre::worker::{Pacing, Worker, WorkerConfig};
use bevy_nacre::world_model::{Prompt, WorldModel};
use bevy_nacre::{Error, Result};

/// Arguments of `nacre bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Model folder (`config.json` + `model.safetensors`).
    #[arg(long, default_value = bevy_nacre::default_model::SHIPPED_DIR)]
    pub model: PathBuf,
    /// Frames to measure (after 20 warm-up frames); at least 1.
    #[arg(long, default_value_t = 300, value_parser = at_least_one_frame)]
    pub frames: usize,
    /// Inference thread counts to measure, comma-separated (default: 1 and all cores).
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
}

/// Parses `--frames`: a benchmark of no frames would measure nothing and divide by zero.
fn at_least_one_frame(value: &str) -> std::result::Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("at least 1 frame must be measured".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a number of frames: {e}")),
    }
}

/// Runs `nacre bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.frames == 0 {
        return Err(Error::Other(
            "--frames 0: at least 1 frame must be measured".into(),
        ));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads = args.threads.clone();
    if threads.is_empty() {
        threads = vec![1, cores];
        threads.dedup();
    }
    let device = candle_core::Device::Cpu;
    let probe = bevy_nacre::default_model::load(&args.model, &device)?;
    let cfg = probe.shared().cfg.clone();
    let flops = flops_per_frame(&cfg, &probe.shared().generation);
    let spec = probe.spec().clone();
    drop(probe);
    println!(
        "model {} {} ({}x{}), {:.3} GFLOP per frame; {cores} cores",
        cfg.name,
        cfg.version,
        cfg.width,
        cfg.height,
        flops as f64 / 1e9
    );
    for n in threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| Error::Other(e.to_string()))?;
        let peak = pool.install(|| matmul_gflops(&device, 1024))?;
        let (fps, step, latency) = measure(&args.model, &spec, n, args.frames)?;
        let step_s = step.median.as_secs_f64();
        println!("threads {n}:");
        println!("  generated frames/s: {fps:.1}");
        println!("  step time: {step}");
        if latency.is_empty() {
            println!("  input-to-frame latency: no frame carried an input time");
        } else {
            println!(
                "  input-to-frame latency: p50 {:.1} ms, p99 {:.1} ms",
                latency.median.as_secs_f64() * 1e3,
                latency.p99.as_secs_f64() * 1e3
            );
        }
        println!(
            "  model: {:.1} GFLOP/s at the median step; matmul peak in this run {:.1} GFLOP/s ({:.0} %)",
            flops as f64 / step_s / 1e9,
            peak,
            flops as f64 / step_s / 1e9 / peak * 100.0
        );
    }
    Ok(())
}

/// Runs the model free on a worker with `threads` inference threads while another thread sends
/// input at 60 Hz like a game; returns frames/s, step times and input-to-frame latencies.
fn measure(
    model: &std::path::Path,
    spec: &bevy_nacre::spec::ModelSpec,
    threads: usize,
    frames: usize,
) -> Result<(f64, TimingStats, TimingStats)> {
    let worker = Worker::spawn(WorkerConfig {
        cpu_threads: threads,
        ..WorkerConfig::default()
    })?;
    let dir = model.to_path_buf();
    worker.load_model("bench", move |device| {
        let model = bevy_nacre::default_model::load(&dir, device)?
            .with_start_frames(bevy_nacre::reference::start_frames);
        Ok(Arc::new(model) as Arc<dyn WorldModel>)
    })?;
    let session = Arc::new(worker.start_session("bench", Prompt::seeded(7), Pacing::Free)?);
    let spec = spec.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let game = {
        let (session, stop) = (session.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut action = spec.neutral_action();
                // Walk and turn where the model has those channels (a model's own config.json
                // may declare fewer).
                if let Some(v) = action.values.get_mut(0) {
                    *v = 1.0;
                }
                if let Some(v) = action.values.get_mut(2) {
                    *v = ((i / 60) as f32).sin() * 0.5;
                }
                session.send_input(action, Instant::now());
                i += 1;
                std::thread::sleep(Duration::from_micros(16_667));
            }
        })
    };
    let (mut steps, mut latencies) = (Vec::new(), Vec::new());
    let mut began = None;
    for i in 0..frames + 20 {
        let f = session
            .next_frame_timeout(Duration::from_secs(30))
            .ok_or_else(|| Error::Worker("no frame within 30 s".into()))?;
        if i == 20 {
            began = Some(Instant::now());
        }
        if i >= 20 {
            steps.push(f.compute);
            if let Some(t) = f.input_sampled_at {
                latencies.push(f.finished_at.saturating_duration_since(t));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = game.join();
    let elapsed = began
        .ok_or_else(|| Error::Other("no frame was measured after the warm-up".into()))?
        .elapsed()
        .as_secs_f64();
    Ok((
        frames as f64 / elapsed,
        TimingStats::from_samples(&steps),
        TimingStats::from_samples(&latencies),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_must_be_at_least_one() {
        assert_eq!(at_least_one_frame("300"), Ok(300));
        let err = at_least_one_frame("0").unwrap_err();
        assert!(err.contains("at least 1 frame"), "{err}");
        assert!(at_least_one_frame("-4").is_err());
    }
}
