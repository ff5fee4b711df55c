//! DIAMOND's denoiser and sampler configurations, and how the denoiser's configuration is
//! inferred from the names and shapes of a checkpoint's tensors.
//!
//! A published checkpoint carries no configuration, but every hyper-parameter of the Atari
//! denoiser shows in some tensor's shape: `cond_proj.0.weight` is `cond × cond`,
//! `act_emb.0.weight` is `actions × cond/n` (so `n`, the conditioning frames, follows), the
//! levels of the U-Net are `unet.d_blocks.{i}`, their depths the `resblocks.{j}` below them, the
//! channels the first `conv1` of each level, and a level has attention when its blocks have
//! `attn.*` tensors. From that configuration [`expected_tensors`] lists every tensor the network
//! needs with its shape, so a loader can compare the file against it name by name.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Channels per group of DIAMOND's group norms (`GN_GROUP_SIZE`).
pub const GROUP_SIZE: usize = 32;
/// Epsilon of DIAMOND's group norms (`GN_EPS`).
pub const GROUP_NORM_EPS: f64 = 1e-5;
/// Channels per attention head (`ATTN_HEAD_DIM`).
pub const ATTENTION_HEAD_DIM: usize = 8;
/// Largest channel count, conditioning width or action count a configuration may have.
const MAX_WIDTH: usize = 1 << 16;
/// Most blocks per level, image channels and conditioning frames.
const MAX_DEPTH: usize = 1024;
/// Most U-Net levels.
const MAX_LEVELS: usize = 64;

/// Number of groups DIAMOND's group norm uses for `channels` channels.
pub fn norm_groups(channels: usize) -> usize {
    (channels / GROUP_SIZE).max(1)
}

/// Number of attention heads DIAMOND uses for `channels` channels.
pub fn attention_heads(channels: usize) -> usize {
    (channels / ATTENTION_HEAD_DIM).max(1)
}

/// The denoiser's architecture and EDM constants (DIAMOND's `DenoiserConfig` with its
/// `InnerModelConfig`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DenoiserConfig {
    /// Channels of a frame (3 for RGB).
    pub img_channels: usize,
    /// Past frames (and actions) the next frame is conditioned on.
    pub num_steps_conditioning: usize,
    /// Width of the conditioning vector (noise level + actions).
    pub cond_channels: usize,
    /// Residual blocks per U-Net level.
    pub depths: Vec<usize>,
    /// Channels per U-Net level.
    pub channels: Vec<usize>,
    /// Whether each U-Net level has self-attention after its residual blocks.
    pub attn_depths: Vec<bool>,
    /// Size of the discrete action set.
    pub num_actions: usize,
    /// EDM's σ_data (0.5 in DIAMOND).
    pub sigma_data: f32,
    /// Standard deviation of DIAMOND's offset noise (0.3).
    pub sigma_offset_noise: f32,
}

impl DenoiserConfig {
    /// DIAMOND's Atari 100k configuration (channels 64 ×4, depths 2 ×4, no attention, cond 256,
    /// 4 conditioning frames) for `num_actions` actions.
    pub fn atari(num_actions: usize) -> Self {
        Self {
            img_channels: 3,
            num_steps_conditioning: 4,
            cond_channels: 256,
            depths: vec![2; 4],
            channels: vec![64; 4],
            attn_depths: vec![false; 4],
            num_actions,
            sigma_data: 0.5,
            sigma_offset_noise: 0.3,
        }
    }

