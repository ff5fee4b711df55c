//! The dataset manifest: `manifest.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::shard::Dims;
use crate::error::{Error, Result};
use crate::spec::{ActionKind, ControlKind, ModelSpec};

/// Value of [`Manifest::format`].
pub const FORMAT: &str = "nacre-dataset";
/// Version of the dataset layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// File name of the manifest inside a dataset folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Largest frame side a manifest may declare (`nacre datagen` makes at most 4096).
const MAX_SIDE: usize = 16_384;
/// Most action channels, and most controls, a manifest may declare.
const MAX_CHANNELS: usize = 4096;
/// Most audio samples per frame a manifest may declare.
const MAX_AUDIO_SAMPLES: usize = 1 << 20;

/// How a dataset was generated (so a resumed run can check it continues the same dataset).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeneratorInfo {
    /// Which world produced it (`reference`).
    pub world: String,
    /// Version of the world's rules ([`ModelSpec::version`]).
    pub world_version: String,
    /// Dataset seed; episode `e` uses a seed derived from it and `e`.
    pub seed: u64,
    /// Episodes requested in total.
    pub episodes: u64,
    /// Frames in every episode.
    pub frames_per_episode: u32,
    /// Episodes per shard (the last shard may hold fewer).
    pub episodes_per_shard: u32,
    /// Average director changes per minute in the scripted trajectories.
    pub director_changes_per_minute: f32,
}

/// One shard file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// Shard number (its position in the dataset).
    pub index: u64,
    /// File name inside the dataset folder.
    pub file: String,
    /// Global index of its first episode.
    pub first_episode: u64,
    /// Episodes it holds.
    pub episodes: u64,
    /// Rows (frames) it holds.
    pub frames: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
}

/// The manifest of a dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Layout version; see [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Spec of the world that produced the data (resolution, channels, controls, audio).
    pub model: ModelSpec,
    /// Tensor dimensions.
    pub dims: Dims,
    /// How the data was generated.
    pub generator: GeneratorInfo,
    /// Finished shards, in index order.
    pub shards: Vec<ShardEntry>,
    /// Whether every requested episode is present.
    pub complete: bool,
}

impl Manifest {
    /// Reads and validates `dir/manifest.json`; every error names the file.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            let hint = if e.is_eof() {
                " (the file is truncated)"
            } else {
                ""
            };
            Error::bad_file(&path, format!("not a valid dataset manifest{hint}: {e}"))
        })?;
        if m.format != FORMAT {
            return Err(Error::bad_file(
                &path,
                format!("format is '{}', expected '{FORMAT}'", m.format),
            ));
        }
        if m.format_version != FORMAT_VERSION {
            return Err(Error::bad_file(
                &path,
                format!(
                    "dataset format version {}; this build reads version {FORMAT_VERSION}",
                    m.format_version
                ),
            ));
        }
        if m.dims != Dims::from_spec(&m.model) {
            return Err(Error::bad_file(
                &path,
                "tensor dimensions do not match the model spec",
            ));
        }
        m.check_bounds()
            .map_err(|why| Error::bad_file(&path, why))?;
        Ok(m)
    }

    /// Refuses sizes no dataset has, before anything is sized from them: frames of 0 or more than
    /// [`MAX_SIDE`] pixels a side, absurd channel or sample counts, inverted value ranges, empty
    /// episodes or shards, and shard file names that are not plain names inside the dataset
    /// folder.
    fn check_bounds(&self) -> std::result::Result<(), String> {
        let d = &self.dims;
        for (what, value, max) in [
            ("frame width", d.width as usize, MAX_SIDE),
            ("frame height", d.height as usize, MAX_SIDE),
        ] {
            if value == 0 || value > max {
                return Err(format!("{what} {value} is outside 1..={max}"));
            }
        }
        for (what, value, max) in [
            ("action channels", d.actions, MAX_CHANNELS),
            ("controls", d.controls, MAX_CHANNELS),
            (
                "audio samples per frame",
                d.audio_samples,
                MAX_AUDIO_SAMPLES,
            ),
        ] {
            if value > max {
                return Err(format!("{value} {what} is more than {max}"));
            }
        }
        // Ranges the checks clamp values into (`f32::clamp` panics on an inverted range).
        for a in &self.model.actions {
            if let ActionKind::Axis { min, max } = a.kind
                && (min > max || min.is_nan() || max.is_nan())
            {
                return Err(format!("action '{}' has the range {min} to {max}", a.name));
            }
        }
        for c in &self.model.controls {
            if let ControlKind::Continuous { min, max, .. } = c.kind
                && (min > max || min.is_nan() || max.is_nan())
            {
                return Err(format!("control '{}' has the range {min} to {max}", c.name));
            }
        }
        let g = &self.generator;
        if g.frames_per_episode == 0 || g.episodes_per_shard == 0 {
            return Err(format!(
                "generator has {} frames per episode and {} episodes per shard; both must be 1 or \
                 more",
                g.frames_per_episode, g.episodes_per_shard
            ));
        }
        for entry in &self.shards {
            let mut parts = Path::new(&entry.file).components();
            let plain = matches!(
                (parts.next(), parts.next()),
                (Some(std::path::Component::Normal(_)), None)
            );
            if !plain {
                return Err(format!(
                    "shard {} has file name '{}', not a file inside the dataset folder",
                    entry.index, entry.file
                ));
            }
        }
        Ok(())
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| Error::Other(format!("manifest: {e}")))?;
        crate::files::write_atomic(&dir.join(MANIFEST_FILE), &json)
    }

    /// Episodes held by the listed shards (saturating: the counts come from a file).
    pub fn episodes_present(&self) -> u64 {
        self.shards
            .iter()
            .fold(0, |n, s| n.saturating_add(s.episodes))
    }

    /// Frames held by the listed shards (saturating: the counts come from a file).
    pub fn frames_present(&self) -> u64 {
        self.shards
            .iter()
            .fold(0, |n, s| n.saturating_add(s.frames))
    }
}
