//! `nacre eval`: how well a world model imitates the reference world, on held-out data.
//!
//! Measures (all written to `metrics.json`):
//! - **teacher-forced PSNR**: the next frame predicted from true context frames;
//! - **autoregressive PSNR and SSIM** at horizons 1, 8 and 32: the model fed its own frames,
//!   driven by the recorded actions and controls;
//! - **action response**: whether the generated view moves the same way as the reference view
//!   (sign of the horizontal shift while turning, zoom in or out while walking);
//! - **director response**: how much of the reference world's change a switch of the time of day
//!   or the weather makes within 15 frames, and once settled ([`director`]);
//! - **moving realism and revisit**: scripted turning and walking from held-out starts, scored by
//!   a calibrated Fréchet distance (0 = the reference world, 1 = the reference blurred), the
//!   sharpness and colour-count ratios, the detail along rows and down columns apart (a view
//!   smeared sideways into streaks keeps its sharpness but loses the first), and whether turning
//!   180° and back brings the first view back ([`scripted`], [`realism`]);
//! - **sound**: log-spectral distance of each frame's sound from the reference's, and how
//!   strongly low-band sound energy follows walking (footsteps), for both;
//! - **standing still**: with no action for 200 frames the reference view barely changes
//!   (clouds drift), so the generated view should keep the picture it started from: PSNR
//!   against the reference after 1, 10, 50 and 200 frames, and how much of its contrast and
//!   detail are left;
//! - **stability**: frame statistics over a long rollout stay inside the reference's range (no
//!   collapse to grey, to noise, to a frozen picture, or into a mosaic of blocks: the block-edge
//!   ratio of [`metrics::block_edges`], since a patch-based model can keep brightness, contrast
//!   and detail in range while its picture falls apart along the patch grid), no stretch of
//!   more than [`MAX_OUTSIDE_RUN`] frames in a row leaves that range, and the view does not go
//!   black for more than [`MAX_DARK_RUN`] frames in a row (a view that goes black for seconds
//!   and then recovers barely moves the share of frames inside the range); also reported, not
//!   judged: the share of frames whose brightness follows the reference's at the same step.
//!
//! It also writes `contact_sheet.png` (reference rows above generated rows; the last pair is
//! standing still, at frames 1 to 200), `scripted_sheet.png` (the scripted turning, walking and
//! both, reference above generated), `stability_sheet.png` (the long rollout, one frame pair
//! every [`STABILITY_SHEET_PAIRS`]th of it, ten to a row: a collapse that recovers, or a
//! picture that keeps its statistics but not the reference's light, shows there) and
//! `rollout.gif` (reference and generated side by side).

pub mod director;
pub mod metrics;
pub mod realism;
pub mod scripted;

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, REFERENCE_WORLD};
use crate::dsp::{BandSpectrum, log_spectral_distance_db};
use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::frame::Frame;
use crate::reference::ReferenceWorld;
use crate::reference::trajectory::{Trajectory, TrajectoryConfig};
use crate::spec::{ChannelLayout, ModelSpec};
use crate::world_model::{Prompt, Session, StepInput, WorldModel};
pub use director::{DirectorCase, director_cases};
use metrics::{FrameStats, correlation, horizontal_shift, psnr, ssim, zoom};
pub use scripted::{ScriptScore, Scripted, scripted_rollouts};

/// What to evaluate and how much.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Held-out episodes to use (at most).
    pub episodes: usize,
    /// Distance between the starts of evaluated windows within an episode.
    pub stride: usize,
    /// Length of the stability rollout.
    pub stability_frames: usize,
    /// Seed of the director scenarios, the scripted rollouts and the stability rollout.
    pub seed: u64,
    /// World seeds of the scripted turning and walking (as many others calibrate the score).
    pub scripted_seeds: usize,
    /// The measures to take.
    pub measures: Vec<Measure>,
}

/// The groups of measures of `nacre eval` (`--only`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Teacher-forced PSNR and sound, autoregressive PSNR/SSIM, action response, footsteps.
    Episodes,
    /// Director strength.
    Director,
    /// Scripted turning and walking: realism, sharpness, colours, revisit.
    Scripted,
    /// Standing still for 200 frames.
    StandingStill,
    /// The long stability rollout.
    Stability,
}

impl Measure {
    /// Every measure, in the order they run.
    pub const ALL: [Measure; 5] = [
        Measure::Episodes,
        Measure::Director,
        Measure::Scripted,
        Measure::StandingStill,
        Measure::Stability,
    ];

    /// The measure called `name` (`episodes`, `director`, `scripted`, `standing_still`,
    /// `stability`).
    pub fn parse(name: &str) -> Option<Measure> {
        Self::ALL
            .into_iter()
            .find(|m| serde_json::to_value(m).is_ok_and(|v| v.as_str() == Some(name.trim())))
    }
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            episodes: 8,
            stride: 8,
            stability_frames: 10_000,
            seed: 20_261_126,
            scripted_seeds: 6,
            measures: Measure::ALL.to_vec(),
        }
    }
}

