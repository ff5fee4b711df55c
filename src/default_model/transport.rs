//! A step's texture transport and the place memory's part in it: planning the step's
//! whole-pixel motion, moving each session's memory with it, recalling (or outpainting) what
//! comes into view, quilting what it never held once the network has predicted the view,
//! carrying the latent over, and writing the new view back.

use candle_core::Tensor;

use super::memory::{MemoryConfig, PlaceMemory};
use super::network::DTYPE;
use super::outpaint::{Outpainter, Side, window};
use super::quilt;
use super::warp::{MotionWarp, StepMotion};
use super::world::{DefaultSession, Shared};
use crate::error::Result;

/// A step's texture transport, planned before the latent is predicted (see
/// [`MotionWarp::transport`]).
pub(super) struct Transport<'a> {
    pub(super) warp: &'a MotionWarp,
    /// The first latent channel carried over (the ones before it come from the network).
    pub(super) first: usize,
    pub(super) step: StepMotion,
    /// What the sessions' place memories hold at their new views: values `(batch, 3, H, W)`
    /// and 1 where valid `(batch, 1, H, W)`.
    pub(super) remembered: Option<(Tensor, Tensor)>,
    /// Per session, whether this step's view is drawn from its memory
    /// ([`MemoryConfig::turn_from_memory`]).
    pub(super) from_memory: Vec<bool>,
}

impl<'a> Transport<'a> {
    /// Plans the step's whole-pixel motion and moves every session's place memory with it.
    pub(super) fn plan(
        shared: &'a Shared,
        sessions: &mut [&mut DefaultSession],
        condition: &Tensor,
    ) -> Result<Option<Self>> {
        let generation = &shared.generation;
        let (Some(first), Some(warp)) = (
            generation.texture_transport_from,
            shared.nets.dynamics.warp(),
        ) else {
            return Ok(None);
        };
        let dev = &shared.device;
        let lag: Vec<f32> = sessions.iter().flat_map(|s| s.texture_lag).collect();
        let step = warp.plan(condition, &Tensor::from_vec(lag, (sessions.len(), 2), dev)?)?;
        let (remembered, from_memory) = match &generation.memory {
            Some(cfg) => {
                let (values, valid) = recall(shared, sessions, &step, cfg)?;
                let turning = step.shifts()?.into_iter().zip(step.log_zooms()?);
                let from_memory = turning
                    .map(|(shift, zoom)| {
                        cfg.turn_from_memory && shift != (0, 0) && zoom < MAX_TURN_LOG_ZOOM
                    })
                    .collect();
                (Some((values, valid)), from_memory)
            }
            None => (None, vec![false; sessions.len()]),
        };
        Ok(Some(Self {
            warp,
            first,
            step,
            remembered,
            from_memory,
        }))
    }

    /// The share of each token's pixels the warp brings in that the memory does not hold,
    /// `(batch, tokens)`.
    pub(super) fn unremembered_share(&self) -> candle_core::Result<Tensor> {
        let valid = self.remembered.as_ref().map(|(_, valid)| valid);
        self.warp.new_token_share(&self.step, valid)
    }

    /// The next latent: channels from `first` on carried over from `last` (what comes in from
    /// beyond the edge recalled from memory or else taken from `predicted`), the others from
    /// `predicted`, except in tokens mostly recalled from memory, which are carried whole (the
    /// network, which has not seen what the memory holds, would draw them anew).
    pub(super) fn carry(&self, predicted: &Tensor, last: &Tensor) -> candle_core::Result<Tensor> {
        let c = predicted.dim(2)?;
        let remembered = self.remembered.as_ref().map(|(v, m)| (v, m));
        let held = self.held(last.device())?;
        let carried =
            self.warp
                .transport(last, predicted, &self.step, remembered, held.as_ref())?;
        let next = Tensor::cat(
            &[
                &predicted.narrow(2, 0, self.first)?,
                &carried.narrow(2, self.first, c - self.first)?,
            ],
            2,
        )?;
        let Some((_, valid)) = &self.remembered else {
            return Ok(next);
        };
        let share = self.warp.remembered_token_share(&self.step, valid)?;
        let whole = share.ge(0.5)?.to_dtype(DTYPE)?.unsqueeze(2)?;
        &next + (carried - &next)?.broadcast_mul(&whole)?
    }
}

