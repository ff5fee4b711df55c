//! Parity of the DIAMOND port with the reference PyTorch implementation, on every
//! `NAME.pt` + `NAME.io.safetensors` pair in `tests/fixtures/diamond` (see its README) and, when
//! `$NACRE_DIAMOND_FIXTURES` names a folder, in that folder too; plus the loader's errors on
//! broken checkpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bevy_nacre::diamond::config::SamplerConfig;
use bevy_nacre::diamond::denoiser::{Denoiser, karras_sigmas, sample};
use bevy_nacre::diamond::loader::load_checkpoint;
use bevy_nacre::nn::ConvAlgorithm;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

/// The fixtures that come with the repository.
fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/diamond"
    ))
}

/// The `NAME.pt` + `NAME.io.safetensors` pairs in `dir`: `(name, checkpoint, io file)`.
fn cases_in(dir: &Path) -> Vec<(String, PathBuf, PathBuf)> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list the DIAMOND fixtures in {}: {e}", dir.display()));
    let mut cases: Vec<_> = entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?.strip_suffix(".pt")?.to_string();
            let io = dir.join(format!("{name}.io.safetensors"));
            io.exists().then_some((name, path, io))
        })
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no NAME.pt + NAME.io.safetensors pairs in {}",
        dir.display()
    );
    cases
}

/// Every case: the repository's two, and those of `$NACRE_DIAMOND_FIXTURES` if it is set.
fn cases() -> Vec<(String, PathBuf, PathBuf)> {
    let mut cases = cases_in(&fixtures_dir());
    let names: Vec<&str> = cases.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        ["atari_default", "tiny_attn"],
        "the repository's fixtures"
    );
    if let Some(extra) = std::env::var_os("NACRE_DIAMOND_FIXTURES") {
        cases.extend(cases_in(Path::new(&extra)));
    }
    cases
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn rel_l2(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.dims(), want.dims());
    let (g, w) = (values(got), values(want));
    let num: f64 = g.iter().zip(&w).map(|(a, b)| (a - b) * (a - b)).sum();
    let den: f64 = w.iter().map(|b| b * b).sum();
    (num / den).sqrt()
}

/// Quantised values that differ, and the largest difference in levels (of 2/255).
fn level_differences(got: &Tensor, want: &Tensor) -> (usize, usize, f64) {
    let (g, w) = (values(got), values(want));
    let mut count = 0;
    let mut worst: f64 = 0.0;
    for (a, b) in g.iter().zip(&w) {
        let levels = ((a - b).abs() * 127.5).round();
        if levels > 0.0 {
            count += 1;
        }
        worst = worst.max(levels);
    }
    (count, g.len(), worst)
}

struct Case {
    io: HashMap<String, Tensor>,
    denoiser: Denoiser,
}

fn load_case(ckpt: &Path, io: &Path, algo: ConvAlgorithm) -> Case {
    let dev = Device::Cpu;
    let ck = load_checkpoint(ckpt, &dev, 0.5, 0.3).unwrap();
    let vb = VarBuilder::from_tensors(ck.tensors.clone(), DType::F32, &dev);
    let denoiser = Denoiser::new(vb, &ck.config, algo).unwrap();
    let io = candle_core::safetensors::load(io, &dev).unwrap();
    Case { io, denoiser }
}

/// The checkpoint's inferred configuration matches the case's JSON, where there is one.
#[test]
fn inferred_configuration_matches_the_fixture_json() {
    for (name, ckpt, _) in cases() {
        let json = ckpt.with_file_name(format!("{name}.json"));
        let Ok(text) = std::fs::read_to_string(&json) else {
            continue;
        };
        let j: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cfg = load_checkpoint(&ckpt, &Device::Cpu, 0.5, 0.3)
            .unwrap()
            .config;
        let usizes = |k: &str| -> Vec<usize> {
            j[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect()
        };
        assert_eq!(cfg.channels, usizes("channels"), "{name}");
        assert_eq!(cfg.depths, usizes("depths"), "{name}");
        let attn: Vec<bool> = usizes("attn_depths").iter().map(|&a| a != 0).collect();
        assert_eq!(cfg.attn_depths, attn, "{name}");
        assert_eq!(
            cfg.cond_channels as u64,
            j["cond_channels"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            cfg.num_steps_conditioning as u64,
            j["num_steps_conditioning"].as_u64().unwrap()
        );
        assert_eq!(
            cfg.num_actions as u64,
            j["num_actions"].as_u64().unwrap(),
            "{name}"
        );
    }
}

/// `model_output`, quantised `denoised` and the 3-step sample match the reference, for the
/// default (fastest) convolution algorithm and the direct one.
#[test]
fn matches_reference_outputs() {
    for (name, ckpt, io) in cases() {
        for algo in [
            ConvAlgorithm::Auto,
            ConvAlgorithm::AutoPrecise,
            ConvAlgorithm::Direct,
        ] {
            let case = load_case(&ckpt, &io, algo);
            let obs = &case.io["obs"];
            let act = case.io["act"].to_dtype(DType::U32).unwrap();
            for k in 0..2 {
                let noisy = &case.io[&format!("denoise{k}.noisy")];
                let sigma: Vec<f32> = case.io[&format!("denoise{k}.sigma")].to_vec1().unwrap();
                let out = case
                    .denoiser
                    .model_output(noisy, &sigma, obs, &act)
                    .unwrap();
                let err = rel_l2(&out, &case.io[&format!("denoise{k}.model_output")]);
                eprintln!(
                    "{name} {algo:?} denoise{k} (sigma {sigma:?}): model_output relative L2 {err:.2e}"
                );
                assert!(
                    err < 1e-4,
                    "{name} {algo:?} denoise{k}: model_output relative L2 {err:e}"
                );

                let denoised = case.denoiser.wrap_output(noisy, &out, &sigma).unwrap();
                let (count, total, worst) =
                    level_differences(&denoised, &case.io[&format!("denoise{k}.denoised")]);
                eprintln!(
                    "{name} {algo:?} denoise{k}: {count}/{total} quantised values differ, by at most {worst} level"
                );
                assert!(
                    worst <= 1.0,
                    "{name} {algo:?} denoise{k}: a value differs by {worst} levels"
                );
                assert!(
                    (count as f64) < 1e-3 * total as f64,
                    "{name} {algo:?} denoise{k}: {count} of {total} quantised values differ"
                );
            }

            let sigmas: Vec<f32> = case.io["sample.sigmas"].to_vec1().unwrap();
            let ours = karras_sigmas(&SamplerConfig::default());
            for (a, b) in ours.iter().zip(&sigmas) {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs(),
                    "{name}: σ schedule {ours:?} vs {sigmas:?}"
                );
            }
            let x = sample(
                &case.denoiser,
                obs,
                &act,
                &case.io["sample.init_noise"],
                &sigmas,
                &SamplerConfig::default(),
                |_| unreachable!("the default sampler has no churn"),
            )
            .unwrap();
            let err = rel_l2(&x, &case.io["sample.output"]);
            eprintln!("{name} {algo:?}: 3-step sample relative L2 {err:.2e}");
            assert!(err < 1e-3, "{name} {algo:?}: sample relative L2 {err:e}");
        }
    }
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("nacre-diamond-{}-{name}", std::process::id()))
}

