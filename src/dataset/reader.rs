//! Reading a dataset as a stream: one shard in memory at a time.

use std::path::{Path, PathBuf};

use super::manifest::{Manifest, ShardEntry};
use super::sha256_hex;
use super::shard::{Dims, ShardData};
use crate::error::{Error, Result};

/// An open dataset folder.
#[derive(Clone, Debug)]
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
}

/// One episode, owned (copied out of its shard).
#[derive(Clone, Debug, PartialEq)]
pub struct Episode {
    /// Global episode index.
    pub index: u64,
    /// Rows of the episode.
    pub data: ShardData,
}

impl Dataset {
    /// Opens a dataset by reading its manifest.
    pub fn open(dir: impl AsRef<Path>) -> Result<Dataset> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = Manifest::read(&dir)?;
        Ok(Dataset { dir, manifest })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Tensor dimensions.
    pub fn dims(&self) -> Dims {
        self.manifest.dims
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads one listed shard, verifying its size and checksum first.
    pub fn load_shard(&self, entry: &ShardEntry) -> Result<ShardData> {
        let path = self.dir.join(&entry.file);
        // The size is checked before the file is read, so a wrong or endless file (a link to a
        // device) is refused without reading it into memory.
        let wrong_size = |size: u64| {
            Error::bad_file(
                &path,
                format!("file has {size} bytes, manifest says {}", entry.bytes),
            )
        };
        let size = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len();
        if size != entry.bytes {
            return Err(wrong_size(size));
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if bytes.len() as u64 != entry.bytes {
            return Err(wrong_size(bytes.len() as u64));
        }
        let sum = sha256_hex(&bytes);
        if sum != entry.sha256 {
            return Err(Error::bad_file(
                &path,
                format!(
                    "SHA-256 mismatch: file is {sum}, manifest says {}",
                    entry.sha256
                ),
            ));
        }
        let (data, _) = ShardData::from_safetensors(&path, &bytes, self.manifest.dims)?;
        if data.len() as u64 != entry.frames {
            return Err(Error::bad_file(
                &path,
                format!("{} rows, manifest says {}", data.len(), entry.frames),
            ));
        }
        Ok(data)
    }

    /// The shards in order, each loaded and verified when the iterator reaches it.
    pub fn shards(&self) -> impl Iterator<Item = Result<ShardData>> + '_ {
        self.manifest.shards.iter().map(move |e| self.load_shard(e))
    }

    /// The episodes in order, loading one shard at a time.
    pub fn episodes(&self) -> impl Iterator<Item = Result<Episode>> + '_ {
        self.shards()
            .flat_map(|shard| -> Box<dyn Iterator<Item = Result<Episode>>> {
                match shard {
                    Err(e) => Box::new(std::iter::once(Err(e))),
                    Ok(data) => {
                        let episodes: Vec<Episode> = data
                            .episodes()
                            .into_iter()
                            .map(|v| {
                                let d = v.dims;
                                Episode {
                                    index: v.index,
                                    data: ShardData {
                                        dims: d,
                                        frames: v.frames.to_vec(),
                                        actions: v.actions.to_vec(),
                                        controls: v.controls.to_vec(),
                                        audio: v.audio.to_vec(),
                                        pose: v.pose.to_vec(),
                                        episode: vec![v.index as i64; v.len],
                                        frame: v.frame.to_vec(),
                                    },
                                }
                            })
                            .collect();
                        Box::new(episodes.into_iter().map(Ok))
                    }
                }
            })
    }
}
