//! Reusable neural-network building blocks with fast CPU kernels, operating on candle tensors:
//! a convolution without im2col (`conv`), fused group norm and SiLU (`norm`), and the safe
//! strided matrix product they are built on (`gemm`). On GPU devices each falls back to
//! candle's own ops.

pub(crate) mod conv;
pub(crate) mod cpu;
pub(crate) mod gemm;
mod geometry;
pub(crate) mod norm;
/// The Winograd forms of [`conv`]'s 3×3 stride-1 convolutions.
mod winograd;

pub use conv::{ConvAlgorithm, FastConv2d, conv2d, conv2d_flops};
pub use norm::{
    Activation, ChannelMap, group_norm_affine, group_norm_map, group_norm_map_slices, silu,
};
