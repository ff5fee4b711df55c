//! `nacre train` and `nacre eval`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bevy_nacre::eval::{EvalOptions, Measure, evaluate};
use bevy_nacre::train::{Outcome, TrainConfig, train};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `nacre train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Dataset folder made by `nacre datagen`.
    #[arg(long)]
    pub data: PathBuf,
    /// Training config (JSON; see `configs/default.json`).
    #[arg(long)]
    pub config: PathBuf,
    /// Output folder: checkpoints, `train_log.csv`, `loss.png`, and finally `config.json` +
    /// `model.safetensors`.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from the checkpoint in `--out`.
    #[arg(long)]
    pub resume: bool,
}

/// Runs `nacre train`; Ctrl-C writes a checkpoint and stops.
pub fn run_train(args: &TrainArgs) -> bevy_nacre::Result<()> {
    let cfg = TrainConfig::load(&args.config)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || {
            eprintln!("\nstopping after this step; a checkpoint will be written");
            stop.store(true, Ordering::SeqCst);
        });
    }
    let bar = ProgressBar::new(cfg.total_steps());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps (eta {eta}) {msg}",
        )
        .expect("valid template"),
    );
    let outcome = train(&args.data, &cfg, &args.out, args.resume, &stop, &mut |p| {
        bar.set_position(p.done);
        bar.set_message(format!(
            "{} loss {:.5} | {:.1} samples/s",
            p.stage.name(),
            p.loss,
            p.samples_per_s
        ));
    })?;
    bar.finish();
    match outcome {
        Outcome::Finished => println!(
            "done: config.json and model.safetensors in {}",
            args.out.display()
        ),
        Outcome::Interrupted => println!(
            "interrupted: checkpoint in {}; continue with --resume",
            args.out.join("checkpoint").display()
        ),
    }
    Ok(())
}

/// Arguments of `nacre eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Model folder (`config.json` + `model.safetensors`).
    #[arg(long)]
    pub model: PathBuf,
    /// Held-out dataset folder made by `nacre datagen` (other seeds than the training data).
    #[arg(long)]
    pub data: PathBuf,
    /// Where to write `metrics.json`, `contact_sheet.png` and `rollout.gif` (default: the
    /// model folder's `eval/`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Held-out episodes to use.
    #[arg(long, default_value_t = 8)]
    pub episodes: usize,
    /// Frames of the stability rollout.
    #[arg(long, default_value_t = 10_000)]
    pub stability_frames: usize,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Take only these measures, comma-separated: episodes (teacher-forced and autoregressive
    /// PSNR, action response, sound), director, scripted (turning and walking: realism,
    /// sharpness, revisit), standing_still, stability. Default: all.
    #[arg(long, value_delimiter = ',', value_parser = parse_measure)]
    pub only: Vec<Measure>,
    /// World seeds of the scripted turning and walking.
    #[arg(long, default_value_t = 6)]
    pub scripted_seeds: usize,
}

fn parse_measure(name: &str) -> Result<Measure, String> {
    Measure::parse(name).ok_or_else(|| {
        format!(
            "unknown measure '{name}' (episodes, director, scripted, standing_still, stability)"
        )
    })
}

/// Runs `nacre eval`.
pub fn run_eval(args: &EvalArgs) -> bevy_nacre::Result<()> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| bevy_nacre::Error::Other(e.to_string()))?;
    let out = args.out.clone().unwrap_or_else(|| args.model.join("eval"));
    let device = candle_core::Device::Cpu;
    let model = bevy_nacre::default_model::load(&args.model, &device)?
        .with_start_frames(bevy_nacre::reference::start_frames);
    let mut opts = EvalOptions {
        episodes: args.episodes,
        stability_frames: args.stability_frames,
        scripted_seeds: args.scripted_seeds.max(2),
        ..EvalOptions::default()
    };
    if !args.only.is_empty() {
        opts.measures = args.only.clone();
    }
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let report = pool.install(|| {
        evaluate(&model, &args.data, &out, &opts, &mut |stage| {
            bar.set_message(stage.to_string())
        })
    })?;
    bar.finish_and_clear();
    println!("{}", report.to_json());
    let skipped: Vec<_> = opts
        .measures
        .iter()
        .filter(|m| !report.measured.contains(m))
        .collect();
    if !skipped.is_empty() {
        println!(
            "not measured: {skipped:?} (they play the reference world beside the model, and \
             this dataset comes from another world)"
        );
    }
    println!("written to {}", out.display());
    Ok(())
}
