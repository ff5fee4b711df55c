//! The motion warp: a global shift and zoom of the last frame that the action predicts, so the
//! dynamics only has to predict what moving the picture leaves (see [`MotionWarp`]), and texture
//! transport, which carries the picture's detail over by the same motion instead of predicting it
//! ([`MotionWarp::transport`]).

use candle_core::{DType, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};

use super::config::Config;
use super::patches::{patchify, unpatchify};

/// Pixels of shift that one unit of the motion head's output stands for. AdamW moves each weight
/// by about the learning rate per step whatever the gradient's size, so this scale sets how fast
/// the shift can move in training (0.008 pixels per step at a learning rate of 5e-4). Training
/// starts the shift at the motion measured in the data (`train::motion`).
pub const SHIFT_SCALE: f64 = 16.0;
/// Log-zoom that one unit of the motion head's output stands for (same reasoning; the zoom is
/// not measured, it learns from the loss alone).
pub const ZOOM_SCALE: f64 = 1.0;

/// Motion-compensated prediction for the dynamics. Turning moves the whole view sideways by a
/// few pixels per frame, looking up or down moves it vertically, walking zooms it; a transformer
/// that must learn to move every token itself learns this slowly (the first candidates did not
/// learn turning at all). Here a linear head without bias reads the action part of the step's
/// condition vector and gives a global shift and zoom per axis: turning by half the rate moves
/// the view half as far, which a linear map of the action expresses exactly, and no action means
/// no warp at all. (A first version also read the director controls and the noise level and had a
/// bias: standing still, it then shifted and zoomed the view a fraction of a pixel per frame, and
/// over a few hundred frames the repeated edge rows — the sky — filled the picture with white.)
/// The last latent frame is decoded to pixels with the linear (PCA) path, moved by that warp
/// with linear interpolation, and encoded back. The dynamics then predicts
/// only what the warp leaves: the new content at the edges, parallax, light.
///
/// The linear codec is a copy of the encoder's and decoder's linear paths taken when the
/// dynamics stage starts (`warp.encode`, `warp.decode`), frozen afterwards so that the decoder's
/// later fine-tuning cannot change what the dynamics learned to expect.
#[derive(Clone, Debug)]
pub struct MotionWarp {
    /// `(4, action inputs)`; no bias.
    head: Tensor,
    action_inputs: usize,
    decode: Linear,
    encode: Linear,
    patch: usize,
    height: usize,
    width: usize,
}

/// One step's motion as texture transport applies it ([`MotionWarp::plan`]).
#[derive(Clone, Debug)]
pub struct StepMotion {
    /// `(shift_x, zoom_x, shift_y, zoom_y)`, each `(batch, 1)`: shifts in whole pixels.
    pub motion: [Tensor; 4],
    /// The fraction of a pixel each session still owes after the step, `(batch, 2)`, x then y
    /// (within half a pixel).
    pub lag: Tensor,
}

impl StepMotion {
    /// Each session's whole-pixel shift, x then y (positive moves content right or down).
    pub fn shifts(&self) -> Result<Vec<(i64, i64)>> {
        let x: Vec<f32> = self.motion[0].flatten_all()?.to_vec1()?;
        let y: Vec<f32> = self.motion[2].flatten_all()?.to_vec1()?;
        Ok(x.iter()
            .zip(&y)
            .map(|(&x, &y)| (x as i64, y as i64))
            .collect())
    }

    /// Each session's summed |log zoom| along both axes: how far the step walked.
    pub fn log_zooms(&self) -> Result<Vec<f32>> {
        let x: Vec<f32> = self.motion[1].flatten_all()?.to_vec1()?;
        let y: Vec<f32> = self.motion[3].flatten_all()?.to_vec1()?;
        Ok(x.iter()
            .zip(&y)
            .map(|(&x, &y)| x.ln().abs() + y.ln().abs())
            .collect())
    }
}

