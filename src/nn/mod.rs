//! Neural-network building blocks shared by the DTGAN models.
//!
//! Everything here is plain candle code with no UI dependency: a fast CPU convolution
//! ([`conv`]), gradient-safe upsampling ([`upsample`]), spectral-normalised convolution
//! ([`spectral`]), compute-device selection ([`device`]) and crash-safe checkpoints
//! ([`checkpoint`]).

pub mod alloc;
pub mod checkpoint;
pub mod conv;
pub mod device;
pub mod spectral;
pub mod threads;
pub mod upsample;

use std::path::PathBuf;

/// Errors of the neural-network layer; file-related variants name the file.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A tensor operation failed (shape mismatch, device error, ...).
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// CUDA was requested but this binary was compiled without GPU support.
    #[error(
        "CUDA was requested but this build has no GPU support; rebuild with `cargo build --release --features cuda`"
    )]
    CudaNotBuilt,
    /// CUDA support is compiled in but no usable GPU was found.
    #[error("CUDA was requested but no usable GPU was found: {0}")]
    CudaUnavailable(String),
    /// Reading or writing a checkpoint file failed at the file-system level.
    #[error("checkpoint {}: {source}", path.display())]
    CheckpointIo {
        /// The checkpoint file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A checkpoint file could not be encoded, decoded or applied.
    #[error("checkpoint {}: {msg}", path.display())]
    CheckpointFormat {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
}

/// Deterministic test data shared by the unit tests of this module.
#[cfg(test)]
pub(crate) mod testutil {
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Seeded f64 values, uniform in [-1, 1).
    pub fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// A seeded random f64 tensor on the CPU.
    pub fn tensor(shape: &[usize], seed: u64) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(values(n, seed), shape, &Device::Cpu).expect("tensor from vec")
    }
}