impl Transport<'_> {
    /// With [`MemoryConfig::quilt`], continues each turning session's memory beyond what it
    /// holds by copying runs of what was seen, guided by `predicted`, the network's next latent
    /// (see [`quilt`]), and recalls the views again. Walking changes what lies around the
    /// player: what is new then stays the network's.
    pub(super) fn quilt(
        &mut self,
        shared: &Shared,
        sessions: &mut [&mut DefaultSession],
        predicted: &Tensor,
    ) -> Result<()> {
        let Some(cfg) = &shared.generation.memory else {
            return Ok(());
        };
        let Some(quilt_cfg) = &cfg.quilt else {
            return Ok(());
        };
        let (w, h) = (shared.cfg.width, shared.cfg.height);
        let zooms = self.step.log_zooms()?;
        if zooms.iter().all(|&z| z >= MAX_TURN_LOG_ZOOM) {
            return Ok(());
        }
        let guide: Vec<f32> = self
            .warp
            .decode_pixels(predicted)?
            .flatten_all()?
            .to_vec1()?;
        for ((s, zoom), guide) in sessions
            .iter_mut()
            .zip(zooms)
            .zip(guide.chunks_exact(3 * w * h))
        {
            if zoom >= MAX_TURN_LOG_ZOOM {
                continue;
            }
            let memory = s.memory.as_mut().expect("made by `recall`");
            quilt::continue_view(memory, quilt_cfg, w, h, cfg.forget_after, Some(guide));
        }
        self.remembered = Some(recall_views(shared, sessions, cfg)?);
        Ok(())
    }

    /// 1 for the sessions whose view this step draws from memory, `(batch, 1, 1, 1)`; `None`
    /// when there are none.
    fn held(&self, dev: &candle_core::Device) -> candle_core::Result<Option<Tensor>> {
        if !self.from_memory.contains(&true) {
            return Ok(None);
        }
        let flags: Vec<f32> = self.from_memory.iter().map(|&f| f as u8 as f32).collect();
        let n = flags.len();
        Tensor::from_vec(flags, (n, 1, 1, 1), dev)?
            .to_dtype(DTYPE)
            .map(Some)
    }
}

/// The most a step may walk (summed |log zoom|) and still count as turning for
/// [`MemoryConfig::turn_from_memory`]: a view that grows or shrinks is no longer the picture
/// the memory holds.
const MAX_TURN_LOG_ZOOM: f32 = 0.005;

/// Moves each session's place memory by the step's motion and recalls what it holds at the new
/// view.
fn recall(
    shared: &Shared,
    sessions: &mut [&mut DefaultSession],
    step: &StepMotion,
    cfg: &MemoryConfig,
) -> Result<(Tensor, Tensor)> {
    let (w, h) = (shared.cfg.width, shared.cfg.height);
    let (shifts, zooms) = (step.shifts()?, step.log_zooms()?);
    for ((s, shift), zoom) in sessions.iter_mut().zip(shifts).zip(zooms) {
        let old_view = s
            .memory
            .get_or_insert_with(|| PlaceMemory::new(cfg, w, h))
            .view();
        let memory = s.memory.as_mut().expect("made above");
        memory.advance(shift, zoom, w, h);
        if let Some(outpainter) = &shared.nets.outpainter
            && zoom < MAX_OUTPAINT_LOG_ZOOM
        {
            draw_ahead(shared, outpainter, s, old_view, shift, cfg)?;
        }
    }
    recall_views(shared, sessions, cfg)
}

/// What each session's place memory holds at its view: values `(batch, 3, H, W)` and 1 where
/// valid `(batch, 1, H, W)`.
fn recall_views(
    shared: &Shared,
    sessions: &[&mut DefaultSession],
    cfg: &MemoryConfig,
) -> Result<(Tensor, Tensor)> {
    let (w, h) = (shared.cfg.width, shared.cfg.height);
    let (mut values, mut valid) = (Vec::new(), Vec::new());
    for s in sessions {
        let memory = s.memory.as_ref().expect("a memory");
        let (v, m) = memory.recall(w, h, cfg.forget_after);
        values.extend(v);
        valid.extend(m);
    }
    let b = sessions.len();
    let dev = &shared.device;
    Ok((
        Tensor::from_vec(values, (b, 3, h, w), dev)?,
        Tensor::from_vec(valid, (b, 1, h, w), dev)?,
    ))
}

/// The most a step may walk (summed |log zoom|) for the outpainter to draw: walking, even
/// sprinting, zooms the view by a few percent a frame at most, and a line drawn beyond the
/// edge still lines up with the view then; a larger zoom is a jump of the picture that a line
/// beyond the edge cannot follow.
const MAX_OUTPAINT_LOG_ZOOM: f32 = 0.05;