impl MotionWarp {
    /// `head_vb`: the trained motion head's `weight` (`action_inputs → 4`, small random start
    /// so that gradients reach it from the identity warp); `codec_vb`: `decode` (C → p²·3) and
    /// `encode` (p²·3 → C).
    pub fn new(
        cfg: &Config,
        action_inputs: usize,
        head_vb: VarBuilder,
        codec_vb: VarBuilder,
    ) -> Result<Self> {
        let small = candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1e-4,
        };
        Ok(Self {
            head: head_vb.get_with_hints((4, action_inputs), "weight", small)?,
            action_inputs,
            decode: linear(
                cfg.latent_channels,
                cfg.patch_values(),
                codec_vb.pp("decode"),
            )?,
            encode: linear(
                cfg.patch_values(),
                cfg.latent_channels,
                codec_vb.pp("encode"),
            )?,
            patch: cfg.patch,
            height: cfg.height,
            width: cfg.width,
        })
    }

    /// The warp's parameters for each sample: `(shift_x, zoom_x, shift_y, zoom_y)`, each
    /// `(batch, 1)`; shifts in pixels (positive moves content right or down), zooms as factors
    /// (above 1 magnifies).
    /// `condition`: the condition vectors `(batch, cond_inputs)`, actions first.
    pub fn motion(&self, condition: &Tensor) -> Result<[Tensor; 4]> {
        let actions = condition.narrow(1, 0, self.action_inputs)?;
        let m = actions.matmul(&self.head.t()?)?;
        let part = |i: usize| m.narrow(1, i, 1);
        Ok([
            (part(0)? * SHIFT_SCALE)?,
            (part(1)? * ZOOM_SCALE)?.exp()?,
            (part(2)? * SHIFT_SCALE)?,
            (part(3)? * ZOOM_SCALE)?.exp()?,
        ])
    }

    /// `last`: `(batch, tokens, C)`; `condition`: `(batch, cond_inputs)`. Returns the warped
    /// latent `(batch, tokens, C)`.
    pub fn forward(&self, last: &Tensor, condition: &Tensor) -> Result<Tensor> {
        let (_, moved) = self.decode_and_move(last, &self.motion(condition)?, Kernel::Linear)?;
        crate::nn::linear(&self.encode, &patchify(&moved, self.patch)?)
    }

    /// Moves `last` by the step's warp without the codec's round trip: `last + E·(P − D·last)`
    /// (`E`, `D` the linear encode and decode without bias), where `P` is `D·last` moved by the
    /// warp, so that no motion gives `last` back exactly. [`forward`](Self::forward) gives
    /// `E·M·D·last` instead, whose round trip alone fades a little (eigenvalues 0.991–1.003 per
    /// step): fine as the network's starting point, not for carrying detail over hundreds of
    /// frames.
    ///
    /// Three things keep the carried texture sharp over many steps:
    ///
    /// - **Whole-pixel shifts** (`step`, from [`plan`](Self::plan)). Linear interpolation at a
    ///   fractional shift blurs (a shift of half a pixel averages neighbours), and repeated every
    ///   frame of a turn it smears the picture sideways. The texture moves by whole pixels; the
    ///   fraction it still owes is carried in the session. Zoom needs interpolation; it is
    ///   cubic (Catmull–Rom), which, repeated every frame of a walk, keeps much more of the fine
    ///   texture than the linear interpolation the network was trained with.
    /// - **Remembered pixels.** Where the warp brings content in from beyond the frame's edge,
    ///   `remembered` — the session's [place memory](super::memory), values `(batch, 3, H, W)`
    ///   and 1 where valid `(batch, 1, H, W)` — gives what was seen there before.
    /// - **New pixels from the prediction.** Where nothing is remembered there is nothing to
    ///   carry (the edge pixel would repeat, in streaks), so those pixels of `P` are the linear
    ///   decode of `predicted`.
    /// - **Views drawn from memory.** For the sessions set in `held` (`(batch, 1, 1, 1)`), every
    ///   remembered pixel of the view is taken from the memory, not moved from the last frame
    ///   (see [`MemoryConfig::turn_from_memory`](super::memory::MemoryConfig::turn_from_memory)).
    ///
    /// Returns the carried latent `(batch, tokens, C)`.
    pub fn transport(
        &self,
        last: &Tensor,
        predicted: &Tensor,
        step: &StepMotion,
        remembered: Option<(&Tensor, &Tensor)>,
        held: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (pixels, moved) = self.decode_and_move(last, &step.motion, Kernel::Cubic)?;
        let new = self.new_pixels(&step.motion)?;
        let mut fill = self.decode_pixels(predicted)?;
        if let Some((values, valid)) = remembered {
            let values = &unclip(values, &fill)?;
            fill = (&fill + (values - &fill)?.broadcast_mul(valid)?)?;
        }
        let mut moved = (&moved + (fill - &moved)?.broadcast_mul(&new)?)?;
        if let (Some((values, valid)), Some(held)) = (remembered, held) {
            let values = &unclip(values, &moved)?;
            let keep = valid.broadcast_mul(held)?;
            moved = (&moved + (values - &moved)?.broadcast_mul(&keep)?)?;
        }
        let change = patchify(&(moved - &pixels)?, self.patch)?
            .broadcast_matmul(&self.encode.weight().t()?)?;
        last + change
    }

    /// The share of each token's pixels that [`transport`](Self::transport) of `step` brings in
    /// from beyond the frame's edge and that `remembered` (1 where valid, `(batch, 1, H, W)`)
    /// does not hold, `(batch, tokens)`: the tokens whose detail comes from the prediction.
    pub fn new_token_share(
        &self,
        step: &StepMotion,
        remembered: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mut new = self.new_pixels(&step.motion)?;
        if let Some(valid) = remembered {
            new = new.broadcast_mul(&(1.0 - valid)?)?;
        }
        patchify(&new, self.patch)?.mean_keepdim(2)?.squeeze(2)
    }

    /// The share of each token's pixels that [`transport`](Self::transport) of `step` brings in
    /// from `remembered` (1 where valid, `(batch, 1, H, W)`), `(batch, tokens)`.
    pub fn remembered_token_share(&self, step: &StepMotion, remembered: &Tensor) -> Result<Tensor> {
        let new = self.new_pixels(&step.motion)?.broadcast_mul(remembered)?;
        patchify(&new, self.patch)?.mean_keepdim(2)?.squeeze(2)
    }

    /// The step's motion as [`transport`](Self::transport) applies it: the shifts rounded to whole
    /// pixels after adding what each session still owes (`lag`, `(batch, 2)`, x then y).
    pub fn plan(&self, condition: &Tensor, lag: &Tensor) -> Result<StepMotion> {
        let [shift_x, zoom_x, shift_y, zoom_y] = self.motion(condition)?;
        let owed_x = (shift_x + lag.narrow(1, 0, 1)?)?;
        let owed_y = (shift_y + lag.narrow(1, 1, 1)?)?;
        let (whole_x, whole_y) = (owed_x.round()?, owed_y.round()?);
        let lag = Tensor::cat(&[(owed_x - &whole_x)?, (owed_y - &whole_y)?], 1)?;
        Ok(StepMotion {
            motion: [whole_x, zoom_x, whole_y, zoom_y],
            lag,
        })
    }

    /// A latent `(batch, tokens, C)` decoded to pixels `(batch, 3, H, W)` with the linear path.
    pub fn decode_pixels(&self, latent: &Tensor) -> Result<Tensor> {
        self.decode_area(latent, self.height, self.width)
    }

    /// Tokens `(batch, tokens, C)` covering an area of `height`×`width` pixels (row-major, as a
    /// line of tokens beyond the view's edge) decoded to pixels `(batch, 3, height, width)` with
    /// the linear path.
    pub fn decode_area(&self, tokens: &Tensor, height: usize, width: usize) -> Result<Tensor> {
        unpatchify(
            &crate::nn::linear(&self.decode, tokens)?,
            self.patch,
            height,
            width,
        )
    }

    /// 1 for the pixels whose source under `motion` lies beyond the frame's edge along either
    /// axis, 0 for the others: `(batch, 1, H, W)`.
    fn new_pixels(&self, motion: &[Tensor; 4]) -> Result<Tensor> {
        let [shift_x, zoom_x, shift_y, zoom_y] = motion;
        let new_x = beyond_edge(self.width, shift_x, zoom_x)?.unsqueeze(1)?;
        let new_y = beyond_edge(self.height, shift_y, zoom_y)?.unsqueeze(2)?;
        new_y.broadcast_maximum(&new_x)?.unsqueeze(1)
    }

    /// `last` decoded to pixels `(batch, 3, H, W)` with the linear path, and those pixels moved
    /// by `motion` (as [`motion`](Self::motion) gives it) with `kernel`.
    fn decode_and_move(
        &self,
        last: &Tensor,
        motion: &[Tensor; 4],
        kernel: Kernel,
    ) -> Result<(Tensor, Tensor)> {
        let pixels = self.decode_pixels(last)?;
        let moved = self.move_pixels(&pixels, motion, kernel)?;
        Ok((pixels, moved))
    }

    /// `pixels` `(batch, 3, H, W)` moved by `(shift_x, zoom_x, shift_y, zoom_y)`.
    fn move_pixels(&self, pixels: &Tensor, motion: &[Tensor; 4], kernel: Kernel) -> Result<Tensor> {
        let [shift_x, zoom_x, shift_y, zoom_y] = motion;
        let mx = kernel.matrix(self.width, shift_x, zoom_x)?;
        let my = kernel.matrix(self.height, shift_y, zoom_y)?;
        // Rows: out[.., y, i] = Σ_j in[.., y, j]·mx[i, j]; then columns with my.
        let moved = pixels.broadcast_matmul(&mx.transpose(1, 2)?.unsqueeze(1)?)?;
        my.unsqueeze(1)?.broadcast_matmul(&moved)
    }
}