    /// Checks the invariants the network construction relies on.
    pub fn validate(&self) -> Result<(), String> {
        // Sizes come from a file's tensor shapes: bound them first, so that no tensor size
        // computed from them can overflow.
        let too_big = self
            .channels
            .iter()
            .map(|&c| ("channels", c, MAX_WIDTH))
            .chain(self.depths.iter().map(|&d| ("depth", d, MAX_DEPTH)))
            .chain([
                ("U-Net levels", self.channels.len(), MAX_LEVELS),
                ("cond_channels", self.cond_channels, MAX_WIDTH),
                ("num_actions", self.num_actions, MAX_WIDTH),
                ("img_channels", self.img_channels, MAX_DEPTH),
                (
                    "num_steps_conditioning",
                    self.num_steps_conditioning,
                    MAX_DEPTH,
                ),
            ])
            .find(|&(_, value, max)| value > max);
        if let Some((what, value, max)) = too_big {
            return Err(format!("{what} {value} is more than {max}"));
        }
        let levels = self.channels.len();
        if levels == 0 || self.depths.len() != levels || self.attn_depths.len() != levels {
            return Err(format!(
                "channels ({}), depths ({}) and attention flags ({}) must be equally many and at least one",
                self.channels.len(),
                self.depths.len(),
                self.attn_depths.len()
            ));
        }
        if self.depths.contains(&0) || self.channels.contains(&0) {
            return Err("every U-Net level needs at least one block and one channel".into());
        }
        if self.img_channels == 0 || self.num_actions == 0 || self.num_steps_conditioning == 0 {
            return Err("image channels, actions and conditioning frames must be positive".into());
        }
        if self.cond_channels == 0
            || !self.cond_channels.is_multiple_of(2)
            || !self
                .cond_channels
                .is_multiple_of(self.num_steps_conditioning)
        {
            return Err(format!(
                "cond_channels {} must be even and divisible by the {} conditioning frames",
                self.cond_channels, self.num_steps_conditioning
            ));
        }
        for (name, shape) in expected_tensors(self) {
            // Every normalised width must split into DIAMOND's groups, and every attention
            // width into heads, as PyTorch itself requires when building the model.
            if name.ends_with("norm1.linear.weight") || name.ends_with("norm2.linear.weight") {
                let c = shape[0] / 2;
                if c % norm_groups(c) != 0 {
                    return Err(format!(
                        "{name}: {c} channels do not split into {} groups",
                        norm_groups(c)
                    ));
                }
            }
            if name.ends_with("attn.out_proj.weight") && shape[0] % attention_heads(shape[0]) != 0 {
                return Err(format!(
                    "{name}: {} channels do not split into {} heads",
                    shape[0],
                    attention_heads(shape[0])
                ));
            }
        }
        Ok(())
    }

    /// Action embedding width per conditioning step (`cond_channels / num_steps_conditioning`).
    pub fn action_embedding_dim(&self) -> usize {
        self.cond_channels / self.num_steps_conditioning
    }
}

/// The ODE solver of the sampler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerOrder {
    /// First order (Euler): one denoiser call per step. DIAMOND's Atari default.
    Euler,
    /// Second order (Heun): two denoiser calls per step, except the last.
    Heun,
}

/// DIAMOND's `DiffusionSamplerConfig`: a Karras σ schedule and its solver. Values are `f64`
/// like the Python floats of the reference, which matters for the schedule's last digits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    /// Denoising steps per frame.
    pub num_steps: usize,
    /// Smallest σ of the schedule (before the final 0).
    pub sigma_min: f64,
    /// Largest σ.
    pub sigma_max: f64,
    /// Karras' ρ.
    pub rho: f64,
    /// Euler or Heun.
    pub order: SamplerOrder,
    /// Stochastic churn (0 = deterministic sampler, DIAMOND's default).
    pub s_churn: f64,
    /// Churn applies for σ in `[s_tmin, s_tmax]`.
    pub s_tmin: f64,
    /// Upper end of the churn range.
    pub s_tmax: f64,
    /// Scale of the churn noise.
    pub s_noise: f64,
}

impl Default for SamplerConfig {
    /// DIAMOND's Atari sampler: 3 Euler steps, σ from 5 to 2e-3, ρ = 7, no churn.
    fn default() -> Self {
        Self {
            num_steps: 3,
            sigma_min: 2e-3,
            sigma_max: 5.0,
            rho: 7.0,
            order: SamplerOrder::Euler,
            s_churn: 0.0,
            s_tmin: 0.0,
            s_tmax: f64::INFINITY,
            s_noise: 1.0,
        }
    }
}

