//! The default model as a [`WorldModel`]: weights loaded once, a session per view holding only
//! its last `context` latent frames, its random state and its sound synthesiser's overlap, so
//! every step costs the same however long the session runs.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use super::conditions::encode_condition;
use super::config::{Config, GenerationConfig};
use super::memory::PlaceMemory;
use super::network::{DTYPE, Networks, Prediction};
use super::sampler::{Sampler, SamplerCondition};
use super::transport::{Transport, remember};
use super::weights::load_networks;
use crate::dsp::{BandSpectrum, NoiseSynth};
use crate::error::{Error, Result};
use crate::frame::{AudioChunk, Frame};
use crate::rng::Gaussian;
use crate::spec::{AudioFormat, ChannelLayout, ModelSpec};
use crate::state_codec::{StateReader, StateWriter};
use crate::world_model::{
    BatchItem, Prompt, Session, StepInput, StepOutput, StepTimings, WorldModel,
};

/// Makes the start frames of a session whose prompt has none: given the prompt, the model's spec
/// and how many frames it needs. The caller that loads a model chooses it (the examples and the
/// `nacre` tool render the reference world, which the shipped model was trained on).
pub type StartFrames = dyn Fn(&Prompt, &ModelSpec, usize) -> Result<Vec<Frame>> + Send + Sync;

/// What all sessions of one loaded model share.
pub struct Shared {
    /// Architecture.
    pub cfg: Config,
    /// How it generates.
    pub generation: GenerationConfig,
    /// The spec the model declares.
    pub spec: ModelSpec,
    /// Its action channels and director controls.
    pub layout: ChannelLayout,
    /// The networks.
    pub nets: Networks,
    /// The device the networks live on.
    pub device: Device,
    spectrum: BandSpectrum,
}

/// The default world model.
#[derive(Clone)]
pub struct DefaultModel {
    shared: Arc<Shared>,
    start_frames: Option<Arc<StartFrames>>,
}

impl DefaultModel {
    /// Builds the model from its configuration and networks. Its spec's channels and controls
    /// are the config's [layout](Config::layout).
    pub fn new(
        cfg: Config,
        generation: GenerationConfig,
        nets: Networks,
        device: Device,
    ) -> Result<Self> {
        cfg.validate()?;
        cfg.validate_generation(&generation)?;
        let layout = cfg.layout();
        let spec = ModelSpec {
            name: cfg.name.clone(),
            version: cfg.version.clone(),
            width: cfg.width as u32,
            height: cfg.height as u32,
            fps: cfg.fps,
            actions: layout.actions.clone(),
            controls: layout.controls.clone(),
            audio: AudioFormat {
                sample_rate: cfg.sample_rate,
                channels: 1,
                samples_per_frame: cfg.samples_per_frame as u32,
            },
            context_frames: cfg.context,
        };
        let spectrum = BandSpectrum::new(
            cfg.sample_rate,
            cfg.samples_per_frame,
            cfg.audio_subframes,
            cfg.audio_bands,
        );
        Ok(Self {
            shared: Arc::new(Shared {
                cfg,
                generation,
                spec,
                layout,
                nets,
                device,
                spectrum,
            }),
            start_frames: None,
        })
    }

