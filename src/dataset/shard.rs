//! One shard: whole episodes as safetensors tensors.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::spec::ModelSpec;

/// Names of the five numbers in each `pose` row.
pub const POSE_FIELDS: [&str; 5] = ["x", "y", "z", "yaw", "pitch"];

/// Sizes of the per-row tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dims {
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Action channels per row.
    pub actions: usize,
    /// Controls per row.
    pub controls: usize,
    /// Audio samples per row (mono).
    pub audio_samples: usize,
    /// Numbers per pose row.
    pub pose: usize,
}

impl Dims {
    /// The dimensions a model's spec implies.
    pub fn from_spec(spec: &ModelSpec) -> Dims {
        Dims {
            width: spec.width,
            height: spec.height,
            actions: spec.actions.len(),
            controls: spec.controls.len(),
            audio_samples: spec.audio.samples_per_frame as usize
                * spec.audio.channels.max(1) as usize,
            pose: POSE_FIELDS.len(),
        }
    }

    /// Bytes of one RGB frame.
    pub fn frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }
}

/// What a shard says about itself (stored as safetensors metadata under the key `nacre`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// Dataset format version.
    pub format_version: u32,
    /// Shard number.
    pub index: u64,
    /// Global index of the first episode.
    pub first_episode: u64,
    /// Episodes in the shard.
    pub episodes: u64,
}

/// The rows of a shard, in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardData {
    /// Tensor sizes.
    pub dims: Dims,
    /// RGB8 frames, `[N, H, W, 3]`.
    pub frames: Vec<u8>,
    /// `[N, A]`.
    pub actions: Vec<f32>,
    /// `[N, C]`.
    pub controls: Vec<f32>,
    /// Mono PCM, `[N, S]` (divide by 32768 for [-1, 1]).
    pub audio: Vec<i16>,
    /// `[N, 5]`: x, y, z, yaw, pitch of the camera after the step.
    pub pose: Vec<f32>,
    /// `[N]`: global episode index of each row.
    pub episode: Vec<i64>,
    /// `[N]`: index of each row within its episode.
    pub frame: Vec<i64>,
}

/// One episode's rows, borrowed from a shard.
#[derive(Clone, Copy, Debug)]
pub struct EpisodeView<'a> {
    /// Global episode index.
    pub index: u64,
    /// Rows.
    pub len: usize,
    /// Tensor sizes.
    pub dims: Dims,
    /// `[len, H, W, 3]`.
    pub frames: &'a [u8],
    /// `[len, A]`.
    pub actions: &'a [f32],
    /// `[len, C]`.
    pub controls: &'a [f32],
    /// `[len, S]`.
    pub audio: &'a [i16],
    /// `[len, 5]`.
    pub pose: &'a [f32],
    /// `[len]`: index of each row within the episode (0, 1, 2, ... in a valid dataset).
    pub frame: &'a [i64],
}

fn le_bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * N);
    for x in v {
        out.extend_from_slice(&f(*x));
    }
    out
}

impl ShardData {
    /// An empty shard.
    pub fn new(dims: Dims) -> Self {
        Self {
            dims,
            frames: Vec::new(),
            actions: Vec::new(),
            controls: Vec::new(),
            audio: Vec::new(),
            pose: Vec::new(),
            episode: Vec::new(),
            frame: Vec::new(),
        }
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.episode.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.episode.is_empty()
    }

    /// Appends all rows of `other` (same dims).
    pub fn append(&mut self, other: &ShardData) {
        assert_eq!(self.dims, other.dims, "shard dims");
        self.frames.extend_from_slice(&other.frames);
        self.actions.extend_from_slice(&other.actions);
        self.controls.extend_from_slice(&other.controls);
        self.audio.extend_from_slice(&other.audio);
        self.pose.extend_from_slice(&other.pose);
        self.episode.extend_from_slice(&other.episode);
        self.frame.extend_from_slice(&other.frame);
    }

