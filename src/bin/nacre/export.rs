//! `nacre export`: turns a recording made in a game (or by `nacre export` itself) into PNG
//! frames, a WAV file and an animated GIF — by running the model again, deterministically, from
//! the recording's saved start and its action log, or by converting its recorded frames. A
//! recording whose game was killed before it finished is first finished from its step journal.

use std::path::PathBuf;

use bevy_nacre::recording::{self, ActionLog, ReplayOptions};
use bevy_nacre::reference::{MODEL_NAME as REFERENCE_NAME, ReferenceWorld};
use bevy_nacre::{Error, Result};

/// Arguments of `nacre export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The recording folder (with `actions.json` and `start.nacre`, or the `steps.journal` of a
    /// recording that was interrupted, which is finished first).
    pub recording: PathBuf,
    /// Where to write the export (default: `<recording>/export`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Folder of the trained model to replay with, when the recording was not made with the
    /// reference world.
    #[arg(long, default_value = bevy_nacre::default_model::SHIPPED_DIR)]
    pub model: PathBuf,
    /// Only convert the recorded frames to `recording.gif`; do not run the model.
    #[arg(long)]
    pub gif_only: bool,
    /// Do not write the PNG frames.
    #[arg(long)]
    pub no_frames: bool,
    /// Do not write the GIF.
    #[arg(long)]
    pub no_gif: bool,
    /// Do not write the WAV file.
    #[arg(long)]
    pub no_wav: bool,
    /// Fail unless every recorded frame is reproduced bit for bit.
    #[arg(long)]
    pub check: bool,
}

/// Runs the command.
pub fn run(args: &ExportArgs) -> Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.recording.join("export"));
    if recording::is_interrupted(&args.recording) {
        let summary = recording::recover(&args.recording)?;
        println!(
            "finished an interrupted recording from its journal: {} steps, {} frames{}",
            summary.steps,
            summary.frames,
            if summary.missed_steps > 0 {
                format!(" (cut at a gap of {} missed steps)", summary.missed_steps)
            } else {
                String::new()
            }
        );
    }
    let log = ActionLog::load(&args.recording.join(recording::ACTION_LOG))?;
    if args.gif_only {
        let gif = out.join(recording::GIF);
        let n = recording::gif_from_recording(&args.recording, &gif, log.fps)?;
        println!("wrote {} ({n} frames)", gif.display());
        return Ok(());
    }
    let model: Box<dyn bevy_nacre::world_model::WorldModel> = if log.model == REFERENCE_NAME {
        Box::new(ReferenceWorld::new(log.width, log.height))
    } else {
        let device = bevy_nacre::device::choose_device(Default::default()).device;
        Box::new(
            bevy_nacre::default_model::load(&args.model, &device).map_err(|e| {
                Error::Other(format!(
                    "the recording was made with model '{}'; could not load it from {}: {e}",
                    log.model,
                    args.model.display()
                ))
            })?,
        )
    };
    let options = ReplayOptions {
        frames: !args.no_frames,
        wav: !args.no_wav,
        gif: !args.no_gif,
    };
    let started = std::time::Instant::now();
    let summary = recording::replay(model.as_ref(), &args.recording, &out, &options)?;
    let secs = started.elapsed().as_secs_f32();
    println!(
        "replayed {} steps of '{}' v{} in {secs:.1} s ({:.0} frames/s) into {}",
        summary.steps,
        log.model,
        log.model_version,
        summary.steps as f32 / secs.max(1e-6),
        out.display()
    );
    println!(
        "recorded frames reproduced bit for bit: {} of {}{}",
        summary.frames_identical,
        summary.frames_compared,
        summary
            .first_mismatch
            .map(|i| format!(" (first difference at frame {i})"))
            .unwrap_or_default()
    );
    if args.check && summary.frames_compared == 0 {
        return Err(Error::Other(format!(
            "--check: {} has no recorded frames to compare with",
            args.recording.display()
        )));
    }
    if args.check && summary.frames_identical != summary.frames_compared {
        return Err(Error::Other(format!(
            "{} recorded frames were not reproduced",
            summary.frames_compared - summary.frames_identical
        )));
    }
    Ok(())
}