/// Remembered pixel values with what they only bound taken from `other`: the memory holds the
/// linear decode clamped to -1..1, so a remembered -1 says "-1 or darker" and a 1 "1 or
/// brighter". Where `other` (the value the latent would give the pixel) lies beyond such a
/// bound, it agrees with the memory and is kept; putting the clamped value back would drop what
/// lies beyond it.
pub fn unclip(values: &Tensor, other: &Tensor) -> Result<Tensor> {
    let low = values.le(-1f32)?;
    let high = values.ge(1f32)?;
    let v = low.where_cond(&values.minimum(other)?, values)?;
    high.where_cond(&v.maximum(other)?, &v)
}

/// Where each output pixel's source lies, along one line of `n` pixels moved by `shift` and
/// scaled by `zoom` about its centre, unclamped: `(batch, n)`.
fn source_positions(n: usize, shift: &Tensor, zoom: &Tensor) -> Result<Tensor> {
    let dev = shift.device();
    let centre = (n as f64 - 1.0) / 2.0;
    let out = (Tensor::arange(0f32, n as f32, dev)? - centre)?.reshape((1, n))?;
    zoom.recip()?.broadcast_mul(&out)?.broadcast_sub(shift)? + centre
}

/// 1 for the output pixels of a line whose source lies beyond its edge, 0 for the others:
/// `(batch, n)`.
fn beyond_edge(n: usize, shift: &Tensor, zoom: &Tensor) -> Result<Tensor> {
    let source = source_positions(n, shift, zoom)?;
    let inside = source
        .ge(0f32)?
        .to_dtype(DType::F32)?
        .mul(&source.le((n - 1) as f32)?.to_dtype(DType::F32)?)?;
    1.0 - inside
}

