//! Training data in memory: every frame of a dataset as bytes, the per-row conditions, the
//! sound targets as band spectra, and where each episode starts, with batch sampling.

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::dataset::Dataset;
use crate::default_model::conditions::{condition_len, encode_condition};
use crate::default_model::config::Config;
use crate::dsp::BandSpectrum;
use crate::error::{Error, Result};
use crate::rng::Gaussian;
use crate::spec::{ChannelLayout, ModelSpec};

/// A dataset loaded for training.
pub struct TrainingData {
    /// Frame width and height.
    pub width: usize,
    /// Frame height.
    pub height: usize,
    /// RGB8 frames, `[N, H, W, 3]`.
    pub frames: Vec<u8>,
    /// Actions, `[N, A]`.
    pub actions: Vec<f32>,
    /// Controls, `[N, C]`.
    pub controls: Vec<f32>,
    /// Log band energies of each row's sound, `[N, subframes·bands]`.
    pub audio: Vec<f32>,
    /// Per episode: first row and length.
    pub episodes: Vec<(usize, usize)>,
    /// The spec of the world the data came from.
    pub spec: ModelSpec,
    /// Its action channels and controls, which the condition vectors follow.
    pub layout: ChannelLayout,
}

impl TrainingData {
    /// Loads a dataset (verifying every shard) and analyses its sound for `cfg`.
    pub fn load(dir: &Path, cfg: &Config) -> Result<Self> {
        let ds = Dataset::open(dir)?;
        let m = ds.manifest();
        let dims = m.dims;
        if dims.width as usize != cfg.width || dims.height as usize != cfg.height {
            return Err(Error::bad_file(
                dir.join(crate::dataset::MANIFEST_FILE),
                format!(
                    "dataset frames are {}x{}, the model config needs {}x{}",
                    dims.width, dims.height, cfg.width, cfg.height
                ),
            ));
        }
        if dims.audio_samples != cfg.samples_per_frame {
            return Err(Error::bad_file(
                dir.join(crate::dataset::MANIFEST_FILE),
                format!(
                    "dataset has {} audio samples per frame, the model config needs {}",
                    dims.audio_samples, cfg.samples_per_frame
                ),
            ));
        }
        if dims.width == 0 || dims.height == 0 {
            return Err(Error::bad_file(
                dir.join(crate::dataset::MANIFEST_FILE),
                format!("dataset frames are {}x{}", dims.width, dims.height),
            ));
        }
        if dims.audio_samples == 0 {
            return Err(Error::bad_file(
                dir.join(crate::dataset::MANIFEST_FILE),
                "dataset has no sound (0 audio samples per frame); the default model learns \
                 sound and needs it",
            ));
        }
        // The config is checked when it is loaded; a caller that built one by hand gets an
        // error naming the setting rather than a panic in the analysis.
        let spectrum = BandSpectrum::try_new(
            cfg.sample_rate,
            cfg.samples_per_frame,
            cfg.audio_subframes,
            cfg.audio_bands,
        )
        .map_err(|why| Error::Other(format!("invalid model config: sound analysis: {why}")))?;
        let mut data = TrainingData {
            width: cfg.width,
            height: cfg.height,
            frames: Vec::new(),
            actions: Vec::new(),
            controls: Vec::new(),
            audio: Vec::new(),
            episodes: Vec::new(),
            layout: ChannelLayout::of(&m.model),
            spec: m.model.clone(),
        };
        for episode in ds.episodes() {
            let e = episode?;
            let rows = e.data.len();
            data.episodes.push((data.frame_count(), rows));
            data.frames.extend_from_slice(&e.data.frames);
            data.actions.extend_from_slice(&e.data.actions);
            data.controls.extend_from_slice(&e.data.controls);
            let mut chunk = vec![0.0f32; cfg.samples_per_frame];
            for pcm in e.data.audio.chunks_exact(cfg.samples_per_frame) {
                for (c, s) in chunk.iter_mut().zip(pcm) {
                    *c = *s as f32 / 32768.0;
                }
                data.audio.extend(spectrum.analyze(&chunk));
            }
        }
        if data.episodes.is_empty() || data.frame_count() == 0 {
            return Err(Error::bad_file(dir, "dataset has no episodes"));
        }
        Ok(data)
    }

    /// Rows in total.
    pub fn frame_count(&self) -> usize {
        self.frames.len() / (self.width * self.height * 3).max(1)
    }

    /// Frames at `rows` as a `(len, 3, H, W)` tensor in [-1, 1].
    pub fn pixels(&self, rows: &[usize], device: &Device) -> Result<Tensor> {
        let px = self.width * self.height;
        let mut out = vec![0f32; rows.len() * 3 * px];
        for (i, &r) in rows.iter().enumerate() {
            let src = &self.frames[r * px * 3..(r + 1) * px * 3];
            let dst = &mut out[i * 3 * px..(i + 1) * 3 * px];
            for p in 0..px {
                for c in 0..3 {
                    dst[c * px + p] = src[p * 3 + c] as f32 / 127.5 - 1.0;
                }
            }
        }
        Ok(Tensor::from_vec(
            out,
            (rows.len(), 3, self.height, self.width),
            device,
        )?)
    }

    /// The condition vectors of `rows` at context-noise `noise` (one per row).
    pub fn conditions(&self, rows: &[usize], noise: &[f32], device: &Device) -> Result<Tensor> {
        let (a, c) = (self.spec.actions.len(), self.spec.controls.len());
        let mut out = Vec::new();
        for (&r, &n) in rows.iter().zip(noise) {
            encode_condition(
                &self.layout,
                &self.actions[r * a..(r + 1) * a],
                &self.controls[r * c..(r + 1) * c],
                n,
                &mut out,
            );
        }
        Ok(Tensor::from_vec(
            out,
            (rows.len(), condition_len(&self.layout)),
            device,
        )?)
    }

