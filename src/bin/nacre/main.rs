//! `nacre`: the command-line tool of bevy_nacre. Needs no Bevy.

use clap::{Parser, Subcommand};

mod bench;
mod datagen;
mod export;
mod sheet;
mod soak;
mod train;

/// Tools for bevy_nacre world models.
#[derive(Parser)]
#[command(name = "nacre", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print what this build supports: version, device, CPU threads.
    Info,
    /// Record a dataset from the reference world (resumable: run it again after an interruption).
    Datagen(datagen::DatagenArgs),
    /// Verify a dataset: checksums, shapes, indices; names the file behind every problem.
    DatasetCheck(datagen::CheckArgs),
    /// Render a contact sheet of the reference world (biomes, times of day, weathers) as a PNG.
    ReferenceSheet(sheet::SheetArgs),
    /// Train the default model on a dataset (progress bar, checkpoints, Ctrl-C saves, --resume).
    Train(train::TrainArgs),
    /// Evaluate a model against held-out data: metrics JSON, contact sheet PNG, rollout GIF.
    Eval(train::EvalArgs),
    /// Measure a model on the inference worker: frames/s, step time, latency, GFLOP/s vs peak.
    Bench(bench::BenchArgs),
    /// Play a model for a long session (an hour of game time by default) with a scripted player,
    /// saving and restoring every few minutes: resident memory, malformed frames, exact restores.
    Soak(soak::SoakArgs),
    /// Export a recording: replay it deterministically into PNG frames, WAV and GIF (an
    /// interrupted recording is finished from its journal first).
    Export(export::ExportArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result: bevy_nacre::Result<()> = match cli.command {
        Command::Datagen(args) => datagen::run_datagen(&args),
        Command::DatasetCheck(args) => datagen::run_check(&args),
        Command::ReferenceSheet(args) => sheet::run(&args),
        Command::Train(args) => train::run_train(&args),
        Command::Eval(args) => train::run_eval(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Soak(args) => soak::run(&args),
        Command::Export(args) => export::run(&args),
        Command::Info => {
            let chosen = bevy_nacre::device::choose_device(Default::default());
            println!("bevy_nacre {}", env!("CARGO_PKG_VERSION"));
            println!(
                "device: {}",
                bevy_nacre::device::device_name(&chosen.device)
            );
            println!(
                "cpu threads for inference (default): {}",
                bevy_nacre::worker::WorkerConfig::default().resolved_cpu_threads()
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
