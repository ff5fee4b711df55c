//! The reference world: determinism, save/restore, camera motion seen in the pictures, lighting,
//! sound, director controls, and any resolution.

use bevy_nacre::action::{Action, Controls};
use bevy_nacre::frame::Frame;
use bevy_nacre::reference::trajectory::{Trajectory, TrajectoryConfig};
use bevy_nacre::reference::{
    Biome, ReferenceSession, ReferenceWorld, Weather, control_index as ci, reference_spec,
};
use bevy_nacre::world_model::{Prompt, StepInput, WorldModel, validate_output};

fn controls(time: f32, weather: Weather, biome: Option<Biome>) -> Controls {
    let mut c = reference_spec(8, 8).default_controls();
    c.values[ci::TIME_OF_DAY] = time;
    c.values[ci::WEATHER] = weather.control_value();
    c.values[ci::BIOME] = biome.map_or(0.0, Biome::control_value);
    c
}

fn start(world: &ReferenceWorld, seed: u64, c: &Controls) -> ReferenceSession {
    world
        .start_session(&Prompt {
            seed,
            start_frames: Vec::new(),
            controls: Some(c.clone()),
        })
        .unwrap()
}

fn act(forward: f32, turn: f32) -> Action {
    Action::new(vec![forward, 0.0, turn, 0.0, 0.0, 0.0])
}

fn step(s: &mut ReferenceSession, a: &Action, c: &Controls) -> bevy_nacre::world_model::StepOutput {
    s.step_world(&StepInput {
        action: a.clone(),
        controls: c.clone(),
    })
    .unwrap()
}

/// Luminance of each pixel, row-major.
fn luma(f: &Frame) -> Vec<f32> {
    f.rgba
        .chunks_exact(4)
        .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
        .collect()
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len() as f32
}

/// Runs a player-like trajectory with director changes and returns all frames and samples.
fn rollout(world: &ReferenceWorld, seed: u64, frames: usize) -> (Vec<Vec<u8>>, Vec<f32>) {
    let spec = world.spec().clone();
    let config = TrajectoryConfig {
        director_changes_per_minute: 30.0,
        random_start_controls: true,
        ..TrajectoryConfig::default()
    };
    let mut t = Trajectory::new(seed, spec.default_controls(), config);
    let mut s = start(world, seed, t.start_controls());
    let mut pictures = Vec::new();
    let mut sound = Vec::new();
    for _ in 0..frames {
        let input = t.next(&mut s);
        let out = s.step_world(&input).unwrap();
        pictures.push(out.frame.rgba);
        sound.extend(out.audio.samples);
    }
    (pictures, sound)
}

#[test]
fn same_seed_and_actions_give_bit_identical_frames_and_sound() {
    let world = ReferenceWorld::new(48, 40);
    let (fa, sa) = rollout(&world, 21, 120);
    let (fb, sb) = rollout(&world, 21, 120);
    assert!(fa == fb, "frames differ between identical runs");
    assert_eq!(
        sa.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        sb.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        "sound differs between identical runs"
    );
    // A separate model instance gives the same too (nothing global).
    let (fc, _) = rollout(&ReferenceWorld::new(48, 40), 21, 30);
    assert!(fc[..] == fa[..30]);
    let (fd, _) = rollout(&world, 22, 30);
    assert!(fd[..] != fa[..30], "another seed should give another world");
}

