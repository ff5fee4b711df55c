//! Live numbers about a view: generated frames per second, input-to-frame latency, drops.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bevy::prelude::*;

/// How many recent latencies the percentiles are computed over.
const LATENCY_WINDOW: usize = 256;
/// How far back the frame-rate estimate looks.
const FPS_WINDOW: Duration = Duration::from_secs(2);

/// Where a view's session stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Reflect)]
pub enum ViewStatus {
    /// Waiting for the model to load.
    #[default]
    WaitingForModel,
    /// The session was asked to start; no frame yet.
    Starting,
    /// Frames are arriving.
    Running,
    /// The session failed; see [`WorldViewStats::last_error`]. Send a
    /// [`RestartWorldView`](crate::plugin::RestartWorldView) to start it again.
    Failed,
}

/// Statistics of one view, updated by [`NacreSystems::Present`](crate::plugin::NacreSystems).
#[derive(Component, Clone, Debug, Default, Reflect)]
pub struct WorldViewStats {
    /// Where the session stands.
    pub status: ViewStatus,
    /// Frames the model generated per second, over the last two seconds (shown or not).
    pub generated_fps: f32,
    /// Median time from sampling an input to showing the frame made from it, in milliseconds.
    pub latency_p50_ms: f32,
    /// 99th percentile of the same, in milliseconds.
    pub latency_p99_ms: f32,
    /// Model time of the newest frame, in milliseconds.
    pub step_ms: f32,
    /// Frames shown in the view.
    pub frames_presented: u64,
    /// Frames generated but replaced by newer ones before they could be shown.
    pub dropped_frames: u64,
    /// Inputs that could not be queued because the worker's queue was full.
    pub inputs_dropped: u64,
    /// Errors the session has had.
    pub errors: u32,
    /// The newest error message.
    pub last_error: Option<String>,
    #[reflect(ignore)]
    latencies: VecDeque<f32>,
    #[reflect(ignore)]
    arrivals: VecDeque<(Instant, u64)>,
}

impl WorldViewStats {
    /// Records a presented frame: its index in the session, when its input was sampled, and
    /// the model's step time.
    pub(crate) fn record_frame(
        &mut self,
        now: Instant,
        index: u64,
        input_sampled_at: Option<Instant>,
        step: Duration,
    ) {
        self.status = ViewStatus::Running;
        self.frames_presented += 1;
        self.step_ms = step.as_secs_f32() * 1e3;
        if let Some(sampled) = input_sampled_at {
            if self.latencies.len() == LATENCY_WINDOW {
                self.latencies.pop_front();
            }
            self.latencies
                .push_back(now.saturating_duration_since(sampled).as_secs_f32() * 1e3);
            let mut sorted: Vec<f32> = self.latencies.iter().copied().collect();
            sorted.sort_by(f32::total_cmp);
            self.latency_p50_ms = percentile(&sorted, 0.50);
            self.latency_p99_ms = percentile(&sorted, 0.99);
        }
        // A restart resets the frame index; forget the old arrivals then.
        if self.arrivals.back().is_some_and(|&(_, i)| i >= index) {
            self.arrivals.clear();
        }
        self.arrivals.push_back((now, index));
        while self
            .arrivals
            .front()
            .is_some_and(|&(t, _)| now.duration_since(t) > FPS_WINDOW)
        {
            self.arrivals.pop_front();
        }
        if let (Some(&(t0, i0)), Some(&(t1, i1))) = (self.arrivals.front(), self.arrivals.back()) {
            let dt = t1.duration_since(t0).as_secs_f32();
            if dt > 0.0 {
                self.generated_fps = (i1 - i0) as f32 / dt;
            }
        }
    }

    pub(crate) fn record_error(&mut self, error: &str) {
        self.status = ViewStatus::Failed;
        self.errors += 1;
        self.last_error = Some(error.to_string());
    }
}

/// The `q` quantile of sorted values (nearest rank).
pub(crate) fn percentile(sorted: &[f32], q: f32) -> f32 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f32).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rate() {
        let v: Vec<f32> = (1..=100).map(|x| x as f32).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        let mut s = WorldViewStats::default();
        let t0 = Instant::now();
        for i in 0..11u64 {
            let t = t0 + Duration::from_millis(100 * i);
            s.record_frame(t, i, Some(t - Duration::from_millis(30)), Duration::ZERO);
        }
        assert!((s.generated_fps - 10.0).abs() < 0.01, "{}", s.generated_fps);
        assert!((s.latency_p99_ms - 30.0).abs() < 0.5);
    }
}
