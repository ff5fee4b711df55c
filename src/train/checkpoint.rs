//! Checkpoints: a run's weights, optimizer moments, configs and position, written atomically
//! every `checkpoint_every` steps and when training stops, so `--resume` continues exactly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::config::{Stage, TrainConfig};
use super::init::set_from_weights;
use super::optim::AdamW;
use crate::default_model::config::GenerationConfig;
use crate::default_model::weights::{save_tensors, save_varmap};
use crate::error::{Error, Result};
use crate::files::write_atomic;

/// The checkpoint folder inside a run's output folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// Where a run stands ([`TrainState`]); written last.
pub const STATE_FILE: &str = "train_state.json";
/// The training config the checkpoint was made with.
pub const TRAIN_CONFIG_FILE: &str = "train_config.json";
/// Where a run stands; saved in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Current stage.
    pub stage: Stage,
    /// Steps done in the current stage.
    pub step: u64,
    /// Seconds of training so far, over all sessions.
    pub elapsed_s: f64,
    /// Step counts changed on resuming (see [`resumable_with`]), oldest first: a record of how
    /// this run differs from a run of its final config from scratch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule_changes: Vec<String>,
}

impl TrainState {
    /// The start of a new run.
    pub fn new() -> Self {
        Self {
            stage: Stage::Autoencoder,
            step: 0,
            elapsed_s: 0.0,
            schedule_changes: Vec::new(),
        }
    }
}

impl Default for TrainState {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes a checkpoint into `dir`: weights, optimizer moments, both configs, and last the
/// state, all into a folder beside it (`checkpoint.next`) that then replaces `dir` by renames,
/// so that `dir` always holds one whole checkpoint, the old or the new, whenever the process is
/// killed ([`recover`] finishes an interrupted replacement).
pub(crate) fn save_checkpoint(
    dir: &Path,
    cfg: &TrainConfig,
    generation: &GenerationConfig,
    state: &TrainState,
    varmap: &VarMap,
    opt: &AdamW,
) -> Result<()> {
    let next = beside(dir, "next");
    if next.exists() {
        std::fs::remove_dir_all(&next).map_err(|e| Error::io(&next, e))?;
    }

    std::fs::create_dir_all(&next).map_err(|e| Error::io(&next, e))?;
    save_varmap(varmap, &next.join("model.safetensors"))?;
    save_tensors(&opt.state()?, &next.join("optimizer.safetensors"))?;
    write_atomic(
        &next.join(TRAIN_CONFIG_FILE),
        serde_json::to_string_pretty(cfg)
            .expect("serialises")
            .as_bytes(),
    )?;
    write_atomic(
        &next.join("config.json"),
        cfg.model.to_json(generation).as_bytes(),
    )?;
    // The state goes last: a checkpoint counts only once its state file names it.
    write_atomic(
        &next.join(STATE_FILE),
        serde_json::to_string_pretty(state)
            .expect("serialises")
            .as_bytes(),
    )?;
    let previous = beside(dir, "previous");
    if dir.exists() {
        if previous.exists() {
            std::fs::remove_dir_all(&previous).map_err(|e| Error::io(&previous, e))?;
        }
        std::fs::rename(dir, &previous).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&next, dir).map_err(|e| Error::io(&next, e))?;
    if previous.exists() {
        std::fs::remove_dir_all(&previous).map_err(|e| Error::io(&previous, e))?;
    }
    Ok(())
}

/// `dir` with `.suffix` added to its name: `checkpoint.next`, `checkpoint.previous`.
fn beside(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    dir.with_file_name(name)
}

/// Finishes a checkpoint replacement that a kill or a power cut interrupted, so that `dir` holds
/// a whole checkpoint if any was written: a complete `checkpoint.next` (its state file, written
/// last, exists) or else `checkpoint.previous` takes the place of a missing `dir`; leftovers are
/// removed.
pub(crate) fn recover(dir: &Path) -> Result<()> {
    let (next, previous) = (beside(dir, "next"), beside(dir, "previous"));
    if !dir.join(STATE_FILE).exists() {
        let whole = [&next, &previous]
            .into_iter()
            .find(|d| d.join(STATE_FILE).exists());
        if let Some(whole) = whole {
            if dir.exists() {
                std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            std::fs::rename(whole, dir).map_err(|e| Error::io(whole, e))?;
        }
    }
    for leftover in [next, previous] {
        if leftover.exists() {
            std::fs::remove_dir_all(&leftover).map_err(|e| Error::io(&leftover, e))?;
        }
    }
    Ok(())
}

/// Whether a checkpoint made with `saved` may continue under `cfg`, and what changed.
///
/// Everything must be the same except the thread count and the step counts of the current stage
/// and the stages after it, which may change (to shorten or extend a run that turned out slower or faster than
/// planned); the current stage must not end before the step already reached. Learning-rate
/// schedules follow the new counts from the next step on, so such a run is close to, but not
/// bit for bit, a run of `cfg` from scratch: the changes are returned to be recorded.
pub fn resumable_with(
    saved: &TrainConfig,
    cfg: &TrainConfig,
    state: &TrainState,
) -> std::result::Result<Vec<String>, String> {
    let mut adjusted = saved.clone();
    // How many threads run the training is the machine's business, not the run's.
    adjusted.threads = cfg.threads;
    let mut changes = Vec::new();
    for stage in Stage::ALL.into_iter().skip_while(|s| *s != state.stage) {
        let (old, new) = (saved.stage(stage).steps, cfg.stage(stage).steps);
        if old != new {
            changes.push(format!(
                "{} stage: {new} steps instead of {old}, from its step {}",
                stage.name(),
                if stage == state.stage { state.step } else { 0 }
            ));
            adjusted.stage_mut(stage).steps = new;
        }
    }
    if &adjusted != cfg {
        return Err(
            "the checkpoint was made with a different training config; resume with the \
                    same --config (only the step counts of the current and later stages may change)"
                .into(),
        );
    }
    if cfg.stage(state.stage).steps < state.step {
        return Err(format!(
            "the checkpoint is at step {} of the {} stage, past the {} steps the new config asks for",
            state.step,
            state.stage.name(),
            cfg.stage(state.stage).steps
        ));
    }
    Ok(changes)
}

/// Reads the checkpoint in `dir` into `varmap` and returns where it stands and the optimizer's
/// moments; refuses one made with a config `cfg` may not continue ([`resumable_with`]).
pub(crate) fn load_checkpoint(
    dir: &Path,
    cfg: &TrainConfig,
    varmap: &VarMap,
) -> Result<(TrainState, HashMap<String, Tensor>)> {
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state: TrainState = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(&state_path, format!("not a training state: {e}")))?;
    let saved_cfg = TrainConfig::load(&dir.join(TRAIN_CONFIG_FILE))?;
    let mut state = state;
    let changes = resumable_with(&saved_cfg, cfg, &state)
        .map_err(|why| Error::bad_file(dir.join(TRAIN_CONFIG_FILE), why))?;
    for change in changes {
        eprintln!("resuming with a changed schedule: {change}");
        state.schedule_changes.push(change);
    }
    set_from_weights(varmap, &dir.join("model.safetensors"), &cfg.model)?;
    let opt_path = dir.join("optimizer.safetensors");
    let opt = candle_core::safetensors::load(&opt_path, &Device::Cpu)
        .map_err(|e| Error::bad_file(&opt_path, e.to_string()))?;
    Ok((state, opt))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stage: Stage, step: u64) -> TrainState {
        TrainState {
            stage,
            step,
            elapsed_s: 0.0,
            schedule_changes: Vec::new(),
        }
    }

