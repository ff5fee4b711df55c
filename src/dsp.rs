//! Sound as band spectra: analysis of a chunk into log band energies (what the default model
//! learns and what evaluation compares), and synthesis of noise with a given band spectrum (how the
//! default model turns its prediction back into samples).
//!
//! Each frame's chunk is split into `subframes` equal parts; each part is Hann-windowed, Fourier
//! transformed and its power averaged over `bands` frequency bands spaced evenly on a mel-like
//! scale. Synthesis overlap-adds sine-windowed blocks of shaped white noise at half-block hops, so
//! the output's variance is constant across block edges and there are no clicks between frames.

use std::f32::consts::PI;

/// Smallest energy, so silence has a finite logarithm.
const FLOOR: f32 = 1e-10;

/// An in-place radix-2 complex FFT of a fixed power-of-two size.
#[derive(Clone, Debug)]
pub struct Fft {
    n: usize,
    twiddles: Vec<(f32, f32)>,
}

impl Fft {
    /// An FFT of size `n` (a power of two).
    pub fn new(n: usize) -> Self {
        assert!(n.is_power_of_two(), "FFT size {n} is not a power of two");
        let twiddles = (0..n / 2)
            .map(|k| {
                let a = -2.0 * PI * k as f32 / n as f32;
                (a.cos(), a.sin())
            })
            .collect();
        Self { n, twiddles }
    }

    /// Transforms `re`, `im` (each of length `n`) in place. `inverse` conjugates the twiddles and
    /// divides by `n`.
    pub fn run(&self, re: &mut [f32], im: &mut [f32], inverse: bool) {
        let n = self.n;
        let mut j = 0;
        for i in 1..n {
            let mut bit = n >> 1;
            while j & bit != 0 {
                j ^= bit;
                bit >>= 1;
            }
            j |= bit;
            if i < j {
                re.swap(i, j);
                im.swap(i, j);
            }
        }
        let mut len = 2;
        while len <= n {
            let step = n / len;
            for start in (0..n).step_by(len) {
                for k in 0..len / 2 {
                    let (wr, wi) = self.twiddles[k * step];
                    let wi = if inverse { -wi } else { wi };
                    let (a, b) = (start + k, start + k + len / 2);
                    let tr = re[b] * wr - im[b] * wi;
                    let ti = re[b] * wi + im[b] * wr;
                    re[b] = re[a] - tr;
                    im[b] = im[a] - ti;
                    re[a] += tr;
                    im[a] += ti;
                }
            }
            len <<= 1;
        }
        if inverse {
            let s = 1.0 / n as f32;
            re.iter_mut().chain(im.iter_mut()).for_each(|v| *v *= s);
        }
    }
}

/// Splits chunks into band energies and back.
#[derive(Clone, Debug)]
pub struct BandSpectrum {
    chunk: usize,
    subframes: usize,
    /// Samples per subframe.
    part: usize,
    bands: usize,
    fft: Fft,
    /// First FFT bin and end of each band (at least one bin, all below `fft.n / 2 + 1`).
    ranges: Vec<(usize, usize)>,
    analysis_window: Vec<f32>,
    window_energy: f32,
    /// Expected `analyze` value minus the log variance, per band, for Gaussian noise: the mean
    /// of the log of an average of `k` independent exponential variables is `ψ(k) − ln k`, not 0.
    log_bias: Vec<f32>,
}

fn mel(f: f32) -> f32 {
    2595.0 * (1.0 + f / 700.0).log10()
}

fn mel_inverse(m: f32) -> f32 {
    700.0 * (10f32.powf(m / 2595.0) - 1.0)
}

/// Largest chunk [`BandSpectrum::try_new`] accepts (the default model's config allows the same),
/// so a setting from a file cannot ask for an unbounded transform.
pub const MAX_CHUNK: usize = 1 << 20;

impl BandSpectrum {
    /// Checks that `chunk`-sample chunks at `sample_rate` split into `subframes` parts of at
    /// least 2 samples, each resolving `bands` bands with a bin of their own, and builds the
    /// analysis; the error says which setting is wrong.
    pub fn try_new(
        sample_rate: u32,
        chunk: usize,
        subframes: usize,
        bands: usize,
    ) -> Result<Self, String> {
        if sample_rate == 0 {
            return Err("the sample rate is 0".into());
        }
        if chunk == 0 || chunk > MAX_CHUNK {
            return Err(format!(
                "{chunk} samples per chunk is outside 1..={MAX_CHUNK}"
            ));
        }
        if subframes == 0 || !chunk.is_multiple_of(subframes) || chunk / subframes < 2 {
            return Err(format!(
                "{chunk} samples per chunk do not split into {subframes} subframes of at least 2 \
                 samples"
            ));
        }
        let bins = (2 * (chunk / subframes)).next_power_of_two() / 2 + 1;
        if bands == 0 || bands > bins - 1 {
            return Err(format!(
                "{bands} bands: a subframe of {} samples resolves 1 to {} bands",
                chunk / subframes,
                bins - 1
            ));
        }
        Ok(Self::new(sample_rate, chunk, subframes, bands))
    }

