//! Place memory: what a session has seen stays where it was, so turning away and back brings
//! the same place back instead of a new guess.
//!
//! The motion warp moves the view by whole pixels when the player turns or looks (see
//! [`MotionWarp::transport`](super::warp::MotionWarp::transport)), so the session knows where
//! its view lies on a plane of "world pixels" (turning right moves the view right on it). A
//! [`PlaceMemory`] is a window of that plane around the view, holding the linear decode of the
//! latents last seen at every pixel (the picture texture transport carries, quantised to 8 bits),
//! with when it was seen. Every step writes the new view into it; where the warp brings pixels in
//! from beyond the view's edge, the memory gives them back if it holds them. With
//! [`MemoryConfig::turn_from_memory`], a turn carries the view's texture from it and only adds what
//! it did not hold; with [`MemoryConfig::quilt`], what it never held is continued from what it
//! does before the view gets there.
//!
//! Walking changes what lies around the player, so a remembered pixel counts only until the
//! player has walked on by a set amount since it was seen ([`MemoryConfig::forget_after`], in
//! summed log-zoom of the warp: about 0.01 per frame of walking). The window is fixed in size
//! and moves with the view (content that falls off its far side is forgotten), so memory and
//! cost stay flat however long a session runs; the window is part of the saved state.

use serde::{Deserialize, Serialize};

use super::quilt::QuiltConfig;
use crate::error::Result;
use crate::state_codec::{StateReader, StateWriter};

/// Size and forgetting of the place memory (`memory` in `config.json`'s `generation` section).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Width of the remembered window, pixels (at least the frame's width). Turning 180° at full
    /// rate moves the view about 220 pixels at 128×128, so 768 keeps everything seen within a
    /// half turn either way.
    pub width: usize,
    /// Height of the remembered window, pixels (at least the frame's height).
    pub height: usize,
    /// How far the player may walk, in summed |log zoom| of the warp, before what was seen is
    /// forgotten.
    pub forget_after: f32,
    /// Continue the world beyond the view's edge from what was seen when turning into the
    /// unseen (see [`quilt`](super::quilt)). `None`: the network draws it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quilt: Option<QuiltConfig>,
    /// While the player turns or looks without walking, carry the view's texture (the latent
    /// channels texture transport carries) from the memory, and only fill the memory where it
    /// holds nothing. Carrying last frame's picture sideways projects it onto the latent space
    /// again at a new alignment every step, and each projection loses a little detail: after a
    /// second of turning the picture is smeared. From the memory, every frame of a turn is one
    /// projection of what was first seen. The first channel (coarse brightness) still comes
    /// from the network, so light and weather keep changing; standing still or walking, the
    /// network draws the view and the memory takes it in as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub turn_from_memory: bool,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            width: 768,
            height: 256,
            forget_after: 0.3,
            quilt: None,
            turn_from_memory: false,
        }
    }
}

/// Pixel values of the linear decode (about -1 to 1) to bytes and back.
pub(super) fn quantise(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

fn dequantise(b: u8) -> f32 {
    b as f32 / 127.5 - 1.0
}

/// One session's remembered window of world pixels (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct PlaceMemory {
    width: usize,
    height: usize,
    /// World position of the window's top-left pixel.
    origin: (i64, i64),
    /// World position of the view's top-left pixel.
    view: (i64, i64),
    /// Summed |log zoom| of every step so far.
    walked: f32,
    /// RGB bytes, row by row.
    pixels: Vec<u8>,
    /// `walked` when each pixel was written; NaN where nothing was.
    seen: Vec<f32>,
}

impl PlaceMemory {
    /// An empty memory of `cfg`'s size around a view of `view_w`×`view_h` at the origin.
    pub fn new(cfg: &MemoryConfig, view_w: usize, view_h: usize) -> Self {
        let (width, height) = (cfg.width.max(view_w), cfg.height.max(view_h));
        Self {
            width,
            height,
            origin: (
                -(((width - view_w) / 2) as i64),
                -(((height - view_h) / 2) as i64),
            ),
            view: (0, 0),
            walked: 0.0,
            pixels: vec![0; width * height * 3],
            seen: vec![f32::NAN; width * height],
        }
    }

    /// Where the view is, in world pixels.
    pub fn view(&self) -> (i64, i64) {
        self.view
    }

