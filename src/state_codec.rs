//! The binary codec of every model's session state (what [`Session::save`] writes and
//! [`WorldModel::restore`] reads): a magic tag that names the model and the layout's version,
//! then little-endian integers and floats stored as their bit patterns, so a restored session
//! continues bit for bit.
//!
//! Reading never panics and never allocates more than the input can hold: a truncated, padded
//! or corrupt state is an [`Error::BadSessionState`] that names the model and the byte.
//!
//! [`Session::save`]: crate::world_model::Session::save
//! [`WorldModel::restore`]: crate::world_model::WorldModel::restore

use crate::error::{Error, Result};

/// Appends a state's values to a byte buffer.
#[derive(Debug)]
pub struct StateWriter {
    bytes: Vec<u8>,
}

impl StateWriter {
    /// A state that starts with `magic`.
    pub fn new(magic: &[u8]) -> Self {
        Self {
            bytes: magic.to_vec(),
        }
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }

    /// A boolean as one byte.
    pub fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }

    /// A `u32`.
    pub fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// An `i32`.
    pub fn i32(&mut self, v: i32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// A `u64`.
    pub fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// An `f32`, bit for bit (NaN included).
    pub fn f32(&mut self, v: f32) {
        self.u32(v.to_bits());
    }

    /// A list of floats with its length first.
    pub fn f32s(&mut self, v: &[f32]) {
        self.u32(v.len() as u32);
        self.f32_array(v);
    }

    /// Floats whose count the reader knows from elsewhere (no length).
    pub fn f32_array(&mut self, v: &[f32]) {
        self.bytes.reserve(4 * v.len());
        for x in v {
            self.f32(*x);
        }
    }

    /// Bytes with their length first.
    pub fn byte_string(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.bytes.extend_from_slice(v);
    }

    /// The encoded state.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads a state's values back, with an error (not a panic) on anything malformed.
#[derive(Debug)]
pub struct StateReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> StateReader<'a> {
    /// Opens `bytes` as the state of `what` (a model's name for messages), whose magic tag must
    /// be one of `accepted`. Returns the reader after the tag and the index of the tag found, so
    /// a model can read older layouts too.
    pub fn open(bytes: &'a [u8], what: &'static str, accepted: &[&[u8]]) -> Result<(Self, usize)> {
        let found = accepted.iter().position(|m| bytes.starts_with(m));
        let Some(index) = found else {
            return Err(Error::BadSessionState(format!(
                "not a {what} state (bad magic bytes)"
            )));
        };
        let reader = Self {
            bytes,
            pos: accepted[index].len(),
            what,
        };
        Ok((reader, index))
    }

    /// Reads a `u32` layout version and refuses any other than `supported`.
    pub fn version(&mut self, supported: u32) -> Result<()> {
        let version = self.u32()?;
        if version != supported {
            return Err(self.error(format!(
                "version {version}; this build reads version {supported}"
            )));
        }
        Ok(())
    }

    /// An error about this state.
    pub fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::BadSessionState(format!("{} state: {message}", self.what))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.error(format!(
                "truncated at byte {} of {} ({n} more wanted)",
                self.pos,
                self.bytes.len()
            ))),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// A boolean (any byte but 0 is true).
    pub fn bool(&mut self) -> Result<bool> {
        Ok(self.u8()? != 0)
    }

    /// A `u32`.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// An `i32`.
    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    /// A `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// An `f32`, bit for bit.
    pub fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_bits(self.u32()?))
    }

    /// A length written before a list, refused when above `max` (so corrupt input cannot ask for
    /// a huge allocation).
    pub fn len(&mut self, max: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(self.error(format!("a list of {n} entries (at most {max} expected)")));
        }
        Ok(n)
    }

    /// A list of floats written by [`StateWriter::f32s`], of at most `max` entries.
    pub fn f32s(&mut self, max: usize) -> Result<Vec<f32>> {
        let n = self.len(max)?;
        self.f32_array(n)
    }

    /// Exactly `n` floats written by [`StateWriter::f32_array`]; checked against the bytes left
    /// before anything is allocated.
    pub fn f32_array(&mut self, n: usize) -> Result<Vec<f32>> {
        let bytes = self.take(n.saturating_mul(4))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// Bytes written by [`StateWriter::byte_string`], at most `max` of them.
    pub fn byte_string(&mut self, max: usize) -> Result<&'a [u8]> {
        let n = self.len(max)?;
        self.take(n)
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Refuses trailing bytes: a state must be read to its end.
    pub fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.error(format!("{} unexpected trailing bytes", self.remaining())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_bad_input_is_an_error() {
        let mut w = StateWriter::new(b"TEST");
        w.u32(7);
        w.u8(3);
        w.bool(true);
        w.i32(-5);
        w.u64(u64::MAX - 1);
        w.f32(f32::NAN);
        w.f32s(&[1.5, -2.0]);
        w.f32_array(&[0.25]);
        w.byte_string(b"v1");
        let bytes = w.finish();

        let (mut r, tag) = StateReader::open(&bytes, "test", &[b"OLD!", b"TEST"]).unwrap();
        assert_eq!(tag, 1);
        r.version(7).unwrap();
        assert_eq!(r.u8().unwrap(), 3);
        assert!(r.bool().unwrap());
        assert_eq!(r.i32().unwrap(), -5);
        assert_eq!(r.u64().unwrap(), u64::MAX - 1);
        assert!(r.f32().unwrap().is_nan());
        assert_eq!(r.f32s(2).unwrap(), vec![1.5, -2.0]);
        assert_eq!(r.f32_array(1).unwrap(), vec![0.25]);
        assert_eq!(r.byte_string(8).unwrap(), b"v1");
        r.finish().unwrap();

        let message = |e: Error| e.to_string();
        let wrong = StateReader::open(b"NOPE", "test", &[b"TEST"]).unwrap_err();
        assert!(message(wrong).contains("bad magic"));
        let (mut r, _) = StateReader::open(&bytes, "test", &[b"TEST"]).unwrap();
        assert!(message(r.version(8).unwrap_err()).contains("version 7"));
        // A list longer than allowed, a huge count, truncation, trailing bytes.
        let (mut r, _) = StateReader::open(&bytes[..bytes.len() - 3], "test", &[b"TEST"]).unwrap();
        r.u32().unwrap();
        r.take(1 + 1 + 4 + 8 + 4).unwrap();
        assert!(message(r.f32s(1).unwrap_err()).contains("at most 1"));
        assert!(r.f32_array(usize::MAX / 2).is_err());
        let (mut r, _) = StateReader::open(b"TEST\x01", "test", &[b"TEST"]).unwrap();
        assert!(message(r.u32().unwrap_err()).contains("truncated at byte 4"));
        assert!(message(r.finish().unwrap_err()).contains("1 unexpected trailing"));
    }
}