/// How pixels between the source grid's are interpolated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    /// Linear: what the network's warped input was trained with.
    Linear,
    /// Cubic (Catmull–Rom, a = −½): what transport carries the texture with.
    Cubic,
}

impl Kernel {
    fn matrix(self, n: usize, shift: &Tensor, zoom: &Tensor) -> Result<Tensor> {
        match self {
            Kernel::Linear => interpolation(n, shift, zoom),
            Kernel::Cubic => cubic_interpolation(n, shift, zoom),
        }
    }
}

/// Cubic (Catmull–Rom) interpolation matrices `(batch, n, n)`, otherwise as [`interpolation`]:
/// at a whole-pixel offset a row is one 1 (an exact copy), and near the edges, where taps fall
/// beyond the line, the row is renormalised to sum to 1.
pub fn cubic_interpolation(n: usize, shift: &Tensor, zoom: &Tensor) -> Result<Tensor> {
    let d = tap_distances(n, shift, zoom)?;
    let (d2, d3) = (d.sqr()?, (d.sqr()? * &d)?);
    // 1.5|d|³ − 2.5|d|² + 1 within one pixel; −0.5|d|³ + 2.5|d|² − 4|d| + 2 within two.
    let near = (((&d3 * 1.5)? - (&d2 * 2.5)?)? + 1.0)?;
    let far = ((((&d3 * -0.5)? + (&d2 * 2.5)?)? - (&d * 4.0)?)? + 2.0)?;
    let is_near = d.le(1f32)?.to_dtype(DType::F32)?;
    let is_far = d
        .gt(1f32)?
        .to_dtype(DType::F32)?
        .mul(&d.lt(2f32)?.to_dtype(DType::F32)?)?;
    let weights = (near.mul(&is_near)? + far.mul(&is_far)?)?;
    weights.broadcast_div(&weights.sum_keepdim(2)?)
}

