//! ragd's marker on an upload (`meta.data.ragd`): the only way ragd knows an
//! Open WebUI file as its own when the ledger has no row for it (a crash between
//! the upload and recording its id, a lost ledger, a moved file).
//!
//! Open WebUI keeps an upload's `metadata` as given and returns it in every
//! listing, so the marker says which installation, pipeline, knowledge base,
//! path and text version the upload holds. Every rule that decides from a
//! marker goes through [`UploadMarker::is_of`]: two ragd installations with the
//! same pipeline name (the default `docs`) on one Open WebUI must never adopt or
//! delete each other's uploads.

use serde_json::{Value, json};

/// Key of ragd's marker in upload metadata (`meta.data.ragd`).
pub const MARKER: &str = "ragd";

/// What ragd stamps on each upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadMarker {
    pub pipeline: String,
    /// The file's ledger key (path in the folder, per-source prefix included).
    pub path: String,
    /// Text hash of the version uploaded.
    pub content_hash: String,
    /// The knowledge base it was uploaded for: an identical file published by
    /// another pipeline to another base is never adopted.
    pub kb: String,
    /// The installation (`<state_dir>/instance`) that uploaded it. `None` on
    /// uploads made before installations had ids: those are never taken for
    /// this installation's by marker alone (they may be another's); the ones
    /// this installation made are known to its ledger by id.
    pub instance: Option<String>,
}

impl UploadMarker {
    /// The marker as it goes into upload metadata, under [`MARKER`].
    pub fn to_json(&self) -> Value {
        let mut m = json!({
            "pipeline": self.pipeline,
            "path": self.path,
            "content_hash": self.content_hash,
            "kb": self.kb,
        });
        if let Some(id) = &self.instance {
            m["instance"] = Value::String(id.clone());
        }
        m
    }

    /// The marker in an upload's metadata, if it carries a whole one. A marker
    /// from an older ragd without `kb` reads with an empty `kb` (it then matches
    /// no base).
    pub fn read(metadata: &Value) -> Option<UploadMarker> {
        let m = metadata.get(MARKER)?;
        let field = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(UploadMarker {
            pipeline: field("pipeline")?,
            path: field("path")?,
            content_hash: field("content_hash")?,
            kb: field("kb").unwrap_or_default(),
            instance: field("instance"),
        })
    }

    /// Whether the upload is this installation's, of this pipeline: the one
    /// test of ownership by marker.
    pub fn is_of(&self, instance: Option<&str>, pipeline: &str) -> bool {
        self.instance.as_deref() == instance && self.pipeline == pipeline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(instance: Option<&str>) -> UploadMarker {
        UploadMarker {
            pipeline: "docs".into(),
            path: "a/b.md".into(),
            content_hash: "h".into(),
            kb: "kb1".into(),
            instance: instance.map(str::to_owned),
        }
    }

    #[test]
    fn a_marker_reads_back_as_written() {
        for m in [marker(Some("i-1")), marker(None)] {
            let meta = json!({ MARKER: m.to_json(), "file_hash": "x" });
            assert_eq!(UploadMarker::read(&meta), Some(m));
        }
        assert_eq!(UploadMarker::read(&json!({})), None);
        assert_eq!(
            UploadMarker::read(&json!({ MARKER: {"pipeline": "docs"} })),
            None
        );
    }

    #[test]
    fn another_installations_upload_is_not_ours() {
        let m = marker(Some("i-1"));
        assert!(m.is_of(Some("i-1"), "docs"));
        assert!(!m.is_of(Some("i-2"), "docs"));
        assert!(!m.is_of(Some("i-1"), "other"));
        // An upload from before installation ids: not claimed by marker.
        assert!(!marker(None).is_of(Some("i-1"), "docs"));
    }
}