    /// Analysis of `chunk`-sample chunks at `sample_rate` into `subframes` × `bands` energies.
    ///
    /// Never panics: settings [`try_new`](Self::try_new) would refuse still give an analysis of
    /// `subframes · bands` values (bands beyond the transform's resolution share its last bin,
    /// subframes of no samples are silent; each setting is capped at [`MAX_CHUNK`]), so a caller
    /// that did not check them degrades instead of aborting.
    pub fn new(sample_rate: u32, chunk: usize, subframes: usize, bands: usize) -> Self {
        // Bounded so a careless caller's huge setting cannot overflow the transform's size or
        // the layout's length.
        let (chunk, subframes, bands) = (
            chunk.min(MAX_CHUNK),
            subframes.min(MAX_CHUNK),
            bands.min(MAX_CHUNK),
        );
        let part = chunk / subframes.max(1);
        let n = (2 * part).next_power_of_two();
        let bins = n / 2 + 1;
        let nyquist = sample_rate as f32 / 2.0;
        let (lo, hi) = (mel(40.0), mel(nyquist));
        let mut edges: Vec<usize> = (0..=bands)
            .map(|i| {
                let f = mel_inverse(lo + (hi - lo) * i as f32 / bands as f32);
                ((f / nyquist) * (bins - 1) as f32).round() as usize
            })
            .collect();
        // Every band gets at least one bin of its own.
        edges[0] = 1;
        for i in 1..edges.len() {
            edges[i] = edges[i].max(edges[i - 1].saturating_add(1));
        }
        if let Some(last) = edges.last_mut() {
            *last = bins;
        }
        // Each band's bins, kept inside the transform: where there are more bands than bins
        // (settings `try_new` refuses), the last bands share the last bin instead of running
        // past it.
        let ranges: Vec<(usize, usize)> = edges
            .windows(2)
            .map(|e| {
                let k0 = e[0].min(bins - 1);
                (k0, e[1].clamp(k0 + 1, bins))
            })
            .collect();
        let analysis_window: Vec<f32> = (0..part)
            .map(|i| 0.5 - 0.5 * (2.0 * PI * (i as f32 + 0.5) / part as f32).cos())
            .collect();
        let window_energy = analysis_window.iter().map(|w| w * w).sum();
        // Adjacent bins of a zero-padded, Hann-windowed transform are correlated: a band of `k`
        // bins holds about `k · part / (1.5 n)` independent measurements (at least one).
        let log_bias = ranges
            .iter()
            .map(|&(k0, k1)| {
                let k = ((k1 - k0) as f32 * part as f32 / (1.5 * n as f32)).max(1.0);
                if k <= 1.0 {
                    -0.577_215_7
                } else {
                    // ψ(k) − ln k, asymptotic series.
                    -1.0 / (2.0 * k) - 1.0 / (12.0 * k * k)
                }
            })
            .collect();
        Self {
            log_bias,
            chunk,
            subframes,
            part,
            bands,
            fft: Fft::new(n),
            ranges,
            analysis_window,
            window_energy,
        }
    }

    /// Values per chunk: `subframes · bands`.
    pub fn len(&self) -> usize {
        self.subframes * self.bands
    }

    /// Natural log of the mean power per bin of each band of each subframe, normalised so that
    /// white noise of variance `v` gives `ln v` in every band. A chunk of another length than
    /// the analysis was made for is read as if cut or padded with silence to that length.
    pub fn analyze(&self, chunk: &[f32]) -> Vec<f32> {
        let part = self.part;
        let n = self.fft.n;
        let mut out = Vec::with_capacity(self.len());
        let (mut re, mut im) = (vec![0.0; n], vec![0.0; n]);
        for s in 0..self.subframes {
            re.fill(0.0);
            im.fill(0.0);
            for (i, w) in self.analysis_window.iter().enumerate() {
                re[i] = chunk.get(s * part + i).copied().unwrap_or(0.0) * w;
            }
            self.fft.run(&mut re, &mut im, false);
            for b in 0..self.bands {
                let (k0, k1) = self.ranges[b];
                let power: f32 = (k0..k1).map(|k| re[k] * re[k] + im[k] * im[k]).sum();
                let mean = power / (k1 - k0) as f32 / self.window_energy;
                out.push(mean.max(FLOOR).ln());
            }
        }
        out
    }
}

