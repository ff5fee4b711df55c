//! What a world model produces each step: an RGBA8 picture and a chunk of sound.

use serde::{Deserialize, Serialize};

/// One generated picture, RGBA8, rows top to bottom, tightly packed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 4` bytes.
    pub rgba: Vec<u8>,
}

impl Frame {
    /// A frame filled with one colour.
    pub fn solid(width: u32, height: u32, rgba: [u8; 4]) -> Self {
        let mut bytes = Vec::with_capacity(width as usize * height as usize * 4);
        for _ in 0..width as usize * height as usize {
            bytes.extend_from_slice(&rgba);
        }
        Self {
            width,
            height,
            rgba: bytes,
        }
    }

    /// A frame from RGB8 bytes (alpha set to 255).
    pub fn from_rgb(width: u32, height: u32, rgb: &[u8]) -> Self {
        debug_assert_eq!(rgb.len(), width as usize * height as usize * 3);
        let mut rgba = Vec::with_capacity(rgb.len() / 3 * 4);
        for px in rgb.chunks_exact(3) {
            rgba.extend_from_slice(&[px[0], px[1], px[2], 255]);
        }
        Self {
            width,
            height,
            rgba,
        }
    }

    /// Whether the byte count matches the size.
    pub fn is_well_formed(&self) -> bool {
        self.rgba.len() == self.width as usize * self.height as usize * 4
    }
}

/// The sound generated with one frame: interleaved samples in [-1, 1].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AudioChunk {
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
    /// `samples_per_frame * channels` samples.
    pub samples: Vec<f32>,
}

impl AudioChunk {
    /// An empty chunk (a silent model).
    pub fn empty() -> Self {
        Self::default()
    }
}
