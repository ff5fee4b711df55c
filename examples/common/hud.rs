//! A small heads-up display: model, device, generated frames/s, latency, sound and files.

use std::time::Instant;

use bevy::prelude::*;
use bevy_nacre::prelude::*;
use nacre_kira::{GeneratedSound, SoundStatus, ViewSoundStats};

use super::keys::PrimaryView;

/// What the HUD says about the model on its first line.
#[derive(Resource, Clone, Debug)]
pub struct HudModelLabel(pub String);

/// Shows the HUD in the top-left corner.
pub struct HudPlugin {
    /// First line: which model plays, and why (e.g. "no model at …").
    pub model_label: String,
    /// Key help on the last line.
    pub help: &'static str,
}

#[derive(Component)]
struct HudText;

#[derive(Resource)]
struct HudState {
    help: &'static str,
    game_fps: f32,
    since_update: f32,
    last_message: Option<String>,
    last_frame: Option<Instant>,
}

impl Plugin for HudPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(HudModelLabel(self.model_label.clone()))
            .insert_resource(HudState {
                help: self.help,
                game_fps: 0.0,
                since_update: 1.0,
                last_message: None,
                last_frame: None,
            })
            .add_systems(Startup, spawn_hud)
            .add_systems(Update, (remember_messages, update_hud).chain());
    }
}

fn spawn_hud(mut commands: Commands) {
    commands
        .spawn((
            Node {
                position_type: PositionType::Absolute,
                left: px(8),
                top: px(8),
                padding: UiRect::all(px(6)),
                ..default()
            },
            BackgroundColor(Color::srgba(0.0, 0.0, 0.0, 0.55)),
            GlobalZIndex(10),
        ))
        .with_child((
            Text::new("loading..."),
            TextFont::from_font_size(14.0),
            TextColor(Color::WHITE),
            HudText,
        ));
}

fn remember_messages(
    mut files: MessageReader<SessionFileEvent>,
    mut errors: MessageReader<WorldViewError>,
    mut state: ResMut<HudState>,
) {
    for e in files.read() {
        state.last_message = Some(e.message.clone());
    }
    for e in errors.read() {
        state.last_message = Some(format!("error: {}", e.message));
    }
}

#[allow(clippy::type_complexity)]
fn update_hud(
    mut state: ResMut<HudState>,
    label: Res<HudModelLabel>,
    runtime: Option<Res<NacreRuntime>>,
    sound: Option<Res<GeneratedSound>>,
    views: Query<
        (
            &WorldView,
            &WorldViewStats,
            Option<&ViewSoundStats>,
            Option<&ViewRecording>,
        ),
        With<PrimaryView>,
    >,
    mut text: Query<&mut Text, With<HudText>>,
) {
    // The wall clock: a game may hold its own (the twin example does), and Bevy's real time
    // follows a manual `TimeUpdateStrategy` too.
    let now = Instant::now();
    let dt = state.last_frame.map_or(0.0, |t| (now - t).as_secs_f32());
    state.last_frame = Some(now);
    if dt > 0.0 {
        state.game_fps += (1.0 / dt - state.game_fps) * 0.05;
    }
    state.since_update += dt;
    if state.since_update < 0.25 {
        return;
    }
    state.since_update = 0.0;
    let Ok(mut text) = text.single_mut() else {
        return;
    };
    let mut lines = vec![label.0.clone()];
    let device = runtime
        .as_ref()
        .and_then(|r| r.device().map(str::to_string))
        .unwrap_or_else(|| "...".into());
    match views.iter().next() {
        Some((view, stats, sound_stats, recording)) => {
            let spec = runtime.as_ref().and_then(|r| r.spec(&view.model));
            lines.push(match spec {
                Some(s) => format!(
                    "{} v{} | {}x{} | inference on {device}",
                    s.name, s.version, s.width, s.height
                ),
                None => format!("loading '{}' | inference on {device}", view.model),
            });
            lines.push(format!(
                "generated {:.1} frames/s | latency p50 {:.0} ms, p99 {:.0} ms | step {:.1} ms | game {:.0} fps",
                stats.generated_fps,
                stats.latency_p50_ms,
                stats.latency_p99_ms,
                stats.step_ms,
                state.game_fps
            ));
            if let Some(e) = &stats.last_error {
                lines.push(format!("error: {e}"));
            }
            if let Some(sound) = &sound {
                lines.push(match (sound.status(), sound_stats) {
                    (SoundStatus::NoDevice(_), _) => "sound: no sound device (silent)".into(),
                    (SoundStatus::Playing, _) if sound.muted => "sound: muted (M)".into(),
                    (SoundStatus::Playing, Some(s)) => format!(
                        "sound: buffer {:.0} ms | underruns {}",
                        s.queued_seconds * 1e3,
                        s.underruns
                    ),
                    (SoundStatus::Playing, None) => "sound: on".into(),
                });
            }
            if let Some(rec) = recording {
                lines.push(format!(
                    "REC {:.0} s, {} frames -> {}",
                    rec.seconds(),
                    rec.frames(),
                    rec.dir().display()
                ));
            }
        }
        None => lines.push(format!(
            "no generated view | game {:.0} fps",
            state.game_fps
        )),
    }
    if let Some(m) = &state.last_message {
        lines.push(m.clone());
    }
    lines.push(state.help.into());
    text.0 = lines.join("\n");
}
