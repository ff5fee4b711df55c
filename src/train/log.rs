//! The training log (`train_log.csv`, one line per `log_every` steps) and the loss plot drawn
//! from it.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use super::config::Stage;
use super::plot;
use crate::error::{Error, Result};

/// The training log, one line per `log_every` steps.
pub const LOG_FILE: &str = "train_log.csv";
/// The loss curve.
pub const PLOT_FILE: &str = "loss.png";

/// Opens the run's CSV log: a new one with its header, or, when resuming from the checkpoint
/// after step `resume_after` (counted over all stages), the existing one cut back to the lines of
/// steps up to it (a killed run may have logged steps after its last checkpoint, which the resumed
/// run logs again) and opened to append to.
pub(crate) fn open_log(out: &Path, resume_after: Option<u64>) -> Result<std::fs::File> {
    let path = out.join(LOG_FILE);
    let fresh = resume_after.is_none() || !path.exists();
    if let (Some(done), false) = (resume_after, fresh) {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let kept = lines_up_to(&text, done);
        if kept.len() != text.len() {
            crate::files::write_atomic(&path, kept.as_bytes())?;
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(!fresh)
        .write(true)
        .truncate(fresh)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    if fresh {
        writeln!(
            f,
            "step,stage,stage_step,loss,parts,lr,samples_per_s,elapsed_s"
        )
        .map_err(|e| Error::io(&path, e))?;
    }
    Ok(f)
}

/// The header and the complete lines of `log` whose step is at most `done`; a line cut short by
/// a kill (no newline) is dropped.
fn lines_up_to(log: &str, done: u64) -> String {
    let mut kept = String::with_capacity(log.len());
    for (i, line) in log.split_inclusive('\n').enumerate() {
        if !line.ends_with('\n') {
            break;
        }
        let step = line.split(',').next().and_then(|s| s.parse::<u64>().ok());
        if i == 0 || step.is_some_and(|s| s <= done) {
            kept.push_str(line);
        }
    }
    kept
}

/// Loss curves from an existing log (so a resumed run's plot covers the whole run).
pub(crate) fn read_curves(path: &Path) -> HashMap<String, Vec<(f64, f64)>> {
    let mut curves: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(path) {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if let (Some(step), Some(stage), Some(loss)) = (f.first(), f.get(1), f.get(3))
                && let (Ok(s), Ok(l)) = (step.parse(), loss.parse())
            {
                curves.entry(stage.to_string()).or_default().push((s, l));
            }
        }
    }
    curves
}

/// Draws the loss curves into the run's `loss.png`.
pub(crate) fn plot_curves(out: &Path, curves: &HashMap<String, Vec<(f64, f64)>>) -> Result<()> {
    let series: Vec<(String, Vec<(f64, f64)>)> = Stage::ALL
        .iter()
        .filter_map(|s| {
            curves
                .get(s.name())
                .map(|c| (s.name().to_string(), c.clone()))
        })
        .collect();
    plot::save_loss_plot(&out.join(PLOT_FILE), &series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_log_keeps_the_steps_up_to_the_checkpoint_and_drops_a_cut_line() {
        let log = "step,stage\n1,a\n2,a\n3,a\n4,a";
        assert_eq!(lines_up_to(log, 2), "step,stage\n1,a\n2,a\n");
        assert_eq!(lines_up_to(log, 9), "step,stage\n1,a\n2,a\n3,a\n");
        assert_eq!(lines_up_to(log, 0), "step,stage\n");
    }
}
