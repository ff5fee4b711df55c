//! Weather, storms, lightning, snow cover and the displayed time of day. Everything follows the
//! director's controls smoothly (a few seconds), so changes are visible but never jump.

use super::Weather;
use crate::error::Result;
use crate::rng::SplitMix64;
use crate::state_codec::{StateReader as Reader, StateWriter as Writer};

/// How long a storm lasts after the `storm` trigger, seconds.
pub const STORM_SECONDS: f32 = 45.0;
const MAX_THUNDER: usize = 8;

/// The evolving state of the sky and weather.
#[derive(Clone, Debug, PartialEq)]
pub struct WeatherState {
    /// Cloud cover, 0 (clear) to 1 (overcast).
    pub cloud: f32,
    /// Rain intensity, 0 to 1.
    pub rain: f32,
    /// Snowfall intensity, 0 to 1.
    pub snow: f32,
    /// Fog thickness, 0 to 1.
    pub fog: f32,
    /// Storm intensity, 0 to 1.
    pub storm: f32,
    /// Seconds of storm left.
    pub storm_time: f32,
    /// Brightness of the current lightning flash, 0 to 1.
    pub flash: f32,
    /// Wind strength, 0 to 1.
    pub wind: f32,
    /// How white the ground is from fallen snow, 0 to 1.
    pub snow_cover: f32,
    /// How wet the ground is, 0 to 1.
    pub wetness: f32,
    /// Displayed time of day in hours, following the control smoothly.
    pub time_of_day: f32,
    /// Cloud drift, metres (x, z).
    pub cloud_offset: [f32; 2],
    /// Pending thunder: (seconds until it is heard, loudness).
    pub thunder: Vec<(f32, f32)>,
}

impl WeatherState {
    /// The state at the start of a session, already settled on `weather` at `time_of_day`.
    pub fn settled(weather: Weather, time_of_day: f32) -> Self {
        let t = targets(weather, 0.0);
        Self {
            cloud: t.cloud,
            rain: t.rain,
            snow: t.snow,
            fog: t.fog,
            storm: 0.0,
            storm_time: 0.0,
            flash: 0.0,
            wind: t.wind,
            snow_cover: if weather == Weather::Snow { 0.6 } else { 0.0 },
            wetness: if weather == Weather::Rain { 0.8 } else { 0.0 },
            time_of_day: time_of_day.rem_euclid(24.0),
            cloud_offset: [0.0, 0.0],
            thunder: Vec::new(),
        }
    }

    /// Advances by `dt` seconds toward the controls. Returns the loudness of thunder claps that
    /// become audible during this step.
    pub fn step(
        &mut self,
        weather: Weather,
        time_target: f32,
        storm_trigger: bool,
        rng: &mut SplitMix64,
        dt: f32,
    ) -> Vec<f32> {
        let mut heard = Vec::new();
        if storm_trigger {
            self.storm_time = STORM_SECONDS;
            self.flash = 1.0;
            self.push_thunder(0.3, 1.0);
        }
        if self.storm_time > 0.0 {
            self.storm_time = (self.storm_time - dt).max(0.0);
        }
        let storm_target = if self.storm_time > 0.0 { 1.0 } else { 0.0 };
        approach(
            &mut self.storm,
            storm_target,
            dt,
            if storm_target > 0.0 { 1.5 } else { 6.0 },
        );

        let t = targets(weather, self.storm);
        approach(&mut self.cloud, t.cloud, dt, 3.0);
        approach(&mut self.rain, t.rain, dt, 2.5);
        approach(&mut self.snow, t.snow, dt, 3.0);
        approach(&mut self.fog, t.fog, dt, 3.0);
        approach(&mut self.wind, t.wind, dt, 2.0);

        // Lightning during storms.
        self.flash *= 0.55;
        if self.flash < 0.01 {
            self.flash = 0.0;
        }
        if self.storm > 0.3 && self.rain.max(self.snow) > 0.2 && rng.chance(0.012 * self.storm) {
            self.flash = rng.range(0.6, 1.0);
            let delay = rng.range(0.4, 3.5);
            self.push_thunder(delay, (1.3 - delay * 0.25).clamp(0.3, 1.0));
        } else if self.flash > 0.25 && rng.chance(0.25) {
            // A flicker as the bolt re-strikes.
            self.flash = (self.flash * 1.8).min(1.0);
        }
        for th in &mut self.thunder {
            th.0 -= dt;
            if th.0 <= 0.0 {
                heard.push(th.1);
            }
        }
        self.thunder.retain(|th| th.0 > 0.0);

        // Ground: snow accumulates while it snows and melts slowly; rain wets it.
        if self.snow > 0.3 {
            self.snow_cover = (self.snow_cover + dt / 25.0 * self.snow).min(1.0);
        } else {
            self.snow_cover = (self.snow_cover - dt / 40.0).max(0.0);
        }
        if self.rain > 0.3 {
            self.wetness = (self.wetness + dt / 8.0 * self.rain).min(1.0);
        } else {
            self.wetness = (self.wetness - dt / 45.0).max(0.0);
        }

        // Time of day moves along the shorter way round the clock.
        let target = time_target.rem_euclid(24.0);
        let mut diff = target - self.time_of_day;
        if diff > 12.0 {
            diff -= 24.0;
        } else if diff < -12.0 {
            diff += 24.0;
        }
        if diff.abs() < 0.01 {
            self.time_of_day = target;
        } else {
            let k = 1.0 - (-dt / 0.8f32).exp();
            self.time_of_day = (self.time_of_day + diff * k).rem_euclid(24.0);
        }

        let drift = 3.0 + 12.0 * self.wind;
        self.cloud_offset[0] = (self.cloud_offset[0] + drift * dt).rem_euclid(100_000.0);
        self.cloud_offset[1] = (self.cloud_offset[1] + drift * 0.4 * dt).rem_euclid(100_000.0);
        heard
    }

