//! First-person movement: walking with momentum, sprinting, turning and looking, jumping with
//! gravity, following the ground, wading and swimming in water, and not walking through trees.

use super::terrain::{Object, Surface, Terrain, WATER_LEVEL};
use super::{LOOK_RATE, TURN_RATE, action_index as ai};
use crate::error::Result;
use crate::state_codec::{StateReader as Reader, StateWriter as Writer};

/// Eye height above the feet, metres.
pub const EYE_HEIGHT: f32 = 1.65;
/// Largest look up or down, radians (about 34 degrees).
pub const MAX_PITCH: f32 = 0.6;
/// Walking speed, m/s.
pub const WALK_SPEED: f32 = 3.6;
/// Sprinting speed, m/s.
pub const SPRINT_SPEED: f32 = 7.0;
/// Swimming speed, m/s.
pub const SWIM_SPEED: f32 = 1.6;
/// Water deeper than this (metres) is swum in; the head stays above the surface.
pub const SWIM_DEPTH: f32 = 1.25;
const GRAVITY: f32 = 13.0;
/// The largest world coordinate a saved session may hold (see [`Player::read`]).
pub(crate) const MAX_COORD: f32 = 1e6;
const JUMP_SPEED: f32 = 4.6;

/// Where the camera is and where it looks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Camera {
    /// World x, metres.
    pub x: f32,
    /// Eye height, metres.
    pub y: f32,
    /// World z, metres.
    pub z: f32,
    /// Heading, radians; 0 looks along +z, positive turns right (toward +x).
    pub yaw: f32,
    /// Pitch, radians; positive looks up.
    pub pitch: f32,
}

/// What happened during one movement step (for sound).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MoveEvents {
    /// Footsteps: (time within the step 0..1, surface, loudness 0..1).
    pub footsteps: Vec<(f32, Surface, f32)>,
    /// Landing after a fall or jump, with its strength 0..1.
    pub landed: Option<f32>,
    /// Whether a jump started.
    pub jumped: bool,
    /// Horizontal speed, m/s.
    pub speed: f32,
    /// Whether the player swims.
    pub swimming: bool,
}

/// The player's body.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Player {
    /// Feet position x, metres.
    pub x: f32,
    /// Feet height, metres.
    pub y: f32,
    /// Feet position z, metres.
    pub z: f32,
    /// Velocity, m/s.
    pub vel: [f32; 3],
    /// Heading, radians, in `[0, 2π)`.
    pub yaw: f32,
    /// Pitch, radians.
    pub pitch: f32,
    /// Standing on the ground (can jump).
    pub on_ground: bool,
    /// Stride phase: one footstep per whole unit.
    pub stride: f32,
    /// Head bob offset, metres.
    pub bob: f32,
}

impl Player {
    /// A player standing on the ground at `(x, z)` looking along `yaw`.
    pub fn new(x: f32, z: f32, yaw: f32, terrain: &mut Terrain) -> Self {
        let h = terrain.height_at(x, z).max(WATER_LEVEL - SWIM_DEPTH);
        Self {
            x,
            y: h,
            z,
            vel: [0.0; 3],
            yaw: yaw.rem_euclid(std::f32::consts::TAU),
            pitch: 0.0,
            on_ground: true,
            stride: 0.0,
            bob: 0.0,
        }
    }

    /// The camera at the player's eyes.
    pub fn camera(&self) -> Camera {
        Camera {
            x: self.x,
            y: self.y + EYE_HEIGHT + self.bob,
            z: self.z,
            yaw: self.yaw,
            pitch: self.pitch,
        }
    }

    /// Moves by one step of `dt` seconds under `action` (the reference world's channel order).
    /// `extra` are objects outside the terrain (landmarks the director placed).
    pub fn step(
        &mut self,
        action: &[f32],
        terrain: &mut Terrain,
        extra: &[Object],
        dt: f32,
    ) -> MoveEvents {
        let a = |i: usize| action.get(i).copied().unwrap_or(0.0);
        let mut ev = MoveEvents::default();
        self.yaw = (self.yaw + a(ai::TURN) * TURN_RATE * dt).rem_euclid(std::f32::consts::TAU);
        self.pitch = (self.pitch + a(ai::LOOK) * LOOK_RATE * dt).clamp(-MAX_PITCH, MAX_PITCH);

        let ground = terrain.height_at(self.x, self.z);
        self.steer(
            a(ai::MOVE_FORWARD),
            a(ai::STRAFE),
            a(ai::SPRINT) >= 0.5,
            WATER_LEVEL - ground,
            dt,
        );
        self.move_horizontally(terrain, ground, dt);
        self.push_out_of_objects(terrain, extra);

        // Vertical: jump, gravity, ground and water.
        let ground = terrain.height_at(self.x, self.z);
        let swimming = WATER_LEVEL - ground > SWIM_DEPTH;
        self.jump_and_fall(a(ai::JUMP) >= 0.5, ground, swimming, dt, &mut ev);

        // Strides, footsteps and the head bob.
        let hs = (self.vel[0] * self.vel[0] + self.vel[2] * self.vel[2]).sqrt();
        ev.speed = hs;
        ev.swimming = swimming;
        self.advance_stride(terrain, ground, hs, dt, &mut ev);
        self.head_bob(hs, swimming, ev.landed);
        ev
    }

