//! The inference worker without Bevy: pacing, newest-frame delivery, failures, shutdown, saving.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bevy_nacre::worker::{
    GeneratedFrame, Pacing, SessionHandle, Worker, WorkerConfig, WorkerEvent,
};
use bevy_nacre::world_model::Prompt;
use common::{Behaviour, PatternModel, expected_pattern, input};

const WAIT: Duration = Duration::from_secs(10);

fn worker_with(behaviour: Behaviour) -> (Worker, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let worker = Worker::spawn(WorkerConfig {
        cpu_threads: 1,
        ..WorkerConfig::default()
    })
    .unwrap();
    let model = PatternModel::new(8, 6, behaviour);
    let dropped = model.dropped.clone();
    worker
        .load_model("pattern", move |_| Ok(std::sync::Arc::new(model)))
        .unwrap();
    (worker, dropped)
}

fn wait_event(worker: &Worker, want: impl Fn(&WorkerEvent) -> bool) -> WorkerEvent {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(e) = worker.event_timeout(Duration::from_millis(50))
            && want(&e)
        {
            return e;
        }
    }
    panic!("event did not arrive");
}

fn step(session: &SessionHandle, forward: f32) -> GeneratedFrame {
    let mut i = input(forward);
    i.action.values[0] = forward;
    session.send_input(i.action, Instant::now());
    session.step(1).unwrap();
    session.next_frame_timeout(WAIT).expect("frame")
}

#[test]
fn model_loads_and_frames_match_the_model_exactly() {
    let (worker, _) = worker_with(Behaviour::default());
    let e = wait_event(&worker, |e| matches!(e, WorkerEvent::ModelLoaded { .. }));
    let WorkerEvent::ModelLoaded { spec, .. } = e else {
        unreachable!()
    };
    assert_eq!((spec.width, spec.height), (8, 6));
    let s = worker
        .start_session("pattern", Prompt::seeded(3), Pacing::Manual)
        .unwrap();
    let f0 = step(&s, 1.0);
    let f1 = step(&s, -0.5);
    assert_eq!((f0.index, f1.index), (0, 1));
    assert_eq!(f0.frame, expected_pattern(8, 6, 3, 0, &input(1.0), 0));
    assert_eq!(f1.frame, expected_pattern(8, 6, 3, 1, &input(-0.5), 10));
    assert!(f0.input_sampled_at.is_some());
    // Sound arrives as its own packets, one per step, with the input that made it.
    let audio = s.drain_audio();
    assert_eq!(audio.len(), 2);
    assert_eq!(audio[1].chunk.samples.len(), 20);
    assert_eq!(audio[1].input.action.values[0], -0.5);
}

#[test]
fn slow_consumer_sees_only_the_newest_frames_and_a_drop_count() {
    let (worker, _) = worker_with(Behaviour::default());
    let s = worker
        .start_session("pattern", Prompt::seeded(1), Pacing::Free)
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let first = s.latest_frame().expect("frames were generated");
    assert!(
        first.index >= 10,
        "free-running model made only {} frames",
        first.index
    );
    assert!(
        s.dropped_frames() >= first.index - 1,
        "drops not counted: {}",
        s.dropped_frames()
    );
    std::thread::sleep(Duration::from_millis(50));
    let second = s.latest_frame().expect("more frames");
    assert!(second.index > first.index);
}

#[test]
fn an_error_or_a_panic_fails_only_that_session_and_it_restarts() {
    for behaviour in [
        Behaviour {
            error_at: Some(2),
            ..Default::default()
        },
        Behaviour {
            panic_at: Some(2),
            ..Default::default()
        },
    ] {
        let (worker, _) = worker_with(behaviour);
        let bad = worker
            .start_session("pattern", Prompt::seeded(0), Pacing::Manual)
            .unwrap();
        step(&bad, 0.0);
        step(&bad, 0.0);
        bad.step(1).unwrap();
        let e = wait_event(&worker, |e| matches!(e, WorkerEvent::SessionFailed { .. }));
        let WorkerEvent::SessionFailed { session, error } = e else {
            unreachable!()
        };
        assert_eq!(session, bad.id());
        assert!(error.contains("frame 2"), "{error}");
        // The worker is alive: a new session works, and the failed one restarts.
        let other = worker
            .start_session("pattern", Prompt::seeded(5), Pacing::Manual)
            .unwrap();
        assert_eq!(step(&other, 0.0).index, 0);
        bad.restart(Prompt::seeded(0)).unwrap();
        assert_eq!(step(&bad, 0.0).index, 0);
    }
}

