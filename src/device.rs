//! Choosing the candle device inference runs on.

use candle_core::Device;
use serde::{Deserialize, Serialize};

/// Which device the worker should run models on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DevicePreference {
    /// A GPU if this build has one compiled in and one is present, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA GPU with this ordinal (needs the `cuda` cargo feature).
    Cuda(usize),
    /// Metal GPU with this ordinal (needs the `metal` cargo feature).
    Metal(usize),
}

/// The chosen device, and why it differs from what was asked for (if it does).
pub struct ChosenDevice {
    /// The device.
    pub device: Device,
    /// Set when the preference could not be honoured, e.g. "CUDA requested but this build has no
    /// `cuda` feature; using the CPU".
    pub fallback: Option<String>,
}

/// Picks a device, falling back to the CPU with a message rather than failing.
pub fn choose_device(pref: DevicePreference) -> ChosenDevice {
    let cpu = |why: String| ChosenDevice {
        device: Device::Cpu,
        fallback: Some(why),
    };
    match pref {
        DevicePreference::Cpu => ChosenDevice {
            device: Device::Cpu,
            fallback: None,
        },
        DevicePreference::Auto => {
            if candle_core::utils::cuda_is_available()
                && let Ok(device) = Device::new_cuda(0)
            {
                return ChosenDevice {
                    device,
                    fallback: None,
                };
            }
            if candle_core::utils::metal_is_available()
                && let Ok(device) = Device::new_metal(0)
            {
                return ChosenDevice {
                    device,
                    fallback: None,
                };
            }
            ChosenDevice {
                device: Device::Cpu,
                fallback: None,
            }
        }
        DevicePreference::Cuda(i) => {
            if !candle_core::utils::cuda_is_available() {
                return cpu(format!(
                    "CUDA device {i} requested, but this build has no `cuda` feature; using the CPU"
                ));
            }
            match Device::new_cuda(i) {
                Ok(device) => ChosenDevice {
                    device,
                    fallback: None,
                },
                Err(e) => cpu(format!("CUDA device {i} unavailable ({e}); using the CPU")),
            }
        }
        DevicePreference::Metal(i) => {
            if !candle_core::utils::metal_is_available() {
                return cpu(format!(
                    "Metal device {i} requested, but this build has no `metal` feature; using the CPU"
                ));
            }
            match Device::new_metal(i) {
                Ok(device) => ChosenDevice {
                    device,
                    fallback: None,
                },
                Err(e) => cpu(format!("Metal device {i} unavailable ({e}); using the CPU")),
            }
        }
    }
}

/// A short name for a device, for logs and benchmark reports.
pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        Device::Metal(_) => "metal".into(),
    }
}
