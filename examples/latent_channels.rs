//! How well a trained default model's dynamics predicts each latent channel, teacher-forced on
//! a dataset: per channel, the latents' variance, the error of the dynamics' prediction and the
//! error of copying the previous frame's latent. A channel whose prediction error is close to
//! its variance is not being predicted at all. Then the same for moments where the player stands
//! still and the view does not change, where copying is exactly right, with the prediction's
//! gain on the last latent (1 keeps the picture, below 1 fades it) and its mean change (a
//! steady drift).
//!
//! ```sh
//! cargo run --release --example latent_channels -- assets/models/default data/heldout128
//! ```

use std::path::PathBuf;

use bevy_nacre::default_model::conditions::condition_len;
use bevy_nacre::default_model::model::NoiseRng;
use bevy_nacre::default_model::weights::load_networks;
use bevy_nacre::default_model::{Config, spec_for};
use bevy_nacre::train::data::TrainingData;
use candle_core::{DType, Device, Tensor};

/// Frames of the dataset to look at (from the start), and every how many frames to predict.
const FRAMES: usize = 400;
const STRIDE: usize = 7;
/// Frames searched for standing still (every one of them is predicted).
const STILL_FRAMES: usize = 2000;

/// One prediction's numbers, per latent channel.
struct ChannelStats {
    /// Squared error of the dynamics' prediction.
    predicted: Vec<f32>,
    /// Squared error of copying the last latent.
    copied: Vec<f32>,
    /// Sums over tokens of prediction × last, last² and prediction − last.
    sums: [Vec<f32>; 3],
}

fn main() -> bevy_nacre::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [model_dir, data_dir] = args.as_slice() else {
        eprintln!("usage: latent_channels MODEL_DIR DATA_DIR");
        std::process::exit(2);
    };
    let device = Device::Cpu;
    let cfg = Config::load(&model_dir.join("config.json"))?;
    let cond_len = condition_len(&spec_for(&cfg));
    let nets = load_networks(
        &model_dir.join("model.safetensors"),
        &cfg,
        cond_len,
        &device,
    )?;
    let data = TrainingData::load(data_dir, &cfg)?;
    let n = FRAMES.min(data.frame_count());
    let searched = STILL_FRAMES.min(data.frame_count());
    let rows: Vec<usize> = (0..searched).collect();
    let mut latents = Vec::new();
    for chunk in rows.chunks(32) {
        latents.push(nets.encoder.forward(&data.pixels(chunk, &device)?)?);
    }
    let z = Tensor::cat(&latents, 0)?; // (frames, tokens, channels)
    let k = cfg.context;
    let channels = cfg.latent_channels;
    let (mut predicted, mut copied) = (vec![0.0f64; channels], vec![0.0f64; channels]);
    let (mut still_predicted, mut still_copied) = (vec![0.0f64; channels], vec![0.0f64; channels]);
    let mut still_sums = [
        vec![0.0f64; channels],
        vec![0.0f64; channels],
        vec![0.0f64; channels],
    ];
    let (mut count, mut still_count) = (0usize, 0usize);
    // Targets whose context lies inside the same episode.
    let inside = |t: usize| {
        data.episodes
            .iter()
            .any(|&(start, len)| start + k <= t && t < start + len)
    };
    let noise = cfg.inference_noise / cfg.train_noise_max;
    let errors = |t: usize| -> bevy_nacre::Result<ChannelStats> {
        let context = z.narrow(0, t - k, k)?.unsqueeze(0)?;
        let condition = data.conditions(&[t], &[noise], &device)?;
        let prediction = nets.dynamics.forward(&context, &condition)?;
        // With a sampler, one sample (noise seeded by the frame) stands for the model's output.
        let next = match &nets.sampler {
            Some(sampler) => {
                let mut rng = NoiseRng::new(t as u64);
                let dims = prediction.mean.dims().to_vec();
                let n: usize = dims.iter().product();
                let noise: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
                let noise = Tensor::from_vec(noise, dims, &device)?;
                (&prediction.mean + sampler.sample(&noise, &prediction.sampler_condition())?)?
            }
            None => prediction.mean,
        };
        let truth = z.narrow(0, t, 1)?;
        let last = z.narrow(0, t - 1, 1)?;
        let per_channel = |a: &Tensor| -> bevy_nacre::Result<Vec<f32>> {
            Ok((a - &truth)?.sqr()?.mean((0, 1))?.to_vec1::<f32>()?)
        };
        let sum = |a: Tensor| -> bevy_nacre::Result<Vec<f32>> { Ok(a.sum((0, 1))?.to_vec1()?) };
        let sums = [
            sum((&next * &last)?)?,
            sum(last.sqr()?)?,
            sum((&next - &last)?)?,
        ];
        Ok(ChannelStats {
            predicted: per_channel(&next)?,
            copied: per_channel(&last)?,
            sums,
        })
    };
    let add = |sums: &mut [f64], e: &[f32]| {
        for (sum, e) in sums.iter_mut().zip(e) {
            *sum += *e as f64;
        }
    };
    for t in (k..n).step_by(STRIDE).filter(|&t| inside(t)) {
        let stats = errors(t)?;
        add(&mut predicted, &stats.predicted);
        add(&mut copied, &stats.copied);
        count += 1;
    }
    // Standing still: no action in the context and target rows, and copying the last latent is
    // almost exact (mean squared change under 0.01 per channel).
    for t in (k..searched).filter(|&t| inside(t) && (t - k..=t).all(|r| data.is_still(r))) {
        let stats = errors(t)?;
        if stats.copied.iter().sum::<f32>() / channels as f32 >= 0.01 {
            continue;
        }
        add(&mut still_predicted, &stats.predicted);
        add(&mut still_copied, &stats.copied);
        for (total, s) in still_sums.iter_mut().zip(&stats.sums) {
            add(total, s);
        }
        still_count += 1;
    }
    let variance: Vec<f32> = z
        .to_dtype(DType::F32)?
        .var_keepdim(0)?
        .mean((0, 1))?
        .to_vec1()?;
    println!(
        "{count} predictions over the first {n} frames of {}",
        data_dir.display()
    );
    println!("channel  variance  prediction error  copy-last error");
    for c in 0..channels {
        println!(
            "{c:7}  {:8.3}  {:16.3}  {:15.3}",
            variance[c],
            predicted[c] / count.max(1) as f64,
            copied[c] / count.max(1) as f64
        );
    }
    println!(
        "\nstanding still: {still_count} predictions over the first {searched} frames \
         (no action, view unchanged)"
    );
    println!("channel  prediction error  copy-last error  gain on last  mean change");
    let tokens = (still_count.max(1) * cfg.tokens()) as f64;
    for c in 0..channels {
        println!(
            "{c:7}  {:16.4}  {:15.4}  {:12.4}  {:11.4}",
            still_predicted[c] / still_count.max(1) as f64,
            still_copied[c] / still_count.max(1) as f64,
            still_sums[0][c] / still_sums[1][c].max(1e-12),
            still_sums[2][c] / tokens,
        );
    }
    Ok(())
}
