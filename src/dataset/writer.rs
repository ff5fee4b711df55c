//! Writing a dataset from frames that come from anywhere (a game's camera, another simulator):
//! the same shards and manifest `nacre datagen` writes, so `nacre dataset-check`, `nacre train`
//! and `nacre eval` read it.
//!
//! Frames arrive one at a time with the step's action, controls, sound and camera pose. Episodes
//! have a fixed length (the manifest's `frames_per_episode`); shards hold whole episodes and are
//! written atomically, each followed by the manifest, as soon as they are full. A writer opened
//! on a folder that holds part of the same dataset continues it after its last listed shard: the
//! episodes of an unfinished shard, which were only in memory, are recorded again under the same
//! indices (seed the source with [`DatasetWriter::episode`] so they come out the same), so
//! nothing is lost and nothing listed twice.

use std::path::{Path, PathBuf};

use super::generate::{is_temp_file, shard_file_name, verify_entry};
use super::manifest::{FORMAT, FORMAT_VERSION, GeneratorInfo, MANIFEST_FILE, Manifest, ShardEntry};
use super::shard::{Dims, POSE_FIELDS, ShardData, ShardMeta};
use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::spec::ModelSpec;

/// One captured step: what the source showed after the step and what made it.
#[derive(Clone, Copy, Debug)]
pub struct CapturedStep<'a> {
    /// The picture, at the dataset's resolution (RGBA; alpha is dropped).
    pub frame: &'a Frame,
    /// The action the step used, one value per action channel of the spec.
    pub action: &'a [f32],
    /// The director controls in effect, one value per control of the spec.
    pub controls: &'a [f32],
    /// The step's sound, `samples_per_frame × channels` interleaved values in [-1, 1] (empty for
    /// a silent source: stored as silence).
    pub audio: &'a [f32],
    /// Camera position and heading after the step: x, y, z, yaw, pitch ([`POSE_FIELDS`]).
    pub pose: [f32; 5],
}

/// Writes a dataset frame by frame; see the `dataset::writer` module documentation.
pub struct DatasetWriter {
    dir: PathBuf,
    manifest: Manifest,
    /// Rows of the shard being assembled (whole episodes and the current one).
    pending: ShardData,
    /// Global index of the episode the next frame belongs to.
    episode: u64,
    /// Frames of that episode so far.
    frame: u32,
}

