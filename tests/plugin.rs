//! The Bevy plugin in headless apps (`MinimalPlugins` plus assets and images), driven by the
//! `PatternModel` test double.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bevy::app::AppExit;
use bevy::input::gamepad::{
    Gamepad, GamepadAxis, GamepadButton, GamepadConnection, GamepadConnectionEvent,
    RawGamepadAxisChangedEvent, RawGamepadButtonChangedEvent, RawGamepadEvent,
};
use bevy::input::mouse::MouseMotion;
use bevy::prelude::*;
use bevy_nacre::prelude::*;
use common::{Behaviour, PatternModel, expected_pattern, input};

const WAIT: Duration = Duration::from_secs(10);

fn app_with(behaviour: Behaviour) -> (App, Arc<AtomicBool>) {
    let mut app = common::headless_app();
    let model = PatternModel::new(16, 12, behaviour);
    let dropped = model.dropped.clone();
    app.add_world_model("pattern", move |_| Ok(Arc::new(model)));
    (app, dropped)
}

fn spawn_view(app: &mut App, seed: u64) -> (Entity, Handle<Image>) {
    let image = app
        .world_mut()
        .resource_mut::<Assets<Image>>()
        .add(view_image(1, 1));
    let view = app
        .world_mut()
        .spawn(
            WorldView::new("pattern")
                .with_image(image.clone())
                .with_seed(seed),
        )
        .id();
    (view, image)
}

/// Updates the app until `done` says so, failing after [`WAIT`].
fn update_until(app: &mut App, done: impl FnMut(&mut App) -> bool) {
    common::update_until(app, WAIT, done);
}

fn stats(app: &App, view: Entity) -> WorldViewStats {
    app.world().get::<WorldViewStats>(view).unwrap().clone()
}

fn drain<M: Message>(app: &mut App) -> Vec<M> {
    app.world_mut()
        .resource_mut::<Messages<M>>()
        .drain()
        .collect()
}

#[test]
fn the_models_exact_pixels_arrive_in_the_image() {
    let (mut app, _) = app_with(Behaviour::default());
    let (view, image) = spawn_view(&mut app, 42);
    let mut last: Option<WorldViewFrame> = None;
    update_until(&mut app, |app| {
        last = drain::<WorldViewFrame>(app).pop().or(last.clone());
        last.is_some()
    });
    let index = last.unwrap().index;
    let images = app.world().resource::<Assets<Image>>();
    let img = images.get(&image).unwrap();
    assert_eq!(img.texture_descriptor.size.width, 16);
    assert_eq!(img.texture_descriptor.size.height, 12);
    let expected = expected_pattern(16, 12, 42, index, &input(0.0), 0);
    assert_eq!(img.data.as_deref(), Some(&expected.rgba[..]));
    assert_eq!(stats(&app, view).status, ViewStatus::Running);
}

#[test]
fn a_slow_model_never_blocks_the_app() {
    let (mut app, _) = app_with(Behaviour {
        delay: Duration::from_millis(300),
        ..Default::default()
    });
    let (view, _) = spawn_view(&mut app, 0);
    let t = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut updates = 0;
    while t.elapsed() < Duration::from_millis(1500) {
        let u = Instant::now();
        app.update();
        slowest = slowest.max(u.elapsed());
        updates += 1;
    }
    // The model takes 300 ms a frame; the app kept updating at its own pace regardless.
    assert!(updates > 50, "only {updates} updates in 1.5 s");
    assert!(
        slowest < Duration::from_millis(150),
        "an update took {slowest:?}"
    );
    let s = stats(&app, view);
    assert!(s.frames_presented >= 1 && s.frames_presented <= 6, "{s:?}");
}

#[test]
fn a_panicking_model_reports_an_error_and_the_view_restarts() {
    let (mut app, _) = app_with(Behaviour {
        panic_at: Some(3),
        ..Default::default()
    });
    let (view, _) = spawn_view(&mut app, 0);
    let mut errors = Vec::new();
    update_until(&mut app, |app| {
        errors.extend(drain::<WorldViewError>(app));
        !errors.is_empty()
    });
    assert_eq!(errors[0].view, view);
    assert!(
        errors[0].message.contains("panicked"),
        "{}",
        errors[0].message
    );
    // The app keeps running with the view failed.
    for _ in 0..10 {
        app.update();
    }
    assert_eq!(stats(&app, view).status, ViewStatus::Failed);
    let before = stats(&app, view).frames_presented;
    app.world_mut()
        .write_message(RestartWorldView { view, prompt: None });
    update_until(&mut app, |app| {
        let s = stats(app, view);
        s.status == ViewStatus::Running && s.frames_presented > before
    });
    assert_eq!(stats(&app, view).errors, 1);
}