    /// Loads `config.json` and `model.safetensors` from `dir`. Sessions need start frames in
    /// their prompt unless [`with_start_frames`](Self::with_start_frames) says where to get them.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let (cfg, generation) = Config::load(&dir.join("config.json"))?;
        let nets = load_networks(&dir.join("model.safetensors"), &cfg, device)?;
        Self::new(cfg, generation, nets, device.clone())
    }

    /// Sets what makes start frames when a prompt has none.
    pub fn with_start_frames(
        mut self,
        f: impl Fn(&Prompt, &ModelSpec, usize) -> Result<Vec<Frame>> + Send + Sync + 'static,
    ) -> Self {
        self.start_frames = Some(Arc::new(f));
        self
    }

    /// The shared parts (configuration, networks).
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Encodes RGBA frames into latents `(n, tokens, C)`.
    pub fn encode_frames(&self, frames: &[Frame]) -> Result<Tensor> {
        let s = &self.shared;
        let (w, h) = (s.cfg.width, s.cfg.height);
        let mut pixels = Vec::with_capacity(frames.len() * 3 * w * h);
        for f in frames {
            if f.width as usize != w || f.height as usize != h || !f.is_well_formed() {
                return Err(Error::Other(format!(
                    "start frame is {}x{}, the model needs {w}x{h}",
                    f.width, f.height
                )));
            }
            for c in 0..3 {
                pixels.extend(
                    f.rgba
                        .iter()
                        .skip(c)
                        .step_by(4)
                        .map(|&v| v as f32 / 127.5 - 1.0),
                );
            }
        }
        let x = Tensor::from_vec(pixels, (frames.len(), 3, h, w), &s.device)?;
        Ok(s.nets.encoder.forward(&x)?)
    }
}

/// Converts decoder output `(batch, 3, H, W)` in [-1, 1] to RGBA8 frames.
pub fn pixels_to_frames(x: &Tensor) -> Result<Vec<Frame>> {
    let (b, _, h, w) = x.dims4()?;
    let bytes: Vec<u8> = ((x.clamp(-1.0, 1.0)? + 1.0)? * 127.5)?
        .round()?
        .permute((0, 2, 3, 1))?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_vec1()?;
    Ok((0..b)
        .map(|i| {
            let rgb = &bytes[i * h * w * 3..(i + 1) * h * w * 3];
            Frame::from_rgb(w as u32, h as u32, rgb)
        })
        .collect())
}

/// One running world of the default model.
pub struct DefaultSession {
    shared: Arc<Shared>,
    /// Latent frames, oldest first: `context × tokens × C` values.
    pub(super) context: Vec<f32>,
    pub(super) rng: Gaussian,
    synth: NoiseSynth,
    pub(super) index: u64,
    /// With texture transport: the fraction of a pixel (x, y) that the carried texture still
    /// has to move (see [`MotionWarp::transport`](super::warp::MotionWarp::transport)).
    pub(super) texture_lag: [f32; 2],
    /// With a place memory: what the session has seen around its view.
    pub(super) memory: Option<PlaceMemory>,
}

/// Saved-state layout: magic, frame index, noise state, spare normal, texture lag, the context
/// latents, the sound synthesiser's tail, then whether a place memory follows (one byte) and
/// the memory. Older states restore too: `NDM2` (no memory) and `NDM1` (no lag either).
const STATE_MAGIC: &[u8; 4] = b"NDM3";
const STATE_MAGIC_V2: &[u8; 4] = b"NDM2";
const STATE_MAGIC_V1: &[u8; 4] = b"NDM1";

impl DefaultSession {
    fn new(shared: Arc<Shared>, context: Vec<f32>, seed: u64) -> Self {
        let synth = NoiseSynth::new(shared.spectrum.clone());
        Self {
            context,
            rng: Gaussian::new(seed),
            synth,
            index: 0,
            texture_lag: [0.0; 2],
            memory: shared
                .generation
                .memory
                .as_ref()
                .map(|m| PlaceMemory::new(m, shared.cfg.width, shared.cfg.height)),
            shared,
        }
    }
}

impl DefaultSession {
    /// Writes the last latent's view into the place memory (when there is one): what a new or
    /// restored session shows is the first thing it remembers.
    fn remember_view(&mut self) -> Result<()> {
        let (Some(memory), Some(warp)) = (&mut self.memory, self.shared.nets.dynamics.warp())
        else {
            return Ok(());
        };
        let cfg = &self.shared.cfg;
        let (k, t, c) = (cfg.context, cfg.tokens(), cfg.latent_channels);
        let last = Tensor::from_vec(
            self.context[(k - 1) * t * c..].to_vec(),
            (1, t, c),
            &self.shared.device,
        )?;
        let planes: Vec<f32> = warp.decode_pixels(&last)?.flatten_all()?.to_vec1()?;
        memory.write_view(&planes, cfg.width, cfg.height);
        Ok(())
    }
}

