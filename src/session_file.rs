//! The saved-session format: a small header that names the model, its version and this format's
//! version, a checksum, and the model's own state bytes.
//!
//! Layout of version 2, the one this build writes (all integers little-endian):
//!
//! | bytes | content |
//! | --- | --- |
//! | 8 | magic `NACRESES` |
//! | 4 | format version (2) |
//! | 4 | header length `n` |
//! | n | JSON [`SessionHeader`] |
//! | 32 | SHA-256 of every other byte of the file: the `16 + n` bytes above, then the state |
//! | rest | the model's state, as [`Session::save`](crate::world_model::Session::save) wrote it |
//!
//! A file with any byte changed, missing or added fails the checksum and is refused with
//! [`Error::BadSessionState`], instead of restoring as a different world. Version 1 files (the
//! same layout without the checksum) are still read, so older saves keep loading; any other
//! version is refused.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::action::Controls;
use crate::error::{Error, Result};
use crate::spec::ModelSpec;

/// First bytes of every saved session.
pub const MAGIC: &[u8; 8] = b"NACRESES";
/// Version of the envelope this build writes.
pub const FORMAT_VERSION: u32 = 2;
/// The older version this build still reads: no checksum between header and state.
pub const FORMAT_VERSION_UNCHECKED: u32 = 1;
/// Bytes of the SHA-256 checksum in a version-2 file.
const CHECKSUM_LEN: usize = 32;

/// What a saved session says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionHeader {
    /// [`ModelSpec::name`] of the model that wrote it.
    pub model: String,
    /// [`ModelSpec::version`] of the model that wrote it.
    pub model_version: String,
    /// Frames generated before it was saved.
    pub frame_index: u64,
    /// Director controls at the time of saving.
    pub controls: Controls,
}

/// A decoded saved session.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedSession {
    /// The header.
    pub header: SessionHeader,
    /// The model's state bytes.
    pub state: Vec<u8>,
}

/// Encodes a saved session (format version 2, with its checksum).
pub fn encode(header: &SessionHeader, state: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("session header serialises");
    let mut out = Vec::with_capacity(16 + json.len() + CHECKSUM_LEN + state.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    let sum = checksum(&out, state);
    out.extend_from_slice(&sum);
    out.extend_from_slice(state);
    out
}

/// SHA-256 of the envelope's bytes before the checksum followed by the state.
fn checksum(front: &[u8], state: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(front);
    hasher.update(state);
    hasher.finalize().into()
}

/// Decodes a saved session (format version 2, or 1 without a checksum), with a clear error for
/// anything that is not one or was damaged.
pub fn decode(bytes: &[u8]) -> Result<SavedSession> {
    let bad = |m: String| Error::BadSessionState(m);
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(bad(
            "not a bevy_nacre saved session (bad magic bytes)".into()
        ));
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    if version != FORMAT_VERSION && version != FORMAT_VERSION_UNCHECKED {
        return Err(bad(format!(
            "saved-session format version {version}; this build reads versions \
             {FORMAT_VERSION_UNCHECKED} and {FORMAT_VERSION}"
        )));
    }
    let n = word(12) as usize;
    let header_end = 16usize.saturating_add(n);
    let state_start = if version == FORMAT_VERSION {
        header_end.saturating_add(CHECKSUM_LEN)
    } else {
        header_end
    };
    if bytes.len() < state_start {
        return Err(bad(format!(
            "truncated: {} bytes, but the header of {n} bytes{} needs {state_start}",
            bytes.len(),
            if version == FORMAT_VERSION {
                " and its checksum"
            } else {
                ""
            }
        )));
    }
    if version == FORMAT_VERSION {
        let stored = &bytes[header_end..state_start];
        let state = &bytes[state_start..];
        if checksum(&bytes[..header_end], state) != stored {
            return Err(bad(
                "checksum mismatch: the file is damaged (a byte was changed, lost or added since \
                 it was saved)"
                    .into(),
            ));
        }
    }
    let header: SessionHeader = serde_json::from_slice(&bytes[16..header_end])
        .map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
    Ok(SavedSession {
        header,
        state: bytes[state_start..].to_vec(),
    })
}

impl SavedSession {
    /// Checks that this session was written by the model described by `spec`.
    pub fn check_model(&self, spec: &ModelSpec) -> Result<()> {
        if self.header.model != spec.name || self.header.model_version != spec.version {
            return Err(Error::BadSessionState(format!(
                "saved by model '{}' version '{}', but this model is '{}' version '{}'",
                self.header.model, self.header.model_version, spec.name, spec.version
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SessionHeader {
        SessionHeader {
            model: "m".into(),
            model_version: "2".into(),
            frame_index: 7,
            controls: Controls::new(vec![1.0]),
        }
    }

    /// A version-1 file as earlier builds wrote it: no checksum.
    fn encode_v1(header: &SessionHeader, state: &[u8]) -> Vec<u8> {
        let json = serde_json::to_vec(header).unwrap();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(state);
        out
    }

    #[test]
    fn roundtrip_and_errors() {
        let header = header();
        let bytes = encode(&header, &[1, 2, 3]);
        assert_eq!(&bytes[8..12], &2u32.to_le_bytes());
        let s = decode(&bytes).unwrap();
        assert_eq!(s.header, header);
        assert_eq!(s.state, vec![1, 2, 3]);
        assert!(decode(&bytes[..10]).is_err());
        assert!(decode(b"hello world, not a session").is_err());
        let mut other = bytes.clone();
        other[8] = 9;
        let err = decode(&other).unwrap_err().to_string();
        assert!(err.contains("format version 9"), "{err}");
        // An empty state round-trips too.
        assert_eq!(
            decode(&encode(&header, &[])).unwrap().state,
            Vec::<u8>::new()
        );
    }

    #[test]
    fn version_1_files_still_load() {
        let bytes = encode_v1(&header(), &[4, 5, 6]);
        let s = decode(&bytes).unwrap();
        assert_eq!(s.header, header());
        assert_eq!(s.state, vec![4, 5, 6]);
        let err = decode(&bytes[..20]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn any_changed_lost_or_added_byte_is_refused() {
        let state: Vec<u8> = (0..64).collect();
        let bytes = encode(&header(), &state);
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80] {
                let mut damaged = bytes.clone();
                damaged[i] ^= flip;
                let err = decode(&damaged).expect_err(&format!("byte {i} ^ {flip:#x} accepted"));
                assert!(matches!(err, Error::BadSessionState(_)), "{err:?}");
            }
        }
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len]).is_err(),
                "cut to {len} bytes accepted"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let err = decode(&longer).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        // A changed state byte is caught by the checksum with a message saying so.
        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x10;
        let err = decode(&damaged).unwrap_err().to_string();
        assert!(err.starts_with("saved session: checksum mismatch"), "{err}");
        // A header length past the end of the file.
        let mut long_header = bytes.clone();
        long_header[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = decode(&long_header).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