impl SamplerConfig {
    /// Denoiser calls per generated frame.
    pub fn denoiser_calls(&self) -> usize {
        match self.order {
            SamplerOrder::Euler => self.num_steps,
            SamplerOrder::Heun => (2 * self.num_steps).saturating_sub(1),
        }
    }
}

/// Every tensor of the inner model (names relative to `inner_model.`) with its shape, in the
/// order PyTorch registers them.
pub fn expected_tensors(cfg: &DenoiserConfig) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let cond = cfg.cond_channels;
    let mut add = |name: String, shape: Vec<usize>| out.push((name, shape));
    add("noise_emb.weight".into(), vec![1, cond / 2]);
    add(
        "act_emb.0.weight".into(),
        vec![cfg.num_actions, cfg.action_embedding_dim()],
    );
    for i in [0, 2] {
        add(format!("cond_proj.{i}.weight"), vec![cond, cond]);
        add(format!("cond_proj.{i}.bias"), vec![cond]);
    }
    let c0 = cfg.channels[0];
    add(
        "conv_in.weight".into(),
        vec![
            c0,
            (cfg.num_steps_conditioning + 1) * cfg.img_channels,
            3,
            3,
        ],
    );
    add("conv_in.bias".into(), vec![c0]);

    let levels = cfg.channels.len();
    for (i, blocks) in level_blocks(cfg).iter().enumerate() {
        for (j, &(cin, cout)) in blocks.down.iter().enumerate() {
            resblock_tensors(
                &mut add,
                &format!("unet.d_blocks.{i}.resblocks.{j}"),
                cin,
                cout,
                cond,
                cfg.attn_depths[i],
            );
        }
    }
    // PyTorch stores the up blocks deepest level first.
    for (k, blocks) in level_blocks(cfg).iter().rev().enumerate() {
        let i = levels - 1 - k;
        for (j, &(cin, cout)) in blocks.up.iter().enumerate() {
            resblock_tensors(
                &mut add,
                &format!("unet.u_blocks.{k}.resblocks.{j}"),
                cin,
                cout,
                cond,
                cfg.attn_depths[i],
            );
        }
    }
    let cl = cfg.channels[levels - 1];
    for j in 0..2 {
        resblock_tensors(
            &mut add,
            &format!("unet.mid_blocks.resblocks.{j}"),
            cl,
            cl,
            cond,
            true,
        );
    }
    for i in 1..levels {
        let c = cfg.channels[i - 1];
        add(
            format!("unet.downsamples.{i}.conv.weight"),
            vec![c, c, 3, 3],
        );
        add(format!("unet.downsamples.{i}.conv.bias"), vec![c]);
    }
    for k in 1..levels {
        let c = cfg.channels[levels - 1 - k];
        add(format!("unet.upsamples.{k}.conv.weight"), vec![c, c, 3, 3]);
        add(format!("unet.upsamples.{k}.conv.bias"), vec![c]);
    }
    add("norm_out.norm.weight".into(), vec![c0]);
    add("norm_out.norm.bias".into(), vec![c0]);
    add("conv_out.weight".into(), vec![cfg.img_channels, c0, 3, 3]);
    add("conv_out.bias".into(), vec![cfg.img_channels]);
    out
}

/// Input and output channels of each residual block of one U-Net level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LevelBlocks {
    /// Blocks on the way down.
    pub down: Vec<(usize, usize)>,
    /// Blocks on the way up (one more than down; the inputs include the skip connections).
    pub up: Vec<(usize, usize)>,
}

