//! The software renderer: a heightmap column ray caster ("voxel space") that marches each screen
//! column front to back over the cached terrain and fills vertical spans, with pitch as a horizon
//! shift; depth-tested billboard sprites for objects; a sky with sun, moon, stars and clouds;
//! distance fog; and rain, snow and lightning on top. Single-threaded and deterministic.

use super::noise::{ceil_i, floor_i, hash2, hash3, unit};
use super::player::Camera;
use super::sky::{Lighting, Sky};
use super::sprites::{ALPHA_EMISSIVE, SpriteKind, Sprites};
use super::terrain::{CHUNK_M, MIP_LEVELS, Object, Terrain, WATER_LEVEL, chunk_of, visible_chunks};
use super::weather::WeatherState;

/// Distance at which terrain disappears into the fog, metres.
pub const FAR: f32 = 320.0;
/// Distance beyond which small objects (not landmarks) are not drawn, metres.
pub const SPRITE_FAR: f32 = 190.0;
/// Half the horizontal field of view (90 degrees in all).
pub const HALF_FOV: f32 = std::f32::consts::FRAC_PI_4;
const NEAR: f32 = 0.35;
/// Ground speckle fades out by this distance, metres.
const DETAIL_FAR: f32 = 24.0;

/// The pictures a renderer needs, shared by all sessions of a model.
#[derive(Clone, Debug, Default)]
pub struct RenderAssets {
    /// Sky (clouds).
    pub sky: Sky,
    /// Object pictures.
    pub sprites: Sprites,
}

/// Everything one frame shows.
pub struct Scene<'a> {
    /// The eye.
    pub camera: Camera,
    /// Light and sky colours.
    pub lighting: &'a Lighting,
    /// Weather (rain, snow, wetness, snow cover).
    pub weather: &'a WeatherState,
    /// The land (chunks around the camera must be prepared).
    pub terrain: &'a Terrain,
    /// Objects not in the terrain (landmarks placed by the director).
    pub extra_objects: &'a [Object],
    /// Seconds since the session started (animates water and snow).
    pub time: f32,
    /// Frame number (varies rain streaks).
    pub frame: u64,
    /// Per-session seed for effects.
    pub seed: u32,
}

/// A renderer for one resolution; keeps its scratch buffers between frames.
#[derive(Clone, Debug)]
pub struct Renderer {
    w: usize,
    h: usize,
    depth: Vec<f32>,
    top: Vec<usize>,
    draw: Vec<(f32, Object)>,
}