#[test]
fn an_erroring_model_restarts_by_itself_when_asked_to() {
    let (mut app, _) = app_with(Behaviour {
        error_at: Some(2),
        ..Default::default()
    });
    let image = app
        .world_mut()
        .resource_mut::<Assets<Image>>()
        .add(view_image(1, 1));
    let view = app
        .world_mut()
        .spawn(
            WorldView::new("pattern")
                .with_image(image)
                .restarting_on_error(),
        )
        .id();
    update_until(&mut app, |app| stats(app, view).errors >= 2);
    let s = stats(&app, view);
    assert!(s.last_error.unwrap().contains("fails at frame 2"));
}

#[test]
fn the_worker_stops_and_is_joined_within_a_second_of_app_exit() {
    let (mut app, model_dropped) = app_with(Behaviour {
        delay: Duration::from_millis(100),
        ..Default::default()
    });
    let (view, _) = spawn_view(&mut app, 0);
    update_until(&mut app, |app| stats(app, view).frames_presented > 0);
    let t = Instant::now();
    app.world_mut().write_message(AppExit::Success);
    app.update();
    assert!(
        model_dropped.load(Ordering::SeqCst),
        "the worker still holds the model after exit"
    );
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    let runtime = app.world().resource::<NacreRuntime>();
    assert!(!runtime.worker().is_running());
    drop(app);
}

#[test]
fn keyboard_mouse_and_gamepad_drive_the_action_channels() {
    let (mut app, _) = app_with(Behaviour::default());
    let (view, _) = spawn_view(&mut app, 0);
    update_until(&mut app, |app| {
        !app.world()
            .get::<ActionState>(view)
            .unwrap()
            .channels()
            .is_empty()
    });
    let state = |app: &App| app.world().get::<ActionState>(view).unwrap().clone();

    // Keyboard: W forward, A strafes left, Shift sprints.
    {
        let mut keys = app.world_mut().resource_mut::<ButtonInput<KeyCode>>();
        keys.press(KeyCode::KeyW);
        keys.press(KeyCode::KeyA);
        keys.press(KeyCode::ShiftLeft);
    }
    app.update();
    let s = state(&app);
    assert_eq!(s.get("move_forward"), Some(1.0));
    assert_eq!(s.get("strafe"), Some(-1.0));
    assert_eq!(s.get("sprint"), Some(1.0));
    assert_eq!(s.get("turn"), Some(0.0));
    {
        let mut keys = app.world_mut().resource_mut::<ButtonInput<KeyCode>>();
        keys.release(KeyCode::KeyW);
        keys.release(KeyCode::KeyA);
        keys.release(KeyCode::ShiftLeft);
    }

    // Mouse: 10 px right turns at half speed; 40 px up looks up, clamped to 1.
    app.world_mut().write_message(MouseMotion {
        delta: Vec2::new(10.0, -40.0),
    });
    app.update();
    let s = state(&app);
    assert_eq!(s.get("move_forward"), Some(0.0));
    assert!((s.get("turn").unwrap() - 0.5).abs() < 1e-6, "{s:?}");
    assert_eq!(s.get("look"), Some(1.0));
    app.update();
    assert_eq!(
        state(&app).get("turn"),
        Some(0.0),
        "mouse motion lasts one frame"
    );

    // Gamepad: left stick forward, South jumps.
    let pad = app.world_mut().spawn_empty().id();
    app.world_mut().write_message(GamepadConnectionEvent::new(
        pad,
        GamepadConnection::Connected {
            name: "Test pad".into(),
            vendor_id: None,
            product_id: None,
        },
    ));
    app.update();
    app.world_mut()
        .write_message(RawGamepadEvent::Axis(RawGamepadAxisChangedEvent::new(
            pad,
            GamepadAxis::LeftStickY,
            0.6,
        )));
    app.world_mut()
        .write_message(RawGamepadEvent::Button(RawGamepadButtonChangedEvent::new(
            pad,
            GamepadButton::South,
            1.0,
        )));
    app.update();
    let reported = app
        .world()
        .get::<Gamepad>(pad)
        .unwrap()
        .get(GamepadAxis::LeftStickY)
        .unwrap();
    assert!(reported > 0.5);
    let s = state(&app);
    assert_eq!(s.get("move_forward"), Some(reported));
    assert_eq!(s.get("jump"), Some(1.0));

    // Custom bindings replace the defaults.
    app.world_mut()
        .entity_mut(view)
        .insert(ActionBindings::empty().bind("turn", InputSource::Key(KeyCode::KeyQ), -0.25));
    app.world_mut()
        .resource_mut::<ButtonInput<KeyCode>>()
        .press(KeyCode::KeyQ);
    app.update();
    let s = state(&app);
    assert_eq!(s.get("turn"), Some(-0.25));
    assert_eq!(s.get("move_forward"), Some(0.0));
}

