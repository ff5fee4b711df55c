//! `nacre`: the command-line tool of bevy_nacre. Needs no Bevy.

use clap::{Parser, Subcommand};

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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result: bevy_nacre::Result<()> = match cli.command {
        Command::Info => {
            let chosen = bevy_nacre::device::choose_device(Default::default());
            println!("bevy_nacre {}", env!("CARGO_PKG_VERSION"));
            println!("device: {}", bevy_nacre::device::device_name(&chosen.device));
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
