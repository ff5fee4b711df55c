//! The default model: a tiny configuration trains on a tiny reference-world dataset, its loss
//! falls, saved weights reload to identical outputs, long rollouts stay finite and in range, and
//! bad weights are refused with a clear message.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use bevy_nacre::dataset::{
    CapturedStep, DatagenOptions, Dataset, DatasetWriter, GeneratorInfo, MANIFEST_FILE, generate,
};
use bevy_nacre::default_model::config::SamplerSize;
use bevy_nacre::default_model::{self, Config, DefaultModel, GenerationConfig};
use bevy_nacre::eval::{EvalOptions, Measure, evaluate};
use bevy_nacre::frame::Frame;
use bevy_nacre::spec::ModelSpec;
use bevy_nacre::train::{LOG_FILE, Outcome, TrainConfig, train};
use bevy_nacre::world_model::{Prompt, StepInput, WorldModel};
use candle_core::Device;

fn tiny_dataset(dir: &Path) {
    let mut opts = DatagenOptions::new(dir, 3, 24, 32, 32, 11);
    opts.threads = 1;
    generate(&opts, &|_, _| {}).unwrap();
}

/// Trains without stopping and without progress output.
fn train_uninterrupted(
    data: &Path,
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
) -> bevy_nacre::Result<Outcome> {
    train(data, cfg, out, resume, &AtomicBool::new(false), &mut |_| {})
}

fn train_tiny(data: &Path, out: &Path) -> TrainConfig {
    let cfg = TrainConfig::tiny();
    let outcome = train_uninterrupted(data, &cfg, out, false).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    cfg
}

/// A fresh temporary folder with a tiny dataset (`data`) and a tiny model trained on it
/// (`model`): `(folder, data, model)`.
fn tiny_data_and_model(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let tmp = tempdir(name);
    let (data, model) = (tmp.join("data"), tmp.join("model"));
    tiny_dataset(&data);
    train_tiny(&data, &model);
    (tmp, data, model)
}

/// Mean loss over the first and over the last five logged steps of one stage. Single batches
/// differ a lot (random frames, random context noise), so single values would not say much.
fn first_and_last_loss(log: &Path, stage: &str) -> (f64, f64) {
    let text = std::fs::read_to_string(log).unwrap();
    let losses: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[1] == stage)
        .map(|f| f[3].parse().unwrap())
        .collect();
    assert!(losses.len() >= 10, "too few log lines for {stage}");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    (mean(&losses[..5]), mean(&losses[losses.len() - 5..]))
}

/// The values of loss part `part` (`name=value` in the log's `parts` column) over `stage`.
fn logged_part(log: &Path, stage: &str, part: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(log).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[1] == stage)
        .filter_map(|f| {
            f[4].split(';')
                .find_map(|p| p.strip_prefix(part)?.strip_prefix('='))
                .map(|v| v.parse().unwrap())
        })
        .collect()
}

