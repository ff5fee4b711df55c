//! End-to-end: the real example programs, in a real window (Xvfb and Mesa's software Vulkan in
//! `scripts/test.sh`), for a bounded number of frames, with scripted input and screenshots that
//! are checked here. Most play the reference world (deterministic, fast, always there); the
//! wander and hybrid runs also play the shipped default model, the twin run the shipped garden
//! twin. Every run whose checks compare
//! frames runs in lock-step with its script (`NACRE_LOCKSTEP`: one model step per script frame),
//! so it sees the same model steps on any machine.
//!
//! Needs an X display: without `DISPLAY` these tests fail with a message saying how to run them
//! (`xvfb-run -a cargo test --test examples_e2e`), rather than pass without having run.
//!
//! The screenshots stay in `target/e2e-screenshots/` for people to look at.

#[path = "common/kill.rs"]
mod kill;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a single example run may take (debug build, software rendering, busy machine).
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

fn require_display() {
    if std::env::var_os("DISPLAY").is_none_or(|d| d.is_empty()) {
        panic!(
            "DISPLAY is not set: these tests open real windows. Run them under X, e.g. \
             `xvfb-run -a -s \"-screen 0 1280x800x24\" cargo test --test examples_e2e` \
             (scripts/test.sh does this)."
        );
    }
}