#[test]
fn two_views_run_independently_and_a_session_saves_and_restores() {
    let (mut app, _) = app_with(Behaviour::default());
    let (a, image_a) = spawn_view(&mut app, 1);
    let (b, image_b) = spawn_view(&mut app, 2);
    update_until(&mut app, |app| {
        stats(app, a).frames_presented > 2 && stats(app, b).frames_presented > 2
    });
    let red = |app: &App, h: &Handle<Image>| {
        app.world()
            .resource::<Assets<Image>>()
            .get(h)
            .unwrap()
            .data
            .as_ref()
            .unwrap()[0]
    };
    assert_eq!(red(&app, &image_a), 1, "seed shows in red of pixel 0");
    assert_eq!(red(&app, &image_b), 2);

    // Controls of one view reach only that view: time of day 5 shows in the blue channel.
    app.world_mut()
        .get_mut::<ViewControls>(a)
        .unwrap()
        .set("time_of_day", 5.0);
    let blue = |app: &App, h: &Handle<Image>| {
        app.world()
            .resource::<Assets<Image>>()
            .get(h)
            .unwrap()
            .data
            .as_ref()
            .unwrap()[2]
    };
    let neutral_blue = blue(&app, &image_b);
    update_until(&mut app, |app| blue(app, &image_a) == neutral_blue ^ 12 ^ 5);
    for _ in 0..5 {
        app.update();
    }
    assert_eq!(blue(&app, &image_b), neutral_blue);

    // Save view a, let it run on, restore it: it continues from the saved frame.
    app.world_mut().write_message(SaveWorldView { view: a });
    let mut saved = None;
    update_until(&mut app, |app| {
        saved = drain::<WorldViewSaved>(app).pop();
        saved.is_some()
    });
    let bytes = saved.unwrap().result.unwrap();
    let header = bevy_nacre::session_file::decode(&bytes).unwrap().header;
    assert_eq!(header.model, "pattern");
    assert_eq!(header.controls.values[0], 5.0);
    update_until(&mut app, |app| {
        drain::<WorldViewFrame>(app)
            .iter()
            .any(|f| f.view == a && f.index > header.frame_index + 5)
    });
    app.world_mut().write_message(RestoreWorldView {
        view: a,
        saved: bytes,
    });
    let mut first_after = None;
    update_until(&mut app, |app| {
        first_after = drain::<WorldViewFrame>(app)
            .into_iter()
            .find(|f| f.view == a)
            .map(|f| f.index);
        first_after.is_some()
    });
    let index = first_after.unwrap();
    assert!(
        index >= header.frame_index && index <= header.frame_index + 3,
        "restored view went on from frame {index}, saved at {}",
        header.frame_index
    );
    // A file that is not a saved session gives an error message, not a panic.
    app.world_mut().write_message(RestoreWorldView {
        view: b,
        saved: b"garbage".to_vec(),
    });
    let mut errors = Vec::new();
    update_until(&mut app, |app| {
        errors.extend(drain::<WorldViewError>(app));
        !errors.is_empty()
    });
    assert_eq!(errors[0].view, b);
    assert!(errors[0].message.contains("not a bevy_nacre saved session"));
}

/// A view given no image makes its own and shows it in the entity's `ImageNode::default()`
/// (which holds Bevy's transparent placeholder until then); frames arrive in that image.
#[test]
fn a_view_without_an_image_makes_one_and_shows_it_in_its_image_node() {
    let (mut app, _) = app_with(Behaviour::default());
    let view = app
        .world_mut()
        .spawn((WorldView::new("pattern").with_seed(3), ImageNode::default()))
        .id();
    let image = app.world().get::<WorldView>(view).unwrap().image.clone();
    assert_ne!(image, Handle::default());
    assert_eq!(app.world().get::<ImageNode>(view).unwrap().image, image);
    update_until(&mut app, |app| !drain::<WorldViewFrame>(app).is_empty());
    let images = app.world().resource::<Assets<Image>>();
    assert_eq!(
        images.get(&image).unwrap().texture_descriptor.size.width,
        16
    );
}
