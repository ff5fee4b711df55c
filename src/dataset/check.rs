//! `nacre dataset-check`: verifies a dataset and names the file behind every problem.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::manifest::{MANIFEST_FILE, Manifest};
use super::sha256_hex;
use super::shard::ShardData;
use crate::spec::{ActionKind, ModelSpec};

/// One problem found, with the file it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

/// The result of checking a dataset.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckReport {
    /// Shards that passed every check.
    pub shards_ok: u64,
    /// Shards listed in the manifest.
    pub shards_listed: u64,
    /// Episodes in shards that passed.
    pub episodes: u64,
    /// Frames in shards that passed.
    pub frames: u64,
    /// Everything wrong, in the order found.
    pub problems: Vec<Problem>,
    /// Things worth knowing that are not errors (files the manifest does not list).
    pub notes: Vec<String>,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks a dataset folder: the manifest, every shard's size, SHA-256, tensors, shapes, index
/// continuity and value ranges, and that the episodes run without gaps or duplicates.
pub fn check_dataset(dir: &Path) -> CheckReport {
    let mut report = CheckReport::default();
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest = match Manifest::read(dir) {
        Ok(m) => m,
        Err(e) => {
            report.problems.push(Problem {
                file: manifest_path,
                message: strip_path(&e.to_string(), &dir.join(MANIFEST_FILE)),
            });
            return report;
        }
    };
    let g = &manifest.generator;
    report.shards_listed = manifest.shards.len() as u64;
    let mut covered: Vec<(u64, u64, PathBuf)> = Vec::new();
    let mut indices = BTreeSet::new();
    for entry in &manifest.shards {
        let path = dir.join(&entry.file);
        let mut problem = |m: String| {
            report.problems.push(Problem {
                file: path.clone(),
                message: m,
            })
        };
        if !indices.insert(entry.index) {
            problem(format!("shard index {} is listed twice", entry.index));
        }
        covered.push((entry.first_episode, entry.episodes, path.clone()));
        // Size first, so a wrong or endless file is not read into memory.
        let bytes = match std::fs::metadata(&path).map(|m| m.len()) {
            Ok(size) if size != entry.bytes => {
                problem(format!(
                    "file has {size} bytes, manifest says {}",
                    entry.bytes
                ));
                continue;
            }
            Ok(_) => std::fs::read(&path),
            Err(e) => Err(e),
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                problem(format!("cannot read: {e}"));
                continue;
            }
        };
        if bytes.len() as u64 != entry.bytes {
            problem(format!(
                "file has {} bytes, manifest says {}",
                bytes.len(),
                entry.bytes
            ));
            continue;
        }
        let sum = sha256_hex(&bytes);
        if sum != entry.sha256 {
            problem(format!(
                "SHA-256 mismatch (file {sum}, manifest {}): the file is corrupt",
                entry.sha256
            ));
            continue;
        }
        let (data, meta) = match ShardData::from_safetensors(&path, &bytes, manifest.dims) {
            Ok(x) => x,
            Err(e) => {
                problem(strip_path(&e.to_string(), &path));
                continue;
            }
        };
        let before = report.problems.len();
        let mut problems =
            shard_problems(&manifest.model, g.frames_per_episode, entry, &data, &meta);
        for m in problems.drain(..) {
            report.problems.push(Problem {
                file: path.clone(),
                message: m,
            });
        }
        if report.problems.len() == before {
            report.shards_ok += 1;
            report.episodes += entry.episodes;
            report.frames += entry.frames;
        }
    }
    // Episodes must run 0, 1, 2, ... across shards without gaps or overlaps.
    covered.sort_by_key(|c| c.0);
    let mut next = 0u64;
    for (first, count, path) in &covered {
        if *first > next {
            report.problems.push(Problem {
                file: manifest_path.clone(),
                message: format!(
                    "episodes {next}..{first} are missing (gap before {})",
                    path.display()
                ),
            });
        } else if *first < next {
            report.problems.push(Problem {
                file: path.clone(),
                message: format!(
                    "episodes {first}..{} overlap episodes listed earlier",
                    first.saturating_add(*count)
                ),
            });
        }
        next = next.max(first.saturating_add(*count));
    }
    if manifest.complete && next != g.episodes {
        report.problems.push(Problem {
            file: manifest_path.clone(),
            message: format!(
                "marked complete but holds {next} of {} episodes",
                g.episodes
            ),
        });
    }
    if !manifest.complete {
        report.problems.push(Problem {
            file: manifest_path.clone(),
            message: format!(
                "dataset is incomplete: {} of {} episodes (run the same {} again to finish it)",
                manifest.episodes_present(),
                g.episodes,
                if g.world == super::REFERENCE_WORLD {
                    "`nacre datagen` command"
                } else {
                    "capture"
                }
            ),
        });
    }
    // Files the manifest does not mention.
    if let Ok(listing) = std::fs::read_dir(dir) {
        let listed: BTreeSet<&str> = manifest.shards.iter().map(|s| s.file.as_str()).collect();
        let mut extra: Vec<String> = listing
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n != MANIFEST_FILE && !listed.contains(n.as_str()))
            .collect();
        extra.sort();
        for n in extra {
            report.notes.push(format!(
                "{} is not listed in the manifest",
                dir.join(n).display()
            ));
        }
    }
    report
}