#[inline]
fn smoothstep(a: f32, b: f32, x: f32) -> f32 {
    let t = ((x - a) / (b - a)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

#[inline]
fn to8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
}

#[inline]
fn put(out: &mut [u8], i: usize, c: [f32; 3]) {
    let p = &mut out[i * 4..i * 4 + 4];
    p[0] = to8(c[0]);
    p[1] = to8(c[1]);
    p[2] = to8(c[2]);
    p[3] = 255;
}

impl Renderer {
    /// A renderer for `width`×`height` frames (each at least 1).
    pub fn new(width: u32, height: u32) -> Self {
        let (w, h) = (width.max(1) as usize, height.max(1) as usize);
        Self {
            w,
            h,
            depth: vec![f32::INFINITY; w * h],
            top: vec![0; w],
            draw: Vec::new(),
        }
    }

    /// Focal length in pixels.
    pub fn focal(&self) -> f32 {
        self.w as f32 * 0.5
    }

    /// Draws `scene` into `out` (RGBA8, `width * height * 4` bytes).
    pub fn render(&mut self, scene: &Scene, assets: &RenderAssets, out: &mut [u8]) {
        assert_eq!(out.len(), self.w * self.h * 4, "output buffer size");
        self.depth.fill(f32::INFINITY);
        self.terrain(scene, out);
        self.sky(scene, &assets.sky, out);
        self.sprites(scene, &assets.sprites, out);
        self.precipitation(scene, out);
    }

    #[inline(never)]
    fn terrain(&mut self, scene: &Scene, out: &mut [u8]) {
        let (w, h) = (self.w, self.h);
        let f = self.focal();
        let cam = scene.camera;
        let l = scene.lighting;
        let ws = scene.weather;
        let horizon = h as f32 * 0.5 + f * cam.pitch.tan();
        let (sy, cy) = cam.yaw.sin_cos();
        let (fx, fz) = (sy, cy);
        let (rx, rz) = (cy, -sy);
        // Step grows with distance: about 2.5 columns' footprint.
        let k = 2.5 / w as f32;
        let fog_col = l.fog_color;
        let t = scene.time;
        let ripple_amp = 0.05 + 0.1 * ws.rain;
        let reflect = [
            l.horizon[0] * 0.7 + l.zenith[0] * 0.3,
            l.horizon[1] * 0.7 + l.zenith[1] * 0.3,
            l.horizon[2] * 0.7 + l.zenith[2] * 0.3,
        ];
        let snow = ws.snow_cover;
        let wet = 1.0 - 0.28 * ws.wetness;
        let ld = l.light_dir;
        for col in 0..w {
            let sx = (col as f32 + 0.5 - w as f32 * 0.5) / f;
            let dx = fx + rx * sx;
            let dz = fz + rz * sx;
            let lenf = (1.0 + sx * sx).sqrt();
            let mut ybuf = h;
            let mut z = NEAR;
            let mut level = 0usize;
            // Switch to a coarser mip once samples are further apart than its texels.
            let lod_scale = 0.8 * k * lenf;
            let mut next_lod = 1.0 / lod_scale;
            let mut last_chunk = (i32::MIN, i32::MIN);
            let mut chunk = None;
            while z < FAR && ybuf > 0 {
                if z >= next_lod && level + 1 < MIP_LEVELS {
                    level += 1;
                    next_lod = (1u32 << (level + 1)) as f32 / lod_scale;
                }
                let px = cam.x + dx * z;
                let pz = cam.z + dz * z;
                let c = chunk_of(px, pz);
                if c != last_chunk {
                    last_chunk = c;
                    chunk = scene.terrain.chunk(c.0, c.1);
                }
                let Some(ch) = chunk else { break };
                let (lx, lz) = (px - c.0 as f32 * CHUNK_M, pz - c.1 as f32 * CHUNK_M);
                let top_h = ch.height_on(level, lx, lz).max(WATER_LEVEL);
                let ys = horizon - (top_h - cam.y) * f / z;
                let yi = if ys <= 0.0 {
                    0
                } else {
                    (ceil_i(ys.min(1e9)) as usize).min(h)
                };
                if yi < ybuf {
                    let s = ch.sample(level, lx, lz);
                    let water = s.h < WATER_LEVEL;
                    let dist = z * lenf;
                    let n = s.n;
                    let mut a = [
                        s.rgb[0] * (1.0 / 255.0),
                        s.rgb[1] * (1.0 / 255.0),
                        s.rgb[2] * (1.0 / 255.0),
                    ];
                    if snow > 0.0 && !water {
                        let cover = snow * smoothstep(0.55, 0.85, n[1]);
                        a = [
                            a[0] + (0.92 - a[0]) * cover,
                            a[1] + (0.94 - a[1]) * cover,
                            a[2] + (0.98 - a[2]) * cover,
                        ];
                    }
                    if dist < DETAIL_FAR && !water {
                        // Fine world-fixed speckle near the eye, so the ground shows motion.
                        let d = value_noise(px * 3.0, pz * 3.0) - 0.5;
                        let k = 1.0 + d * 0.34 * (1.0 - dist * (1.0 / DETAIL_FAR));
                        a = [a[0] * k, a[1] * k, a[2] * k];
                    }
                    let ndl = (n[0] * ld[0] + n[1] * ld[1] + n[2] * ld[2]).max(0.0);
                    let sky_vis = 0.6 + 0.4 * n[1];
                    let mut c = [
                        a[0] * (l.ambient[0] * sky_vis + l.direct[0] * ndl) * wet,
                        a[1] * (l.ambient[1] * sky_vis + l.direct[1] * ndl) * wet,
                        a[2] * (l.ambient[2] * sky_vis + l.direct[2] * ndl) * wet,
                    ];
                    if water {
                        let depth = WATER_LEVEL - s.h;
                        let murk = 1.0 - (-depth * 0.9).exp();
                        let lit = [
                            l.ambient[0] + l.direct[0] * 0.6,
                            l.ambient[1] + l.direct[1] * 0.6,
                            l.ambient[2] + l.direct[2] * 0.6,
                        ];
                        let deep = [0.05 * lit[0], 0.20 * lit[1], 0.26 * lit[2]];
                        let sin_view = ((cam.y - WATER_LEVEL) / dist).clamp(0.0, 1.0);
                        let g = 1.0 - sin_view;
                        let fres = 0.05 + 0.9 * g * g * g * g * g;
                        let ripple = 1.0
                            + ripple_amp
                                * ((px * 0.9 + t * 1.7).sin() * (pz * 0.8 - t * 1.3).sin());
                        for i in 0..3 {
                            let body = c[i] + (deep[i] - c[i]) * murk;
                            c[i] = (body + (reflect[i] - body) * fres) * ripple;
                        }
                    }
                    let fog = (1.0 - (-dist * l.fog_density).exp()).max(smoothstep(
                        FAR * 0.72,
                        FAR,
                        dist,
                    ));
                    let c = [
                        c[0] + (fog_col[0] - c[0]) * fog,
                        c[1] + (fog_col[1] - c[1]) * fog,
                        c[2] + (fog_col[2] - c[2]) * fog,
                    ];
                    let rgba = [to8(c[0]), to8(c[1]), to8(c[2]), 255];
                    for y in yi..ybuf {
                        let i = y * w + col;
                        out[i * 4..i * 4 + 4].copy_from_slice(&rgba);
                        self.depth[i] = dist;
                    }
                    ybuf = yi;
                }
                z += (z * k).max(0.05);
            }
            self.top[col] = ybuf;
        }
    }

    #[inline(never)]
    fn sky(&mut self, scene: &Scene, sky: &Sky, out: &mut [u8]) {
        let (w, h) = (self.w, self.h);
        let f = self.focal();
        let cam = scene.camera;
        let horizon = h as f32 * 0.5 + f * cam.pitch.tan();
        let (sy, cy) = cam.yaw.sin_cos();
        let (fx, fz) = (sy, cy);
        let (rx, rz) = (cy, -sy);
        for col in 0..w {
            let sx = (col as f32 + 0.5 - w as f32 * 0.5) / f;
            let dx = fx + rx * sx;
            let dz = fz + rz * sx;
            let hl2 = dx * dx + dz * dz;
            for row in 0..self.top[col] {
                let up = (horizon - (row as f32 + 0.5)) / f;
                let inv = 1.0 / (hl2 + up * up).sqrt();
                let d = [dx * inv, up * inv, dz * inv];
                let c = sky.color(d, cam.x, cam.z, scene.lighting);
                put(out, row * w + col, c);
            }
        }
    }

    #[inline(never)]
    fn sprites(&mut self, scene: &Scene, sprites: &Sprites, out: &mut [u8]) {
        let (w, h) = (self.w, self.h);
        let f = self.focal();
        let cam = scene.camera;
        let l = scene.lighting;
        let horizon = h as f32 * 0.5 + f * cam.pitch.tan();
        let (sy, cy) = cam.yaw.sin_cos();
        let (rx, rz) = (cy, -sy);
        self.gather_sprites(scene);
        let light = [
            l.ambient[0] + l.direct[0] * 0.7,
            l.ambient[1] + l.direct[1] * 0.7,
            l.ambient[2] + l.direct[2] * 0.7,
        ];
        let wet = 1.0 - 0.2 * scene.weather.wetness;
        let snow = scene.weather.snow_cover;
        for &(depth, o) in &self.draw {
            let (sw, sh) = o.kind.size();
            let pw = sw * o.scale * f / depth;
            let ph = sh * o.scale * f / depth;
            if pw < 0.35 || ph < 0.5 {
                continue;
            }
            let lateral = (o.x - cam.x) * rx + (o.z - cam.z) * rz;
            let centre = w as f32 * 0.5 + lateral * f / depth;
            let left = centre - pw * 0.5;
            let base = horizon - ((o.y - 0.2) - cam.y) * f / depth;
            let top = base - ph;
            let x0 = left.floor().max(0.0) as usize;
            let x1 = ((left + pw).ceil().max(0.0) as usize).min(w);
            let y0 = top.floor().max(0.0) as usize;
            let y1 = (base.ceil().max(0.0) as usize).min(h);
            if x0 >= x1 || y0 >= y1 {
                continue;
            }
            let img = sprites.image(o.kind);
            let mut lvl = 0;
            while lvl + 1 < img.levels.len() && img.levels[lvl].h as f32 > ph * 1.3 {
                lvl += 1;
            }
            let tex = &img.levels[lvl];
            let fog =
                (1.0 - (-depth * l.fog_density).exp()).max(smoothstep(FAR * 0.72, FAR, depth));
            let far_fade = if o.kind.is_landmark() {
                0.0
            } else {
                smoothstep(SPRITE_FAR * 0.8, SPRITE_FAR, depth)
            };
            let fog = fog.max(far_fade);
            // Objects right in front of the eye fade out instead of filling the view.
            let opacity = smoothstep(0.9, 2.2, depth);
            if opacity <= 0.0 {
                continue;
            }
            let tint = o.tint * wet;
            let lit = [light[0] * tint, light[1] * tint, light[2] * tint];
            // Snow settles on these kinds (the snow fir is painted with its own).
            let takes_snow = o.kind == SpriteKind::Conifer
                || o.kind == SpriteKind::Broadleaf
                || o.kind == SpriteKind::Rock;
            let glow = l.glow;
            let inv_pw = tex.w as f32 / pw;
            let inv_ph = tex.h as f32 / ph;
            for px in x0..x1 {
                let mut u = ((px as f32 + 0.5 - left) * inv_pw) as usize;
                u = u.min(tex.w - 1);
                if o.flip {
                    u = tex.w - 1 - u;
                }
                for py in y0..y1 {
                    let i = py * w + px;
                    if depth >= self.depth[i] {
                        continue;
                    }
                    let v = (((py as f32 + 0.5 - top) * inv_ph) as usize).min(tex.h - 1);
                    let t = tex.texels[v * tex.w + u];
                    if t[3] == 0 {
                        continue;
                    }
                    let mut c = shade_texel(t, v, snow, takes_snow, lit, glow);
                    for (ck, fk) in c.iter_mut().zip(l.fog_color) {
                        *ck += (fk - *ck) * fog;
                    }
                    if opacity < 1.0 {
                        blend(out, i, c, opacity);
                    } else {
                        put(out, i, c);
                    }
                }
            }
        }
    }

    /// Fills `self.draw` with the objects in view (in the visible chunks and the extra ones)
    /// and their depths, sorted far to near for painting.
    fn gather_sprites(&mut self, scene: &Scene) {
        let w = self.w;
        let f = self.focal();
        let cam = scene.camera;
        let (sy, cy) = cam.yaw.sin_cos();
        let (fx, fz) = (sy, cy);
        let (rx, rz) = (cy, -sy);
        self.draw.clear();
        let consider = |o: &Object, draw: &mut Vec<(f32, Object)>| {
            let (ox, oz) = (o.x - cam.x, o.z - cam.z);
            let depth = ox * fx + oz * fz;
            let limit = if o.kind.is_landmark() {
                FAR
            } else {
                SPRITE_FAR
            };
            if depth < NEAR || depth > limit {
                return;
            }
            let lateral = ox * rx + oz * rz;
            let (sw, _) = o.kind.size();
            let half = sw * o.scale * 0.5;
            // Off to the side by more than half its width (with the field of view's slope).
            if lateral.abs() - half > depth * (w as f32 * 0.5 / f) + 0.5 {
                return;
            }
            draw.push((depth, *o));
        };
        for (cx, cz) in visible_chunks(cam.x, cam.z, cam.yaw, HALF_FOV, FAR) {
            if let Some(ch) = scene.terrain.chunk(cx, cz) {
                for o in &ch.objects {
                    consider(o, &mut self.draw);
                }
            }
        }
        for o in scene.extra_objects {
            consider(o, &mut self.draw);
        }
        // Far to near; ties broken by position so the order never depends on anything else.
        self.draw.sort_unstable_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(a.1.x.total_cmp(&b.1.x))
                .then(a.1.z.total_cmp(&b.1.z))
        });
    }

    #[inline(never)]
    fn precipitation(&mut self, scene: &Scene, out: &mut [u8]) {
        let (w, h) = (self.w, self.h);
        let ws = scene.weather;
        let l = scene.lighting;
        let f = self.focal();
        let cam = scene.camera;
        let bright = (l.ambient[0] + l.ambient[1] + l.ambient[2]) / 3.0 + 0.25 * l.sun_strength;
        let area = (w * h) as f32;
        if ws.rain > 0.02 {
            let n = (ws.rain * area * 0.011) as u32;
            let len_base = h as f32 * 0.07;
            let slant = 0.15 + 0.35 * ws.wind;
            let col = [
                0.55 + 0.4 * bright,
                0.58 + 0.4 * bright,
                0.64 + 0.4 * bright,
            ];
            for i in 0..n {
                let hh = hash3(scene.seed, scene.frame as i32, i as i32, 11);
                let x = unit(hh) * (w as f32 + len_base * slant);
                let y = unit(hash2(hh, 1, 2)) * h as f32;
                let len = len_base * (0.6 + 0.8 * unit(hash2(hh, 3, 4)));
                let alpha = 0.18 + 0.17 * unit(hash2(hh, 5, 6));
                let steps = len.ceil() as usize;
                for s in 0..steps {
                    let px = (x - slant * s as f32) as isize;
                    let py = (y + s as f32) as isize;
                    if px < 0 || py < 0 || px >= w as isize || py >= h as isize {
                        continue;
                    }
                    blend(out, py as usize * w + px as usize, col, alpha);
                }
            }
        }
        if ws.snow > 0.02 {
            let n = (ws.snow * area * 0.009) as u32;
            let t = scene.time;
            let horizon_shift = f * cam.pitch.tan();
            let col = [
                0.75 + 0.3 * bright,
                0.77 + 0.3 * bright,
                0.82 + 0.3 * bright,
            ];
            let big = w >= 128;
            for i in 0..n {
                let hh = hash2(scene.seed ^ 0x5A0, i as i32, 0);
                let near = 0.5 + unit(hash2(hh, 1, 0));
                let fall = h as f32 * (0.12 + 0.12 * near);
                let x = unit(hh) * w as f32 - cam.yaw * f * near
                    + (t * 1.1 + i as f32).sin() * 2.0 * near;
                let y = unit(hash2(hh, 2, 0)) * h as f32 + t * fall + horizon_shift * near;
                let px = x.rem_euclid(w as f32) as usize % w;
                let py = y.rem_euclid(h as f32) as usize % h;
                let a = 0.55 + 0.35 * near * 0.5;
                blend(out, py * w + px, col, a);
                if big && near > 1.1 {
                    if px + 1 < w {
                        blend(out, py * w + px + 1, col, a * 0.7);
                    }
                    if py + 1 < h {
                        blend(out, (py + 1) * w + px, col, a * 0.7);
                    }
                }
            }
        }
        if l.flash > 0.05 {
            let a = (l.flash * 0.3).min(0.35);
            for i in 0..w * h {
                blend(out, i, [0.9, 0.92, 1.0], a);
            }
        }
    }
}

