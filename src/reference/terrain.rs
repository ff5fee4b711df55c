//! The endless landscape: climate fields decide five biomes, biomes decide heights, surface
//! colours and objects. Terrain is generated in 64 m chunks at 1 m resolution (with coarser mip
//! levels for distant sampling) and cached, so rendering never evaluates fractal noise.
//!
//! The director's `biome` control changes *newly generated* land: each 64 m cell of the world
//! records the preferred biome at the moment land near it is first generated, and generation
//! reads only those records. Land already seen never changes, and the terrain is a pure function
//! of the seed and the records, which are saved with the session.

use std::collections::BTreeMap;

use super::Biome;
use super::noise::{fbm, floor_i, gradient, hash2, ridged, sub_seed, unit};
use super::sprites::SpriteKind;

/// Cells per chunk side (one cell is one metre).
pub const CHUNK: usize = 64;
/// Chunk side in metres.
pub const CHUNK_M: f32 = CHUNK as f32;
/// Mip levels per chunk: 1, 2, 4, 8 and 16 m per sample.
pub const MIP_LEVELS: usize = 5;
/// Height of the water surface, metres.
pub const WATER_LEVEL: f32 = 0.0;
/// Cache slots per side (a power of two); chunks map to slot `(cx mod SLOTS, cz mod SLOTS)`.
const SLOTS: i32 = 16;
/// Side of a natural-landmark region, in chunks.
const LANDMARK_REGION: i32 = 8;
/// How strongly a recorded biome preference wins over the climate.
const PREF_BONUS: f32 = 9.0;
/// Sharpness of biome borders.
const BIOME_SHARPNESS: f32 = 16.0;

/// What the ground is made of: decides footstep sounds and walking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Surface {
    /// Meadow grass.
    Grass,
    /// Forest floor: leaves and twigs.
    Leaves,
    /// Sand (desert, beaches).
    Sand,
    /// Snow.
    Snow,
    /// Bare rock.
    Rock,
    /// Shallow water.
    Water,
}

impl Surface {
    fn from_u8(v: u8) -> Surface {
        match v {
            0 => Surface::Grass,
            1 => Surface::Leaves,
            2 => Surface::Sand,
            3 => Surface::Snow,
            4 => Surface::Rock,
            _ => Surface::Water,
        }
    }
}

/// One object placed in the world.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Object {
    /// World x, metres.
    pub x: f32,
    /// Ground height at the object, metres.
    pub y: f32,
    /// World z, metres.
    pub z: f32,
    /// What it is.
    pub kind: SpriteKind,
    /// Size multiplier.
    pub scale: f32,
    /// Mirrored left to right.
    pub flip: bool,
    /// Brightness multiplier (variety between individuals).
    pub tint: f32,
}

/// One terrain sample: height, albedo, normal and surface.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct Texel {
    /// Ground height, metres (may be below [`WATER_LEVEL`]).
    pub h: f32,
    /// Albedo, RGB8 in display space.
    pub rgb: [u8; 3],
    /// [`Surface`] as a byte.
    pub surface: u8,
    /// Unit normal, each component times 127.
    pub n: [i8; 3],
    /// Padding.
    pub _pad: u8,
}

/// A bilinear terrain sample in floats.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Ground height, metres.
    pub h: f32,
    /// Albedo, 0..255 per channel.
    pub rgb: [f32; 3],
    /// Normal (not renormalised after interpolation).
    pub n: [f32; 3],
}

/// One mip level of a chunk: `size`×`size` samples covering the chunk including its far edges.
#[derive(Clone, Debug)]
pub struct Level {
    /// Samples per side (`CHUNK >> level` + 1).
    pub size: usize,
    /// Metres per sample step.
    pub step: f32,
    /// Samples, row-major by z then x.
    pub texels: Vec<Texel>,
}

/// A generated 64 m × 64 m piece of land.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// Chunk x coordinate (world x / 64, floored).
    pub cx: i32,
    /// Chunk z coordinate.
    pub cz: i32,
    /// Mip levels, finest first.
    pub levels: Vec<Level>,
    /// Objects whose base lies in this chunk, in generation order.
    pub objects: Vec<Object>,
}

