//! The public-figure gallery: a JSON file the trust-and-safety team edits.
//!
//! ```json
//! { "format": "likeness.gallery.v1",
//!   "model": "dlib_face_recognition_resnet_model_v1",
//!   "entries": [ { "id": "obama", "name": "Barack Obama",
//!                  "embeddings": [ { "vector": [128 numbers], "source": "where the photo came from" } ] } ] }
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Embedding, VisionError, EMBEDDING_DIM};

pub const GALLERY_FORMAT: &str = "likeness.gallery.v1";
pub const GALLERY_MODEL: &str = "dlib_face_recognition_resnet_model_v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gallery {
    pub format: String,
    pub model: String,
    pub entries: Vec<GalleryEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GalleryEntry {
    pub id: String,
    pub name: String,
    pub embeddings: Vec<GalleryEmbedding>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GalleryEmbedding {
    pub vector: Vec<f32>,
    /// A note on the source photo (provenance, licence), for reviewers.
    pub source: String,
}

/// One gallery entry close enough to a face.
#[derive(Debug, Clone, Serialize)]
pub struct GalleryMatch {
    pub id: String,
    pub name: String,
    /// Smallest Euclidean distance to any of the entry's embeddings.
    pub distance: f32,
}

impl Default for Gallery {
    fn default() -> Self {
        Gallery { format: GALLERY_FORMAT.into(), model: GALLERY_MODEL.into(), entries: Vec::new() }
    }
}

impl Gallery {
    pub fn load(path: &Path) -> Result<Gallery, VisionError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| VisionError::Gallery(format!("{}: {e}", path.display())))?;
        Gallery::parse(&text).map_err(|e| VisionError::Gallery(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Gallery, String> {
        let g: Gallery = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if g.format != GALLERY_FORMAT {
            return Err(format!("format is {:?}, expected {GALLERY_FORMAT:?}", g.format));
        }
        if g.model != GALLERY_MODEL {
            return Err(format!("embeddings are from {:?}, this build uses {GALLERY_MODEL:?}", g.model));
        }
        for e in &g.entries {
            if e.id.trim().is_empty() || e.embeddings.is_empty() {
                return Err(format!("entry {:?} needs an id and at least one embedding", e.name));
            }
            if let Some(bad) =
                e.embeddings.iter().find(|v| v.vector.len() != EMBEDDING_DIM || v.vector.iter().any(|x| !x.is_finite()))
            {
                return Err(format!(
                    "entry {:?}: an embedding has {} values, expected {EMBEDDING_DIM} finite numbers",
                    e.id,
                    bad.vector.len()
                ));
            }
        }
        Ok(g)
    }

    pub fn save(&self, path: &Path) -> Result<(), VisionError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| VisionError::Gallery(e.to_string()))?;
        let tmp = path.with_extension("json.part");
        std::fs::write(&tmp, text + "\n")
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| VisionError::Gallery(format!("{}: {e}", path.display())))
    }

    /// Adds an embedding under `id`, creating the entry if needed.
    pub fn add(&mut self, id: &str, name: &str, embedding: &Embedding, source: &str) -> Result<(), VisionError> {
        let vector = embedding.0.to_vec();
        match self.entries.iter_mut().find(|e| e.id == id) {
            Some(e) if e.name != name => {
                return Err(VisionError::Gallery(format!("entry {id:?} is named {:?}, not {name:?}", e.name)));
            }
            Some(e) => e.embeddings.push(GalleryEmbedding { vector, source: source.into() }),
            None => self.entries.push(GalleryEntry {
                id: id.into(),
                name: name.into(),
                embeddings: vec![GalleryEmbedding { vector, source: source.into() }],
            }),
        }
        Ok(())
    }

    /// Every entry within `threshold` of the face, nearest first.
    pub fn matches(&self, face: &Embedding, threshold: f32) -> Vec<GalleryMatch> {
        let mut found: Vec<GalleryMatch> = self
            .entries
            .iter()
            .filter_map(|e| {
                let d = e.embeddings.iter().map(|v| face.distance_to(&v.vector)).fold(f32::INFINITY, f32::min);
                (d < threshold).then(|| GalleryMatch { id: e.id.clone(), name: e.name.clone(), distance: d })
            })
            .collect();
        found.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        found
    }
}
