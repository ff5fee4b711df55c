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

/// Independent per-thread scratch buffers, so that a kernel can hold one while the tasks it
/// spawns (which may run on the same thread) use another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scratch {
    /// A kernel's staged (padded, transposed or normalised) input.
    Input = 0,
    /// A kernel's intermediate output before its final layout.
    Output = 1,
    /// Working memory of one parallel task.
    Task = 2,
}

thread_local! {
    static SCRATCH: [RefCell<Vec<f32>>; 3] = const {
        [RefCell::new(Vec::new()), RefCell::new(Vec::new()), RefCell::new(Vec::new())]
    };
}

/// Runs `f` with `len` floats of this thread's scratch buffer `slot` (contents unspecified:
/// `f` must write before it reads). The memory is kept for the next call, so hot loops neither
/// allocate nor touch fresh pages; a nested use of the same slot on the same thread gets a fresh
/// allocation instead.
pub fn with_scratch<R>(slot: Scratch, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|slots| match slots[slot as usize].try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

/// A loop body to be compiled for the best SIMD instruction set of the running CPU (AVX2 and
/// FMA on most x86-64 machines) by [`vectorize`]. Implementations must mark [`Kernel::run`]
/// `#[inline(always)]` (and everything it calls), so that it is inlined into the dispatcher's
/// target-feature function; closures are not reliably inlined there.
pub trait Kernel {
    /// What the kernel returns.
    type Output;
    /// The loop body.
    fn run(self) -> Self::Output;
}

struct Dispatch<K>(K);

impl<K: Kernel> pulp::WithSimd for Dispatch<K> {
    type Output = K::Output;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> K::Output {
        self.0.run()
    }
}

/// Runs `kernel` compiled for the best instruction set this CPU supports (detected once).
pub fn vectorize<K: Kernel>(kernel: K) -> K::Output {
    pulp::Arch::new().dispatch(Dispatch(kernel))
}