/// Turns band spectra back into a continuous stream of samples.
#[derive(Clone, Debug)]
pub struct NoiseSynth {
    spectrum: BandSpectrum,
    window: Vec<f32>,
    /// Second half of the previous block, added to the first half of the next one.
    tail: Vec<f32>,
}

impl NoiseSynth {
    /// A synthesiser for `spectrum`'s layout, starting silent.
    pub fn new(spectrum: BandSpectrum) -> Self {
        let part = spectrum.part;
        let window = (0..2 * part)
            .map(|i| (PI * (i as f32 + 0.5) / (2 * part) as f32).sin())
            .collect();
        Self {
            tail: vec![0.0; part],
            spectrum,
            window,
        }
    }

    /// The samples still waiting in the overlap (part of the synthesiser's state).
    pub fn tail(&self) -> &[f32] {
        &self.tail
    }

    /// Restores the overlap saved with [`tail`](Self::tail).
    pub fn set_tail(&mut self, tail: &[f32]) {
        if tail.len() == self.tail.len() {
            self.tail.copy_from_slice(tail);
        }
    }

    /// One chunk of noise whose band energies follow `log_energies` (as from
    /// [`BandSpectrum::analyze`]); `noise` supplies standard-normal samples. Bands missing from a
    /// too short `log_energies` are silent; extra values are ignored.
    pub fn synthesize(&mut self, log_energies: &[f32], mut noise: impl FnMut() -> f32) -> Vec<f32> {
        let sp = &self.spectrum;
        let part = sp.part;
        let block = 2 * part;
        let n = sp.fft.n;
        let mut out = Vec::with_capacity(sp.chunk);
        let (mut re, mut im) = (vec![0.0; n], vec![0.0; n]);
        let mut gain = vec![0.0f32; n / 2 + 1];
        for s in 0..sp.subframes {
            for b in 0..sp.bands {
                let log_energy = log_energies
                    .get(s * sp.bands + b)
                    .copied()
                    .unwrap_or(f32::NEG_INFINITY);
                let log_variance = log_energy - sp.log_bias[b];
                let variance = log_variance.clamp(-30.0, 10.0).exp();
                let (k0, k1) = sp.ranges[b];
                for g in &mut gain[k0..k1] {
                    *g = variance.sqrt();
                }
            }
            re.fill(0.0);
            im.fill(0.0);
            for v in re.iter_mut().take(block) {
                *v = noise();
            }
            sp.fft.run(&mut re, &mut im, false);
            for k in 0..=n / 2 {
                re[k] *= gain[k];
                im[k] *= gain[k];
                if k > 0 && k < n / 2 {
                    re[n - k] = re[k];
                    im[n - k] = -im[k];
                }
            }
            sp.fft.run(&mut re, &mut im, true);
            // White noise of unit variance over `block` samples, spread over `n` bins: rescale
            // so the output's variance equals the band's energy.
            let scale = (n as f32 / block as f32).sqrt();
            for i in 0..part {
                out.push(self.tail[i] + re[i] * self.window[i] * scale);
                self.tail[i] = re[part + i] * self.window[part + i] * scale;
            }
        }
        out
    }
}