    /// Moves the view by a step's whole-pixel shift (`shift` moves the content, so the view
    /// goes the other way) and adds the step's zoom to the distance walked. Recentres the window
    /// on the view when the view comes within a quarter of the spare width of its edge.
    pub fn advance(&mut self, shift: (i64, i64), log_zoom: f32, view_w: usize, view_h: usize) {
        self.view = (self.view.0 - shift.0, self.view.1 - shift.1);
        if log_zoom.is_finite() {
            self.walked += log_zoom.abs();
        }
        let spare = |size: usize, view: usize| (size - view) as i64;
        let (sx, sy) = (spare(self.width, view_w), spare(self.height, view_h));
        let (rx, ry) = (self.view.0 - self.origin.0, self.view.1 - self.origin.1);
        let off_x = rx < sx / 4 || rx > sx - sx / 4;
        let off_y = ry < sy / 4 || ry > sy - sy / 4;
        if off_x || off_y {
            let origin = (self.view.0 - sx / 2, self.view.1 - sy / 2);
            self.recentre(origin);
        }
    }

    /// Moves the window to `origin`, keeping what both windows cover.
    fn recentre(&mut self, origin: (i64, i64)) {
        let (w, h) = (self.width as i64, self.height as i64);
        let (dx, dy) = (origin.0 - self.origin.0, origin.1 - self.origin.1);
        let mut pixels = vec![0; self.pixels.len()];
        let mut seen = vec![f32::NAN; self.seen.len()];
        for y in 0..h {
            let sy = y + dy;
            if !(0..h).contains(&sy) {
                continue;
            }
            for x in 0..w {
                let sx = x + dx;
                if !(0..w).contains(&sx) {
                    continue;
                }
                let (to, from) = ((y * w + x) as usize, (sy * w + sx) as usize);
                pixels[to * 3..to * 3 + 3].copy_from_slice(&self.pixels[from * 3..from * 3 + 3]);
                seen[to] = self.seen[from];
            }
        }
        self.origin = origin;
        self.pixels = pixels;
        self.seen = seen;
    }

    /// Index of world pixel `(x, y)` in the window, if it lies inside.
    fn index(&self, x: i64, y: i64) -> Option<usize> {
        let (rx, ry) = (x - self.origin.0, y - self.origin.1);
        ((0..self.width as i64).contains(&rx) && (0..self.height as i64).contains(&ry))
            .then(|| (ry * self.width as i64 + rx) as usize)
    }

    /// Writes a view's linear decode (`3 × h × w`, channel-major) at the view's position.
    pub fn write_view(&mut self, planes: &[f32], w: usize, h: usize) {
        for y in 0..h {
            for x in 0..w {
                let Some(i) = self.index(self.view.0 + x as i64, self.view.1 + y as i64) else {
                    continue;
                };
                for c in 0..3 {
                    self.pixels[i * 3 + c] = quantise(planes[(c * h + y) * w + x]);
                }
                self.seen[i] = self.walked;
            }
        }
    }

    /// Whether a pixel at world `(x, y)` is remembered and not yet forgotten.
    fn valid_at(&self, x: i64, y: i64, forget_after: f32) -> bool {
        self.index(x, y).is_some_and(|i| {
            let seen = self.seen[i];
            !seen.is_nan() && self.walked - seen <= forget_after
        })
    }

    /// The remembered colour at world `(x, y)` (bytes of the linear decode), if it is
    /// remembered and not yet forgotten.
    pub fn remembered(&self, x: i64, y: i64, forget_after: f32) -> Option<[u8; 3]> {
        let i = self.index(x, y)?;
        self.valid_at(x, y, forget_after).then(|| {
            [
                self.pixels[i * 3],
                self.pixels[i * 3 + 1],
                self.pixels[i * 3 + 2],
            ]
        })
    }

    /// Writes a colour at world `(x, y)` as seen now (outside the window: nothing).
    pub fn set(&mut self, x: i64, y: i64, rgb: [u8; 3]) {
        if let Some(i) = self.index(x, y) {
            self.pixels[i * 3..i * 3 + 3].copy_from_slice(&rgb);
            self.seen[i] = self.walked;
        }
    }

