//! Sound synthesised from the world state, one frame's chunk at a time: wind (rising with altitude
//! and storms), rain, footsteps by surface, water nearby, birds by day, insects at night, and
//! thunder after lightning. Mono, [`SAMPLE_RATE`], exactly
//! [`SAMPLES_PER_FRAME`] samples per frame.
//!
//! All randomness comes from the synthesiser's own generator, which is part of the saved state.

use super::terrain::Surface;
use super::{SAMPLE_RATE, SAMPLES_PER_FRAME};
use crate::error::Result;
use crate::state_codec::{StateReader as Reader, StateWriter as Writer};

const FS: f32 = SAMPLE_RATE as f32;
const TABLE: usize = 1024;
const MAX_STEPS: usize = 6;
const MAX_CHIRPS: usize = 4;
const MAX_THUNDER: usize = 4;

/// What the world sounds like during one frame.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SoundInput {
    /// Footsteps: (time within the frame 0..1, surface, loudness 0..1).
    pub footsteps: Vec<(f32, Surface, f32)>,
    /// A landing thump with its strength.
    pub landed: Option<f32>,
    /// Whether the player swims.
    pub swimming: bool,
    /// Eye height above sea level, metres.
    pub altitude: f32,
    /// How much water is around the player, 0..1.
    pub near_water: f32,
    /// 1 by day, 0 at night.
    pub daylight: f32,
    /// Rain 0..1.
    pub rain: f32,
    /// Snowfall 0..1.
    pub snow: f32,
    /// Storm 0..1.
    pub storm: f32,
    /// Wind 0..1.
    pub wind: f32,
    /// Share of vegetation (grass and forest) around the player, 0..1: birds and insects.
    pub vegetation: f32,
    /// Share of trees around the player, 0..1: more birds.
    pub trees: f32,
    /// Share of snow around the player, 0..1: fewer insects.
    pub cold: f32,
    /// Thunder claps heard this frame (loudness each).
    pub thunder: Vec<f32>,
}

