//! The reference world as a [`WorldModel`]: the plugin can play it, datasets record it, and the
//! default model is trained to imitate it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::noise::sub_seed;
use super::player::{Camera, MAX_COORD, Player};
use super::render::{FAR, HALF_FOV, RenderAssets, Renderer, Scene};
use super::sky::Lighting;
use super::sound::{SineTable, SoundInput, Stems, Synth};
use super::sprites::SpriteKind;
use super::terrain::{Object, Surface, Terrain, TerrainGen, WATER_LEVEL, find_biome};
use super::weather::WeatherState;
use super::{Biome, DT, Weather, control_index as ci, reference_spec};
use crate::action::Controls;
use crate::error::Result;
use crate::frame::{AudioChunk, Frame};
use crate::rng::SplitMix64;
use crate::spec::ModelSpec;
use crate::state_codec::{StateReader, StateWriter};
use crate::world_model::{Prompt, Session, StepInput, StepOutput, StepTimings, WorldModel};

const STATE_MAGIC: &[u8; 4] = b"NREF";
const STATE_VERSION: u32 = 1;
const MAX_LANDMARKS: usize = 16;

/// What the reference world's sessions share: sprite pictures, clouds, the sine table.
#[derive(Debug, Default)]
pub struct SharedAssets {
    /// Pictures for the renderer.
    pub render: RenderAssets,
    /// Sine table for the synthesiser.
    pub sine: SineTable,
}

/// The procedural reference world at one resolution.
#[derive(Clone, Debug)]
pub struct ReferenceWorld {
    spec: ModelSpec,
    assets: Arc<SharedAssets>,
}

impl ReferenceWorld {
    /// The world rendered at `width`×`height` (any size of at least 1×1).
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            spec: reference_spec(width.max(1), height.max(1)),
            assets: Arc::new(SharedAssets::default()),
        }
    }

    /// Starts a session and returns it with its concrete type (for tools that inspect it).
    ///
    /// The world is procedural: the prompt's seed picks the world and the starting place (in the
    /// preferred biome when the prompt's controls name one); `start_frames` are not needed and
    /// are ignored.
    pub fn start_session(&self, prompt: &Prompt) -> Result<ReferenceSession> {
        let controls = self.spec.start_controls(prompt.controls.as_ref())?;
        Ok(ReferenceSession::new(
            self.spec.clone(),
            self.assets.clone(),
            prompt.seed,
            controls,
        ))
    }

    /// Restores a session from [`Session::save`] bytes, with its concrete type.
    pub fn restore_session(&self, state: &[u8]) -> Result<ReferenceSession> {
        ReferenceSession::restore(self.spec.clone(), self.assets.clone(), state)
    }
}

/// Start frames for a model trained on this world, for prompts that bring none: the first
/// `count` frames of the reference world at the prompt's seed and controls (the world's defaults
/// where the prompt's do not fit it), standing still, at `spec`'s resolution. The default model
/// takes it through [`DefaultModel::with_start_frames`](crate::default_model::DefaultModel::with_start_frames).
pub fn start_frames(prompt: &Prompt, spec: &ModelSpec, count: usize) -> Result<Vec<Frame>> {
    let world = ReferenceWorld::new(spec.width, spec.height);
    let controls = prompt
        .controls
        .as_ref()
        .and_then(|c| world.spec.sanitize_controls(c).ok());
    let mut session = world.start_session(&Prompt {
        seed: prompt.seed,
        start_frames: Vec::new(),
        controls: controls.clone(),
    })?;
    let input = StepInput {
        action: world.spec.neutral_action(),
        controls: controls.unwrap_or_else(|| world.spec.default_controls()),
    };
    (0..count)
        .map(|_| session.step_world(&input).map(|o| o.frame))
        .collect()
}

impl WorldModel for ReferenceWorld {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn start(&self, prompt: &Prompt) -> Result<Box<dyn Session>> {
        Ok(Box::new(self.start_session(prompt)?))
    }

    fn restore(&self, state: &[u8]) -> Result<Box<dyn Session>> {
        Ok(Box::new(self.restore_session(state)?))
    }
}