#[test]
fn restore_continues_bit_identically() {
    let world = ReferenceWorld::new(40, 32);
    let spec = world.spec().clone();
    let mut c = controls(17.0, Weather::Rain, None);
    let mut a = world.start(&Prompt::seeded(5)).unwrap();
    let mut inputs = Vec::new();
    for i in 0..140 {
        c.values[ci::STORM] = if i == 10 { 1.0 } else { 0.0 };
        c.values[ci::LANDMARK] = if i == 20 { 1.0 } else { 0.0 };
        c.values[ci::BIOME] = if i > 30 {
            Biome::Desert.control_value()
        } else {
            0.0
        };
        c.values[ci::TIME_OF_DAY] = 17.0 + i as f32 * 0.02;
        let turn = if (i / 25) % 2 == 0 { 0.4 } else { -0.7 };
        let jump = if i % 37 == 0 { 1.0 } else { 0.0 };
        inputs.push(StepInput {
            action: Action::new(vec![1.0, 0.2, turn, 0.1, jump, (i % 50 > 30) as u8 as f32]),
            controls: c.clone(),
        });
    }
    for input in &inputs[..70] {
        a.step(input).unwrap();
    }
    let saved = a.save().unwrap();
    assert_eq!(a.frame_index(), 70);
    let mut b = ReferenceWorld::new(40, 32).restore(&saved).unwrap();
    assert_eq!(b.frame_index(), 70);
    for (i, input) in inputs[70..].iter().enumerate() {
        let oa = a.step(input).unwrap();
        let ob = b.step(input).unwrap();
        assert!(
            oa.frame == ob.frame,
            "frame {} differs after restore",
            70 + i
        );
        assert!(
            oa.audio == ob.audio,
            "sound {} differs after restore",
            70 + i
        );
        validate_output(&spec, &oa).unwrap();
    }
    assert_eq!(a.save().unwrap(), b.save().unwrap());

    // Damaged state is refused with an error, never a panic.
    for bad in [
        &saved[..saved.len() / 2],
        &saved[..3],
        b"NREF\x09\0\0\0".as_slice(),
        b"garbage!".as_slice(),
    ] {
        assert!(world.restore(bad).is_err());
    }
    let mut extra = saved.clone();
    extra.push(0);
    assert!(world.restore(&extra).is_err());
}

/// The horizontal shift (pixels, positive = content moved right) that best maps `a` onto `b`.
fn best_shift(a: &[f32], b: &[f32], w: usize, h: usize, max: i32) -> i32 {
    let mut best = (f32::MAX, 0);
    for s in -max..=max {
        let mut sum = 0.0;
        let mut n = 0;
        for y in 0..h {
            for x in 0..w {
                let xs = x as i32 - s;
                if xs < 0 || xs >= w as i32 {
                    continue;
                }
                sum += (b[y * w + x] - a[y * w + xs as usize]).abs();
                n += 1;
            }
        }
        let err = sum / n as f32;
        if err < best.0 {
            best = (err, s);
        }
    }
    best.1
}

#[test]
fn turning_right_moves_image_content_left() {
    let (w, h) = (128, 96);
    let world = ReferenceWorld::new(w as u32, h as u32);
    let c = controls(10.0, Weather::Clear, Some(Biome::Forest));
    for seed in [3, 4] {
        let mut s = start(&world, seed, &c);
        let a = luma(&step(&mut s, &act(0.0, 0.0), &c).frame);
        // One frame at full turn rate: 4.5 degrees, about 5 pixels at the centre.
        let right = luma(&step(&mut s, &act(0.0, 1.0), &c).frame);
        let shift = best_shift(&a, &right, w, h, 16);
        assert!(
            (-8..=-3).contains(&shift),
            "turning right shifted content by {shift} px"
        );
        let back = luma(&step(&mut s, &act(0.0, -1.0), &c).frame);
        let shift = best_shift(&right, &back, w, h, 16);
        assert!(
            (3..=8).contains(&shift),
            "turning left shifted content by {shift} px"
        );
        let still = luma(&step(&mut s, &act(0.0, 0.0), &c).frame);
        assert_eq!(best_shift(&back, &still, w, h, 16), 0);
    }
}

/// How well `b` matches `a` magnified by `zoom` around the point `(cx, cy)`, over the central
/// window: mean absolute difference.
fn zoom_error(a: &[f32], b: &[f32], w: usize, h: usize, cx: f32, cy: f32, zoom: f32) -> f32 {
    let mut sum = 0.0;
    let mut n = 0;
    // Land between the horizon and the lower quarter: everything there is at a finite distance.
    for y in (cy as usize + 3).min(h)..(h * 4 / 5) {
        for x in w / 4..3 * w / 4 {
            let sx = cx + (x as f32 + 0.5 - cx) / zoom;
            let sy = cy + (y as f32 + 0.5 - cy) / zoom;
            let (ix, iy) = (sx as usize, sy as usize);
            if ix < w && iy < h {
                sum += (b[y * w + x] - a[iy * w + ix]).abs();
                n += 1;
            }
        }
    }
    sum / n as f32
}

fn best_zoom(a: &[f32], b: &[f32], w: usize, h: usize, cx: f32, cy: f32) -> f32 {
    let mut best = (f32::MAX, 1.0);
    for i in 0..=30 {
        let z = 1.0 + i as f32 * 0.02;
        let e = zoom_error(a, b, w, h, cx, cy, z);
        if e < best.0 {
            best = (e, z);
        }
    }
    best.1
}

