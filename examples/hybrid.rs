//! Hybrid: ordinary Bevy meshes and lights together with generated views. A lit room holds two
//! screens: the left one shows the procedural reference world, the right one the default model
//! (or, without a trained model, the reference world under another sky). Both follow the same
//! input, so walking with WASD/arrows moves through both worlds at once, while the room's own
//! cube keeps spinning — generated pictures are just textures on materials.
//!
//! ```sh
//! cargo run --release --example hybrid
//! ```
//!
//! F5 saves and F9 loads the left screen's session, R records it, F12 takes a screenshot.

mod common;

use bevy::prelude::*;
use bevy_nacre::prelude::*;
use common::hud::HudPlugin;
use common::keys::{ExampleKeys, PrimaryView};
use common::options::{DEFAULT_ID, Options, REFERENCE_ID, add_default_model, add_reference};

const HELP: &str = "WASD/arrows move both worlds | F5 save | F9 load | R record | F12 screenshot";

fn main() {
    let options = Options::from_args();
    let mut app = common::example_app(ExampleKeys {
        name: "hybrid",
        grab_on_click: false,
    });
    add_reference(&mut app, &options);
    let right = if options.reference {
        None
    } else {
        add_default_model(&mut app, &options)
    };
    let (right_id, right_label) = match &right {
        Some(choice) => (DEFAULT_ID, choice.label.clone()),
        None => (
            REFERENCE_ID,
            "reference world at dusk in fog (no trained model found)".to_string(),
        ),
    };
    app.add_plugins(HudPlugin {
        model_label: format!("left: reference world | right: {right_label}"),
        help: HELP,
    })
    .insert_resource(RightModel {
        id: right_id,
        is_default: right.is_some(),
    })
    .insert_resource(options)
    .add_systems(Startup, setup)
    .add_systems(Update, (spin, dusk_on_the_right))
    .run();
}

#[derive(Resource)]
struct RightModel {
    id: &'static str,
    is_default: bool,
}

#[derive(Component)]
struct Spinning;

/// The right screen when it shows the reference world: give it another sky.
#[derive(Component)]
struct DuskView;

fn setup(
    mut commands: Commands,
    mut images: ResMut<Assets<Image>>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    options: Res<Options>,
    right: Res<RightModel>,
) {
    // The room.
    commands.spawn((
        Camera3d::default(),
        Transform::from_xyz(0.0, 1.6, 4.2).looking_at(Vec3::new(0.0, 1.4, 0.0), Vec3::Y),
    ));
    let floor = materials.add(StandardMaterial {
        base_color: Color::srgb(0.35, 0.3, 0.27),
        perceptual_roughness: 0.9,
        ..default()
    });
    let wall = materials.add(StandardMaterial {
        base_color: Color::srgb(0.75, 0.72, 0.66),
        perceptual_roughness: 0.95,
        ..default()
    });
    commands.spawn((
        Mesh3d(meshes.add(Plane3d::default().mesh().size(12.0, 12.0))),
        MeshMaterial3d(floor),
    ));
    commands.spawn((
        Mesh3d(meshes.add(Cuboid::new(12.0, 4.0, 0.2))),
        MeshMaterial3d(wall.clone()),
        Transform::from_xyz(0.0, 2.0, -0.15),
    ));
    commands.spawn((
        Mesh3d(meshes.add(Cuboid::new(0.6, 0.6, 0.6))),
        MeshMaterial3d(materials.add(StandardMaterial {
            base_color: Color::srgb(0.85, 0.35, 0.2),
            ..default()
        })),
        Transform::from_xyz(0.0, 0.5, 1.6),
        Spinning,
    ));
    commands.spawn((
        PointLight {
            intensity: 600_000.0,
            range: 20.0,
            shadow_maps_enabled: true,
            ..default()
        },
        Transform::from_xyz(1.5, 3.2, 2.5),
    ));
    commands.spawn((
        DirectionalLight {
            illuminance: 2_000.0,
            ..default()
        },
        Transform::from_xyz(-2.0, 4.0, 3.0).looking_at(Vec3::ZERO, Vec3::Y),
    ));

    // Two screens on the wall; each is a generated view drawn into an image that a material
    // shows. `WorldViewMaterial` makes sure the material picks up every new frame.
    let screen = meshes.add(Rectangle::new(2.4, 1.35));
    let screens = [
        (REFERENCE_ID, -1.35, false, true),
        (right.id, 1.35, !right.is_default, false),
    ];
    for (model, x, dusk, primary) in screens {
        let image = images.add(view_image(1, 1));
        let material = materials.add(StandardMaterial {
            base_color_texture: Some(image.clone()),
            unlit: true,
            ..default()
        });
        let mut view = commands.spawn((
            WorldView::new(model)
                .with_image(image)
                .with_seed(options.seed),
            WorldViewMaterial(material.clone()),
        ));
        if dusk {
            view.insert(DuskView);
        }
        if primary {
            view.insert(PrimaryView);
        }
        // A dark frame around each screen.
        commands.spawn((
            Mesh3d(meshes.add(Cuboid::new(2.55, 1.5, 0.05))),
            MeshMaterial3d(materials.add(StandardMaterial {
                base_color: Color::srgb(0.05, 0.05, 0.06),
                ..default()
            })),
            Transform::from_xyz(x, 1.65, -0.03),
        ));
        commands.spawn((
            Mesh3d(screen.clone()),
            MeshMaterial3d(material),
            Transform::from_xyz(x, 1.65, 0.0),
        ));
    }
}

fn spin(time: Res<Time>, mut cubes: Query<&mut Transform, With<Spinning>>) {
    for mut t in &mut cubes {
        t.rotate_y(time.delta_secs() * 0.8);
        t.rotate_x(time.delta_secs() * 0.3);
    }
}

/// Once the right screen's controls are known, make it dusk and foggy there.
fn dusk_on_the_right(mut views: Query<&mut ViewControls, With<DuskView>>, mut done: Local<bool>) {
    if *done {
        return;
    }
    for mut controls in &mut views {
        if controls.specs().is_empty() {
            return;
        }
        controls.set("time_of_day", 18.5);
        controls.set_choice("weather", "fog");
        *done = true;
    }
}
