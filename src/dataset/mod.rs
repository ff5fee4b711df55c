//! Datasets recorded from a world: sharded safetensors files plus a JSON manifest.
//!
//! A dataset is a folder:
//!
//! - `manifest.json` ([`Manifest`]): format version, the model spec, how it was generated, and
//!   one entry per shard with its episodes, frame count, size and SHA-256. It is rewritten
//!   atomically after every finished shard.
//! - `shard-00000.safetensors`, … ([`ShardData`]): whole episodes, with tensors `frames`
//!   (u8 `[N, H, W, 3]`), `actions` (f32 `[N, A]`), `controls` (f32 `[N, C]`), `audio`
//!   (i16 `[N, S]`), `pose` (f32 `[N, 5]`), `episode` and `frame` (i64 `[N]`).
//!
//! Row `i` of a shard is one step: the session received `actions[i]` and `controls[i]` and
//! produced `frames[i]`, `audio[i]`, after which the camera was at `pose[i]`.
//! See `docs/dataset-format.md` for the full description and a Python reader.
//!
//! - [`generate`]: `nacre datagen`, resumable and parallel, deterministic per seed.
//! - [`DatasetWriter`]: the same files from frames captured anywhere (a game's camera), one
//!   step at a time, resumable.
//! - [`Dataset`]: reads a dataset shard by shard or episode by episode.
//! - [`check_dataset`]: `nacre dataset-check`, verifies checksums, shapes and indices.

mod check;
mod generate;
mod manifest;
mod reader;
mod shard;
mod writer;

pub use check::{CheckReport, Problem, check_dataset};
pub use generate::{
    DatagenOptions, DatagenReport, REFERENCE_WORLD, default_episodes_per_shard, episode_seed,
    generate, record_episode, shard_file_name,
};
pub use manifest::{FORMAT, FORMAT_VERSION, GeneratorInfo, MANIFEST_FILE, Manifest, ShardEntry};
pub use reader::{Dataset, Episode};
pub use shard::{Dims, EpisodeView, POSE_FIELDS, ShardData, ShardMeta};
pub use writer::{CapturedStep, DatasetWriter};

/// Computes the SHA-256 of bytes as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}