#[test]
fn walking_forward_enlarges_the_centre() {
    let (w, h) = (128, 128);
    let world = ReferenceWorld::new(w as u32, h as u32);
    let c = controls(11.0, Weather::Clear, Some(Biome::Grassland));
    let mut grew = 0;
    for seed in [31, 32, 33] {
        let mut s = start(&world, seed, &c);
        let a_out = step(&mut s, &act(0.0, 0.0), &c);
        let a = luma(&a_out.frame);
        let z0 = s.camera().z;
        let x0 = s.camera().x;
        let mut b = a.clone();
        for _ in 0..30 {
            b = luma(&step(&mut s, &act(1.0, 0.0), &c).frame);
        }
        let moved = ((s.camera().z - z0).powi(2) + (s.camera().x - x0).powi(2)).sqrt();
        assert!(moved > 3.0, "walked only {moved} m");
        // Let the head bob settle so only the position differs.
        for _ in 0..10 {
            b = luma(&step(&mut s, &act(0.0, 0.0), &c).frame);
        }
        let horizon = h as f32 * 0.5;
        let zoom = best_zoom(&a, &b, w, h, w as f32 * 0.5, horizon);
        // Standing still must not look like a zoom (the check can fail).
        let mut still = start(&world, seed, &c);
        let p = luma(&step(&mut still, &act(0.0, 0.0), &c).frame);
        let q = luma(&step(&mut still, &act(0.0, 0.0), &c).frame);
        assert_eq!(best_zoom(&p, &q, w, h, w as f32 * 0.5, horizon), 1.0);
        if zoom >= 1.04 {
            grew += 1;
        }
    }
    assert!(
        grew >= 2,
        "walking forward enlarged the centre in only {grew} of 3 places"
    );
}

#[test]
fn night_is_darker_than_noon() {
    let world = ReferenceWorld::new(64, 64);
    for (seed, biome) in [(1, Biome::Grassland), (2, Biome::Desert), (3, Biome::Snow)] {
        let noon = controls(12.0, Weather::Clear, Some(biome));
        let night = controls(0.0, Weather::Clear, Some(biome));
        let mut a = start(&world, seed, &noon);
        let mut b = start(&world, seed, &night);
        let la = mean(&luma(&step(&mut a, &act(0.0, 0.0), &noon).frame));
        let lb = mean(&luma(&step(&mut b, &act(0.0, 0.0), &night).frame));
        assert!(la > 2.5 * lb, "{biome:?}: noon {la} vs night {lb}");
        assert!(
            lb > 3.0,
            "{biome:?}: night should not be pitch black ({lb})"
        );
    }
    // Changing the time during a session darkens gradually, not in one jump.
    let noon = controls(12.0, Weather::Clear, None);
    let mut s = start(&world, 9, &noon);
    let mut prev = mean(&luma(&step(&mut s, &act(0.0, 0.0), &noon).frame));
    let night = controls(0.0, Weather::Clear, None);
    let first = prev;
    for _ in 0..100 {
        let l = mean(&luma(&step(&mut s, &act(0.0, 0.0), &night).frame));
        assert!(
            (l - prev).abs() < 25.0,
            "lighting jumped from {prev} to {l}"
        );
        prev = l;
    }
    assert!(prev < first * 0.4, "{first} -> {prev}");
}

/// Energy of the first difference of the signal: weights high frequencies, where rain hisses.
fn broadband_energy(x: &[f32]) -> f32 {
    x.windows(2).map(|p| (p[1] - p[0]).powi(2)).sum::<f32>() / x.len() as f32
}

#[test]
fn rain_raises_broadband_sound_energy() {
    let world = ReferenceWorld::new(16, 16);
    for seed in [4, 5] {
        let mut energies = Vec::new();
        for weather in [Weather::Clear, Weather::Rain] {
            let c = controls(12.0, weather, Some(Biome::Grassland));
            let mut s = start(&world, seed, &c);
            let mut samples = Vec::new();
            for _ in 0..60 {
                samples.extend(step(&mut s, &act(0.0, 0.0), &c).audio.samples);
            }
            energies.push(broadband_energy(&samples[16_000..]));
        }
        assert!(
            energies[1] > 3.0 * energies[0],
            "clear {} vs rain {}",
            energies[0],
            energies[1]
        );
    }
}