/// Smooth value noise in [0, 1] on a unit lattice (bilinear between hashed corners).
#[inline]
fn value_noise(x: f32, y: f32) -> f32 {
    let ix = floor_i(x);
    let iy = floor_i(y);
    let fx = x - ix as f32;
    let fy = y - iy as f32;
    let fx = fx * fx * (3.0 - 2.0 * fx);
    let fy = fy * fy * (3.0 - 2.0 * fy);
    let s = 0xD7A1;
    let a = unit(hash2(s, ix, iy));
    let b = unit(hash2(s, ix + 1, iy));
    let c = unit(hash2(s, ix, iy + 1));
    let d = unit(hash2(s, ix + 1, iy + 1));
    let top = a + (b - a) * fx;
    let bottom = c + (d - c) * fx;
    top + (bottom - top) * fy
}

/// A sprite texel's colour under the light `lit`: glowing texels keep at least the night glow;
/// on kinds that take snow (`takes_snow`), `snow` cover first whitens every third texel row.
#[inline]
fn shade_texel(
    t: [u8; 4],
    v: usize,
    snow: f32,
    takes_snow: bool,
    lit: [f32; 3],
    glow: f32,
) -> [f32; 3] {
    let mut c = [
        t[0] as f32 / 255.0,
        t[1] as f32 / 255.0,
        t[2] as f32 / 255.0,
    ];
    if t[3] == ALPHA_EMISSIVE {
        for k in 0..3 {
            c[k] *= lit[k].max(glow * 1.1);
        }
    } else {
        if snow > 0.0 && takes_snow {
            // Snow settles on the upper side of every texel row pattern.
            let s = snow * 0.6 * v.is_multiple_of(3) as u8 as f32;
            c = [
                c[0] + (0.92 - c[0]) * s,
                c[1] + (0.94 - c[1]) * s,
                c[2] + (0.98 - c[2]) * s,
            ];
        }
        for k in 0..3 {
            c[k] *= lit[k];
        }
    }
    c
}

#[inline]
fn blend(out: &mut [u8], i: usize, c: [f32; 3], a: f32) {
    let p = &mut out[i * 4..i * 4 + 3];
    for k in 0..3 {
        let v = p[k] as f32 / 255.0;
        p[k] = to8(v + (c[k] - v) * a);
    }
}
