//! `nacre datagen`: records episodes of the reference world driven by player-like trajectories
//! into shards, in parallel, resumably.
//!
//! A shard holds whole episodes: shard `s` holds episodes `s·K .. s·K + K`. Each episode's
//! content depends only on the dataset seed and its index, so shards can be made in any order
//! on any number of threads and always come out byte-identical. The manifest is rewritten
//! atomically after every finished shard; on restart, listed shards are verified (size and
//! SHA-256), broken or missing ones are made again, and leftover temporary files are removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;
use std::time::Instant;

use super::manifest::{FORMAT, FORMAT_VERSION, GeneratorInfo, MANIFEST_FILE, Manifest, ShardEntry};
use super::sha256_hex;
use super::shard::{Dims, ShardData, ShardMeta};
use crate::error::{Error, Result};
use crate::reference::trajectory::{Trajectory, TrajectoryConfig};
use crate::reference::{MODEL_VERSION, ReferenceWorld};
use crate::rng::{GOLDEN, mix64};
use crate::spec::ModelSpec;
use crate::world_model::{Prompt, WorldModel};

/// What `nacre datagen` should make.
#[derive(Clone, Debug)]
pub struct DatagenOptions {
    /// Dataset folder (created if missing; resumed if it holds a manifest).
    pub out: PathBuf,
    /// Episodes in total.
    pub episodes: u64,
    /// Frames per episode.
    pub frames_per_episode: u32,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Dataset seed.
    pub seed: u64,
    /// Episodes per shard; `None` picks about 64 MiB of frames per shard (or keeps the value of
    /// the dataset being resumed).
    pub episodes_per_shard: Option<u32>,
    /// Threads recording episodes in parallel.
    pub threads: usize,
    /// Average director changes per minute in the trajectories.
    pub director_changes_per_minute: f32,
    /// Stop after starting this many new shards (simulates an interruption; for tests).
    pub stop_after_shards: Option<usize>,
    /// Set to stop after the shards in progress (e.g. by Ctrl-C).
    pub stop: Option<Arc<AtomicBool>>,
}

impl DatagenOptions {
    /// Options with the defaults for everything but the essentials.
    pub fn new(
        out: impl Into<PathBuf>,
        episodes: u64,
        frames_per_episode: u32,
        width: u32,
        height: u32,
        seed: u64,
    ) -> Self {
        Self {
            out: out.into(),
            episodes,
            frames_per_episode,
            width,
            height,
            seed,
            episodes_per_shard: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            director_changes_per_minute: TrajectoryConfig::default().director_changes_per_minute,
            stop_after_shards: None,
            stop: None,
        }
    }
}

/// What a datagen run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatagenReport {
    /// Shards the finished dataset has.
    pub shards_total: u64,
    /// Shards found intact and kept.
    pub shards_kept: u64,
    /// Shards written by this run.
    pub shards_written: u64,
    /// Frames written by this run.
    pub frames_written: u64,
    /// Whether the dataset is now complete.
    pub complete: bool,
    /// Things found and repaired (broken shards, leftover temporary files).
    pub notes: Vec<String>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// File name of shard `index`.
pub fn shard_file_name(index: u64) -> String {
    format!("shard-{index:05}.safetensors")
}

/// Episodes per shard that make about 64 MiB of frames (at least 1).
pub fn default_episodes_per_shard(frames_per_episode: u32, width: u32, height: u32) -> u32 {
    let episode_bytes = frames_per_episode as u64 * width as u64 * height as u64 * 3;
    ((64u64 << 20) / episode_bytes.max(1)).clamp(1, 4096) as u32
}

/// `generator.world` of the reference world's datasets.
pub const REFERENCE_WORLD: &str = "reference";

/// The seed of episode `episode` in a dataset with seed `seed`.
pub fn episode_seed(seed: u64, episode: u64) -> u64 {
    mix64(seed.wrapping_mul(GOLDEN) ^ mix64(episode.wrapping_add(1)))
}

