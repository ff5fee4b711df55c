//! The outpainter: draws the line of tokens just beyond the edge of the view before the view
//! turns or looks into it, so that what comes into view is drawn as a whole — trees, rocks,
//! the horizon — instead of predicted as a blurred mean.
//!
//! It sees a window of the view: the `context` lines of tokens next to the edge, and the new line
//! beyond it, whose tokens start masked. It draws them in a few passes, as MaskGIT does (Chang et
//! al. 2022): each pass draws every masked token, keeps the ones it is surest of and masks the
//! rest again, so later tokens see earlier draws and a tree comes out as one tree. What it draws
//! goes into the session's [place memory](super::memory), from where texture transport brings it
//! into view pixel by pixel as the player turns.
//!
//! Two heads draw a token, chosen by a short bake-off (see the model card):
//!
//! - **codebook**: a categorical distribution over `size` latents, the k-means centres of the
//!   training frames' tokens; a draw is always a token that occurs in the world;
//! - **flow**: a per-token rectified-flow head (as the [`Sampler`]) over
//!   the continuous latent, given the transformer's hidden state.
//!
//! It learns from single frames: a frame's edge line is what lies beyond the rest of it, so any
//! frame is an example, of all four sides.

use candle_core::{D, DType, IndexOp, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};
use serde::{Deserialize, Serialize};

use super::blocks::{Block, Norm, block_flops};
use super::config::{Config, SamplerSize};
use super::sampler::{Sampler, SamplerCondition};
use crate::rng::Gaussian;

/// How the outpainter draws a token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutpaintHead {
    /// A categorical distribution over `size` latents (k-means centres of training tokens).
    Codebook {
        /// Latents in the codebook.
        size: usize,
    },
    /// A rectified-flow head over the continuous latent.
    Flow {
        /// Width of its hidden layers.
        width: usize,
        /// Its hidden layers.
        layers: usize,
    },
    /// No network: a bank of real lines from the training frames, each with a key made from
    /// the lines next to it; a draw copies one of the lines whose context is nearest the
    /// view's (see [`Bank`]).
    Retrieval {
        /// Lines in the bank for each side.
        entries: usize,
        /// Length of a key (a fixed random projection of the context).
        key: usize,
    },
}

/// Size of the [`Outpainter`] (`outpainter` in `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutpainterConfig {
    /// Width of its transformer.
    pub dim: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Lines of the view it sees next to the new line.
    pub context: usize,
    /// How it draws a token.
    pub head: OutpaintHead,
}

impl Default for OutpainterConfig {
    fn default() -> Self {
        Self {
            dim: 128,
            layers: 3,
            heads: 4,
            context: 4,
            head: OutpaintHead::Codebook { size: 1024 },
        }
    }
}

/// The side of the view a new line lies beyond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Beyond the right edge (turning right).
    Right,
    /// Beyond the left edge.
    Left,
    /// Below the bottom edge (looking down).
    Down,
    /// Above the top edge (looking up).
    Up,
}

impl Side {
    /// All four, in the order of their embeddings.
    pub const ALL: [Side; 4] = [Side::Right, Side::Left, Side::Down, Side::Up];

    fn index(self) -> usize {
        self as usize
    }

    /// Whether the new line is a column.
    pub fn is_column(self) -> bool {
        matches!(self, Side::Right | Side::Left)
    }
}