/// PSNR and SSIM at one horizon.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HorizonScore {
    /// Frames after the true context.
    pub horizon: usize,
    /// Mean PSNR in dB.
    pub psnr_db: f64,
    /// Mean SSIM.
    pub ssim: f64,
    /// Rollouts measured.
    pub samples: usize,
}

/// Agreement on the direction the view moves.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ActionResponse {
    /// Fraction of turning steps where the horizontal shift has the reference's sign.
    pub turning_agreement: f64,
    /// Turning steps measured.
    pub turning_cases: usize,
    /// Fraction of walking steps where the zoom has the reference's direction.
    pub walking_agreement: f64,
    /// Walking steps measured.
    pub walking_cases: usize,
    /// The walking steps above again, with the reference's direction taken from its recorded
    /// pose (in when the camera stepped forward, out when back) instead of estimated from its
    /// frames; the model's zoom is estimated from its frames as above. Falling snow, rain
    /// streaks and the near-plane fade can turn the image estimate round, and this says how
    /// much of the figure above that costs. As above, a zoom of exactly 1 counts as zooming in.
    #[serde(default)]
    pub walking_agreement_by_pose: f64,
    /// Walking steps measured against the pose: those above whose camera moved at least
    /// [`POSE_STEP_MIN`] metres along its heading.
    #[serde(default)]
    pub walking_cases_by_pose: usize,
    /// Of those, the steps whose reference zoom estimate goes against the camera's recorded
    /// motion: errors of the measurement, not of the model.
    #[serde(default)]
    pub reference_zoom_against_pose: usize,
    /// Both together.
    pub agreement: f64,
}

/// Sound measures.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AudioScore {
    /// Mean log-spectral distance (dB) of teacher-forced sound from the reference's.
    pub log_spectral_distance_db: f64,
    /// Correlation of low-band sound energy with walking, generated (autoregressive).
    pub footsteps_walking_correlation: f64,
    /// The same for the reference sound.
    pub reference_footsteps_walking_correlation: f64,
}

/// The long-rollout check.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stability {
    /// Frames generated.
    pub frames: usize,
    /// No collapse was detected.
    pub stable: bool,
    /// What went wrong, if anything.
    pub problems: Vec<String>,
    /// Reference statistics range: (min, max) of brightness, contrast, detail, block edges.
    pub reference_range: [(f32, f32); 4],
    /// Generated statistics range.
    pub generated_range: [(f32, f32); 4],
    /// Fraction of generated frames whose statistics lie inside the reference range (with a
    /// 25 % margin).
    pub inside_reference_range: f64,
    /// The most frames in a row outside that range: a stretch that the player sees for
    /// seconds and that a high [`Self::inside_reference_range`] can hide.
    #[serde(default)]
    pub longest_outside_run: usize,
    /// The most frames in a row darker than half the reference's darkest frame. The range's
    /// margin lets a black frame through (the reference's darkest night is within a quarter of
    /// its range of black), so going black is counted on its own.
    #[serde(default)]
    pub longest_dark_run: usize,
    /// Share of frames whose brightness lies within 1.5× of the reference frame's at the same
    /// step (same world seed, player and director): whether the light follows the time of day
    /// and the weather over a long session, not only the frames' spread.
    #[serde(default)]
    pub brightness_follows: f64,
}

/// The most frames in a row a rollout may spend outside the reference's range of statistics
/// before it counts as unstable: 5 s at 20 frames/s.
pub const MAX_OUTSIDE_RUN: usize = 100;

/// The most frames in a row a rollout may be darker than half the reference's darkest frame
/// before it counts as unstable: 1 s at 20 frames/s, a black screen any player notices.
pub const MAX_DARK_RUN: usize = 20;

