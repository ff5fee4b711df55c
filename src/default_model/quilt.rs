//! Continuing the world beyond the view's edge by copying runs of what the player has seen
//! (image quilting, after Efros & Freeman 2001), so that turning into the unseen shows sharp,
//! whole trees, hills and clouds of this place, in its light and weather, instead of the
//! network's average of everything that could be there.
//!
//! When turning brings in world columns the [place memory](super::memory::PlaceMemory) does not
//! hold, the next run of [`QuiltConfig::segment`] columns, from the edge outward, is copied from
//! the same rows some distance back along the turn. Of a few candidate distances (drawn from a
//! hash of the run's world position, so a saved session continues bit for bit), the one that
//! best fits wins: its column before the copied run should match the column before the new run,
//! so the seam continues the horizon and the sky's colour, and the copied run should have the
//! coarse picture (the mean colour of each band of rows) that the network predicts there, its
//! *guide*. The guide keeps the network in charge of light and layout: matching the seam alone
//! prefers dark runs at night (black matches black best), and a view made of copies then sinks
//! to black, run after run. The copy is written into the memory, from where
//! the view recalls it as it turns, like anything seen: it stays put when the player turns back
//! and is forgotten by walking.
//!
//! Only turning is continued this way: looking up or down and walking leave what is new to the
//! network, whose guess is good there (sky above, zoomed ground ahead).

use serde::{Deserialize, Serialize};

use super::memory::PlaceMemory;
use crate::rng::mix64;

/// How runs are copied (`quilt` in the `memory` section of `config.json`'s `generation`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuiltConfig {
    /// Width of one copied run, world pixels: wide enough to carry a tree whole, narrow enough
    /// that runs from different places mix.
    pub segment: usize,
    /// The nearest place a run is copied from, pixels back along the turn (at least
    /// `segment`; half the view's width or more keeps a copy out of view of its original).
    pub min_shift: usize,
    /// The farthest place a run is copied from.
    pub max_shift: usize,
    /// Places tried for each run.
    pub candidates: usize,
}

impl Default for QuiltConfig {
    fn default() -> Self {
        Self {
            segment: 24,
            min_shift: 64,
            max_shift: 384,
            candidates: 12,
        }
    }
}

impl QuiltConfig {
    /// Why the settings cannot work, if they cannot.
    pub fn problem(&self) -> Option<String> {
        (self.segment == 0
            || self.segment > 256
            || self.min_shift < self.segment
            || self.max_shift < self.min_shift
            || self.max_shift > 4096
            || self.candidates == 0
            || self.candidates > 256)
            .then(|| {
                format!(
                    "quilt {self:?}: needs 1 ≤ segment ≤ 256, segment ≤ min_shift ≤ max_shift ≤ 4096 \
                     and 1 ≤ candidates ≤ 256"
                )
            })
    }
}

/// Share of a column's view rows that must be remembered for it to serve as a seam or a source.
const USABLE: f32 = 0.9;

/// Rows per band of the guide's coarse picture: one token's height.
const GUIDE_BAND: usize = 8;

/// Fills the world columns of the view (`w`×`h`) that the memory does not hold, run by run from
/// the remembered side (see the module docs). Columns with nothing remembered beside them, or
/// with no usable place to copy from, are left for the network. `guide`: the network's
/// prediction of the view, the linear decode of its latent (`3 × h × w`, channel-major, −1..1,
/// at the memory's view position), which the copied runs should look like from afar.
pub fn continue_view(
    memory: &mut PlaceMemory,
    cfg: &QuiltConfig,
    w: usize,
    h: usize,
    forget_after: f32,
    guide: Option<&[f32]>,
) {
    let (vx, _) = memory.view();
    let columns: Vec<i64> = (vx..vx + w as i64).collect();
    for (direction, order) in [
        (1, columns.clone()),
        (-1, columns.into_iter().rev().collect()),
    ] {
        for x in order {
            let share = |x| remembered_share(memory, x, h, forget_after);
            if share(x) < USABLE && share(x - direction) >= USABLE {
                copy_run(memory, cfg, x, direction, (w, h), forget_after, guide);
            }
        }
    }
}

/// Share of world column `x`'s view rows the memory holds.
fn remembered_share(memory: &PlaceMemory, x: i64, h: usize, forget_after: f32) -> f32 {
    let y0 = memory.view().1;
    let held = (y0..y0 + h as i64)
        .filter(|&y| memory.remembered(x, y, forget_after).is_some())
        .count();
    held as f32 / h as f32
}

