//! The garden: a small first-person 3D scene built from Bevy meshes and lights (a tiled ground,
//! stone pillars, houses, trees, a sun and fog), the real game the capture example records and
//! whose neural twin a model trained on that capture is.
//!
//! It is driven like any game that uses bevy_nacre's input: the player camera carries an
//! [`ActionState`] with the first-person channels (`move_forward`, `strafe`, `turn`, `look`,
//! `jump`, `sprint`) and a [`ViewControls`] with the garden's two director controls
//! (`time_of_day`, which moves the sun, and `fog`). Everything moves by `Time::delta`, so a
//! capture's fixed clock records the same episode on any machine.

use bevy::prelude::*;
use bevy_nacre::prelude::*;
use bevy_nacre::rng::SplitMix64;
use bevy_nacre::spec::{AudioFormat, ControlSpec, first_person};

/// Half the side of the square the player may walk in, in metres.
const BOUNDS: f32 = 60.0;
/// Eye height above the ground, in metres.
const EYE: f32 = 1.7;
/// Walking speed in metres a second (twice that sprinting).
const WALK_SPEED: f32 = 3.0;
/// Turning and looking rates at full input, radians a second: the first-person layout's (the
/// reference world's), which the explorer's half turns assume.
const TURN_RATE: f32 = bevy_nacre::reference::TURN_RATE;
const LOOK_RATE: f32 = bevy_nacre::reference::LOOK_RATE;
/// The largest pitch up or down, radians.
const MAX_PITCH: f32 = 0.6;
/// Jump speed and gravity, metres a second and metres a second squared.
const JUMP_SPEED: f32 = 4.0;
const GRAVITY: f32 = 12.0;

/// The garden's layout: the first-person actions, `time_of_day` (hours, cyclic) and `fog`
/// (0 clear to 1 thick), at `width × height` and 20 frames a second with the default model's
/// sound format (the garden itself is silent: its captures store silence).
pub fn spec(width: u32, height: u32) -> ModelSpec {
    ModelSpec {
        name: "garden".into(),
        version: "1".into(),
        width,
        height,
        fps: 20.0,
        actions: first_person::action_channels(),
        controls: vec![
            ControlSpec::cyclic("time_of_day", 0.0, 24.0, 12.0),
            ControlSpec::continuous("fog", 0.0, 1.0, 0.2),
        ],
        audio: AudioFormat {
            sample_rate: 16_000,
            channels: 1,
            samples_per_frame: 800,
        },
        context_frames: 2,
    }
}

/// Builds the garden and moves its player.
pub struct GardenPlugin;

impl Plugin for GardenPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(GlobalAmbientLight {
            color: Color::WHITE,
            brightness: 400.0,
            ..default()
        })
        .add_systems(Startup, build_garden)
        .add_systems(Update, (move_player.in_set(MovePlayer), light_the_garden));
    }
}

/// The system that moves the player (order episode resets before it).
#[derive(SystemSet, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MovePlayer;

/// The player: its camera's yaw, pitch and vertical speed.
#[derive(Component, Default)]
pub struct Player {
    /// Heading, radians (0 looks along -Z).
    pub yaw: f32,
    /// Pitch, radians (up is positive).
    pub pitch: f32,
    /// Vertical speed, metres a second.
    pub climb: f32,
}

/// The sun.
#[derive(Component)]
struct Sun;

/// The player's camera: a 3D camera with the player's components and fog. Spawn it (with a
/// `Capture` or a render target of your choice) and the garden moves it.
pub fn player_camera() -> impl Bundle {
    (
        Camera3d::default(),
        Msaa::Off,
        Projection::Perspective(PerspectiveProjection {
            fov: 70f32.to_radians(),
            ..default()
        }),
        Transform::from_xyz(0.0, EYE, 0.0),
        Player::default(),
        DistanceFog {
            color: Color::srgb(0.6, 0.7, 0.85),
            falloff: FogFalloff::Linear {
                start: 20.0,
                end: 90.0,
            },
            ..default()
        },
    )
}

/// Puts the player at the start of episode `seed`: a random place and heading, level view.
pub fn reset_player(seed: u64, player: &mut Player, transform: &mut Transform) {
    let mut rng = SplitMix64::hashed(seed);
    let x = rng.range(-0.6 * BOUNDS, 0.6 * BOUNDS);
    let z = rng.range(-0.6 * BOUNDS, 0.6 * BOUNDS);
    *player = Player {
        yaw: rng.range(-std::f32::consts::PI, std::f32::consts::PI),
        ..default()
    };
    transform.translation = Vec3::new(x, EYE, z);
    transform.rotation = Quat::from_euler(EulerRot::YXZ, player.yaw, 0.0, 0.0);
}

