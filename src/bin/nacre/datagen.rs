//! `nacre datagen` and `nacre dataset-check`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bevy_nacre::dataset::{DatagenOptions, check_dataset, generate};
use indicatif::{ProgressBar, ProgressStyle};

/// Parses a resolution such as `64x64`.
pub fn parse_res(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("'{s}' is not a resolution like 64x64"))?;
    let w: u32 = w
        .trim()
        .parse()
        .map_err(|_| format!("bad width in '{s}'"))?;
    let h: u32 = h
        .trim()
        .parse()
        .map_err(|_| format!("bad height in '{s}'"))?;
    if !(1..=4096).contains(&w) || !(1..=4096).contains(&h) {
        return Err(format!("'{s}': each side must be 1 to 4096"));
    }
    Ok((w, h))
}

/// Arguments of `nacre datagen`.
#[derive(clap::Args, Debug)]
pub struct DatagenArgs {
    /// Dataset folder. Running the same command again resumes an interrupted run.
    #[arg(long)]
    pub out: PathBuf,
    /// Episodes in total.
    #[arg(long)]
    pub episodes: u64,
    /// Frames per episode (20 frames = 1 second).
    #[arg(long)]
    pub frames_per_episode: u32,
    /// Resolution, WxH (64x64 and 128x128 are the usual training sizes).
    #[arg(long, default_value = "64x64", value_parser = parse_res)]
    pub res: (u32, u32),
    /// Dataset seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Episodes per shard (default: about 64 MiB of frames per shard).
    #[arg(long)]
    pub episodes_per_shard: Option<u32>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Average director changes (time, weather, biome, landmarks, storms) per minute.
    #[arg(long, default_value_t = 4.0)]
    pub director_rate: f32,
}

/// Runs `nacre datagen`.
pub fn run_datagen(args: &DatagenArgs) -> bevy_nacre::Result<()> {
    let mut opts = DatagenOptions::new(
        &args.out,
        args.episodes,
        args.frames_per_episode,
        args.res.0,
        args.res.1,
        args.seed,
    );
    opts.episodes_per_shard = args.episodes_per_shard;
    if let Some(t) = args.threads {
        opts.threads = t.max(1);
    }
    opts.director_changes_per_minute = args.director_rate;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // Ctrl-C finishes nothing half-way: shards in progress are dropped, finished ones stay.
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    opts.stop = Some(stop.clone());
    let bar = ProgressBar::new(args.episodes * args.frames_per_episode as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} frames  {per_sec}  eta {eta}  {msg}")
            .expect("valid template"),
    );
    let report = generate(&opts, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    if stop.load(Ordering::SeqCst) && !report.complete {
        eprintln!(
            "interrupted: {} shards written this run; run the same command again to resume",
            report.shards_written
        );
        return Err(bevy_nacre::Error::Other("interrupted".into()));
    }
    let fps = report.frames_written as f64 / report.seconds.max(1e-9);
    println!(
        "{}: {} shards ({} kept, {} written), {} frames written in {:.1} s ({:.0} frames/s), complete: {}",
        args.out.display(),
        report.shards_total,
        report.shards_kept,
        report.shards_written,
        report.frames_written,
        report.seconds,
        fps,
        report.complete
    );
    Ok(())
}

/// Arguments of `nacre dataset-check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Dataset folder.
    pub dir: PathBuf,
}

/// Runs `nacre dataset-check`; fails when any problem is found.
pub fn run_check(args: &CheckArgs) -> bevy_nacre::Result<()> {
    let report = check_dataset(&args.dir);
    for n in &report.notes {
        println!("note: {n}");
    }
    for p in &report.problems {
        println!("problem: {p}");
    }
    println!(
        "{}: {} of {} shards ok, {} episodes, {} frames, {} problems",
        args.dir.display(),
        report.shards_ok,
        report.shards_listed,
        report.episodes,
        report.frames,
        report.problems.len()
    );
    if report.is_ok() {
        Ok(())
    } else {
        Err(bevy_nacre::Error::Other(format!(
            "{} problems found in {}",
            report.problems.len(),
            args.dir.display()
        )))
    }
}