#[test]
fn tiny_model_trains_saves_loads_and_rolls_out() {
    let tmp = tempdir("train");
    let (data, out) = (tmp.join("data"), tmp.join("model"));
    tiny_dataset(&data);
    train_tiny(&data, &out);

    // The autoencoder starts from the frames' principal components (already a fit to the data)
    // and stays a good one: under 0.01 mean squared error (above 20 dB PSNR) and not diverging.
    // The dynamics starts from scratch, and its loss falls clearly.
    let log = out.join(LOG_FILE);
    let (first, last) = first_and_last_loss(&log, "autoencoder");
    assert!(
        last < 0.01 && last < first * 1.5,
        "autoencoder loss {first} -> {last}"
    );
    let (first, last) = first_and_last_loss(&log, "dynamics");
    assert!(last < first * 0.8, "dynamics loss {first} -> {last}");
    assert!(out.join("loss.png").exists());

    // Every layer learned: biases (initialised to zero) and norm scales (initialised to one)
    // all moved. A layer that a gradient never reaches keeps its initial value; this caught
    // candle-nn's fused layer norm and softmax, which have no backward pass.
    let weights =
        candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut untrained = Vec::new();
    for (name, tensor) in &weights {
        let values: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
        let initial = if name.ends_with(".bias") {
            Some(0.0)
        } else if name.contains("norm") && name.ends_with(".weight") {
            Some(1.0)
        } else {
            None
        };
        if let Some(v0) = initial
            && values.iter().all(|&v| v == v0)
        {
            untrained.push(name.clone());
        }
    }
    untrained.sort();
    assert!(
        untrained.is_empty(),
        "never updated by training: {untrained:?}"
    );

    // Loading twice gives the same frames and sound for the same prompt and inputs.
    let model = load(&out);
    let again = load(&out);
    let spec = model.spec().clone();
    assert_eq!((spec.width, spec.height), (32, 32));
    let mut input = StepInput {
        action: spec.neutral_action(),
        controls: spec.default_controls(),
    };
    input.action.values[0] = 1.0;
    let mut a = model.start(&Prompt::seeded(5)).unwrap();
    let mut b = again.start(&Prompt::seeded(5)).unwrap();
    for _ in 0..3 {
        let (x, y) = (a.step(&input).unwrap(), b.step(&input).unwrap());
        assert_eq!(x.frame, y.frame);
        assert_eq!(x.audio, y.audio);
    }

    // Save, restore, continue: bit for bit.
    let saved = a.save().unwrap();
    let mut c = model.restore(&saved).unwrap();
    for _ in 0..3 {
        assert_eq!(a.step(&input).unwrap().frame, c.step(&input).unwrap().frame);
    }

    // A 200-frame rollout stays finite and in range, with turning and director changes.
    let mut s = model.start(&Prompt::seeded(9)).unwrap();
    for i in 0..200 {
        input.action.values[2] = if (i / 40) % 2 == 0 { 0.5 } else { -0.5 };
        input.controls.values[0] = (12.0 + i as f32 * 0.1) % 24.0;
        let out = s.step(&input).unwrap();
        assert!(out.frame.is_well_formed());
        assert_eq!(out.audio.samples.len(), 800);
        assert!(
            out.audio
                .samples
                .iter()
                .all(|v| v.is_finite() && v.abs() < 50.0)
        );
    }
    assert_eq!(s.frame_index(), 200);
}

