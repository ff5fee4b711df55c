//! The dataset manifest: `manifest.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::shard::Dims;
use crate::error::{Error, Result};
use crate::spec::ModelSpec;

/// Value of [`Manifest::format`].
pub const FORMAT: &str = "nacre-dataset";
/// Version of the dataset layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// File name of the manifest inside a dataset folder.
pub const MANIFEST_FILE: &str = "manifest.json";

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
        Ok(m)
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| Error::Other(format!("manifest: {e}")))?;
        crate::files::write_atomic(&dir.join(MANIFEST_FILE), &json)
    }

    /// Episodes held by the listed shards.
    pub fn episodes_present(&self) -> u64 {
        self.shards.iter().map(|s| s.episodes).sum()
    }

    /// Frames held by the listed shards.
    pub fn frames_present(&self) -> u64 {
        self.shards.iter().map(|s| s.frames).sum()
    }
}