    /// Accelerates the horizontal velocity toward what the move and strafe inputs ask for:
    /// slower backwards, sprinting only forwards, wading slows and swimming is slowest, and
    /// there is little control in the air. `depth` is the water depth at the feet.
    fn steer(&mut self, forward: f32, strafe: f32, sprint_held: bool, depth: f32, dt: f32) {
        let swimming = depth > SWIM_DEPTH;
        let (fx, fz) = (self.yaw.sin(), self.yaw.cos());
        let (rx, rz) = (fz, -fx);
        let mut mf = forward;
        if mf < 0.0 {
            mf *= 0.6;
        }
        let st = strafe * 0.85;
        let len = (mf * mf + st * st).sqrt();
        let (mf, st) = if len > 1.0 {
            (mf / len, st / len)
        } else {
            (mf, st)
        };
        let mut speed = if sprint_held && mf > 0.3 {
            SPRINT_SPEED
        } else {
            WALK_SPEED
        };
        if swimming {
            speed = SWIM_SPEED;
        } else if depth > 0.3 {
            speed *= 0.6;
        }
        let want = [(fx * mf + rx * st) * speed, (fz * mf + rz * st) * speed];
        let accel = if self.on_ground || swimming {
            12.0
        } else {
            2.5
        } * dt;
        for (k, w) in [(0usize, want[0]), (2usize, want[1])] {
            let d = (w - self.vel[k]).clamp(-accel, accel);
            self.vel[k] += d;
        }
    }

    /// Horizontal move, refused up cliffs (the horizontal velocity is damped instead).
    /// `ground` is the height under the feet before the move.
    fn move_horizontally(&mut self, terrain: &mut Terrain, ground: f32, dt: f32) {
        let nx = self.x + self.vel[0] * dt;
        let nz = self.z + self.vel[2] * dt;
        let new_ground = terrain.height_at(nx, nz);
        let step_len = ((nx - self.x).powi(2) + (nz - self.z).powi(2)).sqrt();
        let climb = new_ground - ground;
        if self.on_ground && climb > 0.05 && climb > 1.3 * step_len.max(1e-4) {
            self.vel[0] *= 0.3;
            self.vel[2] *= 0.3;
        } else {
            self.x = nx;
            self.z = nz;
        }
    }

    /// Trees, rocks and landmarks push the player out, and stop the velocity into them.
    fn push_out_of_objects(&mut self, terrain: &mut Terrain, extra: &[Object]) {
        for cz in -1..=1 {
            for cx in -1..=1 {
                let (pcx, pcz) = super::terrain::chunk_of(self.x, self.z);
                terrain.ensure(pcx + cx, pcz + cz);
            }
        }
        let mut near = terrain.objects_near(self.x, self.z, 5.0);
        near.extend(
            extra
                .iter()
                .copied()
                .filter(|o| (o.x - self.x).abs() < 8.0 && (o.z - self.z).abs() < 8.0),
        );
        for o in near {
            let r = o.kind.collision_radius() * o.scale;
            if r <= 0.0 {
                continue;
            }
            let min = r + 0.3;
            let (dx, dz) = (self.x - o.x, self.z - o.z);
            let d = (dx * dx + dz * dz).sqrt();
            if d < min {
                let (ux, uz) = if d > 1e-4 {
                    (dx / d, dz / d)
                } else {
                    (1.0, 0.0)
                };
                self.x = o.x + ux * min;
                self.z = o.z + uz * min;
                // Remove the velocity component into the obstacle.
                let vn = self.vel[0] * ux + self.vel[2] * uz;
                if vn < 0.0 {
                    self.vel[0] -= vn * ux;
                    self.vel[2] -= vn * uz;
                }
            }
        }
    }

    /// Jumping (from the ground, not while swimming), gravity, and landing on the ground or
    /// floating at swimming depth; records a jump or a hard landing in `ev`.
    fn jump_and_fall(
        &mut self,
        jump: bool,
        ground: f32,
        swimming: bool,
        dt: f32,
        ev: &mut MoveEvents,
    ) {
        let floor = ground.max(WATER_LEVEL - SWIM_DEPTH);
        if self.on_ground && !swimming && jump {
            self.vel[1] = JUMP_SPEED;
            self.on_ground = false;
            ev.jumped = true;
        }
        let was_on_ground = self.on_ground;
        self.vel[1] -= GRAVITY * dt;
        self.y += self.vel[1] * dt;
        if self.y <= floor {
            if !was_on_ground && self.vel[1] < -2.0 {
                ev.landed = Some(((-self.vel[1] - 2.0) / 6.0).clamp(0.2, 1.0));
            }
            self.y = floor;
            self.vel[1] = 0.0;
            self.on_ground = true;
        } else if was_on_ground && !ev.jumped && self.y - floor < 0.7 {
            // Walking downhill keeps the feet on the ground.
            self.y = floor;
            self.vel[1] = 0.0;
            self.on_ground = true;
        } else {
            self.on_ground = false;
        }
    }