/// Root-mean-square level of each source in the last chunk (for tests and meters).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stems {
    /// Wind.
    pub wind: f32,
    /// Rain.
    pub rain: f32,
    /// Footsteps and landings.
    pub footsteps: f32,
    /// Water nearby.
    pub water: f32,
    /// Birds.
    pub birds: f32,
    /// Insects.
    pub insects: f32,
    /// Thunder.
    pub thunder: f32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Step {
    delay: u32,
    age: u32,
    surface: u8,
    amp: f32,
    lp: f32,
    thump: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Chirp {
    delay: u32,
    age: u32,
    len: u32,
    f0: f32,
    sweep: f32,
    phase: f32,
    amp: f32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Thunder {
    age: u32,
    amp: f32,
    lp1: f32,
    lp2: f32,
}

/// The synthesiser's state (saved with the session).
#[derive(Clone, Debug, PartialEq)]
pub struct Synth {
    noise: u32,
    // Wind.
    wind_low: f32,
    wind_band: f32,
    wind_gain: f32,
    gust_phase: [f32; 2],
    // Rain.
    rain_lp: f32,
    rain_gain: f32,
    drop_env: f32,
    // Water.
    water_lp: f32,
    water_gain: f32,
    swell_phase: f32,
    // Birds and insects.
    bird_gain: f32,
    next_chirp: f32,
    cricket_phase: f32,
    cricket_pulse: f32,
    insect_gain: f32,
    steps: Vec<Step>,
    chirps: Vec<Chirp>,
    thunders: Vec<Thunder>,
    stems: Stems,
}

/// A sine table shared by all synthesisers.
#[derive(Clone, Debug)]
pub struct SineTable(Vec<f32>);

impl Default for SineTable {
    fn default() -> Self {
        Self::new()
    }
}

impl SineTable {
    /// Builds the table.
    pub fn new() -> Self {
        Self(
            (0..=TABLE)
                .map(|i| (i as f32 / TABLE as f32 * std::f32::consts::TAU).sin())
                .collect(),
        )
    }

    /// Sine of a phase given in cycles (any real; only the fraction matters).
    #[inline]
    pub fn sin(&self, cycles: f32) -> f32 {
        let p = (cycles - cycles.floor()) * TABLE as f32;
        let i = p as usize;
        let f = p - i as f32;
        let i = i.min(TABLE - 1);
        self.0[i] + (self.0[i + 1] - self.0[i]) * f
    }
}

impl Default for Synth {
    fn default() -> Self {
        Self::new(1)
    }
}

/// How far each source's gain moves toward its target per sample (a one-pole smoother with a
/// time constant of about 670 samples, 42 ms).
const K_SMOOTH: f32 = 0.0015;
/// Advance per sample of the two slow wind-gust oscillators, in cycles.
const GUST_RATES: [f32; 2] = [0.11 / FS, 0.29 / FS];

/// What each source heads for during one frame, worked out once from the frame's input.
struct Targets {
    /// Wind gain.
    wind: f32,
    /// Wind band-pass coefficient (from its centre frequency).
    wind_freq: f32,
    /// Rain gain.
    rain: f32,
    /// Water gain.
    water: f32,
    /// Bird gain.
    birds: f32,
    /// Insect gain.
    insects: f32,
    /// Bird phrases per second.
    chirp_rate: f32,
}

impl Targets {
    /// The targets for `input`: storms shelter the birds, rain and snow quieten the wildlife.
    fn new(input: &SoundInput) -> Self {
        let shelter = 1.0 - 0.5 * input.storm;
        let wind_t = (0.035
            + 0.10 * input.wind
            + 0.0025 * (input.altitude - 15.0).clamp(0.0, 60.0)
            + 0.12 * input.storm)
            .min(0.45);
        let rain_t = 0.22 * input.rain;
        let water_t = 0.3 * input.near_water + if input.swimming { 0.15 } else { 0.0 };
        let quiet = (1.0 - input.rain).max(0.0) * (1.0 - input.storm) * (1.0 - 0.7 * input.snow);
        let bird_t = 0.09 * input.daylight * quiet * (0.25 + 0.75 * input.vegetation) * shelter;
        let night = 1.0 - input.daylight;
        let insect_t =
            0.07 * night * night * quiet * (1.0 - input.cold) * (0.3 + 0.7 * input.vegetation);
        let chirp_rate = (0.8 + 3.0 * input.trees) * (bird_t / 0.09);
        let centre = 280.0 + 420.0 * input.wind + 200.0 * input.storm;
        let wf = 2.0 * (std::f32::consts::PI * centre / FS).sin();
        Self {
            wind: wind_t,
            wind_freq: wf,
            rain: rain_t,
            water: water_t,
            birds: bird_t,
            insects: insect_t,
            chirp_rate,
        }
    }
}

#[inline]
fn soft_clip(x: f32) -> f32 {
    let a = x.abs();
    if a < 0.6 {
        x
    } else {
        let e = a - 0.6;
        x.signum() * (0.6 + 0.4 * e / (0.4 + e))
    }
}

impl Synth {
    /// A synthesiser whose randomness starts from `seed`.
    pub fn new(seed: u32) -> Self {
        Self {
            noise: seed | 1,
            wind_low: 0.0,
            wind_band: 0.0,
            wind_gain: 0.0,
            gust_phase: [0.0, 0.37],
            rain_lp: 0.0,
            rain_gain: 0.0,
            drop_env: 0.0,
            water_lp: 0.0,
            water_gain: 0.0,
            swell_phase: 0.0,
            bird_gain: 0.0,
            next_chirp: 0.5,
            cricket_phase: 0.0,
            cricket_pulse: 0.0,
            insect_gain: 0.0,
            steps: Vec::new(),
            chirps: Vec::new(),
            thunders: Vec::new(),
            stems: Stems::default(),
        }
    }

    /// Levels of each source in the last chunk.
    pub fn stems(&self) -> Stems {
        self.stems
    }

    #[inline]
    fn white(&mut self) -> f32 {
        // xorshift32
        let mut x = self.noise;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.noise = x;
        (x as i32) as f32 * (1.0 / 2_147_483_648.0)
    }

    #[inline]
    fn uniform(&mut self) -> f32 {
        self.white() * 0.5 + 0.5
    }

    /// Generates one frame's chunk into `out` ([`SAMPLES_PER_FRAME`] samples in [-1, 1]).
    pub fn render(&mut self, input: &SoundInput, sine: &SineTable, out: &mut Vec<f32>) {
        out.clear();
        out.reserve(SAMPLES_PER_FRAME);
        let n = SAMPLES_PER_FRAME;
        self.queue_events(input, n);
        let t = Targets::new(input);
        self.schedule_chirps(&t, n);

        let mut acc = [0.0f32; 7];
        for _ in 0..n {
            // One white sample feeds every source; the sources run in this fixed order because
            // rain draws from the same generator that footsteps' crackle then reads.
            let white = self.white();
            let wind = self.wind(white, &t, sine);
            let rain = self.rain(white, t.rain);
            let water = self.water(white, t.water, sine);
            let birds = self.birds(t.birds, sine);
            let insects = self.insects(t.insects, sine);
            let steps = self.footsteps(white, sine);
            let thunder = self.thunder(white);

            let parts = [wind, rain, steps, water, birds, insects, thunder];
            let mut mix = 0.0;
            for (a, p) in acc.iter_mut().zip(parts) {
                *a += p * p;
                mix += p;
            }
            out.push(soft_clip(mix));
        }
        let rms = |e: f32| (e / n as f32).sqrt();
        self.stems = Stems {
            wind: rms(acc[0]),
            rain: rms(acc[1]),
            footsteps: rms(acc[2]),
            water: rms(acc[3]),
            birds: rms(acc[4]),
            insects: rms(acc[5]),
            thunder: rms(acc[6]),
        };
    }

    /// Starts this frame's new footsteps, landing thump and thunder claps (dropping the oldest
    /// when a list is full); `n` is the chunk length the footstep times are spread over.
    fn queue_events(&mut self, input: &SoundInput, n: usize) {
        for &(at, surface, loud) in &input.footsteps {
            if self.steps.len() >= MAX_STEPS {
                self.steps.remove(0);
            }
            self.steps.push(Step {
                delay: (at.clamp(0.0, 0.999) * n as f32) as u32,
                age: 0,
                surface: surface as u8,
                amp: loud,
                lp: 0.0,
                thump: false,
            });
        }
        if let Some(s) = input.landed {
            if self.steps.len() >= MAX_STEPS {
                self.steps.remove(0);
            }
            self.steps.push(Step {
                delay: 0,
                age: 0,
                surface: Surface::Rock as u8,
                amp: s,
                lp: 0.0,
                thump: true,
            });
        }
        for &loud in &input.thunder {
            if self.thunders.len() >= MAX_THUNDER {
                self.thunders.remove(0);
            }
            self.thunders.push(Thunder {
                age: 0,
                amp: loud,
                lp1: 0.0,
                lp2: 0.0,
            });
        }
    }

    /// Schedules this frame's bird chirps: a phrase of one to three repeats whenever the chirp
    /// clock runs out while birds are audible.
    fn schedule_chirps(&mut self, t: &Targets, n: usize) {
        self.next_chirp -= n as f32 / FS * t.chirp_rate.max(0.0);
        if t.birds > 0.002 && self.next_chirp <= 0.0 && self.chirps.len() < MAX_CHIRPS {
            self.next_chirp = 0.3 + self.uniform() * 1.4;
            let repeats = 1 + (self.uniform() * 3.0) as u32;
            let f0 = 2200.0 + 2300.0 * self.uniform();
            let sweep = (self.uniform() - 0.4) * 2500.0;
            let len = (0.05 + 0.1 * self.uniform()) * FS;
            let amp = 0.5 + 0.5 * self.uniform();
            for r in 0..repeats {
                if self.chirps.len() >= MAX_CHIRPS {
                    break;
                }
                let delay = (self.uniform() * n as f32 * 0.5) as u32 + r * (len as u32 + 600);
                self.chirps.push(Chirp {
                    delay,
                    age: 0,
                    len: len as u32,
                    f0,
                    sweep,
                    phase: 0.0,
                    amp,
                });
            }
        } else if self.next_chirp < 0.0 {
            self.next_chirp = 0.2;
        }
    }

    /// Wind: band-passed noise with slow gusts.
    #[inline]
    fn wind(&mut self, white: f32, t: &Targets, sine: &SineTable) -> f32 {
        self.gust_phase[0] = (self.gust_phase[0] + GUST_RATES[0]).fract();
        self.gust_phase[1] = (self.gust_phase[1] + GUST_RATES[1]).fract();
        let gust = 0.75 + 0.25 * sine.sin(self.gust_phase[0]) + 0.15 * sine.sin(self.gust_phase[1]);
        self.wind_gain += (t.wind - self.wind_gain) * K_SMOOTH;
        let high = white - self.wind_low - 0.5 * self.wind_band;
        self.wind_band += t.wind_freq * gust * high;
        self.wind_low += t.wind_freq * gust * self.wind_band;
        self.wind_band = self.wind_band.clamp(-4.0, 4.0);
        self.wind_low = self.wind_low.clamp(-4.0, 4.0);
        self.wind_band * self.wind_gain * gust * 1.8
    }

    /// Rain: broadband hiss with drops.
    #[inline]
    fn rain(&mut self, white: f32, target: f32) -> f32 {
        self.rain_gain += (target - self.rain_gain) * K_SMOOTH;
        let mut rain = 0.0;
        if self.rain_gain > 1e-4 {
            self.rain_lp += (white - self.rain_lp) * 0.35;
            let hiss = white - self.rain_lp * 0.6;
            if self.uniform() < 0.004 * (self.rain_gain / 0.22) {
                self.drop_env = 0.6 + 0.4 * self.uniform();
            }
            self.drop_env *= 0.985;
            rain = self.rain_gain * (hiss * 0.8 + white * self.drop_env * 1.2);
        }
        rain
    }

    /// Water: low, slowly swelling wash.
    #[inline]
    fn water(&mut self, white: f32, target: f32, sine: &SineTable) -> f32 {
        self.water_gain += (target - self.water_gain) * K_SMOOTH;
        let mut water = 0.0;
        if self.water_gain > 1e-4 {
            self.swell_phase = (self.swell_phase + 0.14 / FS).fract();
            self.water_lp += (white - self.water_lp) * 0.1;
            let swell = 0.55 + 0.45 * sine.sin(self.swell_phase);
            water = self.water_lp * self.water_gain * swell * 3.0;
        }
        water
    }

    /// Birds: the scheduled chirps, each a sine sweep under a half-sine envelope.
    #[inline]
    fn birds(&mut self, target: f32, sine: &SineTable) -> f32 {
        self.bird_gain += (target - self.bird_gain) * K_SMOOTH;
        let mut birds = 0.0;
        for c in &mut self.chirps {
            if c.delay > 0 {
                c.delay -= 1;
                continue;
            }
            let t = c.age as f32 / c.len.max(1) as f32;
            let freq = c.f0 + c.sweep * t;
            c.phase = (c.phase + freq / FS).fract();
            let env = sine.sin(t * 0.5);
            birds += sine.sin(c.phase) * env * c.amp;
            c.age += 1;
        }
        self.chirps.retain(|c| c.age < c.len);
        birds * self.bird_gain
    }

    /// Insects: a cricket's pulsed tone, three pulses per chirp.
    #[inline]
    fn insects(&mut self, target: f32, sine: &SineTable) -> f32 {
        self.insect_gain += (target - self.insect_gain) * K_SMOOTH;
        let mut insects = 0.0;
        if self.insect_gain > 1e-4 {
            self.cricket_phase = (self.cricket_phase + 4300.0 / FS).fract();
            self.cricket_pulse = (self.cricket_pulse + 1.6 / FS).fract();
            let p = self.cricket_pulse * 10.0;
            let gate = if p < 3.0 {
                sine.sin(p.fract() * 0.5).max(0.0)
            } else {
                0.0
            };
            insects = sine.sin(self.cricket_phase) * gate * self.insect_gain;
        }
        insects
    }

    /// Footsteps and landings: filtered noise bursts shaped by the surface, with a low thump
    /// on rock and for landings. Reads the noise generator's state for the crackle, so it must
    /// run after everything else that draws from it in the same sample.
    #[inline]
    fn footsteps(&mut self, white: f32, sine: &SineTable) -> f32 {
        let mut steps = 0.0;
        for s in &mut self.steps {
            if s.delay > 0 {
                s.delay -= 1;
                continue;
            }
            let t = s.age as f32 / FS;
            let (cut, tau, crackle, gain) = match s.surface {
                0 => (0.35, 0.035, 0.0, 0.55), // grass
                1 => (0.55, 0.045, 0.6, 0.6),  // leaves
                2 => (0.20, 0.06, 0.0, 0.6),   // sand
                3 => (0.45, 0.07, 0.8, 0.7),   // snow
                4 => (0.85, 0.012, 0.0, 0.75), // rock
                _ => (0.25, 0.11, 0.3, 0.7),   // water
            };
            let mut x = white;
            if crackle > 0.0 && self.noise & 7 == 0 {
                x *= 1.0 + 4.0 * crackle;
            }
            s.lp += (x - s.lp) * cut;
            let attack = (t / 0.003).min(1.0);
            let env = attack * (-t / tau).exp();
            let mut v = s.lp * env * gain * s.amp;
            if s.thump || s.surface == 4 {
                let thump_amp = if s.thump { 0.9 } else { 0.35 };
                v += sine.sin(t * if s.thump { 65.0 } else { 110.0 })
                    * (-t / 0.06).exp()
                    * thump_amp
                    * s.amp;
            }
            steps += v;
            s.age += 1;
        }
        self.steps
            .retain(|s| s.delay > 0 || s.age < (0.5 * FS) as u32);
        steps
    }

    /// Thunder: a deep rumble with a crack at the start.
    #[inline]
    fn thunder(&mut self, white: f32) -> f32 {
        let mut thunder = 0.0;
        for th in &mut self.thunders {
            let t = th.age as f32 / FS;
            th.lp1 += (white - th.lp1) * 0.02;
            th.lp2 += (th.lp1 - th.lp2) * 0.05;
            let env = (t / 0.08).min(1.0) * (-t / 1.6).exp();
            let crack = if t < 0.15 {
                white * (1.0 - t / 0.15) * 0.3
            } else {
                0.0
            };
            thunder += (th.lp2 * 9.0 + crack) * env * th.amp * 0.6;
            th.age += 1;
        }
        self.thunders.retain(|th| th.age < (6.0 * FS) as u32);
        thunder
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u32(self.noise);
        for v in [
            self.wind_low,
            self.wind_band,
            self.wind_gain,
            self.gust_phase[0],
            self.gust_phase[1],
            self.rain_lp,
            self.rain_gain,
            self.drop_env,
            self.water_lp,
            self.water_gain,
            self.swell_phase,
            self.bird_gain,
            self.next_chirp,
            self.cricket_phase,
            self.cricket_pulse,
            self.insect_gain,
        ] {
            w.f32(v);
        }
        w.u32(self.steps.len() as u32);
        for s in &self.steps {
            w.u32(s.delay);
            w.u32(s.age);
            w.u8(s.surface);
            w.f32(s.amp);
            w.f32(s.lp);
            w.bool(s.thump);
        }
        w.u32(self.chirps.len() as u32);
        for c in &self.chirps {
            w.u32(c.delay);
            w.u32(c.age);
            w.u32(c.len);
            w.f32(c.f0);
            w.f32(c.sweep);
            w.f32(c.phase);
            w.f32(c.amp);
        }
        w.u32(self.thunders.len() as u32);
        for t in &self.thunders {
            w.u32(t.age);
            w.f32(t.amp);
            w.f32(t.lp1);
            w.f32(t.lp2);
        }
    }

    pub(crate) fn read(r: &mut Reader) -> Result<Self> {
        let mut s = Synth::new(1);
        s.noise = r.u32()?;
        let mut v = [0.0f32; 16];
        for x in &mut v {
            *x = r.f32()?;
        }
        [
            s.wind_low,
            s.wind_band,
            s.wind_gain,
            s.gust_phase[0],
            s.gust_phase[1],
            s.rain_lp,
            s.rain_gain,
            s.drop_env,
            s.water_lp,
            s.water_gain,
            s.swell_phase,
            s.bird_gain,
            s.next_chirp,
            s.cricket_phase,
            s.cricket_pulse,
            s.insect_gain,
        ] = v;
        for _ in 0..r.len(MAX_STEPS)? {
            s.steps.push(Step {
                delay: r.u32()?,
                age: r.u32()?,
                surface: r.u8()?,
                amp: r.f32()?,
                lp: r.f32()?,
                thump: r.bool()?,
            });
        }
        for _ in 0..r.len(MAX_CHIRPS)? {
            s.chirps.push(Chirp {
                delay: r.u32()?,
                age: r.u32()?,
                len: r.u32()?,
                f0: r.f32()?,
                sweep: r.f32()?,
                phase: r.f32()?,
                amp: r.f32()?,
            });
        }
        for _ in 0..r.len(MAX_THUNDER)? {
            s.thunders.push(Thunder {
                age: r.u32()?,
                amp: r.f32()?,
                lp1: r.f32()?,
                lp2: r.f32()?,
            });
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `frames` chunks; returns the synth, all samples and the loudest level of each stem.
    fn run(input: &SoundInput, frames: usize) -> (Synth, Vec<f32>, Stems) {
        let table = SineTable::new();
        let mut s = Synth::new(9);
        let mut all = Vec::new();
        let mut buf = Vec::new();
        let mut peak = Stems::default();
        for _ in 0..frames {
            s.render(input, &table, &mut buf);
            assert_eq!(buf.len(), SAMPLES_PER_FRAME);
            all.extend_from_slice(&buf);
            let st = s.stems();
            peak.birds = peak.birds.max(st.birds);
            peak.insects = peak.insects.max(st.insects);
            peak.rain = peak.rain.max(st.rain);
        }
        (s, all, peak)
    }

    #[test]
    fn chunks_are_bounded_and_sources_respond() {
        let calm = SoundInput {
            daylight: 1.0,
            vegetation: 1.0,
            trees: 1.0,
            ..Default::default()
        };
        let (_, all, peak) = run(&calm, 60);
        assert!(all.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
        assert!(peak.birds > 0.005, "{peak:?}");
        assert_eq!(peak.rain, 0.0);
        let night = SoundInput {
            daylight: 0.0,
            vegetation: 1.0,
            ..Default::default()
        };
        let (_, _, peak) = run(&night, 60);
        assert!(peak.insects > 0.005 && peak.birds == 0.0, "{peak:?}");
    }

    #[test]
    fn state_roundtrips() {
        let input = SoundInput {
            rain: 1.0,
            daylight: 1.0,
            footsteps: vec![(0.5, Surface::Snow, 1.0)],
            thunder: vec![1.0],
            ..Default::default()
        };
        let (s, _, _) = run(&input, 3);
        let mut w = Writer::new(b"");
        s.write(&mut w);
        let bytes = w.finish();
        let (mut r, _) = Reader::open(&bytes, "synthesiser", &[b""]).unwrap();
        let back = Synth::read(&mut r).unwrap();
        r.finish().unwrap();
        assert_eq!(
            back,
            Synth {
                stems: back.stems,
                ..s.clone()
            }
        );
    }
}
