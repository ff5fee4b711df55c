//! The sky and the light it gives: the sun's and moon's path through the day, sky colours from
//! dawn to night, stars, drifting clouds, and the fog colour that joins the land to the sky.

use super::noise::{TileNoise, hash2, unit};
use super::weather::WeatherState;

/// Lighting and sky colours for one frame (colours linear-ish, 0..1 display space).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lighting {
    /// Unit vector toward the sun.
    pub sun_dir: [f32; 3],
    /// Unit vector toward the moon.
    pub moon_dir: [f32; 3],
    /// Direct light from the sun and moon together (colour times intensity).
    pub direct: [f32; 3],
    /// Unit vector of the main direct light (sun by day, moon by night).
    pub light_dir: [f32; 3],
    /// Light from the whole sky.
    pub ambient: [f32; 3],
    /// Sky colour straight up.
    pub zenith: [f32; 3],
    /// Sky colour at the horizon.
    pub horizon: [f32; 3],
    /// Colour distant things fade into.
    pub fog_color: [f32; 3],
    /// Fog density per metre.
    pub fog_density: f32,
    /// 1 by day, 0 at night.
    pub daylight: f32,
    /// Sun intensity including clouds (0..1).
    pub sun_strength: f32,
    /// How visible the stars and moon are (0..1).
    pub night_sky: f32,
    /// Cloud cover 0..1.
    pub cloud: f32,
    /// Lit cloud colour.
    pub cloud_light: [f32; 3],
    /// Shadowed cloud colour.
    pub cloud_dark: [f32; 3],
    /// How strongly lit windows and runes glow (0 by day).
    pub glow: f32,
    /// Lightning flash 0..1.
    pub flash: f32,
    /// Cloud drift offset, metres.
    pub cloud_offset: [f32; 2],
}

