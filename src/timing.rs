//! Small timing helpers shared by `cargo bench` targets and `nacre bench`: medians over repeated
//! runs, and the machine's matrix-product peak measured in the same run, so every speed figure can
//! be read next to what the hardware can do.

use std::time::{Duration, Instant};

/// Summary of repeated timings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimingStats {
    /// Runs measured.
    pub runs: usize,
    /// Median.
    pub median: Duration,
    /// 10th percentile.
    pub p10: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

impl TimingStats {
    /// The summary of no samples: zero runs, every quantile zero.
    pub const EMPTY: Self = Self {
        runs: 0,
        median: Duration::ZERO,
        p10: Duration::ZERO,
        p90: Duration::ZERO,
        p99: Duration::ZERO,
    };

    /// Whether nothing was measured.
    pub fn is_empty(&self) -> bool {
        self.runs == 0
    }

    /// Summarises `samples` (need not be sorted). No samples give [`EMPTY`](Self::EMPTY): a
    /// run that measured nothing (`--frames 0`, no input ever sampled) is reported, not a panic.
    pub fn from_samples(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::EMPTY;
        }
        let mut s = samples.to_vec();
        s.sort();
        let q = |p: f64| s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
        Self {
            runs: s.len(),
            median: q(0.5),
            p10: q(0.1),
            p90: q(0.9),
            p99: q(0.99),
        }
    }

    /// Median in milliseconds.
    pub fn median_ms(&self) -> f64 {
        self.median.as_secs_f64() * 1e3
    }
}

impl std::fmt::Display for TimingStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return write!(f, "nothing measured (n=0)");
        }
        write!(
            f,
            "median {:.4} ms (p10 {:.4}, p90 {:.4}, n={})",
            self.median.as_secs_f64() * 1e3,
            self.p10.as_secs_f64() * 1e3,
            self.p90.as_secs_f64() * 1e3,
            self.runs
        )
    }
}

/// Runs `f` `warmup` times unmeasured, then `runs` times measured, and summarises.
pub fn time_runs(warmup: usize, runs: usize, mut f: impl FnMut()) -> TimingStats {
    for _ in 0..warmup {
        f();
    }
    let samples: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    TimingStats::from_samples(&samples)
}

/// Measures float32 matrix-product throughput in GFLOP/s with candle on `device`: the median of
/// several `n`×`n` by `n`×`n` products. Run it inside the thread pool the measured work uses.
pub fn matmul_gflops(device: &candle_core::Device, n: usize) -> crate::Result<f64> {
    use candle_core::{DType, Tensor};
    let a = Tensor::randn(0f32, 1.0, (n, n), device)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), device)?;
    let mut err = None;
    let stats = time_runs(2, 7, || {
        if let Err(e) = a
            .matmul(&b)
            .and_then(|c| c.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>())
        {
            err = Some(e);
        }
    });
    if let Some(e) = err {
        return Err(e.into());
    }
    Ok(2.0 * (n as f64).powi(3) / stats.median.as_secs_f64() / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_known_samples() {
        let s: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        let t = TimingStats::from_samples(&s);
        assert_eq!(t.median, Duration::from_millis(5));
        assert_eq!(t.p90, Duration::from_millis(9));
        assert_eq!(t.p10, Duration::from_millis(1));
        assert_eq!(t.runs, 10);
    }

    #[test]
    fn no_samples_give_an_empty_summary() {
        let t = TimingStats::from_samples(&[]);
        assert!(t.is_empty());
        assert_eq!(t, TimingStats::EMPTY);
        assert_eq!(t.to_string(), "nothing measured (n=0)");
        assert!(!TimingStats::from_samples(&[Duration::from_millis(3)]).is_empty());
    }
}