/// The token positions (row-major indices into the `rows × cols` grid) of the window for
/// `side`: the new line last, the `context` lines before it ordered from the edge inwards.
/// Returns `(context positions, new-line positions)`.
pub fn window(side: Side, rows: usize, cols: usize, context: usize) -> (Vec<u32>, Vec<u32>) {
    let at = |r: usize, c: usize| (r * cols + c) as u32;
    let (lines, length) = if side.is_column() {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let context = context.min(lines - 1);
    // Line index (column or row) of the new line, and the direction inwards.
    let (edge, inwards): (usize, isize) = match side {
        Side::Right => (cols - 1, -1),
        Side::Down => (rows - 1, -1),
        Side::Left | Side::Up => (0, 1),
    };
    let line = |k: usize| (edge as isize + inwards * k as isize) as usize;
    let positions = |l: usize| -> Vec<u32> {
        (0..length)
            .map(|i| if side.is_column() { at(i, l) } else { at(l, i) })
            .collect()
    };
    let ctx = (1..=context).flat_map(|k| positions(line(k))).collect();
    (ctx, positions(edge))
}

/// The outpainter: a transformer with a drawing head, or a bank of real lines.
#[derive(Clone, Debug)]
pub struct Outpainter {
    kind: Kind,
    cfg: OutpainterConfig,
    channels: usize,
}

#[derive(Clone, Debug)]
enum Kind {
    Neural(Box<Neural>),
    Retrieval(Vec<Bank>),
}

/// The transformer over the window and its head.
#[derive(Clone, Debug)]
struct Neural {
    embed: Linear,
    mask: Tensor,
    pos: Tensor,
    sides: Tensor,
    blocks: Vec<Block>,
    norm: Norm,
    head: Head,
}

#[derive(Clone, Debug)]
enum Head {
    Codebook {
        logits: Linear,
        /// `(size, C)`.
        codebook: Tensor,
    },
    Flow(Sampler),
}

/// The retrieval outpainter's lines for one side: `values` `(entries, L·C)` are real edge lines
/// of training frames, `keys` `(entries, key)` the random projection `projection`
/// `(context·L·C, key)` of the lines next to each. Weights under `SIDE.`: `projection`, `keys`,
/// `values`; set from the data when the outpainter's stage starts.
#[derive(Clone, Debug)]
pub struct Bank {
    projection: Tensor,
    keys: Tensor,
    values: Tensor,
}

impl Bank {
    fn new(
        ctx_len: usize,
        line_len: usize,
        entries: usize,
        key: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let init = candle_nn::Init::Const(0.0);
        Ok(Self {
            projection: vb.get_with_hints((ctx_len, key), "projection", init)?,
            keys: vb.get_with_hints((entries, key), "keys", init)?,
            values: vb.get_with_hints((entries, line_len), "values", init)?,
        })
    }

    /// The key of each context `(batch, context·L·C)` → `(batch, key)`.
    pub fn key(&self, context: &Tensor) -> Result<Tensor> {
        context.matmul(&self.projection)
    }
}

impl Neural {
    fn new(model: &Config, cfg: &OutpainterConfig, vb: VarBuilder) -> Result<Self> {
        let (dim, c) = (cfg.dim, model.latent_channels);
        let small = candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let blocks = (0..cfg.layers)
            .map(|i| Block::new(dim, cfg.heads, 4, 0, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<_>>()?;
        let head = match &cfg.head {
            OutpaintHead::Codebook { size } => Head::Codebook {
                logits: linear(dim, *size, vb.pp("logits"))?,
                codebook: vb.get_with_hints((*size, c), "codebook", small)?,
            },
            OutpaintHead::Flow { width, layers } => Head::Flow(Sampler::new(
                &SamplerSize {
                    width: *width,
                    layers: *layers,
                },
                dim,
                c,
                vb.pp("flow"),
            )?),
            OutpaintHead::Retrieval { .. } => {
                candle_core::bail!("the retrieval outpainter has no network")
            }
        };
        Ok(Self {
            embed: linear(c, dim, vb.pp("embed"))?,
            mask: vb.get_with_hints((1, 1, dim), "mask", small)?,
            pos: vb.get_with_hints((model.tokens(), dim), "pos", small)?,
            sides: vb.get_with_hints((4, dim), "sides", small)?,
            blocks,
            norm: Norm::new(dim, 1e-6, vb.pp("norm"))?,
            head,
        })
    }
}

/// The weight names of side `i`'s bank.
const BANK_NAMES: [&str; 4] = ["right", "left", "down", "up"];

impl Outpainter {
    /// Weights under `vb`: `embed`, `mask`, `pos`, `sides`, `blocks.N`, `norm`, and `logits` +
    /// `codebook` or `flow.*`; or, for the retrieval head, one [`Bank`] per side.
    pub fn new(model: &Config, cfg: &OutpainterConfig, vb: VarBuilder) -> Result<Self> {
        let c = model.latent_channels;
        let kind = match &cfg.head {
            OutpaintHead::Retrieval { entries, key } => {
                let (rows, cols) = (model.height / model.patch, model.width / model.patch);
                let banks = Side::ALL
                    .iter()
                    .map(|&side| {
                        let (ctx, new) = window(side, rows, cols, cfg.context);
                        let vb = vb.pp(BANK_NAMES[side.index()]);
                        Bank::new(ctx.len() * c, new.len() * c, *entries, *key, vb)
                    })
                    .collect::<Result<_>>()?;
                Kind::Retrieval(banks)
            }
            _ => Kind::Neural(Box::new(Neural::new(model, cfg, vb)?)),
        };
        Ok(Self {
            kind,
            cfg: cfg.clone(),
            channels: c,
        })
    }

    /// The neural parts, or an error for the retrieval head.
    fn neural(&self) -> Result<&Neural> {
        match &self.kind {
            Kind::Neural(n) => Ok(n),
            Kind::Retrieval(_) => candle_core::bail!("the retrieval outpainter has no network"),
        }
    }

    /// Whether it draws from a bank of real lines.
    pub fn is_retrieval(&self) -> bool {
        matches!(self.kind, Kind::Retrieval(_))
    }

    /// The bank of `side`, for the retrieval head.
    pub fn bank(&self, side: Side) -> Option<&Bank> {
        match &self.kind {
            Kind::Retrieval(banks) => banks.get(side.index()),
            Kind::Neural(_) => None,
        }
    }

    /// Whether it draws from a codebook.
    pub fn has_codebook(&self) -> bool {
        matches!(&self.kind, Kind::Neural(n) if matches!(n.head, Head::Codebook { .. }))
    }

    /// Lines of the view it sees next to the new line.
    pub fn context(&self) -> usize {
        self.cfg.context
    }

    /// The transformer's state of every window token, `(batch, n, dim)`. `tokens`: latents
    /// `(batch, n, C)` (anything where masked); `known`: 1 where a token is given, 0 where it is
    /// masked, `(batch, n, 1)`; `positions`: each token's place in the view's grid.
    pub fn hidden(
        &self,
        tokens: &Tensor,
        known: &Tensor,
        positions: &[u32],
        side: Side,
    ) -> Result<Tensor> {
        let net = self.neural()?;
        let dev = tokens.device();
        let embedded = net.embed.forward(tokens)?;
        let x = (embedded.broadcast_mul(known)? + net.mask.broadcast_mul(&(1.0 - known)?)?)?;
        let pos = net
            .pos
            .index_select(&Tensor::new(positions, dev)?, 0)?
            .broadcast_add(&net.sides.i(side.index())?)?;
        let mut x = x.broadcast_add(&pos)?;
        for block in &net.blocks {
            x = block.forward(&x, None)?;
        }
        net.norm.forward(&x)
    }

    /// The training loss on the `masked` tokens (1 where masked, `(batch, n, 1)`): cross-entropy
    /// of their codes (`codes`, `(batch, n)`, for the codebook head) or the flow-matching loss
    /// against their latents (`targets`, `(batch, n, C)`, with `noise` and flow times `tau`).
    pub fn loss(
        &self,
        hidden: &Tensor,
        masked: &Tensor,
        targets: &Tensor,
        codes: Option<&Tensor>,
        flow: Option<(&Tensor, &Tensor)>,
    ) -> Result<Tensor> {
        let weight = masked.sum_all()?.maximum(1.0)?;
        match &self.neural()?.head {
            Head::Codebook { logits, .. } => {
                let Some(codes) = codes else {
                    candle_core::bail!("the codebook head trains on codes");
                };
                let log_p = candle_nn::ops::log_softmax(&logits.forward(hidden)?, D::Minus1)?;
                let picked = log_p.gather(&codes.unsqueeze(2)?, D::Minus1)?;
                (picked.mul(masked)?.sum_all()? / weight)?.neg()
            }
            Head::Flow(sampler) => {
                let Some((noise, tau)) = flow else {
                    candle_core::bail!("the flow head trains on noise and flow times");
                };
                let zero = targets.zeros_like()?;
                let z = (noise.broadcast_mul(&(1.0 - tau)?)? + targets.broadcast_mul(tau)?)?;
                let condition = SamplerCondition {
                    hidden,
                    mean: &zero,
                    base: &zero,
                };
                let v = sampler.velocity(&z, tau, &condition)?;
                let err = (v - (targets - noise)?)?.sqr()?.mean_keepdim(D::Minus1)?;
                err.mul(masked)?.sum_all()? / weight
            }
        }
    }

    /// The codebook's index nearest to each latent (`(batch, n, C)` → `(batch, n)`), for the
    /// codebook head's targets.
    pub fn nearest_codes(&self, latents: &Tensor) -> Result<Tensor> {
        let Head::Codebook { codebook, .. } = &self.neural()?.head else {
            candle_core::bail!("only the codebook head has codes");
        };
        nearest(latents, codebook)
    }

    /// Draws the new line of `side`: `context` `(batch, context·L, C)` are the view's tokens next
    /// to the edge (in [`window`]'s order). Each session draws its randomness from its own
    /// stream. Returns the new line's latents `(batch, L, C)`.
    pub fn draw(
        &self,
        context: &Tensor,
        side: Side,
        grid: (usize, usize),
        passes: usize,
        temperature: f32,
        rngs: &mut [&mut Gaussian],
    ) -> Result<Tensor> {
        if let Kind::Retrieval(banks) = &self.kind {
            return retrieve(&banks[side.index()], context, temperature, rngs);
        }
        let (b, _, c) = context.dims3()?;
        let dev = context.device();
        let (ctx_pos, new_pos) = window(side, grid.0, grid.1, self.cfg.context);
        let positions: Vec<u32> = ctx_pos.iter().chain(&new_pos).copied().collect();
        let l = new_pos.len();
        let n_ctx = ctx_pos.len();
        let mut line = Tensor::zeros((b, l, c), DType::F32, dev)?;
        // 1 where a token of the new line has been drawn, per session.
        let mut drawn = vec![vec![false; l]; b];
        let passes = passes.clamp(1, l);
        for pass in 0..passes {
            let known: Vec<f32> = (0..b)
                .flat_map(|i| {
                    std::iter::repeat_n(1.0, n_ctx)
                        .chain(drawn[i].iter().map(|&d| f32::from(u8::from(d))))
                })
                .collect();
            let known = Tensor::from_vec(known, (b, n_ctx + l, 1), dev)?;
            let tokens = Tensor::cat(&[context, &line], 1)?;
            let hidden = self.hidden(&tokens, &known, &positions, side)?;
            let hidden = hidden.narrow(1, n_ctx, l)?;
            let (proposal, confidence) = self.propose(&hidden, temperature, rngs)?;
            // Keep the surest of the undrawn: after pass p, the first ⌈L·(p+1)/P⌉ in all.
            let target = (l * (pass + 1)).div_ceil(passes);
            let confidence: Vec<Vec<f32>> = confidence.to_vec2()?;
            let mut keep = vec![vec![false; l]; b];
            for i in 0..b {
                let mut order: Vec<usize> = (0..l).filter(|&j| !drawn[i][j]).collect();
                order.sort_by(|&x, &y| {
                    confidence[i][y]
                        .total_cmp(&confidence[i][x])
                        .then(x.cmp(&y))
                });
                let have = drawn[i].iter().filter(|&&d| d).count();
                for &j in order.iter().take(target.saturating_sub(have)) {
                    keep[i][j] = true;
                    drawn[i][j] = true;
                }
            }
            let keep: Vec<f32> = keep
                .iter()
                .flatten()
                .map(|&k| f32::from(u8::from(k)))
                .collect();
            let keep = Tensor::from_vec(keep, (b, l, 1), dev)?;
            line = (&line + (proposal - &line)?.broadcast_mul(&keep)?)?;
        }
        Ok(line)
    }

    /// One draw of every token from its hidden state `(batch, L, dim)`, and how sure the head
    /// is of each `(batch, L)` (the drawn code's probability; for the flow head, the negative
    /// distance of the draw from the deterministic path's end).
    fn propose(
        &self,
        hidden: &Tensor,
        temperature: f32,
        rngs: &mut [&mut Gaussian],
    ) -> Result<(Tensor, Tensor)> {
        let (b, l, _) = hidden.dims3()?;
        let dev = hidden.device();
        match &self.neural()?.head {
            Head::Codebook { logits, codebook } => {
                let p = candle_nn::ops::softmax_last_dim(&logits.forward(hidden)?)?;
                let p: Vec<Vec<Vec<f32>>> = p.to_vec3()?;
                let (mut codes, mut confidence) = (Vec::with_capacity(b * l), Vec::new());
                for (i, rows) in p.iter().enumerate() {
                    for probs in rows {
                        let code = sample_categorical(probs, temperature, rngs[i]);
                        codes.push(code as u32);
                        confidence.push(probs[code]);
                    }
                }
                let codes = Tensor::from_vec(codes, b * l, dev)?;
                let c = codebook.dim(1)?;
                let latents = codebook.index_select(&codes, 0)?.reshape((b, l, c))?;
                Ok((latents, Tensor::from_vec(confidence, (b, l), dev)?))
            }
            Head::Flow(sampler) => {
                let c = self.channels;
                let noise: Vec<f32> = rngs
                    .iter_mut()
                    .flat_map(|r| (0..l * c).map(|_| r.normal()).collect::<Vec<_>>())
                    .collect();
                let noise = Tensor::from_vec(noise, (b, l, c), dev)?;
                let zero = Tensor::zeros((b, l, c), DType::F32, dev)?;
                let condition = SamplerCondition {
                    hidden,
                    mean: &zero,
                    base: &zero,
                };
                let drawn = sampler.sample(&noise, &condition, 4, temperature)?;
                let centre = sampler.sample(&noise, &condition, 4, 0.0)?;
                let confidence = (&drawn - centre)?.sqr()?.sum(D::Minus1)?.neg()?;
                Ok((drawn, confidence))
            }
        }
    }
}

/// FLOPs of drawing one line of `length` tokens of `channels` latent channels in `passes`
/// passes with an outpainter of `cfg`.
pub fn flops(cfg: &OutpainterConfig, channels: usize, length: usize, passes: usize) -> u64 {
    let n = (cfg.context + 1) * length;
    let head = match &cfg.head {
        OutpaintHead::Codebook { size } => 2 * length * cfg.dim * size,
        OutpaintHead::Flow { width, layers } => {
            // Four Euler steps, twice (the draw and its deterministic centre).
            let inputs = 3 * channels + 8 + cfg.dim;
            8 * 2 * length * (inputs * width + (layers - 1) * width * width + width * channels)
        }
        OutpaintHead::Retrieval { entries, key } => {
            // One key and its distance to every entry's, once per line.
            let context = cfg.context * length * channels;
            return 2 * (context * key + entries * key) as u64;
        }
    };
    let per_pass = cfg.layers as u64 * block_flops(n, cfg.dim, 4, 0)
        + 2 * (n * cfg.dim * channels) as u64
        + head as u64;
    passes as u64 * per_pass
}

/// Lines of a bank considered for each draw: the nearest few.
const RETRIEVAL_CANDIDATES: usize = 8;

/// Draws the new line of each session from `bank`: the key of its context, the nearest
/// [`RETRIEVAL_CANDIDATES`] keys, and one of their lines with probability falling with the
/// distance (`exp(−d² / (temperature · d²_nearest))`; temperature 0 takes the nearest).
fn retrieve(
    bank: &Bank,
    context: &Tensor,
    temperature: f32,
    rngs: &mut [&mut Gaussian],
) -> Result<Tensor> {
    let (b, _, c) = context.dims3()?;
    let query = bank.key(&context.flatten_from(1)?)?;
    let keys = &bank.keys;
    let cross = query.matmul(&keys.t()?)?;
    let norms = keys.sqr()?.sum(1)?.unsqueeze(0)?;
    let own = query.sqr()?.sum_keepdim(1)?;
    let distances: Vec<Vec<f32>> = norms
        .broadcast_sub(&(cross * 2.0)?)?
        .broadcast_add(&own)?
        .to_vec2()?;
    let mut picks = Vec::with_capacity(b);
    for (i, d) in distances.iter().enumerate() {
        let mut order: Vec<usize> = (0..d.len()).collect();
        order.sort_by(|&x, &y| d[x].total_cmp(&d[y]).then(x.cmp(&y)));
        order.truncate(RETRIEVAL_CANDIDATES);
        let nearest = d[order[0]].max(1e-6);
        let probs: Vec<f32> = order
            .iter()
            .map(|&j| {
                if temperature <= 0.0 {
                    f32::from(u8::from(j == order[0]))
                } else {
                    (-(d[j] - nearest) / (temperature * nearest)).exp()
                }
            })
            .collect();
        let total: f32 = probs.iter().sum();
        let probs: Vec<f32> = probs.iter().map(|p| p / total).collect();
        picks.push(order[sample_categorical(&probs, 1.0, rngs[i])] as u32);
    }
    let index = Tensor::new(picks.as_slice(), context.device())?;
    let values = bank.values.index_select(&index, 0)?;
    let l = values.dim(1)? / c;
    values.reshape((b, l, c))
}

/// Index of the row of `codebook` `(K, C)` nearest to each latent of `latents` `(batch, n, C)`.
pub fn nearest(latents: &Tensor, codebook: &Tensor) -> Result<Tensor> {
    let (b, n, c) = latents.dims3()?;
    let flat = latents.reshape((b * n, c))?;
    // |x − k|² = |x|² − 2 x·k + |k|²; |x|² is the same for every k.
    let cross = flat.matmul(&codebook.t()?)?;
    let norms = codebook.sqr()?.sum(1)?.unsqueeze(0)?;
    let distance = norms.broadcast_sub(&(cross * 2.0)?)?;
    distance.argmin(1)?.reshape((b, n))
}

/// An index drawn from `probs` at `temperature` (0 takes the likeliest).
fn sample_categorical(probs: &[f32], temperature: f32, rng: &mut Gaussian) -> usize {
    if temperature <= 0.0 {
        return probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
    }
    let weights: Vec<f64> = probs
        .iter()
        .map(|&p| (p.max(1e-30) as f64).powf(1.0 / temperature as f64))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.uniform() as f64 * total;
    for (i, w) in weights.iter().enumerate() {
        u -= w;
        if u <= 0.0 {
            return i;
        }
    }
    weights.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_put_the_new_line_at_the_edge_and_the_context_next_to_it() {
        // A 3×4 grid (rows × cols), 2 lines of context.
        let (ctx, new) = window(Side::Right, 3, 4, 2);
        assert_eq!(new, vec![3, 7, 11]);
        assert_eq!(ctx, vec![2, 6, 10, 1, 5, 9]);
        let (ctx, new) = window(Side::Left, 3, 4, 2);
        assert_eq!(new, vec![0, 4, 8]);
        assert_eq!(ctx, vec![1, 5, 9, 2, 6, 10]);
        let (ctx, new) = window(Side::Down, 3, 4, 2);
        assert_eq!(new, vec![8, 9, 10, 11]);
        assert_eq!(ctx, vec![4, 5, 6, 7, 0, 1, 2, 3]);
        let (_, new) = window(Side::Up, 3, 4, 5);
        assert_eq!(new, vec![0, 1, 2, 3], "context is cut to the grid");
    }

    #[test]
    fn nearest_codes_and_categorical_draws() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let codebook = Tensor::new(&[[0f32, 0.0], [10.0, 0.0], [0.0, 10.0]], &dev)?;
        let latents = Tensor::new(&[[[9f32, 1.0], [1.0, 8.0], [0.5, -0.5]]], &dev)?;
        let codes: Vec<Vec<u32>> = nearest(&latents, &codebook)?.to_vec2()?;
        assert_eq!(codes, vec![vec![1, 2, 0]]);
        let mut rng = Gaussian::new(3);
        assert_eq!(sample_categorical(&[0.1, 0.7, 0.2], 0.0, &mut rng), 1);
        let counts = (0..4000).fold([0usize; 3], |mut acc, _| {
            acc[sample_categorical(&[0.1, 0.7, 0.2], 1.0, &mut rng)] += 1;
            acc
        });
        assert!(counts[1] > 2600 && counts[1] < 3000, "{counts:?}");
        assert!(counts[0] > 300 && counts[0] < 500, "{counts:?}");
        Ok(())
    }
}