    /// Whether every pixel of the world rectangle at `(x0, y0)`, `w`×`h`, is remembered.
    pub fn holds(&self, (x0, y0): (i64, i64), w: usize, h: usize, forget_after: f32) -> bool {
        (0..h as i64).all(|y| (0..w as i64).all(|x| self.valid_at(x0 + x, y0 + y, forget_after)))
    }

    /// Writes `planes` (`3 × h × w`, channel-major) at world `(x0, y0)` where nothing is
    /// remembered: drawn content never overwrites what was seen.
    pub fn fill_missing(
        &mut self,
        (x0, y0): (i64, i64),
        planes: &[f32],
        w: usize,
        h: usize,
        forget_after: f32,
    ) {
        for y in 0..h {
            for x in 0..w {
                let (wx, wy) = (x0 + x as i64, y0 + y as i64);
                if self.valid_at(wx, wy, forget_after) {
                    continue;
                }
                let Some(i) = self.index(wx, wy) else {
                    continue;
                };
                for c in 0..3 {
                    self.pixels[i * 3 + c] = quantise(planes[(c * h + y) * w + x]);
                }
                self.seen[i] = self.walked;
            }
        }
    }

    /// What the memory holds for the view's pixels: the values (`3 × h × w`, channel-major; 0
    /// where nothing is remembered) and 1 where a remembered pixel is still valid (`h × w`),
    /// given how far the player may walk before it is forgotten.
    pub fn recall(&self, w: usize, h: usize, forget_after: f32) -> (Vec<f32>, Vec<f32>) {
        let mut values = vec![0.0; 3 * w * h];
        let mut valid = vec![0.0; w * h];
        for y in 0..h {
            for x in 0..w {
                let Some(i) = self.index(self.view.0 + x as i64, self.view.1 + y as i64) else {
                    continue;
                };
                let seen = self.seen[i];
                if seen.is_nan() || self.walked - seen > forget_after {
                    continue;
                }
                valid[y * w + x] = 1.0;
                for c in 0..3 {
                    values[(c * h + y) * w + x] = dequantise(self.pixels[i * 3 + c]);
                }
            }
        }
        (values, valid)
    }

    /// Appends the memory to a saved state.
    pub fn save(&self, w: &mut StateWriter) {
        w.u32(self.width as u32);
        w.u32(self.height as u32);
        for v in [self.origin.0, self.origin.1, self.view.0, self.view.1] {
            w.u64(v as u64);
        }
        w.f32(self.walked);
        w.byte_string(&self.pixels);
        w.f32_array(&self.seen);
    }

    /// Reads a memory saved by [`save`](Self::save) for a model whose memory is `cfg` and whose
    /// view is `view_w`×`view_h`.
    pub fn restore(
        r: &mut StateReader,
        cfg: &MemoryConfig,
        view_w: usize,
        view_h: usize,
    ) -> Result<Self> {
        let saved = Self::read(r)?;
        let empty = Self::new(cfg, view_w, view_h);
        if (saved.width, saved.height) != (empty.width, empty.height) {
            return Err(r.error(format!(
                "place memory of {}x{}; this model remembers {}x{}",
                saved.width, saved.height, empty.width, empty.height
            )));
        }
        Ok(saved)
    }

