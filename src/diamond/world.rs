//! DIAMOND's Atari world model behind bevy_nacre's [`WorldModel`] interface.
//!
//! A session holds the last `n` frames (as the sampler produced them, in [-1, 1]) and the last
//! `n − 1` actions; each step appends the player's action, samples the next frame with the EDM
//! sampler (3 Euler steps by default) from noise drawn by the session's own generator, and shifts
//! both buffers, exactly like DIAMOND's `WorldModelEnv.step`. Frames are 64×64 RGB; the frame
//! rate is 15 frames/s, the rate DIAMOND's Atari environments run at (60 Hz with a frame skip of
//! 4). The model has no sound and no director controls.
//!
//! Sessions start from [`Prompt::start_frames`] (resized to the model's resolution; fewer than
//! `n` are padded by repeating the oldest), or, without start frames, from a **neutral black
//! frame** repeated `n` times with NOOP actions. A model trained on real games expects real
//! frames; from black it first has to invent a screen.

use std::any::Any;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::config::{DenoiserConfig, SamplerConfig};
use super::denoiser::{Denoiser, karras_sigmas, sample, to_byte};
use super::loader::{DiamondCheckpoint, load_checkpoint};
use crate::error::{Error, Result};
use crate::frame::{AudioChunk, Frame};
use crate::nn::ConvAlgorithm;
use crate::rng::Xoshiro256;
use crate::spec::{ActionChannel, AudioFormat, ModelSpec};
use crate::state_codec::{StateReader, StateWriter};
use crate::world_model::{
    BatchItem, Prompt, Session, StepInput, StepOutput, StepTimings, WorldModel,
};

/// [`ModelSpec::name`] of DIAMOND Atari models.
pub const MODEL_NAME: &str = "diamond-atari";
/// Version of the saved-session layout written by [`DiamondSession::save`].
const STATE_VERSION: u32 = 1;
/// First bytes of a saved DIAMOND session state.
const STATE_MAGIC: &[u8; 8] = b"NACREDIA";

/// The full Atari action set (ALE order), as DIAMOND names actions.
pub const ATARI_ACTIONS: [&str; 18] = [
    "noop",
    "fire",
    "up",
    "right",
    "left",
    "down",
    "upright",
    "upleft",
    "downright",
    "downleft",
    "upfire",
    "rightfire",
    "leftfire",
    "downfire",
    "uprightfire",
    "upleftfire",
    "downrightfire",
    "downleftfire",
];

/// Action names for a model with `n` actions: the full set for 18, the minimal action sets that
/// only one Atari 100k game has for 3 (Freeway) and 4 (Breakout), the 9 directions of MsPacman,
/// Asterix and CrazyClimber, and `a0`, `a1`, … where the count does not say which game it is.
pub fn atari_action_names(n: usize) -> Vec<String> {
    let pick = |idx: &[usize]| idx.iter().map(|&i| ATARI_ACTIONS[i].to_string()).collect();
    match n {
        18 => pick(&(0..18).collect::<Vec<_>>()),
        3 => pick(&[0, 2, 5]),
        4 => pick(&[0, 1, 3, 4]),
        9 => pick(&[0, 2, 3, 4, 5, 6, 7, 8, 9]),
        _ => (0..n).map(|i| format!("a{i}")).collect(),
    }
}

/// Settings of a DIAMOND world model that a checkpoint does not carry.
#[derive(Clone, Debug)]
pub struct DiamondOptions {
    /// The sampler (default: DIAMOND's 3 Euler steps).
    pub sampler: SamplerConfig,
    /// Convolution algorithm (default: automatic per layer).
    pub conv: ConvAlgorithm,
    /// Frame rate declared in the spec (default 15).
    pub fps: f32,
    /// Frame side in pixels (default 64, DIAMOND's Atari resolution).
    pub image_size: u32,
    /// Names of the actions; default: [`atari_action_names`] for the inferred count.
    pub action_names: Option<Vec<String>>,
    /// EDM's σ_data (DIAMOND: 0.5).
    pub sigma_data: f32,
    /// Offset-noise σ (DIAMOND: 0.3).
    pub sigma_offset_noise: f32,
}