#[test]
fn footsteps_sound_only_while_walking() {
    let world = ReferenceWorld::new(16, 16);
    let c = controls(12.0, Weather::Clear, Some(Biome::Grassland));
    let mut s = start(&world, 8, &c);
    for _ in 0..30 {
        step(&mut s, &act(0.0, 0.0), &c);
        assert_eq!(s.stems().footsteps, 0.0, "footsteps while standing");
    }
    let mut loud = 0;
    for _ in 0..60 {
        step(&mut s, &act(1.0, 0.0), &c);
        if s.stems().footsteps > 0.01 {
            loud += 1;
        }
    }
    assert!(
        loud > 20,
        "footsteps audible in only {loud} of 60 walking frames"
    );
    // After stopping, the last step dies away and then there is silence from the feet.
    for _ in 0..20 {
        step(&mut s, &act(0.0, 0.0), &c);
    }
    for _ in 0..30 {
        step(&mut s, &act(0.0, 0.0), &c);
        assert_eq!(s.stems().footsteps, 0.0, "footsteps after stopping");
    }
    // Turning on the spot makes no footsteps either.
    for _ in 0..30 {
        step(&mut s, &act(0.0, 1.0), &c);
        assert_eq!(
            s.stems().footsteps,
            0.0,
            "footsteps while turning on the spot"
        );
    }
}

#[test]
fn sound_follows_the_world() {
    let world = ReferenceWorld::new(16, 16);
    let level = |time: f32, weather: Weather, biome: Biome, storm_at: Option<usize>| {
        let mut c = controls(time, weather, Some(biome));
        let mut s = start(&world, 12, &c);
        let mut sum = bevy_nacre::reference::Stems::default();
        for i in 0..120 {
            c.values[ci::STORM] = (storm_at == Some(i)) as u8 as f32;
            step(&mut s, &act(0.0, 0.0), &c);
            let st = s.stems();
            sum.birds += st.birds;
            sum.insects += st.insects;
            sum.wind += st.wind;
            sum.thunder += st.thunder;
        }
        sum
    };
    let day = level(12.0, Weather::Clear, Biome::Forest, None);
    let night = level(23.0, Weather::Clear, Biome::Forest, None);
    assert!(
        day.birds > 5.0 * night.birds,
        "birds day {} night {}",
        day.birds,
        night.birds
    );
    assert!(
        night.insects > 5.0 * day.insects,
        "insects night {} day {}",
        night.insects,
        day.insects
    );
    let storm = level(12.0, Weather::Overcast, Biome::Forest, Some(5));
    assert!(storm.thunder > 0.0 && day.thunder == 0.0);
    assert!(
        storm.wind > 1.5 * day.wind,
        "wind storm {} calm {}",
        storm.wind,
        day.wind
    );
}

#[test]
fn director_controls_change_the_picture() {
    let world = ReferenceWorld::new(64, 64);
    let clear = controls(12.0, Weather::Clear, Some(Biome::Grassland));
    // A storm starts with a lightning flash.
    let mut s = start(&world, 14, &clear);
    let before = mean(&luma(&step(&mut s, &act(0.0, 0.0), &clear).frame));
    let mut storm = clear.clone();
    storm.values[ci::STORM] = 1.0;
    let flash = mean(&luma(&step(&mut s, &act(0.0, 0.0), &storm).frame));
    assert!(flash > before + 15.0, "flash {flash} vs before {before}");
    assert!(s.weather().storm_time > 0.0);
    // A landmark appears ahead.
    let mut s = start(&world, 15, &clear);
    let a = step(&mut s, &act(0.0, 0.0), &clear).frame;
    let mut lm = clear.clone();
    lm.values[ci::LANDMARK] = 1.0;
    let b = step(&mut s, &act(0.0, 0.0), &lm).frame;
    let changed = a
        .rgba
        .chunks(4)
        .zip(b.rgba.chunks(4))
        .filter(|(p, q)| p != q)
        .count();
    assert_eq!(s.landmarks().len(), 1);
    assert!(changed > 20, "landmark changed only {changed} pixels");
    // Holding a trigger does not fire it again.
    step(&mut s, &act(0.0, 0.0), &lm);
    assert_eq!(s.landmarks().len(), 1);
    // Fog hides the distance: land just below the horizon looks like the sky just above it.
    let fog = controls(12.0, Weather::Fog, Some(Biome::Grassland));
    let horizon_contrast = |f: &Frame| {
        let (w, h) = (f.width as usize, f.height as usize);
        let px = |x: usize, y: usize| &f.rgba[(y * w + x) * 4..(y * w + x) * 4 + 3];
        let mut sum = 0.0;
        for x in 0..w {
            let (a, b) = (px(x, h / 2 - 3), px(x, h / 2 + 3));
            sum += (0..3)
                .map(|k| (a[k] as f32 - b[k] as f32).abs())
                .sum::<f32>();
        }
        sum / w as f32
    };
    let mut a = start(&world, 16, &clear);
    let mut b = start(&world, 16, &fog);
    let ca = horizon_contrast(&step(&mut a, &act(0.0, 0.0), &clear).frame);
    let cb = horizon_contrast(&step(&mut b, &act(0.0, 0.0), &fog).frame);
    assert!(
        cb < 0.6 * ca,
        "contrast across the horizon: fog {cb} vs clear {ca}"
    );
    // A director phrase sets the same controls.
    let spec = world.spec();
    let mut c = spec.default_controls();
    let d = bevy_nacre::director::parse(&spec.controls, "stormy night in the desert");
    assert!(d.unknown.is_empty());
    d.apply(&mut c);
    assert_eq!(c.values[ci::BIOME], Biome::Desert.control_value());
    assert_eq!(c.values[ci::STORM], 1.0);
}

