//! The step journal of a recording in progress (`steps.journal`): every step's input and sound
//! appended as it arrives, so a recording whose program is killed keeps every step written before
//! the kill. Finishing a recording (or [`recover`](super::recover) after a kill) builds
//! `actions.json` and `audio.wav` from it and removes it.
//!
//! Layout: the 8 bytes `NACREJ01`, then records of `[u32 length][payload][first 8 bytes of the
//! payload's SHA-256]` (little-endian). The first payload is the [`ActionLog`] without steps
//! (JSON); each later one is a step: `[u32 JSON length][LoggedStep JSON][f32 samples]`. Reading
//! stops at the first record that is cut short or fails its checksum: the tail a kill leaves.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{ActionLog, LoggedStep};
use crate::error::{Error, Result};

/// File name of the journal inside a recording folder.
pub const JOURNAL: &str = "steps.journal";
const MAGIC: &[u8; 8] = b"NACREJ01";
/// Largest record the reader accepts (a step of 10 s of 8-channel 48 kHz sound is 15 MB).
const MAX_RECORD: usize = 64 << 20;

/// Appends steps to a journal.
pub(crate) struct JournalWriter {
    file: std::fs::File,
    path: PathBuf,
}

impl JournalWriter {
    /// Starts a new journal (replacing an old one) with `log`'s header (its steps are ignored).
    pub(crate) fn create(dir: &Path, log: &ActionLog) -> Result<Self> {
        let path = dir.join(JOURNAL);
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut writer = Self { file, path };
        let header = ActionLog {
            steps: Vec::new(),
            ..log.clone()
        };
        let json = serde_json::to_vec(&header).expect("an action log serialises");
        writer.write(MAGIC)?;
        writer.record(&json)?;
        Ok(writer)
    }

    /// Appends one step and its sound.
    pub(crate) fn append(&mut self, step: &LoggedStep, audio: &[f32]) -> Result<()> {
        let json = serde_json::to_vec(step).expect("a step serialises");
        let mut payload = Vec::with_capacity(4 + json.len() + audio.len() * 4);
        payload.extend_from_slice(&(json.len() as u32).to_le_bytes());
        payload.extend_from_slice(&json);
        for s in audio {
            payload.extend_from_slice(&s.to_le_bytes());
        }
        self.record(&payload)
    }

    fn record(&mut self, payload: &[u8]) -> Result<()> {
        let mut bytes = Vec::with_capacity(payload.len() + 12);
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(payload);
        bytes.extend_from_slice(&Sha256::digest(payload)[..8]);
        // One write per record: a kill leaves whole records and at most one cut-short tail.
        self.write(&bytes)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// What a journal holds: the log's header, the steps with their sound, and whether its end was
/// cut short (by a kill) and dropped.
pub(crate) struct Journal {
    pub(crate) log: ActionLog,
    pub(crate) steps: Vec<(LoggedStep, Vec<f32>)>,
    pub(crate) cut_short: bool,
}

/// Reads a journal up to its first incomplete or damaged record.
pub(crate) fn read(path: &Path) -> Result<Journal> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |why: String| Error::bad_file(path, why);
    if bytes.get(..8) != Some(MAGIC.as_slice()) {
        return Err(bad("not a bevy_nacre recording journal".into()));
    }
    let mut records = Records {
        bytes: &bytes,
        at: 8,
    };
    let header = records
        .next()
        .ok_or_else(|| bad("the journal's header is cut short or damaged".into()))?;
    let log: ActionLog = serde_json::from_slice(header)
        .map_err(|e| bad(format!("the journal's header is not an action log: {e}")))?;
    let mut steps = Vec::new();
    for payload in records.by_ref() {
        let step = decode_step(payload).map_err(|why| {
            bad(format!(
                "step record {} is not a logged step: {why}",
                steps.len()
            ))
        })?;
        steps.push(step);
    }
    Ok(Journal {
        log,
        steps,
        cut_short: records.at < bytes.len(),
    })
}

/// The whole, checksummed records of a journal, in order.
struct Records<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Records<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = &self.bytes[self.at..];
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        if len > MAX_RECORD {
            return None;
        }
        let payload = rest.get(4..4 + len)?;
        let sum = rest.get(4 + len..12 + len)?;
        if Sha256::digest(payload)[..8] != *sum {
            return None;
        }
        self.at += 12 + len;
        Some(payload)
    }
}

fn decode_step(payload: &[u8]) -> std::result::Result<(LoggedStep, Vec<f32>), String> {
    let len = payload
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or("shorter than its length field")?;
    let json = payload
        .get(4..4 + len)
        .ok_or("shorter than its JSON length")?;
    let step: LoggedStep = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let audio = &payload[4 + len..];
    if !audio.len().is_multiple_of(4) {
        return Err(format!("{} bytes of sound, not whole samples", audio.len()));
    }
    let samples = audio
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    Ok((step, samples))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world_model::WorldModel;

    fn step(index: u64) -> LoggedStep {
        LoggedStep {
            index,
            action: vec![index as f32, 0.5],
            controls: vec![0.25],
        }
    }

    #[test]
    fn a_journal_cut_anywhere_reads_back_its_whole_records() {
        let dir = std::env::temp_dir().join(format!("nacre-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(JOURNAL);
        let log = ActionLog::new(crate::reference::ReferenceWorld::new(16, 16).spec());
        let mut writer = JournalWriter::create(&dir, &log).unwrap();
        // The journal's length after its header and after each step.
        let mut ends = vec![std::fs::metadata(&path).unwrap().len() as usize];
        for i in 0..5 {
            writer.append(&step(i), &[i as f32, -0.5, 0.25]).unwrap();
            ends.push(std::fs::metadata(&path).unwrap().len() as usize);
        }
        drop(writer);
        let whole = std::fs::read(&path).unwrap();
        let full = read(&path).unwrap();
        assert_eq!(full.log, log);
        assert!(!full.cut_short);
        assert_eq!(full.steps.len(), 5);
        assert_eq!(full.steps[3], (step(3), vec![3.0, -0.5, 0.25]));

        // Cut anywhere inside the last record: the first four steps survive, flagged cut short.
        for cut in ends[4] + 1..ends[5] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let j = read(&path).unwrap();
            assert_eq!((j.steps.len(), j.cut_short), (4, true), "cut at {cut}");
        }
        // A damaged byte inside step 2 ends the journal before it.
        let mut damaged = whole.clone();
        damaged[ends[2] + 10] ^= 0x40;
        std::fs::write(&path, &damaged).unwrap();
        let j = read(&path).unwrap();
        assert_eq!((j.steps.len(), j.cut_short), (2, true));
        // A header cut short, and a file that is not a journal, are refused naming the file.
        std::fs::write(&path, &whole[..ends[0] - 1]).unwrap();
        let err = read(&path).err().unwrap().to_string();
        assert!(err.contains(JOURNAL) && err.contains("header"), "{err}");
        std::fs::write(&path, b"hello").unwrap();
        let err = read(&path).err().unwrap().to_string();
        assert!(err.contains("not a bevy_nacre"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
