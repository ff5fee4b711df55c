//! Pixels to patch tokens and back: the grid every network of the default model works on.

use candle_core::{Result, Tensor};

/// Pixels `(batch, 3, H, W)` to patch tokens `(batch, tokens, patch²·3)`.
pub fn patchify(x: &Tensor, patch: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (hp, wp) = (h / patch, w / patch);
    x.reshape((b, c, hp, patch, wp, patch))?
        .permute((0, 2, 4, 3, 5, 1))?
        .reshape((b, hp * wp, patch * patch * c))
}

/// Patch tokens `(batch, tokens, patch²·3)` back to pixels `(batch, 3, H, W)`.
pub fn unpatchify(t: &Tensor, patch: usize, height: usize, width: usize) -> Result<Tensor> {
    let (b, _, _) = t.dims3()?;
    let (hp, wp) = (height / patch, width / patch);
    t.reshape((b, hp, wp, patch, patch, 3))?
        .permute((0, 5, 1, 3, 2, 4))?
        .reshape((b, 3, height, width))
}