/// The length of the longest run of `true` in `flags`.
fn longest_run(flags: impl IntoIterator<Item = bool>) -> usize {
    let (mut best, mut run) = (0, 0);
    for f in flags {
        run = if f { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// The player stands still.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StandingStill {
    /// Frames of standing still.
    pub frames: usize,
    /// PSNR (dB) against the reference after 1, 10, 50 and 200 frames: `(frame, dB)`.
    pub psnr_db: Vec<(usize, f64)>,
    /// The last generated frame's luminance contrast as a fraction of the reference's.
    pub contrast_kept: f64,
    /// The last generated frame's fine detail as a fraction of the reference's.
    pub detail_kept: f64,
    /// Block-edge ratio of the last frame, generated and reference
    /// ([`metrics::block_edges`]).
    pub block_edges: (f32, f32),
}

/// Everything `nacre eval` measures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalReport {
    /// Model name and version.
    pub model: String,
    /// Dataset folder.
    pub data: String,
    /// The measures taken; the others keep their defaults (absent in reports written before
    /// measures could be chosen, which took all).
    #[serde(default = "all_measures")]
    pub measured: Vec<Measure>,
    /// Episodes used.
    pub episodes: usize,
    /// Mean teacher-forced next-frame PSNR (dB).
    #[serde(default)]
    pub teacher_forced_psnr_db: f64,
    /// Frames measured teacher-forced.
    #[serde(default)]
    pub teacher_forced_samples: usize,
    /// Autoregressive scores at horizons 1, 8, 32.
    #[serde(default)]
    pub autoregressive: Vec<HorizonScore>,
    /// Action response.
    #[serde(default)]
    pub action_response: ActionResponse,
    /// Director response.
    #[serde(default)]
    pub director: Vec<DirectorCase>,
    /// Scripted turning and walking: realism, sharpness, colours, revisit (absent in reports
    /// written before it was measured).
    #[serde(default)]
    pub scripted: Scripted,
    /// Sound.
    #[serde(default)]
    pub audio: AudioScore,
    /// Standing still (absent in reports written before it was measured).
    #[serde(default)]
    pub standing_still: StandingStill,
    /// Long-rollout stability.
    #[serde(default)]
    pub stability: Stability,
    /// Wall time of the evaluation.
    pub seconds: f64,
}

impl EvalReport {
    /// The report as `metrics.json` holds it: the fields of the measures not taken are left out
    /// (they would read as zeros, and `"stable": false` for a rollout that never ran); reading
    /// it back gives them their defaults again.
    pub fn to_json(&self) -> String {
        let mut value = serde_json::to_value(self).expect("the report serialises");
        if let Some(fields) = value.as_object_mut() {
            for measure in Measure::ALL {
                if !self.measured.contains(&measure) {
                    for key in measure.report_fields() {
                        fields.remove(*key);
                    }
                }
            }
        }
        serde_json::to_string_pretty(&value).expect("the report serialises")
    }
}

impl Measure {
    /// The [`EvalReport`] fields this measure fills.
    fn report_fields(self) -> &'static [&'static str] {
        match self {
            Measure::Episodes => &[
                "teacher_forced_psnr_db",
                "teacher_forced_samples",
                "autoregressive",
                "action_response",
                "audio",
            ],
            Measure::Director => &["director"],
            Measure::Scripted => &["scripted"],
            Measure::StandingStill => &["standing_still"],
            Measure::Stability => &["stability"],
        }
    }
}

const HORIZONS: [usize; 3] = [1, 8, 32];

/// The least distance (metres) the reference camera must move along its heading in one step for
/// the step to count in [`ActionResponse::walking_agreement_by_pose`]; a walking step covers
/// about 0.1 m, a player held by a slope or a tree much less.
pub const POSE_STEP_MIN: f32 = 0.02;

/// How far (metres) the camera moved along the heading it had before the step: positive
/// forward. Poses are `x, y, z, yaw, pitch`, and a yaw of 0 looks along +z.
fn forward_step(before: &[f32; 5], after: &[f32; 5]) -> f32 {
    let (fx, fz) = (before[3].sin(), before[3].cos());
    (after[0] - before[0]) * fx + (after[2] - before[2]) * fz
}

fn all_measures() -> Vec<Measure> {
    Measure::ALL.to_vec()
}

/// Rows of one held-out episode as frames and inputs.
struct EpisodeRows {
    frames: Vec<Frame>,
    inputs: Vec<StepInput>,
    audio: Vec<Vec<f32>>,
    /// The camera after each step, `x, y, z, yaw, pitch`.
    pose: Vec<[f32; 5]>,
}

fn load_episodes(ds: &Dataset, spec: &ModelSpec, limit: usize) -> Result<Vec<EpisodeRows>> {
    let data = ds.dir();
    let d = ds.dims();
    if d.width != spec.width || d.height != spec.height {
        return Err(Error::bad_file(
            data.join(crate::dataset::MANIFEST_FILE),
            format!(
                "dataset frames are {}x{}, the model makes {}x{}",
                d.width, d.height, spec.width, spec.height
            ),
        ));
    }
    let manifest = ds.manifest();
    let differences = ChannelLayout::of(spec).differences(&ChannelLayout::of(&manifest.model));
    if !differences.is_empty() {
        return Err(Error::bad_file(
            data.join(crate::dataset::MANIFEST_FILE),
            format!(
                "the dataset's channels differ from the model's (here: the model; there: the \
                 data):\n  {}",
                differences.join("\n  ")
            ),
        ));
    }
    let model_samples = spec.audio.samples_per_frame as usize * spec.audio.channels as usize;
    if !spec.audio.is_silent() && d.audio_samples != model_samples {
        return Err(Error::bad_file(
            data.join(crate::dataset::MANIFEST_FILE),
            format!(
                "the dataset has {} audio samples per frame, the model makes {model_samples}",
                d.audio_samples
            ),
        ));
    }
    let mut out = Vec::new();
    for e in ds.episodes().take(limit) {
        let e = e?.data;
        let n = e.len();
        let fb = d.frame_bytes();
        out.push(EpisodeRows {
            frames: (0..n)
                .map(|i| Frame::from_rgb(d.width, d.height, &e.frames[i * fb..(i + 1) * fb]))
                .collect(),
            inputs: (0..n)
                .map(|i| StepInput {
                    action: crate::action::Action::new(
                        e.actions[i * d.actions..(i + 1) * d.actions].to_vec(),
                    ),
                    controls: crate::action::Controls::new(
                        e.controls[i * d.controls..(i + 1) * d.controls].to_vec(),
                    ),
                })
                .collect(),
            audio: e
                .audio
                .chunks_exact(d.audio_samples.max(1))
                .take(if d.audio_samples == 0 { 0 } else { n })
                .map(|c| c.iter().map(|&s| s as f32 / 32768.0).collect())
                .collect(),
            pose: e
                .pose
                .chunks_exact(d.pose.max(1))
                .filter_map(|p| p.first_chunk().copied())
                .collect(),
        });
    }
    if out.is_empty() {
        return Err(Error::bad_file(data, "dataset has no episodes"));
    }
    Ok(out)
}

