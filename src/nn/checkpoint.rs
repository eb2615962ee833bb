//! Crash-safe saving and loading of model variables as safetensors files.
//!
//! candle's `VarMap::save` writes the target file in place, so a crash mid-write would destroy
//! the previous checkpoint. Here the file is written beside the target under a temporary name,
//! flushed, and renamed over it, like [`crate::fsutil::write_atomic`].

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use super::NnError;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NnError + '_ {
    move |source| NnError::CheckpointIo {
        path: path.to_path_buf(),
        source,
    }
}

fn format_err(path: &Path, msg: impl std::fmt::Display) -> NnError {
    NnError::CheckpointFormat {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

/// Writes every variable of `map` to the safetensors file `path`, atomically.
pub fn save_varmap(map: &VarMap, path: &Path) -> Result<(), NnError> {
    let tensors: HashMap<String, Tensor> = map
        .data()
        .lock()
        .map_err(|_| format_err(path, "variable map lock poisoned"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    // Serialise in memory, then reuse the project's one atomic write (temp + fsync + rename).
    let bytes = safetensors::tensor::serialize(&tensors, None).map_err(|e| format_err(path, e))?;
    crate::fsutil::write_atomic(path, &bytes).map_err(io_err(path))
}

/// Overwrites every variable of `map` with the tensor of the same name in the file `path`.
///
/// The variables must already exist (build the model first); a variable missing from the file,
/// or one with a different shape, is an error naming the file. Extra tensors in the file are
/// ignored.
pub fn load_varmap(map: &VarMap, path: &Path) -> Result<(), NnError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let loaded = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| format_err(path, e))?;
    let data = map
        .data()
        .lock()
        .map_err(|_| format_err(path, "variable map lock poisoned"))?;
    let mut missing: Vec<&str> = data
        .keys()
        .filter(|k| !loaded.contains_key(*k))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        return Err(format_err(
            path,
            format!("missing tensors: {}", missing.join(", ")),
        ));
    }
    for (name, var) in data.iter() {
        let value = loaded[name]
            .to_device(var.device())
            .and_then(|t| t.to_dtype(var.dtype()))
            .map_err(|e| format_err(path, format!("{name}: {e}")))?;
        var.set(&value)
            .map_err(|e| format_err(path, format!("{name}: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::testutil;
    use candle_core::DType;
    use candle_nn::Init;

    fn map_with(seed: u64) -> VarMap {
        let map = VarMap::new();
        for (i, (name, shape)) in [("a.weight", vec![2, 3, 3, 3]), ("a.bias", vec![2])]
            .into_iter()
            .enumerate()
        {
            map.get(
                shape.as_slice(),
                name,
                Init::Const(0.0),
                DType::F64,
                &Device::Cpu,
            )
            .expect("create");
            let value = testutil::tensor(&shape, seed + i as u64);
            map.data().lock().expect("lock")[name]
                .set(&value)
                .expect("set");
        }
        map
    }

    fn values(map: &VarMap, name: &str) -> Vec<f64> {
        map.data().lock().expect("lock")[name]
            .as_tensor()
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .expect("values")
    }

    #[test]
    fn round_trip_restores_identical_tensors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ckpt").join("model.safetensors");
        let saved = map_with(1);
        save_varmap(&saved, &path).expect("save");
        let fresh = map_with(100);
        assert_ne!(values(&fresh, "a.weight"), values(&saved, "a.weight"));
        load_varmap(&fresh, &path).expect("load");
        for name in ["a.weight", "a.bias"] {
            assert_eq!(values(&fresh, name), values(&saved, name), "{name}");
        }
        let entries = fs::read_dir(path.parent().expect("parent"))
            .expect("list")
            .count();
        assert_eq!(entries, 1, "temporary file left behind");
    }

    #[test]
    fn truncated_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.safetensors");
        save_varmap(&map_with(1), &path).expect("save");
        let bytes = fs::read(&path).expect("read");
        fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
        let err = load_varmap(&map_with(2), &path).expect_err("truncated");
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }

    #[test]
    fn missing_variable_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("small.safetensors");
        let small = VarMap::new();
        small
            .get(2, "a.bias", Init::Const(1.0), DType::F64, &Device::Cpu)
            .expect("create");
        save_varmap(&small, &path).expect("save");
        let err = load_varmap(&map_with(3), &path).expect_err("weight missing");
        let msg = err.to_string();
        assert!(
            msg.contains("a.weight") && msg.contains("small.safetensors"),
            "{msg}"
        );
    }
}
