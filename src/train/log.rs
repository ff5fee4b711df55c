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

/// Opens the run's CSV log: a new one with its header, or the existing one to append to when
/// resuming.
pub(crate) fn open_log(out: &Path, resume: bool) -> Result<std::fs::File> {
    let path = out.join(LOG_FILE);
    let fresh = !resume || !path.exists();
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
