//! Director: steer a running world while you walk through it. A panel (bevy_egui) changes the
//! time of day, the weather and the biome, fires scene events, reads director phrases ("stormy
//! night in the desert"), shows live statistics with a plot, and records, saves and loads.
//!
//! ```sh
//! cargo run --release --example director
//! cargo run --release --example director -- --direct "foggy morning by the sea"
//! ```
//!
//! WASD/arrows move (the mouse stays with the panel). F5 saves, F9 loads, R records, F12 takes a
//! screenshot, M mutes.

mod common;

use bevy::prelude::*;
use bevy_nacre::prelude::*;
use common::hud::HudPlugin;
use common::keys::{ExampleKeys, PrimaryView};
use common::options::{Options, choose_model};
use nacre_egui::{Directed, DirectorPanelPlugin, DirectorPanelSettings, apply_phrase};
use nacre_kira::{GeneratedSoundPlugin, ViewSound};

const HELP: &str = "WASD/arrows move | F5 save | F9 load | R record | F12 screenshot | M mute";

fn main() {
    let options = Options::from_args();
    let mut app = common::example_app(ExampleKeys {
        name: "director",
        grab_on_click: false,
    });
    app.add_plugins(DirectorPanelPlugin);
    if !options.no_sound {
        app.add_plugins(GeneratedSoundPlugin::default());
    }
    let model = choose_model(&mut app, &options);
    app.insert_resource(DirectorPanelSettings {
        save_path: common::keys::save_path("director"),
        // Below the HUD.
        position: Vec2::new(12.0, 100.0),
        ..default()
    })
    .add_plugins(HudPlugin {
        model_label: model.label.clone(),
        help: HELP,
    })
    .insert_resource(ModelId(model.id))
    .insert_resource(options)
    .add_systems(Startup, setup)
    .add_systems(Update, (common::keep_aspect, direct_from_command_line))
    .run();
}

#[derive(Resource)]
struct ModelId(&'static str);

fn setup(mut commands: Commands, options: Res<Options>, model: Res<ModelId>) {
    commands.spawn(Camera2d);
    common::spawn_fullscreen_view(
        &mut commands,
        (
            WorldView::new(model.0).with_seed(options.seed),
            PrimaryView,
            Directed,
            ViewSound::default(),
        ),
    );
}

/// Applies `--direct TEXT` once the model's controls are known.
fn direct_from_command_line(
    mut options: ResMut<Options>,
    mut views: Query<&mut ViewControls, With<Directed>>,
) {
    let Some(mut controls) = views.iter_mut().next() else {
        return;
    };
    if controls.specs().is_empty() {
        return;
    }
    if let Some(text) = options.direct.take() {
        let direction = apply_phrase(&text, &mut controls);
        info!(
            "director: \"{text}\" → {}",
            direction.describe(controls.specs())
        );
        if !direction.unknown.is_empty() {
            warn!("director: not understood: {}", direction.unknown.join(", "));
        }
    }
}
