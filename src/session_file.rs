//! The saved-session format: a small header that names the model, its version and this format's
//! version, followed by the model's own state bytes.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | content |
//! | --- | --- |
//! | 8 | magic `NACRESES` |
//! | 4 | format version (currently 1) |
//! | 4 | header length `n` |
//! | n | JSON [`SessionHeader`] |
//! | rest | the model's state, as [`Session::save`](crate::world_model::Session::save) wrote it |

use serde::{Deserialize, Serialize};

use crate::action::Controls;
use crate::error::{Error, Result};
use crate::spec::ModelSpec;

/// First bytes of every saved session.
pub const MAGIC: &[u8; 8] = b"NACRESES";
/// Version of the envelope this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

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

/// Encodes a saved session.
pub fn encode(header: &SessionHeader, state: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("session header serialises");
    let mut out = Vec::with_capacity(16 + json.len() + state.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(state);
    out
}

/// Decodes a saved session, with a clear error for anything that is not one.
pub fn decode(bytes: &[u8]) -> Result<SavedSession> {
    let bad = |m: String| Error::BadSessionState(m);
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(bad(
            "not a bevy_nacre saved session (bad magic bytes)".into()
        ));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "saved-session format version {version}; this build reads version {FORMAT_VERSION}"
        )));
    }
    let n = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let json = bytes.get(16..16 + n).ok_or_else(|| {
        bad(format!(
            "truncated: header of {n} bytes but file has {}",
            bytes.len()
        ))
    })?;
    let header: SessionHeader =
        serde_json::from_slice(json).map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
    Ok(SavedSession {
        header,
        state: bytes[16 + n..].to_vec(),
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

    #[test]
    fn roundtrip_and_errors() {
        let header = SessionHeader {
            model: "m".into(),
            model_version: "2".into(),
            frame_index: 7,
            controls: Controls::new(vec![1.0]),
        };
        let bytes = encode(&header, &[1, 2, 3]);
        let s = decode(&bytes).unwrap();
        assert_eq!(s.header, header);
        assert_eq!(s.state, vec![1, 2, 3]);
        assert!(decode(&bytes[..10]).is_err());
        assert!(decode(b"hello world, not a session").is_err());
        let mut other = bytes.clone();
        other[8] = 9;
        let err = decode(&other).unwrap_err().to_string();
        assert!(err.contains("format version 9"), "{err}");
    }
}