    /// Advances the stride at horizontal speed `hs` and adds a footstep (on the surface under
    /// the feet, or water where it is shallow) each time a stride completes.
    fn advance_stride(
        &mut self,
        terrain: &mut Terrain,
        ground: f32,
        hs: f32,
        dt: f32,
        ev: &mut MoveEvents,
    ) {
        if self.on_ground && hs > 0.4 {
            let stride_len = if hs > 5.0 { 1.05 } else { 0.75 };
            let adv = hs * dt / stride_len;
            let before = self.stride;
            self.stride += adv;
            if self.stride.floor() > before.floor() {
                let at = ((self.stride.floor() - before) / adv).clamp(0.0, 1.0);
                let surface = if WATER_LEVEL - ground > 0.15 {
                    Surface::Water
                } else {
                    terrain.surface_at(self.x, self.z)
                };
                ev.footsteps
                    .push((at, surface, (0.55 + 0.45 * hs / SPRINT_SPEED).min(1.0)));
            }
            if self.stride > 1000.0 {
                self.stride -= 1000.0;
            }
        }
    }

    /// Eases the head bob toward its target: stepping while walking, a slow sway while
    /// swimming, a dip on landing.
    fn head_bob(&mut self, hs: f32, swimming: bool, landed: Option<f32>) {
        let target_bob = if self.on_ground && hs > 0.4 && !swimming {
            0.05 * (hs / WALK_SPEED).min(1.6)
                * ((self.stride.fract() * std::f32::consts::PI).sin() - 0.6)
        } else if swimming {
            0.06 * (self.stride * 0.7 + self.x * 0.1).sin()
        } else {
            0.0
        };
        self.bob += (target_bob - self.bob) * 0.6;
        if let Some(s) = landed {
            self.bob -= 0.08 * s;
        }
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        for v in [
            self.x,
            self.y,
            self.z,
            self.vel[0],
            self.vel[1],
            self.vel[2],
            self.yaw,
            self.pitch,
            self.stride,
            self.bob,
        ] {
            w.f32(v);
        }
        w.bool(self.on_ground);
    }

    /// Reads a player written by [`write`](Self::write), refusing positions, speeds and angles
    /// no session reaches.
    pub(crate) fn read(r: &mut Reader) -> Result<Self> {
        let mut v = [0.0f32; 10];
        for x in &mut v {
            *x = r.f32()?;
        }
        // A real session stays far inside these (a day of sprinting covers under 10⁶ units);
        // beyond them the terrain's integer cell indices would overflow.
        let limits = [
            MAX_COORD, MAX_COORD, MAX_COORD, 1e3, 1e3, 1e3, 1e4, 1e4, 1e6, 1e6,
        ];
        if let Some(i) = (0..v.len()).find(|&i| v[i].is_nan() || v[i].abs() > limits[i]) {
            return Err(r.error(format!(
                "player value {i} is {} (limit ±{})",
                v[i], limits[i]
            )));
        }
        Ok(Self {
            x: v[0],
            y: v[1],
            z: v[2],
            vel: [v[3], v[4], v[5]],
            yaw: v[6],
            pitch: v[7],
            stride: v[8],
            bob: v[9],
            on_ground: r.bool()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_forward_follows_ground_and_jumps() {
        let mut t = Terrain::new(5);
        let mut p = Player::new(10.0, 10.0, 0.0, &mut t);
        let fwd = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let mut steps = 0;
        for _ in 0..40 {
            steps += p.step(&fwd, &mut t, &[], 0.05).footsteps.len();
            let g = t.height_at(p.x, p.z).max(WATER_LEVEL - SWIM_DEPTH);
            assert!((p.y - g).abs() < 0.75, "feet {} ground {g}", p.y);
        }
        assert!(p.z > 14.0, "moved to z={}", p.z);
        assert!(steps >= 4, "{steps} footsteps");
        let jump = [0.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let ev = p.step(&jump, &mut t, &[], 0.05);
        assert!(ev.jumped || !p.on_ground);
        let mut landed = false;
        for _ in 0..30 {
            landed |= p.step(&[0.0; 6], &mut t, &[], 0.05).landed.is_some();
        }
        assert!(landed && p.on_ground);
    }

    #[test]
    fn turning_right_increases_yaw() {
        let mut t = Terrain::new(5);
        let mut p = Player::new(0.0, 0.0, 0.0, &mut t);
        for _ in 0..20 {
            p.step(&[0.0, 0.0, 1.0, 0.0, 0.0, 0.0], &mut t, &[], 0.05);
        }
        assert!(
            (p.yaw - std::f32::consts::FRAC_PI_2).abs() < 1e-3,
            "{}",
            p.yaw
        );
    }
}