fn start_from(
    model: &dyn WorldModel,
    frames: &[Frame],
    controls: &StepInput,
) -> Result<Box<dyn Session>> {
    model.start(&Prompt {
        seed: 1,
        start_frames: frames.to_vec(),
        controls: Some(controls.controls.clone()),
    })
}

/// Energy of the low bands (footsteps live there), averaged over the chunk's subframes.
fn low_band_energy(spectrum: &BandSpectrum, bands: usize, chunk: &[f32]) -> f32 {
    let e = spectrum.analyze(chunk);
    let low = bands / 3;
    let sub = e.len() / bands;
    (0..sub)
        .map(|s| {
            e[s * bands..s * bands + low]
                .iter()
                .map(|v| v.exp())
                .sum::<f32>()
        })
        .sum::<f32>()
        .max(1e-12)
        .ln()
}

fn is_walking(input: &StepInput) -> f32 {
    let a = &input.action.values;
    if a[0].abs() + a[1].abs() > 0.3 {
        1.0
    } else {
        0.0
    }
}

/// What the teacher-forced and autoregressive measures found on the held-out episodes.
#[derive(Default)]
struct OnEpisodes {
    teacher_forced_psnr_db: f64,
    teacher_forced_samples: usize,
    autoregressive: Vec<HorizonScore>,
    action_response: ActionResponse,
    audio: AudioScore,
    rows: Vec<SheetRow>,
}

/// The sound measures: a band spectrum like the default model's (24 bands, 4 subframes).
struct SoundProbe {
    spectrum: BandSpectrum,
    bands: usize,
}

impl SoundProbe {
    fn new(spec: &ModelSpec) -> Option<Self> {
        let audio = spec.audio;
        let samples = audio.samples_per_frame as usize;
        let bands = 24;
        // Too few samples per frame to split into 4 subframes of 24 bands: no sound measures.
        (!audio.is_silent() && samples >= 4 * 2 * bands).then(|| Self {
            spectrum: BandSpectrum::new(audio.sample_rate, samples, 4, bands),
            bands,
        })
    }
}

