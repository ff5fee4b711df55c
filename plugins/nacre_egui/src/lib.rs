//! A director's panel for [bevy_nacre] world views, drawn with
//! [bevy_egui](https://docs.rs/bevy_egui).
//!
//! Add [`DirectorPanelPlugin`] after `NacrePlugin` and put [`Directed`] on the `WorldView` the
//! panel should steer. The panel shows, built from the model's spec:
//!
//! - a slider for every continuous control (the reference world's time of day), a picker for
//!   every choice (weather, biome) and a button for every trigger (landmark, storm);
//! - a prompt box that reads director phrases ("stormy night in the desert") for the model's
//!   own controls with [`bevy_nacre::director::parse`] and lists the words it did not
//!   understand;
//! - live statistics (generated frames/s, input-to-frame latency, drops) with a small plot of
//!   the last ten seconds;
//! - record and stop, save and load (through bevy_nacre's `SessionFilesPlugin`, which the panel
//!   adds if it is missing).
//!
//! While a text box has the keyboard, the view's key bindings are paused, so typing "w" in the
//! prompt does not walk.
//!
//! The panel is drawn over Bevy UI, so a view shown as a full-window `ImageNode` stays
//! underneath it: this crate turns on bevy_egui's `bevy_ui` feature, which orders egui's render
//! pass after Bevy UI's (without it the two passes run in either order). Place the panel with
//! [`DirectorPanelSettings::position`] if your HUD sits in the top-left corner.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::VecDeque;
use std::path::PathBuf;

use bevy::prelude::*;
use bevy_egui::{EguiContexts, EguiPlugin, EguiPrimaryContextPass, egui};
use bevy_nacre::director::{self, Direction};
use bevy_nacre::plugin::{
    ActionBindings, LoadWorldViewFromFile, NacreRuntime, SaveWorldViewToFile, SessionFileEvent,
    SessionFilesPlugin, StartRecording, StopRecording, ViewControls, ViewRecording, WorldView,
    WorldViewStats,
};
use bevy_nacre::spec::ControlKind;

/// Commonly used items: `use nacre_egui::prelude::*;`.
pub mod prelude {
    pub use super::{Directed, DirectorPanelPlugin, DirectorPanelSettings, apply_phrase};
}

/// The director's panel. Adds `EguiPlugin` and `SessionFilesPlugin` if the app has none.
#[derive(Default)]
pub struct DirectorPanelPlugin;

impl Plugin for DirectorPanelPlugin {
    fn build(&self, app: &mut App) {
        if !app.is_plugin_added::<EguiPlugin>() {
            app.add_plugins(EguiPlugin::default());
        }
        if !app.is_plugin_added::<SessionFilesPlugin>() {
            app.add_plugins(SessionFilesPlugin);
        }
        app.init_resource::<DirectorPanelSettings>()
            .init_resource::<PanelState>()
            .add_systems(Update, (sample_stats, remember_file_events))
            .add_systems(EguiPrimaryContextPass, draw_panel);
    }
}

/// Marks the view the panel steers (the first one found, if several have it).
#[derive(Component, Clone, Copy, Debug, Default)]
pub struct Directed;

/// Settings of the panel.
#[derive(Resource, Clone, Debug)]
pub struct DirectorPanelSettings {
    /// Whether the panel is shown.
    pub open: bool,
    /// Where the panel first appears: logical pixels from the window's top-left corner (the
    /// player can drag it elsewhere).
    pub position: Vec2,
    /// File the save and load buttons use.
    pub save_path: PathBuf,
    /// Folder new recordings go into (one sub-folder per recording).
    pub recordings_dir: PathBuf,
    /// Also make an animated GIF when a recording stops.
    pub record_gif: bool,
}

impl Default for DirectorPanelSettings {
    fn default() -> Self {
        Self {
            open: true,
            position: Vec2::new(12.0, 12.0),
            save_path: PathBuf::from("saves/director.nacre"),
            recordings_dir: PathBuf::from("recordings"),
            record_gif: true,
        }
    }
}

/// Seconds of statistics the plot shows.
const PLOT_SECONDS: f32 = 10.0;
/// Statistics samples per second.
const PLOT_RATE: f32 = 10.0;

