//! What the playable examples share: command-line options and model choice, the HUD, the
//! save/load/record/screenshot keys, cursor grabbing, and the automation that end-to-end tests
//! and measurements drive the examples with.
#![allow(dead_code)]

pub mod automation;
pub mod garden;
pub mod hud;
pub mod keys;
pub mod options;

use bevy::prelude::*;
use bevy::window::{PresentMode, WindowResolution};

/// The app every playable example starts from: Bevy's default plugins with the example's
/// window, bevy_nacre, save/load files, the automation end-to-end tests drive, and the example
/// keys (save, load, record, screenshot, mute, cursor grab).
pub fn example_app(keys: keys::ExampleKeys) -> App {
    let mut app = App::new();
    app.add_plugins((
        DefaultPlugins.set(window_plugin(&format!("bevy_nacre · {}", keys.name))),
        bevy_nacre::prelude::NacrePlugin::default(),
        bevy_nacre::prelude::SessionFilesPlugin,
        automation::AutomationPlugin,
        keys::KeysPlugin { keys },
    ));
    app
}

/// The window every example opens.
pub fn window_plugin(title: &str) -> WindowPlugin {
    WindowPlugin {
        primary_window: Some(Window {
            title: title.into(),
            resolution: WindowResolution::new(1280, 720),
            // Measure the game's own rate, not the display's.
            present_mode: if automation::Automation::from_env().no_vsync {
                PresentMode::AutoNoVsync
            } else {
                PresentMode::AutoVsync
            },
            ..default()
        }),
        ..default()
    }
}

/// The node that shows a view; its aspect ratio follows its image.
#[derive(Component)]
pub struct ViewNode;

/// A full-window black box with an image centred in it at the image's aspect ratio: the image of
/// the `WorldView` in `view` (which makes its own and shows it in the `ImageNode` beside it), or
/// the `ImageNode` in `view`.
pub fn spawn_fullscreen_view(commands: &mut Commands, view: impl Bundle) {
    commands
        .spawn((
            Node {
                width: percent(100),
                height: percent(100),
                justify_content: JustifyContent::Center,
                align_items: AlignItems::Center,
                ..default()
            },
            BackgroundColor(Color::BLACK),
        ))
        .with_child((
            ImageNode::default(),
            Node {
                height: percent(100),
                max_width: percent(100),
                aspect_ratio: Some(16.0 / 9.0),
                ..default()
            },
            ViewNode,
            view,
        ));
}

/// Gives each [`ViewNode`] its image's aspect ratio once the model's size is known.
pub fn keep_aspect(
    images: Res<Assets<Image>>,
    mut nodes: Query<(&ImageNode, &mut Node), With<ViewNode>>,
) {
    for (view, mut node) in &mut nodes {
        let Some(image) = images.get(&view.image) else {
            continue;
        };
        let size = image.texture_descriptor.size;
        if size.width <= 1 || size.height <= 1 {
            continue;
        }
        let aspect = size.width as f32 / size.height as f32;
        if node.aspect_ratio != Some(aspect) {
            node.aspect_ratio = Some(aspect);
        }
    }
}

/// A still picture the size of the reference world's frames, for `--no-view` runs.
pub fn still_picture(width: u32, height: u32) -> Image {
    let mut still = bevy_nacre::plugin::view_image(width, height);
    if let Some(data) = &mut still.data {
        for (i, px) in data.chunks_exact_mut(4).enumerate() {
            px.copy_from_slice(&[(i % 251) as u8, 90, 140, 255]);
        }
    }
    still
}