impl Session for DefaultSession {
    fn step(&mut self, input: &StepInput) -> Result<StepOutput> {
        let shared = self.shared.clone();
        let mut outputs = step_sessions(&shared, &mut [self], &[input])?;
        Ok(outputs.remove(0))
    }

    fn save(&self) -> Result<Vec<u8>> {
        let mut w = StateWriter::new(STATE_MAGIC);
        w.u64(self.index);
        w.u64(self.rng.bits.state);
        w.f32(self.rng.spare.unwrap_or(f32::NAN));
        w.f32_array(&self.texture_lag);
        w.f32_array(&self.context);
        w.f32_array(self.synth.tail());
        w.bool(self.memory.is_some());
        if let Some(memory) = &self.memory {
            memory.save(&mut w);
        }
        Ok(w.finish())
    }

    fn frame_index(&self) -> u64 {
        self.index
    }
}

/// The sampler's draw of the residual `next − mean`, `(batch, tokens, C)`. Its starting noise
/// comes from each session's own stream, so a restored session continues bit for bit.
///
/// With texture transport (`only_new`: each token's share of new pixels `(batch, tokens)` and
/// the first carried channel) it draws only the tokens the warp brings new pixels into, and
/// only their carried channels: everywhere else transport replaces those channels anyway, and
/// a draw of the coarse channels every frame would make them flicker. Standing still it draws
/// nothing.
fn sampled_residual(
    sampler: &Sampler,
    generation: &GenerationConfig,
    prediction: &Prediction,
    sessions: &mut [&mut DefaultSession],
    only_new: Option<(Tensor, usize)>,
) -> Result<Tensor> {
    let (b, t, c) = prediction.mean.dims3()?;
    let dev = prediction.mean.device();
    let Some((share, first)) = only_new else {
        let mut noise = Vec::with_capacity(b * t * c);
        for s in sessions.iter_mut() {
            noise.extend((0..t * c).map(|_| s.rng.normal()));
        }
        let noise = Tensor::from_vec(noise, (b, t, c), dev)?;
        return Ok(sampler.sample(
            &noise,
            &prediction.sampler_condition(),
            generation.sampler_steps,
            generation.sampler_temperature,
        )?);
    };
    let share: Vec<f32> = share.flatten_all()?.to_vec1()?;
    let picked: Vec<u32> = (0..b * t)
        .filter(|&i| share[i] > 0.0)
        .map(|i| i as u32)
        .collect();
    let residual = Tensor::zeros((b * t, c), DTYPE, dev)?;
    if picked.is_empty() {
        return Ok(residual.reshape((b, t, c))?);
    }
    let n = picked.len();
    let mut noise = Vec::with_capacity(n * c);
    for &i in &picked {
        let rng = &mut sessions[i as usize / t].rng;
        noise.extend((0..c).map(|_| rng.normal()));
    }
    let index = Tensor::from_vec(picked, n, dev)?;
    let pick = |x: &Tensor| -> candle_core::Result<Tensor> {
        x.reshape((b * t, x.dim(2)?))?
            .index_select(&index, 0)?
            .unsqueeze(0)
    };
    let whole = prediction.sampler_condition();
    let (hidden, mean, base) = (pick(whole.hidden)?, pick(whole.mean)?, pick(whole.base)?);
    let condition = SamplerCondition {
        hidden: &hidden,
        mean: &mean,
        base: &base,
    };
    let noise = Tensor::from_vec(noise, (1, n, c), dev)?;
    let drawn = sampler
        .sample(
            &noise,
            &condition,
            generation.sampler_steps,
            generation.sampler_temperature,
        )?
        .squeeze(0)?;
    let drawn = Tensor::cat(
        &[
            &drawn.narrow(1, 0, first)?.zeros_like()?,
            &drawn.narrow(1, first, c - first)?,
        ],
        1,
    )?;
    Ok(residual.index_add(&index, &drawn, 0)?.reshape((b, t, c))?)
}