fn smoothstep(a: f32, b: f32, x: f32) -> f32 {
    let t = ((x - a) / (b - a)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn scale(a: [f32; 3], s: f32) -> [f32; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}

fn add(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

/// Unit vector toward the sun at `hours` (sunrise in the east (+x) at 6, highest at 12 toward
/// +z at 55 degrees, sunset in the west at 18).
pub fn sun_direction(hours: f32) -> [f32; 3] {
    let theta = (hours - 6.0) / 24.0 * std::f32::consts::TAU;
    let tilt = 35f32.to_radians();
    [
        theta.cos(),
        theta.sin() * tilt.cos(),
        theta.sin() * tilt.sin(),
    ]
}

impl Lighting {
    /// Lighting for a weather state (which carries the displayed time of day).
    pub fn new(w: &WeatherState) -> Self {
        let sun = sun_direction(w.time_of_day);
        let moon = [-sun[0] * 0.9, -sun[1], -sun[2] * 0.9 + 0.25];
        let ml = (moon[0] * moon[0] + moon[1] * moon[1] + moon[2] * moon[2]).sqrt();
        let moon = [moon[0] / ml, moon[1] / ml, moon[2] / ml];
        let daylight = smoothstep(-0.2, 0.25, sun[1]);
        let twilight = (-(sun[1] / 0.14).powi(2)).exp() * smoothstep(-0.3, -0.05, sun[1]).max(0.3);
        let cloud = w.cloud;
        let storm_dark = 1.0 - 0.5 * w.storm;

        let mut zenith = mix([0.02, 0.03, 0.075], [0.20, 0.40, 0.80], daylight);
        let mut horizon = mix([0.05, 0.065, 0.12], [0.64, 0.76, 0.90], daylight);
        zenith = mix(zenith, [0.26, 0.28, 0.52], twilight * 0.45);
        horizon = mix(horizon, [1.0, 0.55, 0.30], twilight * 0.75);
        let grey = add(
            scale([0.60, 0.62, 0.66], daylight),
            scale([0.03, 0.034, 0.042], 1.0 - daylight),
        );
        let grey_h = add(
            scale([0.68, 0.69, 0.71], daylight),
            scale([0.035, 0.04, 0.05], 1.0 - daylight),
        );
        zenith = scale(mix(zenith, grey, cloud * 0.85), storm_dark);
        horizon = scale(
            mix(horizon, mix(grey_h, horizon, twilight * 0.3), cloud * 0.8),
            storm_dark,
        );

        let sun_vis = smoothstep(-0.04, 0.12, sun[1]);
        let sun_strength = sun_vis * (1.0 - 0.8 * cloud) * storm_dark;
        let sun_col = mix(
            [1.0, 0.55, 0.28],
            [1.0, 0.95, 0.86],
            smoothstep(0.05, 0.45, sun[1]),
        );
        let moon_vis = smoothstep(-0.02, 0.2, moon[1]) * (1.0 - daylight) * (1.0 - 0.75 * cloud);
        let moon_col = [0.19, 0.23, 0.33];
        let direct = add(
            scale(sun_col, 0.95 * sun_strength),
            scale(moon_col, moon_vis),
        );
        let light_dir = if sun[1] > -0.05 { sun } else { moon };

        let mut ambient = mix([0.10, 0.12, 0.20], [0.40, 0.44, 0.52], daylight);
        ambient = mix(ambient, [0.45, 0.32, 0.28], twilight * 0.35);
        ambient = scale(ambient, (1.0 + 0.35 * cloud * daylight) * storm_dark);

        let fog_density = 0.0032 + 0.045 * w.fog + 0.006 * w.rain + 0.010 * w.snow + 0.002 * cloud;
        let fog_grey = add(
            scale([0.70, 0.71, 0.73], daylight),
            scale([0.045, 0.05, 0.06], 1.0 - daylight),
        );
        let fog_color = scale(
            mix(horizon, fog_grey, w.fog * 0.8),
            1.0 - 0.3 * w.fog * w.storm,
        );
        let zenith = mix(zenith, fog_color, w.fog * 0.75);
        let horizon = mix(horizon, fog_color, w.fog);

        let cloud_light = add(
            scale(
                mix([0.95, 0.95, 0.97], [1.0, 0.72, 0.55], twilight * 0.7),
                0.9 * daylight * storm_dark,
            ),
            [0.05, 0.055, 0.07],
        );
        let cloud_dark = add(
            scale([0.48, 0.50, 0.55], daylight * storm_dark),
            [0.03, 0.035, 0.045],
        );
        let flash = w.flash;
        let flash_light = [0.7 * flash, 0.75 * flash, 0.9 * flash];
        Lighting {
            sun_dir: sun,
            moon_dir: moon,
            direct,
            light_dir,
            ambient: add(ambient, flash_light),
            zenith: add(zenith, scale(flash_light, 0.8)),
            horizon: add(horizon, scale(flash_light, 0.8)),
            fog_color: add(fog_color, scale(flash_light, 0.6)),
            fog_density,
            daylight,
            sun_strength,
            night_sky: (1.0 - daylight).powi(2) * (1.0 - cloud).max(0.0) * (1.0 - w.fog),
            cloud,
            cloud_light: add(cloud_light, flash_light),
            cloud_dark: add(cloud_dark, flash_light),
            glow: 1.0 - smoothstep(0.05, 0.6, daylight),
            flash,
            cloud_offset: w.cloud_offset,
        }
    }
}

/// The sky's precomputed parts: a tiling cloud texture.
#[derive(Clone, Debug)]
pub struct Sky {
    clouds: TileNoise,
}

impl Default for Sky {
    fn default() -> Self {
        Self::new()
    }
}

/// Height of the cloud layer above the camera, metres.
const CLOUD_HEIGHT: f32 = 900.0;
/// Metres per cloud texel.
const CLOUD_TEXEL: f32 = 14.0;

impl Sky {
    /// Builds the cloud texture.
    pub fn new() -> Self {
        Self {
            clouds: TileNoise::new(0xC10D, 256, 64, 5),
        }
    }

    /// Sky colour in unit direction `d` (y up) seen from `(cam_x, cam_z)`.
    #[inline]
    pub fn color(&self, d: [f32; 3], cam_x: f32, cam_z: f32, l: &Lighting) -> [f32; 3] {
        let elev = d[1];
        let t = smoothstep(-0.02, 0.55, elev);
        let mut c = mix(l.horizon, l.zenith, t);
        if elev <= 0.0 {
            return c;
        }
        // Sun: a soft glow and a bright disc.
        let cs = d[0] * l.sun_dir[0] + d[1] * l.sun_dir[1] + d[2] * l.sun_dir[2];
        let clear = 1.0 - 0.85 * l.cloud;
        if cs > 0.0 && l.sun_dir[1] > -0.1 {
            let g = cs * cs;
            let g = g * g * g * g;
            let glow =
                (0.30 * g + 0.25 * g * g * g * g) * clear * smoothstep(-0.1, 0.05, l.sun_dir[1]);
            c = add(c, scale([1.0, 0.85, 0.6], glow));
            if cs > 0.9990 {
                c = mix(c, [1.0, 0.97, 0.88], clear);
            }
        }
        // Moon and stars at night.
        if l.night_sky > 0.01 {
            let cm = d[0] * l.moon_dir[0] + d[1] * l.moon_dir[1] + d[2] * l.moon_dir[2];
            if cm > 0.9993 {
                c = mix(c, [0.86, 0.88, 0.92], l.night_sky.sqrt());
            } else if cm > 0.995 {
                c = add(c, scale([0.10, 0.11, 0.14], l.night_sky));
            }
            let qx = (d[0] * 90.0).floor() as i32;
            let qy = (d[1] * 90.0).floor() as i32;
            let qz = (d[2] * 90.0).floor() as i32;
            let h = hash2(hash2(7, qx, qy), qz, 3);
            if h.is_multiple_of(211) {
                let b = (0.4 + 0.6 * unit(h)) * l.night_sky * smoothstep(0.03, 0.2, elev);
                c = add(c, [b * 0.9, b * 0.9, b]);
            }
        }
        // Clouds on a flat layer above.
        let fade = smoothstep(0.015, 0.22, elev);
        if fade > 0.0 {
            let k = CLOUD_HEIGHT / elev;
            let u = (cam_x + d[0] * k + l.cloud_offset[0]) / CLOUD_TEXEL;
            let v = (cam_z + d[2] * k + l.cloud_offset[1]) / CLOUD_TEXEL;
            let n = self.clouds.sample(u, v);
            let threshold = 0.58 - 0.55 * l.cloud;
            let cover = smoothstep(threshold, threshold + 0.16, n) * fade;
            if cover > 0.0 {
                let thick = smoothstep(threshold, threshold + 0.45, n);
                let col = mix(l.cloud_light, l.cloud_dark, thick * (0.4 + 0.6 * l.cloud));
                c = mix(c, col, cover * (0.75 + 0.25 * l.cloud));
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::Weather;

    #[test]
    fn noon_is_brighter_than_night() {
        let noon = Lighting::new(&WeatherState::settled(Weather::Clear, 12.0));
        let night = Lighting::new(&WeatherState::settled(Weather::Clear, 0.0));
        let lum = |c: [f32; 3]| c[0] + c[1] + c[2];
        assert!(lum(noon.ambient) > 3.0 * lum(night.ambient));
        assert!(lum(noon.direct) > 3.0 * lum(night.direct));
        assert!(lum(noon.zenith) > 5.0 * lum(night.zenith));
        assert!(noon.sun_dir[1] > 0.5 && night.sun_dir[1] < -0.5);
        let dawn = sun_direction(6.0);
        assert!(dawn[0] > 0.99 && dawn[1].abs() < 1e-3);
    }
}