/// When this step's motion brings in pixels the session's memory does not hold, draws the line
/// of tokens beyond the old view's edge on that side (one per axis) and fills the memory's
/// missing pixels with its linear decode. `old_view`: where the view was before the step.
fn draw_ahead(
    shared: &Shared,
    outpainter: &Outpainter,
    s: &mut DefaultSession,
    old_view: (i64, i64),
    (dx, dy): (i64, i64),
    cfg: &MemoryConfig,
) -> Result<()> {
    let model = &shared.cfg;
    let (w, h, p) = (model.width as i64, model.height as i64, model.patch as i64);
    let (rows, cols) = (model.height / model.patch, model.width / model.patch);
    let Some(warp) = shared.nets.dynamics.warp() else {
        return Ok(());
    };
    // The content moves by (dx, dy): the view by the opposite.
    let sides = [
        (dx < 0).then_some((Side::Right, (old_view.0 + w, old_view.1), (p, h), -dx)),
        (dx > 0).then_some((Side::Left, (old_view.0 - p, old_view.1), (p, h), dx)),
        (dy < 0).then_some((Side::Down, (old_view.0, old_view.1 + h), (w, p), -dy)),
        (dy > 0).then_some((Side::Up, (old_view.0, old_view.1 - p), (w, p), dy)),
    ];
    for (side, at, (line_w, line_h), moved) in sides.into_iter().flatten() {
        // The band that comes into view, nearest the old edge.
        let band = match side {
            Side::Right => ((at.0, at.1), (moved.min(p), line_h)),
            Side::Left => ((at.0 + p - moved.min(p), at.1), (moved.min(p), line_h)),
            Side::Down => ((at.0, at.1), (line_w, moved.min(p))),
            Side::Up => ((at.0, at.1 + p - moved.min(p)), (line_w, moved.min(p))),
        };
        let memory = s.memory.as_ref().expect("a memory");
        if memory.holds(
            band.0,
            band.1.0 as usize,
            band.1.1 as usize,
            cfg.forget_after,
        ) {
            continue;
        }
        // The old view's tokens next to the edge, at the positions they take in the grid of the
        // view moved one token toward the side (see `outpaint::window`).
        let (ctx, _) = window(side, rows, cols, outpainter.context());
        let from: Vec<u32> = ctx
            .iter()
            .map(|&i| {
                let (r, c) = (i as usize / cols, i as usize % cols);
                let (r, c) = match side {
                    Side::Right => (r, c + 1),
                    Side::Left => (r, c - 1),
                    Side::Down => (r + 1, c),
                    Side::Up => (r - 1, c),
                };
                (r * cols + c) as u32
            })
            .collect();
        let (k, t, c) = (model.context, model.tokens(), model.latent_channels);
        let dev = &shared.device;
        let last = Tensor::from_vec(s.context[(k - 1) * t * c..].to_vec(), (t, c), dev)?;
        let context = last
            .index_select(&Tensor::new(from.as_slice(), dev)?, 0)?
            .unsqueeze(0)?;
        let generation = &shared.generation;
        let line = outpainter.draw(
            &context,
            side,
            (rows, cols),
            generation.outpaint_passes,
            generation.outpaint_temperature,
            &mut [&mut s.rng],
        )?;
        let (lw, lh) = (line_w as usize, line_h as usize);
        let planes: Vec<f32> = warp.decode_area(&line, lh, lw)?.flatten_all()?.to_vec1()?;
        let memory = s.memory.as_mut().expect("a memory");
        memory.fill_missing(at, &planes, lw, lh, cfg.forget_after);
    }
    Ok(())
}

/// Writes each session's new view (its linear decode, `(batch, 3, H, W)`) into its memory;
/// where the view was drawn from the memory (`from_memory`), only where it held nothing.
pub(super) fn remember(
    shared: &Shared,
    sessions: &mut [&mut DefaultSession],
    views: &Tensor,
    from_memory: &[bool],
) -> Result<()> {
    let (w, h) = (shared.cfg.width, shared.cfg.height);
    let forget_after = shared
        .generation
        .memory
        .as_ref()
        .map_or(0.0, |m| m.forget_after);
    let planes: Vec<f32> = views.flatten_all()?.to_vec1()?;
    let views = planes.chunks_exact(3 * w * h);
    for ((s, view), &held) in sessions.iter_mut().zip(views).zip(from_memory) {
        if let Some(memory) = &mut s.memory {
            if held {
                let at = memory.view();
                memory.fill_missing(at, view, w, h, forget_after);
            } else {
                memory.write_view(view, w, h);
            }
        }
    }
    Ok(())
}
