//! What every convolution algorithm of [`conv`](super::conv) shares: the shapes of one
//! convolution, and the epilogue it ends with (bias, then residual), as a vectorised kernel.

use candle_core::Result;
use candle_nn::Conv2dConfig;

use super::cpu::{Kernel, vectorize};

/// Shapes of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Geom {
    pub(super) b: usize,
    pub(super) cin: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) cout: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) pad: usize,
    pub(super) stride: usize,
    pub(super) dil: usize,
    pub(super) groups: usize,
    pub(super) ho: usize,
    pub(super) wo: usize,
}

impl Geom {
    pub(super) fn new(x: &[usize], k: &[usize], cfg: &Conv2dConfig) -> Result<Self> {
        let (&[b, cin, h, w], &[cout, cin_g, kh, kw]) = (x, k) else {
            candle_core::bail!("conv2d: input {x:?} and weight {k:?} must both have rank 4");
        };
        let groups = cfg.groups.max(1);
        if cfg.stride == 0 || cfg.dilation == 0 {
            candle_core::bail!("conv2d: stride and dilation must be at least 1");
        }
        if cin != cin_g * groups || cout % groups != 0 {
            candle_core::bail!(
                "conv2d: input has {cin} channels, weight {k:?} with {groups} groups expects {}",
                cin_g * groups
            );
        }
        let hp = h + 2 * cfg.padding;
        let wp = w + 2 * cfg.padding;
        let span_h = (kh - 1) * cfg.dilation + 1;
        let span_w = (kw - 1) * cfg.dilation + 1;
        if kh == 0 || kw == 0 || hp < span_h || wp < span_w {
            candle_core::bail!(
                "conv2d: kernel {kh}x{kw} (dilation {}) does not fit input {h}x{w} with padding {}",
                cfg.dilation,
                cfg.padding
            );
        }
        Ok(Self {
            b,
            cin,
            h,
            w,
            cout,
            kh,
            kw,
            pad: cfg.padding,
            stride: cfg.stride,
            dil: cfg.dilation,
            groups,
            ho: (hp - span_h) / cfg.stride + 1,
            wo: (wp - span_w) / cfg.stride + 1,
        })
    }

    pub(super) fn is_winograd_shape(&self) -> bool {
        self.kh == 3 && self.kw == 3 && self.stride == 1 && self.dil == 1 && self.groups == 1
    }
}

/// What is added to a convolution's output: bias, then residual.
#[derive(Clone, Copy)]
pub(super) struct Epilogue<'a> {
    pub(super) bias: Option<&'a [f32]>,
    pub(super) residual: Option<&'a [f32]>,
}

/// Adds the bias and the residual to output planes `co0..` of image `bi` (`dst` holds whole
/// `plane`-sized planes), in the order `(conv + bias) + residual` of the reference.
pub(super) fn finish_planes(
    dst: &mut [f32],
    plane: usize,
    bi: usize,
    co0: usize,
    cout: usize,
    epi: Epilogue,
) {
    if epi.bias.is_some() || epi.residual.is_some() {
        vectorize(Finish {
            dst,
            plane,
            bi,
            co0,
            cout,
            epi,
        });
    }
}

/// [`finish_planes`] as a vectorised kernel.
struct Finish<'a> {
    dst: &'a mut [f32],
    plane: usize,
    bi: usize,
    co0: usize,
    cout: usize,
    epi: Epilogue<'a>,
}

impl Kernel for Finish<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Finish {
            dst,
            plane,
            bi,
            co0,
            cout,
            epi,
        } = self;
        finish_planes_scalar(dst, plane, bi, co0, cout, epi);
    }
}

#[inline(always)]
fn finish_planes_scalar(
    dst: &mut [f32],
    plane: usize,
    bi: usize,
    co0: usize,
    cout: usize,
    epi: Epilogue,
) {
    for (j, p) in dst.chunks_mut(plane).enumerate() {
        let co = co0 + j;
        if let Some(b) = epi.bias {
            let bv = b[co];
            p.iter_mut().for_each(|v| *v += bv);
        }
        if let Some(r) = epi.residual {
            let r = &r[(bi * cout + co) * plane..][..plane];
            p.iter_mut().zip(r).for_each(|(v, r)| *v += r);
        }
    }
}