#[test]
fn an_interrupted_run_resumes_to_the_same_weights() {
    let (tmp, data, whole) = tiny_data_and_model("resume");

    // Stop in the middle of the dynamics stage (step 37 of 60), then resume.
    let parts = tmp.join("parts");
    let cfg = TrainConfig::tiny();
    let stop = AtomicBool::new(false);
    let outcome = train(&data, &cfg, &parts, false, &stop, &mut |p| {
        if p.done == 37 {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    })
    .unwrap();
    assert_eq!(outcome, Outcome::Interrupted);
    assert!(parts.join("checkpoint/optimizer.safetensors").exists());
    // Starting again without --resume refuses to overwrite the checkpoint.
    let again = train_uninterrupted(&data, &cfg, &parts, false);
    assert!(again.err().unwrap().to_string().contains("--resume"));
    let outcome = train_uninterrupted(&data, &cfg, &parts, true).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    let digest = |p: &Path| bevy_nacre::dataset::sha256_hex(&std::fs::read(p).unwrap());
    assert_eq!(
        digest(&whole.join("model.safetensors")),
        digest(&parts.join("model.safetensors")),
        "resumed training must end with the same weights as an uninterrupted run"
    );
}

#[test]
fn fine_tuning_starts_from_a_trained_model() {
    let (tmp, data, base) = tiny_data_and_model("finetune");

    // No autoencoder steps, a few dynamics steps that first run free on the model's own
    // predictions, a few decoder steps.
    let mut cfg = TrainConfig::tiny();
    cfg.init_from = Some(base.clone());
    cfg.autoencoder.steps = 0;
    cfg.dynamics.steps = 6;
    cfg.decoder.steps = 2;
    cfg.free_run = 3;
    cfg.still_share = 0.5;
    let tuned = tmp.join("tuned");
    let outcome = train_uninterrupted(&data, &cfg, &tuned, false).unwrap();
    assert_eq!(outcome, Outcome::Finished);

    let (before, after) = (weights(&base), weights(&tuned));
    let same = |name: &str| values(&before[name]) == values(&after[name]);
    // The encoder trains only in the autoencoder stage, so it is exactly the base model's; the
    // dynamics and the decoder moved on from it.
    assert!(
        same("encoder.skip.weight"),
        "the encoder must start from the base model"
    );
    assert!(same("warp.decode.weight"), "the warp's codec copy is kept");
    assert!(!same("dynamics.out.weight"));
    assert!(!same("decoder.skip.weight"));
    let base_version = Config::load(&base.join("config.json")).unwrap().0.version;
    let version = Config::load(&tuned.join("config.json")).unwrap().0.version;
    // The base's version, this run's seed and steps, and a hash of the config that changes with
    // the config.
    let prefix = format!("{base_version}+seed1-steps8-");
    let hash = version.strip_prefix(&prefix).expect(&version);
    assert!(
        hash.len() == 8 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{version}"
    );
    // Another config, which also shows context in a wrong light and keeps the motion head.
    cfg.still_share = 0.25;
    cfg.light_shift_share = 0.5;
    cfg.freeze_motion = true;
    let other_tuned = tmp.join("other-tuned");
    train_uninterrupted(&data, &cfg, &other_tuned, false).unwrap();
    let frozen = weights(&other_tuned);
    let motion = "dynamics.motion.weight";
    assert!(!same(motion), "fine-tuning trains the motion head");
    assert_eq!(values(&before[motion]), values(&frozen[motion]), "frozen");
    assert_ne!(
        values(&before["dynamics.out.weight"]),
        values(&frozen["dynamics.out.weight"])
    );
    let other_version = Config::load(&other_tuned.join("config.json"))
        .unwrap()
        .0
        .version;
    assert!(other_version.starts_with(&prefix) && other_version != version);

    // Held to the base model's prediction on the samples in their true light: the run logs
    // how far it moved from it, which starts at 0 (the student starts as the teacher). The
    // shifted samples are drawn toward the teacher's prediction in their true light, which
    // differs from the start (the student sees the wrong light), while the teacher rolling
    // those samples on from its own prediction leaves the others' input as the student's.
    cfg.distill_weight = 1.0;
    cfg.distill_shifted_weight = 1.0;
    let distilled = tmp.join("distilled");
    train_uninterrupted(&data, &cfg, &distilled, false).unwrap();
    let log = distilled.join(LOG_FILE);
    let distill = logged_part(&log, "dynamics", "distill");
    assert_eq!(distill.len(), cfg.dynamics.steps as usize, "{distill:?}");
    assert!(
        distill[0] < 1e-9,
        "the first step predicts as the base: {distill:?}"
    );
    assert!(distill.iter().all(|d| d.is_finite() && *d >= 0.0));
    assert!(distill.iter().any(|d| *d > 0.0), "it moves: {distill:?}");
    let shifted = logged_part(&log, "dynamics", "distill_shifted");
    assert_eq!(shifted.len(), distill.len(), "{shifted:?}");
    assert!(shifted.iter().all(|d| d.is_finite() && *d >= 0.0));
    assert!(
        shifted.iter().any(|d| *d > 1e-6),
        "a wrong light predicts otherwise than the true one: {shifted:?}"
    );
    // Without light shift there is nothing for it to draw.
    let mut unlit = cfg.clone();
    unlit.light_shift_share = 0.0;
    let err = train_uninterrupted(&data, &unlit, &tmp.join("unlit"), false)
        .expect_err("nothing shifted")
        .to_string();
    assert!(err.contains("light_shift_share"), "{err}");
    // Without a model to be held to, it is refused.
    let mut orphan = TrainConfig::tiny();
    orphan.distill_weight = 1.0;
    let err = train_uninterrupted(&data, &orphan, &tmp.join("orphan"), false)
        .expect_err("no teacher")
        .to_string();
    assert!(err.contains("init_from"), "{err}");

    // A base model that builds other networks is refused, naming the file.
    let mut other = TrainConfig::tiny();
    other.model.dim *= 2;
    other.init_from = Some(base.clone());
    let err = train_uninterrupted(&data, &other, &tmp.join("other"), false)
        .expect_err("other networks are refused")
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn a_sampler_added_to_a_trained_model_trains_alone_and_replays_bit_for_bit() {
    let (tmp, data, base) = tiny_data_and_model("sampler");
    // Training a sampler alone needs one in the model config.
    let mut cfg = TrainConfig::tiny();
    cfg.sampler_only = true;
    let err = train_uninterrupted(&data, &cfg, &tmp.join("none"), false)
        .expect_err("no sampler to train")
        .to_string();
    assert!(err.contains("no `sampler`"), "{err}");

    cfg.init_from = Some(base.clone());
    cfg.model.sampler = Some(SamplerSize {
        width: 32,
        layers: 2,
    });
    cfg.generation = Some(GenerationConfig {
        sampler_steps: 3,
        ..GenerationConfig::default()
    });
    cfg.autoencoder.steps = 0;
    cfg.dynamics.steps = 60;
    cfg.dynamics.lr = 5e-3;
    cfg.decoder.steps = 2;
    let tuned = tmp.join("tuned");
    let outcome = train_uninterrupted(&data, &cfg, &tuned, false).unwrap();
    assert_eq!(outcome, Outcome::Finished);

    // Only the sampler learned in the dynamics stage, and its flow-matching loss fell.
    let (before, after) = (weights(&base), weights(&tuned));
    for (name, tensor) in &before {
        if name.starts_with("dynamics.") || name.starts_with("audio.") {
            assert_eq!(values(tensor), values(&after[name]), "{name} changed");
        }
    }
    assert!(
        values(&after["sampler.out.weight"])
            .iter()
            .any(|&v| v != 0.0)
    );
    let (first, last) = first_and_last_loss(&tuned.join(LOG_FILE), "dynamics");
    assert!(last < first * 0.9, "sampler loss {first} -> {last}");

    // Its samples come from the session's own random stream: two loads play alike, and a
    // restored session continues bit for bit.
    let model = load(&tuned);
    let again = load(&tuned);
    let input = StepInput {
        action: model.spec().neutral_action(),
        controls: model.spec().default_controls(),
    };
    let mut a = model.start(&Prompt::seeded(3)).unwrap();
    let mut b = again.start(&Prompt::seeded(3)).unwrap();
    for _ in 0..3 {
        assert_eq!(a.step(&input).unwrap().frame, b.step(&input).unwrap().frame);
    }
    let mut c = model.restore(&a.save().unwrap()).unwrap();
    for _ in 0..5 {
        assert_eq!(a.step(&input).unwrap().frame, c.step(&input).unwrap().frame);
    }
}

#[test]
fn an_outpainter_added_to_a_trained_model_trains_alone_and_draws_what_comes_into_view() {
    use bevy_nacre::default_model::memory::MemoryConfig;
    use bevy_nacre::default_model::outpaint::{OutpaintHead, OutpainterConfig};
    let (tmp, data, base) = tiny_data_and_model("outpaint");
    for head in [
        OutpaintHead::Codebook { size: 32 },
        OutpaintHead::Flow {
            width: 16,
            layers: 2,
        },
    ] {
        let mut cfg = TrainConfig::tiny();
        cfg.init_from = Some(base.clone());
        cfg.model.outpainter = Some(OutpainterConfig {
            dim: 16,
            layers: 1,
            heads: 2,
            context: 2,
            head: head.clone(),
        });
        cfg.generation = Some(GenerationConfig {
            texture_transport_from: Some(1),
            memory: Some(MemoryConfig::default()),
            ..GenerationConfig::default()
        });
        cfg.autoencoder.steps = 0;
        cfg.dynamics.steps = 0;
        cfg.decoder.steps = 0;
        cfg.outpainter.steps = 60;
        cfg.outpainter.batch = 8;
        cfg.outpainter.lr = 3e-3;
        let out = tmp.join(format!(
            "outpaint-{}",
            matches!(head, OutpaintHead::Flow { .. })
        ));
        let outcome = train_uninterrupted(&data, &cfg, &out, false).unwrap();
        assert_eq!(outcome, Outcome::Finished);

        // Only the outpainter learned, and its loss fell.
        let (before, after) = (weights(&base), weights(&out));
        for (name, tensor) in &before {
            assert_eq!(values(tensor), values(&after[name]), "{name} changed");
        }
        let (first, last) = first_and_last_loss(&out.join(LOG_FILE), "outpainter");
        assert!(last < first, "outpainter loss {first} -> {last}");
        if matches!(head, OutpaintHead::Codebook { .. }) {
            // The codebook holds k-means centres of the data's tokens: all distinct.
            let codes = values(&after["outpaint.codebook"]);
            let rows: Vec<&[f32]> = codes.chunks(8).collect();
            assert!(
                rows.iter()
                    .enumerate()
                    .all(|(i, a)| rows[..i].iter().all(|b| a != b))
            );
        }

        // Turning right draws the column beyond the edge; a restored session continues bit for
        // bit, drawing the same.
        let model = load(&out);
        let mut input = StepInput {
            action: model.spec().neutral_action(),
            controls: model.spec().default_controls(),
        };
        input.action.values[2] = 1.0;
        let mut a = model.start(&Prompt::seeded(4)).unwrap();
        for _ in 0..4 {
            a.step(&input).unwrap();
        }
        let mut b = model.restore(&a.save().unwrap()).unwrap();
        for _ in 0..8 {
            assert_eq!(a.step(&input).unwrap().frame, b.step(&input).unwrap().frame);
        }
    }
}

#[test]
fn mismatched_or_corrupt_weights_give_clear_errors() {
    let tmp = tempdir("badweights");
    let dir = tmp.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    // Weights of a differently sized model next to the tiny config.
    let other = Config {
        dim: 48,
        ..Config::tiny()
    };
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
    bevy_nacre::default_model::network::Networks::new(&other, vb).unwrap();
    bevy_nacre::default_model::weights::save_varmap(&varmap, &dir.join("model.safetensors"))
        .unwrap();
    std::fs::write(
        dir.join("config.json"),
        Config::tiny().to_json(&GenerationConfig::default()),
    )
    .unwrap();
    let err = default_model::load(&dir, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(err.contains("has shape"), "{err}");
    assert!(err.contains("encoder.embed.weight"), "{err}");

    // A truncated file.
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let err = default_model::load(&dir, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("safetensors"),
        "{err}"
    );

    // A NaN in an otherwise well-formed file.
    let tiny = Config::tiny();
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
    bevy_nacre::default_model::network::Networks::new(&tiny, vb).unwrap();
    {
        let data = varmap.data().lock().unwrap();
        let var = &data["decoder.out.bias"];
        let n = var.dims()[0];
        let mut v = vec![0f32; n];
        v[1] = f32::NAN;
        var.set(&candle_core::Tensor::from_vec(v, n, &Device::Cpu).unwrap())
            .unwrap();
    }
    bevy_nacre::default_model::weights::save_varmap(&varmap, &dir.join("model.safetensors"))
        .unwrap();
    let err = default_model::load(&dir, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("`decoder.out.bias` contains NaN"), "{err}");

    // A broken config.
    std::fs::write(dir.join("config.json"), "{\"width\": 12").unwrap();
    let err = default_model::load(&dir, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("config.json"), "{err}");
}

/// The model a training run wrote into `dir`, starting sessions without frames from the
/// reference world it was trained on.
fn load(dir: &Path) -> DefaultModel {
    default_model::load(dir, &Device::Cpu)
        .unwrap()
        .with_start_frames(bevy_nacre::reference::start_frames)
}

/// The weights a training run wrote into `dir`.
fn weights(dir: &Path) -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap()
}

fn values(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nacre-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the first episode of `source` step by step into `dir` as a game's capture would, with
/// `spec` and `generator` in its manifest.
fn rewrite_as_capture(source: &Dataset, dir: &Path, spec: &ModelSpec, generator: GeneratorInfo) {
    let mut writer = DatasetWriter::open(dir, spec, generator).unwrap();
    let episode = source.episodes().next().unwrap().unwrap().data;
    let d = episode.dims;
    for row in 0..episode.len() {
        let rgb = &episode.frames[row * d.frame_bytes()..(row + 1) * d.frame_bytes()];
        let frame = Frame::from_rgb(d.width, d.height, rgb);
        writer
            .push(&CapturedStep {
                frame: &frame,
                action: &episode.actions[row * d.actions..(row + 1) * d.actions],
                controls: &episode.controls[row * d.controls..(row + 1) * d.controls],
                audio: &[],
                pose: [0.0; 5],
            })
            .unwrap();
    }
    assert!(writer.is_complete());
}

#[test]
fn a_dataset_with_other_channels_is_refused_by_evaluation_and_fine_tuning_naming_them() {
    let (tmp, data, base) = tiny_data_and_model("layout");
    let source = Dataset::open(&data).unwrap();
    let generator = GeneratorInfo {
        episodes: 1,
        episodes_per_shard: 1,
        ..source.manifest().generator.clone()
    };
    let model = default_model::load(&base, &Device::Cpu).unwrap();

    // The same frames captured from "another game" with the model's layout: evaluated on the
    // measures that need only the data (the others play the reference world).
    let same = tmp.join("same");
    let captured = GeneratorInfo {
        world: "garden".into(),
        ..generator.clone()
    };
    rewrite_as_capture(&source, &same, &source.manifest().model, captured);
    let report = evaluate(
        &model,
        &same,
        &tmp.join("eval-same"),
        &EvalOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.measured, [Measure::Episodes]);
    assert!(report.teacher_forced_samples > 0 && report.teacher_forced_psnr_db.is_finite());
    assert!(report.director.is_empty());
    // metrics.json leaves out what was not measured (no `"stable": false` for a rollout that
    // never ran) and reads back.
    let written = std::fs::read_to_string(tmp.join("eval-same/metrics.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&written).unwrap();
    for absent in ["director", "scripted", "standing_still", "stability"] {
        assert!(json.get(absent).is_none(), "{absent} in {written}");
    }
    assert!(json.get("teacher_forced_psnr_db").is_some());
    let back: bevy_nacre::eval::EvalReport = serde_json::from_str(&written).unwrap();
    assert_eq!(back.measured, [Measure::Episodes]);
    assert!(!back.stability.stable && back.director.is_empty());

    // A game whose turn channel is called `yaw`: refused, naming both channels.
    let mut spec = source.manifest().model.clone();
    let turn = spec.action_index("turn").unwrap();
    spec.actions[turn].name = "yaw".into();
    let other = tmp.join("other");
    rewrite_as_capture(&source, &other, &spec, generator);
    let names_both = |e: &str| e.contains("yaw") && e.contains("turn");

    let err = evaluate(
        &model,
        &other,
        &tmp.join("eval"),
        &EvalOptions::default(),
        &mut |_| {},
    )
    .expect_err("evaluation refuses the dataset")
    .to_string();
    assert!(names_both(&err) && err.contains(MANIFEST_FILE), "{err}");

    let mut cfg = TrainConfig::tiny();
    cfg.init_from = Some(base);
    cfg.autoencoder.steps = 0;
    cfg.dynamics.steps = 2;
    cfg.decoder.steps = 0;
    let err = train_uninterrupted(&other, &cfg, &tmp.join("tuned"), false)
        .expect_err("fine-tuning refuses the dataset")
        .to_string();
    assert!(names_both(&err), "{err}");
}