    /// Sound targets of `rows`, `(len, subframes·bands)`.
    pub fn audio_targets(&self, rows: &[usize], device: &Device) -> Result<Tensor> {
        let per = self.audio.len() / self.frame_count().max(1);
        let mut out = Vec::with_capacity(rows.len() * per);
        for &r in rows {
            out.extend_from_slice(&self.audio[r * per..(r + 1) * per]);
        }
        Ok(Tensor::from_vec(out, (rows.len(), per), device)?)
    }

    /// `count` random rows.
    pub fn random_rows(&self, count: usize, rng: &mut Gaussian) -> Vec<usize> {
        let n = self.frame_count();
        (0..count)
            .map(|_| ((rng.uniform() * n as f32) as usize).min(n - 1))
            .collect()
    }

    /// Whether the player does nothing in `row`: every action value within 0.02 of zero.
    pub fn is_still(&self, row: usize) -> bool {
        let a = self.spec.actions.len();
        self.actions[row * a..(row + 1) * a]
            .iter()
            .all(|v| v.abs() < 0.02)
    }

    /// A random window of `len` rows inside one episode whose rows from `skip` on are all
    /// [still](Self::is_still); its first row, or `None` if 10,000 draws found none.
    pub fn random_still_window(
        &self,
        len: usize,
        skip: usize,
        rng: &mut Gaussian,
    ) -> Result<Option<usize>> {
        for _ in 0..10_000 {
            let start = self.random_windows(1, len, rng)?[0];
            if (start + skip..start + len).all(|r| self.is_still(r)) {
                return Ok(Some(start));
            }
        }
        Ok(None)
    }

    /// `count` random windows of `len` consecutive rows inside one episode; returns each
    /// window's first row. Episodes shorter than `len` are never chosen.
    pub fn random_windows(
        &self,
        count: usize,
        len: usize,
        rng: &mut Gaussian,
    ) -> Result<Vec<usize>> {
        let usable: Vec<(usize, usize)> = self
            .episodes
            .iter()
            .filter(|(_, l)| *l >= len)
            .map(|&(s, l)| (s, l - len + 1))
            .collect();
        let total: usize = usable.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return Err(Error::Other(format!(
                "no episode has the {len} frames a training window needs"
            )));
        }
        Ok((0..count)
            .map(|_| {
                let mut pick = ((rng.uniform() * total as f32) as usize).min(total - 1);
                for &(start, n) in &usable {
                    if pick < n {
                        return start + pick;
                    }
                    pick -= n;
                }
                unreachable!("pick is below the total")
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of 1×1 pixels: episode 0 (rows 0–9) moves throughout; in episode 1 (rows 10–21)
    /// the player stands still from row 14 on.
    fn data() -> TrainingData {
        let spec = crate::reference::reference_spec(1, 1);
        let a = spec.actions.len();
        let mut actions = vec![0.0; 22 * a];
        for row in 0..14 {
            actions[row * a] = 1.0;
        }
        TrainingData {
            width: 1,
            height: 1,
            frames: vec![0; 22 * 3],
            actions,
            controls: vec![0.0; 22 * spec.controls.len()],
            audio: Vec::new(),
            episodes: vec![(0, 10), (10, 12)],
            layout: ChannelLayout::of(&spec),
            spec,
        }
    }

    #[test]
    fn odd_dataset_dims_and_sound_settings_are_refused_with_the_file_named() {
        use crate::dataset::{DatagenOptions, Manifest, generate};
        let dir = std::env::temp_dir().join(format!("nacre-train-data-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut opts = DatagenOptions::new(&dir, 1, 3, 16, 16, 5);
        opts.threads = 1;
        generate(&opts, &|_, _| {}).unwrap();
        let cfg = Config {
            width: 16,
            height: 16,
            ..Config::tiny()
        };
        let loaded = TrainingData::load(&dir, &cfg).unwrap();
        assert_eq!(loaded.frame_count(), 3);
        assert_eq!(
            loaded.audio.len(),
            3 * cfg.audio_subframes * cfg.audio_bands
        );

        // A config whose sound layout the analysis cannot use.
        let too_many_bands = Config {
            audio_bands: 5000,
            ..cfg.clone()
        };
        let err = TrainingData::load(&dir, &too_many_bands).err().unwrap();
        assert!(err.to_string().contains("5000 bands"), "{err}");

        // A dataset without sound, with a config that asks for none (chunks of 0 samples).
        let good = Manifest::read(&dir).unwrap();
        let mut silent = good.clone();
        silent.model.audio.samples_per_frame = 0;
        silent.dims.audio_samples = 0;
        silent.write(&dir).unwrap();
        let no_sound = Config {
            samples_per_frame: 0,
            ..cfg.clone()
        };
        let err = TrainingData::load(&dir, &no_sound)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("manifest.json") && err.contains("no sound"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn still_windows_are_still_from_the_skipped_rows_on() {
        let data = data();
        let mut rng = Gaussian::new(3);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let start = data.random_still_window(5, 2, &mut rng).unwrap().unwrap();
            assert!((start + 2..start + 5).all(|r| data.is_still(r)), "{start}");
            assert!(start + 5 <= 22, "the window stays inside its episode");
            seen.insert(start);
        }
        // Rows 14–21 are still: windows start at 12 (rows 14–16 predicted) up to 17.
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            vec![12, 13, 14, 15, 16, 17]
        );
        // No episode stands still for 9 rows after 2 context rows.
        assert_eq!(data.random_still_window(11, 2, &mut rng).unwrap(), None);
    }
}