/// Linear-interpolation matrices `(batch, n, n)` that move a line of `n` pixels by `shift` and
/// scale it by `zoom` about its centre: row `i` holds the weights of the source pixels of output
/// pixel `i`. Sources beyond the edge are clamped to it (the edge pixel repeats).
pub fn interpolation(n: usize, shift: &Tensor, zoom: &Tensor) -> Result<Tensor> {
    (1.0 - tap_distances(n, shift, zoom)?)?.relu()
}

/// `(batch, n, n)`: row `i` holds the distance of every source pixel from output pixel `i`'s
/// source position under `shift` and `zoom`, clamped to the line (the edge pixel repeats).
fn tap_distances(n: usize, shift: &Tensor, zoom: &Tensor) -> Result<Tensor> {
    let source = source_positions(n, shift, zoom)?
        .clamp(0f32, (n - 1) as f32)?
        .unsqueeze(2)?;
    let columns = Tensor::arange(0f32, n as f32, shift.device())?.reshape((1, 1, n))?;
    columns.broadcast_sub(&source)?.abs()
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};

    use super::*;
    use crate::default_model::network::DTYPE;

    /// A warp whose codec is the identity (one latent channel per patch value), so latent
    /// tokens are pixel patches and the warp's effect can be read off directly.
    fn identity_warp(shift_x: f32) -> candle_core::Result<(MotionWarp, VarMap)> {
        let mut cfg = Config::tiny();
        cfg.motion_warp = true;
        cfg.latent_channels = cfg.patch_values();
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DTYPE, &dev);
        let warp = MotionWarp::new(&cfg, 6, vb.pp("motion"), vb.pp("warp"))?;
        let data = varmap.data().lock().unwrap();
        let n = cfg.patch_values();
        let eye = Tensor::eye(n, DTYPE, &dev)?;
        for name in ["warp.decode.weight", "warp.encode.weight"] {
            data[name].set(&eye)?;
        }
        for name in ["warp.decode.bias", "warp.encode.bias"] {
            data[name].set(&Tensor::zeros(n, DTYPE, &dev)?)?;
        }
        // Action 0 drives the horizontal shift.
        let mut head = vec![0f32; 4 * 6];
        head[0] = shift_x / SHIFT_SCALE as f32;
        data["motion.weight"].set(&Tensor::from_vec(head, (4, 6), &dev)?)?;
        drop(data);
        Ok((warp, varmap))
    }

    #[test]
    fn a_one_patch_shift_moves_every_token_one_place_right() -> candle_core::Result<()> {
        let (warp, _) = identity_warp(8.0)?;
        let dev = Device::Cpu;
        // 32×32 pixels in 8×8 patches: a 4×4 grid of tokens of 192 values.
        let last = Tensor::randn(0f32, 1.0, (1, 16, 192), &dev)?;
        let cond = action_zero_on()?;
        assert_moved_one_token_right(&warp.forward(&last, &cond)?, &last)
    }

    /// On a 4×4 token grid, every token but the left column holds its left neighbour of `last`.
    fn assert_moved_one_token_right(moved: &Tensor, last: &Tensor) -> candle_core::Result<()> {
        for row in 0..4 {
            for col in 1..4 {
                let got = moved.narrow(1, row * 4 + col, 1)?;
                let want = last.narrow(1, row * 4 + col - 1, 1)?;
                let err = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(err < 1e-5, "token ({row}, {col}) differs by {err}");
            }
        }
        Ok(())
    }

    /// One condition vector with action 0 (which drives `identity_warp`'s shift) at 1 and two
    /// director inputs the warp must ignore.
    fn action_zero_on() -> candle_core::Result<Tensor> {
        Tensor::new(&[[1f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.7]], &Device::Cpu)
    }

    /// Transport with nothing remembered: the carried latent and the lag after the step.
    fn transport(
        warp: &MotionWarp,
        last: &Tensor,
        predicted: &Tensor,
        condition: &Tensor,
        lag: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let step = warp.plan(condition, lag)?;
        Ok((
            warp.transport(last, predicted, &step, None, None)?,
            step.lag,
        ))
    }

    #[test]
    fn remembered_pixels_fill_the_edge_before_the_prediction() -> candle_core::Result<()> {
        let (warp, _) = identity_warp(8.0)?;
        let dev = Device::Cpu;
        let last = Tensor::randn(0f32, 1.0, (1, 16, 192), &dev)?;
        let predicted = Tensor::randn(0f32, 1.0, (1, 16, 192), &dev)?;
        // Inside the memory's clamp (-1..1), where what it holds is exact (at the bounds it only
        // bounds the value: `unclip`).
        let memory = Tensor::randn(0f32, 1.0, (1, 16, 192), &dev)?.clamp(-0.99f32, 0.99f32)?;
        let step = warp.plan(&action_zero_on()?, &no_lag(1)?)?;
        // The top half of the frame is remembered, the bottom half is not.
        let mut valid = vec![0f32; 32 * 32];
        valid[..16 * 32].fill(1.0);
        let valid = Tensor::from_vec(valid, (1, 1, 32, 32), &dev)?;
        let values = unpatchify(&memory, 8, 32, 32)?;
        let carried = warp.transport(&last, &predicted, &step, Some((&values, &valid)), None)?;
        // The left column comes in from beyond the edge: rows 0-1 from memory, 2-3 predicted.
        for row in 0..4 {
            let want = if row < 2 { &memory } else { &predicted };
            let got = carried.narrow(1, row * 4, 1)?;
            let err = (got - want.narrow(1, row * 4, 1)?)?.abs()?.max_all()?;
            assert!(err.to_scalar::<f32>()? < 1e-5, "edge token of row {row}");
        }
        let share = |m: Option<&Tensor>| -> candle_core::Result<Vec<f32>> {
            warp.new_token_share(&step, m)?.flatten_all()?.to_vec1()
        };
        assert_eq!(share(None)?[0], 1.0);
        assert_eq!(share(Some(&valid))?[0], 0.0, "remembered: nothing to draw");
        assert_eq!(share(Some(&valid))?[8], 1.0, "not remembered");
        let from_memory: Vec<f32> = warp
            .remembered_token_share(&step, &valid)?
            .flatten_all()?
            .to_vec1()?;
        assert_eq!(
            (from_memory[0], from_memory[1], from_memory[8]),
            (1.0, 0.0, 0.0)
        );
        assert_moved_one_token_right(&carried, &last)
    }

    #[test]
    fn carrying_from_a_clamped_memory_keeps_what_lies_beyond_the_clamp() -> candle_core::Result<()>
    {
        // The memory holds the linear decode clamped to -1..1. A view carried from it whose
        // latent already lies beyond the clamp must keep that value: put back at -1 (or 1), the
        // change would be re-encoded and, with the coarse channel taken from the network, darken
        // (or brighten) the rest of the token; step after step black spreads.
        let (warp, _) = identity_warp(8.0)?;
        let dev = Device::Cpu;
        let last = (Tensor::randn(0f32, 1.0, (1, 16, 192), &dev)? * 1.5)?;
        let cond = action_zero_on()?;
        let step = warp.plan(&cond, &no_lag(1)?)?;
        let shifted = unpatchify(&warp.forward(&last, &cond)?, 8, 32, 32)?;
        let values = shifted.clamp(-1f32, 1f32)?;
        let clamped = (&values - &shifted)?.abs()?.gt(1e-6)?.to_dtype(DTYPE)?;
        assert!(
            clamped.sum_all()?.to_scalar::<f32>()? > 100.0,
            "the test needs clamped pixels"
        );
        let valid = Tensor::ones((1, 1, 32, 32), DTYPE, &dev)?;
        let held = Tensor::ones((1, 1, 1, 1), DTYPE, &dev)?;
        let carried = warp.transport(&last, &last, &step, Some((&values, &valid)), Some(&held))?;
        assert_moved_one_token_right(&carried, &last)?;
        // Where the memory is not at its bound, or the latent lies inside it, the memory wins.
        let memory = Tensor::new(&[-1f32, -1.0, 0.3, 1.0, 1.0], &dev)?;
        let latent = Tensor::new(&[-1.4f32, -0.5, -0.2, 0.7, 1.6], &dev)?;
        let got: Vec<f32> = unclip(&memory, &latent)?.to_vec1()?;
        assert_eq!(got, [-1.4, -1.0, 0.3, 1.0, 1.6]);
        Ok(())
    }

    /// No lag: `(batch, 2)` zeros.
    fn no_lag(batch: usize) -> candle_core::Result<Tensor> {
        Tensor::zeros((batch, 2), DTYPE, &Device::Cpu)
    }

    #[test]
    fn transport_moves_tokens_and_fills_the_edge_from_the_prediction() -> candle_core::Result<()> {
        let (warp, _) = identity_warp(8.0)?;
        let dev = Device::Cpu;
        let last = Tensor::randn(0f32, 1.0, (1, 16, 192), &dev)?;
        let predicted = Tensor::randn(0f32, 1.0, (1, 16, 192), &dev)?;
        let cond = action_zero_on()?;
        let (carried, lag) = transport(&warp, &last, &predicted, &cond, &no_lag(1)?)?;
        // The left column comes from beyond the edge: the prediction's; the others from their
        // left neighbour.
        for row in 0..4 {
            let got = carried.narrow(1, row * 4, 1)?;
            let want = predicted.narrow(1, row * 4, 1)?;
            let err = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(err < 1e-5, "edge token of row {row} differs by {err}");
        }
        assert_eq!(lag.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
        assert_moved_one_token_right(&carried, &last)
    }

    #[test]
    fn transport_moves_by_whole_pixels_and_owes_the_fraction() -> candle_core::Result<()> {
        // 0.4 pixels a step: the first step owes 0.4 and moves nothing; the second owes 0.8,
        // moves one whole pixel (an exact copy, no interpolated blur) and owes -0.2.
        let (warp, _) = identity_warp(0.4)?;
        let dev = Device::Cpu;
        let last = Tensor::randn(0f32, 1.0, (1, 16, 192), &dev)?;
        let cond = action_zero_on()?;
        let (first, lag) = transport(&warp, &last, &last, &cond, &no_lag(1)?)?;
        assert_eq!((first - &last)?.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
        let (second, lag) = transport(&warp, &last, &last, &cond, &lag)?;
        let lag: Vec<f32> = lag.flatten_all()?.to_vec1()?;
        assert!((lag[0] + 0.2).abs() < 1e-5 && lag[1] == 0.0, "lag {lag:?}");
        let before = unpatchify(&last, 8, 32, 32)?;
        let after = unpatchify(&second, 8, 32, 32)?;
        let moved = after.narrow(3, 1, 31)?;
        let source = before.narrow(3, 0, 31)?;
        let err = (moved - source)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err < 1e-5, "moved by one pixel, off by {err}");
        Ok(())
    }

    #[test]
    fn with_no_motion_transport_is_exactly_the_identity_where_the_codec_round_trip_is_not()
    -> candle_core::Result<()> {
        // A lossy codec (8 latent channels for 192 patch values), as in a trained model.
        let cfg = Config {
            motion_warp: true,
            ..Config::tiny()
        };
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DTYPE, &dev);
        let warp = MotionWarp::new(&cfg, 6, vb.pp("motion"), vb.pp("warp"))?;
        let shape = (2, cfg.tokens(), cfg.latent_channels);
        let last = Tensor::randn(0f32, 1.0, shape, &dev)?;
        let predicted = Tensor::randn(0f32, 1.0, shape, &dev)?;
        let still = Tensor::zeros((2, 8), DTYPE, &dev)?;
        let lag = Tensor::new(&[[0.3f32, -0.2], [0.0, 0.45]], &dev)?;
        let (carried, lag_after) = transport(&warp, &last, &predicted, &still, &lag)?;
        let diff = |a: &Tensor, b: &Tensor| -> candle_core::Result<f32> {
            (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
        };
        assert_eq!(diff(&carried, &last)?, 0.0);
        assert_eq!(
            diff(&lag_after, &lag)?,
            0.0,
            "standing still owes what it owed"
        );
        assert!(diff(&warp.forward(&last, &still)?, &last)? > 0.1);
        Ok(())
    }

    #[test]
    fn cubic_interpolation_copies_at_whole_pixels_and_keeps_more_detail_than_linear()
    -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let one = |v: f32| Tensor::new(&[[v]], &dev);
        // A whole-pixel shift is an exact copy, as with linear interpolation.
        let m = cubic_interpolation(8, &one(2.0)?, &one(1.0)?)?;
        let rows: Vec<Vec<f32>> = m.squeeze(0)?.to_vec2()?;
        for (i, row) in rows.iter().enumerate().skip(2) {
            let want: Vec<f32> = (0..8).map(|j| f32::from(u8::from(j + 2 == i))).collect();
            assert!(
                row.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
                "{row:?}"
            );
        }
        // Rows sum to 1 everywhere, edges included.
        let m = cubic_interpolation(16, &one(0.3)?, &one(1.07)?)?;
        let sums: Vec<f32> = m.sum(2)?.flatten_all()?.to_vec1()?;
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
        // Zooming a stripe pattern by 1 % sixty times: cubic keeps more of its contrast.
        let n = 64;
        let stripes: Vec<f32> = (0..n).map(|i| if i % 4 < 2 { 1.0 } else { -1.0 }).collect();
        let line = Tensor::from_vec(stripes, (1, 1, n), &dev)?;
        let contrast = |kernel: Kernel| -> candle_core::Result<f32> {
            let m = kernel.matrix(n, &one(0.0)?, &one(1.01)?)?;
            let mut x = line.clone();
            for _ in 0..60 {
                x = x.broadcast_matmul(&m.transpose(1, 2)?)?;
            }
            let centre: Vec<f32> = x.flatten_all()?.to_vec1()?;
            Ok(centre[24..40].iter().map(|v| v.abs()).sum::<f32>() / 16.0)
        };
        let (linear, cubic) = (contrast(Kernel::Linear)?, contrast(Kernel::Cubic)?);
        assert!(cubic > 1.3 * linear, "cubic {cubic} linear {linear}");
        Ok(())
    }

    #[test]
    fn the_shift_is_learnable_from_the_identity() -> candle_core::Result<()> {
        // A target moved 3 pixels right; starting slightly off the identity, the gradient must
        // ask for a larger shift.
        let dev = Device::Cpu;
        let last = Tensor::randn(0f32, 1.0, (1, 16, 192), &dev)?;
        let cond = action_zero_on()?;
        let (target_warp, _) = identity_warp(3.0)?;
        let target = target_warp.forward(&last, &cond)?;
        let (warp, varmap) = identity_warp(0.01)?;
        let loss = (warp.forward(&last, &cond)? - target)?.sqr()?.mean_all()?;
        let grads = loss.backward()?;
        let head = varmap.data().lock().unwrap()["motion.weight"]
            .as_tensor()
            .clone();
        let g = grads.get(&head).expect("gradient reaches the motion head");
        let g: Vec<f32> = g.flatten_all()?.to_vec1()?;
        assert!(
            g[0] < 0.0,
            "gradient on the shift {g:?} should ask for more shift"
        );
        Ok(())
    }
}