/// Mean absolute difference of two log-energy spectra, in decibels.
pub fn log_spectral_distance_db(a: &[f32], b: &[f32]) -> f32 {
    let to_db = 10.0 / std::f32::consts::LN_10;
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() * to_db)
        .sum::<f32>()
        / a.len().max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(mut state: u64) -> impl FnMut() -> f32 {
        move || {
            // Box-Muller from a xorshift generator.
            let mut u = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 11) as f64 / (1u64 << 53) as f64).max(1e-12) as f32
            };
            let (a, b) = (u(), u());
            (-2.0 * a.ln()).sqrt() * (2.0 * PI * b).cos()
        }
    }

    #[test]
    fn fft_matches_a_direct_dft() {
        let n = 16;
        let x: Vec<f32> = (0..n).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        let (mut re, mut im) = (x.clone(), vec![0.0; n]);
        Fft::new(n).run(&mut re, &mut im, false);
        for k in 0..n {
            let (mut r, mut i) = (0.0, 0.0);
            for (t, v) in x.iter().enumerate() {
                let a = -2.0 * PI * (k * t) as f32 / n as f32;
                r += v * a.cos();
                i += v * a.sin();
            }
            assert!((re[k] - r).abs() < 1e-3 && (im[k] - i).abs() < 1e-3);
        }
        Fft::new(n).run(&mut re, &mut im, true);
        for (a, b) in re.iter().zip(&x) {
            assert!((a - b).abs() < 1e-4);
        }
    }

    #[test]
    fn bands_tile_the_spectrum_and_odd_settings_do_not_panic() {
        // A valid layout: contiguous bands of at least one bin from bin 1 to the last bin.
        let sp = BandSpectrum::try_new(16_000, 800, 4, 24).unwrap();
        assert_eq!(sp.ranges[0].0, 1);
        assert_eq!(sp.ranges[23].1, sp.fft.n / 2 + 1);
        assert!(sp.ranges.windows(2).all(|r| r[0].1 == r[1].0));
        assert!(sp.ranges.iter().all(|&(k0, k1)| k1 > k0));

        // Settings `try_new` refuses, each with the setting named.
        for (rate, chunk, subframes, bands, expected) in [
            (0, 800, 4, 24, "sample rate"),
            (16_000, 0, 4, 24, "0 samples"),
            (16_000, 800, 0, 24, "0 subframes"),
            (16_000, 800, 3, 24, "3 subframes"),
            (16_000, 8, 8, 1, "8 subframes"),
            (16_000, 800, 4, 0, "0 bands"),
            (16_000, 800, 4, 257, "257 bands"),
            (16_000, usize::MAX, 4, 24, "outside"),
        ] {
            let err = BandSpectrum::try_new(rate, chunk, subframes, bands).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
        // ... and `new` still builds them, analyses any chunk and synthesises without panicking.
        for (rate, chunk, subframes, bands) in [
            (0, 800, 4, 24),
            (16_000, 0, 4, 24),
            (16_000, 800, 0, 24),
            (16_000, 8, 8, 3),
            (16_000, 800, 4, 0),
            (16_000, 800, 4, 5000),
            (16_000, 64, 4, 1000),
        ] {
            let sp = BandSpectrum::new(rate, chunk, subframes, bands);
            for samples in [0, 7, chunk, chunk + 9] {
                let e = sp.analyze(&vec![0.25; samples]);
                assert_eq!(e.len(), sp.len());
                assert!(e.iter().all(|v| v.is_finite()), "{e:?}");
            }
            let mut synth = NoiseSynth::new(sp.clone());
            let mut noise = rng(1);
            for energies in [vec![], vec![-3.0; sp.len()], vec![-3.0; sp.len() + 3]] {
                let out = synth.synthesize(&energies, &mut noise);
                assert!(out.iter().all(|v| v.is_finite()));
            }
        }
        // A short chunk is analysed as if padded with silence.
        let sp = BandSpectrum::try_new(16_000, 800, 4, 24).unwrap();
        let mut padded = vec![0.5; 500];
        assert_eq!(sp.analyze(&padded), {
            padded.resize(800, 0.0);
            sp.analyze(&padded)
        });
    }

    #[test]
    fn white_noise_analyses_to_its_variance_and_synthesis_round_trips() {
        let sp = BandSpectrum::new(16_000, 800, 4, 24);
        let mut noise = rng(7);
        let mut mean = vec![0.0; sp.len()];
        let chunks = 200;
        for _ in 0..chunks {
            let chunk: Vec<f32> = (0..800).map(|_| noise() * 0.5).collect();
            for (m, v) in mean.iter_mut().zip(sp.analyze(&chunk)) {
                *m += v / chunks as f32;
            }
        }
        // Analysis of noise of variance 0.25 gives ln 0.25 plus the known per-band bias.
        for b in 0..24 {
            let avg = (0..4).map(|s| mean[s * 24 + b]).sum::<f32>() / 4.0;
            let expected = 0.25f32.ln() + sp.log_bias[b];
            assert!(
                (avg - expected).abs() < 0.35,
                "band {b}: {avg} vs {expected}"
            );
        }

        // A shaped spectrum survives synthesis then analysis within a few dB on average.
        let target: Vec<f32> = (0..sp.len())
            .map(|i| -6.0 + (i % 24) as f32 * 0.2)
            .collect();
        let mut synth = NoiseSynth::new(sp.clone());
        let mut noise = rng(3);
        let mut got = vec![0.0; sp.len()];
        for _ in 0..chunks {
            let out = synth.synthesize(&target, &mut noise);
            for (m, v) in got.iter_mut().zip(sp.analyze(&out)) {
                *m += v / chunks as f32;
            }
        }
        let lsd = log_spectral_distance_db(&target, &got);
        assert!(lsd < 1.5, "round-trip log-spectral distance {lsd} dB");
    }
}
