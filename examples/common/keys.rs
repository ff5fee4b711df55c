//! Keys every example understands, and grabbing the cursor for mouse look.
//!
//! F5 saves the session, F9 loads it back, R starts and stops a recording, F12 saves a
//! screenshot, M mutes the generated sound. A left click grabs the cursor (mouse look on), Esc
//! releases it (mouse look off, so moving the mouse over the window does not turn the view).

use std::path::PathBuf;

use bevy::prelude::*;
use bevy::render::view::window::screenshot::{Screenshot, save_to_disk};
use bevy::window::{CursorGrabMode, CursorOptions, PrimaryWindow};
use bevy_nacre::plugin::InputSource;
use bevy_nacre::prelude::*;

/// The view the keys act on.
#[derive(Component, Clone, Copy, Debug, Default)]
pub struct PrimaryView;

/// Settings of [`KeysPlugin`].
#[derive(Resource, Clone, Debug)]
pub struct ExampleKeys {
    /// Name used for save files, recordings and screenshots.
    pub name: &'static str,
    /// Whether a left click grabs the cursor for mouse look.
    pub grab_on_click: bool,
}

/// The keys (see the module docs).
pub struct KeysPlugin {
    /// Settings.
    pub keys: ExampleKeys,
}

impl Plugin for KeysPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(self.keys.clone()).add_systems(
            Update,
            (session_keys, grab_cursor, mouse_look_only_when_grabbed),
        );
    }
}

/// Where F5 and F9 save and load.
pub fn save_path(name: &str) -> PathBuf {
    PathBuf::from("saves").join(format!("{name}.nacre"))
}

fn seconds_since_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[allow(clippy::too_many_arguments)]
fn session_keys(
    mut commands: Commands,
    settings: Res<ExampleKeys>,
    keys: Res<ButtonInput<KeyCode>>,
    views: Query<(Entity, Has<ViewRecording>), With<PrimaryView>>,
    mut saves: MessageWriter<SaveWorldViewToFile>,
    mut loads: MessageWriter<LoadWorldViewFromFile>,
    mut start: MessageWriter<StartRecording>,
    mut stop: MessageWriter<StopRecording>,
    sound: Option<ResMut<nacre_kira::GeneratedSound>>,
) {
    if keys.just_pressed(KeyCode::F12) {
        let path = PathBuf::from("screenshots").join(format!(
            "{}-{}.png",
            settings.name,
            seconds_since_epoch()
        ));
        let _ = std::fs::create_dir_all("screenshots");
        commands
            .spawn(Screenshot::primary_window())
            .observe(save_to_disk(path));
    }
    if keys.just_pressed(KeyCode::KeyM)
        && let Some(mut sound) = sound
    {
        sound.muted = !sound.muted;
    }
    let Some((view, recording)) = views.iter().next() else {
        return;
    };
    if keys.just_pressed(KeyCode::F5) {
        saves.write(SaveWorldViewToFile {
            view,
            path: save_path(settings.name),
        });
    }
    if keys.just_pressed(KeyCode::F9) {
        loads.write(LoadWorldViewFromFile {
            view,
            path: save_path(settings.name),
        });
    }
    if keys.just_pressed(KeyCode::KeyR) {
        if recording {
            stop.write(StopRecording { view });
        } else {
            start.write(StartRecording {
                view,
                dir: PathBuf::from("recordings").join(format!(
                    "{}-{}",
                    settings.name,
                    seconds_since_epoch()
                )),
                gif: true,
            });
        }
    }
}

fn grab_cursor(
    settings: Res<ExampleKeys>,
    mouse: Res<ButtonInput<MouseButton>>,
    keys: Res<ButtonInput<KeyCode>>,
    mut cursor: Query<&mut CursorOptions, With<PrimaryWindow>>,
) {
    let Ok(mut cursor) = cursor.single_mut() else {
        return;
    };
    if settings.grab_on_click && mouse.just_pressed(MouseButton::Left) {
        cursor.grab_mode = CursorGrabMode::Locked;
        cursor.visible = false;
    }
    if keys.just_pressed(KeyCode::Escape) {
        cursor.grab_mode = CursorGrabMode::None;
        cursor.visible = true;
    }
}

/// Whether the cursor is grabbed.
pub fn is_grabbed(cursor: &CursorOptions) -> bool {
    cursor.grab_mode != CursorGrabMode::None
}

/// Mouse-motion bindings are switched on while the cursor is grabbed and off otherwise.
fn mouse_look_only_when_grabbed(
    cursor: Query<&CursorOptions, (With<PrimaryWindow>, Changed<CursorOptions>)>,
    mut views: Query<&mut ActionBindings, With<PrimaryView>>,
) {
    let Ok(cursor) = cursor.single() else {
        return;
    };
    let grabbed = is_grabbed(cursor);
    for mut bindings in &mut views {
        let defaults = ActionBindings::default();
        bindings.bindings = defaults
            .bindings
            .into_iter()
            .filter(|b| {
                grabbed
                    || !matches!(
                        b.source,
                        InputSource::MouseMotionX | InputSource::MouseMotionY
                    )
            })
            .collect();
    }
}