/// The first fixture checkpoint's tensors, as a name → tensor map.
fn fixture_tensors() -> (PathBuf, HashMap<String, Tensor>) {
    let (_, ckpt, _) = cases().into_iter().next().unwrap();
    let tensors = candle_core::pickle::read_all(&ckpt)
        .unwrap()
        .into_iter()
        .collect();
    (ckpt, tensors)
}

fn load_error(path: &Path) -> String {
    let e = load_checkpoint(path, &Device::Cpu, 0.5, 0.3)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&path.display().to_string()),
        "error does not name the file: {e}"
    );
    e
}

#[test]
fn safetensors_checkpoints_load_like_pt() {
    let (ckpt, tensors) = fixture_tensors();
    let path = temp_path("same.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let a = load_checkpoint(&ckpt, &Device::Cpu, 0.5, 0.3).unwrap();
    let b = load_checkpoint(&path, &Device::Cpu, 0.5, 0.3).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(a.config, b.config);
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (k, t) in &a.tensors {
        let diff = (t - &b.tensors[k])
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{k}");
    }
    // The placeholder networks are skipped, not loaded.
    assert!(a.tensors.keys().all(|k| !k.contains("placeholder")));
}

#[test]
fn broken_checkpoints_give_errors_naming_file_and_tensor() {
    let (ckpt, tensors) = fixture_tensors();

    // A tensor with the wrong shape.
    let mut bad = tensors.clone();
    let name = "denoiser.inner_model.unet.d_blocks.1.resblocks.0.conv2.weight";
    let shape = bad[name].dims().to_vec();
    bad.insert(
        name.into(),
        Tensor::zeros((shape[0], shape[1] + 1, 3, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    let path = temp_path("shape.safetensors");
    candle_core::safetensors::save(&bad, &path).unwrap();
    let e = load_error(&path);
    std::fs::remove_file(&path).unwrap();
    assert!(e.contains(name) && e.contains("shape"), "{e}");

    // A missing tensor.
    let mut bad = tensors.clone();
    let name = "denoiser.inner_model.unet.upsamples.2.conv.bias";
    bad.remove(name);
    let path = temp_path("missing.safetensors");
    candle_core::safetensors::save(&bad, &path).unwrap();
    let e = load_error(&path);
    std::fs::remove_file(&path).unwrap();
    assert!(e.contains(name) && e.contains("missing"), "{e}");

    // A tensor that belongs to no DIAMOND network.
    let mut bad = tensors.clone();
    bad.insert(
        "denoiser.inner_model.unet.extra.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let path = temp_path("extra.safetensors");
    candle_core::safetensors::save(&bad, &path).unwrap();
    let e = load_error(&path);
    std::fs::remove_file(&path).unwrap();
    assert!(e.contains("denoiser.inner_model.unet.extra.weight"), "{e}");

    // A NaN weight.
    let mut bad = tensors.clone();
    let name = "denoiser.inner_model.conv_in.bias";
    let n = bad[name].elem_count();
    bad.insert(
        name.into(),
        Tensor::from_vec(vec![f32::NAN; n], n, &Device::Cpu).unwrap(),
    );
    let path = temp_path("nan.safetensors");
    candle_core::safetensors::save(&bad, &path).unwrap();
    let e = load_error(&path);
    std::fs::remove_file(&path).unwrap();
    assert!(e.contains(name) && e.contains("NaN"), "{e}");

    // A truncated PyTorch checkpoint.
    let bytes = std::fs::read(&ckpt).unwrap();
    let path = temp_path("truncated.pt");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_error(&path);
    std::fs::remove_file(&path).unwrap();
    assert!(e.contains("PyTorch"), "{e}");

    // Not a checkpoint at all.
    let path = temp_path("junk.pt");
    std::fs::write(&path, b"this is not a checkpoint").unwrap();
    let e = load_error(&path);
    std::fs::remove_file(&path).unwrap();
    assert!(e.contains("neither"), "{e}");
}