/// Runs the measures `opts` asks for (all by default) and writes `metrics.json`,
/// `contact_sheet.png`, `scripted_sheet.png`, `stability_sheet.png` and `rollout.gif` into
/// `out`.
pub fn evaluate(
    model: &dyn WorldModel,
    data: &Path,
    out: &Path,
    opts: &EvalOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<EvalReport> {
    let started = Instant::now();
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let spec = model.spec().clone();
    let dataset = Dataset::open(data)?;
    let episodes = load_episodes(&dataset, &spec, opts.episodes)?;
    let measures = measures_for(&dataset, &opts.measures);
    let wants = |m: Measure| measures.contains(&m);
    let mut found = OnEpisodes::default();
    if wants(Measure::Episodes) {
        progress("teacher-forced next frames and autoregressive rollouts");
        found = on_episodes(model, &episodes, opts)?;
    }
    let mut sheet_rows = std::mem::take(&mut found.rows);
    let mut report = EvalReport {
        model: format!("{} {}", spec.name, spec.version),
        data: data.display().to_string(),
        measured: measures.clone(),
        episodes: episodes.len(),
        teacher_forced_psnr_db: found.teacher_forced_psnr_db,
        teacher_forced_samples: found.teacher_forced_samples,
        autoregressive: found.autoregressive,
        action_response: found.action_response,
        director: Vec::new(),
        scripted: Scripted::default(),
        audio: found.audio,
        standing_still: StandingStill::default(),
        stability: Stability::default(),
        seconds: 0.0,
    };
    if wants(Measure::Director) {
        progress("director switches");
        report.director = director_cases(model, opts.seed)?;
    }
    let mut scripted_rows = Vec::new();
    if wants(Measure::Scripted) {
        progress("scripted turning and walking");
        (report.scripted, scripted_rows) =
            scripted_rollouts(model, opts.seed, opts.scripted_seeds)?;
    }
    if wants(Measure::StandingStill) {
        progress("standing still");
        let (still, still_row) = standing_still(model, opts.seed)?;
        report.standing_still = still;
        sheet_rows.push(still_row);
    }
    let (mut gif_frames, mut stability_rows) = (Vec::new(), Vec::new());
    if wants(Measure::Stability) {
        progress("stability rollout");
        (report.stability, gif_frames, stability_rows) = stability(model, opts)?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    write_atomic(&out.join("metrics.json"), report.to_json().as_bytes())?;
    save_sheet(&out.join("contact_sheet.png"), &sheet_rows)?;
    save_sheet(&out.join("scripted_sheet.png"), &scripted_rows)?;
    save_sheet(&out.join("stability_sheet.png"), &stability_rows)?;
    save_gif(&out.join("rollout.gif"), &gif_frames, spec.fps)?;
    Ok(report)
}

/// The measures of `asked` that apply to `dataset`: all of them for the reference world's data;
/// for data from another world (a captured game), only [`Measure::Episodes`], since the others
/// play the reference world beside the model.
fn measures_for(dataset: &Dataset, asked: &[Measure]) -> Vec<Measure> {
    let reference = dataset.manifest().generator.world == REFERENCE_WORLD;
    asked
        .iter()
        .copied()
        .filter(|m| reference || *m == Measure::Episodes)
        .collect()
}

/// Teacher-forced next frames and sound; autoregressive rollouts with the action response and
/// the footsteps; three contact-sheet rows.
fn on_episodes(
    model: &dyn WorldModel,
    episodes: &[EpisodeRows],
    opts: &EvalOptions,
) -> Result<OnEpisodes> {
    let spec = model.spec();
    let k = spec.context_frames.max(1);
    let sound = SoundProbe::new(spec);
    let (mut tf_psnr, mut tf_n, mut lsd, mut lsd_n) = (0.0, 0, 0.0, 0);
    for ep in episodes {
        for t in (k - 1..ep.frames.len().saturating_sub(1)).step_by(opts.stride.max(1)) {
            let mut s = start_from(model, &ep.frames[t + 1 - k..=t], &ep.inputs[t])?;
            let o = s.step(&ep.inputs[t + 1])?;
            tf_psnr += psnr(&o.frame, &ep.frames[t + 1]);
            tf_n += 1;
            if let (Some(probe), Some(truth)) = (&sound, ep.audio.get(t + 1)) {
                lsd += log_spectral_distance_db(
                    &probe.spectrum.analyze(&o.audio.samples),
                    &probe.spectrum.analyze(truth),
                ) as f64;
                lsd_n += 1;
            }
        }
    }
    let mut rollouts = Rollouts::default();
    for ep in episodes {
        rollouts.measure(model, ep, opts, sound.as_ref())?;
    }
    Ok(OnEpisodes {
        teacher_forced_psnr_db: tf_psnr / tf_n.max(1) as f64,
        teacher_forced_samples: tf_n,
        autoregressive: rollouts.scores(),
        action_response: rollouts.response(),
        audio: AudioScore {
            log_spectral_distance_db: lsd / lsd_n.max(1) as f64,
            footsteps_walking_correlation: correlation(&rollouts.gen_low, &rollouts.walking),
            reference_footsteps_walking_correlation: correlation(
                &rollouts.ref_low,
                &rollouts.walking,
            ),
        },
        rows: rollouts.rows,
    })
}

/// The running sums of the autoregressive rollouts.
#[derive(Default)]
struct Rollouts {
    /// Per horizon: PSNR sum, SSIM sum, count.
    sums: [(f64, f64, usize); HORIZONS.len()],
    turning: (usize, usize),
    walking_steps: (usize, usize),
    walking_by_pose: (usize, usize),
    reference_against_pose: usize,
    walking: Vec<f32>,
    gen_low: Vec<f32>,
    ref_low: Vec<f32>,
    rows: Vec<SheetRow>,
}

impl Rollouts {
    /// Rolls the model out from every `4 × stride`-th frame of `ep` for the longest horizon.
    fn measure(
        &mut self,
        model: &dyn WorldModel,
        ep: &EpisodeRows,
        opts: &EvalOptions,
        sound: Option<&SoundProbe>,
    ) -> Result<()> {
        let k = model.spec().context_frames.max(1);
        let longest = HORIZONS[HORIZONS.len() - 1];
        if ep.frames.len() < k + longest {
            return Ok(());
        }
        for t0 in (k - 1..ep.frames.len() - longest).step_by((opts.stride * 4).max(1)) {
            let mut s = start_from(model, &ep.frames[t0 + 1 - k..=t0], &ep.inputs[t0])?;
            let mut prev_gen = ep.frames[t0].clone();
            let mut generated = Vec::with_capacity(longest);
            for j in 1..=longest {
                let o = s.step(&ep.inputs[t0 + j])?;
                self.step(model.spec(), ep, t0 + j, j, (&prev_gen, &o), sound);
                prev_gen = o.frame.clone();
                generated.push(o.frame);
            }
            if self.rows.len() < 3 {
                self.rows
                    .push((ep.frames[t0 + 1..t0 + 9].to_vec(), generated[..8].to_vec()));
            }
        }
        Ok(())
    }

    /// Scores step `j` of a rollout, at row `t` of the episode: PSNR and SSIM at the horizons,
    /// the direction the view moved, the footsteps.
    fn step(
        &mut self,
        spec: &ModelSpec,
        ep: &EpisodeRows,
        t: usize,
        j: usize,
        (prev_gen, o): (&Frame, &crate::world_model::StepOutput),
        sound: Option<&SoundProbe>,
    ) {
        let (input, truth, prev_truth) = (&ep.inputs[t], &ep.frames[t], &ep.frames[t - 1]);
        if let Some(h) = HORIZONS.iter().position(|&h| h == j) {
            self.sums[h].0 += psnr(&o.frame, truth);
            self.sums[h].1 += ssim(&o.frame, truth);
            self.sums[h].2 += 1;
        }
        let a = &input.action.values;
        let scales: Vec<f32> = (0..=16).map(|i| 0.92 + i as f32 * 0.01).collect();
        if j <= 8 && a[2].abs() >= 0.3 {
            let max = (spec.width / 8) as i32;
            let (r, _) = horizontal_shift(prev_truth, truth, max);
            let (g, _) = horizontal_shift(prev_gen, &o.frame, max);
            if r != 0 {
                self.turning.1 += 1;
                self.turning.0 += usize::from(r.signum() == g.signum());
            }
        } else if j <= 8 && a[0].abs() >= 0.5 && a[2].abs() < 0.1 {
            let r = zoom(prev_truth, truth, &scales) - 1.0;
            let g = zoom(prev_gen, &o.frame, &scales) - 1.0;
            if r.abs() > 0.005 {
                self.walking_steps.1 += 1;
                self.walking_steps.0 += usize::from(r.signum() == g.signum());
                let moved = match (ep.pose.get(t - 1), ep.pose.get(t)) {
                    (Some(before), Some(after)) => forward_step(before, after),
                    _ => 0.0,
                };
                if moved.abs() >= POSE_STEP_MIN {
                    self.walking_by_pose.1 += 1;
                    self.walking_by_pose.0 += usize::from(moved.signum() == g.signum());
                    self.reference_against_pose += usize::from(moved.signum() != r.signum());
                }
            }
        }
        if let (Some(probe), Some(truth_audio)) = (sound, ep.audio.get(t)) {
            self.walking.push(is_walking(input));
            self.gen_low.push(low_band_energy(
                &probe.spectrum,
                probe.bands,
                &o.audio.samples,
            ));
            self.ref_low
                .push(low_band_energy(&probe.spectrum, probe.bands, truth_audio));
        }
    }

    fn scores(&self) -> Vec<HorizonScore> {
        HORIZONS
            .iter()
            .zip(&self.sums)
            .map(|(&horizon, &(p, s, n))| HorizonScore {
                horizon,
                psnr_db: p / n.max(1) as f64,
                ssim: s / n.max(1) as f64,
                samples: n,
            })
            .collect()
    }

    fn response(&self) -> ActionResponse {
        let ((turn_ok, turns), (walk_ok, walks)) = (self.turning, self.walking_steps);
        let (pose_ok, pose_walks) = self.walking_by_pose;
        ActionResponse {
            turning_agreement: turn_ok as f64 / turns.max(1) as f64,
            turning_cases: turns,
            walking_agreement: walk_ok as f64 / walks.max(1) as f64,
            walking_cases: walks,
            walking_agreement_by_pose: pose_ok as f64 / pose_walks.max(1) as f64,
            walking_cases_by_pose: pose_walks,
            reference_zoom_against_pose: self.reference_against_pose,
            agreement: (turn_ok + walk_ok) as f64 / (turns + walks).max(1) as f64,
        }
    }
}

/// Frames of standing still, and the ones shown in the contact sheet's last row.
const STILL_FRAMES: usize = 200;
const STILL_SHOWN: [usize; 8] = [1, 5, 10, 25, 50, 100, 150, 200];

use scripted::SheetRow;

/// Starts the model from the reference world's first frames at the default controls and lets
/// both stand still. Returns the measures and a contact-sheet row (reference, generated).
fn standing_still(model: &dyn WorldModel, seed: u64) -> Result<(StandingStill, SheetRow)> {
    let spec = model.spec().clone();
    let k = spec.context_frames.max(1);
    let world = ReferenceWorld::new(spec.width, spec.height);
    let input = StepInput {
        action: spec.neutral_action(),
        controls: spec.default_controls(),
    };
    let mut reference = world.start_session(&Prompt {
        seed,
        start_frames: Vec::new(),
        controls: Some(input.controls.clone()),
    })?;
    let first: Vec<Frame> = (0..k)
        .map(|_| reference.step_world(&input).map(|o| o.frame))
        .collect::<Result<_>>()?;
    let mut generated = start_from(model, &first, &input)?;
    let (mut report, mut row) = (StandingStill::default(), (Vec::new(), Vec::new()));
    let (mut r, mut g) = (first[k - 1].clone(), first[k - 1].clone());
    for i in 1..=STILL_FRAMES {
        r = reference.step_world(&input)?.frame;
        g = generated.step(&input)?.frame;
        if [1, 10, 50, STILL_FRAMES].contains(&i) {
            report.psnr_db.push((i, psnr(&g, &r)));
        }
        if STILL_SHOWN.contains(&i) {
            row.0.push(r.clone());
            row.1.push(g.clone());
        }
    }
    let (rs, gs) = (FrameStats::of(&r), FrameStats::of(&g));
    report.frames = STILL_FRAMES;
    report.contrast_kept = (gs.contrast / rs.contrast.max(1e-6)) as f64;
    report.detail_kept = (gs.detail / rs.detail.max(1e-6)) as f64;
    report.block_edges = (gs.block_edges, rs.block_edges);
    Ok((report, row))
}

/// Frame pairs of the long rollout in `stability_sheet.png`.
pub const STABILITY_SHEET_PAIRS: usize = 50;

/// What [`stability`] gives: the report, the first frame pairs for the GIF and the sheet's rows.
type StabilityRun = (Stability, Vec<(Frame, Frame)>, Vec<SheetRow>);

/// Drives the model and the reference world with the same player-like trajectory for
/// `stability_frames` frames and compares their frame statistics. Returns the first 200 frame
/// pairs for the GIF and [`STABILITY_SHEET_PAIRS`] pairs spread over the rollout, in rows of
/// ten, for the sheet.
fn stability(model: &dyn WorldModel, opts: &EvalOptions) -> Result<StabilityRun> {
    let spec = model.spec().clone();
    let k = spec.context_frames.max(1);
    let world = ReferenceWorld::new(spec.width, spec.height);
    let mut trajectory = Trajectory::new(
        opts.seed,
        spec.default_controls(),
        TrajectoryConfig::default(),
    );
    let mut reference = world.start_session(&Prompt {
        seed: opts.seed,
        start_frames: Vec::new(),
        controls: Some(trajectory.start_controls().clone()),
    })?;
    let mut first = Vec::new();
    let mut input = StepInput {
        action: spec.neutral_action(),
        controls: trajectory.start_controls().clone(),
    };
    for _ in 0..k {
        input = trajectory.next(&mut reference);
        first.push(reference.step_world(&input)?.frame);
    }
    let mut generated = start_from(model, &first, &input)?;
    let mut gif = Vec::new();
    let (mut ref_stats, mut gen_stats) = (Vec::new(), Vec::new());
    let mut frozen_run = 0usize;
    let mut problems = Vec::new();
    let mut prev: Option<Frame> = None;
    let every = (opts.stability_frames / STABILITY_SHEET_PAIRS).max(1);
    let mut sheet: Vec<SheetRow> = Vec::new();
    for i in 0..opts.stability_frames {
        let input = trajectory.next(&mut reference);
        let r = reference.step_world(&input)?.frame;
        let g = generated.step(&input)?.frame;
        ref_stats.push(FrameStats::of(&r));
        gen_stats.push(FrameStats::of(&g));
        if let Some(p) = &prev {
            let moving = input.action.values[..4].iter().any(|v| v.abs() > 0.2);
            let diff = psnr(p, &g);
            // Identical consecutive frames while the player moves: a frozen picture.
            if moving && diff >= 60.0 {
                frozen_run += 1;
                if frozen_run == 100 {
                    problems.push(format!(
                        "picture frozen for 100 frames while moving (at frame {i})"
                    ));
                }
            } else {
                frozen_run = 0;
            }
        }
        prev = Some(g.clone());
        if i % every == 0 {
            if sheet.last().is_none_or(|(row, _)| row.len() == 10) {
                sheet.push((Vec::new(), Vec::new()));
            }
            let (rr, gr) = sheet.last_mut().expect("pushed above");
            rr.push(r.clone());
            gr.push(g.clone());
        }
        if gif.len() < 200 {
            gif.push((r, g));
        }
    }
    let range = |s: &[FrameStats], f: fn(&FrameStats) -> f32| {
        s.iter()
            .map(f)
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
    };
    let fields: [fn(&FrameStats) -> f32; 4] = [
        |s| s.brightness,
        |s| s.contrast,
        |s| s.detail,
        |s| s.block_edges,
    ];
    let reference_range = fields.map(|f| range(&ref_stats, f));
    let generated_range = fields.map(|f| range(&gen_stats, f));
    let inside = |s: &FrameStats| {
        fields.iter().zip(&reference_range).all(|(f, (lo, hi))| {
            let margin = (hi - lo) * 0.25;
            let v = f(s);
            v >= lo - margin && v <= hi + margin
        })
    };
    let inside_fraction =
        gen_stats.iter().filter(|s| inside(s)).count() as f64 / gen_stats.len().max(1) as f64;
    // Collapse: the last 500 frames all outside the range in the same way.
    let tail = &gen_stats[gen_stats.len().saturating_sub(500)..];
    if !tail.is_empty() {
        if tail.iter().all(|s| s.contrast < reference_range[1].0 * 0.5) {
            problems.push("collapsed to a flat grey picture".into());
        }
        if tail.iter().all(|s| s.detail > reference_range[2].1 * 1.5) {
            problems.push("collapsed to noise".into());
        }
        let blocky = tail
            .iter()
            .filter(|s| s.block_edges > reference_range[3].1 * 1.25)
            .count();
        if blocky * 2 > tail.len() {
            problems.push(format!(
                "broke into blocks: {} of the last {} frames have grid-aligned edges beyond the \
                 reference's (block-edge ratio up to {:.2}, reference at most {:.2})",
                blocky,
                tail.len(),
                tail.iter().map(|s| s.block_edges).fold(0.0, f32::max),
                reference_range[3].1
            ));
        }
    }
    if inside_fraction < 0.9 {
        problems.push(format!(
            "only {:.0} % of frames have statistics inside the reference range",
            inside_fraction * 100.0
        ));
    }
    let longest_outside_run = longest_run(gen_stats.iter().map(|s| !inside(s)));
    if longest_outside_run > MAX_OUTSIDE_RUN {
        problems.push(format!(
            "{longest_outside_run} frames in a row outside the reference range (at most \
             {MAX_OUTSIDE_RUN})"
        ));
    }
    let dark = reference_range[0].0 * 0.5;
    let longest_dark_run = longest_run(gen_stats.iter().map(|s| s.brightness < dark));
    if longest_dark_run > MAX_DARK_RUN {
        problems.push(format!(
            "went black: {longest_dark_run} frames in a row darker than half the reference's \
             darkest frame (brightness {dark:.1} of 255; at most {MAX_DARK_RUN})"
        ));
    }
    let brightness_follows = gen_stats
        .iter()
        .zip(&ref_stats)
        .filter(|(g, r)| {
            let ratio = (g.brightness + 1.0) / (r.brightness + 1.0);
            (1.0 / 1.5..=1.5).contains(&ratio)
        })
        .count() as f64
        / gen_stats.len().max(1) as f64;
    Ok((
        Stability {
            frames: opts.stability_frames,
            stable: problems.is_empty(),
            problems,
            reference_range,
            generated_range,
            inside_reference_range: inside_fraction,
            longest_outside_run,
            longest_dark_run,
            brightness_follows,
        },
        gif,
        sheet,
    ))
}

fn save_sheet(path: &Path, rows: &[SheetRow]) -> Result<()> {
    let Some((first, _)) = rows.first() else {
        return Ok(());
    };
    let (w, h) = (first[0].width, first[0].height);
    let cols = first.len() as u32;
    let gap = 4;
    let mut img = image::RgbImage::from_pixel(
        cols * (w + gap) + gap,
        rows.len() as u32 * (2 * h + 3 * gap) + gap,
        image::Rgb([24, 24, 24]),
    );
    for (r, (reference, generated)) in rows.iter().enumerate() {
        for (line, frames) in [reference, generated].into_iter().enumerate() {
            for (c, f) in frames.iter().enumerate() {
                let x0 = gap + c as u32 * (w + gap);
                let y0 = gap + r as u32 * (2 * h + 3 * gap) + line as u32 * (h + gap);
                for (i, p) in f.rgba.chunks_exact(4).enumerate() {
                    let (x, y) = (i as u32 % w, i as u32 / w);
                    img.put_pixel(x0 + x, y0 + y, image::Rgb([p[0], p[1], p[2]]));
                }
            }
        }
    }
    let tmp = path.with_extension("png.partial");
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| Error::bad_file(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn save_gif(path: &Path, pairs: &[(Frame, Frame)], fps: f32) -> Result<()> {
    use image::codecs::gif::{GifEncoder, Repeat};
    let Some((first, _)) = pairs.first() else {
        return Ok(());
    };
    let (w, h) = (first.width, first.height);
    let tmp = path.with_extension("gif.partial");
    {
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut enc = GifEncoder::new_with_speed(std::io::BufWriter::new(file), 10);
        enc.set_repeat(Repeat::Infinite)
            .map_err(|e| Error::bad_file(&tmp, e.to_string()))?;
        let delay = image::Delay::from_numer_denom_ms(1000, fps.max(1.0) as u32);
        for (r, g) in pairs {
            let mut img = image::RgbaImage::new(2 * w + 4, h);
            for (i, (pr, pg)) in r
                .rgba
                .chunks_exact(4)
                .zip(g.rgba.chunks_exact(4))
                .enumerate()
            {
                let (x, y) = (i as u32 % w, i as u32 / w);
                img.put_pixel(x, y, image::Rgba([pr[0], pr[1], pr[2], 255]));
                img.put_pixel(w + 4 + x, y, image::Rgba([pg[0], pg[1], pg[2], 255]));
            }
            enc.encode_frame(image::Frame::from_parts(img, 0, 0, delay))
                .map_err(|e| Error::bad_file(&tmp, e.to_string()))?;
        }
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::{forward_step, longest_run};

    #[test]
    fn forward_step_follows_the_heading() {
        // Yaw 0 looks along +z; a quarter turn right looks along +x.
        assert!(
            (forward_step(&[0.0, 0.0, 0.0, 0.0, 0.0], &[0.0, 0.5, 0.1, 0.0, 0.0]) - 0.1).abs()
                < 1e-6
        );
        let q = std::f32::consts::FRAC_PI_2;
        assert!(
            (forward_step(&[1.0, 0.0, 1.0, q, 0.0], &[0.9, 0.0, 1.0, q, 0.0]) + 0.1).abs() < 1e-6
        );
        // A sideways step is no step forward.
        assert!(forward_step(&[0.0, 0.0, 0.0, 0.0, 0.0], &[0.3, 0.0, 0.0, 0.0, 0.0]).abs() < 1e-6);
    }

    #[test]
    fn longest_run_counts_the_longest_stretch_in_a_row() {
        assert_eq!(longest_run([]), 0);
        assert_eq!(longest_run([false, false]), 0);
        assert_eq!(
            longest_run([true, true, false, true, true, true, false, true]),
            3
        );
        assert_eq!(longest_run([false, true, true]), 2);
    }
}