impl Chunk {
    /// Bilinear sample at local coordinates `(lx, lz)` in metres (`0..=64`) on mip `level`.
    #[inline]
    pub fn sample(&self, level: usize, lx: f32, lz: f32) -> Sample {
        let l = &self.levels[level];
        let inv = 1.0 / l.step;
        let max = (l.size - 1) as f32;
        let gx = (lx * inv).clamp(0.0, max - 0.001);
        let gz = (lz * inv).clamp(0.0, max - 0.001);
        let ix = gx as usize;
        let iz = gz as usize;
        let fx = gx - ix as f32;
        let fz = gz - iz as f32;
        let i = iz * l.size + ix;
        let t00 = &l.texels[i];
        let t10 = &l.texels[i + 1];
        let t01 = &l.texels[i + l.size];
        let t11 = &l.texels[i + l.size + 1];
        let w00 = (1.0 - fx) * (1.0 - fz);
        let w10 = fx * (1.0 - fz);
        let w01 = (1.0 - fx) * fz;
        let w11 = fx * fz;
        let mix = |a: f32, b: f32, c: f32, d: f32| a * w00 + b * w10 + c * w01 + d * w11;
        Sample {
            h: mix(t00.h, t10.h, t01.h, t11.h),
            rgb: [
                mix(
                    t00.rgb[0] as f32,
                    t10.rgb[0] as f32,
                    t01.rgb[0] as f32,
                    t11.rgb[0] as f32,
                ),
                mix(
                    t00.rgb[1] as f32,
                    t10.rgb[1] as f32,
                    t01.rgb[1] as f32,
                    t11.rgb[1] as f32,
                ),
                mix(
                    t00.rgb[2] as f32,
                    t10.rgb[2] as f32,
                    t01.rgb[2] as f32,
                    t11.rgb[2] as f32,
                ),
            ],
            n: [
                mix(
                    t00.n[0] as f32,
                    t10.n[0] as f32,
                    t01.n[0] as f32,
                    t11.n[0] as f32,
                ) * (1.0 / 127.0),
                mix(
                    t00.n[1] as f32,
                    t10.n[1] as f32,
                    t01.n[1] as f32,
                    t11.n[1] as f32,
                ) * (1.0 / 127.0),
                mix(
                    t00.n[2] as f32,
                    t10.n[2] as f32,
                    t01.n[2] as f32,
                    t11.n[2] as f32,
                ) * (1.0 / 127.0),
            ],
        }
    }

    /// Height only, bilinear on mip `level`, at local coordinates (the renderer's occlusion test).
    #[inline]
    pub fn height_on(&self, level: usize, lx: f32, lz: f32) -> f32 {
        let l = &self.levels[level];
        let inv = 1.0 / l.step;
        let max = (l.size - 1) as f32;
        let gx = (lx * inv).clamp(0.0, max - 0.001);
        let gz = (lz * inv).clamp(0.0, max - 0.001);
        let ix = gx as usize;
        let iz = gz as usize;
        let fx = gx - ix as f32;
        let fz = gz - iz as f32;
        let i = iz * l.size + ix;
        let t = &l.texels;
        let a = t[i].h + (t[i + 1].h - t[i].h) * fx;
        let b = t[i + l.size].h + (t[i + l.size + 1].h - t[i + l.size].h) * fx;
        a + (b - a) * fz
    }

    /// Height only, bilinear on the finest level, at local coordinates.
    #[inline]
    pub fn height(&self, lx: f32, lz: f32) -> f32 {
        let l = &self.levels[0];
        let max = (l.size - 1) as f32;
        let gx = lx.clamp(0.0, max - 0.001);
        let gz = lz.clamp(0.0, max - 0.001);
        let ix = gx as usize;
        let iz = gz as usize;
        let fx = gx - ix as f32;
        let fz = gz - iz as f32;
        let i = iz * l.size + ix;
        let a = l.texels[i].h + (l.texels[i + 1].h - l.texels[i].h) * fx;
        let b = l.texels[i + l.size].h + (l.texels[i + l.size + 1].h - l.texels[i + l.size].h) * fx;
        a + (b - a) * fz
    }

    /// Surface of the nearest finest-level sample.
    pub fn surface(&self, lx: f32, lz: f32) -> Surface {
        let l = &self.levels[0];
        let ix = (lx.round() as usize).min(l.size - 1);
        let iz = (lz.round() as usize).min(l.size - 1);
        Surface::from_u8(l.texels[iz * l.size + ix].surface)
    }
}

/// Chunk coordinates of a world position.
#[inline]
pub fn chunk_of(x: f32, z: f32) -> (i32, i32) {
    (floor_i(x) >> 6, floor_i(z) >> 6)
}

/// The pure terrain functions of one world seed.
#[derive(Clone, Debug)]
pub struct TerrainGen {
    s_temp: u32,
    s_moist: u32,
    s_cont: u32,
    s_height: u32,
    s_detail: u32,
    s_mount: u32,
    s_dune: u32,
    s_color: u32,
    s_objects: u32,
    s_landmark: u32,
}