#[derive(Resource, Default)]
struct PanelState {
    prompt: String,
    last_direction: Option<Direction>,
    history: VecDeque<(f32, f32)>,
    since_sample: f32,
    last_file_message: Option<String>,
}

fn sample_stats(
    time: Res<Time>,
    mut state: ResMut<PanelState>,
    views: Query<&WorldViewStats, With<Directed>>,
) {
    let Some(stats) = views.iter().next() else {
        return;
    };
    state.since_sample += time.delta_secs();
    if state.since_sample < 1.0 / PLOT_RATE {
        return;
    }
    state.since_sample = 0.0;
    if state.history.len() >= (PLOT_SECONDS * PLOT_RATE) as usize {
        state.history.pop_front();
    }
    state
        .history
        .push_back((stats.generated_fps, stats.latency_p50_ms));
}

fn remember_file_events(
    mut events: MessageReader<SessionFileEvent>,
    mut state: ResMut<PanelState>,
) {
    for e in events.read() {
        state.last_file_message = Some(e.message.clone());
    }
}

/// Parses a director phrase for the view's controls and applies it, as the panel's prompt box
/// does. Returns the parsed direction (with the words it did not understand).
pub fn apply_phrase(text: &str, controls: &mut ViewControls) -> Direction {
    let direction = director::parse(controls.specs(), text);
    apply_direction(&direction, controls);
    direction
}

/// Applies a parsed direction to a view's controls, setting only what the phrase changed.
fn apply_direction(direction: &Direction, controls: &mut ViewControls) {
    for &(i, value) in &direction.changes {
        let Some(spec) = controls.specs().get(i).cloned() else {
            continue;
        };
        if matches!(spec.kind, ControlKind::Trigger) {
            controls.trigger(&spec.name);
        } else {
            controls.set(&spec.name, value);
        }
    }
}

/// The views the panel directs, with what it reads and changes on them.
type DirectedViews<'w, 's> = Query<
    'w,
    's,
    (
        Entity,
        &'static WorldView,
        &'static mut ViewControls,
        &'static WorldViewStats,
        &'static mut ActionBindings,
        Option<&'static ViewRecording>,
    ),
    With<Directed>,
>;

/// The messages the panel's buttons send.
#[derive(bevy::ecs::system::SystemParam)]
struct PanelRequests<'w> {
    saves: MessageWriter<'w, SaveWorldViewToFile>,
    loads: MessageWriter<'w, LoadWorldViewFromFile>,
    start_recording: MessageWriter<'w, StartRecording>,
    stop_recording: MessageWriter<'w, StopRecording>,
}

fn draw_panel(
    mut contexts: EguiContexts,
    mut settings: ResMut<DirectorPanelSettings>,
    mut state: ResMut<PanelState>,
    runtime: Option<Res<NacreRuntime>>,
    mut views: DirectedViews,
    mut requests: PanelRequests,
) -> Result {
    let ctx = contexts.ctx_mut()?;
    let Some((entity, view, mut controls, stats, mut bindings, recording)) =
        views.iter_mut().next()
    else {
        return Ok(());
    };
    if !settings.open {
        return Ok(());
    }
    let state = &mut *state;
    egui::Window::new("Director")
        .default_pos([settings.position.x, settings.position.y])
        .default_width(300.0)
        .show(ctx, |ui| {
            draw_model_line(ui, runtime.as_deref(), view);
            ui.separator();
            draw_controls(ui, &mut controls);
            ui.separator();
            draw_prompt(ui, state, &mut controls);
            ui.separator();
            draw_statistics(ui, stats, &state.history);
            ui.separator();
            draw_files(ui, &mut settings, entity, recording, &mut requests);
            if let Some(m) = &state.last_file_message {
                ui.small(m.as_str());
            }
        });
    // Keys go to the text box, not to the world, while it has focus.
    let typing = ctx.egui_wants_keyboard_input();
    if bindings.enabled == typing {
        bindings.enabled = !typing;
    }
    Ok(())
}

