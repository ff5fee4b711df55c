//! Reusable neural-network building blocks with fast CPU kernels, operating on candle tensors:
//! a convolution without im2col (`conv`), fused group norm and SiLU (`norm`); for the default
//! model's inference, GELU and softmax (`activation`), a linear layer with its bias fused
//! (`linear`) and attention read straight from the packed `qkv` (`attention`); and the safe
//! strided matrix product they are built on (`gemm`). On GPU devices each falls back to
//! candle's own ops.

mod activation;
mod attention;
pub(crate) mod conv;
pub(crate) mod cpu;
pub(crate) mod gemm;
mod geometry;
mod linear;
pub(crate) mod norm;
/// The Winograd forms of [`conv`]'s 3×3 stride-1 convolutions.
mod winograd;

pub use activation::{fast_gelu, gelu, softmax_last_dim};
pub use attention::fused_attention;
pub use conv::{ConvAlgorithm, FastConv2d, conv2d, conv2d_flops};
pub use linear::linear;
pub use norm::{
    Activation, ChannelMap, group_norm_affine, group_norm_map, group_norm_map_slices, silu,
};

/// The largest absolute difference between two tensors of one shape: how the kernels' tests
/// compare against candle's ops.
#[cfg(test)]
pub(crate) fn max_abs_difference(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("two f32 tensors of one shape")
}