    #[test]
    fn resuming_may_change_only_the_remaining_step_counts() {
        let saved = TrainConfig::tiny();
        assert_eq!(
            resumable_with(&saved, &saved, &at(Stage::Dynamics, 5)),
            Ok(vec![])
        );

        // Shorter dynamics and longer decoder stages, from the middle of the dynamics stage.
        let mut shorter = saved.clone();
        shorter.dynamics.steps = 20;
        shorter.decoder.steps = 15;
        let changes = resumable_with(&saved, &shorter, &at(Stage::Dynamics, 5)).unwrap();
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes[0].contains("dynamics stage: 20 steps instead of 40, from its step 5"));

        // Not below the step already reached, not a finished stage, nothing else.
        assert!(resumable_with(&saved, &shorter, &at(Stage::Dynamics, 25)).is_err());
        let mut ae = saved.clone();
        ae.autoencoder.steps = 10;
        assert!(resumable_with(&saved, &ae, &at(Stage::Dynamics, 5)).is_err());
        let mut lr = saved.clone();
        lr.dynamics.lr *= 2.0;
        assert!(resumable_with(&saved, &lr, &at(Stage::Dynamics, 5)).is_err());
    }

    /// A checkpoint folder whose state file says `which`, or an unfinished one without it.
    fn fake(dir: &Path, which: Option<&str>) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("model.safetensors"), "weights").unwrap();
        if let Some(which) = which {
            std::fs::write(dir.join(STATE_FILE), which).unwrap();
        }
    }

    fn state_of(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(STATE_FILE)).unwrap()
    }

    #[test]
    fn an_interrupted_replacement_leaves_a_whole_checkpoint() {
        let root = std::env::temp_dir().join(format!("nacre-recover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join(CHECKPOINT_DIR);
        let (next, previous) = (beside(&dir, "next"), beside(&dir, "previous"));

        // Killed while writing the new one: the old one stays, the half-written one goes.
        fake(&dir, Some("old"));
        fake(&next, None);
        recover(&dir).unwrap();
        assert_eq!(state_of(&dir), "old");
        assert!(!next.exists());

        // Killed between the two renames: the new one, complete, takes the place.
        std::fs::rename(&dir, &previous).unwrap();
        fake(&next, Some("new"));
        recover(&dir).unwrap();
        assert_eq!(state_of(&dir), "new");
        assert!(!next.exists() && !previous.exists());

        // Killed between the renames while the new one was unfinished: the old one comes back.
        std::fs::rename(&dir, &previous).unwrap();
        fake(&next, None);
        recover(&dir).unwrap();
        assert_eq!(state_of(&dir), "new");

        // Killed before the old one was removed: it goes.
        fake(&previous, Some("older"));
        recover(&dir).unwrap();
        assert_eq!(state_of(&dir), "new");
        assert!(!previous.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
