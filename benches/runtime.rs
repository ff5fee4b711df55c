//! Costs of the runtime itself, with models that do (almost) no work:
//!
//! 1. main-thread cost per presented frame: bevy_nacre's three schedules (`PreUpdate`, `Update`,
//!    `PostUpdate`) in a headless app, timed on updates where a new frame arrived, next to the same
//!    schedules of an identical app without a view;
//! 2. worker round trip: send a step request, receive the finished frame, minus the model's time.
//!
//! Run with `cargo bench --bench runtime`.

#[path = "common/quick.rs"]
mod quick;

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_nacre::error::Result;
use bevy_nacre::frame::{AudioChunk, Frame};
use bevy_nacre::prelude::*;
use bevy_nacre::spec::ModelSpec;
use bevy_nacre::timing::{TimingStats, time_runs};
use bevy_nacre::worker::Worker;
use bevy_nacre::world_model::{Prompt, Session, StepInput, StepOutput, StepTimings, WorldModel};

/// A model whose step is one copy of a prepared frame: what remains is the runtime's own cost.
struct EchoModel {
    spec: ModelSpec,
    frame: Frame,
}

struct EchoSession {
    frame: Frame,
    index: u64,
}

impl Session for EchoSession {
    fn step(&mut self, _: &StepInput) -> Result<StepOutput> {
        self.index += 1;
        Ok(StepOutput {
            frame: self.frame.clone(),
            audio: AudioChunk {
                sample_rate: 1000,
                channels: 1,
                samples: vec![0.0; 20],
            },
            timings: StepTimings::default(),
        })
    }
    fn save(&self) -> Result<Vec<u8>> {
        Ok(self.index.to_le_bytes().to_vec())
    }
    fn frame_index(&self) -> u64 {
        self.index
    }
}

impl WorldModel for EchoModel {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    fn start(&self, _: &Prompt) -> Result<Box<dyn Session>> {
        Ok(Box::new(EchoSession {
            frame: self.frame.clone(),
            index: 0,
        }))
    }
    fn restore(&self, _: &[u8]) -> Result<Box<dyn Session>> {
        self.start(&Prompt::default())
    }
}

fn echo(size: u32) -> Arc<dyn WorldModel> {
    Arc::new(EchoModel {
        spec: common::pattern_spec(size, size),
        frame: Frame::solid(size, size, [10, 20, 30, 255]),
    })
}

fn headless_app(size: u32, with_view: bool) -> App {
    let mut app = common::headless_app();
    app.add_world_model("echo", move |_| Ok(echo(size)));
    if with_view {
        let image = app
            .world_mut()
            .resource_mut::<Assets<Image>>()
            .add(view_image(size, size));
        app.world_mut().spawn(
            WorldView::new("echo")
                .with_image(image)
                .with_pacing(Pacing::Manual),
        );
    }
    // Let the model load and the session start.
    for _ in 0..50 {
        app.update();
        std::thread::sleep(Duration::from_millis(5));
    }
    app
}

fn run_nacre_schedules(app: &mut App) -> Duration {
    let t = Instant::now();
    app.world_mut().run_schedule(PreUpdate);
    app.world_mut().run_schedule(Update);
    app.world_mut().run_schedule(PostUpdate);
    t.elapsed()
}

/// Median time of the three schedules on updates that present a new frame.
fn main_thread_cost(size: u32) -> (TimingStats, TimingStats) {
    let mut app = headless_app(size, true);
    let view = {
        let mut q = app.world_mut().query_filtered::<Entity, With<WorldView>>();
        q.single(app.world()).expect("one view")
    };
    let mut with_frame = Vec::new();
    for _ in 0..quick::iterations(300, 20) {
        let presented_before = app
            .world()
            .get::<WorldViewStats>(view)
            .unwrap()
            .frames_presented;
        app.world()
            .get::<ViewSession>(view)
            .expect("session started")
            .handle()
            .step(1)
            .unwrap();
        // Give the worker time to finish the frame, outside the measurement.
        std::thread::sleep(Duration::from_millis(2));
        app.world_mut().run_schedule(First);
        let dt = run_nacre_schedules(&mut app);
        app.world_mut().run_schedule(Last);
        app.world_mut().clear_trackers();
        let presented = app
            .world()
            .get::<WorldViewStats>(view)
            .unwrap()
            .frames_presented;
        if presented > presented_before {
            with_frame.push(dt);
        }
    }
    let mut baseline_app = headless_app(size, false);
    let mut baseline = Vec::new();
    for _ in 0..quick::iterations(300, 20) {
        baseline_app.world_mut().run_schedule(First);
        baseline.push(run_nacre_schedules(&mut baseline_app));
        baseline_app.world_mut().run_schedule(Last);
        baseline_app.world_mut().clear_trackers();
    }
    (
        TimingStats::from_samples(&with_frame),
        TimingStats::from_samples(&baseline),
    )
}

fn round_trip(size: u32) -> (TimingStats, TimingStats) {
    let worker = Worker::spawn(WorkerConfig {
        cpu_threads: 1,
        ..Default::default()
    })
    .unwrap();
    worker.load_model("echo", move |_| Ok(echo(size))).unwrap();
    let session = worker
        .start_session("echo", Prompt::default(), Pacing::Manual)
        .unwrap();
    let mut computes = Vec::new();
    let stats = time_runs(
        quick::iterations(50, 2),
        quick::iterations(2000, 20),
        || {
            session.step(1).unwrap();
            let f = session
                .next_frame_timeout(Duration::from_secs(5))
                .expect("frame");
            computes.push(f.compute);
        },
    );
    (stats, TimingStats::from_samples(&computes))
}

fn main() {
    quick::announce();
    println!("bevy_nacre runtime benchmark (release build, medians)");
    for size in [128u32, 512] {
        let (with_frame, baseline) = main_thread_cost(size);
        println!(
            "main thread, {size}x{size}: PreUpdate+Update+PostUpdate with a new frame presented: {with_frame}"
        );
        println!(
            "main thread, {size}x{size}: the same schedules in an app without a view:          {baseline}"
        );
        println!(
            "main thread, {size}x{size}: bevy_nacre cost per presented frame ≈ {:.4} ms",
            with_frame.median_ms() - baseline.median_ms()
        );
    }
    for size in [64u32, 128] {
        let (rt, compute) = round_trip(size);
        println!(
            "worker round trip, {size}x{size} echo model: {rt}; model step {:.4} ms; overhead ≈ {:.4} ms",
            compute.median_ms(),
            rt.median_ms() - compute.median_ms()
        );
    }
}
