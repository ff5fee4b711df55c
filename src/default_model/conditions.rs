//! Turns a step's action, director controls and context-noise level into the flat vector the
//! dynamics is conditioned on. Derived from the model's [`ChannelLayout`], so any layout works:
//! axes are scaled to [-1, 1], buttons stay 0/1, choices become one-hot, cyclic controls (time of
//! day) become a sine and a cosine so 23:59 sits next to 00:00.

use std::f32::consts::TAU;

use crate::spec::{ActionKind, ChannelLayout, ControlKind};

/// Length of the action part at the start of the condition vector for `layout`.
pub fn action_len(layout: &ChannelLayout) -> usize {
    layout
        .actions
        .iter()
        .map(|c| match &c.kind {
            ActionKind::Discrete { choices } => choices.len(),
            _ => 1,
        })
        .sum()
}

/// Length of the condition vector for `layout`.
pub fn condition_len(layout: &ChannelLayout) -> usize {
    let actions = action_len(layout);
    let controls: usize = layout
        .controls
        .iter()
        .map(|c| match &c.kind {
            ControlKind::Continuous { wraps: true, .. } => 2,
            ControlKind::Choice { options, .. } => options.len(),
            _ => 1,
        })
        .sum();
    actions + controls + 2
}

/// Appends the condition vector of one step to `out`. `noise` is the context-noise level
/// relative to its training maximum (0 to 1).
pub fn encode_condition(
    layout: &ChannelLayout,
    action: &[f32],
    controls: &[f32],
    noise: f32,
    out: &mut Vec<f32>,
) {
    for (channel, &v) in layout.actions.iter().zip(action) {
        match &channel.kind {
            ActionKind::Axis { min, max } => {
                let half = ((max - min) / 2.0).max(f32::EPSILON);
                out.push((v - (min + max) / 2.0) / half);
            }
            ActionKind::Button => out.push(v),
            ActionKind::Discrete { choices } => one_hot(v, choices.len(), out),
        }
    }
    for (control, &v) in layout.controls.iter().zip(controls) {
        match &control.kind {
            ControlKind::Continuous {
                min, max, wraps, ..
            } => {
                let span = (max - min).max(f32::EPSILON);
                if *wraps {
                    let a = TAU * (v - min) / span;
                    out.push(a.sin());
                    out.push(a.cos());
                } else {
                    out.push(2.0 * (v - min) / span - 1.0);
                }
            }
            ControlKind::Choice { options, .. } => one_hot(v, options.len(), out),
            ControlKind::Trigger => out.push(v),
        }
    }
    out.push(noise);
    out.push(1.0);
}

fn one_hot(v: f32, n: usize, out: &mut Vec<f32>) {
    let hot = v.round().clamp(0.0, n.saturating_sub(1) as f32) as usize;
    out.extend((0..n).map(|i| if i == hot { 1.0 } else { 0.0 }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ActionChannel, ControlSpec};

    #[test]
    fn layout_follows_the_spec() {
        let spec = ChannelLayout {
            actions: vec![
                ActionChannel::axis("turn", -2.0, 2.0),
                ActionChannel::button("jump"),
            ],
            controls: vec![
                ControlSpec::cyclic("time_of_day", 0.0, 24.0, 12.0),
                ControlSpec::choice("weather", &["clear", "rain", "snow"], 0),
                ControlSpec::trigger("storm"),
            ],
        };
        assert_eq!(condition_len(&spec), 2 + 2 + 3 + 1 + 2);
        let mut v = Vec::new();
        encode_condition(&spec, &[1.0, 1.0], &[6.0, 2.0, 0.0], 0.5, &mut v);
        assert_eq!(v.len(), condition_len(&spec));
        assert_eq!(v[0], 0.5);
        assert!(
            (v[2] - 1.0).abs() < 1e-6 && v[3].abs() < 1e-6,
            "6 h is a quarter turn"
        );
        assert_eq!(&v[4..7], &[0.0, 0.0, 1.0]);
        assert_eq!(&v[8..], &[0.5, 1.0]);
    }
}