impl Default for DiamondOptions {
    fn default() -> Self {
        Self {
            sampler: SamplerConfig::default(),
            conv: ConvAlgorithm::Auto,
            fps: 15.0,
            image_size: 64,
            action_names: None,
            sigma_data: 0.5,
            sigma_offset_noise: 0.3,
        }
    }
}

struct Shared {
    denoiser: Denoiser,
    spec: ModelSpec,
    sampler: SamplerConfig,
    sigmas: Vec<f32>,
    size: usize,
}

impl Shared {
    fn cfg(&self) -> &DenoiserConfig {
        self.denoiser.config()
    }

    fn frame_len(&self) -> usize {
        self.cfg().img_channels * self.size * self.size
    }
}

/// A DIAMOND Atari world model: the denoiser's weights, loaded once and shared by sessions.
#[derive(Clone)]
pub struct DiamondWorldModel {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DiamondWorldModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiamondWorldModel")
            .field("spec", &self.shared.spec)
            .field("config", self.shared.cfg())
            .finish()
    }
}

impl DiamondWorldModel {
    /// Loads a checkpoint (`.pt` or safetensors) onto `device`.
    pub fn load(path: impl AsRef<Path>, device: &Device, options: DiamondOptions) -> Result<Self> {
        let ckpt = load_checkpoint(path, device, options.sigma_data, options.sigma_offset_noise)?;
        Self::from_checkpoint(&ckpt, device, options)
    }