/// The model's name, version, size and frame rate (or that it is loading).
fn draw_model_line(ui: &mut egui::Ui, runtime: Option<&NacreRuntime>, view: &WorldView) {
    let model = runtime
        .and_then(|r| r.spec(&view.model))
        .map(|s| {
            format!(
                "{} v{} · {}×{} @ {} fps",
                s.name, s.version, s.width, s.height, s.fps
            )
        })
        .unwrap_or_else(|| format!("{} (loading)", view.model));
    ui.label(egui::RichText::new(model).strong());
}

/// A slider, picker or button for every control the model declares.
fn draw_controls(ui: &mut egui::Ui, controls: &mut ViewControls) {
    let specs = controls.specs().to_vec();
    if specs.is_empty() {
        ui.label("This model has no director controls.");
    }
    let mut triggers = Vec::new();
    for spec in &specs {
        let Some(value) = controls.get(&spec.name) else {
            continue;
        };
        match &spec.kind {
            ControlKind::Continuous { min, max, .. } => {
                let mut v = value;
                let slider = egui::Slider::new(&mut v, *min..=*max).text(label(&spec.name));
                if ui.add(slider).changed() {
                    controls.set(&spec.name, v);
                }
            }
            ControlKind::Choice { options, .. } => {
                let mut index = value.round().max(0.0) as usize;
                let before = index;
                egui::ComboBox::from_label(label(&spec.name))
                    .selected_text(options.get(index).cloned().unwrap_or_default())
                    .show_ui(ui, |ui| {
                        for (i, option) in options.iter().enumerate() {
                            ui.selectable_value(&mut index, i, option.as_str());
                        }
                    });
                if index != before {
                    controls.set(&spec.name, index as f32);
                }
            }
            ControlKind::Trigger => triggers.push(spec.name.clone()),
        }
    }
    if !triggers.is_empty() {
        ui.horizontal(|ui| {
            for name in &triggers {
                if ui.button(label(name)).clicked() {
                    controls.trigger(name);
                }
            }
        });
    }
}

/// The director prompt and what the last phrase did.
fn draw_prompt(ui: &mut egui::Ui, state: &mut PanelState, controls: &mut ViewControls) {
    ui.add_enabled_ui(!controls.specs().is_empty(), |ui| {
        ui.label("Direct (e.g. \"stormy night in the desert\"):");
        let response = ui.add(
            egui::TextEdit::singleline(&mut state.prompt)
                .hint_text("foggy morning by the sea")
                .desired_width(f32::INFINITY),
        );
        let enter = response.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if (ui.button("Direct").clicked() || enter) && !state.prompt.trim().is_empty() {
            state.last_direction = Some(apply_phrase(&state.prompt, controls));
        }
    });
    if let Some(d) = &state.last_direction {
        if d.is_empty() {
            ui.colored_label(
                egui::Color32::YELLOW,
                "Nothing in that phrase changed the scene.",
            );
        }
        if !d.unknown.is_empty() {
            ui.colored_label(
                egui::Color32::from_rgb(255, 160, 80),
                format!("Not understood: {}", d.unknown.join(", ")),
            );
        }
    }
}

/// Live statistics and their plot.
fn draw_statistics(ui: &mut egui::Ui, stats: &WorldViewStats, history: &VecDeque<(f32, f32)>) {
    ui.label(format!(
        "{:?} · {:.1} frames/s · latency p50 {:.0} ms, p99 {:.0} ms",
        stats.status, stats.generated_fps, stats.latency_p50_ms, stats.latency_p99_ms
    ));
    ui.label(format!(
        "step {:.1} ms · shown {} · dropped {}",
        stats.step_ms, stats.frames_presented, stats.dropped_frames
    ));
    if let Some(e) = &stats.last_error {
        ui.colored_label(egui::Color32::RED, e.as_str());
    }
    plot(ui, history);
}