fn smoothstep(a: f32, b: f32, x: f32) -> f32 {
    let t = ((x - a) / (b - a)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Climate prototypes (temperature, moisture, continentalness) of the five biomes.
const PROTOTYPES: [[f32; 3]; 5] = [
    [0.02, -0.12, 0.12], // grassland
    [-0.08, 0.30, 0.10], // forest
    [0.38, -0.38, 0.08], // desert
    [-0.38, 0.05, 0.22], // snow
    [0.12, 0.05, -0.32], // shore
];

impl TerrainGen {
    /// The functions for a world seed.
    pub fn new(seed: u64) -> Self {
        Self {
            s_temp: sub_seed(seed, 1),
            s_moist: sub_seed(seed, 2),
            s_cont: sub_seed(seed, 3),
            s_height: sub_seed(seed, 4),
            s_detail: sub_seed(seed, 5),
            s_mount: sub_seed(seed, 6),
            s_dune: sub_seed(seed, 7),
            s_color: sub_seed(seed, 8),
            s_objects: sub_seed(seed, 9),
            s_landmark: sub_seed(seed, 10),
        }
    }

    /// Climate at a point: temperature, moisture, continentalness (each about -1..1).
    pub fn climate(&self, x: f32, z: f32) -> [f32; 3] {
        [
            fbm(self.s_temp, x / 1100.0, z / 1100.0, 3, 0.5),
            fbm(self.s_moist, x / 800.0 + 31.7, z / 800.0, 3, 0.5),
            fbm(self.s_cont, x / 1400.0, z / 1400.0 - 11.3, 3, 0.5),
        ]
    }

    /// Biome weights (summing to 1) at a point, given how much each biome is preferred there
    /// (0..1 per biome, from the recorded preferences).
    pub fn biome_weights(&self, x: f32, z: f32, pref: &[f32; 5]) -> [f32; 5] {
        let c = self.climate(x, z);
        let mut logits = [0.0f32; 5];
        for (b, p) in PROTOTYPES.iter().enumerate() {
            let d = (c[0] - p[0]).powi(2) + (c[1] - p[1]).powi(2) + (c[2] - p[2]).powi(2);
            logits[b] = -d * BIOME_SHARPNESS + PREF_BONUS * pref[b];
        }
        let m = logits.iter().copied().fold(f32::MIN, f32::max);
        let mut sum = 0.0;
        for l in &mut logits {
            *l = (*l - m).exp();
            sum += *l;
        }
        let mut w = [0.0f32; 5];
        for b in 0..5 {
            w[b] = logits[b] / sum;
        }
        w
    }

    /// The dominant biome of the climate alone (no preferences) at a point.
    pub fn natural_biome(&self, x: f32, z: f32) -> (Biome, f32) {
        let w = self.biome_weights(x, z, &[0.0; 5]);
        let (i, wi) = w.iter().enumerate().fold(
            (0, 0.0),
            |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
        );
        (Biome::ALL[i], wi)
    }

    /// Ground height at a point for given biome weights.
    pub fn height(&self, x: f32, z: f32, w: &[f32; 5]) -> f32 {
        let n1 = fbm(self.s_height, x / 230.0, z / 230.0, 5, 0.5);
        let detail = gradient(self.s_detail, x / 9.0, z / 9.0) * 0.6
            + gradient(self.s_detail ^ 0x55, x / 31.0, z / 31.0) * 1.4;
        let mut h = 0.0;
        if w[0] > 0.005 {
            h += w[0] * (6.0 + 15.0 * n1 + 0.5 * detail);
        }
        if w[1] > 0.005 {
            h += w[1] * (9.0 + 22.0 * n1 + 0.8 * detail);
        }
        if w[2] > 0.005 {
            let dunes = ridged(self.s_dune, x / 70.0 + z / 160.0, z / 28.0, 2);
            h += w[2] * (4.0 + 9.0 * n1 + 7.0 * dunes + 0.2 * detail);
        }
        if w[3] > 0.005 {
            let m = ridged(self.s_mount, x / 380.0, z / 380.0, 5);
            h += w[3] * (18.0 + 95.0 * m * m + 20.0 * n1 + 1.2 * detail);
        }
        if w[4] > 0.005 {
            h += w[4] * (-1.0 + 11.0 * n1 + 0.3 * detail);
        }
        h
    }

    /// Albedo (0..1 RGB) and surface at a point, from its height, normal's up component and
    /// biome weights.
    fn albedo(&self, x: f32, z: f32, h: f32, up: f32, w: &[f32; 5]) -> ([f32; 3], Surface) {
        let patch = gradient(self.s_color, x / 14.0, z / 14.0) * 0.5 + 0.5;
        let fine = unit(hash2(self.s_color, x as i32, z as i32));
        let grass = lerp3([0.30, 0.49, 0.16], [0.50, 0.58, 0.22], patch);
        let forest = lerp3([0.15, 0.29, 0.09], [0.30, 0.27, 0.13], patch * 0.8);
        let desert = lerp3([0.87, 0.73, 0.48], [0.80, 0.60, 0.38], patch);
        let snow = lerp3([0.92, 0.94, 0.98], [0.80, 0.84, 0.91], patch * 0.6);
        let shore_land = lerp3([0.55, 0.60, 0.33], [0.72, 0.68, 0.45], patch);
        let mut c = [0.0f32; 3];
        for (i, col) in [grass, forest, desert, snow, shore_land].iter().enumerate() {
            for k in 0..3 {
                c[k] += w[i] * col[k];
            }
        }
        // Surface weights follow the same blend.
        let mut sw = [w[0] + w[4] * 0.5, w[1], w[2] + w[4] * 0.5, w[3], 0.0, 0.0];
        // Beaches: a sandy band at the water's edge (gravel in snowy land).
        let beach = smoothstep(2.2, 0.6, h) * (1.0 - w[3] * 0.7);
        let sand = [0.86, 0.79, 0.58];
        c = lerp3(c, sand, beach);
        sw[2] += beach * 1.5;
        // Under water: darker, wet ground.
        if h < WATER_LEVEL {
            let wet = smoothstep(0.0, -1.5, h);
            c = lerp3(c, [0.42, 0.40, 0.30], wet * 0.7);
        }
        // Snow caps on high ground, everywhere.
        let cap = smoothstep(48.0, 62.0, h + 10.0 * patch);
        c = lerp3(c, [0.93, 0.95, 0.99], cap);
        sw[3] += cap * 2.0;
        // Steep slopes are bare rock (reddish sandstone in the desert).
        let steep = smoothstep(0.86, 0.72, up);
        let rock = lerp3([0.46, 0.44, 0.41], [0.66, 0.46, 0.33], w[2]);
        c = lerp3(c, rock, steep);
        sw[4] += steep * 2.5;
        // Flowers in meadows.
        let flower = unit(hash2(self.s_color ^ 0xF10, x as i32, z as i32));
        if h > 1.0 && steep < 0.3 && flower < 0.015 * w[0] {
            let petal = match (flower * 1000.0) as u32 % 3 {
                0 => [0.95, 0.88, 0.30],
                1 => [0.92, 0.55, 0.70],
                _ => [0.95, 0.95, 0.92],
            };
            c = lerp3(c, petal, 0.45);
        }
        let j = 0.9 + 0.2 * fine;
        c = [c[0] * j, c[1] * j, c[2] * j];
        if h < -0.15 {
            sw[5] = 10.0;
        }
        let mut best = 0;
        for i in 1..6 {
            if sw[i] > sw[best] {
                best = i;
            }
        }
        (c, Surface::from_u8(best as u8))
    }
}

/// The terrain of one session: the generator, the recorded biome preferences and a cache of
/// chunks around the player.
#[derive(Clone, Debug)]
pub struct Terrain {
    generator: TerrainGen,
    seed: u64,
    slots: Vec<Option<Box<Chunk>>>,
    /// Preferred biome recorded per 64 m cell: 0 = any, `b + 1` = `Biome::ALL[b]`.
    prefs: BTreeMap<(i32, i32), u8>,
    /// Preference applied to cells recorded from now on.
    pub current_pref: Option<Biome>,
    /// Chunks generated since the session started (statistics).
    pub chunks_generated: u64,
}

impl Terrain {
    /// Terrain for a world seed, with no recorded preferences.
    pub fn new(seed: u64) -> Self {
        Self {
            generator: TerrainGen::new(seed),
            seed,
            slots: (0..SLOTS * SLOTS).map(|_| None).collect(),
            prefs: BTreeMap::new(),
            current_pref: None,
            chunks_generated: 0,
        }
    }

    /// The pure generator functions.
    pub fn generator(&self) -> &TerrainGen {
        &self.generator
    }

    /// The world seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The recorded preferences, in cell order (for saving).
    pub fn preferences(&self) -> &BTreeMap<(i32, i32), u8> {
        &self.prefs
    }

    /// Replaces the recorded preferences (when restoring) and empties the cache.
    pub fn set_preferences(&mut self, prefs: BTreeMap<(i32, i32), u8>) {
        self.prefs = prefs;
        for s in &mut self.slots {
            *s = None;
        }
    }

    #[inline]
    fn slot(cx: i32, cz: i32) -> usize {
        (((cz & (SLOTS - 1)) * SLOTS) + (cx & (SLOTS - 1))) as usize
    }

    /// The cached chunk at chunk coordinates, if it is generated.
    #[inline]
    pub fn chunk(&self, cx: i32, cz: i32) -> Option<&Chunk> {
        match &self.slots[Self::slot(cx, cz)] {
            Some(c) if c.cx == cx && c.cz == cz => Some(c),
            _ => None,
        }
    }

    /// Generates the chunk if it is not cached, and returns it.
    pub fn ensure(&mut self, cx: i32, cz: i32) -> &Chunk {
        let slot = Self::slot(cx, cz);
        let hit = matches!(&self.slots[slot], Some(c) if c.cx == cx && c.cz == cz);
        if !hit {
            let mut prefs = [[0u8; 3]; 3];
            for (j, row) in prefs.iter_mut().enumerate() {
                for (i, p) in row.iter_mut().enumerate() {
                    let key = (cx + i as i32 - 1, cz + j as i32 - 1);
                    let current = self.current_pref.map_or(0, |b| b as u8 + 1);
                    *p = *self.prefs.entry(key).or_insert(current);
                }
            }
            let chunk = generate_chunk(&self.generator, cx, cz, &prefs);
            self.slots[slot] = Some(Box::new(chunk));
            self.chunks_generated += 1;
        }
        self.slots[slot].as_deref().unwrap()
    }

    /// Ground height at a world position (generating land as needed).
    pub fn height_at(&mut self, x: f32, z: f32) -> f32 {
        let (cx, cz) = chunk_of(x, z);
        let c = self.ensure(cx, cz);
        c.height(x - cx as f32 * CHUNK_M, z - cz as f32 * CHUNK_M)
    }

    /// Surface at a world position (generating land as needed).
    pub fn surface_at(&mut self, x: f32, z: f32) -> Surface {
        let (cx, cz) = chunk_of(x, z);
        let c = self.ensure(cx, cz);
        c.surface(x - cx as f32 * CHUNK_M, z - cz as f32 * CHUNK_M)
    }

    /// Generates every chunk the camera at `(x, z)` looking along `yaw` can see up to `far`
    /// metres (horizontal field of view `half_fov` either side), plus the chunks around it.
    /// Order is fixed (row by row), so preference records are deterministic.
    pub fn prepare_view(&mut self, x: f32, z: f32, yaw: f32, half_fov: f32, far: f32) {
        for (cx, cz) in visible_chunks(x, z, yaw, half_fov, far) {
            self.ensure(cx, cz);
        }
    }

    /// Objects within `radius` of `(x, z)` in cached chunks, in a fixed order.
    pub fn objects_near(&self, x: f32, z: f32, radius: f32) -> Vec<Object> {
        let mut out = Vec::new();
        let (c0x, c0z) = chunk_of(x - radius, z - radius);
        let (c1x, c1z) = chunk_of(x + radius, z + radius);
        for cz in c0z..=c1z {
            for cx in c0x..=c1x {
                if let Some(c) = self.chunk(cx, cz) {
                    for o in &c.objects {
                        if (o.x - x).powi(2) + (o.z - z).powi(2) <= radius * radius {
                            out.push(*o);
                        }
                    }
                }
            }
        }
        out
    }
}

/// The chunks a camera can see, in row-major order: those overlapping the view wedge up to
/// `far`, and the 3×3 block around the camera.
pub fn visible_chunks(x: f32, z: f32, yaw: f32, half_fov: f32, far: f32) -> Vec<(i32, i32)> {
    let (fx, fz) = (yaw.sin(), yaw.cos());
    let (pcx, pcz) = chunk_of(x, z);
    let r = (far / CHUNK_M).ceil() as i32 + 1;
    let half_diag = CHUNK_M * std::f32::consts::FRAC_1_SQRT_2;
    let cos_limit_base = half_fov;
    let mut out = Vec::new();
    for cz in pcz - r..=pcz + r {
        for cx in pcx - r..=pcx + r {
            if (cx - pcx).abs() <= 1 && (cz - pcz).abs() <= 1 {
                out.push((cx, cz));
                continue;
            }
            let mx = (cx as f32 + 0.5) * CHUNK_M - x;
            let mz = (cz as f32 + 0.5) * CHUNK_M - z;
            let d = (mx * mx + mz * mz).sqrt();
            if d - half_diag > far {
                continue;
            }
            let ang = ((mx * fx + mz * fz) / d).clamp(-1.0, 1.0).acos();
            let spread = (half_diag / d).min(1.0).asin();
            if ang <= cos_limit_base + spread + 0.05 {
                out.push((cx, cz));
            }
        }
    }
    out
}

/// Generates one chunk from the pure functions and the 3×3 preference records around it
/// (`prefs[dz][dx]` for cells `cz-1..=cz+1`, `cx-1..=cx+1`).
pub fn generate_chunk(g: &TerrainGen, cx: i32, cz: i32, prefs: &[[u8; 3]; 3]) -> Chunk {
    let x0 = cx as f32 * CHUNK_M;
    let z0 = cz as f32 * CHUNK_M;
    // Biome weights on a coarse 8 m grid with one point of margin, interpolated per sample.
    const COARSE: usize = 8;
    const CN: usize = CHUNK / COARSE + 3; // points -8, 0, 8, ..., 72
    let mut coarse = [[0.0f32; 5]; CN * CN];
    for j in 0..CN {
        for i in 0..CN {
            let px = x0 + (i as f32 - 1.0) * COARSE as f32;
            let pz = z0 + (j as f32 - 1.0) * COARSE as f32;
            let pref = preference_at(px - x0, pz - z0, prefs);
            coarse[j * CN + i] = g.biome_weights(px, pz, &pref);
        }
    }
    let weights_at = |lx: f32, lz: f32| -> [f32; 5] {
        let gx = (lx / COARSE as f32 + 1.0).clamp(0.0, (CN - 1) as f32 - 0.001);
        let gz = (lz / COARSE as f32 + 1.0).clamp(0.0, (CN - 1) as f32 - 0.001);
        let ix = gx as usize;
        let iz = gz as usize;
        let fx = gx - ix as f32;
        let fz = gz - iz as f32;
        let a = &coarse[iz * CN + ix];
        let b = &coarse[iz * CN + ix + 1];
        let c = &coarse[(iz + 1) * CN + ix];
        let d = &coarse[(iz + 1) * CN + ix + 1];
        let mut w = [0.0f32; 5];
        for k in 0..5 {
            let top = a[k] + (b[k] - a[k]) * fx;
            let bot = c[k] + (d[k] - c[k]) * fx;
            w[k] = top + (bot - top) * fz;
        }
        w
    };

    // Heights with a one-sample margin for normals.
    const N: usize = CHUNK + 1;
    const M: usize = N + 2;
    let mut heights = vec![0.0f32; M * M];
    let mut weights = vec![[0.0f32; 5]; N * N];
    for j in 0..M {
        for i in 0..M {
            let lx = i as f32 - 1.0;
            let lz = j as f32 - 1.0;
            let w = weights_at(lx, lz);
            heights[j * M + i] = g.height(x0 + lx, z0 + lz, &w);
            if (1..=N).contains(&i) && (1..=N).contains(&j) {
                weights[(j - 1) * N + (i - 1)] = w;
            }
        }
    }
    let mut texels = vec![Texel::default(); N * N];
    for j in 0..N {
        for i in 0..N {
            let h = heights[(j + 1) * M + i + 1];
            let dx = (heights[(j + 1) * M + i + 2] - heights[(j + 1) * M + i]) * 0.5;
            let dz = (heights[(j + 2) * M + i + 1] - heights[j * M + i + 1]) * 0.5;
            let len = (dx * dx + 1.0 + dz * dz).sqrt();
            let n = [-dx / len, 1.0 / len, -dz / len];
            let (x, z) = (x0 + i as f32, z0 + j as f32);
            let (c, surface) = g.albedo(x, z, h, n[1], &weights[j * N + i]);
            let to8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
            let toi8 = |v: f32| {
                let x = v.clamp(-1.0, 1.0) * 127.0;
                (x + 0.5 * x.signum()) as i8
            };
            texels[j * N + i] = Texel {
                h,
                rgb: [to8(c[0]), to8(c[1]), to8(c[2])],
                surface: surface as u8,
                n: [toi8(n[0]), toi8(n[1]), toi8(n[2])],
                _pad: 0,
            };
        }
    }
    let mut levels = vec![Level {
        size: N,
        step: 1.0,
        texels,
    }];
    for l in 1..MIP_LEVELS {
        levels.push(downsample(&levels[l - 1]));
    }
    let mut chunk = Chunk {
        cx,
        cz,
        levels,
        objects: Vec::new(),
    };
    place_objects(g, &mut chunk, &weights);
    chunk
}

/// Preference strength per biome at local position `(lx, lz)`: bilinear interpolation of the
/// recorded cell preferences between cell centres.
fn preference_at(lx: f32, lz: f32, prefs: &[[u8; 3]; 3]) -> [f32; 5] {
    // Cell centres are at local -32, 32, 96 (indices 0, 1, 2).
    let gx = ((lx + 32.0) / CHUNK_M).clamp(0.0, 1.999);
    let gz = ((lz + 32.0) / CHUNK_M).clamp(0.0, 1.999);
    let ix = gx as usize;
    let iz = gz as usize;
    let fx = gx - ix as f32;
    let fz = gz - iz as f32;
    let mut out = [0.0f32; 5];
    let corners = [
        (prefs[iz][ix], (1.0 - fx) * (1.0 - fz)),
        (prefs[iz][ix + 1], fx * (1.0 - fz)),
        (prefs[iz + 1][ix], (1.0 - fx) * fz),
        (prefs[iz + 1][ix + 1], fx * fz),
    ];
    for (p, w) in corners {
        if p > 0 {
            out[(p - 1) as usize % 5] += w;
        }
    }
    out
}

/// Halves a level: each output sample averages the 3×3 neighbourhood around its position.
fn downsample(src: &Level) -> Level {
    let size = (src.size - 1) / 2 + 1;
    let mut texels = vec![Texel::default(); size * size];
    for j in 0..size {
        for i in 0..size {
            let (sx, sz) = (i * 2, j * 2);
            let mut h = 0.0;
            let mut rgb = [0.0f32; 3];
            let mut n = [0.0f32; 3];
            let mut wsum = 0.0;
            for dz in -1i32..=1 {
                for dx in -1i32..=1 {
                    let x = sx as i32 + dx;
                    let z = sz as i32 + dz;
                    if x < 0 || z < 0 || x >= src.size as i32 || z >= src.size as i32 {
                        continue;
                    }
                    let w = if dx == 0 && dz == 0 { 2.0 } else { 1.0 };
                    let t = &src.texels[z as usize * src.size + x as usize];
                    h += t.h * w;
                    for k in 0..3 {
                        rgb[k] += t.rgb[k] as f32 * w;
                        n[k] += t.n[k] as f32 * w;
                    }
                    wsum += w;
                }
            }
            let centre = &src.texels[sz * src.size + sx];
            texels[j * size + i] = Texel {
                // Keep exact heights on the chunk border so neighbouring chunks meet.
                h: if sx == 0 || sz == 0 || sx == src.size - 1 || sz == src.size - 1 {
                    centre.h
                } else {
                    h / wsum
                },
                rgb: [
                    (rgb[0] / wsum + 0.5) as u8,
                    (rgb[1] / wsum + 0.5) as u8,
                    (rgb[2] / wsum + 0.5) as u8,
                ],
                surface: centre.surface,
                n: [
                    (n[0] / wsum).round() as i8,
                    (n[1] / wsum).round() as i8,
                    (n[2] / wsum).round() as i8,
                ],
                _pad: 0,
            };
        }
    }
    Level {
        size,
        step: src.step * 2.0,
        texels,
    }
}

/// Scatters trees, rocks and the region's natural landmark over a chunk.
fn place_objects(g: &TerrainGen, chunk: &mut Chunk, weights: &[[f32; 5]]) {
    const CELL: usize = 4;
    let n = CHUNK + 1;
    let x0 = chunk.cx as f32 * CHUNK_M;
    let z0 = chunk.cz as f32 * CHUNK_M;
    let l0 = &chunk.levels[0];
    let mut objects = Vec::new();
    for j in 0..CHUNK / CELL {
        for i in 0..CHUNK / CELL {
            let gx = chunk.cx * (CHUNK / CELL) as i32 + i as i32;
            let gz = chunk.cz * (CHUNK / CELL) as i32 + j as i32;
            let h0 = hash2(g.s_objects, gx, gz);
            let h1 = hash2(g.s_objects ^ 0xBEEF, gx, gz);
            let lx = (i * CELL) as f32 + unit(h0) * CELL as f32;
            let lz = (j * CELL) as f32 + unit(h1) * CELL as f32;
            let si = (lx as usize).min(n - 1);
            let sj = (lz as usize).min(n - 1);
            let w = &weights[sj * n + si];
            let t = &l0.texels[sj * n + si];
            let h = chunk_height(l0, lx, lz);
            if h < 0.3 {
                continue;
            }
            let up = t.n[1] as f32 / 127.0;
            let r = unit(hash2(g.s_objects ^ 0x1234, gx, gz));
            let steep = up < 0.8;
            let high = h > 55.0;
            // Densities per 16 m² cell, blended by biome weight.
            let pick = |r: f32| -> Option<SpriteKind> {
                let mut acc = 0.0;
                let table: [(f32, SpriteKind); 10] = [
                    (w[1] * 0.36 + w[0] * 0.012, SpriteKind::Conifer),
                    (w[1] * 0.16 + w[0] * 0.03, SpriteKind::Broadleaf),
                    (w[0] * 0.07 + w[1] * 0.05 + w[4] * 0.02, SpriteKind::Bush),
                    (w[2] * 0.02, SpriteKind::Cactus),
                    (0.008 + w[2] * 0.012 + w[3] * 0.015, SpriteKind::Rock),
                    (w[3] * 0.10, SpriteKind::SnowFir),
                    (w[4] * 0.035 * (h < 4.0) as u8 as f32, SpriteKind::Palm),
                    (0.0, SpriteKind::Tower),
                    (0.0, SpriteKind::Monolith),
                    (0.0, SpriteKind::Arch),
                ];
                for (p, k) in table {
                    acc += p;
                    if r < acc {
                        return Some(k);
                    }
                }
                None
            };
            let Some(kind) = pick(r) else { continue };
            if (steep || high) && kind != SpriteKind::Rock {
                continue;
            }
            let h2 = hash2(g.s_objects ^ 0x777, gx, gz);
            objects.push(Object {
                x: x0 + lx,
                y: h,
                z: z0 + lz,
                kind,
                scale: 0.75 + 0.5 * unit(h2),
                flip: h2 & 1 == 1,
                tint: 0.85 + 0.3 * unit(h2.rotate_left(11)),
            });
        }
    }
    // One natural landmark in most 512 m regions.
    let rx = chunk.cx.div_euclid(LANDMARK_REGION);
    let rz = chunk.cz.div_euclid(LANDMARK_REGION);
    let lh = hash2(g.s_landmark, rx, rz);
    if unit(lh) < 0.7 {
        let span = (LANDMARK_REGION as f32 - 2.0) * CHUNK_M;
        let px = (rx * LANDMARK_REGION) as f32 * CHUNK_M + CHUNK_M + unit(hash2(lh, 1, 0)) * span;
        let pz = (rz * LANDMARK_REGION) as f32 * CHUNK_M + CHUNK_M + unit(hash2(lh, 2, 0)) * span;
        if chunk_of(px, pz) == (chunk.cx, chunk.cz) {
            let h = chunk_height(l0, px - x0, pz - z0);
            if h > 0.5 {
                let kind = SpriteKind::LANDMARKS[(hash2(lh, 3, 0) % 3) as usize];
                // Keep the landmark's footprint clear of trees.
                objects.retain(|o| (o.x - px).powi(2) + (o.z - pz).powi(2) > 64.0);
                objects.push(Object {
                    x: px,
                    y: h,
                    z: pz,
                    kind,
                    scale: 1.0,
                    flip: false,
                    tint: 1.0,
                });
            }
        }
    }
    chunk.objects = objects;
}

fn chunk_height(l: &Level, lx: f32, lz: f32) -> f32 {
    let max = (l.size - 1) as f32;
    let gx = lx.clamp(0.0, max - 0.001);
    let gz = lz.clamp(0.0, max - 0.001);
    let ix = gx as usize;
    let iz = gz as usize;
    let fx = gx - ix as f32;
    let fz = gz - iz as f32;
    let i = iz * l.size + ix;
    let a = l.texels[i].h + (l.texels[i + 1].h - l.texels[i].h) * fx;
    let b = l.texels[i + l.size].h + (l.texels[i + l.size + 1].h - l.texels[i + l.size].h) * fx;
    a + (b - a) * fz
}

/// Searches outward from `(x, z)` on a 64 m spiral for a point whose natural biome is `biome`
/// with weight at least `min_weight` and whose ground is above water; returns it.
pub fn find_biome(
    g: &TerrainGen,
    biome: Biome,
    x: f32,
    z: f32,
    min_weight: f32,
) -> Option<(f32, f32)> {
    for ring in 0..200i32 {
        for k in 0..(ring * 8).max(1) {
            let (dx, dz) = ring_point(ring, k);
            let px = x + dx as f32 * 64.0;
            let pz = z + dz as f32 * 64.0;
            let (b, w) = g.natural_biome(px, pz);
            if b == biome && w >= min_weight {
                let wts = g.biome_weights(px, pz, &[0.0; 5]);
                if g.height(px, pz, &wts) > 1.0 {
                    return Some((px, pz));
                }
            }
        }
    }
    None
}

/// The `k`-th point on the square ring at Chebyshev distance `ring`.
fn ring_point(ring: i32, k: i32) -> (i32, i32) {
    if ring == 0 {
        return (0, 0);
    }
    let side = 2 * ring;
    let (s, t) = (k / side, k % side);
    match s {
        0 => (-ring + t, -ring),
        1 => (ring, -ring + t),
        2 => (ring - t, ring),
        _ => (-ring, ring - t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_biomes_occur_in_reasonable_shares() {
        let g = TerrainGen::new(42);
        let mut counts = [0usize; 5];
        let n = 120;
        for j in 0..n {
            for i in 0..n {
                let (b, _) = g.natural_biome(i as f32 * 97.0 - 5800.0, j as f32 * 97.0 - 5800.0);
                counts[b as usize] += 1;
            }
        }
        let total = (n * n) as f32;
        for (b, c) in counts.iter().enumerate() {
            let share = *c as f32 / total;
            assert!(
                share > 0.07 && share < 0.45,
                "biome {b} has share {share}: {counts:?}"
            );
        }
        for b in Biome::ALL {
            assert!(find_biome(&g, b, 0.0, 0.0, 0.8).is_some(), "{b:?}");
        }
    }

    #[test]
    fn chunks_meet_without_seams_and_are_deterministic() {
        let mut t = Terrain::new(9);
        let a = t.height_at(63.999, 10.0);
        let b = t.height_at(64.0, 10.0);
        assert!((a - b).abs() < 0.05, "{a} {b}");
        let mut t2 = Terrain::new(9);
        assert_eq!(t2.height_at(64.0, 10.0), b);
        assert!(t.chunk(0, 0).is_some() && t.chunk(1, 0).is_some());
    }

    #[test]
    fn preference_changes_only_new_land() {
        let mut t = Terrain::new(3);
        let (x, z) = find_biome(t.generator(), Biome::Snow, 0.0, 0.0, 0.9).unwrap();
        let before = t.height_at(x, z);
        t.current_pref = Some(Biome::Desert);
        // Already generated land keeps its shape.
        assert_eq!(t.height_at(x, z), before);
        // Land far away is generated desert-like: sand surface on flat ground.
        let mut sandy = 0;
        for k in 0..20 {
            let s = t.surface_at(x + 2000.0 + k as f32 * 13.0, z + 1500.0);
            if s == Surface::Sand {
                sandy += 1;
            }
        }
        assert!(sandy >= 12, "{sandy}");
    }
}