/// Error messages already start with the path; the report adds it again, so drop the prefix.
fn strip_path(message: &str, path: &Path) -> String {
    let prefix = format!("{}: ", path.display());
    message.strip_prefix(&prefix).unwrap_or(message).to_string()
}

fn shard_problems(
    spec: &ModelSpec,
    frames_per_episode: u32,
    entry: &super::manifest::ShardEntry,
    data: &ShardData,
    meta: &super::shard::ShardMeta,
) -> Vec<String> {
    let mut out = Vec::new();
    if meta.index != entry.index
        || meta.first_episode != entry.first_episode
        || meta.episodes != entry.episodes
    {
        out.push(format!(
            "shard metadata (index {}, episodes {}+{}) disagrees with the manifest (index {}, episodes {}+{})",
            meta.index, meta.first_episode, meta.episodes, entry.index, entry.first_episode, entry.episodes
        ));
    }
    if data.len() as u64 != entry.frames {
        out.push(format!(
            "{} rows, manifest says {}",
            data.len(),
            entry.frames
        ));
    }
    let fpe = frames_per_episode as u64;
    if entry.episodes.checked_mul(fpe) != Some(entry.frames) {
        out.push(format!(
            "{} rows for {} episodes of {fpe} frames",
            entry.frames, entry.episodes
        ));
    }
    for (row, (&e, &f)) in data.episode.iter().zip(&data.frame).enumerate() {
        let want_e = entry.first_episode.saturating_add(row as u64 / fpe.max(1));
        let want_f = row as u64 % fpe.max(1);
        if e as u64 != want_e || f as u64 != want_f {
            out.push(format!(
                "row {row} is episode {e} frame {f}, expected episode {want_e} frame {want_f}"
            ));
            break;
        }
    }
    let a = spec.actions.len();
    'rows: for (row, vals) in data.actions.chunks_exact(a.max(1)).enumerate() {
        for (ch, v) in spec.actions.iter().zip(vals) {
            let ok = match &ch.kind {
                ActionKind::Axis { min, max } => v.is_finite() && *v >= *min && *v <= *max,
                ActionKind::Button => *v == 0.0 || *v == 1.0,
                ActionKind::Discrete { choices } => {
                    v.fract() == 0.0 && *v >= 0.0 && (*v as usize) < choices.len()
                }
            };
            if !ok {
                out.push(format!(
                    "row {row}: action '{}' has value {v} outside its range",
                    ch.name
                ));
                break 'rows;
            }
        }
    }
    let c = spec.controls.len();
    'controls: for (row, vals) in data.controls.chunks_exact(c.max(1)).enumerate() {
        for (ctl, v) in spec.controls.iter().zip(vals) {
            if !v.is_finite() || ctl.clamp(*v) != *v {
                out.push(format!(
                    "row {row}: control '{}' has value {v} outside its range",
                    ctl.name
                ));
                break 'controls;
            }
        }
    }
    if let Some(i) = data.pose.iter().position(|v| !v.is_finite()) {
        out.push(format!("pose value {i} is not finite"));
    }
    out
}
