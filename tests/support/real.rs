//! The real parts a test may run against: a Qdrant server, an Open WebUI server,
//! the local embedding model and the OCR tools (Tesseract, pdftoppm). One home for the rule that a test needing a
//! part it cannot find fails instead of passing on what it could reach:
//!
//! - each part is found from the environment (`QDRANT_URL`, `RAGD_OWUI_URL` +
//!   `RAGD_OWUI_KEY`, the model directory, `tesseract` and `pdftoppm` on `PATH`);
//! - when `RAGD_REQUIRE_QDRANT`, `RAGD_REQUIRE_OWUI`, `RAGD_REQUIRE_MODEL` or
//!   `RAGD_REQUIRE_OCR` is set, a missing part panics;
//! - otherwise the test says on stderr which half it left out;
//! - every use is appended to `$RAGD_REAL_PARTS_LOG` (one `part<TAB>test` line),
//!   so `.ci/run` can say how many tests ran against each part.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A real part of the deployment that some tests run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Qdrant,
    OpenWebUi,
    Model,
    Ocr,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Qdrant => "qdrant",
            Part::OpenWebUi => "openwebui",
            Part::Model => "model",
            Part::Ocr => "ocr",
        }
    }

    fn require_var(self) -> &'static str {
        match self {
            Part::Qdrant => "RAGD_REQUIRE_QDRANT",
            Part::OpenWebUi => "RAGD_REQUIRE_OWUI",
            Part::Model => "RAGD_REQUIRE_MODEL",
            Part::Ocr => "RAGD_REQUIRE_OCR",
        }
    }

    fn required(self) -> bool {
        std::env::var(self.require_var()).is_ok_and(|v| !v.is_empty() && v != "0")
    }
}

/// The test this thread runs (libtest names each test's thread after it; a
/// tokio test's body is polled on that thread).
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned()
}

/// Record that the current test ran against `part`.
pub fn used(part: Part) {
    let Some(log) = std::env::var_os("RAGD_REAL_PARTS_LOG") else {
        return;
    };
    // One short O_APPEND write per line: lines from parallel tests do not interleave.
    let line = format!("{}\t{}\n", part.name(), test_name());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap_or_else(|e| panic!("RAGD_REAL_PARTS_LOG {}: {e}", Path::new(&log).display()));
    f.write_all(line.as_bytes())
        .expect("write RAGD_REAL_PARTS_LOG");
}

/// `part` is not at hand: panic when it is required, else say which half of
/// the current test was left out.
pub fn missing(part: Part, why: &str) {
    assert!(
        !part.required(),
        "{} is set but {}: {why}",
        part.require_var(),
        part.name()
    );
    eprintln!(
        "{}: the {} part ran without it ({why}; set {} to make this a failure)",
        test_name(),
        part.name(),
        part.require_var()
    );
}

/// `Some(value)` recorded as a use of `part`, or `None` after [`missing`].
fn found<T>(part: Part, value: Option<T>, why: &str) -> Option<T> {
    match value {
        Some(v) => {
            used(part);
            Some(v)
        }
        None => {
            missing(part, why);
            None
        }
    }
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The real Open WebUI from `scripts/openwebui-up.sh`: (url, API key).
pub fn open_webui() -> Option<(String, String)> {
    let server = non_empty_var("RAGD_OWUI_URL").zip(non_empty_var("RAGD_OWUI_KEY"));
    found(
        Part::OpenWebUi,
        server,
        "RAGD_OWUI_URL / RAGD_OWUI_KEY unset (scripts/openwebui-up.sh writes them)",
    )
}

/// The real Qdrant server's gRPC URL and API key (`QDRANT_URL`, `QDRANT_API_KEY`).
pub fn qdrant() -> Option<(String, Option<String>)> {
    let url = non_empty_var("QDRANT_URL");
    found(
        Part::Qdrant,
        url.map(|u| (u, non_empty_var("QDRANT_API_KEY"))),
        "QDRANT_URL unset (scripts/qdrant-up.sh starts one)",
    )
}

/// The local model directory (`RAGD_TEST_MODEL_DIR`, default
/// `models/all-MiniLM-L6-v2`), if it holds the weights.
pub fn model_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("RAGD_TEST_MODEL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2"),
    };
    let present = dir.join("model.safetensors").is_file();
    found(
        Part::Model,
        present.then_some(dir),
        "no model.safetensors (run scripts/fetch-model.sh)",
    )
}

/// The Qdrant server binary (`RAGD_QDRANT_BIN`, which `scripts/qdrant-up.sh`
/// writes to `qdrant.env`), for tests that start, kill and restart nodes of
/// their own.
pub fn qdrant_bin() -> Option<PathBuf> {
    let bin = non_empty_var("RAGD_QDRANT_BIN")
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    found(
        Part::Qdrant,
        bin,
        "RAGD_QDRANT_BIN unset or not a file (scripts/qdrant-up.sh writes it to qdrant.env)",
    )
}

/// Tesseract and pdftoppm on `PATH` (Debian `tesseract-ocr tesseract-ocr-eng
/// poppler-utils`): `Some(())` when both run.
pub fn ocr() -> Option<()> {
    let present =
        ragd::extract::tesseract_version().is_some() && ragd::extract::pdftoppm_version().is_some();
    found(
        Part::Ocr,
        present.then_some(()),
        "tesseract or pdftoppm not on PATH (apt-get install tesseract-ocr tesseract-ocr-eng poppler-utils)",
    )
}
