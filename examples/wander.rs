//! Wander: walk through a generated world. The view fills the window (keeping its aspect), the
//! generated sound plays through kira, and a small HUD shows the model, the device, the generated
//! frame rate and the input-to-frame latency.
//!
//! ```sh
//! cargo run --release --example wander                 # the default model, or the reference world
//! cargo run --release --example wander -- --reference  # the procedural reference world
//! cargo run --release --example wander -- --model path/to/model
//! ```
//!
//! WASD or arrows move (left/right arrows turn), click to grab the mouse for looking around (Esc
//! releases it), Space jumps, Shift sprints. F5 saves, F9 loads, R records, F12 takes a
//! screenshot, M mutes.

mod common;

use bevy::prelude::*;
use bevy_nacre::prelude::*;
use common::hud::HudPlugin;
use common::keys::{ExampleKeys, PrimaryView};
use common::options::{Options, choose_model};
use nacre_kira::{GeneratedSoundPlugin, ViewSound};

const HELP: &str = "WASD/arrows move | click: mouse look, Esc: release | Space jump | Shift sprint | \
                    F5 save | F9 load | R record | F12 screenshot | M mute";

fn main() {
    let options = Options::from_args();
    let mut app = common::example_app(ExampleKeys {
        name: "wander",
        grab_on_click: true,
    });
    if !options.no_sound {
        app.add_plugins(GeneratedSoundPlugin::default());
    }
    let model = choose_model(&mut app, &options);
    app.add_plugins(HudPlugin {
        model_label: if options.no_view {
            "no generated view (--no-view): a still picture instead".into()
        } else {
            model.label.clone()
        },
        help: HELP,
    })
    .insert_resource(options)
    .insert_resource(ModelId(model.id))
    .add_systems(Startup, setup)
    .add_systems(Update, common::keep_aspect)
    .run();
}

#[derive(Resource)]
struct ModelId(&'static str);

fn setup(
    mut commands: Commands,
    mut images: ResMut<Assets<Image>>,
    options: Res<Options>,
    model: Res<ModelId>,
) {
    commands.spawn(Camera2d);
    if options.no_view {
        // The same UI with a still picture: what the game costs without the generated view.
        let still = images.add(common::still_picture(
            options.reference_size.0,
            options.reference_size.1,
        ));
        common::spawn_fullscreen_view(&mut commands, ImageNode::new(still));
    } else {
        common::spawn_fullscreen_view(
            &mut commands,
            (
                WorldView::new(model.0).with_seed(options.seed),
                PrimaryView,
                ViewSound::default(),
            ),
        );
    }
}