    /// Reads a memory saved by [`save`](Self::save), whatever its size (up to 2²⁴ pixels).
    pub fn read(r: &mut StateReader) -> Result<Self> {
        let (width, height) = (r.u32()? as usize, r.u32()? as usize);
        if width == 0 || height == 0 || width * height > 1 << 24 {
            return Err(r.error(format!("place memory of {width}x{height}")));
        }
        let mut at = || r.u64().map(|v| v as i64);
        let origin = (at()?, at()?);
        let view = (at()?, at()?);
        let walked = r.f32()?;
        let pixels = r.byte_string(width * height * 3)?.to_vec();
        if pixels.len() != width * height * 3 {
            return Err(r.error("place memory truncated"));
        }
        let seen = r.f32_array(width * height)?;
        Ok(Self {
            width,
            height,
            origin,
            view,
            walked,
            pixels,
            seen,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4×2 view whose pixel `(x, y)` of channel `c` is `(x + 10 y + 100 c) / 300 − 0.5`, plus
    /// `offset`.
    fn view(offset: f32) -> Vec<f32> {
        let mut v = Vec::new();
        for c in 0..3 {
            for y in 0..2 {
                for x in 0..4 {
                    v.push((x as f32 + 10.0 * y as f32 + 100.0 * c as f32) / 300.0 - 0.5 + offset);
                }
            }
        }
        v
    }

    #[test]
    fn what_leaves_the_view_comes_back_when_the_view_returns() {
        let cfg = MemoryConfig {
            width: 12,
            height: 4,
            forget_after: 0.3,
            quilt: None,
            turn_from_memory: false,
        };
        let mut m = PlaceMemory::new(&cfg, 4, 2);
        m.write_view(&view(0.0), 4, 2);
        // Nothing is known to the right of the view.
        m.advance((-4, 0), 0.0, 4, 2);
        assert_eq!(m.view(), (4, 0));
        assert!(m.recall(4, 2, cfg.forget_after).1.iter().all(|&v| v == 0.0));
        m.write_view(&view(0.3), 4, 2);
        // Back where it started: the first view, to 8 bits.
        m.advance((4, 0), 0.0, 4, 2);
        let (values, valid) = m.recall(4, 2, cfg.forget_after);
        assert!(valid.iter().all(|&v| v == 1.0));
        for (got, want) in values.iter().zip(view(0.0)) {
            assert!((got - want).abs() <= 1.0 / 127.5, "{got} {want}");
        }
        // Half of it, one step right: the left half was the first view, the right the second.
        m.advance((-2, 0), 0.0, 4, 2);
        let (values, _) = m.recall(4, 2, cfg.forget_after);
        assert!((values[0] - view(0.0)[2]).abs() <= 1.0 / 127.5);
        assert!((values[2] - view(0.3)[0]).abs() <= 1.0 / 127.5);
    }

    #[test]
    fn walking_forgets_and_the_window_follows_the_view_with_constant_size() {
        let cfg = MemoryConfig {
            width: 12,
            height: 4,
            forget_after: 0.3,
            quilt: None,
            turn_from_memory: false,
        };
        let mut m = PlaceMemory::new(&cfg, 4, 2);
        m.write_view(&view(0.0), 4, 2);
        m.advance((0, 0), 0.2, 4, 2);
        assert!(m.recall(4, 2, cfg.forget_after).1.iter().all(|&v| v == 1.0));
        m.advance((0, 0), 0.2, 4, 2);
        assert!(m.recall(4, 2, cfg.forget_after).1.iter().all(|&v| v == 0.0));
        // Far to the right and back: the window moved with the view and forgot the start.
        let mut m = PlaceMemory::new(&cfg, 4, 2);
        m.write_view(&view(0.0), 4, 2);
        for _ in 0..10 {
            m.advance((-4, 0), 0.0, 4, 2);
            m.write_view(&view(0.3), 4, 2);
        }
        assert_eq!((m.pixels.len(), m.seen.len()), (12 * 4 * 3, 12 * 4));
        for _ in 0..10 {
            m.advance((4, 0), 0.0, 4, 2);
        }
        assert!(m.recall(4, 2, cfg.forget_after).1.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn a_saved_memory_restores_exactly_and_a_damaged_one_is_refused() {
        let cfg = MemoryConfig {
            width: 12,
            height: 4,
            forget_after: 0.3,
            quilt: None,
            turn_from_memory: false,
        };
        let mut m = PlaceMemory::new(&cfg, 4, 2);
        m.write_view(&view(0.1), 4, 2);
        m.advance((-3, 1), 0.05, 4, 2);
        let mut w = StateWriter::new(b"MEM");
        m.save(&mut w);
        let bytes = w.finish();
        let (mut r, _) = StateReader::open(&bytes, "test", &[b"MEM"]).unwrap();
        let back = PlaceMemory::restore(&mut r, &cfg, 4, 2).unwrap();
        r.finish().unwrap();
        assert_eq!(format!("{back:?}"), format!("{m:?}"), "NaN-aware equality");
        let other = MemoryConfig {
            width: 16,
            ..cfg.clone()
        };
        let (mut r, _) = StateReader::open(&bytes, "test", &[b"MEM"]).unwrap();
        let err = PlaceMemory::restore(&mut r, &other, 4, 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("12x4"), "{err}");
        let (mut r, _) = StateReader::open(&bytes[..bytes.len() - 5], "test", &[b"MEM"]).unwrap();
        assert!(PlaceMemory::restore(&mut r, &cfg, 4, 2).is_err());
    }
}