/// The residual blocks of every level, shallowest first, as DIAMOND's `UNet` builds them.
pub fn level_blocks(cfg: &DenoiserConfig) -> Vec<LevelBlocks> {
    (0..cfg.channels.len())
        .map(|i| {
            let n = cfg.depths[i];
            let c1 = cfg.channels[i.saturating_sub(1)];
            let c2 = cfg.channels[i];
            let mut down = vec![(c1, c2)];
            down.extend(std::iter::repeat_n((c2, c2), n - 1));
            let mut up: Vec<_> = std::iter::repeat_n((2 * c2, c2), n).collect();
            up.push((c1 + c2, c1));
            LevelBlocks { down, up }
        })
        .collect()
}

fn resblock_tensors(
    add: &mut impl FnMut(String, Vec<usize>),
    prefix: &str,
    cin: usize,
    cout: usize,
    cond: usize,
    attn: bool,
) {
    if cin != cout {
        add(format!("{prefix}.proj.weight"), vec![cout, cin, 1, 1]);
        add(format!("{prefix}.proj.bias"), vec![cout]);
    }
    add(format!("{prefix}.norm1.linear.weight"), vec![2 * cin, cond]);
    add(format!("{prefix}.norm1.linear.bias"), vec![2 * cin]);
    add(format!("{prefix}.conv1.weight"), vec![cout, cin, 3, 3]);
    add(format!("{prefix}.conv1.bias"), vec![cout]);
    add(
        format!("{prefix}.norm2.linear.weight"),
        vec![2 * cout, cond],
    );
    add(format!("{prefix}.norm2.linear.bias"), vec![2 * cout]);
    add(format!("{prefix}.conv2.weight"), vec![cout, cout, 3, 3]);
    add(format!("{prefix}.conv2.bias"), vec![cout]);
    if attn {
        add(format!("{prefix}.attn.norm.norm.weight"), vec![cout]);
        add(format!("{prefix}.attn.norm.norm.bias"), vec![cout]);
        add(
            format!("{prefix}.attn.qkv_proj.weight"),
            vec![3 * cout, cout, 1, 1],
        );
        add(format!("{prefix}.attn.qkv_proj.bias"), vec![3 * cout]);
        add(
            format!("{prefix}.attn.out_proj.weight"),
            vec![cout, cout, 1, 1],
        );
        add(format!("{prefix}.attn.out_proj.bias"), vec![cout]);
    }
}

