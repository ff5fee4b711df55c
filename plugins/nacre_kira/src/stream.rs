//! The jitter buffer that turns chunks arriving at the game's irregular pace into a continuous
//! stream at the sound device's rate. It runs on the audio thread and never allocates there once
//! its queue has reached its working size.
//!
//! - **Start-up**: silence until [`StreamConfig::target_latency`] of sound is queued, then a fade in.
//! - **Steady state**: linear-interpolation resampling from the model's rate to the device's,
//!   with the rate nudged by at most [`StreamConfig::max_rate_adjust`] so the queue stays near
//!   its target (the model's clock and the sound card's drift apart; jitter is absorbed).
//! - **Underrun** (the model fell behind): when less than twice the fade length is left, the
//!   sound fades out over the samples that are left, so it never stops on a non-zero sample;
//!   it fades in again once the target is queued again.
//! - **Overrun** (a burst after a stall): fade out, drop the oldest sound down to the target,
//!   fade in.
//! - **Discontinuity** (the session restarted or was loaded): fade out, drop the old sound,
//!   continue with the new.

use std::collections::VecDeque;

/// Time constant of the queue-fill average that drives the rate nudge.
const FILL_SMOOTHING_SECONDS: f32 = 2.0;

/// Tuning of a [`StreamBuffer`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamConfig {
    /// Sound kept queued in steady state, in seconds. It must cover the arrival jitter: the
    /// model's step jitter plus one game frame.
    pub target_latency: f32,
    /// Queue length, in seconds, above which the oldest sound is dropped.
    pub max_latency: f32,
    /// Length of every fade, in seconds.
    pub fade: f32,
    /// Largest relative change of the playback rate used to keep the queue at its target
    /// (0.005 = 0.5 %, about 9 cents: inaudible).
    pub max_rate_adjust: f32,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            target_latency: 0.12,
            max_latency: 0.5,
            fade: 0.005,
            max_rate_adjust: 0.005,
        }
    }
}

/// Counters of what the buffer had to do, for statistics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamCounters {
    /// Times the queue ran dry and the sound faded out.
    pub underruns: u64,
    /// Times a burst was trimmed.
    pub overruns: u64,
    /// Discontinuities handled.
    pub flushes: u64,
    /// Input frames (per channel) queued so far.
    pub frames_in: u64,
    /// Input frames dropped (overruns, flushes).
    pub frames_dropped: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the target to be queued; output is silent.
    Buffering,
    /// Playing (possibly fading in or out).
    Playing,
}

/// A jitter buffer and resampler for one stream (mono or stereo input, stereo output).
#[derive(Debug)]
pub struct StreamBuffer {
    config: StreamConfig,
    input_rate: f32,
    queue: VecDeque<[f32; 2]>,
    /// Fraction of the way from `queue[0]` to `queue[1]`.
    frac: f64,
    state: State,
    gain: f32,
    /// Frames at the front of the queue that belong to before a discontinuity.
    flush_pending: Option<usize>,
    trimming: bool,
    /// Smoothed queue length in input frames, for the rate control.
    smoothed_fill: f32,
    counters: StreamCounters,
}

impl StreamBuffer {
    /// An empty buffer for input at `input_rate` frames per second.
    pub fn new(input_rate: u32, config: StreamConfig) -> Self {
        let input_rate = input_rate.max(1) as f32;
        let capacity = (input_rate * (config.max_latency * 2.0 + 0.5)) as usize;
        Self {
            config,
            input_rate,
            queue: VecDeque::with_capacity(capacity),
            frac: 0.0,
            state: State::Buffering,
            gain: 0.0,
            flush_pending: None,
            trimming: false,
            smoothed_fill: 0.0,
            counters: StreamCounters::default(),
        }
    }

    /// The input rate.
    pub fn input_rate(&self) -> u32 {
        self.input_rate as u32
    }

    /// Seconds of sound queued.
    pub fn queued_seconds(&self) -> f32 {
        self.queue.len() as f32 / self.input_rate
    }

    /// What the buffer has done so far.
    pub fn counters(&self) -> StreamCounters {
        self.counters
    }

    /// Whether sound is playing (not waiting for the queue to fill).
    pub fn is_playing(&self) -> bool {
        self.state == State::Playing
    }