/// Records one episode: a player-like trajectory through a fresh session. `on_frames` is called
/// with the number of frames finished since its last call.
pub fn record_episode(
    world: &ReferenceWorld,
    seed: u64,
    episode: u64,
    frames: u32,
    config: &TrajectoryConfig,
    on_frames: &dyn Fn(u64),
) -> Result<ShardData> {
    let spec = world.spec();
    let dims = Dims::from_spec(spec);
    let es = episode_seed(seed, episode);
    let mut trajectory = Trajectory::new(es, spec.default_controls(), config.clone());
    let mut session = world.start_session(&Prompt {
        seed: es,
        start_frames: Vec::new(),
        controls: Some(trajectory.start_controls().clone()),
    })?;
    let n = frames as usize;
    let mut data = ShardData::new(dims);
    // Reserved up front, but refused with an error (not an overflow panic or an abort) when an
    // episode of `frames` frames cannot fit in memory.
    let too_big = || {
        Error::Other(format!(
            "an episode of {frames} frames at {}x{} does not fit in memory",
            dims.width, dims.height
        ))
    };
    data.frames
        .try_reserve(n.checked_mul(dims.frame_bytes()).ok_or_else(too_big)?)
        .map_err(|_| too_big())?;
    data.audio
        .try_reserve(n.checked_mul(dims.audio_samples).ok_or_else(too_big)?)
        .map_err(|_| too_big())?;
    let mut pending = 0;
    for f in 0..frames {
        let input = trajectory.next(&mut session);
        let out = session.step_world(&input)?;
        for px in out.frame.rgba.chunks_exact(4) {
            data.frames.extend_from_slice(&px[..3]);
        }
        data.actions
            .extend_from_slice(&spec.sanitize_action(&input.action)?.values);
        data.controls.extend_from_slice(&session.controls().values);
        data.audio.extend(
            out.audio
                .samples
                .iter()
                .map(|s| (s.clamp(-1.0, 1.0) * 32767.0).round() as i16),
        );
        data.pose.extend_from_slice(&session.pose());
        data.episode.push(episode as i64);
        data.frame.push(f as i64);
        pending += 1;
        if pending == 20 {
            on_frames(pending);
            pending = 0;
        }
    }
    on_frames(pending);
    Ok(data)
}

/// Whether `name` is an atomic write's temporary file (`.<name>.tmp<pid>`).
pub(super) fn is_temp_file(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp")
}