/// `target/<profile>`, from the test binary's own path (`target/<profile>/deps/…`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The example's binary, built (or found up to date) by cargo.
fn example_binary(name: &str) -> PathBuf {
    let profile = profile_dir();
    let release = profile.file_name().is_some_and(|n| n == "release");
    // `cargo test --examples` (scripts/test.sh) has built it already; building again is a quick
    // up-to-date check, and makes `cargo test --test examples_e2e` alone work too.
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", profile.parent().unwrap());
        if release {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("cargo runs");
        assert!(
            out.status.success(),
            "building example {name} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bin = profile.join("examples").join(name);
    assert!(
        bin.is_file(),
        "{} does not exist; build it with `cargo build --example {name}`",
        bin.display()
    );
    bin
}

/// Where screenshots are kept.
fn shots_dir() -> PathBuf {
    let dir = profile_dir().parent().unwrap().join("e2e-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Run {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
    /// The folder the example ran in (saves, recordings).
    dir: PathBuf,
}

/// One example at a time: they share two cores with the software renderer.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The command that runs the example binary `bin` in `dir`.
fn example_command(bin: &Path, dir: &Path, args: &[&str], env: &[(&str, String)]) -> Command {
    let mut command = Command::new(bin);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        // Mesa's software Vulkan; harmless where a GPU driver is present.
        .env(
            "WGPU_BACKEND",
            std::env::var("WGPU_BACKEND").unwrap_or_else(|_| "vulkan".into()),
        )
        .current_dir(dir);
    command
}

/// Runs an example in a fresh folder with the given arguments and environment.
fn run(name: &str, tag: &str, args: &[&str], env: &[(&str, String)]) -> Run {
    require_display();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = example_binary(name);
    let dir = std::env::temp_dir().join(format!("nacre-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = example_command(&bin, &dir, args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the pipes on threads so a chatty program never blocks on a full pipe.
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out_pipe, &mut s).ok();
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err_pipe, &mut s).ok();
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} did not quit within {RUN_TIMEOUT:?}\n--- stderr ---\n{}",
                err_thread.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let run = Run {
        status,
        stdout: out_thread.join().unwrap(),
        stderr: err_thread.join().unwrap(),
        dir,
    };
    assert!(
        run.status.success(),
        "{name} exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run.status,
        run.stdout,
        tail(&run.stderr)
    );
    run
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(6000);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    &s[start..]
}

/// A rectangle of a screenshot, in pixels.
#[derive(Clone, Copy, Debug)]
struct Region {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
}

fn load(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

/// Mean and standard deviation of the luminance in a region, and how many distinct colours
/// (quantised to 5 bits per channel) it has.
fn stats(img: &image::RgbImage, r: Region) -> (f32, f32, usize) {
    let mut sum = 0.0f64;
    let mut sq = 0.0f64;
    let mut colours = std::collections::HashSet::new();
    let mut n = 0.0f64;
    for y in r.y..r.y + r.h {
        for x in r.x..r.x + r.w {
            let p = img.get_pixel(x, y).0;
            let l = 0.2126 * p[0] as f64 + 0.7152 * p[1] as f64 + 0.0722 * p[2] as f64;
            sum += l;
            sq += l * l;
            n += 1.0;
            colours.insert((p[0] >> 3, p[1] >> 3, p[2] >> 3));
        }
    }
    let mean = sum / n;
    (
        (mean) as f32,
        ((sq / n - mean * mean).max(0.0)).sqrt() as f32,
        colours.len(),
    )
}

/// Mean absolute difference per channel between two screenshots in a region.
fn difference(a: &image::RgbImage, b: &image::RgbImage, r: Region) -> f32 {
    let mut sum = 0u64;
    for y in r.y..r.y + r.h {
        for x in r.x..r.x + r.w {
            let (p, q) = (a.get_pixel(x, y).0, b.get_pixel(x, y).0);
            sum += (0..3).map(|c| p[c].abs_diff(q[c]) as u64).sum::<u64>();
        }
    }
    sum as f32 / (r.w * r.h * 3) as f32
}

fn assert_not_blank(img: &image::RgbImage, r: Region, what: &str) {
    let (mean, std, colours) = stats(img, r);
    assert!(
        std > 8.0 && colours > 64 && mean > 10.0,
        "{what} looks blank: mean {mean:.1}, std {std:.1}, {colours} colours"
    );
}

/// Between the two idle screenshots a region barely changes; between the second idle one and the
/// turned one it changes by more than 10 per channel and more than four times as much. The
/// examples run in lock-step with their scripts (`NACRE_LOCKSTEP`), so every run compares the
/// same model steps: 50 standing still against 60 turning and walking.
fn assert_turning_changes_more_than_waiting(
    [idle0, idle1, turned]: [&image::RgbImage; 3],
    r: Region,
    what: &str,
) {
    let idle = difference(idle0, idle1, r);
    let moved = difference(idle1, turned, r);
    eprintln!("{what}: idle {idle:.2}, turned {moved:.2}");
    assert!(
        moved > 10.0 && moved > 4.0 * idle,
        "turning should change {what} much more than waiting: idle {idle:.2}, turned {moved:.2}"
    );
}

/// The screenshots of one scripted run: idle at frame 40 and 90, then turning right with the
/// arrow key from frame 90 to 150 and walking, screenshot at 160.
fn idle_then_turn(extra: &str) -> String {
    format!(
        "40 screenshot {a}; 90 screenshot {b}; 91 press ArrowRight; 91 press KeyW; \
         150 release ArrowRight; 150 release KeyW; 160 screenshot {c}; {extra}",
        a = "shot-idle-0.png",
        b = "shot-idle-1.png",
        c = "shot-turned.png"
    )
}

fn keep(run: &Run, name: &str, as_name: &str) -> image::RgbImage {
    let src = run.dir.join(name);
    let dst = shots_dir().join(as_name);
    std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    load(&dst)
}

/// The generated view in wander fills the window's height at 16:9: the whole 1280×720 window.
/// The HUD sits in the top-left corner, so the checks look below and beside it.
const WANDER_VIEW: Region = Region {
    x: 100,
    y: 200,
    w: 1080,
    h: 500,
};

#[test]
fn wander_shows_a_world_that_turns_with_the_arrow_keys_and_saves_and_records() {
    let run = run(
        "wander",
        "wander",
        &["--reference", "--seed", "7"],
        &[
            (
                "NACRE_SCRIPT",
                idle_then_turn("10 tap KeyR; 20 tap F5; 170 tap KeyR"),
            ),
            ("NACRE_EXIT_AFTER_FRAMES", "230".into()),
            ("NACRE_LOCKSTEP", "1".into()),
            ("NACRE_SCREENSHOT", "shot-final.png".into()),
        ],
    );
    let idle0 = keep(&run, "shot-idle-0.png", "wander-idle-0.png");
    let idle1 = keep(&run, "shot-idle-1.png", "wander-idle-1.png");
    let turned = keep(&run, "shot-turned.png", "wander-turned.png");
    keep(&run, "shot-final.png", "wander-final.png");
    assert_eq!(idle0.dimensions(), (1280, 720));
    assert_not_blank(&idle0, WANDER_VIEW, "the generated view");
    assert_not_blank(&turned, WANDER_VIEW, "the generated view after turning");
    assert_turning_changes_more_than_waiting([&idle0, &idle1, &turned], WANDER_VIEW, "the view");
    // F5 saved the session, R started and stopped a recording.
    let save = run.dir.join("saves").join("wander.nacre");
    let header = bevy_nacre::session_file::decode(&std::fs::read(&save).unwrap())
        .unwrap()
        .header;
    assert_eq!(header.model, "nacre-reference");
    let recordings: Vec<_> = std::fs::read_dir(run.dir.join("recordings"))
        .unwrap()
        .collect();
    assert_eq!(recordings.len(), 1);
    let rec = recordings[0].as_ref().unwrap().path();
    let log = bevy_nacre::recording::ActionLog::load(&rec.join("actions.json")).unwrap();
    assert!(log.steps.len() > 20, "{} steps recorded", log.steps.len());
    let turned_steps = log.steps.iter().filter(|s| s.action[2] > 0.5).count();
    assert!(turned_steps > 5, "the turn is in the action log");
    // At most one warning about the sound device (none where there is one).
    assert!(run.stderr.matches("nacre_kira: no sound device").count() <= 1);
    let _ = std::fs::remove_dir_all(&run.dir);
}

/// The main job as `scripts/play.sh` runs it: wander loads the shipped default model and shows it.
#[test]
fn wander_plays_the_shipped_default_model() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join(bevy_nacre::default_model::SHIPPED_DIR);
    let run = run(
        "wander",
        "default-model",
        &[
            "--model",
            model.to_str().unwrap(),
            "--no-sound",
            "--seed",
            "3",
        ],
        &[
            ("NACRE_SCRIPT", idle_then_turn("")),
            ("NACRE_EXIT_AFTER_FRAMES", "170".into()),
            ("NACRE_LOCKSTEP", "1".into()),
        ],
    );
    assert!(
        !run.stderr.contains("no trained model"),
        "{}",
        tail(&run.stderr)
    );
    let idle0 = keep(&run, "shot-idle-0.png", "wander-default-idle-0.png");
    let idle1 = keep(&run, "shot-idle-1.png", "wander-default-idle-1.png");
    let turned = keep(&run, "shot-turned.png", "wander-default-turned.png");
    assert_not_blank(&idle0, WANDER_VIEW, "the default model's view");
    assert_not_blank(
        &turned,
        WANDER_VIEW,
        "the default model's view after turning",
    );
    // The view changes when the player turns and walks, more than it drifts while they wait
    // (how it turns is checked on the model itself in tests/shipped_model.rs).
    assert_turning_changes_more_than_waiting(
        [&idle0, &idle1, &turned],
        WANDER_VIEW,
        "the default model's view",
    );
    let _ = std::fs::remove_dir_all(&run.dir);
}

#[test]
fn wander_without_a_trained_model_says_so_and_plays_the_reference_world() {
    let run = run(
        "wander",
        "fallback",
        &["--model", "no/such/model", "--no-sound"],
        &[
            ("NACRE_EXIT_AFTER_FRAMES", "20".into()),
            ("NACRE_SCREENSHOT", "shot.png".into()),
        ],
    );
    assert!(
        run.stderr.contains("no trained model at no/such/model"),
        "{}",
        tail(&run.stderr)
    );
    let shot = keep(&run, "shot.png", "wander-fallback.png");
    assert_not_blank(&shot, WANDER_VIEW, "the reference world");
    let _ = std::fs::remove_dir_all(&run.dir);
}

/// Right of the director panel, below the HUD.
const DIRECTOR_VIEW: Region = Region {
    x: 560,
    y: 260,
    w: 680,
    h: 440,
};

/// Inside the director panel (placed below the HUD by the example): the statistics and plot
/// area, on egui's dark panel background.
const DIRECTOR_PANEL: Region = Region {
    x: 20,
    y: 330,
    w: 280,
    h: 110,
};

/// Where the time-of-day slider's left end is, in the panel as the example places it.
const TIME_SLIDER_START: (u32, u32) = (21, 177);

/// Fraction of a region's pixels that are dark and colourless, as egui's dark panel is.
fn panel_fraction(img: &image::RgbImage, r: Region) -> f32 {
    let mut n = 0;
    for y in r.y..r.y + r.h {
        for x in r.x..r.x + r.w {
            let p = img.get_pixel(x, y).0;
            let (lo, hi) = (p.iter().min().unwrap(), p.iter().max().unwrap());
            if *hi < 60 && hi - lo < 12 {
                n += 1;
            }
        }
    }
    n as f32 / (r.w * r.h) as f32
}

#[test]
fn director_panel_and_phrases_change_the_world() {
    // Day, then the time-of-day slider dragged to its left end (midnight) with the mouse.
    let (sx, sy) = TIME_SLIDER_START;
    let clicked = run(
        "director",
        "director-slider",
        &["--reference", "--no-sound"],
        &[
            ("NACRE_EXIT_AFTER_FRAMES", "110".into()),
            (
                "NACRE_SCRIPT",
                format!("40 screenshot day.png; 45 click {sx} {sy}; 100 screenshot slider.png"),
            ),
            ("NACRE_LOCKSTEP", "1".into()),
        ],
    );
    // The same night asked for in words.
    let night = run(
        "director",
        "director-night",
        &["--reference", "--no-sound", "--direct", "clear night"],
        &[
            ("NACRE_EXIT_AFTER_FRAMES", "60".into()),
            ("NACRE_SCREENSHOT", "shot.png".into()),
            ("NACRE_LOCKSTEP", "1".into()),
        ],
    );
    let day_img = keep(&clicked, "day.png", "director-day.png");
    let slider_img = keep(&clicked, "slider.png", "director-slider-midnight.png");
    let night_img = keep(&night, "shot.png", "director-night.png");
    assert_not_blank(&day_img, DIRECTOR_VIEW, "the directed view");

    // The panel is drawn over the view (egui's pass runs after Bevy UI's).
    let panel = panel_fraction(&day_img, DIRECTOR_PANEL);
    let bare = panel_fraction(&day_img, DIRECTOR_VIEW);
    assert!(
        panel > 0.6 && bare < 0.1,
        "no director panel: {:.0} % panel-coloured pixels where it should be, {:.0} % in the view",
        panel * 100.0,
        bare * 100.0
    );

    let (day_l, _, _) = stats(&day_img, DIRECTOR_VIEW);
    let (slider_l, _, _) = stats(&slider_img, DIRECTOR_VIEW);
    let (night_l, _, _) = stats(&night_img, DIRECTOR_VIEW);
    eprintln!(
        "director view brightness: day {day_l:.1}, slider at midnight {slider_l:.1}, \"clear night\" {night_l:.1}"
    );
    assert!(
        slider_l < 0.6 * day_l,
        "after dragging the slider to midnight the view ({slider_l:.1}) should be darker than day ({day_l:.1})"
    );
    assert!(
        night_l < 0.6 * day_l,
        "night {night_l:.1} should be darker than day {day_l:.1}"
    );
    assert!(night.stderr.contains("clear night") || night.stdout.contains("clear night"));
    let _ = std::fs::remove_dir_all(&clicked.dir);
    let _ = std::fs::remove_dir_all(&night.dir);
}

/// The two screens on the wall of the hybrid room, inside their frames.
const LEFT_SCREEN: Region = Region {
    x: 190,
    y: 230,
    w: 330,
    h: 160,
};
const RIGHT_SCREEN: Region = Region {
    x: 760,
    y: 230,
    w: 330,
    h: 160,
};

#[test]
fn hybrid_screens_show_both_worlds_moving_with_the_player() {
    let run = run(
        "hybrid",
        "hybrid",
        &["--no-sound"],
        &[
            // Half the frames of the other runs: a lit 3D scene renders slowly in software.
            (
                "NACRE_SCRIPT",
                "20 screenshot shot-idle-0.png; 45 screenshot shot-idle-1.png; \
                 46 press ArrowRight; 46 press KeyW; 80 release ArrowRight; 80 release KeyW; \
                 90 screenshot shot-turned.png"
                    .into(),
            ),
            ("NACRE_EXIT_AFTER_FRAMES", "95".into()),
            ("NACRE_LOCKSTEP", "1".into()),
        ],
    );
    // The right screen is the shipped default model, not the reference world the example falls
    // back to (and says so) when the model folder is missing or broken.
    assert!(
        !run.stderr.contains("no trained model"),
        "the default model did not load: {}",
        tail(&run.stderr)
    );
    assert!(
        !run.stderr.contains("failed to load") && !run.stdout.contains("failed to load"),
        "{}",
        tail(&run.stderr)
    );
    let idle0 = keep(&run, "shot-idle-0.png", "hybrid-idle-0.png");
    let idle1 = keep(&run, "shot-idle-1.png", "hybrid-idle-1.png");
    let turned = keep(&run, "shot-turned.png", "hybrid-turned.png");
    // Both screens show a picture and change when the player turns, much more than while they
    // wait: the left one is the reference world, the right one the shipped default model.
    assert_not_blank(&turned, RIGHT_SCREEN, "right screen");
    assert_not_blank(&turned, LEFT_SCREEN, "left screen");
    let shots = [&idle0, &idle1, &turned];
    assert_turning_changes_more_than_waiting(shots, LEFT_SCREEN, "the left screen");
    assert_turning_changes_more_than_waiting(shots, RIGHT_SCREEN, "the right screen");
    let _ = std::fs::remove_dir_all(&run.dir);
}

/// The twin example's two pictures: the garden (left) and its neural twin (right), inside the
/// 536-pixel squares they are drawn in at 1280×720.
const GARDEN_PICTURE: Region = Region {
    x: 70,
    y: 170,
    w: 500,
    h: 500,
};
const TWIN_PICTURE: Region = Region {
    x: 710,
    y: 170,
    w: 500,
    h: 500,
};

/// PSNR (dB) between region `ra` of `a` and region `rb` of `b` (the same size).
fn psnr_of_regions(a: &image::RgbImage, ra: Region, b: &image::RgbImage, rb: Region) -> f32 {
    let mut sum = 0.0f64;
    for y in 0..ra.h {
        for x in 0..ra.w {
            let p = a.get_pixel(ra.x + x, ra.y + y).0;
            let q = b.get_pixel(rb.x + x, rb.y + y).0;
            sum += (0..3)
                .map(|c| (p[c] as f64 - q[c] as f64).powi(2))
                .sum::<f64>();
        }
    }
    let mse = sum / (ra.w * ra.h * 3) as f64;
    (10.0 * (255.0f64 * 255.0 / mse.max(1e-10)).log10()) as f32
}

/// Issue 19's side-by-side: the shipped garden twin starts from a snapshot of the garden's own
/// view (the two pictures agree before anyone moves), and when the player turns and walks both
/// pictures change, much more than while waiting (the hybrid test's criterion). What the twin
/// draws after a full-rate turn is not yet the garden's view (about 8 dB between the pictures;
/// printed, not checked): see the twin's model card.
#[test]
fn twin_starts_from_the_garden_and_turns_with_it() {
    let run = run(
        "twin",
        "twin",
        &["--no-sound"],
        &[
            (
                "NACRE_SCRIPT",
                "2 screenshot shot-idle-0.png; 20 screenshot shot-idle-1.png; \
                 21 press ArrowRight; 21 press KeyW; 45 release ArrowRight; 45 release KeyW; \
                 50 screenshot shot-turned.png"
                    .into(),
            ),
            ("NACRE_EXIT_AFTER_FRAMES", "55".into()),
            ("NACRE_LOCKSTEP", "1".into()),
        ],
    );
    assert!(
        !run.stderr.contains("no twin model") && !run.stderr.contains("failed to load"),
        "the garden twin did not load: {}",
        tail(&run.stderr)
    );
    let idle0 = keep(&run, "shot-idle-0.png", "twin-idle-0.png");
    let idle1 = keep(&run, "shot-idle-1.png", "twin-idle-1.png");
    let turned = keep(&run, "shot-turned.png", "twin-turned.png");
    assert_not_blank(&turned, GARDEN_PICTURE, "the garden");
    assert_not_blank(&turned, TWIN_PICTURE, "the twin");
    let start = psnr_of_regions(&idle0, GARDEN_PICTURE, &idle0, TWIN_PICTURE);
    let followed = psnr_of_regions(&turned, GARDEN_PICTURE, &turned, TWIN_PICTURE);
    let stayed = psnr(&turned, &idle0, TWIN_PICTURE);
    eprintln!(
        "twin against garden: at the start {start:.1} dB, after turning {followed:.1} dB \
         (the twin against its own start: {stayed:.1} dB)"
    );
    assert!(
        start >= 18.0,
        "the twin should start from the garden's view: {start:.1} dB between the pictures"
    );
    let shots = [&idle0, &idle1, &turned];
    assert_turning_changes_more_than_waiting(shots, GARDEN_PICTURE, "the garden");
    assert_turning_changes_more_than_waiting(shots, TWIN_PICTURE, "the twin");
    let _ = std::fs::remove_dir_all(&run.dir);
}

/// Mean gradient magnitude of the luminance in a region (horizontal plus vertical neighbour
/// differences): how much detail a view shows, the sharpness measure of `nacre eval`.
fn sharpness(img: &image::RgbImage, r: Region) -> f32 {
    let (across, down) = detail_across_down(img, r);
    across + down
}

/// Mean absolute luminance difference between neighbours along rows and down columns of a
/// region: [`sharpness`] split by direction, as `nacre eval`'s `detail_across_down_ratio`. A view
/// smeared sideways into horizontal streaks keeps its detail down the columns only.
fn detail_across_down(img: &image::RgbImage, r: Region) -> (f32, f32) {
    let luma = |x, y| {
        let p = img.get_pixel(x, y).0;
        0.2126 * p[0] as f32 + 0.7152 * p[1] as f32 + 0.0722 * p[2] as f32
    };
    let (mut across, mut down) = (0.0f64, 0.0f64);
    for y in r.y..r.y + r.h - 1 {
        for x in r.x..r.x + r.w - 1 {
            let l = luma(x, y);
            across += (luma(x + 1, y) - l).abs() as f64;
            down += (luma(x, y + 1) - l).abs() as f64;
        }
    }
    let n = ((r.w - 1) * (r.h - 1)) as f64;
    ((across / n) as f32, (down / n) as f32)
}

/// The square 128×128 view in the middle of the 1280×720 window, below the HUD.
const SQUARE_VIEW: Region = Region {
    x: 300,
    y: 200,
    w: 680,
    h: 500,
};

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// PSNR (dB) between two screenshots in a region.
fn psnr(a: &image::RgbImage, b: &image::RgbImage, r: Region) -> f32 {
    psnr_of_regions(a, r, b, r)
}

/// Issue 18's place memory in the game: the player turns 180° right (40 model steps at full
/// turn, one per script frame in lock-step) and back. With the shipped model's place memory
/// the view after returning matches the view before at least 6 dB better (a quarter of the
/// squared error) than the same weights without it, in the same script from the same seed.
/// Half way round, the view keeps 0.8–1.25 of the reference world's detail there (mean
/// gradient ratio, issue 18's sharpness target while turning; 0.82 measured). Prints the
/// figures and the reference world's own (its clouds move), and the detail ratio split by
/// direction: the shipped model's 0.82 is 1.09 down the columns and 0.56 along the rows, the
/// sideways streaks it draws where the reference has trees (printed, not asserted: drawing
/// trees there is issue 18's open work).
#[test]
fn wander_remembers_the_view_after_a_half_turn_and_back() {
    let script = "20 screenshot before.png; 21 press ArrowRight; 61 release ArrowRight; \
                  61 screenshot half.png; 62 press ArrowLeft; 102 release ArrowLeft; \
                  110 screenshot back.png";
    let env = [
        ("NACRE_SCRIPT", script.to_string()),
        ("NACRE_LOCKSTEP", "1".into()),
        ("NACRE_EXIT_AFTER_FRAMES", "112".into()),
    ];
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(bevy_nacre::default_model::SHIPPED_DIR);
    // The same weights without the place memory, in a model folder of their own.
    let forgetful =
        std::env::temp_dir().join(format!("nacre-e2e-forgetful-{}", std::process::id()));
    std::fs::create_dir_all(&forgetful).unwrap();
    std::fs::copy(
        shipped.join("model.safetensors"),
        forgetful.join("model.safetensors"),
    )
    .unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shipped.join("config.json")).unwrap()).unwrap();
    let generation = config["generation"].as_object_mut().unwrap();
    assert!(
        generation.remove("memory").is_some(),
        "the shipped model has a place memory"
    );
    std::fs::write(
        forgetful.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    let play = |tag: &str, args: &[&str]| {
        let run = run("wander", tag, args, &env);
        let shots = ["before", "half", "back"]
            .map(|name| keep(&run, &format!("{name}.png"), &format!("{tag}-{name}.png")));
        let _ = std::fs::remove_dir_all(&run.dir);
        shots
    };
    let model_args = |dir: &Path| -> Vec<String> {
        let dir = dir.display().to_string();
        [&*dir, "--no-sound", "--seed", "5"].into_iter().fold(
            vec!["--model".to_string()],
            |mut v, a| {
                v.push(a.to_string());
                v
            },
        )
    };
    let (shipped_args, forgetful_args) = (model_args(&shipped), model_args(&forgetful));
    let [ref_before, ref_half, ref_back] = play(
        "half-turn-reference",
        &[
            "--reference",
            "--size",
            "128x128",
            "--no-sound",
            "--seed",
            "5",
        ],
    );
    let [before, half, back] = play("half-turn-default", &strs(&shipped_args));
    let [f_before, f_half, f_back] = play("half-turn-forgetful", &strs(&forgetful_args));
    let _ = std::fs::remove_dir_all(&forgetful);
    assert_not_blank(
        &half,
        SQUARE_VIEW,
        "the default model's view half way round",
    );
    assert!(
        difference(&before, &half, SQUARE_VIEW) > 10.0,
        "the view turned"
    );
    let detail = sharpness(&half, SQUARE_VIEW) / sharpness(&ref_half, SQUARE_VIEW);
    let f_detail = sharpness(&f_half, SQUARE_VIEW) / sharpness(&ref_half, SQUARE_VIEW);
    let ((across, down), (ref_across, ref_down)) = (
        detail_across_down(&half, SQUARE_VIEW),
        detail_across_down(&ref_half, SQUARE_VIEW),
    );
    let kept = psnr(&before, &back, SQUARE_VIEW);
    let without = psnr(&f_before, &f_back, SQUARE_VIEW);
    let reference_kept = psnr(&ref_before, &ref_back, SQUARE_VIEW);
    eprintln!(
        "after a half turn and back: {kept:.1} dB with the place memory, {without:.1} dB \
         without (reference world {reference_kept:.1} dB); detail half way round, default \
         model ÷ reference world: {detail:.2} ({f_detail:.2} without the place memory), \
         along rows {:.2} and down columns {:.2}",
        across / ref_across,
        down / ref_down
    );
    assert!(
        kept >= without + 6.0,
        "the place memory should bring the view back: {kept:.1} dB with it, {without:.1} without"
    );
    // Issue 18's sharpness target while turning: the view keeps the reference's detail, neither
    // blurred (below 0.8) nor noise (above 1.25).
    assert!(
        (0.8..=1.25).contains(&detail),
        "half way round the view should keep the reference world's detail: {detail:.2} of it"
    );
}

/// The actions, controls, poses and pictures of a captured dataset, episode by episode.
fn captured(dir: &Path) -> Vec<bevy_nacre::dataset::Episode> {
    let report = bevy_nacre::dataset::check_dataset(dir);
    assert!(
        report.is_ok() && report.shards_ok == report.shards_listed,
        "{}: {:?}",
        dir.display(),
        report.problems
    );
    bevy_nacre::dataset::Dataset::open(dir)
        .unwrap()
        .episodes()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[test]
fn capture_records_the_garden_unattended_and_resumes_after_a_kill() {
    use bevy_nacre::dataset::episode_seed;
    use bevy_nacre::explorer::{Explorer, ExplorerConfig};
    const EPISODES: u64 = 3;
    const FRAMES: usize = 12;
    // Episode 0 of this seed starts by day (11 h), so a frame shows the lit garden.
    const SEED: u64 = 1;
    let args = |out: &str| -> Vec<String> {
        strs_owned(&[
            "--out",
            out,
            "--episodes",
            &EPISODES.to_string(),
            "--frames",
            &FRAMES.to_string(),
            "--episodes-per-shard",
            "1",
            "--seed",
            &SEED.to_string(),
            "--exit",
        ])
    };
    // One capture from start to end, with frame 17 (episode 1, frame 5) also saved through
    // Bevy's screenshot path.
    let mut whole_args = args("whole");
    whole_args.extend(strs_owned(&["--screenshot-frame", "17", "shot.png"]));
    let whole = run("capture", "capture-whole", &strs(&whole_args), &[]);
    eprintln!("{}", whole.stdout.trim());
    let episodes = captured(&whole.dir.join("whole"));
    assert_eq!(episodes.len(), EPISODES as usize);
    let spec = bevy_nacre::dataset::Dataset::open(whole.dir.join("whole"))
        .unwrap()
        .manifest()
        .model
        .clone();
    // Every step's action and controls are the explorer's for that episode, frame for frame.
    for episode in &episodes {
        let mut explorer = Explorer::new(
            &spec,
            episode_seed(SEED, episode.index),
            ExplorerConfig::default(),
        );
        let (a, c) = (spec.actions.len(), spec.controls.len());
        for f in 0..FRAMES {
            let input = explorer.next_input();
            assert_eq!(
                episode.data.actions[f * a..(f + 1) * a],
                input.action.values[..],
                "action of episode {} frame {f}",
                episode.index
            );
            assert_eq!(
                episode.data.controls[f * c..(f + 1) * c],
                input.controls.values[..],
                "controls of episode {} frame {f}",
                episode.index
            );
        }
    }
    // The dataset's picture is the camera's: Bevy's own screenshot of the same scene (taken while
    // the capture holds the clock for that frame): nearly every pixel the same, and no other
    // (different) captured frame as close to the screenshot.
    let shot = load(&whole.dir.join("shot.png"));
    let (w, h) = (spec.width, spec.height);
    assert_eq!((shot.width(), shot.height()), (w, h));
    let pixels = (w * h * 3) as usize;
    let all: Vec<&[u8]> = episodes
        .iter()
        .flat_map(|e| e.data.frames.chunks_exact(pixels))
        .collect();
    let frame = all[17];
    let mean_difference = |f: &[u8]| {
        f.iter()
            .zip(shot.as_raw())
            .map(|(a, b)| a.abs_diff(*b) as f64)
            .sum::<f64>()
            / pixels as f64
    };
    let same_pixels = frame
        .chunks_exact(3)
        .zip(shot.as_raw().chunks_exact(3))
        .filter(|(a, b)| a == b)
        .count() as f64
        / (w * h) as f64;
    let own = mean_difference(frame);
    eprintln!(
        "frame 17 against Bevy's screenshot: {:.2} % of pixels the same, mean difference {own:.3}",
        100.0 * same_pixels
    );
    assert!(
        same_pixels >= 0.98 && own < 0.5,
        "frame 17 is not Bevy's screenshot of it: {:.2} % of pixels the same, mean difference {own:.3}",
        100.0 * same_pixels
    );
    for (i, other) in all.iter().enumerate() {
        if *other != frame {
            let d = mean_difference(other);
            assert!(
                d > own,
                "frame {i} ({d:.3}) is as close to the screenshot as frame 17 ({own:.3})"
            );
        }
    }
    let picture = |f: &[u8]| image::RgbImage::from_raw(w, h, f.to_vec()).unwrap();
    picture(frame)
        .save(shots_dir().join("capture-frame17.png"))
        .unwrap();
    // By day the garden is there, not an empty picture: the frame whose recorded time of day
    // is nearest noon.
    let hour = spec.control_index("time_of_day").unwrap();
    let c = spec.controls.len();
    let hours: Vec<f32> = episodes
        .iter()
        .flat_map(|e| e.data.controls.chunks_exact(c).map(|v| v[hour]))
        .collect();
    let sun = |h: f32| ((h - 6.0) / 12.0 * std::f32::consts::PI).sin();
    let noon = (0..hours.len())
        .max_by(|&a, &b| sun(hours[a]).total_cmp(&sun(hours[b])))
        .unwrap();
    assert!(
        sun(hours[noon]) > 0.0,
        "no captured frame is by day: {hours:?}"
    );
    let day = picture(all[noon]);
    day.save(shots_dir().join("capture-day.png")).unwrap();
    assert_not_blank(
        &day,
        Region { x: 0, y: 0, w, h },
        &format!("captured frame {noon} ({:.1} h)", hours[noon]),
    );
    // The player moves: the camera pose changes within an episode.
    let pose = &episodes[0].data.pose;
    let moved = (0..FRAMES - 1).any(|f| pose[f * 5..f * 5 + 5] != pose[(f + 1) * 5..(f + 2) * 5]);
    assert!(moved, "the camera never moved: {pose:?}");

    // Killed after its first shard, then run again with the same options: the same dataset.
    let bin = example_binary("capture");
    let dir = whole
        .dir
        .with_file_name(format!("nacre-e2e-capture-killed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let mut child = example_command(&bin, &dir, &strs(&args("resumed")), &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let manifest = dir.join("resumed").join("manifest.json");
        kill::kill_when(
            &mut child,
            RUN_TIMEOUT,
            "the capture ended before it was killed",
            &format!("no shard written in {RUN_TIMEOUT:?}"),
            || {
                std::fs::read_to_string(&manifest)
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .and_then(|m| m["shards"].as_array().map(Vec::len))
                    .is_some_and(|shards| shards >= 1)
            },
        );
    }
    let report = bevy_nacre::dataset::check_dataset(&dir.join("resumed"));
    assert!(
        report.shards_ok == report.shards_listed
            && report.problems.len() == 1
            && report.problems[0].message.contains("incomplete"),
        "after the kill: {:?}",
        report.problems
    );
    let partial: Vec<_> = bevy_nacre::dataset::Dataset::open(dir.join("resumed"))
        .unwrap()
        .episodes()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        !partial.is_empty() && partial.len() < EPISODES as usize,
        "killed after {} episodes",
        partial.len()
    );
    let resumed_args = args(dir.join("resumed").to_str().unwrap());
    let resumed = run("capture", "capture-resumed", &strs(&resumed_args), &[]);
    assert!(resumed.status.success());
    let again = captured(&dir.join("resumed"));
    assert_eq!(again.len(), episodes.len());
    for (a, b) in episodes.iter().zip(&again) {
        assert_eq!(a.index, b.index);
        assert_eq!(a.data.actions, b.data.actions, "episode {}", a.index);
        assert_eq!(a.data.pose, b.data.pose, "episode {}", a.index);
        for (f, (x, y)) in a
            .data
            .frames
            .chunks_exact(pixels)
            .zip(b.data.frames.chunks_exact(pixels))
            .enumerate()
        {
            assert!(
                x == y,
                "episode {} frame {f}: the resumed capture's picture differs",
                a.index
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn strs_owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
