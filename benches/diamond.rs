//! CPU speed of DIAMOND's Atari world model and of the convolution it is built on.
//!
//! `cargo bench --no-default-features --bench diamond`
//!
//! Everything runs inside one rayon pool of `NACRE_BENCH_THREADS` threads (default 2, the
//! issue's setting), and every figure is a median over repeated runs with
//! `bevy_nacre::timing::time_runs`. Printed: the matrix-product peak measured in the same run;
//! one 3×3 64→64 convolution on a 64×64 image with candle's `conv2d` and each of our algorithms
//! (GFLOP/s counted as the direct convolution's 2·multiply-adds, so Winograd can exceed the
//! peak); the FLOPs of one denoiser call; one denoiser call and one whole frame (3 Euler steps,
//! batch 1) of the `atari_default` fixture checkpoint (`NACRE_DIAMOND_FIXTURES` overrides the
//! directory) for each convolution choice.

#[path = "common/quick.rs"]
mod quick;

use std::path::PathBuf;
use std::time::Instant;

use bevy_nacre::diamond::loader::load_checkpoint;
use bevy_nacre::diamond::{DiamondOptions, DiamondWorldModel};
use bevy_nacre::nn::{ConvAlgorithm, FastConv2d, conv2d_flops};
use bevy_nacre::prelude::*;
use bevy_nacre::timing::{TimingStats, matmul_gflops, time_runs};
use candle_core::{DType, Device, Tensor};
use candle_nn::Conv2dConfig;

fn fixture() -> PathBuf {
    let dir = std::env::var_os("NACRE_DIAMOND_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/diamond"
            ))
        });
    dir.join("atari_default.pt")
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    quick::announce();
    let threads = env_usize("NACRE_BENCH_THREADS", 2);
    let frames = env_usize("NACRE_BENCH_FRAMES", quick::iterations(30, 2));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    pool.install(|| run(threads, frames))
}

fn run(threads: usize, frames: usize) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let dev = Device::Cpu;
    println!("DIAMOND CPU benchmark: {threads} threads, medians");
    let peak = matmul_gflops(&dev, 1024)?;
    println!("matmul f32 1024^3 (candle): {peak:.1} GFLOP/s  <- peak for comparison");

    // One convolution layer, as in the U-Net's top level.
    let x = Tensor::randn(0f32, 1.0, (1, 64, 64, 64), &dev)?;
    let w = Tensor::randn(0f32, 0.05, (64, 64, 3, 3), &dev)?;
    let b = Tensor::randn(0f32, 0.05, 64, &dev)?;
    let cfg = Conv2dConfig {
        padding: 1,
        stride: 1,
        dilation: 1,
        groups: 1,
        cudnn_fwd_algo: None,
    };
    let flops = conv2d_flops(x.dims(), w.dims(), &cfg)?;
    println!("conv2d 3x3 64->64 on 1x64x64x64: {:.1} MFLOP", flops / 1e6);
    for algo in [
        ConvAlgorithm::Candle,
        ConvAlgorithm::Direct,
        ConvAlgorithm::Winograd2,
        ConvAlgorithm::Winograd4,
    ] {
        let layer = FastConv2d::new(w.clone(), Some(b.clone()), cfg, algo)?;
        let mut sink = 0.0f32;
        let stats = time_runs(quick::iterations(3, 1), quick::iterations(30, 2), || {
            let y = layer.forward(&x).expect("conv");
            sink += y
                .i((0, 0, 0, 0))
                .expect("index")
                .to_scalar::<f32>()
                .expect("scalar");
        });
        std::hint::black_box(sink);
        println!(
            "  {:<10} {:>8.3} ms  {:>6.1} GFLOP/s ({:.0}% of matmul peak)",
            format!("{algo:?}"),
            stats.median_ms(),
            flops / stats.median.as_secs_f64() / 1e9,
            100.0 * flops / stats.median.as_secs_f64() / 1e9 / peak
        );
    }

    let path = fixture();
    let ckpt = load_checkpoint(&path, &dev, 0.5, 0.3)?;
    println!(
        "checkpoint {} ({:?})",
        path.display(),
        bevy_nacre::diamond::config::summary(&ckpt.config)
    );
    for algo in [
        ConvAlgorithm::Auto,
        ConvAlgorithm::AutoPrecise,
        ConvAlgorithm::Direct,
    ] {
        let options = DiamondOptions {
            conv: algo,
            ..DiamondOptions::default()
        };
        let model = DiamondWorldModel::from_checkpoint(&ckpt, &dev, options)?;
        let cfg = model.config().clone();
        let n = cfg.num_steps_conditioning;
        let noisy = Tensor::randn(0f32, 1.0, (1, 3, 64, 64), &dev)?;
        let obs = Tensor::randn(0f32, 0.5, (1, n * 3, 64, 64), &dev)?.clamp(-1f32, 1f32)?;
        let act = Tensor::zeros((1, n), DType::U32, &dev)?;
        let (_, call_flops) = model
            .denoiser()
            .model_output_counted(&noisy, &[1.0], &obs, &act)?;
        let call = time_runs(quick::iterations(2, 1), quick::iterations(10, 2), || {
            model
                .denoiser()
                .model_output(&noisy, &[1.0], &obs, &act)
                .expect("denoiser");
        });
        let mut session = model.start(&Prompt::seeded(0))?;
        let input = StepInput {
            action: Action::new(vec![1.0]),
            controls: Controls::default(),
        };
        let t0 = Instant::now();
        let frame = time_runs(quick::iterations(2, 1), frames, || {
            session.step(&input).expect("step");
        });
        let wall = t0.elapsed();
        report(
            algo,
            call_flops,
            &call,
            &frame,
            peak,
            model.sigmas().len() - 1,
            wall.as_secs_f64(),
        );
    }
    Ok(())
}

fn report(
    algo: ConvAlgorithm,
    call_flops: f64,
    call: &TimingStats,
    frame: &TimingStats,
    peak: f64,
    steps: usize,
    wall: f64,
) {
    println!("model, convolutions {algo:?}:");
    println!(
        "  denoiser call: {:.2} GFLOP, {:.1} ms -> {:.1} GFLOP/s effective ({:.0}% of matmul peak)",
        call_flops / 1e9,
        call.median_ms(),
        call_flops / call.median.as_secs_f64() / 1e9,
        100.0 * call_flops / call.median.as_secs_f64() / 1e9 / peak
    );
    println!(
        "  frame ({steps} Euler steps, batch 1): {frame} -> {:.2} frames/s (target >= 8) [{wall:.1} s]",
        1e3 / frame.median_ms()
    );
}

use candle_core::IndexOp;