/// Record and stop, save and load.
fn draw_files(
    ui: &mut egui::Ui,
    settings: &mut DirectorPanelSettings,
    entity: Entity,
    recording: Option<&ViewRecording>,
    requests: &mut PanelRequests,
) {
    ui.horizontal(|ui| {
        match recording {
            Some(rec) => {
                ui.colored_label(
                    egui::Color32::RED,
                    format!("● REC {:.0} s, {} frames", rec.seconds(), rec.frames()),
                );
                if ui.button("Stop").clicked() {
                    requests
                        .stop_recording
                        .write(StopRecording { view: entity });
                }
            }
            None => {
                if ui.button("● Record").clicked() {
                    requests.start_recording.write(StartRecording {
                        view: entity,
                        dir: settings.recordings_dir.join(timestamp()),
                        gif: settings.record_gif,
                    });
                }
            }
        }
        ui.checkbox(&mut settings.record_gif, "GIF");
    });
    ui.horizontal(|ui| {
        if ui.button("Save").clicked() {
            requests.saves.write(SaveWorldViewToFile {
                view: entity,
                path: settings.save_path.clone(),
            });
        }
        if ui.button("Load").clicked() {
            requests.loads.write(LoadWorldViewFromFile {
                view: entity,
                path: settings.save_path.clone(),
            });
        }
        ui.label(settings.save_path.display().to_string());
    });
}

/// "time_of_day" → "time of day".
fn label(name: &str) -> String {
    name.replace('_', " ")
}

/// A sortable local-time-free name for a recording folder: seconds since the Unix epoch.
fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("session-{secs}")
}

/// Frames/s (green) and latency p50 (orange) over the last seconds, each scaled to its maximum.
fn plot(ui: &mut egui::Ui, history: &VecDeque<(f32, f32)>) {
    let (rect, _) =
        ui.allocate_exact_size(egui::vec2(ui.available_width(), 60.0), egui::Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 2.0, egui::Color32::from_gray(24));
    if history.len() < 2 {
        return;
    }
    let n = (PLOT_SECONDS * PLOT_RATE) as usize;
    let max_fps = history.iter().map(|h| h.0).fold(1.0f32, f32::max);
    let max_lat = history.iter().map(|h| h.1).fold(1.0f32, f32::max);
    let x = |i: usize| rect.left() + rect.width() * (i + n - history.len()) as f32 / (n - 1) as f32;
    let y =
        |v: f32, max: f32| rect.bottom() - 4.0 - (rect.height() - 8.0) * (v / max).clamp(0.0, 1.0);
    let fps: Vec<egui::Pos2> = history
        .iter()
        .enumerate()
        .map(|(i, h)| egui::pos2(x(i), y(h.0, max_fps)))
        .collect();
    let lat: Vec<egui::Pos2> = history
        .iter()
        .enumerate()
        .map(|(i, h)| egui::pos2(x(i), y(h.1, max_lat)))
        .collect();
    painter.line(
        fps,
        egui::Stroke::new(1.5, egui::Color32::from_rgb(90, 220, 120)),
    );
    painter.line(
        lat,
        egui::Stroke::new(1.5, egui::Color32::from_rgb(255, 170, 60)),
    );
    painter.text(
        rect.left_top() + egui::vec2(4.0, 2.0),
        egui::Align2::LEFT_TOP,
        format!("fps ≤ {max_fps:.0}   latency ≤ {max_lat:.0} ms"),
        egui::FontId::monospace(10.0),
        egui::Color32::from_gray(200),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use bevy_nacre::spec::first_person::control_specs;

    #[test]
    fn a_direction_sets_only_what_the_phrase_names() {
        let specs = control_specs();
        let defaults =
            bevy_nacre::action::Controls::new(specs.iter().map(|c| c.default_value()).collect());
        let mut controls = ViewControls::new(&specs, &defaults);
        let direction = apply_phrase(
            "stormy night in the desert, a tower appears, wibble",
            &mut controls,
        );
        assert_eq!(direction.unknown, vec!["wibble".to_string()]);
        assert_eq!(controls.get("time_of_day"), Some(22.0));
        assert_eq!(controls.get("storm"), Some(1.0));
        assert_eq!(controls.get("biome"), Some(3.0), "desert");
        assert_eq!(controls.get("landmark"), Some(1.0));
        assert_eq!(controls.get("weather"), Some(0.0), "not named, not changed");
    }

    #[test]
    fn labels_read_as_words() {
        assert_eq!(label("time_of_day"), "time of day");
    }
}