/// One walk through the reference world.
pub struct ReferenceSession {
    spec: ModelSpec,
    assets: Arc<SharedAssets>,
    seed: u64,
    frame: u64,
    rng: SplitMix64,
    controls: Controls,
    prev_landmark: bool,
    prev_storm: bool,
    player: Player,
    weather: WeatherState,
    terrain: Terrain,
    landmarks: Vec<Object>,
    synth: Synth,
    renderer: Renderer,
}

impl std::fmt::Debug for ReferenceSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceSession")
            .field("seed", &self.seed)
            .field("frame", &self.frame)
            .field("camera", &self.player.camera())
            .finish_non_exhaustive()
    }
}

/// A starting place for a seed: somewhere on land, in the preferred biome when there is one.
fn start_place(seed: u64, pref: Option<Biome>) -> (f32, f32, f32) {
    let mut rng = SplitMix64::hashed(seed ^ 0x57A7);
    let g = TerrainGen::new(seed);
    let mut x = rng.range(-20_000.0, 20_000.0).round();
    let mut z = rng.range(-20_000.0, 20_000.0).round();
    let yaw = rng.range(0.0, std::f32::consts::TAU);
    if let Some(b) = pref
        && let Some(p) = find_biome(&g, b, x, z, 0.7)
    {
        (x, z) = p;
    }
    // Step out of water onto land.
    'search: for ring in 0..60 {
        for k in 0..(ring * 8).max(1) {
            let a = k as f32 / (ring * 8).max(1) as f32 * std::f32::consts::TAU;
            let (px, pz) = (
                x + a.cos() * ring as f32 * 24.0,
                z + a.sin() * ring as f32 * 24.0,
            );
            let w = g.biome_weights(px, pz, &pref_vector(pref));
            if g.height(px, pz, &w) > 1.0 {
                (x, z) = (px, pz);
                break 'search;
            }
        }
    }
    (x, z, yaw)
}

fn pref_vector(pref: Option<Biome>) -> [f32; 5] {
    let mut v = [0.0; 5];
    if let Some(b) = pref {
        v[b as usize] = 1.0;
    }
    v
}

impl ReferenceSession {
    fn new(spec: ModelSpec, assets: Arc<SharedAssets>, seed: u64, controls: Controls) -> Self {
        let c = &controls.values;
        let pref = Biome::preference_from_control(c[ci::BIOME]);
        let weather =
            WeatherState::settled(Weather::from_control(c[ci::WEATHER]), c[ci::TIME_OF_DAY]);
        let mut terrain = Terrain::new(seed);
        terrain.current_pref = pref;
        let (x, z, yaw) = start_place(seed, pref);
        let player = Player::new(x, z, yaw, &mut terrain);
        let renderer = Renderer::new(spec.width, spec.height);
        Self {
            spec,
            assets,
            seed,
            frame: 0,
            rng: SplitMix64::hashed(seed),
            controls,
            prev_landmark: false,
            prev_storm: false,
            player,
            weather,
            terrain,
            landmarks: Vec::new(),
            synth: Synth::new(sub_seed(seed, 77)),
            renderer,
        }
    }

    /// The camera (eye position and direction) after the last step.
    pub fn camera(&self) -> Camera {
        self.player.camera()
    }

    /// The camera pose as `[x, y, z, yaw, pitch]` (metres and radians), as datasets store it.
    pub fn pose(&self) -> [f32; 5] {
        let c = self.camera();
        [c.x, c.y, c.z, c.yaw, c.pitch]
    }

    /// The player's body.
    pub fn player(&self) -> &Player {
        &self.player
    }

    /// The current weather, time of day and storm state.
    pub fn weather(&self) -> &WeatherState {
        &self.weather
    }

    /// The land around the player.
    pub fn terrain(&self) -> &Terrain {
        &self.terrain
    }

    /// Mutable access to the land (for tools that query heights ahead).
    pub fn terrain_mut(&mut self) -> &mut Terrain {
        &mut self.terrain
    }

    /// Landmarks the director has placed.
    pub fn landmarks(&self) -> &[Object] {
        &self.landmarks
    }

    /// Levels of each sound source in the last frame's chunk.
    pub fn stems(&self) -> Stems {
        self.synth.stems()
    }

    /// The session's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Controls applied at the last step (the start controls before the first).
    pub fn controls(&self) -> &Controls {
        &self.controls
    }

