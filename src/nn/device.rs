//! Choosing the compute device (CPU or a CUDA GPU) for training and inference.
//!
//! GPU support is a compile-time feature (`--features cuda`), so asking for CUDA in a CPU-only
//! build must fail with an explanation rather than silently run on the CPU.

use candle_core::Device;

use super::NnError;

/// The user's device preference, as given on the command line or in the settings.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The first CUDA GPU when the build supports it and one is present, otherwise the CPU.
    #[default]
    Auto,
    /// Always the CPU.
    Cpu,
    /// The first CUDA GPU; an error if it cannot be used.
    Cuda,
}

/// Turns a [`DeviceChoice`] into a candle device.
///
/// `Cuda` fails with [`NnError::CudaNotBuilt`] in a build without the `cuda` feature and with
/// [`NnError::CudaUnavailable`] when no GPU can be opened; `Auto` falls back to the CPU instead.
pub fn select_device(choice: DeviceChoice) -> Result<Device, NnError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => open_cuda(),
        DeviceChoice::Auto => match open_cuda() {
            Ok(device) => Ok(device),
            Err(NnError::CudaNotBuilt) => Ok(Device::Cpu),
            Err(e) => {
                tracing::warn!("{e}; falling back to the CPU");
                Ok(Device::Cpu)
            }
        },
    }
}

fn open_cuda() -> Result<Device, NnError> {
    if !candle_core::utils::cuda_is_available() {
        return Err(NnError::CudaNotBuilt);
    }
    Device::new_cuda(0).map_err(|e| NnError::CudaUnavailable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_choice_gives_cpu() {
        let device = select_device(DeviceChoice::Cpu).expect("cpu always works");
        assert!(device.is_cpu());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_is_an_explained_error() {
        let err = select_device(DeviceChoice::Cuda).expect_err("no cuda in this build");
        assert!(matches!(err, NnError::CudaNotBuilt));
        assert!(err.to_string().contains("--features cuda"), "{err}");
        let auto = select_device(DeviceChoice::Auto).expect("auto falls back");
        assert!(auto.is_cpu());
    }

    #[test]
    fn parses_from_command_line_names() {
        use clap::ValueEnum;
        for (name, want) in [
            ("auto", DeviceChoice::Auto),
            ("cpu", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda),
        ] {
            assert_eq!(DeviceChoice::from_str(name, true), Ok(want));
        }
        assert!(DeviceChoice::from_str("tpu", true).is_err());
    }
}