    /// Episodes in row order (rows with the same episode index that are adjacent).
    pub fn episodes(&self) -> Vec<EpisodeView<'_>> {
        let d = self.dims;
        let mut out = Vec::new();
        let mut start = 0;
        while start < self.len() {
            let e = self.episode[start];
            let mut end = start + 1;
            while end < self.len() && self.episode[end] == e {
                end += 1;
            }
            out.push(EpisodeView {
                index: e as u64,
                len: end - start,
                dims: d,
                frames: &self.frames[start * d.frame_bytes()..end * d.frame_bytes()],
                actions: &self.actions[start * d.actions..end * d.actions],
                controls: &self.controls[start * d.controls..end * d.controls],
                audio: &self.audio[start * d.audio_samples..end * d.audio_samples],
                pose: &self.pose[start * d.pose..end * d.pose],
                frame: &self.frame[start..end],
            });
            start = end;
        }
        out
    }

    /// Serialises to safetensors bytes with `meta` as metadata. Deterministic: the same rows give
    /// the same bytes.
    pub fn to_safetensors(&self, meta: &ShardMeta) -> Result<Vec<u8>> {
        let d = self.dims;
        let n = self.len();
        let err =
            |e: safetensors::SafeTensorError| Error::Other(format!("shard serialisation: {e}"));
        let actions = le_bytes(&self.actions, f32::to_le_bytes);
        let controls = le_bytes(&self.controls, f32::to_le_bytes);
        let audio = le_bytes(&self.audio, i16::to_le_bytes);
        let pose = le_bytes(&self.pose, f32::to_le_bytes);
        let episode = le_bytes(&self.episode, i64::to_le_bytes);
        let frame = le_bytes(&self.frame, i64::to_le_bytes);
        let (w, h) = (d.width as usize, d.height as usize);
        let views = vec![
            (
                "frames",
                TensorView::new(Dtype::U8, vec![n, h, w, 3], &self.frames).map_err(err)?,
            ),
            (
                "actions",
                TensorView::new(Dtype::F32, vec![n, d.actions], &actions).map_err(err)?,
            ),
            (
                "controls",
                TensorView::new(Dtype::F32, vec![n, d.controls], &controls).map_err(err)?,
            ),
            (
                "audio",
                TensorView::new(Dtype::I16, vec![n, d.audio_samples], &audio).map_err(err)?,
            ),
            (
                "pose",
                TensorView::new(Dtype::F32, vec![n, d.pose], &pose).map_err(err)?,
            ),
            (
                "episode",
                TensorView::new(Dtype::I64, vec![n], &episode).map_err(err)?,
            ),
            (
                "frame",
                TensorView::new(Dtype::I64, vec![n], &frame).map_err(err)?,
            ),
        ];
        // One metadata key only, so the header's JSON is the same on every run.
        let mut metadata = HashMap::new();
        metadata.insert(
            "nacre".to_string(),
            serde_json::to_string(meta)
                .map_err(|e| Error::Other(format!("shard metadata: {e}")))?,
        );
        safetensors::serialize(views, Some(metadata)).map_err(err)
    }

    /// Parses safetensors bytes written by [`to_safetensors`](Self::to_safetensors), checking
    /// every tensor's dtype and shape against `dims`. Errors name `path`.
    pub fn from_safetensors(
        path: &Path,
        bytes: &[u8],
        dims: Dims,
    ) -> Result<(ShardData, ShardMeta)> {
        let bad = |m: String| Error::bad_file(path, m);
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("bad safetensors header: {e}")))?;
        let meta_json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("nacre"))
            .ok_or_else(|| bad("safetensors metadata lacks the 'nacre' entry".into()))?;
        let meta: ShardMeta = serde_json::from_str(meta_json)
            .map_err(|e| bad(format!("shard metadata is not valid: {e}")))?;
        let n = st
            .tensor("episode")
            .map_err(|e| bad(format!("tensor 'episode': {e}")))?
            .shape()
            .first()
            .copied()
            .unwrap_or(0);
        let (w, h) = (dims.width as usize, dims.height as usize);
        let get = |name: &str, dtype: Dtype, shape: Vec<usize>| -> Result<&[u8]> {
            let t = st
                .tensor(name)
                .map_err(|e| bad(format!("tensor '{name}': {e}")))?;
            if t.dtype() != dtype {
                return Err(bad(format!(
                    "tensor '{name}' has dtype {:?}, expected {dtype:?}",
                    t.dtype()
                )));
            }
            if t.shape() != shape.as_slice() {
                return Err(bad(format!(
                    "tensor '{name}' has shape {:?}, expected {shape:?}",
                    t.shape()
                )));
            }
            Ok(t.data())
        };
        let f32s = |b: &[u8]| {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect::<Vec<_>>()
        };
        let i64s = |b: &[u8]| {
            b.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect::<Vec<_>>()
        };
        let data = ShardData {
            dims,
            frames: get("frames", Dtype::U8, vec![n, h, w, 3])?.to_vec(),
            actions: f32s(get("actions", Dtype::F32, vec![n, dims.actions])?),
            controls: f32s(get("controls", Dtype::F32, vec![n, dims.controls])?),
            audio: get("audio", Dtype::I16, vec![n, dims.audio_samples])?
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect(),
            pose: f32s(get("pose", Dtype::F32, vec![n, dims.pose])?),
            episode: i64s(get("episode", Dtype::I64, vec![n])?),
            frame: i64s(get("frame", Dtype::I64, vec![n])?),
        };
        Ok((data, meta))
    }
}