    fn spawn_landmark(&mut self) {
        let kind = SpriteKind::LANDMARKS[self.rng.below(3) as usize];
        let turn = self.rng.range(-0.15, 0.15);
        let yaw = self.player.yaw + turn;
        let (fx, fz) = (yaw.sin(), yaw.cos());
        let mut spot = None;
        for d in [55.0f32, 65.0, 80.0, 45.0, 100.0] {
            let (x, z) = (self.player.x + fx * d, self.player.z + fz * d);
            let h = self.terrain.height_at(x, z);
            if h > WATER_LEVEL + 0.3 {
                spot = Some((x, z, h));
                break;
            }
        }
        let (x, z, h) = spot.unwrap_or_else(|| {
            let (x, z) = (self.player.x + fx * 55.0, self.player.z + fz * 55.0);
            (x, z, self.terrain.height_at(x, z).max(WATER_LEVEL))
        });
        if self.landmarks.len() >= MAX_LANDMARKS {
            self.landmarks.remove(0);
        }
        self.landmarks.push(Object {
            x,
            y: h,
            z,
            kind,
            scale: 1.3,
            flip: false,
            tint: 1.0,
        });
    }

    /// What the player hears around them: water, vegetation and snow within 20 m.
    fn surroundings(&mut self) -> (f32, f32, f32, f32) {
        let (px, pz) = (self.player.x, self.player.z);
        let (mut water, mut veg, mut trees, mut cold) = (0, 0, 0, 0);
        let mut n = 0;
        for (r, wet) in [(5.0f32, 3), (15.0, 2), (35.0, 1)] {
            for k in 0..8 {
                let a = k as f32 * std::f32::consts::FRAC_PI_4;
                let (x, z) = (px + a.cos() * r, pz + a.sin() * r);
                let h = self.terrain.height_at(x, z);
                let s = self.terrain.surface_at(x, z);
                n += 1;
                if h < WATER_LEVEL {
                    // Nearer water counts more.
                    water += wet;
                }
                match s {
                    Surface::Grass => veg += 1,
                    Surface::Leaves => {
                        veg += 1;
                        trees += 1
                    }
                    Surface::Snow => cold += 1,
                    _ => {}
                }
            }
        }
        let f = |c: i32| c as f32 / n as f32;
        ((water as f32 / 16.0).min(1.0), f(veg), f(trees), f(cold))
    }