fn build_garden(
    mut commands: Commands,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    let mut material = |r: f32, g: f32, b: f32| {
        materials.add(StandardMaterial {
            base_color: Color::srgb(r, g, b),
            perceptual_roughness: 0.9,
            ..default()
        })
    };
    // Ground: tiles of two greens and a sandy path cross, so motion shows everywhere.
    let tile = meshes.add(Plane3d::default().mesh().size(10.0, 10.0));
    let greens = [material(0.30, 0.52, 0.22), material(0.36, 0.60, 0.26)];
    let sand = material(0.76, 0.68, 0.48);
    let tiles = (2.0 * BOUNDS / 10.0) as i32 + 4;
    for i in 0..tiles {
        for j in 0..tiles {
            let x = (i - tiles / 2) as f32 * 10.0 + 5.0;
            let z = (j - tiles / 2) as f32 * 10.0 + 5.0;
            let m = if i == tiles / 2 || j == tiles / 2 {
                sand.clone()
            } else {
                greens[((i + j) % 2) as usize].clone()
            };
            commands.spawn((
                Mesh3d(tile.clone()),
                MeshMaterial3d(m),
                Transform::from_xyz(x, 0.0, z),
            ));
        }
    }
    // Always the same garden: its layout has its own seed.
    let mut rng = SplitMix64::hashed(0x06A4_DE17);
    let trunk = meshes.add(Cylinder::new(0.25, 2.4));
    let crown = meshes.add(Sphere::new(1.6).mesh().ico(2).unwrap());
    let bark = material(0.40, 0.27, 0.15);
    let leaves = [
        material(0.16, 0.42, 0.14),
        material(0.22, 0.50, 0.18),
        material(0.42, 0.55, 0.16),
    ];
    for _ in 0..70 {
        let (x, z) = (rng.range(-BOUNDS, BOUNDS), rng.range(-BOUNDS, BOUNDS));
        let scale = rng.range(0.8, 1.5);
        let leaf = leaves[rng.below(3) as usize].clone();
        commands
            .spawn((
                Transform::from_xyz(x, 0.0, z).with_scale(Vec3::splat(scale)),
                Visibility::default(),
            ))
            .with_children(|tree| {
                tree.spawn((
                    Mesh3d(trunk.clone()),
                    MeshMaterial3d(bark.clone()),
                    Transform::from_xyz(0.0, 1.2, 0.0),
                ));
                tree.spawn((
                    Mesh3d(crown.clone()),
                    MeshMaterial3d(leaf),
                    Transform::from_xyz(0.0, 3.2, 0.0),
                ));
            });
    }
    let block = meshes.add(Cuboid::new(1.0, 1.0, 1.0));
    let stones = [material(0.62, 0.60, 0.58), material(0.50, 0.48, 0.52)];
    for _ in 0..24 {
        let (x, z) = (rng.range(-BOUNDS, BOUNDS), rng.range(-BOUNDS, BOUNDS));
        let height = rng.range(2.0, 7.0);
        commands.spawn((
            Mesh3d(block.clone()),
            MeshMaterial3d(stones[rng.below(2) as usize].clone()),
            Transform::from_xyz(x, height / 2.0, z).with_scale(Vec3::new(1.0, height, 1.0)),
        ));
    }
    let walls = [
        material(0.85, 0.80, 0.70),
        material(0.72, 0.45, 0.35),
        material(0.55, 0.62, 0.75),
    ];
    let roof_colour = material(0.45, 0.20, 0.15);
    for _ in 0..10 {
        let (x, z) = (rng.range(-BOUNDS, BOUNDS), rng.range(-BOUNDS, BOUNDS));
        let size = Vec3::new(
            rng.range(5.0, 9.0),
            rng.range(3.0, 5.0),
            rng.range(5.0, 9.0),
        );
        let turn = rng.range(0.0, std::f32::consts::PI);
        commands.spawn((
            Mesh3d(block.clone()),
            MeshMaterial3d(walls[rng.below(3) as usize].clone()),
            Transform::from_xyz(x, size.y / 2.0, z)
                .with_rotation(Quat::from_rotation_y(turn))
                .with_scale(size),
        ));
        commands.spawn((
            Mesh3d(block.clone()),
            MeshMaterial3d(roof_colour.clone()),
            Transform::from_xyz(x, size.y + 0.4, z)
                .with_rotation(Quat::from_rotation_y(turn))
                .with_scale(Vec3::new(size.x + 0.6, 0.8, size.z + 0.6)),
        ));
    }
    commands.spawn((
        Sun,
        DirectionalLight {
            illuminance: 8_000.0,
            shadow_maps_enabled: false,
            ..default()
        },
        Transform::default(),
    ));
}