/// Verifies a listed shard file against its entry (size, then SHA-256).
pub(super) fn verify_entry(dir: &Path, entry: &ShardEntry) -> std::result::Result<(), String> {
    let path = dir.join(&entry.file);
    // Size first, so a wrong or endless file is not read into memory.
    let size = std::fs::metadata(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if size != entry.bytes {
        return Err(format!(
            "{}: {size} bytes, manifest says {}",
            path.display(),
            entry.bytes
        ));
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 != entry.bytes {
        return Err(format!(
            "{}: {} bytes, manifest says {}",
            path.display(),
            bytes.len(),
            entry.bytes
        ));
    }
    let sum = sha256_hex(&bytes);
    if sum != entry.sha256 {
        return Err(format!(
            "{}: SHA-256 {sum} does not match the manifest",
            path.display()
        ));
    }
    Ok(())
}

/// Makes (or finishes) a dataset. `progress(done, total)` is called with frame counts as work
/// completes, from any thread.
pub fn generate(
    opts: &DatagenOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<DatagenReport> {
    let started = Instant::now();
    let dir = &opts.out;
    check_options(opts)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let world = ReferenceWorld::new(opts.width, opts.height);
    let spec = world.spec().clone();
    let dims = Dims::from_spec(&spec);
    let mut report = DatagenReport::default();

    let (generator, mut kept) = resume_or_start(opts, &spec)?;
    remove_temp_files(dir, &mut report.notes)?;
    let layout = Layout {
        per_shard: generator.episodes_per_shard as u64,
        episodes: opts.episodes,
    };
    let total_shards = layout.shards();
    keep_intact_shards(
        &mut kept,
        dir,
        &layout,
        opts.frames_per_episode,
        &mut report.notes,
    );
    report.shards_kept = kept.len() as u64;
    report.shards_total = total_shards;
    let mut manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        model: spec.clone(),
        dims,
        generator,
        shards: kept,
        complete: false,
    };
    manifest.complete = manifest.shards.len() as u64 == total_shards;
    manifest.write(dir)?;

    let todo: Vec<u64> = (0..total_shards)
        .filter(|s| {
            manifest
                .shards
                .binary_search_by_key(s, |e| e.index)
                .is_err()
        })
        .collect();
    let total_frames = opts.episodes.saturating_mul(opts.frames_per_episode as u64);
    let done = AtomicU64::new(manifest.frames_present());
    progress(done.load(Ordering::Relaxed), total_frames);
    if todo.is_empty() {
        report.complete = true;
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    let on_frames = |n: u64| {
        let d = done.fetch_add(n, Ordering::Relaxed) + n;
        progress(d, total_frames);
    };
    record_shards(
        &world,
        opts,
        &layout,
        &todo,
        &mut manifest,
        &mut report,
        &on_frames,
    )?;
    report.complete = manifest.complete;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Most episodes a dataset may hold: the list of shards to make is kept in memory, so an absurd
/// `--episodes` must be refused rather than exhaust it.
const MAX_EPISODES: u64 = 100_000_000;

/// Refuses options that cannot make a dataset (no episodes or frames, an absurd resolution)
/// before anything is written.
fn check_options(opts: &DatagenOptions) -> Result<()> {
    if opts.episodes == 0 || opts.frames_per_episode == 0 {
        return Err(Error::Other(
            "datagen needs at least one episode of at least one frame".into(),
        ));
    }
    if opts.episodes > MAX_EPISODES {
        return Err(Error::Other(format!(
            "{} episodes is more than the {MAX_EPISODES} a dataset may hold",
            opts.episodes
        )));
    }
    if !(1..=4096).contains(&opts.width) || !(1..=4096).contains(&opts.height) {
        return Err(Error::Other(format!(
            "resolution {}x{} is out of range (1 to 4096 per side)",
            opts.width, opts.height
        )));
    }
    Ok(())
}

/// What the dataset in `opts.out` is to be: the generator of its manifest, if it has one and
/// the options agree with it, with the shards it lists; else a new one, with no shards. The
/// shard size is the option's, else the manifest's, else about 64 MiB of frames.
fn resume_or_start(
    opts: &DatagenOptions,
    spec: &ModelSpec,
) -> Result<(GeneratorInfo, Vec<ShardEntry>)> {
    let dir = &opts.out;
    let manifest_path = dir.join(MANIFEST_FILE);
    let existing = if manifest_path.exists() {
        Some(Manifest::read(dir)?)
    } else {
        None
    };
    let episodes_per_shard = match (&existing, opts.episodes_per_shard) {
        (_, Some(k)) => k.max(1),
        (Some(m), None) => m.generator.episodes_per_shard.max(1),
        (None, None) => {
            default_episodes_per_shard(opts.frames_per_episode, opts.width, opts.height)
        }
    };
    let generator = GeneratorInfo {
        world: REFERENCE_WORLD.into(),
        world_version: MODEL_VERSION.into(),
        seed: opts.seed,
        episodes: opts.episodes,
        frames_per_episode: opts.frames_per_episode,
        episodes_per_shard,
        director_changes_per_minute: opts.director_changes_per_minute,
    };
    let mut kept: Vec<ShardEntry> = Vec::new();
    if let Some(m) = &existing {
        check_same_dataset(m, opts, spec, episodes_per_shard, &manifest_path)?;
        kept = m.shards.clone();
    }
    Ok((generator, kept))
}

/// Refuses to continue the dataset of manifest `m` (read from `manifest_path`) with options that
/// would make different episodes or shards, or drop episodes it already holds.
fn check_same_dataset(
    m: &Manifest,
    opts: &DatagenOptions,
    spec: &ModelSpec,
    episodes_per_shard: u32,
    manifest_path: &Path,
) -> Result<()> {
    let g = &m.generator;
    let mismatch = |what: &str, was: String, now: String| {
        Error::bad_file(
            manifest_path,
            format!(
                "this dataset was made with {what} {was}, not {now}; use another --out folder to make a different dataset"
            ),
        )
    };
    if m.model != *spec {
        return Err(mismatch(
            "model",
            format!(
                "'{}' v{} at {}x{}",
                m.model.name, m.model.version, m.model.width, m.model.height
            ),
            format!(
                "'{}' v{} at {}x{}",
                spec.name, spec.version, spec.width, spec.height
            ),
        ));
    }
    if g.seed != opts.seed {
        return Err(mismatch(
            "--seed",
            g.seed.to_string(),
            opts.seed.to_string(),
        ));
    }
    if g.frames_per_episode != opts.frames_per_episode {
        return Err(mismatch(
            "--frames-per-episode",
            g.frames_per_episode.to_string(),
            opts.frames_per_episode.to_string(),
        ));
    }
    if g.episodes_per_shard != episodes_per_shard {
        return Err(mismatch(
            "--episodes-per-shard",
            g.episodes_per_shard.to_string(),
            episodes_per_shard.to_string(),
        ));
    }
    if g.director_changes_per_minute != opts.director_changes_per_minute {
        return Err(mismatch(
            "director changes per minute",
            g.director_changes_per_minute.to_string(),
            opts.director_changes_per_minute.to_string(),
        ));
    }
    let held = m
        .shards
        .iter()
        .map(|s| s.first_episode.saturating_add(s.episodes))
        .max()
        .unwrap_or(0);
    if held > opts.episodes {
        return Err(Error::bad_file(
            manifest_path,
            format!(
                "the dataset already holds {held} episodes; --episodes {} would drop some",
                opts.episodes
            ),
        ));
    }
    Ok(())
}

/// Removes temporary files a killed run left behind in `dir`, with a note for each.
fn remove_temp_files(dir: &Path, notes: &mut Vec<String>) -> Result<()> {
    let listing = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in listing {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if is_temp_file(&name) {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            notes.push(format!("removed leftover temporary file {}", p.display()));
        }
    }
    Ok(())
}

/// Which episodes each shard holds: shard `s` holds `per_shard` episodes from `s·per_shard`
/// (the last shard fewer when they do not divide evenly).
struct Layout {
    /// Episodes per shard.
    per_shard: u64,
    /// Episodes in the dataset.
    episodes: u64,
}

impl Layout {
    /// Shards in the dataset.
    fn shards(&self) -> u64 {
        self.episodes.div_ceil(self.per_shard)
    }

    /// First episode and episode count of shard `s` (none past the end, also for an index from
    /// a damaged manifest).
    fn expected(&self, s: u64) -> (u64, u64) {
        let first = s.saturating_mul(self.per_shard);
        (
            first,
            self.per_shard.min(self.episodes.saturating_sub(first)),
        )
    }
}

/// Keeps the listed shards that are where `layout` wants them and intact (size and SHA-256),
/// sorted by index, one per index; notes why each other one must be made again.
fn keep_intact_shards(
    kept: &mut Vec<ShardEntry>,
    dir: &Path,
    layout: &Layout,
    frames_per_episode: u32,
    notes: &mut Vec<String>,
) {
    let total_shards = layout.shards();
    kept.retain(|e| {
        let (first, count) = layout.expected(e.index);
        let fits = e.index < total_shards
            && e.first_episode == first
            && e.episodes == count
            && e.frames == count * frames_per_episode as u64
            && e.file == shard_file_name(e.index);
        if !fits {
            notes.push(format!(
                "shard {} is remade: it holds episodes {}..{}, the dataset now needs {}..{}",
                e.file,
                e.first_episode,
                e.first_episode.saturating_add(e.episodes),
                first,
                first + count
            ));
            return false;
        }
        match verify_entry(dir, e) {
            Ok(()) => true,
            Err(why) => {
                notes.push(format!("shard is remade because it is damaged: {why}"));
                false
            }
        }
    });
    kept.sort_by_key(|e| e.index);
    kept.dedup_by_key(|e| e.index);
}

/// Records the missing shards `todo` (up to `stop_after_shards` of them, until `stop` is set)
/// and adds each to the manifest as it is written.
///
/// Works in waves of consecutive shards holding at least one episode per thread: the episodes
/// of a wave are recorded in parallel, then its shards are written in order.
fn record_shards(
    world: &ReferenceWorld,
    opts: &DatagenOptions,
    layout: &Layout,
    todo: &[u64],
    manifest: &mut Manifest,
    report: &mut DatagenReport,
    on_frames: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let config = TrajectoryConfig {
        director_changes_per_minute: opts.director_changes_per_minute,
        random_start_controls: true,
        ..TrajectoryConfig::default()
    };
    let limit = opts.stop_after_shards.unwrap_or(usize::MAX).min(todo.len());
    let todo = &todo[..limit];
    let threads = opts.threads.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Other(format!("cannot start {threads} datagen threads: {e}")))?;
    let stopped = || opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
    let mut i = 0;
    while i < todo.len() && !stopped() {
        let mut wave = Vec::new();
        let mut episodes = 0;
        while i < todo.len() && (wave.is_empty() || episodes < threads as u64) {
            let (first, count) = layout.expected(todo[i]);
            wave.push((todo[i], first, count));
            episodes += count;
            i += 1;
        }
        let jobs: Vec<u64> = wave.iter().flat_map(|&(_, f, c)| f..f + c).collect();
        let results: Vec<Result<ShardData>> = pool.install(|| {
            jobs.par_iter()
                .map(|&e| {
                    if stopped() {
                        return Err(Error::Other(INTERRUPTED.into()));
                    }
                    record_episode(
                        world,
                        opts.seed,
                        e,
                        opts.frames_per_episode,
                        &config,
                        on_frames,
                    )
                })
                .collect()
        });
        store_wave(&opts.out, &wave, results, layout.shards(), manifest, report)?;
    }
    Ok(())
}

/// Assembles the shards of one wave (`(shard, first episode, episodes)` each) from its
/// episodes' `results`, in order, and writes each complete one and then the manifest. A shard
/// with an interrupted episode is left for a later run.
fn store_wave(
    dir: &Path,
    wave: &[(u64, u64, u64)],
    results: Vec<Result<ShardData>>,
    total_shards: u64,
    manifest: &mut Manifest,
    report: &mut DatagenReport,
) -> Result<()> {
    let mut results = results.into_iter();
    for &(s, first, count) in wave {
        let mut data = ShardData::new(manifest.dims);
        let mut complete = true;
        for _ in 0..count {
            match results.next().expect("one result per episode") {
                Ok(ep) => data.append(&ep),
                Err(Error::Other(m)) if m == INTERRUPTED => complete = false,
                Err(e) => return Err(e),
            }
        }
        if !complete {
            continue;
        }
        let entry = write_shard(dir, s, first, count, &data)?;
        report.shards_written += 1;
        report.frames_written += entry.frames;
        let pos = manifest
            .shards
            .binary_search_by_key(&entry.index, |e| e.index)
            .unwrap_or_else(|p| p);
        manifest.shards.insert(pos, entry);
        manifest.complete = manifest.shards.len() as u64 == total_shards;
        manifest.write(dir)?;
    }
    Ok(())
}

const INTERRUPTED: &str = "interrupted";

/// Writes shard `s` (episodes `first .. first + count`) atomically and returns its entry.
fn write_shard(dir: &Path, s: u64, first: u64, count: u64, data: &ShardData) -> Result<ShardEntry> {
    let meta = ShardMeta {
        format_version: FORMAT_VERSION,
        index: s,
        first_episode: first,
        episodes: count,
    };
    let bytes = data.to_safetensors(&meta)?;
    let file = shard_file_name(s);
    crate::files::write_atomic(&dir.join(&file), &bytes)?;
    Ok(ShardEntry {
        index: s,
        file,
        first_episode: first,
        episodes: count,
        frames: data.len() as u64,
        bytes: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episode_seeds_differ_and_repeat() {
        assert_eq!(episode_seed(7, 3), episode_seed(7, 3));
        assert_ne!(episode_seed(7, 3), episode_seed(7, 4));
        assert_ne!(episode_seed(7, 3), episode_seed(8, 3));
    }
}
