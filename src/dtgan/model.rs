//! The generator and critic with their variables, losses and single-file checkpoints.
//!
//! A checkpoint is one safetensors file, written atomically: the generator (`gen.*`), the critic
//! (`critic.*`), the spectral-norm vectors (`sn.*`), both optimizers' moments (`adam_g.*`,
//! `adam_d.*`), and in its metadata the training state and the run's configuration. One file
//! means a crash can never leave a checkpoint whose parts come from different steps.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::adam::Adam;
use super::config::{ModelConfig, TrainConfig};
use super::nets::{Critic, Generator};
use crate::nn::NnError;

/// Version of the checkpoint layout.
pub const CHECKPOINT_FORMAT: u32 = 1;

/// Where a run stands; saved in every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Layout version.
    pub format: u32,
    /// Generator steps done.
    pub step: u64,
    /// Best validation score so far (see [`Validation::score`]), and the step it was reached at.
    ///
    /// [`Validation::score`]: super::train::Validation::score
    pub best: Option<(f64, u64)>,
    /// What `best` measures ([`Validation::metric`]); absent in runs saved before there was a
    /// choice, whose `best` is the validation L1.
    ///
    /// [`Validation::metric`]: super::train::Validation::metric
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_metric: Option<String>,
    /// Wall-clock seconds spent training so far (across resumes).
    pub elapsed_s: f64,
}

/// Both networks, their variables and their optimizers.
pub struct Dtgan {
    /// The model sizes.
    pub model: ModelConfig,
    /// The device the tensors live on.
    pub device: Device,
    /// Generator weights.
    pub gen_vars: VarMap,
    /// Critic weights.
    pub critic_vars: VarMap,
    /// Spectral-norm vectors of both (never touched by the optimizers).
    pub buffers: VarMap,
    /// The generator.
    pub generator: Generator,
    /// The critic.
    pub critic: Critic,
}

impl Dtgan {
    /// Fresh networks with weights drawn from `seed`.
    pub fn new(model: &ModelConfig, device: &Device, seed: u64) -> candle_core::Result<Self> {
        let gen_vars = VarMap::new();
        let critic_vars = VarMap::new();
        let buffers = VarMap::new();
        let gvb = VarBuilder::from_varmap(&gen_vars, DType::F32, device);
        let cvb = VarBuilder::from_varmap(&critic_vars, DType::F32, device);
        let generator = Generator::new(model, gvb.pp("gen"), &buffers)?;
        let critic = Critic::new(model, cvb.pp("critic"), &buffers)?;
        // candle's CPU generator cannot be seeded, so draw the initial values here: the same
        // seed then gives the same network on every machine.
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        seeded_init(&gen_vars, &mut rng, false)?;
        seeded_init(&critic_vars, &mut rng, false)?;
        seeded_init(&buffers, &mut rng, true)?;
        Ok(Self {
            model: *model,
            device: device.clone(),
            gen_vars,
            critic_vars,
            buffers,
            generator,
            critic,
        })
    }
}