    /// Builds the model from an already loaded checkpoint.
    pub fn from_checkpoint(
        ckpt: &DiamondCheckpoint,
        device: &Device,
        options: DiamondOptions,
    ) -> Result<Self> {
        let cfg = &ckpt.config;
        if cfg.img_channels != 3 {
            return Err(Error::bad_file(
                &ckpt.path,
                format!(
                    "tensor '{}conv_out.weight': the model makes {} channels per frame; only RGB (3) is supported",
                    ckpt.prefix, cfg.img_channels
                ),
            ));
        }
        let names = options
            .action_names
            .clone()
            .unwrap_or_else(|| atari_action_names(cfg.num_actions));
        if names.len() != cfg.num_actions {
            return Err(Error::Other(format!(
                "{} action names given, but {} has {} actions",
                names.len(),
                ckpt.path.display(),
                cfg.num_actions
            )));
        }
        if options.sampler.num_steps == 0 || options.image_size == 0 {
            return Err(Error::Other(
                "the sampler needs at least one step and a non-empty image".into(),
            ));
        }
        let vb = VarBuilder::from_tensors(ckpt.tensors.clone(), DType::F32, device);
        let denoiser = Denoiser::new(vb, cfg, options.conv)
            .map_err(|e| Error::bad_file(&ckpt.path, format!("building the denoiser: {e}")))?;
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let spec = ModelSpec {
            name: MODEL_NAME.into(),
            version: format!("state{STATE_VERSION}-{}", &ckpt.sha256[..16]),
            width: options.image_size,
            height: options.image_size,
            fps: options.fps,
            actions: vec![ActionChannel::discrete("action", &name_refs)],
            controls: Vec::new(),
            audio: AudioFormat::SILENT,
            context_frames: cfg.num_steps_conditioning,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                denoiser,
                spec,
                sigmas: karras_sigmas(&options.sampler),
                sampler: options.sampler,
                size: options.image_size as usize,
            }),
        })
    }

    /// The denoiser (for tests and benchmarks).
    pub fn denoiser(&self) -> &Denoiser {
        &self.shared.denoiser
    }

    /// The inferred configuration.
    pub fn config(&self) -> &DenoiserConfig {
        self.shared.cfg()
    }

    /// The σ schedule the sampler uses, ending in 0.
    pub fn sigmas(&self) -> &[f32] {
        &self.shared.sigmas
    }

    /// Samples next frames for a batch: conditioning frames `(B, n·3, H, W)` or `(B, n, 3, H,
    /// W)`, actions `(B, n)`, starting noise `(B, 3, H, W)`. Churn noise (if configured) comes
    /// from `rng`.
    pub fn sample(
        &self,
        obs: &Tensor,
        act: &Tensor,
        noise: &Tensor,
        rng: &mut Xoshiro256,
    ) -> Result<Tensor> {
        let s = &self.shared;
        Ok(sample(
            &s.denoiser,
            obs,
            act,
            noise,
            &s.sigmas,
            &s.sampler,
            |n| rng.normals(n),
        )?)
    }

    fn session(
        &self,
        frames: Vec<f32>,
        actions: Vec<u32>,
        rng: Xoshiro256,
        frame_index: u64,
    ) -> DiamondSession {
        DiamondSession {
            shared: self.shared.clone(),
            frames,
            actions,
            rng,
            frame_index,
        }
    }

    /// Converts a start frame to the model's input: resized to the model's size, RGB in [-1, 1].
    fn frame_to_input(&self, i: usize, f: &Frame) -> Result<Vec<f32>> {
        if !f.is_well_formed() || f.width == 0 || f.height == 0 {
            return Err(Error::Other(format!(
                "start frame {i}: {}x{} with {} bytes is not a well-formed RGBA8 frame",
                f.width,
                f.height,
                f.rgba.len()
            )));
        }
        let size = self.shared.size as u32;
        let img = image::RgbaImage::from_raw(f.width, f.height, f.rgba.clone())
            .ok_or_else(|| Error::Other(format!("start frame {i}: wrong byte count")))?;
        let img = if (f.width, f.height) == (size, size) {
            img
        } else {
            image::imageops::resize(&img, size, size, image::imageops::FilterType::Triangle)
        };
        let px = (size * size) as usize;
        let mut out = vec![0.0f32; 3 * px];
        for (p, rgba) in img.pixels().enumerate() {
            for c in 0..3 {
                out[c * px + p] = rgba.0[c] as f32 / 255.0 * 2.0 - 1.0;
            }
        }
        Ok(out)
    }

    /// Steps several of this model's sessions as one batch. Results are bit-identical to
    /// stepping them one by one on the CPU (every layer treats samples independently).
    fn step_many(
        &self,
        sessions: &mut [&mut DiamondSession],
        actions: &[u32],
    ) -> Result<Vec<StepOutput>> {
        let s = &self.shared;
        let start = Instant::now();
        let b = sessions.len();
        let n = s.cfg().num_steps_conditioning;
        let fl = s.frame_len();
        let dev = s.denoiser.device();
        let mut obs = Vec::with_capacity(b * n * fl);
        let mut act = Vec::with_capacity(b * n);
        let mut noise = Vec::with_capacity(b * fl);
        for (sess, &a) in sessions.iter_mut().zip(actions) {
            obs.extend_from_slice(&sess.frames);
            act.extend_from_slice(&sess.actions);
            act.push(a);
            noise.extend(sess.rng.normals(fl));
        }
        let (c, h) = (s.cfg().img_channels, s.size);
        let obs = Tensor::from_vec(obs, (b, n * c, h, h), dev)?;
        let act = Tensor::from_vec(act, (b, n), dev)?;
        let noise = Tensor::from_vec(noise, (b, c, h, h), dev)?;
        // Churn noise (off by default) comes from the first session's generator in a batch.
        let x = {
            let rng = &mut sessions[0].rng;
            sample(
                &s.denoiser,
                &obs,
                &act,
                &noise,
                &s.sigmas,
                &s.sampler,
                |k| rng.normals(k),
            )?
        };
        let x = x.flatten_all()?.to_vec1::<f32>()?;
        let elapsed = start.elapsed();
        let px = h * h;
        let mut outputs = Vec::with_capacity(b);
        for (i, (sess, &a)) in sessions.iter_mut().zip(actions).enumerate() {
            let next = &x[i * fl..(i + 1) * fl];
            let mut rgb = vec![0u8; 3 * px];
            for p in 0..px {
                for ch in 0..3 {
                    rgb[3 * p + ch] = to_byte(next[ch * px + p]);
                }
            }
            sess.frames.drain(..fl);
            sess.frames.extend_from_slice(next);
            if n > 1 {
                sess.actions.remove(0);
                sess.actions.push(a);
            }
            sess.frame_index += 1;
            outputs.push(StepOutput {
                frame: Frame::from_rgb(h as u32, h as u32, &rgb),
                audio: AudioChunk::empty(),
                timings: StepTimings {
                    stages: vec![("sample", elapsed)],
                },
            });
        }
        Ok(outputs)
    }

    /// The action index of a step input, checked against the spec.
    fn action_of(&self, input: &StepInput) -> Result<u32> {
        let a = self.shared.spec.sanitize_action(&input.action)?;
        Ok(a.values[0] as u32)
    }
}