    fn push_thunder(&mut self, delay: f32, loudness: f32) {
        if self.thunder.len() >= MAX_THUNDER {
            self.thunder.remove(0);
        }
        self.thunder.push((delay, loudness));
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        for v in [
            self.cloud,
            self.rain,
            self.snow,
            self.fog,
            self.storm,
            self.storm_time,
            self.flash,
            self.wind,
            self.snow_cover,
            self.wetness,
            self.time_of_day,
            self.cloud_offset[0],
            self.cloud_offset[1],
        ] {
            w.f32(v);
        }
        w.u32(self.thunder.len() as u32);
        for (d, l) in &self.thunder {
            w.f32(*d);
            w.f32(*l);
        }
    }

    pub(crate) fn read(r: &mut Reader) -> Result<Self> {
        let mut v = [0.0f32; 13];
        for x in &mut v {
            *x = r.f32()?;
        }
        let n = r.len(MAX_THUNDER)?;
        let mut thunder = Vec::with_capacity(n);
        for _ in 0..n {
            thunder.push((r.f32()?, r.f32()?));
        }
        let values = v.iter().chain(thunder.iter().flat_map(|(a, b)| [a, b]));
        if let Some(bad) = values.into_iter().find(|x| x.is_nan() || x.abs() > 1e6) {
            return Err(r.error(format!("weather value {bad} is not a plausible number")));
        }
        Ok(Self {
            cloud: v[0],
            rain: v[1],
            snow: v[2],
            fog: v[3],
            storm: v[4],
            storm_time: v[5],
            flash: v[6],
            wind: v[7],
            snow_cover: v[8],
            wetness: v[9],
            time_of_day: v[10],
            cloud_offset: [v[11], v[12]],
            thunder,
        })
    }
}

struct Targets {
    cloud: f32,
    rain: f32,
    snow: f32,
    fog: f32,
    wind: f32,
}

fn targets(weather: Weather, storm: f32) -> Targets {
    let mut t = match weather {
        Weather::Clear => Targets {
            cloud: 0.15,
            rain: 0.0,
            snow: 0.0,
            fog: 0.0,
            wind: 0.2,
        },
        Weather::Overcast => Targets {
            cloud: 1.0,
            rain: 0.0,
            snow: 0.0,
            fog: 0.05,
            wind: 0.35,
        },
        Weather::Rain => Targets {
            cloud: 1.0,
            rain: 1.0,
            snow: 0.0,
            fog: 0.15,
            wind: 0.45,
        },
        Weather::Snow => Targets {
            cloud: 0.9,
            rain: 0.0,
            snow: 1.0,
            fog: 0.2,
            wind: 0.35,
        },
        Weather::Fog => Targets {
            cloud: 0.6,
            rain: 0.0,
            snow: 0.0,
            fog: 1.0,
            wind: 0.1,
        },
    };
    // A storm brings heavy rain (a blizzard when it snows), full cloud and strong wind.
    t.cloud = t.cloud + (1.0 - t.cloud) * storm;
    if weather == Weather::Snow {
        t.snow = t.snow.max(storm);
    } else {
        t.rain = t.rain.max(storm);
    }
    t.wind = t.wind + (1.0 - t.wind) * storm;
    t.fog *= 1.0 - 0.5 * storm;
    t
}

/// Moves `x` toward `target` with time constant `tau` seconds.
fn approach(x: &mut f32, target: f32, dt: f32, tau: f32) {
    let k = 1.0 - (-dt / tau).exp();
    *x += (target - *x) * k;
    if (*x - target).abs() < 1e-4 {
        *x = target;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weather_changes_smoothly_and_storm_flashes() {
        let mut w = WeatherState::settled(Weather::Clear, 12.0);
        let mut rng = SplitMix64::hashed(1);
        let first = w.step(Weather::Rain, 12.0, false, &mut rng, 0.05);
        assert!(first.is_empty());
        assert!(w.rain > 0.0 && w.rain < 0.1, "{}", w.rain);
        for _ in 0..200 {
            w.step(Weather::Rain, 12.0, false, &mut rng, 0.05);
        }
        assert!(w.rain > 0.95);
        w.step(Weather::Rain, 12.0, true, &mut rng, 0.05);
        assert!(w.flash > 0.5 && w.storm_time > 40.0);
        let mut heard = 0;
        for _ in 0..20 {
            heard += w.step(Weather::Rain, 12.0, false, &mut rng, 0.05).len();
        }
        assert!(heard >= 1);
    }

    #[test]
    fn time_takes_the_short_way_round() {
        let mut w = WeatherState::settled(Weather::Clear, 23.0);
        let mut rng = SplitMix64::hashed(1);
        w.step(Weather::Clear, 1.0, false, &mut rng, 0.05);
        assert!(w.time_of_day > 23.0, "{}", w.time_of_day);
        for _ in 0..200 {
            w.step(Weather::Clear, 1.0, false, &mut rng, 0.05);
        }
        assert_eq!(w.time_of_day, 1.0);
    }
}