/// Sets weights to N(0, 2 / fan_in), biases to 0, and (with `unit`) every variable to a random unit
/// vector, leaving gains alone, visiting variables in name order so the result depends only on the seed.
pub(crate) fn seeded_init(
    map: &VarMap,
    rng: &mut ChaCha8Rng,
    unit: bool,
) -> candle_core::Result<()> {
    let data = map
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let n = var.elem_count();
        let mut normal = || {
            // Box-Muller: two uniforms give one standard normal value.
            let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            let u2: f64 = rng.random();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        };
        let values: Vec<f32> = if unit {
            let v: Vec<f64> = (0..n).map(|_| normal()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
            v.iter().map(|x| (x / norm) as f32).collect()
        } else if name.ends_with(".log_gain") {
            // Gains start at their configured value and are calibrated on data later.
            continue;
        } else if name.ends_with(".weight") {
            // He scale, sqrt(2 / fan_in). Spectral norm makes the function blind to the scale,
            // but Adam's steps are absolute, so the scale sets the effective learning rate:
            // DeepFill's N(0, 0.02) lets a single step of lr 1e-3 change every weight by 5 %,
            // which silences the deep generator's ReLUs within a few steps.
            let fan_in = var.dims().iter().skip(1).product::<usize>().max(1);
            let std = (2.0 / fan_in as f64).sqrt();
            (0..n).map(|_| (normal() * std) as f32).collect()
        } else {
            vec![0.0; n]
        };
        let t = Tensor::from_vec(values, var.shape(), var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}

/// Mean absolute error inside and outside the mask, each averaged over its own pixels.
///
/// `fake`, `real`: `(B, C, H, W)`; `mask`: `(B, 1, H, W)` in {0, 1}. An empty region gives 0.
pub fn masked_l1(
    fake: &Tensor,
    real: &Tensor,
    mask: &Tensor,
) -> candle_core::Result<(Tensor, Tensor)> {
    let c = fake.dim(1)? as f64;
    let diff = (fake - real)?.abs()?;
    let inside_n = (mask.sum_all()? * c)?;
    let outside_n = (((mask.ones_like()? - mask)?.sum_all()?) * c)?;
    let inside = diff.broadcast_mul(mask)?.sum_all()?;
    let outside = (diff.sum_all()? - &inside)?;
    let inside = (inside / inside_n.maximum(1.0)?)?;
    let outside = (outside / outside_n.maximum(1.0)?)?;
    Ok((inside, outside))
}

/// A checkpoint's tensors by name, and its metadata.
pub type CheckpointContents = (HashMap<String, Tensor>, HashMap<String, String>);

/// Reads every tensor and the metadata of a checkpoint file.
pub fn read_checkpoint(path: &Path) -> Result<CheckpointContents, NnError> {
    let bytes = std::fs::read(path).map_err(|source| NnError::CheckpointIo {
        path: path.to_path_buf(),
        source,
    })?;
    parse_checkpoint(path, &bytes)
}

/// Reads a checkpoint file once: its SHA-256 (hex) and its contents, so the hash names exactly
/// the weights loaded even if the file is replaced meanwhile.
pub fn read_checkpoint_hashed(path: &Path) -> Result<(String, CheckpointContents), NnError> {
    let bytes = std::fs::read(path).map_err(|source| NnError::CheckpointIo {
        path: path.to_path_buf(),
        source,
    })?;
    let sha = format!("{:x}", sha2::Sha256::digest(&bytes));
    Ok((sha, parse_checkpoint(path, &bytes)?))
}

/// Decodes a checkpoint file's bytes (read once, so a hash of the same bytes names exactly these
/// weights even if the file is replaced meanwhile); `path` is for the errors.
pub fn parse_checkpoint(path: &Path, bytes: &[u8]) -> Result<CheckpointContents, NnError> {
    let format_err = |msg: String| NnError::CheckpointFormat {
        path: path.to_path_buf(),
        msg,
    };
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| format_err(format!("not a safetensors file: {e}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| format_err(e.to_string()))?;
    Ok((tensors, metadata))
}

/// Copies tensors named `<prefix><var name>` into the variables of `map`.
pub fn restore_vars(
    map: &VarMap,
    prefix: &str,
    tensors: &HashMap<String, Tensor>,
) -> Result<(), String> {
    restore_vars_where(map, prefix, tensors, |_| true)
}

/// [`restore_vars`] for the variables whose name passes `keep`; the others are left as they are.
/// Every shape is checked before any variable changes, so a failure leaves `map` untouched.
pub fn restore_vars_where(
    map: &VarMap,
    prefix: &str,
    tensors: &HashMap<String, Tensor>,
    keep: impl Fn(&str) -> bool,
) -> Result<(), String> {
    let data = map
        .data()
        .lock()
        .map_err(|_| "variable map lock poisoned".to_string())?;
    let mut pairs = Vec::new();
    for (name, var) in data.iter().filter(|(name, _)| keep(name)) {
        let key = format!("{prefix}{name}");
        let t = tensors
            .get(&key)
            .ok_or_else(|| format!("missing tensor {key}"))?;
        if t.dims() != var.dims() {
            return Err(format!(
                "{key} has shape {:?}, the model expects {:?} (a checkpoint of another size?)",
                t.dims(),
                var.dims()
            ));
        }
        pairs.push((key, var, t));
    }
    for (key, var, t) in pairs {
        let t = t
            .to_device(var.device())
            .and_then(|t| t.to_dtype(var.dtype()))
            .map_err(|e| format!("{key}: {e}"))?;
        var.set(&t).map_err(|e| format!("{key}: {e}"))?;
    }
    Ok(())
}

/// Whether `tensors` holds a tensor of the right shape for every variable of `map`.
pub fn matches_all(map: &VarMap, prefix: &str, tensors: &HashMap<String, Tensor>) -> bool {
    let Ok(data) = map.data().lock() else {
        return false;
    };
    data.iter().all(|(name, var)| {
        tensors
            .get(&format!("{prefix}{name}"))
            .is_some_and(|t| t.dims() == var.dims())
    })
}

/// Named copies of the variables of `map`, each name prefixed.
pub fn named_vars(map: &VarMap, prefix: &str) -> HashMap<String, Tensor> {
    match map.data().lock() {
        Ok(data) => data
            .iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v.as_tensor().clone()))
            .collect(),
        Err(_) => HashMap::new(),
    }
}

/// Everything a checkpoint holds, borrowed from a live run (of any kind: the DTGAN and the
/// inpainting GAN write the same layout).
pub struct CheckpointParts<'a> {
    /// Variable maps and the prefix of their tensor names (`"sn."` for spectral-norm vectors).
    pub vars: Vec<(&'a str, &'a VarMap)>,
    /// Optimizers and the prefix of their moments (`"adam_g."`); their step counts go into the
    /// metadata as `<prefix>t`.
    pub opts: Vec<(&'a str, &'a Adam)>,
    /// The run's state.
    pub state: &'a TrainState,
    /// The run's configuration, as JSON.
    pub config: String,
}

impl<'a> CheckpointParts<'a> {
    /// A DTGAN run's parts.
    pub fn dtgan(
        nets: &'a Dtgan,
        opt_g: &'a Adam,
        opt_d: &'a Adam,
        state: &'a TrainState,
        config: &TrainConfig,
    ) -> Self {
        Self {
            vars: vec![
                ("", &nets.gen_vars),
                ("", &nets.critic_vars),
                ("sn.", &nets.buffers),
            ],
            opts: vec![("adam_g.", opt_g), ("adam_d.", opt_d)],
            state,
            config: serde_json::to_string(config).unwrap_or_default(),
        }
    }
}

/// Writes a checkpoint file atomically.
pub fn save_checkpoint(path: &Path, parts: &CheckpointParts) -> Result<(), NnError> {
    let format_err = |msg: String| NnError::CheckpointFormat {
        path: path.to_path_buf(),
        msg,
    };
    let mut tensors = HashMap::new();
    for (prefix, map) in &parts.vars {
        tensors.extend(named_vars(map, prefix));
    }
    let mut meta = HashMap::new();
    for (prefix, opt) in &parts.opts {
        tensors.extend(opt.state_tensors(prefix));
        meta.insert(format!("{prefix}t"), opt.t.to_string());
    }
    let state = serde_json::to_string(parts.state).map_err(|e| format_err(e.to_string()))?;
    meta.insert("state".to_string(), state);
    meta.insert("config".to_string(), parts.config.clone());
    let bytes = safetensors::tensor::serialize(&tensors, Some(meta))
        .map_err(|e| format_err(e.to_string()))?;
    crate::fsutil::write_atomic(path, &bytes).map_err(|source| NnError::CheckpointIo {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads a checkpoint's variables, optimizer moments and state into a live run (the inverse of
/// [`save_checkpoint`] with the same parts); returns the stored state.
pub fn restore_checkpoint(
    path: &Path,
    contents: &CheckpointContents,
    vars: &[(&str, &VarMap)],
    opts: &mut [(&str, &mut Adam)],
) -> Result<TrainState, NnError> {
    let (tensors, meta) = contents;
    let bad = |msg: String| NnError::CheckpointFormat {
        path: path.to_path_buf(),
        msg,
    };
    for (prefix, map) in vars {
        restore_vars(map, prefix, tensors).map_err(bad)?;
    }
    for (prefix, opt) in opts.iter_mut() {
        opt.load_state(prefix, tensors).map_err(bad)?;
        opt.t = meta
            .get(&format!("{prefix}t"))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| bad(format!("no {prefix}t")))?;
    }
    meta.get("state")
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| bad("no training state".into()))
}

/// Parses the configuration stored in a checkpoint's metadata.
pub fn checkpoint_config(
    path: &Path,
    metadata: &HashMap<String, String>,
) -> Result<TrainConfig, NnError> {
    let text = metadata
        .get("config")
        .ok_or_else(|| NnError::CheckpointFormat {
            path: path.to_path_buf(),
            msg: "no configuration in the metadata (not a DTGAN checkpoint?)".into(),
        })?;
    serde_json::from_str(text).map_err(|e| NnError::CheckpointFormat {
        path: path.to_path_buf(),
        msg: format!("bad configuration: {e}"),
    })
}
