//! Generated views on 3D materials.

use bevy::prelude::*;

use super::WorldViewFrame;

/// Put this on a [`WorldView`](super::WorldView) entity whose image is the
/// `base_color_texture` (or any texture) of a `StandardMaterial`. When a new frame arrives, the
/// plugin marks the material as modified in [`NacreSystems::Present`](super::NacreSystems), so
/// that Bevy binds the new texture.
///
/// Without it, a material keeps showing the first frame: writing a new buffer into an `Image`
/// makes the render world create a new GPU texture, but the material's bind group still points
/// at the old one until the material itself changes (Bevy issue #25433; still so in 0.19.1).
/// An `ImageNode` does not need this.
#[derive(Component, Clone, Debug)]
pub struct WorldViewMaterial(pub Handle<StandardMaterial>);

/// Marks the materials of views that received a frame this update as modified.
pub(crate) fn touch_materials(
    mut frames: MessageReader<WorldViewFrame>,
    views: Query<&WorldViewMaterial>,
    materials: Option<ResMut<Assets<StandardMaterial>>>,
) {
    let Some(mut materials) = materials else {
        frames.clear();
        return;
    };
    for frame in frames.read() {
        if let Ok(material) = views.get(frame.view)
            && let Some(mut m) = materials.get_mut(&material.0)
        {
            // Mutable access is what flags the asset as modified; nothing is changed.
            let _: &mut StandardMaterial = &mut m;
        }
    }
}