#[test]
fn shutdown_joins_the_thread_within_one_second_even_while_stepping() {
    let (mut worker, dropped) = worker_with(Behaviour {
        delay: Duration::from_millis(100),
        ..Default::default()
    });
    let _s = worker
        .start_session("pattern", Prompt::seeded(0), Pacing::Free)
        .unwrap();
    std::thread::sleep(Duration::from_millis(250));
    let t = Instant::now();
    assert!(worker.shutdown(), "worker thread was not joined");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert!(dropped.load(Ordering::SeqCst), "the model was not released");
    assert!(!worker.is_running());
}

#[test]
fn saving_and_restoring_continues_bit_for_bit() {
    let (worker, _) = worker_with(Behaviour::default());
    let s = worker
        .start_session("pattern", Prompt::seeded(9), Pacing::Manual)
        .unwrap();
    for i in 0..5 {
        step(&s, i as f32 / 5.0);
    }
    let saved = s.save().unwrap().recv_timeout(WAIT).unwrap().unwrap();
    let inputs = [0.3, -1.0, 0.7, 0.0];
    let after: Vec<_> = inputs.iter().map(|&f| step(&s, f).frame).collect();

    let restored = worker
        .restore_session("pattern", saved.clone(), Pacing::Manual)
        .unwrap();
    let again: Vec<_> = inputs.iter().map(|&f| step(&restored, f)).collect();
    assert_eq!(again[0].index, 5);
    assert_eq!(
        after,
        again.into_iter().map(|f| f.frame).collect::<Vec<_>>()
    );

    // A file from another model version is refused with a clear message.
    let mut decoded = bevy_nacre::session_file::decode(&saved).unwrap();
    decoded.header.model_version = "7".into();
    let other = bevy_nacre::session_file::encode(&decoded.header, &decoded.state);
    let bad = worker
        .restore_session("pattern", other, Pacing::Manual)
        .unwrap();
    let e = wait_event(
        &worker,
        |e| matches!(e, WorkerEvent::SessionFailed { session, .. } if *session == bad.id()),
    );
    let WorkerEvent::SessionFailed { error, .. } = e else {
        unreachable!()
    };
    assert!(error.contains("version '7'"), "{error}");
}

#[test]
fn a_quick_button_tap_between_frames_is_not_missed() {
    let (worker, _) = worker_with(Behaviour::default());
    let s = worker
        .start_session("pattern", Prompt::seeded(0), Pacing::Manual)
        .unwrap();
    let mut pressed = input(0.0);
    pressed.action.values[4] = 1.0;
    s.send_input(pressed.action.clone(), Instant::now());
    s.send_input(input(0.0).action, Instant::now());
    s.step(1).unwrap();
    let f = s.next_frame_timeout(WAIT).unwrap();
    assert_eq!(f.frame, expected_pattern(8, 6, 0, 0, &pressed, 0));
    // Released afterwards.
    s.step(1).unwrap();
    let f = s.next_frame_timeout(WAIT).unwrap();
    assert_eq!(f.frame, expected_pattern(8, 6, 0, 1, &input(0.0), 0));
}

#[test]
fn an_unknown_model_is_a_clear_error() {
    let (worker, _) = worker_with(Behaviour::default());
    let s = worker
        .start_session("nope", Prompt::seeded(0), Pacing::Free)
        .unwrap();
    let e = wait_event(&worker, |e| matches!(e, WorkerEvent::SessionFailed { .. }));
    let WorkerEvent::SessionFailed { session, error } = e else {
        unreachable!()
    };
    assert_eq!(session, s.id());
    assert!(error.contains("no model called 'nope'"), "{error}");
}