/// The context latents (with context noise at the stabilisation level the model was trained to
/// see) and condition vectors of a batch: `(batch, k, tokens, C)` and `(batch, inputs)`.
fn gather_inputs(
    shared: &Shared,
    sessions: &mut [&mut DefaultSession],
    inputs: &[&StepInput],
) -> Result<(Tensor, Tensor)> {
    let cfg = &shared.cfg;
    let b = sessions.len();
    let (k, t, c) = (cfg.context, cfg.tokens(), cfg.latent_channels);
    let noise_level = shared.generation.inference_noise;
    let relative_noise = noise_level / cfg.train_noise_max.max(f32::EPSILON);
    let mut context = Vec::with_capacity(b * k * t * c);
    let mut condition = Vec::new();
    for (s, input) in sessions.iter_mut().zip(inputs) {
        for &v in &s.context {
            context.push(v + noise_level * s.rng.normal());
        }
        encode_condition(
            &shared.layout,
            &input.action.values,
            &input.controls.values,
            relative_noise,
            &mut condition,
        );
    }
    let dev = &shared.device;
    let cond_len = condition.len() / b;
    Ok((
        Tensor::from_vec(context, (b, k, t, c), dev)?,
        Tensor::from_vec(condition, (b, cond_len), dev)?,
    ))
}

/// Each session's last latent, clean (not the noised context): `(batch, tokens, C)`.
fn last_latents(shared: &Shared, sessions: &[&mut DefaultSession]) -> Result<Tensor> {
    let cfg = &shared.cfg;
    let (k, t, c) = (cfg.context, cfg.tokens(), cfg.latent_channels);
    let mut last = Vec::with_capacity(sessions.len() * t * c);
    for s in sessions {
        last.extend_from_slice(&s.context[(k - 1) * t * c..]);
    }
    Ok(Tensor::from_vec(
        last,
        (sessions.len(), t, c),
        &shared.device,
    )?)
}

/// Steps several sessions of one model in one batch.
fn step_sessions(
    shared: &Shared,
    sessions: &mut [&mut DefaultSession],
    inputs: &[&StepInput],
) -> Result<Vec<StepOutput>> {
    let began = Instant::now();
    let (context_t, condition_t) = gather_inputs(shared, sessions, inputs)?;
    let prediction = shared.nets.dynamics.forward(&context_t, &condition_t)?;
    let mut transport = Transport::plan(shared, sessions, &condition_t)?;
    let next = match &shared.nets.sampler {
        Some(sampler) => {
            let only_new = match &transport {
                Some(t) => Some((t.unremembered_share()?, t.first)),
                None => None,
            };
            let generation = &shared.generation;
            let drawn = sampled_residual(sampler, generation, &prediction, sessions, only_new)?;
            (&prediction.mean + drawn)?
        }
        None => prediction.mean.clone(),
    };
    if let Some(t) = &mut transport {
        t.quilt(shared, sessions, &next)?;
    }
    let next = match &transport {
        Some(t) => t.carry(&next, &last_latents(shared, sessions)?)?,
        None => next,
    };
    let video_began = Instant::now();
    let frames = pixels_to_frames(&shared.nets.decoder.forward(&next)?)?;
    let video = video_began.elapsed();
    let audio_began = Instant::now();
    let spectra: Vec<f32> = shared
        .nets
        .audio
        .forward(&prediction.pooled, &prediction.cond)?
        .flatten_all()?
        .to_vec1()?;
    let remembered_views = match &transport {
        Some(t) if t.remembered.is_some() => Some(t.warp.decode_pixels(&next)?),
        _ => None,
    };
    let next: Vec<f32> = next.flatten_all()?.to_vec1()?;
    if next.iter().any(|v| !v.is_finite()) || spectra.iter().any(|v| !v.is_finite()) {
        return Err(Error::BadOutput(
            "the network produced NaN or infinite values".into(),
        ));
    }
    if let Some(t) = &transport {
        for (s, lag) in sessions.iter_mut().zip(t.step.lag.to_vec2::<f32>()?) {
            s.texture_lag = [lag[0], lag[1]];
        }
    }
    if let (Some(views), Some(t)) = (remembered_views, &transport) {
        remember(shared, sessions, &views, &t.from_memory)?;
    }
    let mut outputs = Vec::with_capacity(sessions.len());
    let per_spectrum = spectra.len() / sessions.len();
    let cfg = &shared.cfg;
    let per_latent = cfg.tokens() * cfg.latent_channels;
    for (i, (s, frame)) in sessions.iter_mut().zip(frames).enumerate() {
        // Slide the context window: drop the oldest latent, append the new one.
        s.context.drain(..per_latent);
        s.context
            .extend_from_slice(&next[i * per_latent..(i + 1) * per_latent]);
        let rng = &mut s.rng;
        let samples = s
            .synth
            .synthesize(&spectra[i * per_spectrum..(i + 1) * per_spectrum], || {
                rng.normal()
            });
        s.index += 1;
        outputs.push(StepOutput {
            frame,
            audio: AudioChunk {
                sample_rate: cfg.sample_rate,
                channels: 1,
                samples,
            },
            timings: StepTimings {
                stages: vec![
                    ("step", began.elapsed()),
                    ("decode", video),
                    ("audio", audio_began.elapsed()),
                ],
            },
        });
    }
    Ok(outputs)
}

