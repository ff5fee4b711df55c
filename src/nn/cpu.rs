//! Access to the `f32` data of CPU tensors, and reusable per-thread scratch memory, for the
//! hand-written CPU kernels of this module.

use std::cell::RefCell;

use candle_core::{DType, Device, Result, Shape, Storage, Tensor};

/// Runs `f` on the contiguous `f32` data of a CPU tensor (made contiguous first if it is not).
///
/// Fails if the tensor is not an `f32` tensor on the CPU.
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    if t.dtype() != DType::F32 {
        candle_core::bail!("expected an f32 tensor, got {:?}", t.dtype());
    }
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!(
            "expected a CPU tensor, got one on {:?}",
            t.device().location()
        );
    };
    let data = cpu.as_slice::<f32>()?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("tensor is not contiguous after contiguous()");
    };
    Ok(f(&data[start..end]))
}

/// A CPU tensor of `shape` that takes ownership of `data` without copying it.
pub fn tensor_from_vec(data: Vec<f32>, shape: impl Into<Shape>) -> Result<Tensor> {
    Tensor::from_vec(data, shape.into(), &Device::Cpu)
}

/// Whether the hand-written CPU kernels can run on `t` (an `f32` tensor on the CPU).
pub fn is_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `len` floats of this thread's scratch memory (contents unspecified: `f` must
/// write before it reads). The memory is kept for the next call, so hot loops do not allocate;
/// a nested call on the same thread gets a fresh allocation instead.
pub fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}