/// Moves every player camera by its [`ActionState`]: walk and strafe on the ground (sprint
/// doubles the speed), turn, look up and down, jump.
fn move_player(time: Res<Time>, mut players: Query<(&mut Player, &mut Transform, &ActionState)>) {
    let dt = time.delta_secs();
    for (mut player, mut transform, action) in &mut players {
        let get = |name: &str| action.get(name).unwrap_or(0.0);
        player.yaw -= get("turn") * TURN_RATE * dt;
        player.pitch = (player.pitch + get("look") * LOOK_RATE * dt).clamp(-MAX_PITCH, MAX_PITCH);
        let speed = WALK_SPEED * if get("sprint") > 0.5 { 2.0 } else { 1.0 };
        let forward = Vec3::new(-player.yaw.sin(), 0.0, -player.yaw.cos());
        let right = Vec3::new(player.yaw.cos(), 0.0, -player.yaw.sin());
        let step = (forward * get("move_forward") + right * get("strafe")) * speed * dt;
        let mut position = transform.translation + step;
        position.x = position.x.clamp(-BOUNDS, BOUNDS);
        position.z = position.z.clamp(-BOUNDS, BOUNDS);
        let on_ground = position.y <= EYE + 1e-3;
        if on_ground && get("jump") > 0.5 {
            player.climb = JUMP_SPEED;
        }
        player.climb -= GRAVITY * dt;
        position.y = (position.y + player.climb * dt).max(EYE);
        if position.y <= EYE {
            player.climb = 0.0;
        }
        transform.translation = position;
        transform.rotation = Quat::from_euler(EulerRot::YXZ, player.yaw, player.pitch, 0.0);
    }
}

/// Sky colour at `hour`: night blue, dawn and dusk orange, day blue.
fn sky(hour: f32) -> (Color, f32) {
    // Sun height: 1 at noon, 0 at 6 and 18, -1 at midnight.
    let height = ((hour - 6.0) / 12.0 * std::f32::consts::PI).sin();
    let day = height.clamp(0.0, 1.0);
    let glow = (1.0 - (height.abs() * 4.0).min(1.0)).max(0.0);
    let night = Vec3::new(0.03, 0.04, 0.10);
    let noon = Vec3::new(0.55, 0.72, 0.95);
    let dusk = Vec3::new(0.95, 0.55, 0.30);
    let c = night.lerp(noon, day).lerp(dusk, glow * 0.7);
    (Color::srgb(c.x, c.y, c.z), height)
}

/// The sun follows `time_of_day` (it rises in the east, sets in the west, gives no light at
/// night); the sky and fog take the sky's colour; `fog` brings the fog closer.
fn light_the_garden(
    cameras: Query<(&ViewControls, &mut Camera, &mut DistanceFog), Changed<ViewControls>>,
    mut sun: Single<(&mut Transform, &mut DirectionalLight), With<Sun>>,
    mut ambient: ResMut<GlobalAmbientLight>,
) {
    for (controls, mut camera, mut fog) in cameras {
        let hour = controls.get("time_of_day").unwrap_or(12.0);
        let thickness = controls.get("fog").unwrap_or(0.2);
        let (colour, height) = sky(hour);
        // East (+x) at 6, overhead at 12, west at 18, a little to the south all day.
        let angle = (hour - 6.0) / 12.0 * std::f32::consts::PI;
        let towards_sun = Vec3::new(angle.cos(), angle.sin(), 0.3).normalize();
        *sun.0 = Transform::IDENTITY.looking_to(-towards_sun, Vec3::Y);
        sun.1.illuminance = 9_000.0 * height.max(0.0);
        ambient.brightness = 80.0 + 500.0 * height.max(0.0);
        camera.clear_color = ClearColorConfig::Custom(colour);
        fog.color = colour;
        fog.falloff = FogFalloff::Linear {
            start: 40.0 * (1.0 - thickness) + 2.0,
            end: 140.0 * (1.0 - thickness) + 12.0,
        };
    }
}