impl WorldModel for DiamondWorldModel {
    fn spec(&self) -> &ModelSpec {
        &self.shared.spec
    }

    fn start(&self, prompt: &Prompt) -> Result<Box<dyn Session>> {
        if let Some(c) = &prompt.controls
            && !c.values.is_empty()
        {
            return Err(Error::Other(format!(
                "DIAMOND models have no director controls, but the prompt sets {}",
                c.values.len()
            )));
        }
        let n = self.shared.cfg().num_steps_conditioning;
        let given: Vec<Vec<f32>> = prompt
            .start_frames
            .iter()
            .enumerate()
            .skip(prompt.start_frames.len().saturating_sub(n))
            .map(|(i, f)| self.frame_to_input(i, f))
            .collect::<Result<_>>()?;
        let neutral = vec![-1.0f32; self.shared.frame_len()];
        let first = given.first().cloned().unwrap_or(neutral);
        let mut frames = Vec::with_capacity(n * self.shared.frame_len());
        for _ in given.len()..n {
            frames.extend_from_slice(&first);
        }
        for f in &given {
            frames.extend_from_slice(f);
        }
        Ok(Box::new(self.session(
            frames,
            vec![0; n - 1],
            Xoshiro256::seeded(prompt.seed),
            0,
        )))
    }

    fn restore(&self, state: &[u8]) -> Result<Box<dyn Session>> {
        let (mut r, _) = StateReader::open(state, "DIAMOND session", &[STATE_MAGIC])?;
        r.version(STATE_VERSION)?;
        let model_version = String::from_utf8_lossy(r.byte_string(1024)?).into_owned();
        if model_version != self.shared.spec.version {
            return Err(r.error(format!(
                "saved by model version '{model_version}', this model is '{}' (other weights)",
                self.shared.spec.version
            )));
        }
        let dims = [r.u32()?, r.u32()?, r.u32()?, r.u32()?];
        let cfg = self.shared.cfg();
        let want = [
            cfg.num_steps_conditioning as u32,
            cfg.img_channels as u32,
            self.shared.size as u32,
            self.shared.size as u32,
        ];
        if dims != want {
            return Err(r.error(format!(
                "frame buffer {dims:?} (frames, channels, height, width); this model needs {want:?}"
            )));
        }
        let frame_index = r.u64()?;
        let rng_state = [r.u64()?, r.u64()?, r.u64()?, r.u64()?];
        let rng = Xoshiro256::from_state(rng_state)
            .ok_or_else(|| r.error("invalid (all-zero) random state"))?;
        let n = cfg.num_steps_conditioning;
        let actions: Vec<u32> = (0..n - 1).map(|_| r.u32()).collect::<Result<_>>()?;
        if let Some(a) = actions.iter().find(|&&a| a as usize >= cfg.num_actions) {
            return Err(r.error(format!(
                "action {a} out of range (the model has {} actions)",
                cfg.num_actions
            )));
        }
        let frames = r.f32_array(n * self.shared.frame_len())?;
        r.finish()?;
        Ok(Box::new(self.session(frames, actions, rng, frame_index)))
    }

