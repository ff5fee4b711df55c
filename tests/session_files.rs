//! Saving, loading, recording and exporting sessions through the Bevy plugin, in headless apps
//! with the reference world (deterministic and fast), stepped one frame at a time.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bevy::prelude::*;
use bevy_nacre::prelude::*;
use bevy_nacre::recording::{self, ActionLog, ReplayOptions};
use bevy_nacre::reference::ReferenceWorld;
use bevy_nacre::session_file;

const WAIT: Duration = Duration::from_secs(20);
const W: u32 = 64;
const H: u32 = 48;

/// What the test wants the view to do next.
#[derive(Resource, Default)]
struct Driver {
    action: Vec<f32>,
    step: bool,
}

/// Frames written into the view's image, by index, in arrival order.
#[derive(Resource, Default)]
struct Captured(Vec<(u64, Vec<u8>)>);

#[derive(Resource, Default)]
struct FileEvents(Vec<SessionFileEvent>);

fn drive(driver: Res<Driver>, mut views: Query<&mut ActionState>) {
    for mut state in &mut views {
        let names: Vec<String> = state.channels().iter().map(|c| c.name.clone()).collect();
        for (name, v) in names.iter().zip(&driver.action) {
            state.set(name, *v);
        }
    }
}

fn step_after_submit(mut driver: ResMut<Driver>, views: Query<&ViewSession>) {
    if driver.step {
        for session in &views {
            session.handle().step(1).unwrap();
        }
        driver.step = false;
    }
}

fn capture(
    mut frames: MessageReader<WorldViewFrame>,
    views: Query<&WorldView>,
    images: Res<Assets<Image>>,
    mut captured: ResMut<Captured>,
    mut files: MessageReader<SessionFileEvent>,
    mut events: ResMut<FileEvents>,
) {
    for f in frames.read() {
        let view = views.get(f.view).unwrap();
        let data = images.get(&view.image).unwrap().data.clone().unwrap();
        captured.0.push((f.index, data));
    }
    events.0.extend(files.read().cloned());
}

fn app() -> (App, Entity) {
    let mut app = common::headless_app();
    app.add_plugins(SessionFilesPlugin)
        .init_resource::<Driver>()
        .init_resource::<Captured>()
        .init_resource::<FileEvents>()
        .add_systems(
            Update,
            (
                drive.before(NacreSystems::Submit),
                step_after_submit.after(NacreSystems::Submit),
            ),
        )
        .add_systems(PostUpdate, capture.after(NacreSystems::Present));
    app.add_world_model("reference", |_| {
        Ok(Arc::new(ReferenceWorld::new(W, H)) as Arc<dyn WorldModel>)
    });
    let image = app
        .world_mut()
        .resource_mut::<Assets<Image>>()
        .add(view_image(1, 1));
    let view = app
        .world_mut()
        .spawn((
            WorldView::new("reference")
                .with_image(image)
                .with_seed(1234)
                .with_pacing(Pacing::Manual),
            ActionBindings::empty(),
        ))
        .id();
    // Wait for the session to start.
    update_until(&mut app, |app| {
        app.world()
            .get::<ActionState>(view)
            .is_some_and(|s| !s.channels().is_empty())
            && app.world().get::<ViewSession>(view).is_some()
    });
    (app, view)
}

fn update_until(app: &mut App, done: impl FnMut(&mut App) -> bool) {
    common::update_until(app, WAIT, done);
}

/// Steps once with `action` and returns the new frame's index and pixels.
fn step(app: &mut App, action: [f32; 6]) -> (u64, Vec<u8>) {
    let before = app.world().resource::<Captured>().0.len();
    {
        let mut driver = app.world_mut().resource_mut::<Driver>();
        driver.action = action.to_vec();
        driver.step = true;
    }
    update_until(app, |app| {
        app.world().resource::<Captured>().0.len() > before
    });
    app.world().resource::<Captured>().0.last().unwrap().clone()
}

/// Walk forward while turning right, jumping now and then: enough to change every frame.
fn walk(k: usize) -> [f32; 6] {
    [
        1.0,
        0.0,
        0.6,
        if k.is_multiple_of(5) { 0.2 } else { -0.1 },
        k.is_multiple_of(4) as u8 as f32,
        0.0,
    ]
}