    /// Queues interleaved samples with `channels` channels (1 or 2; more are mixed down to the
    /// first two).
    pub fn push(&mut self, samples: &[f32], channels: u16) {
        let channels = channels.max(1) as usize;
        for frame in samples.chunks_exact(channels) {
            let l = frame[0];
            let r = if channels > 1 { frame[1] } else { l };
            // Non-finite samples would poison the output forever; treat them as silence.
            let clean = |v: f32| {
                if v.is_finite() {
                    v.clamp(-1.0, 1.0)
                } else {
                    0.0
                }
            };
            self.queue.push_back([clean(l), clean(r)]);
        }
        self.counters.frames_in += (samples.len() / channels) as u64;
    }

    /// Marks a discontinuity: everything queued so far belongs to before it and is faded out
    /// and dropped; what is pushed afterwards plays after it.
    pub fn flush(&mut self) {
        self.counters.flushes += 1;
        if self.state == State::Buffering || self.gain <= 0.0 {
            self.drop_front(self.queue.len());
            self.state = State::Buffering;
            self.flush_pending = None;
        } else {
            self.flush_pending = Some(self.queue.len());
        }
    }

    fn drop_front(&mut self, n: usize) {
        let n = n.min(self.queue.len());
        self.queue.drain(..n);
        self.counters.frames_dropped += n as u64;
        self.frac = 0.0;
    }

    /// Frames available to interpolate from (the read position sits between the first two).
    fn readable(&self) -> f64 {
        (self.queue.len() as f64 - 1.0 - self.frac).max(0.0)
    }

