//! The pictures of the world's objects (trees, rocks, cacti, landmarks), painted procedurally
//! once per model and drawn as camera-facing billboards.
//!
//! Texels are RGBA8, rows top to bottom. Alpha 0 is transparent, [`ALPHA_EMISSIVE`] marks texels
//! that glow at night (lit windows, runes) and 255 is ordinary opaque surface.

use super::noise::{gradient, hash2, unit};

/// Alpha value of texels that glow in the dark.
pub const ALPHA_EMISSIVE: u8 = 200;

/// The kinds of object in the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum SpriteKind {
    /// A dark green conifer.
    Conifer,
    /// A round-crowned deciduous tree.
    Broadleaf,
    /// A low bush.
    Bush,
    /// A saguaro cactus.
    Cactus,
    /// A boulder.
    Rock,
    /// A snow-laden fir.
    SnowFir,
    /// A palm tree.
    Palm,
    /// Landmark: a stone tower with a red roof and windows lit at night.
    Tower,
    /// Landmark: a dark monolith with glowing runes.
    Monolith,
    /// Landmark: a ruined stone arch.
    Arch,
}

impl SpriteKind {
    /// All kinds, in index order.
    pub const ALL: [SpriteKind; 10] = [
        SpriteKind::Conifer,
        SpriteKind::Broadleaf,
        SpriteKind::Bush,
        SpriteKind::Cactus,
        SpriteKind::Rock,
        SpriteKind::SnowFir,
        SpriteKind::Palm,
        SpriteKind::Tower,
        SpriteKind::Monolith,
        SpriteKind::Arch,
    ];

    /// The three landmark kinds.
    pub const LANDMARKS: [SpriteKind; 3] =
        [SpriteKind::Tower, SpriteKind::Monolith, SpriteKind::Arch];

    /// Width and height in metres at scale 1.
    pub fn size(self) -> (f32, f32) {
        match self {
            SpriteKind::Conifer => (4.2, 9.5),
            SpriteKind::Broadleaf => (6.5, 8.0),
            SpriteKind::Bush => (2.2, 1.4),
            SpriteKind::Cactus => (1.8, 3.6),
            SpriteKind::Rock => (2.6, 1.7),
            SpriteKind::SnowFir => (4.2, 8.5),
            SpriteKind::Palm => (5.0, 8.0),
            SpriteKind::Tower => (8.0, 26.0),
            SpriteKind::Monolith => (4.0, 12.0),
            SpriteKind::Arch => (14.0, 12.0),
        }
    }

    /// Radius the player cannot walk into, metres at scale 1 (0 = walk through).
    pub fn collision_radius(self) -> f32 {
        match self {
            SpriteKind::Conifer | SpriteKind::SnowFir | SpriteKind::Broadleaf => 0.8,
            SpriteKind::Cactus | SpriteKind::Palm => 0.35,
            SpriteKind::Rock => 1.0,
            SpriteKind::Tower => 3.4,
            SpriteKind::Monolith => 1.7,
            SpriteKind::Bush | SpriteKind::Arch => 0.0,
        }
    }

    /// Whether this kind is a landmark (visible from far away).
    pub fn is_landmark(self) -> bool {
        matches!(
            self,
            SpriteKind::Tower | SpriteKind::Monolith | SpriteKind::Arch
        )
    }

    /// Texture size in texels (width, height).
    fn texels(self) -> (usize, usize) {
        match self {
            SpriteKind::Conifer | SpriteKind::SnowFir => (32, 64),
            SpriteKind::Broadleaf => (48, 56),
            SpriteKind::Bush | SpriteKind::Rock => (32, 24),
            SpriteKind::Cactus => (24, 48),
            SpriteKind::Palm => (40, 64),
            SpriteKind::Tower => (32, 96),
            SpriteKind::Monolith => (24, 64),
            SpriteKind::Arch => (64, 56),
        }
    }
}

/// One mip level of a sprite picture.
#[derive(Clone, Debug)]
pub struct SpriteLevel {
    /// Width in texels.
    pub w: usize,
    /// Height in texels.
    pub h: usize,
    /// RGBA8 texels, rows top to bottom.
    pub texels: Vec<[u8; 4]>,
}