impl DatasetWriter {
    /// Opens `dir` (created if missing) for a dataset of `generator.episodes` episodes of
    /// `generator.frames_per_episode` frames, `generator.episodes_per_shard` to a shard, from a
    /// source described by `spec`. A folder holding part of a dataset made with the same spec and
    /// generator is continued; one holding anything else is refused, naming its manifest.
    pub fn open(dir: &Path, spec: &ModelSpec, generator: GeneratorInfo) -> Result<Self> {
        if generator.episodes == 0
            || generator.frames_per_episode == 0
            || generator.episodes_per_shard == 0
        {
            return Err(Error::Other(
                "a dataset needs at least one episode, one frame per episode and one episode \
                 per shard"
                    .into(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let dims = Dims::from_spec(spec);
        let manifest = if dir.join(MANIFEST_FILE).exists() {
            let mut m = Manifest::read(dir)?;
            let path = dir.join(MANIFEST_FILE);
            if m.model != *spec {
                return Err(Error::bad_file(
                    &path,
                    "a dataset of another source (its spec differs); choose another folder",
                ));
            }
            if m.generator != generator {
                return Err(Error::bad_file(
                    &path,
                    format!(
                        "a dataset made with other settings ({:?}); continue it with the same \
                         ones or choose another folder",
                        m.generator
                    ),
                ));
            }
            // Only a gap-free run of intact shards from the first on counts; the rest is made
            // again.
            let whole = m
                .shards
                .iter()
                .enumerate()
                .take_while(|(i, s)| s.index == *i as u64 && verify_entry(dir, s).is_ok())
                .count();
            m.shards.truncate(whole);
            m
        } else {
            Manifest {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                model: spec.clone(),
                dims,
                generator,
                shards: Vec::new(),
                complete: false,
            }
        };
        remove_temp_files(dir)?;
        let episode = manifest.episodes_present();
        let mut writer = Self {
            dir: dir.to_path_buf(),
            manifest,
            pending: ShardData::new(dims),
            episode,
            frame: 0,
        };
        writer.manifest.complete = writer.episode >= writer.manifest.generator.episodes;
        writer.manifest.write(dir)?;
        Ok(writer)
    }

    /// Global index of the episode the next frame belongs to.
    pub fn episode(&self) -> u64 {
        self.episode
    }

    /// Frames of the current episode written so far (0 at an episode's start).
    pub fn frame_in_episode(&self) -> u32 {
        self.frame
    }

    /// Whether every episode is written.
    pub fn is_complete(&self) -> bool {
        self.manifest.complete
    }

    /// The manifest as it stands on disk.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Adds one step. Refuses (changing nothing) a step whose sizes do not match the spec, a
    /// non-finite action, control or pose value, and any step once the dataset is complete.
    pub fn push(&mut self, step: &CapturedStep) -> Result<()> {
        self.check(step)?;
        let data = &mut self.pending;
        for px in step.frame.rgba.chunks_exact(4) {
            data.frames.extend_from_slice(&px[..3]);
        }
        data.actions.extend_from_slice(step.action);
        data.controls.extend_from_slice(step.controls);
        let samples = data.dims.audio_samples;
        data.audio.extend(
            step.audio
                .iter()
                .map(|s| (s.clamp(-1.0, 1.0) * 32767.0).round() as i16),
        );
        data.audio
            .resize(data.audio.len() + samples - step.audio.len(), 0);
        data.pose.extend_from_slice(&step.pose);
        data.episode.push(self.episode as i64);
        data.frame.push(self.frame as i64);
        self.frame += 1;
        if self.frame == self.manifest.generator.frames_per_episode {
            self.frame = 0;
            self.episode += 1;
            let g = &self.manifest.generator;
            if self.episode.is_multiple_of(g.episodes_per_shard as u64)
                || self.episode == g.episodes
            {
                self.write_shard()?;
            }
        }
        Ok(())
    }

    fn check(&self, step: &CapturedStep) -> Result<()> {
        let dims = self.manifest.dims;
        let bad = |why: String| Err(Error::Other(format!("captured step refused: {why}")));
        if self.manifest.complete {
            return bad(format!(
                "the dataset in {} already holds all its episodes",
                self.dir.display()
            ));
        }
        let f = step.frame;
        if (f.width, f.height) != (dims.width, dims.height)
            || f.rgba.len() != dims.width as usize * dims.height as usize * 4
        {
            return bad(format!(
                "a {}x{} frame of {} bytes; the dataset is {}x{} RGBA",
                f.width,
                f.height,
                f.rgba.len(),
                dims.width,
                dims.height
            ));
        }
        if step.action.len() != dims.actions || step.controls.len() != dims.controls {
            return bad(format!(
                "{} action and {} control values; the spec has {} and {}",
                step.action.len(),
                step.controls.len(),
                dims.actions,
                dims.controls
            ));
        }
        if step.audio.len() > dims.audio_samples {
            return bad(format!(
                "{} sound samples; a frame holds {}",
                step.audio.len(),
                dims.audio_samples
            ));
        }
        let numbers = step.action.iter().chain(step.controls).chain(&step.pose);
        if numbers.clone().any(|v| !v.is_finite()) {
            return bad(format!(
                "a value is not finite (action {:?}, controls {:?}, pose {:?} as {POSE_FIELDS:?})",
                step.action, step.controls, step.pose
            ));
        }
        Ok(())
    }

    /// Writes the whole episodes assembled so far as the next shard, then the manifest.
    fn write_shard(&mut self) -> Result<()> {
        let g = &self.manifest.generator;
        let index = self.manifest.shards.len() as u64;
        let first = index * g.episodes_per_shard as u64;
        let count = self.episode - first;
        let meta = ShardMeta {
            format_version: FORMAT_VERSION,
            index,
            first_episode: first,
            episodes: count,
        };
        let bytes = self.pending.to_safetensors(&meta)?;
        let file = shard_file_name(index);
        crate::files::write_atomic(&self.dir.join(&file), &bytes)?;
        self.manifest.shards.push(ShardEntry {
            index,
            file,
            first_episode: first,
            episodes: count,
            frames: self.pending.len() as u64,
            bytes: bytes.len() as u64,
            sha256: super::sha256_hex(&bytes),
        });
        self.manifest.complete = self.episode >= g.episodes;
        self.manifest.write(&self.dir)?;
        self.pending = ShardData::new(self.manifest.dims);
        Ok(())
    }
}

/// Removes the temporary files of atomic writes that an interruption left behind.
fn remove_temp_files(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if is_temp_file(&entry.file_name().to_string_lossy()) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}