fn wait_file_event(app: &mut App, view: Entity) -> SessionFileEvent {
    let before = app.world().resource::<FileEvents>().0.len();
    update_until(app, |app| {
        app.world().resource::<FileEvents>().0.len() > before
    });
    let e = app.world().resource::<FileEvents>().0[before].clone();
    assert_eq!(e.view, view);
    e
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nacre-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_loaded_session_continues_bit_for_bit_and_bad_files_are_refused() {
    let dir = temp_dir("save");
    let path = dir.join("saves").join("walk.nacre");
    let (mut app, view) = app();
    for k in 0..8 {
        step(&mut app, walk(k));
    }
    app.world_mut().write_message(SaveWorldViewToFile {
        view,
        path: path.clone(),
    });
    let saved = wait_file_event(&mut app, view);
    assert_eq!(
        saved.kind,
        SessionFileEventKind::Saved(path.clone()),
        "{}",
        saved.message
    );
    // Written atomically: no temporary file is left next to it.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(names.len(), 1);
    let header = session_file::decode(&std::fs::read(&path).unwrap())
        .unwrap()
        .header;
    assert_eq!(header.model, "nacre-reference");
    assert_eq!(header.frame_index, 8);

    let after_save: Vec<(u64, Vec<u8>)> = (8..16).map(|k| step(&mut app, walk(k))).collect();
    assert_eq!(after_save[0].0, 8);
    assert!(
        after_save.windows(2).all(|w| w[0].1 != w[1].1),
        "frames should change as we walk"
    );

    app.world_mut().write_message(LoadWorldViewFromFile {
        view,
        path: path.clone(),
    });
    let loaded = wait_file_event(&mut app, view);
    assert_eq!(
        loaded.kind,
        SessionFileEventKind::Loaded(path.clone()),
        "{}",
        loaded.message
    );
    // Let the restore reach the worker before stepping again.
    for _ in 0..3 {
        app.update();
    }
    let replayed: Vec<(u64, Vec<u8>)> = (8..16).map(|k| step(&mut app, walk(k))).collect();
    for (a, b) in after_save.iter().zip(&replayed) {
        assert_eq!(a.0, b.0, "frame indices");
        assert!(a.1 == b.1, "frame {} differs after loading", a.0);
    }

    // A file from another model version: refused with a clear message, the session goes on.
    let bytes = std::fs::read(&path).unwrap();
    let mut saved = session_file::decode(&bytes).unwrap();
    saved.header.model_version = "999".into();
    let other = dir.join("other-version.nacre");
    std::fs::write(&other, session_file::encode(&saved.header, &saved.state)).unwrap();
    app.world_mut()
        .write_message(LoadWorldViewFromFile { view, path: other });
    let e = wait_file_event(&mut app, view);
    assert_eq!(e.kind, SessionFileEventKind::Failed);
    assert!(e.message.contains("version '999'"), "{}", e.message);

    // Another format version.
    let mut newer = bytes.clone();
    newer[8..12].copy_from_slice(&7u32.to_le_bytes());
    let newer_path = dir.join("newer-format.nacre");
    std::fs::write(&newer_path, newer).unwrap();
    app.world_mut().write_message(LoadWorldViewFromFile {
        view,
        path: newer_path,
    });
    let e = wait_file_event(&mut app, view);
    assert_eq!(e.kind, SessionFileEventKind::Failed);
    assert!(e.message.contains("format version 7"), "{}", e.message);

    // Not a session at all, and a missing file.
    let junk = dir.join("junk.nacre");
    std::fs::write(&junk, b"hello").unwrap();
    for p in [junk, dir.join("missing.nacre")] {
        app.world_mut()
            .write_message(LoadWorldViewFromFile { view, path: p });
        let e = wait_file_event(&mut app, view);
        assert_eq!(e.kind, SessionFileEventKind::Failed, "{}", e.message);
    }
    // The session still runs, from where it was.
    let (index, _) = step(&mut app, walk(0));
    assert_eq!(index, 16);
    let _ = std::fs::remove_dir_all(&dir);
}

fn finish_recording(app: &mut App, view: Entity) -> recording::RecordingSummary {
    app.world_mut().write_message(StopRecording { view });
    let e = wait_file_event(app, view);
    match e.kind {
        SessionFileEventKind::RecordingFinished(s) => s,
        other => panic!("{other:?}: {}", e.message),
    }
}

fn record(dir: &Path) -> (recording::RecordingSummary, Vec<(u64, Vec<u8>)>) {
    let (mut app, view) = app();
    for k in 0..3 {
        step(&mut app, walk(k));
    }
    app.world_mut().write_message(StartRecording {
        view,
        dir: dir.to_path_buf(),
        gif: true,
    });
    let e = wait_file_event(&mut app, view);
    assert_eq!(
        e.kind,
        SessionFileEventKind::RecordingStarted(dir.to_path_buf())
    );
    // Let the start save reach the recorder before stepping.
    for _ in 0..3 {
        app.update();
    }
    let frames: Vec<(u64, Vec<u8>)> = (3..23).map(|k| step(&mut app, walk(k))).collect();
    // A director change in the middle is part of the log too.
    app.world_mut()
        .get_mut::<ViewControls>(view)
        .unwrap()
        .set_choice("weather", "rain");
    let more: Vec<(u64, Vec<u8>)> = (23..30).map(|k| step(&mut app, walk(k))).collect();
    (
        finish_recording(&mut app, view),
        frames.into_iter().chain(more).collect(),
    )
}

#[test]
fn a_recording_has_frames_sound_log_and_gif_and_replays_exactly() {
    let dir = temp_dir("record");
    let rec = dir.join("rec");
    let (summary, frames) = record(&rec);
    assert_eq!(summary.missed_steps, 0);
    assert_eq!(summary.steps, 27, "{summary:?}");
    assert_eq!(summary.frames, 27);
    assert!(summary.gif);
    let log = ActionLog::load(&rec.join(recording::ACTION_LOG)).unwrap();
    assert_eq!(log.first_index, 3);
    assert_eq!(log.start_session.as_deref(), Some(recording::START_SESSION));
    assert_eq!(log.steps[0].action, walk(3).to_vec());
    let rain = log.steps.iter().position(|s| s.controls[1] == 2.0).unwrap();
    assert_eq!(
        log.steps[rain].index, 23,
        "the weather change starts at the next step"
    );
    let wav = recording::read_wav(&std::fs::read(rec.join(recording::AUDIO)).unwrap()).unwrap();
    assert_eq!((wav.sample_rate, wav.channels), (16_000, 1));
    assert_eq!(wav.samples.len(), 27 * 800);
    assert!(
        wav.samples.iter().any(|&s| s != 0),
        "the reference world makes sound"
    );
    let gif = std::fs::read(rec.join(recording::GIF)).unwrap();
    assert_eq!(&gif[..6], b"GIF89a");
    // The recorded PNGs are the frames that were shown.
    for (index, rgba) in &frames {
        let png = recording::read_frame(&recording::frame_path(&rec, *index)).unwrap();
        assert!(&png.rgba == rgba, "frame {index}");
    }

    // Replaying the log reproduces every frame bit for bit.
    let out = dir.join("replay");
    let world = ReferenceWorld::new(W, H);
    let replay = recording::replay(&world, &rec, &out, &ReplayOptions::default()).unwrap();
    assert_eq!(replay.steps, 27);
    assert_eq!(replay.frames_compared, 27);
    assert_eq!(replay.frames_identical, 27, "{replay:?}");
    let again = recording::read_wav(&std::fs::read(out.join(recording::AUDIO)).unwrap()).unwrap();
    assert_eq!(again.samples, wav.samples, "the sound is reproduced too");

    // A model of another size is refused.
    let other = ReferenceWorld::new(W * 2, H);
    let err = recording::replay(&other, &rec, &dir.join("bad"), &ReplayOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("64x48"), "{err}");

    // A log with a hole in it is refused with the step named.
    let mut broken = log.clone();
    broken.steps.remove(5);
    let broken_dir = dir.join("broken");
    std::fs::create_dir_all(&broken_dir).unwrap();
    std::fs::write(
        broken_dir.join(recording::ACTION_LOG),
        serde_json::to_vec(&broken).unwrap(),
    )
    .unwrap();
    let err = ActionLog::load(&broken_dir.join(recording::ACTION_LOG))
        .unwrap_err()
        .to_string();
    assert!(err.contains("gap"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