impl WorldModel for DefaultModel {
    fn spec(&self) -> &ModelSpec {
        &self.shared.spec
    }

    fn start(&self, prompt: &Prompt) -> Result<Box<dyn Session>> {
        let k = self.shared.cfg.context;
        let mut frames = if prompt.start_frames.is_empty() {
            match &self.start_frames {
                Some(f) => f(prompt, &self.shared.spec, k)?,
                None => {
                    return Err(Error::Other(
                        "this model needs start frames in the prompt".into(),
                    ));
                }
            }
        } else {
            prompt.start_frames.clone()
        };
        let Some(oldest) = frames.first().cloned() else {
            return Err(Error::Other("the start-frame source gave no frames".into()));
        };
        // Use the newest `k` frames; repeat the oldest if there are fewer.
        if frames.len() > k {
            frames.drain(..frames.len() - k);
        }
        while frames.len() < k {
            frames.insert(0, oldest.clone());
        }
        let latents: Vec<f32> = self.encode_frames(&frames)?.flatten_all()?.to_vec1()?;
        let mut session = DefaultSession::new(self.shared.clone(), latents, prompt.seed);
        session.remember_view()?;
        Ok(Box::new(session))
    }

    fn restore(&self, state: &[u8]) -> Result<Box<dyn Session>> {
        let cfg = &self.shared.cfg;
        let values = cfg.context * cfg.tokens() * cfg.latent_channels;
        let tail = cfg.samples_per_frame / cfg.audio_subframes;
        let (mut r, layout) = StateReader::open(
            state,
            "default-model",
            &[STATE_MAGIC, STATE_MAGIC_V2, STATE_MAGIC_V1],
        )?;
        let index = r.u64()?;
        let rng_state = r.u64()?;
        let spare = r.f32()?;
        // `NDM1` states, from before the texture lag, have none.
        let lag = match layout {
            0 | 1 => r.f32_array(2)?,
            _ => vec![0.0; 2],
        };
        let context = r.f32_array(values)?;
        let synth_tail = r.f32_array(tail)?;
        // `NDM3` states say whether a place memory follows; one saved by a model that does not
        // remember is read and dropped, and a model that remembers starts with an empty one
        // from older states.
        let saved_memory = layout == 0 && r.bool()?;
        let memory = match (&self.shared.generation.memory, saved_memory) {
            (Some(m), true) => Some(PlaceMemory::restore(&mut r, m, cfg.width, cfg.height)?),
            (None, true) => {
                PlaceMemory::read(&mut r)?;
                None
            }
            (_, false) => None,
        };
        r.finish()?;
        let mut session = DefaultSession::new(self.shared.clone(), context, 0);
        session.index = index;
        session.rng.bits.state = rng_state;
        session.rng.spare = spare.is_finite().then_some(spare);
        session.texture_lag = [lag[0], lag[1]];
        session.synth.set_tail(&synth_tail);
        match memory {
            Some(memory) => session.memory = Some(memory),
            // A memory this state did not hold starts with the view it restores.
            None => session.remember_view()?,
        }
        Ok(Box::new(session))
    }

