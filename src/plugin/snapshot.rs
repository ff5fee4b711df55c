//! Snapshots: one settled picture of a camera, read back from the GPU as a [`Frame`]. A world
//! model that continues the game from where the player stands starts from it: the neural twin of
//! `examples/twin.rs` starts (and starts again) from a snapshot of the real camera.
//!
//! Put [`TakeSnapshot`] on a camera that renders into a [`readable_target`] image. The picture is
//! read back every frame until the renderer has settled — no shader pipeline compiling (Bevy
//! compiles them in the background and leaves out what needs one until then) and the picture the
//! same three frames in a row — and then [`SnapshotTaken`] carries it, and the component is
//! removed. Hold the scene still while it waits (for instance hold the clock with
//! [`TimeUpdateStrategy`](bevy::time::TimeUpdateStrategy)): a picture that keeps changing
//! settles only after [`SNAPSHOT_MAX_FRAMES`], and is then taken as it is, with a warning.
//! Added by [`CapturePlugin`](super::CapturePlugin).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bevy::camera::RenderTarget;
use bevy::image::ImageSampler;
use bevy::prelude::*;
use bevy::render::gpu_readback::{Readback, ReadbackComplete};
use bevy::render::render_resource::{PipelineCache, TextureFormat, TextureUsages};

use crate::frame::Frame;

/// A picture counts as settled when it is the same this many frames in a row while no shader
/// compiles (captures wait for it before their first step too).
const SETTLE_SAME: u32 = 3;
/// Frames a snapshot waits for the picture to settle before it takes it as it is.
pub const SNAPSHOT_MAX_FRAMES: u32 = 300;

/// An image a camera can render into and the GPU can copy out of: RGBA8 (sRGB view) with
/// `COPY_SRC`, sampled nearest so a small picture shown large stays sharp. Captures and
/// snapshots read their pictures from such an image.
pub fn readable_target(width: u32, height: u32) -> Image {
    let mut image = Image::new_target_texture(
        width,
        height,
        TextureFormat::Rgba8Unorm,
        Some(TextureFormat::Rgba8UnormSrgb),
    );
    image.sampler = ImageSampler::nearest();
    image.texture_descriptor.usage |= TextureUsages::COPY_SRC;
    image
}

/// Asks for one settled picture of the camera it is on, as a [`Frame`] in a [`SnapshotTaken`]
/// message: what a world model continuing the game from the player's view starts from.
///
/// The camera must render into a [`readable_target`] image (on any other camera the component
/// is removed with an error in the log). The picture is read back from the GPU every frame until
/// the renderer has settled — no shader pipeline compiling (Bevy compiles them in the background
/// and leaves out what needs one until then) and the picture the same three frames in a row —
/// then the message is sent and the component removed. Hold the scene still meanwhile (hold the
/// clock with `TimeUpdateStrategy::ManualDuration(Duration::ZERO)`, say): a picture that keeps
/// changing is taken as it is after [`SNAPSHOT_MAX_FRAMES`], with a warning. Needs
/// [`CapturePlugin`](super::CapturePlugin), whose captures take one of their camera before their
/// first step (a game reading [`SnapshotTaken`] should look at its `camera`).
#[derive(Component, Clone, Copy, Debug, Default)]
pub struct TakeSnapshot;

/// A snapshot's picture (sent once per [`TakeSnapshot`]).
#[derive(Message, Clone, Debug)]
pub struct SnapshotTaken {
    /// The camera.
    pub camera: Entity,
    /// Its picture, RGBA8 at the render target's size.
    pub frame: Frame,
}

/// A snapshot in progress (on the camera).
#[derive(Component)]
pub(crate) struct SnapshotRun {
    readback: Entity,
    size: UVec2,
    frames: u32,
    same: u32,
    last: Vec<u8>,
}

/// The readback request of a snapshot (a picture every frame until it settles).
#[derive(Component)]
pub(crate) struct SnapshotReadback {
    camera: Entity,
}

/// How many renders in a row had no shader pipeline still compiling. Shared by the main and the
/// render world.
#[derive(Resource, Clone, Default)]
pub(crate) struct SettledRenders(pub(crate) Arc<AtomicU32>);