    /// The next output frame at `output_rate` frames per second.
    pub fn next_frame(&mut self, output_rate: f32) -> [f32; 2] {
        let target = self.config.target_latency * self.input_rate;
        let fade_in_frames = (self.config.fade * self.input_rate).max(1.0);
        let ratio = self.input_rate / output_rate.max(1.0);

        if self.state == State::Buffering {
            if self.flush_pending.is_none() && self.queue.len() as f32 >= target {
                // After a stall a burst may have queued far more than the target; start from
                // the newest sound rather than keep the extra latency (silent, so no click).
                if self.queue.len() as f32 > 2.0 * target {
                    let excess = self.queue.len() - target as usize;
                    self.drop_front(excess);
                }
                self.state = State::Playing;
                self.smoothed_fill = self.queue.len() as f32;
            } else {
                return [0.0, 0.0];
            }
        }

        // Decide where the gain is heading.
        let readable = self.readable() as f32;
        let mut fade_out = false;
        if self.flush_pending.is_some() || self.trimming {
            fade_out = true;
        } else if readable < 2.0 * fade_in_frames {
            // About to run dry: fade out over what is left.
            fade_out = true;
        } else if self.queue.len() as f32 > self.config.max_latency * self.input_rate {
            self.trimming = true;
            self.counters.overruns += 1;
            fade_out = true;
        }
        // Gain step per output frame: a full fade takes `fade` seconds of output.
        let gain_step = 1.0 / (self.config.fade * output_rate).max(1.0);
        if fade_out {
            // Fade over the readable frames if fewer than a full fade are left.
            let left_out_frames = (readable / ratio).max(1.0);
            let step = gain_step.max(self.gain / left_out_frames);
            self.gain = (self.gain - step).max(0.0);
        } else {
            self.gain = (self.gain + gain_step).min(1.0);
        }

        // Interpolate.
        let out = if self.queue.len() >= 2 {
            let a = self.queue[0];
            let b = self.queue[1];
            let t = self.frac as f32;
            [
                (a[0] + (b[0] - a[0]) * t) * self.gain,
                (a[1] + (b[1] - a[1]) * t) * self.gain,
            ]
        } else {
            [0.0, 0.0]
        };

        // Advance, nudging the rate towards the target fill.
        // The fill is smoothed over about two seconds so the 20 Hz saw-tooth of chunk arrivals
        // does not turn into vibrato; a 10 % surplus plays 0.5 % faster.
        let smoothing = 1.0 / (FILL_SMOOTHING_SECONDS * output_rate.max(1.0));
        self.smoothed_fill += (self.queue.len() as f32 - self.smoothed_fill) * smoothing;
        let error = (self.smoothed_fill - target) / target.max(1.0);
        let adjust =
            (error * 0.05).clamp(-self.config.max_rate_adjust, self.config.max_rate_adjust);
        let advance = ratio as f64 * (1.0 + adjust as f64);
        self.frac += advance;
        let whole = self.frac.floor();
        let consumed = (whole as usize).min(self.queue.len().saturating_sub(1));
        if consumed > 0 {
            self.queue.drain(..consumed);
            if let Some(p) = &mut self.flush_pending {
                *p = p.saturating_sub(consumed);
            }
        }
        self.frac -= whole;
        if self.queue.len() < 2 {
            self.frac = 0.0;
        }

        if self.gain <= 0.0 {
            if let Some(old) = self.flush_pending.take() {
                self.drop_front(old);
                self.state = State::Buffering;
            } else if self.trimming {
                self.trimming = false;
                let excess = self.queue.len().saturating_sub(target as usize);
                self.drop_front(excess);
            } else if fade_out {
                self.counters.underruns += 1;
                self.state = State::Buffering;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IN_RATE: u32 = 16_000;
    const OUT_RATE: f32 = 48_000.0;
    const CHUNK: usize = 800; // 50 ms: one frame of the shipped models at 20 frames/s
    const CALLBACK: usize = 480; // 10 ms at 48 kHz

    /// A small deterministic generator for jitter.
    struct Lcg(u64);
    impl Lcg {
        fn uniform(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Chunk `k` of a test stream: the left channel is a sawtooth that encodes the input
    /// position (it rises by 1/PERIOD per frame), the right channel is a constant 0.5, so the
    /// output's right channel reads back the gain and the left one, divided by the gain, the
    /// position that was played.
    const PERIOD: f32 = 4000.0;
    fn chunk(k: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(CHUNK * 2);
        for i in 0..CHUNK {
            let n = (k * CHUNK + i) as f32;
            out.push((n % PERIOD) / PERIOD - 0.5);
            out.push(0.5);
        }
        out
    }

    /// Game frames: ~60 per second with jitter and occasional long frames. Chunk `k` is made
    /// by the worker at `k * 50 ms * clock` plus up to 15 ms of step jitter, and the game passes
    /// it on at the first game frame after that. Returns (arrival time, chunk index).
    fn arrivals(
        seconds: f64,
        clock: f64,
        stall: Option<(f64, f64)>,
        seed: u64,
    ) -> Vec<(f64, usize)> {
        let mut rng = Lcg(seed);
        let mut frames = Vec::new();
        let mut t = 0.0;
        while t < seconds + 1.0 {
            let mut dt = 1.0 / 60.0 * (0.8 + 0.4 * rng.uniform());
            if rng.uniform() < 0.02 {
                dt += 0.04 * rng.uniform(); // a hitch: up to 40 ms more
            }
            if let Some((at, len)) = stall
                && t <= at
                && t + dt > at
            {
                dt += len;
            }
            t += dt;
            frames.push(t);
        }
        let chunks = (seconds / 0.05) as usize;
        let mut out = Vec::with_capacity(chunks);
        for k in 0..chunks {
            let made = k as f64 * 0.05 * clock + 0.015 * rng.uniform();
            let shown = frames.iter().copied().find(|&f| f >= made).unwrap();
            out.push((shown, k));
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        out
    }

    /// Plays the arrivals through a buffer with 10 ms device callbacks; returns the output.
    fn play(
        arrivals: &[(f64, usize)],
        seconds: f64,
        config: StreamConfig,
    ) -> (Vec<[f32; 2]>, StreamCounters) {
        let mut buffer = StreamBuffer::new(IN_RATE, config);
        let mut next = 0;
        let mut out = Vec::new();
        let callbacks = (seconds * OUT_RATE as f64 / CALLBACK as f64) as usize;
        for c in 0..callbacks {
            let now = c as f64 * CALLBACK as f64 / OUT_RATE as f64;
            while next < arrivals.len() && arrivals[next].0 <= now {
                buffer.push(&chunk(arrivals[next].1), 2);
                next += 1;
            }
            for _ in 0..CALLBACK {
                out.push(buffer.next_frame(OUT_RATE));
            }
        }
        (out, buffer.counters())
    }

    /// The longest run of silent output after the first sound, in seconds.
    fn longest_gap(out: &[[f32; 2]]) -> f64 {
        let start = out.iter().position(|f| f[1] > 0.49).expect("sound started");
        let mut longest = 0;
        let mut run = 0;
        for f in &out[start..] {
            if f[1] < 0.01 {
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
        }
        longest as f64 / OUT_RATE as f64
    }

    /// Decoded input positions (modulo PERIOD) of the fully audible output frames.
    fn positions(out: &[[f32; 2]]) -> Vec<(usize, f32)> {
        out.iter()
            .enumerate()
            .filter(|(_, f)| f[1] > 0.499)
            .map(|(i, f)| (i, (f[0] / (2.0 * f[1]) + 0.5) * PERIOD))
            .collect()
    }

    #[test]
    fn thirty_seconds_with_realistic_jitter_play_without_gaps_or_overlaps() {
        let seconds = 30.0;
        let arrivals = arrivals(seconds, 1.0, None, 7);
        let (out, counters) = play(&arrivals, seconds, StreamConfig::default());
        // Started within the target latency plus the first arrival.
        let start = out.iter().position(|f| f[1] > 0.0).unwrap() as f64 / OUT_RATE as f64;
        assert!(start < 0.25, "sound started after {start} s");
        assert_eq!(counters.underruns, 0, "{counters:?}");
        assert_eq!(counters.overruns, 0, "{counters:?}");
        let gap = longest_gap(&out);
        assert!(gap <= 0.005, "a gap of {:.1} ms", gap * 1e3);
        // No overlap and no skip: the played input position advances by one third of a frame
        // per output frame (16 kHz in, 48 kHz out), within the 0.5 % rate nudge, every time.
        let pos = positions(&out);
        let step_ok = |d: f32| (d - 1.0 / 3.0).abs() < 0.01;
        let mut checked = 0;
        let mut k = 0;
        while k + 1 < pos.len() {
            let ((i0, p0), (i1, p1)) = (pos[k], pos[k + 1]);
            k += 1;
            if i1 != i0 + 1 {
                continue;
            }
            let d = p1 - p0;
            if step_ok(d) {
                checked += 1;
                continue;
            }
            // The sawtooth wraps from PERIOD - 1 to 0 every PERIOD input frames. The output
            // frames played between those two input frames interpolate across the wrap and
            // decode to meaningless positions; at three output frames per input frame there are
            // up to three of them in a row. Step over them to the first frame after the wrap
            // (one that starts a regular step near 0) and check the advance across the wrap.
            assert!(
                p0 > PERIOD - 2.0,
                "position jumped by {d} input frames at output frame {i1}"
            );
            let resumed = (k..pos.len().min(k + 4)).find(|&m| {
                m + 1 < pos.len()
                    && pos[m].1 < 2.0
                    && pos[m + 1].0 == pos[m].0 + 1
                    && step_ok(pos[m + 1].1 - pos[m].1)
            });
            let Some(m) = resumed else {
                panic!("position jumped by {d} input frames at output frame {i1}");
            };
            let (im, pm) = pos[m];
            let frames = im - i0;
            assert_eq!(
                frames,
                m - (k - 1),
                "silence across the sawtooth's wrap before output frame {im}"
            );
            let advance = pm + PERIOD - p0;
            assert!(
                (advance - frames as f32 / 3.0).abs() < 0.01 * frames as f32,
                "position advanced by {advance} input frames over {frames} output frames \
                 across the sawtooth's wrap at output frame {im}"
            );
            k = m;
        }
        assert!(
            checked as f64 > 0.98 * (seconds - 0.3) * OUT_RATE as f64,
            "{checked}"
        );
        // Every input frame that arrived in time was played: at most the target latency (plus
        // the rate nudge's share) is still queued at the end.
        let played = counters.frames_in - counters.frames_dropped;
        assert_eq!(counters.frames_dropped, 0);
        assert!(played as f64 > (seconds - 0.3) * IN_RATE as f64);
    }

    #[test]
    fn a_stall_fades_out_and_back_in_without_a_click() {
        // The game stalls for 400 ms at t = 10 s: the queue runs dry, then a burst arrives.
        let seconds = 20.0;
        let arrivals = arrivals(seconds, 1.0, Some((10.0, 0.4)), 3);
        let (out, counters) = play(&arrivals, seconds, StreamConfig::default());
        assert!(counters.underruns >= 1, "{counters:?}");
        // No click: the gain (right channel / 0.5) never jumps by more than one fade step.
        let max_gain_step = 1.0 / (0.005 * OUT_RATE) + 1e-4;
        for (i, w) in out.windows(2).enumerate() {
            let dg = (w[1][1] - w[0][1]).abs() / 0.5;
            assert!(
                dg <= max_gain_step,
                "gain jumped by {dg} at output frame {i}"
            );
        }
        // And the sound came back.
        let tail = &out[out.len() - 48_000..];
        assert!(tail.iter().all(|f| f[1] > 0.49));
    }

    #[test]
    fn clock_drift_is_absorbed_by_the_rate_nudge() {
        // The model's clock runs 0.2 % fast for a minute: without the nudge the queue would
        // grow by 120 ms and overflow or keep growing; with it the queue stays near target.
        let seconds = 60.0;
        // The model keeps running past the end of the measurement: at 0.2 % fast, `seconds` of
        // sound are all made 0.12 s early, and a stream that ends fades out as an underrun
        // once the queue (~0.12 s) has played out, right at the end of the minute.
        let arrivals = arrivals(seconds + 1.0, 1.0 / 1.002, None, 11);
        let mut buffer = StreamBuffer::new(IN_RATE, StreamConfig::default());
        let mut next = 0;
        let mut max_queued: f32 = 0.0;
        let callbacks = (seconds * OUT_RATE as f64 / CALLBACK as f64) as usize;
        for c in 0..callbacks {
            let now = c as f64 * CALLBACK as f64 / OUT_RATE as f64;
            while next < arrivals.len() && arrivals[next].0 <= now {
                buffer.push(&chunk(arrivals[next].1), 2);
                next += 1;
            }
            for _ in 0..CALLBACK {
                buffer.next_frame(OUT_RATE);
            }
            if now > 30.0 {
                max_queued = max_queued.max(buffer.queued_seconds());
            }
        }
        let c = buffer.counters();
        assert_eq!(
            (c.underruns, c.overruns, c.frames_dropped),
            (0, 0, 0),
            "{c:?}"
        );
        assert!(max_queued < 0.25, "queue grew to {max_queued} s");
    }

    #[test]
    fn a_flush_fades_out_the_old_sound_before_the_new_one() {
        let mut buffer = StreamBuffer::new(IN_RATE, StreamConfig::default());
        let old = vec![0.8f32; 4000];
        buffer.push(&old, 1);
        let mut out = Vec::new();
        for _ in 0..4800 {
            out.push(buffer.next_frame(OUT_RATE));
        }
        buffer.flush();
        buffer.push(&vec![-0.8f32; 8000], 1);
        for _ in 0..48_000 {
            out.push(buffer.next_frame(OUT_RATE));
        }
        // The old level fades to zero before the new level fades in; no jump anywhere.
        let max_step = 0.8 / (0.005 * OUT_RATE) * 1.01 + 1e-4;
        for w in out.windows(2) {
            assert!((w[1][0] - w[0][0]).abs() <= max_step, "{:?}", w);
        }
        let first_new = out.iter().position(|f| f[0] < 0.0).unwrap();
        assert!(
            out[..first_new]
                .iter()
                .rev()
                .take(10)
                .all(|f| f[0].abs() < 0.05)
        );
        assert!(out.last().unwrap()[0] < -0.79 || buffer.counters().underruns > 0);
        assert_eq!(buffer.counters().flushes, 1);
    }

    #[test]
    fn bad_samples_are_silenced() {
        let mut buffer = StreamBuffer::new(IN_RATE, StreamConfig::default());
        buffer.push(&vec![f32::NAN; 4000], 1);
        for _ in 0..12_000 {
            let f = buffer.next_frame(OUT_RATE);
            assert!(f[0].is_finite() && f[1].is_finite());
        }
    }
}