/// Why a set of tensor shapes is not a DIAMOND denoiser: the offending tensor (when there is
/// one) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InferError {
    /// The tensor the problem is about, with its name as in the file.
    pub tensor: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for InferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tensor {
            Some(t) => write!(f, "tensor '{t}': {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// Infers the denoiser configuration from tensor shapes, keyed by name relative to
/// `inner_model.`, then checks that the tensors are exactly those the configuration needs.
/// `file_prefix` is prepended to names in errors, so they match the names in the file.
pub fn infer_config(
    shapes: &BTreeMap<String, Vec<usize>>,
    file_prefix: &str,
    sigma_data: f32,
    sigma_offset_noise: f32,
) -> Result<DenoiserConfig, InferError> {
    let err = |tensor: &str, message: String| InferError {
        tensor: Some(format!("{file_prefix}{tensor}")),
        message,
    };
    let get = |name: &str, rank: usize| -> Result<&Vec<usize>, InferError> {
        let shape = shapes.get(name).ok_or_else(|| {
            err(
                name,
                "missing; it is needed to infer the configuration".into(),
            )
        })?;
        if shape.len() != rank {
            return Err(err(
                name,
                format!("has shape {shape:?}, expected rank {rank}"),
            ));
        }
        Ok(shape)
    };
    let cond = get("cond_proj.0.weight", 2)?[0];
    let act = get("act_emb.0.weight", 2)?;
    let (num_actions, emb) = (act[0], act[1]);
    if emb == 0 || cond % emb != 0 {
        return Err(err(
            "act_emb.0.weight",
            format!("embedding width {emb} does not divide the conditioning width {cond}"),
        ));
    }
    let num_steps_conditioning = cond / emb;
    let img_channels = get("conv_out.weight", 4)?[0];

    // Levels and depths from the names under unet.d_blocks.
    let mut depth_of: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for name in shapes.keys() {
        if let Some(rest) = name.strip_prefix("unet.d_blocks.") {
            let mut parts = rest.split('.');
            let level = parts.next().and_then(|s| s.parse::<usize>().ok());
            let kind = parts.next();
            let block = parts.next().and_then(|s| s.parse::<usize>().ok());
            match (level, kind, block) {
                (Some(l), Some("resblocks"), Some(b)) => {
                    depth_of.entry(l).or_default().insert(b);
                }
                _ => {
                    return Err(err(
                        name,
                        "is not a tensor of a DIAMOND U-Net down block".into(),
                    ));
                }
            }
        }
    }
    if depth_of.is_empty() {
        return Err(InferError {
            tensor: None,
            message: format!(
                "no tensors named {file_prefix}unet.d_blocks.*: not a DIAMOND denoiser"
            ),
        });
    }
    let levels = depth_of.len();
    let mut depths = Vec::with_capacity(levels);
    let mut channels = Vec::with_capacity(levels);
    let mut attn_depths = Vec::with_capacity(levels);
    for (expect, (&level, blocks)) in depth_of.iter().enumerate() {
        if level != expect {
            return Err(err(
                &format!("unet.d_blocks.{expect}.resblocks.0.conv1.weight"),
                format!("missing: U-Net levels must be numbered 0..n, found level {level}"),
            ));
        }
        let depth = blocks.len();
        if blocks.iter().copied().ne(0..depth) {
            return Err(err(
                &format!("unet.d_blocks.{level}.resblocks.{depth}.conv1.weight"),
                format!("blocks of level {level} are not numbered 0..n: found {blocks:?}"),
            ));
        }
        depths.push(depth);
        channels.push(
            get(
                &format!("unet.d_blocks.{level}.resblocks.0.conv1.weight"),
                4,
            )?[0],
        );
        attn_depths.push(shapes.contains_key(&format!(
            "unet.d_blocks.{level}.resblocks.0.attn.qkv_proj.weight"
        )));
    }
    let cfg = DenoiserConfig {
        img_channels,
        num_steps_conditioning,
        cond_channels: cond,
        depths,
        channels,
        attn_depths,
        num_actions,
        sigma_data,
        sigma_offset_noise,
    };
    cfg.validate().map_err(|message| InferError {
        tensor: None,
        message: format!("inferred configuration {cfg:?} is invalid: {message}"),
    })?;

    // Now compare every tensor with what the configuration needs.
    let expected = expected_tensors(&cfg);
    for (name, shape) in &expected {
        match shapes.get(name) {
            None => {
                return Err(err(
                    name,
                    format!(
                        "missing (expected shape {shape:?} for the inferred configuration {})",
                        summary(&cfg)
                    ),
                ));
            }
            Some(got) if got != shape => {
                return Err(err(
                    name,
                    format!(
                        "has shape {got:?}, expected {shape:?} for the inferred configuration {}",
                        summary(&cfg)
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let known: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(extra) = shapes.keys().find(|n| !known.contains(n.as_str())) {
        return Err(err(
            extra,
            format!(
                "is not part of a DIAMOND denoiser with the inferred configuration {}",
                summary(&cfg)
            ),
        ));
    }
    Ok(cfg)
}

/// A one-line description of a configuration for messages.
pub fn summary(cfg: &DenoiserConfig) -> String {
    format!(
        "(channels {:?}, depths {:?}, attention {:?}, cond {}, {} conditioning frames, {} actions)",
        cfg.channels,
        cfg.depths,
        cfg.attn_depths.iter().map(|&a| a as u8).collect::<Vec<_>>(),
        cfg.cond_channels,
        cfg.num_steps_conditioning,
        cfg.num_actions
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes_of(cfg: &DenoiserConfig) -> BTreeMap<String, Vec<usize>> {
        expected_tensors(cfg).into_iter().collect()
    }

    #[test]
    fn infers_what_it_expects() {
        let mut tiny = DenoiserConfig::atari(6);
        tiny.channels = vec![16, 16, 32, 32];
        tiny.depths = vec![1, 1, 1, 1];
        tiny.attn_depths = vec![false, false, true, true];
        tiny.cond_channels = 64;
        for cfg in [DenoiserConfig::atari(4), DenoiserConfig::atari(18), tiny] {
            let got = infer_config(&shapes_of(&cfg), "denoiser.inner_model.", 0.5, 0.3).unwrap();
            assert_eq!(got, cfg);
        }
    }

    #[test]
    fn atari_default_has_the_published_tensor_count() {
        // 4.4 M parameters, as DIAMOND reports for its Atari denoiser.
        let params: usize = expected_tensors(&DenoiserConfig::atari(4))
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert!((4_300_000..4_500_000).contains(&params), "{params}");
    }

    #[test]
    fn errors_name_the_tensor() {
        let cfg = DenoiserConfig::atari(4);
        let mut shapes = shapes_of(&cfg);
        shapes.insert(
            "unet.u_blocks.1.resblocks.2.conv1.weight".into(),
            vec![64, 100, 3, 3],
        );
        let e = infer_config(&shapes, "denoiser.inner_model.", 0.5, 0.3).unwrap_err();
        assert_eq!(
            e.tensor.as_deref(),
            Some("denoiser.inner_model.unet.u_blocks.1.resblocks.2.conv1.weight")
        );
        assert!(e.message.contains("[64, 100, 3, 3]"), "{e}");

        let mut shapes = shapes_of(&cfg);
        shapes.remove("unet.mid_blocks.resblocks.1.attn.out_proj.bias");
        let e = infer_config(&shapes, "", 0.5, 0.3).unwrap_err();
        assert!(
            e.to_string()
                .contains("unet.mid_blocks.resblocks.1.attn.out_proj.bias"),
            "{e}"
        );
        assert!(e.message.contains("missing"), "{e}");

        let mut shapes = shapes_of(&cfg);
        shapes.insert("unet.extra.weight".into(), vec![1]);
        let e = infer_config(&shapes, "", 0.5, 0.3).unwrap_err();
        assert_eq!(e.tensor.as_deref(), Some("unet.extra.weight"));

        let mut shapes = shapes_of(&cfg);
        shapes.insert("act_emb.0.weight".into(), vec![4, 60]);
        let e = infer_config(&shapes, "", 0.5, 0.3).unwrap_err();
        assert_eq!(e.tensor.as_deref(), Some("act_emb.0.weight"));
    }

    #[test]
    fn huge_inferred_sizes_are_refused_without_overflow() {
        let mut shapes = shapes_of(&DenoiserConfig::atari(4));
        let huge = usize::MAX / 2 + 1;
        shapes.insert(
            "unet.d_blocks.1.resblocks.0.conv1.weight".into(),
            vec![huge, 64, 3, 3],
        );
        let e = infer_config(&shapes, "", 0.5, 0.3).unwrap_err();
        assert!(e.message.contains("is more than 65536"), "{e}");
        let mut shapes = shapes_of(&DenoiserConfig::atari(4));
        shapes.insert("conv_out.weight".into(), vec![huge, 64, 3, 3]);
        let e = infer_config(&shapes, "", 0.5, 0.3).unwrap_err();
        assert!(e.message.contains("img_channels"), "{e}");
    }

    #[test]
    fn heun_calls() {
        let mut s = SamplerConfig::default();
        assert_eq!(s.denoiser_calls(), 3);
        s.order = SamplerOrder::Heun;
        assert_eq!(s.denoiser_calls(), 5);
    }
}