/// A sprite picture with its mip chain (level 0 is the full size).
#[derive(Clone, Debug)]
pub struct SpriteImage {
    /// Mip levels, each half the size of the previous.
    pub levels: Vec<SpriteLevel>,
}

/// All sprite pictures, indexed by [`SpriteKind`].
#[derive(Clone, Debug)]
pub struct Sprites {
    images: Vec<SpriteImage>,
}

impl Default for Sprites {
    fn default() -> Self {
        Self::new()
    }
}

impl Sprites {
    /// Paints every sprite.
    pub fn new() -> Self {
        let images = SpriteKind::ALL.iter().map(|&k| paint(k)).collect();
        Self { images }
    }

    /// The picture of a kind.
    pub fn image(&self, kind: SpriteKind) -> &SpriteImage {
        &self.images[kind as usize]
    }
}

fn smoothstep(a: f32, b: f32, x: f32) -> f32 {
    let t = ((x - a) / (b - a)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Paints one kind: evaluates a shape function at each texel centre.
fn paint(kind: SpriteKind) -> SpriteImage {
    let (w, h) = kind.texels();
    let mut texels = vec![[0u8; 4]; w * h];
    let seed = 0xA11CE + kind as u32 * 7919;
    for row in 0..h {
        for col in 0..w {
            let u = (col as f32 + 0.5) / w as f32;
            let v = 1.0 - (row as f32 + 0.5) / h as f32;
            // Fine speckle and coarse mottling give the surfaces texture.
            let speck = unit(hash2(seed, col as i32, row as i32));
            let mottle = gradient(seed, u * 6.0, v * 9.0);
            if let Some((rgb, emissive)) = shape(kind, u, v, speck, mottle) {
                let c = |x: f32| (x.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
                texels[row * w + col] = [
                    c(rgb[0]),
                    c(rgb[1]),
                    c(rgb[2]),
                    if emissive { ALPHA_EMISSIVE } else { 255 },
                ];
            }
        }
    }
    let mut levels = vec![SpriteLevel { w, h, texels }];
    while levels.last().is_some_and(|l| l.w > 2 && l.h > 2) {
        levels.push(downsample(levels.last().unwrap()));
    }
    SpriteImage { levels }
}

/// Halves a level: averages the opaque texels of each 2×2 block; the block is opaque when at
/// least two of its four texels are.
fn downsample(src: &SpriteLevel) -> SpriteLevel {
    let w = src.w.div_ceil(2);
    let h = src.h.div_ceil(2);
    let mut texels = vec![[0u8; 4]; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut sum = [0u32; 3];
            let mut n = 0;
            let mut emissive = 0;
            for dy in 0..2 {
                for dx in 0..2 {
                    let sx = (2 * x + dx).min(src.w - 1);
                    let sy = (2 * y + dy).min(src.h - 1);
                    let t = src.texels[sy * src.w + sx];
                    if t[3] > 0 {
                        for c in 0..3 {
                            sum[c] += t[c] as u32;
                        }
                        n += 1;
                        if t[3] == ALPHA_EMISSIVE {
                            emissive += 1;
                        }
                    }
                }
            }
            if n >= 2 {
                texels[y * w + x] = [
                    (sum[0] / n) as u8,
                    (sum[1] / n) as u8,
                    (sum[2] / n) as u8,
                    if emissive * 2 > n {
                        ALPHA_EMISSIVE
                    } else {
                        255
                    },
                ];
            }
        }
    }
    SpriteLevel { w, h, texels }
}

fn mix3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn scale3(a: [f32; 3], s: f32) -> [f32; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}

/// Light from the upper left: brighter on the left of a round shape.
fn side_light(u: f32, centre: f32, half_width: f32) -> f32 {
    let x = ((u - centre) / half_width.max(1e-3)).clamp(-1.0, 1.0);
    0.78 + 0.32 * (-x * 0.8 + 0.2)
}

/// Where a shape function is evaluated: texel centre `(u, v)` (v = 0 at the base), the texel's
/// fine speckle and coarse mottling, and the surface grain made from the speckle.
#[derive(Clone, Copy)]
struct At {
    u: f32,
    v: f32,
    speck: f32,
    mottle: f32,
    grain: f32,
}

/// A texel's colour and whether it glows at night, or `None` where it is transparent.
type Texel = Option<([f32; 3], bool)>;

/// The colour of a kind at `(u, v)` (v = 0 at the base), or `None` where it is transparent.
fn shape(kind: SpriteKind, u: f32, v: f32, speck: f32, mottle: f32) -> Texel {
    let grain = 0.88 + 0.24 * speck;
    let at = At {
        u,
        v,
        speck,
        mottle,
        grain,
    };
    match kind {
        SpriteKind::Conifer | SpriteKind::SnowFir => conifer(kind == SpriteKind::SnowFir, at),
        SpriteKind::Broadleaf => broadleaf(at),
        SpriteKind::Bush => bush(at),
        SpriteKind::Cactus => cactus(at),
        SpriteKind::Rock => rock(at),
        SpriteKind::Palm => palm(at),
        SpriteKind::Tower => tower(at),
        SpriteKind::Monolith => monolith(at),
        SpriteKind::Arch => arch(at),
    }
}

/// Conifers in tiers of drooping branches; the snow fir with snow on every tier.
fn conifer(snow_laden: bool, at: At) -> Texel {
    let At {
        u,
        v,
        speck,
        mottle,
        grain,
    } = at;
    let trunk = (u - 0.5).abs() < 0.055 && v < 0.22;
    let fv = (v - 0.1) / 0.9;
    if (0.0..1.0).contains(&fv) {
        // Tiers of branches, each widest at its bottom, drooping at the tips.
        let tiers = 4.5;
        let layer = (fv * tiers).fract();
        let cone = 0.48 * (1.0 - fv).powf(0.85);
        let half = cone * (0.55 + 0.45 * (1.0 - layer)) + 0.025 * mottle;
        let d = (u - 0.5).abs();
        if d < half {
            let light = side_light(u, 0.5, half);
            let r = d / half;
            let edge_dark = 1.0 - 0.3 * smoothstep(0.6, 1.0, r);
            let under = 0.78 + 0.3 * layer;
            let base = [0.10, 0.27, 0.12];
            let mut c = scale3(base, light * edge_dark * grain * under);
            if snow_laden {
                // Snow lies on the top of every tier and weighs down the tips.
                let snowy = layer > 0.62 || (r > 0.7 && layer < 0.35) || speck > 0.97;
                if snowy {
                    c = scale3([0.90, 0.93, 0.98], (0.82 + 0.18 * layer) * light.min(1.05));
                }
            }
            return Some((c, false));
        }
    }
    trunk.then(|| (scale3([0.33, 0.21, 0.12], grain), false))
}

/// A broadleaf tree: a crown of overlapping round blobs on a wavy trunk.
fn broadleaf(at: At) -> Texel {
    let At {
        u,
        v,
        speck,
        mottle,
        grain,
    } = at;
    let trunk_half = 0.06 - 0.02 * v;
    let trunk = (u - 0.5 - 0.03 * (v * 6.0).sin()).abs() < trunk_half && v < 0.5;
    let blobs = [
        (0.5, 0.66, 0.30),
        (0.30, 0.55, 0.2),
        (0.70, 0.56, 0.21),
        (0.45, 0.83, 0.17),
        (0.62, 0.8, 0.18),
    ];
    let mut best = f32::MAX;
    for (bx, by, r) in blobs {
        let d = (((u - bx) / r).powi(2) + ((v - by) / (r * 0.86)).powi(2)).sqrt();
        best = best.min(d);
    }
    if best < 1.0 + 0.12 * mottle {
        let lit = 0.75 + 0.35 * (v - 0.45) - 0.25 * (u - 0.5) + 0.15 * mottle;
        let c = scale3(
            mix3([0.14, 0.33, 0.10], [0.32, 0.50, 0.16], speck * 0.6),
            lit * grain,
        );
        return Some((c, false));
    }
    trunk.then(|| {
        (
            scale3([0.36, 0.25, 0.15], grain * side_light(u, 0.5, 0.06)),
            false,
        )
    })
}

/// A bush: a low mottled dome with a few yellow flowers.
fn bush(at: At) -> Texel {
    let At {
        u,
        v,
        speck,
        mottle,
        grain,
    } = at;
    let d = (((u - 0.5) / 0.47).powi(2) + ((v - 0.05) / 0.9).powi(2)).sqrt();
    if d < 1.0 + 0.15 * mottle && v > 0.0 {
        if speck > 0.93 {
            return Some(([0.92, 0.82, 0.35], false));
        }
        let lit = 0.75 + 0.35 * v - 0.2 * (u - 0.5);
        return Some((scale3([0.20, 0.38, 0.13], lit * grain), false));
    }
    None
}

/// A saguaro: a ribbed body with one arm to each side.
fn cactus(at: At) -> Texel {
    let At { u, v, grain, .. } = at;
    let body = (u - 0.5).abs() < 0.13 && v < 0.92
        || ((u - 0.5).powi(2) / 0.017 + (v - 0.92).powi(2) / 0.004) < 1.0;
    let left_arm = (v > 0.38 && v < 0.46 && u > 0.2 && u < 0.5)
        || ((u - 0.24).abs() < 0.08 && v > 0.38 && v < 0.72);
    let right_arm = (v > 0.5 && v < 0.58 && u > 0.5 && u < 0.8)
        || ((u - 0.76).abs() < 0.08 && v > 0.5 && v < 0.82);
    if body || left_arm || right_arm {
        let centre = if body {
            0.5
        } else if left_arm {
            0.24
        } else {
            0.76
        };
        let stripe = if ((u - centre) * 60.0).sin() > 0.6 {
            0.85
        } else {
            1.0
        };
        let c = scale3(
            [0.24, 0.47, 0.22],
            side_light(u, centre, 0.13) * stripe * grain,
        );
        return Some((c, false));
    }
    None
}

/// A boulder: a lumpy dome with dark cracks.
fn rock(at: At) -> Texel {
    let At {
        u,
        v,
        speck,
        mottle,
        ..
    } = at;
    let top = 0.95 - 1.6 * (u - 0.45).powi(2) + 0.08 * mottle;
    if v < top && (u - 0.5).abs() < 0.49 {
        let lit = 0.7 + 0.4 * (v / top.max(0.1)) - 0.3 * (u - 0.5);
        let crack = if (mottle * 9.0).sin().abs() < 0.08 {
            0.7
        } else {
            1.0
        };
        let c = scale3(
            mix3([0.47, 0.45, 0.42], [0.56, 0.53, 0.49], speck),
            lit * crack,
        );
        return Some((c, false));
    }
    None
}

/// A palm: a leaning ringed trunk under drooping fronds.
fn palm(at: At) -> Texel {
    let At { u, v, grain, .. } = at;
    let trunk_x = 0.5 + 0.1 * (v * 1.2).powi(2);
    if (u - trunk_x).abs() < 0.035 + 0.02 * (1.0 - v) && v < 0.8 {
        let ring = if (v * 50.0).fract() < 0.25 { 0.8 } else { 1.0 };
        return Some((scale3([0.48, 0.36, 0.22], ring * grain), false));
    }
    let (cx, cy) = (0.5 + 0.1 * 0.96 * 0.96 * 1.44, 0.79);
    // Fronds: arcs radiating from the crown and drooping; distances in texels.
    let (tw, th) = (40.0, 64.0);
    for i in 0..10 {
        let a = -0.4 + i as f32 / 9.0 * (std::f32::consts::PI + 0.8);
        let (dx, dy) = (a.cos(), a.sin());
        for s in 0..16 {
            let t = s as f32 / 15.0;
            let px = cx + dx * t * 0.42;
            let py = cy + dy * t * 0.14 - t * t * (0.12 + 0.1 * (1.0 - dy.abs()));
            let du = (u - px) * tw;
            let dv = (v - py) * th;
            let r = 2.4 * (1.0 - 0.6 * t);
            if du * du + dv * dv < r * r {
                let c = scale3(
                    [0.20, 0.46, 0.15],
                    (0.75 + 0.35 * (1.0 - t)) * grain * (0.85 + 0.3 * dy),
                );
                return Some((c, false));
            }
        }
    }
    None
}

/// The tower landmark: brick walls with lit windows, battlements and a red roof.
fn tower(at: At) -> Texel {
    let At { u, v, grain, .. } = at;
    let half = 0.25 - 0.05 * v;
    if v < 0.84 && (u - 0.5).abs() < half {
        let window = (v * 6.0).fract() > 0.55
            && (v * 6.0).fract() < 0.85
            && (u - 0.5).abs() < 0.04
            && v > 0.2;
        if window {
            return Some(([1.0, 0.78, 0.38], true));
        }
        let brick = if (v * 40.0).fract() < 0.12 { 0.82 } else { 1.0 };
        let c = scale3([0.64, 0.61, 0.56], side_light(u, 0.5, half) * brick * grain);
        return Some((c, false));
    }
    let battlement = (0.84..0.88).contains(&v) && (u - 0.5).abs() < 0.25;
    if battlement {
        return Some((scale3([0.55, 0.53, 0.5], grain), false));
    }
    let roof = (u - 0.5).abs() < 0.25 * (1.0 - (v - 0.88) / 0.12);
    if v >= 0.88 && roof {
        let c = scale3([0.60, 0.20, 0.14], side_light(u, 0.5, 0.25) * grain);
        return Some((c, false));
    }
    None
}

/// The monolith landmark: a dark slab with a column of glowing runes.
fn monolith(at: At) -> Texel {
    let At {
        u, v, speck, grain, ..
    } = at;
    let top = 0.97 - 0.12 * (u - 0.2);
    if (u - 0.5).abs() < 0.3 && v < top {
        let rune_col = (u - 0.5).abs() < 0.08;
        let rune_row = (v * 14.0).fract();
        if rune_col && rune_row > 0.3 && rune_row < 0.7 && v > 0.15 && v < 0.85 && speck > 0.25 {
            return Some(([0.35, 0.9, 1.0], true));
        }
        let c = scale3([0.20, 0.20, 0.25], side_light(u, 0.5, 0.3) * grain);
        return Some((c, false));
    }
    None
}

/// The arch landmark: two pillars and a broken lintel of stone blocks.
fn arch(at: At) -> Texel {
    let At {
        u,
        v,
        mottle,
        grain,
        ..
    } = at;
    let stone = scale3([0.70, 0.66, 0.58], grain);
    let pillar = ((u - 0.17).abs() < 0.09 || (u - 0.83).abs() < 0.09) && v < 0.78;
    // The right end of the lintel has fallen away.
    let lintel = v > 0.72 && v < 0.9 && u > 0.06 && u < 0.82 + 0.05 * mottle;
    let arch_fill = v > 0.55 && v < 0.78 && u > 0.06 && u < 0.94 && {
        let r = ((u - 0.5) / 0.34).powi(2) + ((v - 0.55) / 0.2).powi(2);
        r > 1.0
    };
    if pillar || lintel || arch_fill {
        let block =
            if (v * 12.0).fract() < 0.1 || (u * 10.0 + (v * 12.0).floor() * 0.5).fract() < 0.06 {
                0.8
            } else {
                1.0
            };
        return Some((scale3(stone, block * (0.85 + 0.2 * v)), false));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sprite_has_visible_pixels_and_mips() {
        let s = Sprites::new();
        for k in SpriteKind::ALL {
            let img = s.image(k);
            let opaque = img.levels[0].texels.iter().filter(|t| t[3] > 0).count();
            let total = img.levels[0].texels.len();
            assert!(
                opaque > total / 10 && opaque < total,
                "{k:?}: {opaque}/{total}"
            );
            assert!(img.levels.len() >= 3, "{k:?}");
        }
        let tower = s.image(SpriteKind::Tower);
        assert!(
            tower.levels[0]
                .texels
                .iter()
                .any(|t| t[3] == ALPHA_EMISSIVE)
        );
    }
}