    /// Advances the world by one frame.
    pub fn step_world(&mut self, input: &StepInput) -> Result<StepOutput> {
        let t0 = Instant::now();
        let action = self.spec.sanitize_action(&input.action)?;
        let controls = self.spec.sanitize_controls(&input.controls)?;
        let c = &controls.values;
        let weather = Weather::from_control(c[ci::WEATHER]);
        self.terrain.current_pref = Biome::preference_from_control(c[ci::BIOME]);
        let landmark = c[ci::LANDMARK] >= 0.5 && !self.prev_landmark;
        let storm = c[ci::STORM] >= 0.5 && !self.prev_storm;
        self.prev_landmark = c[ci::LANDMARK] >= 0.5;
        self.prev_storm = c[ci::STORM] >= 0.5;

        let moved = self
            .player
            .step(&action.values, &mut self.terrain, &self.landmarks, DT);
        let thunder = self
            .weather
            .step(weather, c[ci::TIME_OF_DAY], storm, &mut self.rng, DT);
        if landmark {
            self.spawn_landmark();
        }
        let lighting = Lighting::new(&self.weather);
        let camera = self.player.camera();
        self.terrain
            .prepare_view(camera.x, camera.z, camera.yaw, HALF_FOV, FAR);
        let t1 = Instant::now();

        let mut rgba = vec![0u8; self.spec.frame_bytes()];
        let scene = Scene {
            camera,
            lighting: &lighting,
            weather: &self.weather,
            terrain: &self.terrain,
            extra_objects: &self.landmarks,
            time: self.frame as f32 * DT,
            frame: self.frame,
            seed: sub_seed(self.seed, 31),
        };
        self.renderer.render(&scene, &self.assets.render, &mut rgba);
        let t2 = Instant::now();

        let (near_water, vegetation, trees, cold) = self.surroundings();
        let sound_in = SoundInput {
            footsteps: moved.footsteps,
            landed: moved.landed,
            swimming: moved.swimming,
            altitude: camera.y - WATER_LEVEL,
            near_water,
            daylight: lighting.daylight,
            rain: self.weather.rain,
            snow: self.weather.snow,
            storm: self.weather.storm,
            wind: self.weather.wind,
            vegetation,
            trees,
            cold,
            thunder,
        };
        let mut samples = Vec::new();
        self.synth
            .render(&sound_in, &self.assets.sine, &mut samples);
        let t3 = Instant::now();

        self.controls = controls;
        self.frame += 1;
        Ok(StepOutput {
            frame: Frame {
                width: self.spec.width,
                height: self.spec.height,
                rgba,
            },
            audio: AudioChunk {
                sample_rate: self.spec.audio.sample_rate,
                channels: self.spec.audio.channels,
                samples,
            },
            timings: StepTimings {
                stages: vec![("world", t1 - t0), ("video", t2 - t1), ("audio", t3 - t2)],
            },
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut w = StateWriter::new(STATE_MAGIC);
        w.u32(STATE_VERSION);
        w.u64(self.seed);
        w.u64(self.frame);
        w.u64(self.rng.state);
        w.f32s(&self.controls.values);
        w.bool(self.prev_landmark);
        w.bool(self.prev_storm);
        self.player.write(&mut w);
        self.weather.write(&mut w);
        let prefs = self.terrain.preferences();
        w.u32(prefs.len() as u32);
        for (&(x, z), &p) in prefs {
            w.i32(x);
            w.i32(z);
            w.u8(p);
        }
        w.u32(self.landmarks.len() as u32);
        for o in &self.landmarks {
            w.f32(o.x);
            w.f32(o.y);
            w.f32(o.z);
            w.u8(o.kind as u8);
            w.f32(o.scale);
        }
        self.synth.write(&mut w);
        w.finish()
    }

    fn restore(spec: ModelSpec, assets: Arc<SharedAssets>, bytes: &[u8]) -> Result<Self> {
        let (mut r, _) = StateReader::open(bytes, "reference-world", &[STATE_MAGIC])?;
        r.version(STATE_VERSION)?;
        let seed = r.u64()?;
        let frame = r.u64()?;
        let rng = SplitMix64::from_state(r.u64()?);
        let controls = Controls::new(r.f32s(64)?);
        let controls = spec.sanitize_controls(&controls)?;
        let prev_landmark = r.bool()?;
        let prev_storm = r.bool()?;
        let player = Player::read(&mut r)?;
        let weather = WeatherState::read(&mut r)?;
        let n = r.len(1 << 22)?;
        let mut prefs = BTreeMap::new();
        for _ in 0..n {
            let x = r.i32()?;
            let z = r.i32()?;
            let p = r.u8()?;
            if p > 5 {
                return Err(r.error(format!("biome preference {p} out of range")));
            }
            prefs.insert((x, z), p);
        }
        let n = r.len(MAX_LANDMARKS)?;
        let mut landmarks = Vec::with_capacity(n);
        for _ in 0..n {
            let (x, y, z) = (r.f32()?, r.f32()?, r.f32()?);
            if ![x, y, z].iter().all(|v| v.abs() <= MAX_COORD) {
                return Err(r.error(format!("landmark at ({x}, {y}, {z}) is out of the world")));
            }
            let k = r.u8()? as usize;
            let kind = *SpriteKind::ALL
                .get(k)
                .filter(|k| k.is_landmark())
                .ok_or_else(|| r.error(format!("landmark kind {k} unknown")))?;
            landmarks.push(Object {
                x,
                y,
                z,
                kind,
                scale: r.f32()?,
                flip: false,
                tint: 1.0,
            });
        }
        let synth = Synth::read(&mut r)?;
        r.finish()?;
        let mut terrain = Terrain::new(seed);
        terrain.set_preferences(prefs);
        terrain.current_pref = Biome::preference_from_control(controls.values[ci::BIOME]);
        let renderer = Renderer::new(spec.width, spec.height);
        Ok(Self {
            spec,
            assets,
            seed,
            frame,
            rng,
            controls,
            prev_landmark,
            prev_storm,
            player,
            weather,
            terrain,
            landmarks,
            synth,
            renderer,
        })
    }
}

impl Session for ReferenceSession {
    fn step(&mut self, input: &StepInput) -> Result<StepOutput> {
        self.step_world(input)
    }

    fn save(&self) -> Result<Vec<u8>> {
        Ok(self.encode())
    }

    fn frame_index(&self) -> u64 {
        self.frame
    }
}