impl SettledRenders {
    fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counts [`SettledRenders`] (render world, once per render).
pub(crate) fn count_settled_renders(cache: Res<PipelineCache>, settled: Res<SettledRenders>) {
    if cache.waiting_pipelines().next().is_some() {
        settled.0.store(0, Ordering::Relaxed);
    } else {
        settled.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether `picture` continues a settled run: no shader compiled for a while (counted past the
/// readback's latency), something was drawn (an untouched render target is all zeros; a
/// rendered picture has opaque alpha), and it equals the picture before.
fn settled_picture(last: &[u8], picture: &[u8], settled_renders: u32) -> bool {
    settled_renders > 2 * SETTLE_SAME && picture.iter().any(|&b| b != 0) && last == picture
}

/// Starts a readback for each new [`TakeSnapshot`]; takes the picture as it is after
/// [`SNAPSHOT_MAX_FRAMES`].
#[allow(clippy::type_complexity)]
pub(crate) fn request_snapshots(
    mut commands: Commands,
    images: Res<Assets<Image>>,
    mut cameras: Query<
        (
            Entity,
            Option<&RenderTarget>,
            Option<&mut SnapshotRun>,
            Has<TakeSnapshot>,
        ),
        Or<(With<TakeSnapshot>, With<SnapshotRun>)>,
    >,
    mut taken: MessageWriter<SnapshotTaken>,
) {
    for (camera, target, run, wanted) in &mut cameras {
        match (run, wanted) {
            (Some(run), false) => {
                // Taken away before it finished: stop reading back.
                commands.entity(run.readback).despawn();
                commands.entity(camera).remove::<SnapshotRun>();
            }
            (Some(mut run), true) => {
                run.frames += 1;
                if run.frames >= SNAPSHOT_MAX_FRAMES && run.last.is_empty() {
                    error!(
                        "bevy_nacre snapshot: no picture of camera {camera} came back from the \
                         GPU in {SNAPSHOT_MAX_FRAMES} frames"
                    );
                    commands.entity(run.readback).despawn();
                    commands
                        .entity(camera)
                        .remove::<(SnapshotRun, TakeSnapshot)>();
                } else if run.frames >= SNAPSHOT_MAX_FRAMES {
                    warn!(
                        "bevy_nacre snapshot: the camera's picture did not settle in \
                         {SNAPSHOT_MAX_FRAMES} frames (something moves?); taking it as it is"
                    );
                    let picture = std::mem::take(&mut run.last);
                    finish(&mut commands, camera, &run, &picture, &mut taken);
                }
            }
            (None, _) => {
                let image = target.and_then(|t| t.as_image()).cloned();
                let readable = image
                    .as_ref()
                    .and_then(|h| images.get(h))
                    .filter(|i| i.texture_descriptor.usage.contains(TextureUsages::COPY_SRC));
                let (Some(handle), Some(picture)) = (image, readable) else {
                    error!(
                        "bevy_nacre snapshot: camera {camera} does not render into a readable \
                         image (give it `RenderTarget::Image` of `readable_target(..)`)"
                    );
                    commands.entity(camera).remove::<TakeSnapshot>();
                    continue;
                };
                let size = picture.size();
                let readback = commands
                    .spawn((SnapshotReadback { camera }, Readback::texture(handle)))
                    .id();
                commands.entity(camera).insert(SnapshotRun {
                    readback,
                    size,
                    frames: 0,
                    same: 0,
                    last: Vec::new(),
                });
            }
        }
    }
}

/// Compares each read-back picture with the one before; sends the snapshot once it settles.
pub(crate) fn receive_snapshot(
    event: On<ReadbackComplete>,
    mut commands: Commands,
    readbacks: Query<&SnapshotReadback>,
    mut runs: Query<&mut SnapshotRun, With<TakeSnapshot>>,
    settled: Res<SettledRenders>,
    mut taken: MessageWriter<SnapshotTaken>,
) {
    let Ok(readback) = readbacks.get(event.entity) else {
        return;
    };
    let camera = readback.camera;
    let Ok(mut run) = runs.get_mut(camera) else {
        return;
    };
    let same = settled_picture(&run.last, &event.data, settled.get());
    run.same = if same { run.same + 1 } else { 0 };
    run.last = event.data.clone();
    if run.same >= SETTLE_SAME {
        let picture = std::mem::take(&mut run.last);
        finish(&mut commands, camera, &run, &picture, &mut taken);
    }
}

/// Sends the snapshot and ends its run.
fn finish(
    commands: &mut Commands,
    camera: Entity,
    run: &SnapshotRun,
    picture: &[u8],
    taken: &mut MessageWriter<SnapshotTaken>,
) {
    commands.entity(run.readback).despawn();
    commands
        .entity(camera)
        .remove::<(SnapshotRun, TakeSnapshot)>();
    match frame_from_texture(picture, run.size.x, run.size.y) {
        Ok(frame) => {
            taken.write(SnapshotTaken { camera, frame });
        }
        Err(reason) => error!("bevy_nacre snapshot: {reason}"),
    }
}

/// An RGBA8 texture's bytes as the GPU copies them (rows padded to 256 bytes) to a [`Frame`].
pub(crate) fn frame_from_texture(
    data: &[u8],
    width: u32,
    height: u32,
) -> std::result::Result<Frame, String> {
    let row = width as usize * 4;
    let padded = row.div_ceil(256) * 256;
    if data.len() < padded * (height as usize).saturating_sub(1) + row {
        return Err(format!(
            "the GPU returned {} bytes for a {width}×{height} picture",
            data.len()
        ));
    }
    let mut rgba = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        rgba.extend_from_slice(&data[y * padded..y * padded + row]);
    }
    Ok(Frame {
        width,
        height,
        rgba,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_picture_settles_only_when_unchanged_drawn_and_no_shader_compiles() {
        let drawn = vec![10u8, 20, 30, 255];
        assert!(settled_picture(&drawn, &drawn, 2 * SETTLE_SAME + 1));
        // A shader compiled lately: parts of the scene may still be missing.
        assert!(!settled_picture(&drawn, &drawn, 2 * SETTLE_SAME));
        // The untouched target.
        assert!(!settled_picture(&[0; 4], &[0; 4], 100));
        // Still changing.
        assert!(!settled_picture(&[10, 20, 31, 255], &drawn, 100));
    }

    #[test]
    fn padded_rows_are_unpadded() {
        // 3 pixels a row: 12 bytes of picture, padded to 256.
        let mut data = vec![0u8; 256 * 2];
        data[..12].copy_from_slice(&[1; 12]);
        data[256..268].copy_from_slice(&[2; 12]);
        let frame = frame_from_texture(&data, 3, 2).unwrap();
        assert_eq!(frame.rgba[..12], [1; 12]);
        assert_eq!(frame.rgba[12..], [2; 12]);
        // 64 pixels a row fill 256 bytes exactly: no padding.
        let data: Vec<u8> = (0..256 * 2).map(|i| (i / 256) as u8).collect();
        let frame = frame_from_texture(&data, 64, 2).unwrap();
        assert_eq!(frame.rgba, data);
    }

    #[test]
    fn short_readbacks_are_refused() {
        let err = frame_from_texture(&[0; 100], 64, 2).unwrap_err();
        assert!(err.contains("100 bytes for a 64×2 picture"), "{err}");
    }
}
