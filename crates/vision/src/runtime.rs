//! Finding and loading ONNX Runtime (dynamically, once per process) and the
//! model files, checked against `models/manifest.json`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::ValueType;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::VisionError;

pub const ORT_VERSION: &str = "1.31.1";
const ORT_FILE: &str = "libonnxruntime.so.1.31.1";

/// Where ONNX Runtime is looked for, in order: the configured path,
/// `ORT_DYLIB_PATH`, `.cache/onnxruntime/` in the working directory (where
/// `make setup` puts it), then beside the executable. Never in parent
/// directories: a library planted in one would run as this process.
pub fn locate_onnxruntime(explicit: Option<&Path>) -> Result<PathBuf, VisionError> {
    // A configured path is a promise: no silent fallback to another library.
    if let Some(p) = explicit {
        return std::path::absolute(p).ok().filter(|p| p.is_file()).ok_or_else(|| {
            VisionError::Runtime(format!("ONNX Runtime {ORT_VERSION} is not at the configured path {}", p.display()))
        });
    }
    let mut tried = Vec::new();
    let beside_binary = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join(ORT_FILE)));
    let candidates = std::env::var_os("ORT_DYLIB_PATH")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::current_dir().ok().map(|d| d.join(".cache/onnxruntime").join(ORT_FILE)))
        .chain(beside_binary);
    for c in candidates {
        if c.is_file() {
            return std::path::absolute(&c).map_err(|e| VisionError::Runtime(format!("{}: {e}", c.display())));
        }
        tried.push(c.display().to_string());
    }
    Err(VisionError::Runtime(format!(
        "ONNX Runtime {ORT_VERSION} was not found (looked at: {}). Run `make setup`, which extracts \
         {ORT_FILE} from the onnxruntime=={ORT_VERSION} wheel on the Python registry into .cache/onnxruntime/, \
         or set ORT_DYLIB_PATH to that file",
        tried.join(", ")
    )))
}

/// The process's one ONNX Runtime environment. A failure is remembered: ort
/// may not be touched again after a failed load (it would panic).
pub fn environment(explicit: Option<&Path>) -> Result<Environment, VisionError> {
    static ENV: OnceLock<Mutex<Option<Result<Environment, String>>>> = OnceLock::new();
    let cell = ENV.get_or_init(|| Mutex::new(None));
    let mut guard = cell.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(result) = guard.as_ref() {
        return result.clone().map_err(VisionError::Runtime);
    }
    let result = load_environment(explicit);
    *guard = Some(result.clone().map_err(|e| e.to_string()));
    result
}

fn load_environment(explicit: Option<&Path>) -> Result<Environment, VisionError> {
    let path = locate_onnxruntime(explicit)?;
    let builder = ort::init_from(&path)
        .map_err(|e| VisionError::Runtime(format!("cannot load ONNX Runtime from {}: {e}", path.display())))?;
    let env = builder
        .with_name("likeness")
        .with_telemetry(false)
        .build()
        .map_err(|e| VisionError::Runtime(format!("cannot start ONNX Runtime: {e}")))?;
    tracing::info!(path = %path.display(), "ONNX Runtime loaded");
    Ok(env)
}

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub models: Vec<ModelEntry>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ModelEntry {
    pub task: String,
    pub file: String,
    pub sha256: String,
    pub licence: String,
    pub source: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    /// Fixed sizes as numbers, symbolic (dynamic) ones as names.
    pub shape: Vec<serde_json::Value>,
}

impl Manifest {
    pub fn load(models_dir: &Path) -> Result<Manifest, VisionError> {
        let path = models_dir.join("manifest.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| VisionError::ModelMissing { file: path.display().to_string(), reason: e.to_string() })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| VisionError::ModelMismatch { file: path.display().to_string(), detail: e.to_string() })?;
        // A model is a file in the models folder, named plainly: an entry
        // such as `../../etc/x` or `/abs/path` would read outside it.
        for m in &manifest.models {
            let mut parts = Path::new(&m.file).components();
            if !matches!((parts.next(), parts.next()), (Some(std::path::Component::Normal(_)), None)) {
                return Err(VisionError::ModelMismatch {
                    file: path.display().to_string(),
                    detail: format!("model file {:?} is not a plain file name inside the models folder", m.file),
                });
            }
        }
        Ok(manifest)
    }

    pub fn entry(&self, task: &str) -> Result<&ModelEntry, VisionError> {
        self.models.iter().find(|m| m.task == task).ok_or_else(|| VisionError::ModelMismatch {
            file: "manifest.json".into(),
            detail: format!("no model for task {task}"),
        })
    }
}

/// Reads a model file and checks its SHA-256 against the manifest.
pub fn read_checked(dir: &Path, entry: &ModelEntry) -> Result<Vec<u8>, VisionError> {
    let path = dir.join(&entry.file);
    let bytes = std::fs::read(&path)
        .map_err(|e| VisionError::ModelMissing { file: path.display().to_string(), reason: e.to_string() })?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != entry.sha256 {
        return Err(VisionError::ModelAltered {
            file: path.display().to_string(),
            expected: entry.sha256.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// Builds a session from checked bytes and checks its tensors (names,
/// float32 element type, shapes) against the manifest. Any difference
/// refuses the model with an error that names the file.
pub fn load_session(
    env: &Environment,
    dir: &Path,
    entry: &ModelEntry,
    bytes: &[u8],
    threads: usize,
) -> Result<Session, VisionError> {
    let path = dir.join(&entry.file);
    let session = build_session(env, bytes, threads)
        .map_err(|e| VisionError::ModelMismatch { file: path.display().to_string(), detail: e.to_string() })?;
    let described = |outlets: &[ort::value::Outlet]| -> Vec<(String, ValueType)> {
        outlets.iter().map(|o| (o.name().to_string(), o.dtype().clone())).collect()
    };
    check_tensors("input", &described(session.inputs()), &entry.inputs)
        .and_then(|()| check_tensors("output", &described(session.outputs()), &entry.outputs))
        .map_err(|detail| VisionError::ModelMismatch { file: path.display().to_string(), detail })?;
    Ok(session)
}

/// Compares a session's tensors with the manifest: names, and shapes where
/// fixed sizes must be equal and symbolic ones dynamic.
fn check_tensors(kind: &str, actual: &[(String, ValueType)], expected: &[TensorSpec]) -> Result<(), String> {
    if actual.len() != expected.len() {
        return Err(format!("{} {kind}s, the manifest says {}", actual.len(), expected.len()));
    }
    for ((name, ty), spec) in actual.iter().zip(expected) {
        if *name != spec.name {
            return Err(format!("{kind} is named {name:?}, the manifest says {:?}", spec.name));
        }
        let ValueType::Tensor { shape, ty, .. } = ty else {
            return Err(format!("{kind} {name} is not a tensor"));
        };
        // Every model here takes and gives float32.
        if *ty != ort::value::TensorElementType::Float32 {
            return Err(format!("{kind} {name} holds {ty}, not float32"));
        }
        let same = shape.len() == spec.shape.len()
            && shape.iter().zip(&spec.shape).all(|(d, s)| match s.as_i64() {
                Some(fixed) => *d == fixed,
                None => *d < 0,
            });
        if !same {
            return Err(format!("{kind} {name} has shape {:?}, the manifest says {:?}", &shape[..], spec.shape));
        }
    }
    Ok(())
}

fn build_session(env: &Environment, bytes: &[u8], threads: usize) -> ort::Result<Session> {
    Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::Level3)?
        .with_intra_threads(threads)?
        .commit_from_memory(bytes)
}