    fn step_batch(&self, batch: &mut [BatchItem<'_>]) -> Vec<Result<StepOutput>> {
        let inputs: Vec<&StepInput> = batch.iter().map(|item| item.input).collect();
        let mut sessions: Vec<&mut DefaultSession> = Vec::with_capacity(batch.len());
        for item in batch.iter_mut() {
            let any: &mut dyn std::any::Any = &mut **item.session;
            match any.downcast_mut::<DefaultSession>() {
                Some(s) => sessions.push(s),
                None => {
                    return batch
                        .iter()
                        .map(|_| Err(Error::Other("session of another model in batch".into())))
                        .collect();
                }
            }
        }
        // One session at a time: a matrix product over a batch rounds the last bit of a value
        // differently from one over a single session, so a view's frames would depend on the
        // views beside it (and a recording would not replay alone); and a session that fails
        // fails alone.
        sessions
            .into_iter()
            .zip(inputs)
            .map(|(session, input)| {
                step_sessions(&self.shared, &mut [session], &[input])
                    .map(|mut outputs| outputs.remove(0))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use candle_nn::{VarBuilder, VarMap};

    use super::*;
    use crate::default_model::conditions::condition_len;
    use crate::default_model::config::SamplerSize;
    use crate::default_model::memory::MemoryConfig;

    /// A tiny model with random weights. Its untrained dynamics predicts the warped last frame
    /// (a lossy codec round trip), so the detail channels change unless they are carried over.
    fn random_tiny(texture_transport_from: Option<usize>) -> DefaultModel {
        let generation = GenerationConfig {
            texture_transport_from,
            ..GenerationConfig::default()
        };
        random_model(Config::tiny(), generation)
    }

    /// A model of `cfg` with random weights.
    fn random_model(cfg: Config, generation: GenerationConfig) -> DefaultModel {
        let vb = VarBuilder::from_varmap(&VarMap::new(), DTYPE, &Device::Cpu);
        let nets = Networks::new(&cfg, vb).unwrap();
        DefaultModel::new(cfg, generation, nets, Device::Cpu).unwrap()
    }

    /// A session of `model` whose context is random (drawn from `context_seed`), with its own
    /// noise stream from `seed`.
    fn random_session(model: &DefaultModel, context_seed: u64, seed: u64) -> DefaultSession {
        let cfg = &model.shared.cfg;
        let mut rng = Gaussian::new(context_seed);
        let context = (0..cfg.context * cfg.tokens() * cfg.latent_channels)
            .map(|_| rng.normal())
            .collect();
        DefaultSession::new(model.shared.clone(), context, seed)
    }

    /// The detail channels (from `first` on) of a session's last latent.
    fn detail_of_last(session: &DefaultSession, first: usize) -> Vec<f32> {
        let cfg = &session.shared.cfg;
        let (t, c) = (cfg.tokens(), cfg.latent_channels);
        session.context[(cfg.context - 1) * t * c..]
            .chunks_exact(c)
            .flat_map(|tok| tok[first..].to_vec())
            .collect()
    }

    #[test]
    fn standing_still_with_texture_transport_keeps_the_detail_channels_exactly() {
        let first = 3;
        for transport in [Some(first), None] {
            let model = random_tiny(transport);
            let mut session = random_session(&model, 7, 4);
            let input = StepInput {
                action: model.spec().neutral_action(),
                controls: model.spec().default_controls(),
            };
            let start = detail_of_last(&session, first);
            for _ in 0..20 {
                session.step(&input).unwrap();
            }
            let now = detail_of_last(&session, first);
            if transport.is_some() {
                assert_eq!(start, now, "the detail changed while standing still");
            } else {
                assert_ne!(start, now, "the test cannot tell transport from none");
            }
        }
    }

    #[test]
    fn a_saved_session_keeps_its_texture_lag_and_older_states_still_restore() {
        let model = random_tiny(Some(3));
        let mut a = random_session(&model, 9, 4);
        let mut turning = StepInput {
            action: model.spec().neutral_action(),
            controls: model.spec().default_controls(),
        };
        let turn = model.spec().action_index("turn").unwrap();
        turning.action.values[turn] = 1.0;
        for _ in 0..3 {
            a.step(&turning).unwrap();
        }
        assert_ne!(a.texture_lag, [0.0; 2], "turning leaves a fraction owed");
        let saved = a.save().unwrap();
        let mut b = model.restore(&saved).unwrap();
        for _ in 0..3 {
            assert_eq!(
                a.step(&turning).unwrap().frame,
                b.step(&turning).unwrap().frame
            );
        }
        // The layouts before the memory (no memory flag) and before the lag (no lag either).
        assert_eq!(saved.last(), Some(&0), "no memory follows");
        let mut v2 = STATE_MAGIC_V2.to_vec();
        v2.extend_from_slice(&saved[4..saved.len() - 1]);
        assert!(model.restore(&v2).unwrap().step(&turning).is_ok());
        let mut v1 = STATE_MAGIC_V1.to_vec();
        v1.extend_from_slice(&saved[4..24]);
        v1.extend_from_slice(&saved[32..saved.len() - 1]);
        assert!(model.restore(&v1).unwrap().step(&turning).is_ok());
        assert!(model.restore(&saved[..saved.len() - 4]).is_err());
    }

    /// A tiny model whose latent is the pixel patch itself (the warp's codec the identity) and
    /// whose warp shifts the view 8 pixels left per step of full right turn.
    fn pixel_model(generation: GenerationConfig) -> DefaultModel {
        let mut cfg = Config::tiny();
        cfg.latent_channels = cfg.patch_values();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DTYPE, &Device::Cpu);
        let nets = Networks::new(&cfg, vb).unwrap();
        let n = cfg.patch_values();
        let dev = Device::Cpu;
        {
            let data = varmap.data().lock().unwrap();
            for name in ["warp.decode.weight", "warp.encode.weight"] {
                data[name]
                    .set(&Tensor::eye(n, DTYPE, &dev).unwrap())
                    .unwrap();
            }
            for name in ["warp.decode.bias", "warp.encode.bias"] {
                data[name]
                    .set(&Tensor::zeros(n, DTYPE, &dev).unwrap())
                    .unwrap();
            }
            let head = &data["dynamics.motion.weight"];
            let mut w = vec![0f32; head.elem_count()];
            let inputs = head.dims()[1];
            let turn = cfg
                .layout()
                .actions
                .iter()
                .position(|a| a.name == "turn")
                .unwrap();
            w[turn] = -8.0 / crate::default_model::warp::SHIFT_SCALE as f32;
            let _ = inputs;
            head.set(&Tensor::from_vec(w, head.shape(), &dev).unwrap())
                .unwrap();
        }
        DefaultModel::new(cfg, generation, nets, dev).unwrap()
    }

    #[test]
    fn with_a_place_memory_turning_away_and_back_brings_the_view_back() {
        let transport = GenerationConfig {
            texture_transport_from: Some(3),
            inference_noise: 0.0,
            ..GenerationConfig::default()
        };
        let remembering = GenerationConfig {
            memory: Some(MemoryConfig {
                width: 128,
                height: 64,
                forget_after: 0.3,
                quilt: None,
                turn_from_memory: false,
            }),
            ..transport.clone()
        };
        let mut errors = Vec::new();
        for generation in [remembering, transport] {
            let model = pixel_model(generation);
            let cfg = &model.shared.cfg;
            let mut rng = Gaussian::new(11);
            let context = (0..cfg.context * cfg.tokens() * cfg.latent_channels)
                .map(|_| (rng.uniform() - 0.5) * 1.6)
                .collect();
            let mut s = DefaultSession::new(model.shared.clone(), context, 1);
            s.remember_view().unwrap();
            let start = detail_of_last(&s, 3);
            let mut input = StepInput {
                action: model.spec().neutral_action(),
                controls: model.spec().default_controls(),
            };
            let turn = model.spec().action_index("turn").unwrap();
            // 6 × 8 pixels right: the 32-pixel view has left everything it showed; then back.
            for value in [1.0, -1.0] {
                input.action.values[turn] = value;
                for _ in 0..6 {
                    s.step(&input).unwrap();
                }
            }
            let back = detail_of_last(&s, 3);
            let worst = start
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            errors.push(worst);
            if s.memory.is_some() {
                // The saved session carries the memory, and continues bit for bit.
                let saved = s.save().unwrap();
                let mut restored = model.restore(&saved).unwrap();
                for _ in 0..3 {
                    assert_eq!(
                        s.step(&input).unwrap().frame,
                        restored.step(&input).unwrap().frame
                    );
                }
            }
        }
        // Remembered: the first view to 8 bits. Forgotten: whatever the network predicts.
        assert!(
            errors[0] <= 1.0 / 127.5 + 1e-5,
            "with memory: {}",
            errors[0]
        );
        assert!(errors[1] > 0.1, "without memory: {}", errors[1]);
    }

    #[test]
    fn with_transport_the_sampler_draws_only_the_detail_of_tokens_with_new_pixels() {
        let first = 3;
        let model = random_model(
            Config {
                sampler: Some(SamplerSize::default()),
                ..Config::tiny()
            },
            GenerationConfig {
                texture_transport_from: Some(first),
                inference_noise: 0.0,
                ..GenerationConfig::default()
            },
        );
        let shared = model.shared.clone();
        let (k, t, c) = (
            shared.cfg.context,
            shared.cfg.tokens(),
            shared.cfg.latent_channels,
        );
        let mut a = random_session(&model, 5, 1);
        let mut b = random_session(&model, 5, 2);
        let dev = Device::Cpu;
        let both = [a.context.clone(), b.context.clone()].concat();
        let both = Tensor::from_vec(both, (2, k, t, c), &dev);
        let cond = Tensor::zeros((2, condition_len(&shared.layout)), DTYPE, &dev).unwrap();
        let prediction = shared.nets.dynamics.forward(&both.unwrap(), &cond).unwrap();
        // A quarter of token 5 of the second session is new; nothing of the first.
        let mut share = vec![0f32; 2 * t];
        share[t + 5] = 0.25;
        let share = Tensor::from_vec(share, (2, t), &dev).unwrap();
        let sampler = shared.nets.sampler.as_ref().unwrap();
        let drawn = sampled_residual(
            sampler,
            &shared.generation,
            &prediction,
            &mut [&mut a, &mut b],
            Some((share, first)),
        );
        let drawn: Vec<f32> = drawn.unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for (i, v) in drawn.iter().enumerate() {
            let (token, channel) = (i / c, i % c);
            if token == t + 5 && channel >= first {
                assert_ne!(*v, 0.0, "token {token} channel {channel} was not drawn");
            } else {
                assert_eq!(*v, 0.0, "token {token} channel {channel} was drawn");
            }
        }
        assert_eq!(
            a.rng.bits.state,
            Gaussian::new(1).bits.state,
            "the first session drew noise"
        );
        assert_ne!(b.rng.bits.state, Gaussian::new(2).bits.state);
    }
}