    fn step_batch(&self, batch: &mut [BatchItem<'_>]) -> Vec<Result<StepOutput>> {
        let mut results: Vec<Option<Result<StepOutput>>> = (0..batch.len()).map(|_| None).collect();
        let mut ours: Vec<(usize, u32)> = Vec::new();
        for (i, item) in batch.iter_mut().enumerate() {
            let is_ours = (&mut **item.session as &mut dyn Any)
                .downcast_mut::<DiamondSession>()
                .is_some();
            if !is_ours {
                results[i] = Some(item.session.step(item.input));
                continue;
            }
            match self.action_of(item.input) {
                Ok(a) => ours.push((i, a)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !ours.is_empty() {
            let actions: Vec<u32> = ours.iter().map(|&(_, a)| a).collect();
            let mut sessions: Vec<&mut DiamondSession> = Vec::with_capacity(ours.len());
            let mut want = ours.iter().map(|&(i, _)| i).peekable();
            for (i, item) in batch.iter_mut().enumerate() {
                if want.peek() == Some(&i) {
                    want.next();
                    if let Some(s) =
                        (&mut **item.session as &mut dyn Any).downcast_mut::<DiamondSession>()
                    {
                        sessions.push(s);
                    }
                }
            }
            match self.step_many(&mut sessions, &actions) {
                Ok(outs) => {
                    for (&(i, _), out) in ours.iter().zip(outs) {
                        results[i] = Some(Ok(out));
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for &(i, _) in &ours {
                        results[i] =
                            Some(Err(Error::Other(format!("batched DIAMOND step: {msg}"))));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Other("session was not stepped".into()))))
            .collect()
    }
}

/// One running DIAMOND world: context frames, past actions, random state.
pub struct DiamondSession {
    shared: Arc<Shared>,
    /// `n` frames, oldest first, each `C × H × W` in [-1, 1].
    frames: Vec<f32>,
    /// The `n − 1` actions taken at all but the newest context frame, oldest first.
    actions: Vec<u32>,
    rng: Xoshiro256,
    frame_index: u64,
}

impl Session for DiamondSession {
    fn step(&mut self, input: &StepInput) -> Result<StepOutput> {
        let model = DiamondWorldModel {
            shared: self.shared.clone(),
        };
        let a = model.action_of(input)?;
        let mut out = model.step_many(&mut [self], &[a])?;
        Ok(out.remove(0))
    }

    fn save(&self) -> Result<Vec<u8>> {
        let cfg = self.shared.cfg();
        let mut w = StateWriter::new(STATE_MAGIC);
        w.u32(STATE_VERSION);
        w.byte_string(self.shared.spec.version.as_bytes());
        for d in [
            cfg.num_steps_conditioning,
            cfg.img_channels,
            self.shared.size,
            self.shared.size,
        ] {
            w.u32(d as u32);
        }
        w.u64(self.frame_index);
        for word in self.rng.state() {
            w.u64(word);
        }
        for a in &self.actions {
            w.u32(*a);
        }
        w.f32_array(&self.frames);
        Ok(w.finish())
    }

    fn frame_index(&self) -> u64 {
        self.frame_index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Action, Controls};
    use crate::diamond::config::expected_tensors;
    use std::collections::HashMap;

    /// A small random-weight model (no fixture needed): 2 levels, attention in the lower one.
    fn tiny_model() -> DiamondWorldModel {
        let mut cfg = DenoiserConfig::atari(4);
        cfg.channels = vec![8, 16];
        cfg.depths = vec![1, 1];
        cfg.attn_depths = vec![false, true];
        cfg.cond_channels = 16;
        let dev = Device::Cpu;
        let tensors: HashMap<String, Tensor> = expected_tensors(&cfg)
            .into_iter()
            .enumerate()
            .map(|(i, (name, shape))| {
                let t = Tensor::randn(0f32, 0.3, shape, &dev).unwrap();
                // Deterministic values, so the test does not depend on candle's generator.
                let n = t.elem_count();
                let v: Vec<f32> = (0..n)
                    .map(|k| ((k * 7919 + i * 104729) % 2003) as f32 / 2003.0 - 0.5)
                    .collect();
                (name, Tensor::from_vec(v, t.shape(), &dev).unwrap())
            })
            .collect();
        let ckpt = DiamondCheckpoint {
            path: "tiny.safetensors".into(),
            config: cfg,
            tensors,
            prefix: "denoiser.inner_model.".into(),
            sha256: "0123456789abcdef0123456789abcdef".into(),
        };
        let options = DiamondOptions {
            image_size: 16,
            ..DiamondOptions::default()
        };
        DiamondWorldModel::from_checkpoint(&ckpt, &dev, options).unwrap()
    }

    fn input(a: f32) -> StepInput {
        StepInput {
            action: Action::new(vec![a]),
            controls: Controls::default(),
        }
    }

    #[test]
    fn spec_declares_the_model() {
        let m = tiny_model();
        let spec = m.spec();
        assert_eq!(
            (spec.width, spec.height, spec.fps, spec.context_frames),
            (16, 16, 15.0, 4)
        );
        assert_eq!(
            spec.actions,
            vec![ActionChannel::discrete(
                "action",
                &["noop", "fire", "right", "left"]
            )]
        );
        assert!(spec.audio.is_silent() && spec.controls.is_empty());
        assert_eq!(atari_action_names(6)[5], "a5");
        assert_eq!(atari_action_names(18)[17], "downleftfire");
    }

    #[test]
    fn restored_sessions_continue_bit_identically() {
        let m = tiny_model();
        let mut s = m.start(&Prompt::seeded(3)).unwrap();
        for a in [0.0, 1.0, 3.0] {
            s.step(&input(a)).unwrap();
        }
        let saved = s.save().unwrap();
        let cont: Vec<Frame> = [2.0, 1.0, 0.0]
            .iter()
            .map(|&a| s.step(&input(a)).unwrap().frame)
            .collect();
        let mut r = m.restore(&saved).unwrap();
        assert_eq!(r.frame_index(), 3);
        let again: Vec<Frame> = [2.0, 1.0, 0.0]
            .iter()
            .map(|&a| r.step(&input(a)).unwrap().frame)
            .collect();
        assert_eq!(cont, again);
        assert_eq!(r.frame_index(), 6);
        // Actions matter, and so does the seed.
        let mut other = m.restore(&saved).unwrap();
        assert_ne!(other.step(&input(3.0)).unwrap().frame, cont[0]);
        let mut seeded = m.start(&Prompt::seeded(4)).unwrap();
        let mut base = m.start(&Prompt::seeded(3)).unwrap();
        assert_ne!(
            seeded.step(&input(0.0)).unwrap().frame,
            base.step(&input(0.0)).unwrap().frame
        );
    }

    #[test]
    fn corrupt_states_are_refused() {
        let m = tiny_model();
        let s = m.start(&Prompt::seeded(1)).unwrap();
        let saved = s.save().unwrap();
        for bad in [
            &saved[..10],
            &saved[..saved.len() - 1],
            b"NACREDIA\x09\0\0\0".as_slice(),
        ] {
            assert!(m.restore(bad).is_err());
        }
        let mut longer = saved.clone();
        longer.push(0);
        let e = m.restore(&longer).err().unwrap().to_string();
        assert!(e.contains("1 unexpected trailing bytes"), "{e}");
    }

    #[test]
    fn batched_steps_equal_single_steps() {
        let m = tiny_model();
        let mut a = m.start(&Prompt::seeded(1)).unwrap();
        let mut b = m.start(&Prompt::seeded(2)).unwrap();
        let mut a1 = m.start(&Prompt::seeded(1)).unwrap();
        let mut b1 = m.start(&Prompt::seeded(2)).unwrap();
        let (ia, ib) = (input(1.0), input(2.0));
        let mut batch = [
            BatchItem {
                session: &mut a,
                input: &ia,
            },
            BatchItem {
                session: &mut b,
                input: &ib,
            },
        ];
        let outs = m.step_batch(&mut batch);
        assert_eq!(outs[0].as_ref().unwrap().frame, a1.step(&ia).unwrap().frame);
        assert_eq!(outs[1].as_ref().unwrap().frame, b1.step(&ib).unwrap().frame);
        assert_eq!(a.save().unwrap(), a1.save().unwrap());
        // A bad action fails its own item only.
        let bad = StepInput::default();
        let mut batch = [
            BatchItem {
                session: &mut a,
                input: &bad,
            },
            BatchItem {
                session: &mut b,
                input: &ib,
            },
        ];
        let outs = m.step_batch(&mut batch);
        assert!(outs[0].is_err() && outs[1].is_ok());
    }

    #[test]
    fn start_frames_are_resized_and_checked() {
        let m = tiny_model();
        let red = Frame::solid(40, 30, [255, 0, 0, 255]);
        let prompt = Prompt {
            seed: 0,
            start_frames: vec![red.clone(), red],
            controls: None,
        };
        let s = m.start(&prompt).unwrap();
        let state = s.save().unwrap();
        // The newest context frame is red: R = 1, G = B = -1.
        let frames = &state[state.len() - 4 * 3 * 256..];
        let px = |i: usize| {
            f32::from_bits(u32::from_le_bytes(
                frames[4 * i..4 * i + 4].try_into().unwrap(),
            ))
        };
        assert_eq!((px(0), px(256), px(512)), (1.0, -1.0, -1.0));
        let broken = Frame {
            width: 4,
            height: 4,
            rgba: vec![0; 3],
        };
        let prompt = Prompt {
            start_frames: vec![broken],
            ..Prompt::default()
        };
        assert!(m.start(&prompt).is_err());
    }
}