#[test]
fn walking_follows_the_ground_and_water_is_swum() {
    let world = ReferenceWorld::new(16, 16);
    let c = controls(12.0, Weather::Clear, Some(Biome::Shore));
    let mut swam = 0;
    for seed in [40, 41, 42] {
        let mut s = start(&world, seed, &c);
        step(&mut s, &act(0.0, 0.0), &c);
        // Find deep water nearby and turn to face it.
        let cam = s.camera();
        let mut target = None;
        'find: for r in (8..=120).step_by(4) {
            for k in 0..32 {
                let a = k as f32 / 32.0 * std::f32::consts::TAU;
                let (x, z) = (cam.x + a.sin() * r as f32, cam.z + a.cos() * r as f32);
                if s.terrain_mut().height_at(x, z) < -3.0 {
                    target = Some(a);
                    break 'find;
                }
            }
        }
        let Some(target) = target else { continue };
        for _ in 0..40 {
            let mut d = target - s.camera().yaw;
            d = (d + std::f32::consts::PI).rem_euclid(std::f32::consts::TAU) - std::f32::consts::PI;
            let turn = (d / (bevy_nacre::reference::TURN_RATE * bevy_nacre::reference::DT))
                .clamp(-1.0, 1.0);
            step(&mut s, &act(0.0, turn), &c);
        }
        let mut deep = false;
        for _ in 0..500 {
            step(&mut s, &act(1.0, 0.0), &c);
            let cam = s.camera();
            let ground = s.terrain_mut().height_at(cam.x, cam.z);
            // The eye stays above the water and the ground.
            assert!(cam.y > 0.2, "eye under water at {cam:?}");
            assert!(
                cam.y > ground + 0.3,
                "eye in the ground at {cam:?}, ground {ground}"
            );
            if ground < -bevy_nacre::reference::SWIM_DEPTH - 0.05 {
                // Swimming: head just above the surface, water all around.
                assert!(cam.y < 0.8, "swimmer's eye at {}", cam.y);
                assert!(
                    s.stems().water > 0.01,
                    "swimming but water is quiet: {:?}",
                    s.stems()
                );
                deep = true;
                assert!(
                    s.player().vel[0].hypot(s.player().vel[2]) < 2.0,
                    "swimming is slow"
                );
            }
        }
        swam += deep as usize;
    }
    assert!(
        swam >= 2,
        "only {swam} of 3 walks into the sea reached deep water"
    );
}

#[test]
fn renders_at_any_resolution() {
    for (w, h) in [(1, 1), (7, 3), (64, 64), (128, 128), (200, 50), (33, 90)] {
        let world = ReferenceWorld::new(w, h);
        let spec = world.spec().clone();
        let mut s = world.start(&Prompt::seeded(3)).unwrap();
        for _ in 0..3 {
            let out = s
                .step(&StepInput {
                    action: spec.neutral_action(),
                    controls: spec.default_controls(),
                })
                .unwrap();
            validate_output(&spec, &out).unwrap();
            assert_eq!(out.audio.samples.len(), 800);
        }
    }
    // Inputs of the wrong length are errors, not panics.
    let world = ReferenceWorld::new(8, 8);
    let mut s = world.start(&Prompt::seeded(1)).unwrap();
    let bad = StepInput {
        action: Action::new(vec![1.0]),
        controls: world.spec().default_controls(),
    };
    assert!(s.step(&bad).is_err());
}
