//! Main-thread cost of bevy_nacre's systems: a headless app (`MinimalPlugins`, assets, images,
//! input) updated at 60 Hz with views of the reference world at 320×180 generating 20 frames/s
//! on the inference thread, compared with the same app without the plugin. Nothing else runs in
//! these apps, so the difference is the time of bevy_nacre's systems (input, submit, present,
//! session files) per frame. Rendering the image is not included: the examples measure that as
//! the game's frame rate with and without the view.
//!
//! Run with `cargo bench --bench plugin_systems`.

#[path = "common/quick.rs"]
mod quick;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy::input::InputPlugin;
use bevy::prelude::*;
use bevy_nacre::prelude::*;
use bevy_nacre::reference::ReferenceWorld;

/// Updates measured per app (60 in quick mode).
fn updates() -> usize {
    quick::iterations(600, 60)
}

fn app(views: usize) -> App {
    let mut app = App::new();
    app.add_plugins((
        MinimalPlugins,
        InputPlugin,
        AssetPlugin::default(),
        ImagePlugin::default(),
    ));
    if views > 0 {
        app.add_plugins((
            NacrePlugin {
                worker: WorkerConfig {
                    cpu_threads: 1,
                    ..Default::default()
                },
            },
            SessionFilesPlugin,
        ));
        app.add_world_model("reference", |_| {
            Ok(Arc::new(ReferenceWorld::new(320, 180)) as Arc<dyn WorldModel>)
        });
        for seed in 0..views {
            let image = app
                .world_mut()
                .resource_mut::<Assets<Image>>()
                .add(view_image(1, 1));
            app.world_mut().spawn(
                WorldView::new("reference")
                    .with_image(image)
                    .with_seed(seed as u64),
            );
        }
    }
    app
}

/// Median and 90th percentile of `app.update()` in microseconds, over updates paced at 60 Hz,
/// split into updates that presented a new frame and updates that did not.
fn measure(views: usize) -> (f64, f64, f64, usize) {
    let mut app = app(views);
    // Let the model load and the views start.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        app.update();
        std::thread::sleep(Duration::from_millis(16));
    }
    let mut all = Vec::with_capacity(updates());
    let mut with_frame = Vec::new();
    let mut presented_before = presented(&mut app);
    for _ in 0..updates() {
        let t = Instant::now();
        app.update();
        let dt = t.elapsed().as_secs_f64() * 1e6;
        all.push(dt);
        let p = presented(&mut app);
        if p > presented_before {
            with_frame.push(dt);
        }
        presented_before = p;
        std::thread::sleep(Duration::from_micros(16_667).saturating_sub(t.elapsed()));
    }
    let q = |v: &mut Vec<f64>, q: f64| {
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
    };
    (
        q(&mut all, 0.5),
        q(&mut all, 0.9),
        q(&mut with_frame, 0.5),
        with_frame.len(),
    )
}

fn presented(app: &mut App) -> u64 {
    let mut q = app.world_mut().query::<&WorldViewStats>();
    q.iter(app.world()).map(|s| s.frames_presented).sum()
}

fn main() {
    quick::announce();
    let (base, base90, _, _) = measure(0);
    println!("baseline (no plugin): median {base:.0} µs, p90 {base90:.0} µs per update");
    for views in [1, 4] {
        let (med, p90, frame_med, frames) = measure(views);
        println!(
            "{views} view(s): median {med:.0} µs, p90 {p90:.0} µs per update; \
             updates that presented a frame ({frames}): median {frame_med:.0} µs; \
             bevy_nacre ≈ {:.0} µs per update (median minus baseline)",
            med - base
        );
    }
}