/// Copies one run starting at world column `start` and going `direction` (+1 right, -1 left),
/// from the best-matching usable place back along the turn.
fn copy_run(
    memory: &mut PlaceMemory,
    cfg: &QuiltConfig,
    start: i64,
    direction: i64,
    (w, h): (usize, usize),
    forget_after: f32,
    guide: Option<&[f32]>,
) {
    let seg = cfg.segment as i64;
    let Some(shift) = best_shift(memory, cfg, start, direction, (w, h), forget_after, guide) else {
        return;
    };
    // Only the view's rows: rows above and below it hold only what was really seen, so that
    // looking up or walking back brings back no copies made for another height.
    let top = memory.view().1;
    for i in 0..seg {
        let x = start + direction * i;
        for y in top..top + h as i64 {
            if memory.remembered(x, y, forget_after).is_some() {
                continue;
            }
            if let Some(rgb) = memory.remembered(x - direction * shift, y, forget_after) {
                memory.set(x, y, rgb);
            }
        }
    }
}

/// Of the run's candidate distances whose source columns are usable, the one whose column
/// before the source best matches the column before `start` (summed squared difference over
/// the view's rows), plus, with a guide, how far the source's band means lie from the guide's
/// over the run's columns in view (summed squared difference per pixel, per column: the same
/// scale as the seam's one column).
fn best_shift(
    memory: &PlaceMemory,
    cfg: &QuiltConfig,
    start: i64,
    direction: i64,
    (w, h): (usize, usize),
    forget_after: f32,
    guide: Option<&[f32]>,
) -> Option<i64> {
    let seg = cfg.segment as i64;
    let seam = start - direction;
    let y0 = memory.view().1;
    // Usable shifts: the source run and the column before it all usable. Walking the shifts
    // in order, a shift is usable when the `seg + 1` columns from `first - direction` on are.
    let usable = |x| remembered_share(memory, x, h, forget_after) >= USABLE;
    let mut shifts = Vec::new();
    let mut streak = 0i64;
    // Shift k's source run spans columns start - direction * k ..= start - direction * (k - seg
    // + 1), plus the column before it, start - direction * (k + 1). Count usable columns from
    // the near end outward: column start - direction * d.
    for d in (cfg.min_shift as i64 - seg + 1).max(1)..=cfg.max_shift as i64 + 1 {
        streak = if usable(start - direction * d) {
            streak + 1
        } else {
            0
        };
        let k = d - 1;
        if k >= cfg.min_shift as i64 && streak > seg {
            shifts.push(k);
        }
    }
    if shifts.is_empty() {
        return None;
    }
    let picked: Vec<i64> = if shifts.len() <= cfg.candidates {
        shifts
    } else {
        (0..cfg.candidates as u64)
            .map(|j| {
                let key = (start as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    ^ j.wrapping_mul(0xD6E8_FEB8_6659_FD93);
                shifts[(mix64(key) % shifts.len() as u64) as usize]
            })
            .collect()
    };
    let mut best: Option<(u64, i64)> = None;
    for shift in picked {
        let first = start - direction * shift;
        let mut score = 0u64;
        for y in y0..y0 + h as i64 {
            let (Some(a), Some(b)) = (
                memory.remembered(seam, y, forget_after),
                memory.remembered(first - direction, y, forget_after),
            ) else {
                continue;
            };
            score += a
                .iter()
                .zip(b)
                .map(|(&a, b)| (a as i64 - b as i64).pow(2) as u64)
                .sum::<u64>();
        }
        if let Some(guide) = guide {
            score += guide_distance(
                memory,
                cfg,
                start,
                direction,
                shift,
                (w, h),
                forget_after,
                guide,
            );
        }
        if best.is_none_or(|(s, _)| score < s) {
            best = Some((score, shift));
        }
    }
    best.map(|(_, shift)| shift)
}

/// How far the coarse picture of the run copied from `shift` back lies from the guide's, over
/// the run's columns that are in view and not remembered: per band of [`GUIDE_BAND`] rows and
/// colour channel, the squared difference of the two means times the band's pixels, summed and
/// divided by the columns compared. 0 when no column of the run is in view.
#[allow(clippy::too_many_arguments)]
fn guide_distance(
    memory: &PlaceMemory,
    cfg: &QuiltConfig,
    start: i64,
    direction: i64,
    shift: i64,
    (w, h): (usize, usize),
    forget_after: f32,
    guide: &[f32],
) -> u64 {
    let (vx, vy) = memory.view();
    let columns: Vec<i64> = (0..cfg.segment as i64)
        .map(|i| start + direction * i)
        .filter(|&x| (vx..vx + w as i64).contains(&x))
        .collect();
    if columns.is_empty() {
        return 0;
    }
    let mut total = 0.0f64;
    for band in (0..h).step_by(GUIDE_BAND) {
        let mut sums = [[0.0f64; 3]; 2];
        let mut n = 0.0f64;
        for y in band..(band + GUIDE_BAND).min(h) {
            let wy = vy + y as i64;
            for &x in &columns {
                if memory.remembered(x, wy, forget_after).is_some() {
                    continue;
                }
                let Some(source) = memory.remembered(x - direction * shift, wy, forget_after)
                else {
                    continue;
                };
                let col = (x - vx) as usize;
                for c in 0..3 {
                    sums[0][c] += source[c] as f64;
                    sums[1][c] += (guide[(c * h + y) * w + col] as f64 + 1.0) * 127.5;
                }
                n += 1.0;
            }
        }
        if n > 0.0 {
            total += (0..3)
                .map(|c| (sums[0][c] / n - sums[1][c] / n).powi(2) * n)
                .sum::<f64>();
        }
    }
    (total / columns.len() as f64).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::default_model::memory::{MemoryConfig, quantise};

    /// A view of `w`×`h` whose column `x` has the colour `x * 8` in every channel and row, as the
    /// linear decode's −1..1 planes.
    fn striped_view(w: usize, h: usize) -> Vec<f32> {
        let mut v = Vec::new();
        for _ in 0..3 {
            for _ in 0..h {
                for x in 0..w {
                    v.push((x * 8) as f32 / 127.5 - 1.0);
                }
            }
        }
        v
    }

    /// A small memory's settings, `h` rows high.
    fn small_memory(h: usize) -> MemoryConfig {
        MemoryConfig {
            width: 96,
            height: h,
            forget_after: 0.3,
            quilt: None,
            turn_from_memory: false,
        }
    }

    fn memory(w: usize, h: usize) -> (PlaceMemory, MemoryConfig) {
        let cfg = small_memory(h);
        let mut m = PlaceMemory::new(&cfg, w, h);
        m.write_view(&striped_view(w, h), w, h);
        (m, cfg)
    }

    fn small() -> QuiltConfig {
        QuiltConfig {
            segment: 4,
            min_shift: 8,
            max_shift: 16,
            candidates: 6,
        }
    }

    /// A long turn at the real sizes, where only the start view was ever seen and nothing else
    /// fills the memory: each run is copied from what earlier runs continued, so the world
    /// goes on run after run, each one piece of what was seen (not columns from all over).
    #[test]
    fn a_long_turn_continues_run_after_run() {
        let (w, h) = (128, 128);
        let cfg = MemoryConfig {
            width: 768,
            height: 256,
            forget_after: 0.3,
            quilt: None,
            turn_from_memory: false,
        };
        let mut m = PlaceMemory::new(&cfg, w, h);
        let mut view = Vec::new();
        for _ in 0..3 {
            for _ in 0..h {
                for x in 0..w {
                    view.push((x * 2) as f32 / 127.5 - 1.0);
                }
            }
        }
        m.write_view(&view, w, h);
        for i in 0..40 {
            // The warp also lowers the view by a pixel now and then while turning, so the
            // columns already continued miss a row: that must not start runs of their own.
            m.advance((-5, -((i % 6 == 5) as i64)), 0.0, w, h);
            continue_view(
                &mut m,
                &QuiltConfig::default(),
                w,
                h,
                cfg.forget_after,
                None,
            );
        }
        let column = |x: i64| {
            m.remembered(x, 64, cfg.forget_after)
                .map(|p| p[0] as i64 / 2)
        };
        let seen_to = m.view().0 + w as i64;
        assert!(seen_to >= 320);
        for start in (128..seen_to - 24).step_by(24) {
            let run: Vec<_> = (start..start + 24).map(column).collect();
            assert!(run.iter().all(Option::is_some), "run at {start} continued");
            let copied = (64..=384).any(|shift| {
                (start..start + 24)
                    .zip(&run)
                    .all(|(x, c)| column(x - shift) == *c)
            });
            assert!(copied, "run at {start} is one piece of what lies before it");
        }
    }

    #[test]
    fn turning_into_the_unseen_copies_whole_runs_of_what_was_seen() {
        let (w, h) = (16, 4);
        let (mut m, cfg) = memory(w, h);
        // Turn right by 6 pixels: columns 16..22 are new.
        m.advance((-6, 0), 0.0, w, h);
        continue_view(&mut m, &small(), w, h, cfg.forget_after, None);
        let (values, valid) = m.recall(w, h, cfg.forget_after);
        assert!(
            valid.iter().all(|&v| v == 1.0),
            "every new column was continued"
        );
        let colour = |x: usize| ((values[x] + 1.0) * 127.5).round() as i64;
        // Each new column is an earlier one, 8 to 16 columns back, and a run is one piece.
        for x in 10..16 {
            let world = x as i64 + 6;
            let back = world - colour(x) / 8;
            assert!(
                (8..=16).contains(&back),
                "column {world} copied from {back} back"
            );
        }
        assert_eq!(
            colour(11) - colour(10),
            8,
            "a run copies neighbouring columns"
        );
    }

    #[test]
    fn the_continuation_is_the_same_every_time_and_never_overwrites_what_was_seen() {
        let (w, h) = (16, 4);
        let run = || {
            let (mut m, cfg) = memory(w, h);
            m.advance((-5, 0), 0.0, w, h);
            continue_view(&mut m, &small(), w, h, cfg.forget_after, None);
            m.advance((3, 0), 0.0, w, h);
            continue_view(&mut m, &small(), w, h, cfg.forget_after, None);
            m
        };
        let (a, b) = (run(), run());
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        // Back at the start, the first view is untouched.
        let mut back = a.clone();
        back.advance((2, 0), 0.0, w, h);
        let (values, _) = back.recall(w, h, 0.3);
        for (got, want) in values.iter().zip(striped_view(w, h)) {
            assert!((got - want).abs() <= 1.0 / 127.5);
        }
    }

    /// Where the seam fits every candidate alike, the guide decides: a dark prediction brings
    /// in a dark run of what was seen, and without a guide the nearest run (a bright one) wins.
    #[test]
    fn the_network_guide_picks_runs_of_its_brightness() {
        let (w, h) = (16, 8);
        let colour = |x: usize| if x < 8 { 40.0 } else { 200.0 };
        let view: Vec<f32> = (0..3 * h * w)
            .map(|i| colour(i % w) / 127.5 - 1.0)
            .collect();
        let cfg = small_memory(h);
        let quilt = QuiltConfig {
            segment: 4,
            min_shift: 8,
            max_shift: 12,
            candidates: 6,
        };
        let dark_guide = vec![40.0 / 127.5 - 1.0; 3 * h * w];
        let new_colour = |guide: Option<&[f32]>| {
            let mut m = PlaceMemory::new(&cfg, w, h);
            m.write_view(&view, w, h);
            // Turn right by 4 pixels: columns 16..20 are new.
            m.advance((-4, 0), 0.0, w, h);
            continue_view(&mut m, &quilt, w, h, cfg.forget_after, guide);
            (16..20)
                .map(|x| m.remembered(x, 4, cfg.forget_after).map(|p| p[0]))
                .collect::<Vec<_>>()
        };
        // The byte the memory stores for a colour of 0..255.
        let q = |c: f32| Some(quantise(c / 127.5 - 1.0));
        assert_eq!(new_colour(None), vec![q(200.0); 4]);
        assert_eq!(new_colour(Some(&dark_guide)), vec![q(40.0); 4]);
    }

    #[test]
    fn with_nothing_far_enough_back_the_edge_is_left_to_the_network() {
        let (w, h) = (16, 4);
        let (mut m, cfg) = memory(w, h);
        m.advance((-6, 0), 0.0, w, h);
        let far = QuiltConfig {
            min_shift: 40,
            max_shift: 60,
            ..small()
        };
        continue_view(&mut m, &far, w, h, cfg.forget_after, None);
        let (_, valid) = m.recall(w, h, cfg.forget_after);
        assert!(valid[..w].iter().skip(10).all(|&v| v == 0.0));
    }

    #[test]
    fn unworkable_settings_are_named() {
        assert!(QuiltConfig::default().problem().is_none());
        let bad = QuiltConfig {
            min_shift: 2,
            ..small()
        };
        assert!(bad.problem().unwrap().contains("min_shift"));
    }
}
