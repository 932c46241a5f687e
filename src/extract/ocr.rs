//! OCR: the text of scanned PDF pages and of images, read by Tesseract.
//!
//! Tesseract (Debian `tesseract-ocr` and a `tesseract-ocr-LANG` package per
//! language) is the engine; PDF pages are rasterised with poppler's
//! `pdftoppm` (`poppler-utils`). Both run as child processes of the
//! extraction worker, so they inherit its address-space limit, die with it
//! (`PR_SET_PDEATHSIG`) when the daemon kills it at its deadline, and are
//! run one page at a time: a page that fails costs that page only.
//!
//! Each page is given until the file's deadline (the worker's
//! `limits.extract_timeout_secs`, minus a margin to reply); a page still
//! running then is killed and the pages read so far are kept. Tesseract runs
//! single-threaded (`OMP_THREAD_LIMIT=1`): files are already extracted one
//! per core, and its OpenMP threads cost more than they bring on small pages.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ExtractError;

/// `[ocr] enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OcrMode {
    /// On when `tesseract` can be run (the default).
    Auto,
    /// On; a missing `tesseract` is a `ragd doctor` failure.
    On,
    /// Off: scanned pages and images are reported, not read.
    Off,
}

/// How OCR runs: `[ocr]` of `ragd.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcrSettings {
    pub mode: OcrMode,
    /// Tesseract language codes (`eng`, `deu`, ...), tried together.
    pub languages: Vec<String>,
    /// Resolution PDF pages are rendered at.
    pub dpi: u32,
    /// Pages OCRed per file; later pages without text are left out.
    pub max_pages: u32,
}

impl OcrSettings {
    /// OCR off: nothing else applies. (Built here, not from `Default`, whose
    /// values are config's: extraction also compiles on its own, in the fuzz
    /// targets.)
    pub fn off() -> Self {
        OcrSettings {
            mode: OcrMode::Off,
            languages: Vec::new(),
            dpi: 0,
            max_pages: 0,
        }
    }

    /// `Ok` when OCR will run, else why not (for error messages and doctor).
    pub fn availability(&self) -> Result<(), String> {
        match self.mode {
            OcrMode::Off => Err("OCR is off ([ocr] enabled = false)".into()),
            OcrMode::Auto | OcrMode::On => match tesseract_version() {
                Some(_) => Ok(()),
                None => Err("OCR is not available: tesseract was not found on PATH \
                     (install tesseract-ocr and a language pack such as tesseract-ocr-eng)"
                    .into()),
            },
        }
    }

    /// Like [`Self::availability`], for PDF pages, which need pdftoppm too.
    pub fn pdf_availability(&self) -> Result<(), String> {
        self.availability()?;
        match pdftoppm_version() {
            Some(_) => Ok(()),
            None => Err(
                "OCR of PDF pages is not available: pdftoppm was not found on PATH \
                 (install poppler-utils)"
                    .into(),
            ),
        }
    }

    /// Tesseract's `-l`: the languages tried together (validation makes sure
    /// there is at least one).
    fn language_arg(&self) -> String {
        self.languages.join("+")
    }
}

/// The first line of `tesseract --version` ("tesseract 5.3.0"), or `None`
/// when it cannot be run. Looked up once per process.
pub fn tesseract_version() -> Option<String> {
    static VERSION: OnceLock<Option<String>> = OnceLock::new();
    VERSION
        .get_or_init(|| first_line_of(Command::new("tesseract").arg("--version")))
        .clone()
}

/// The first line of `pdftoppm -v` ("pdftoppm version 22.12.0"), or `None`.
pub fn pdftoppm_version() -> Option<String> {
    static VERSION: OnceLock<Option<String>> = OnceLock::new();
    VERSION
        .get_or_init(|| first_line_of(Command::new("pdftoppm").arg("-v")))
        .clone()
}

/// The languages Tesseract has data for (`tesseract --list-langs`).
pub fn tesseract_languages() -> Vec<String> {
    let Ok(out) = Command::new("tesseract")
        .arg("--list-langs")
        .stdin(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    // "List of available languages in "/usr/share/...tessdata/" (2):" then one a line.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

fn first_line_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.stdin(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    // Older tools print their version on stderr.
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_owned())
}

/// A scratch folder for one file's OCR, removed when dropped.
pub(super) struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub(super) fn new() -> Result<Self, ExtractError> {
        let dir = tempfile::Builder::new()
            .prefix("ragd-ocr-")
            .tempdir()
            .map_err(|e| ExtractError::OcrFailed {
                detail: format!("cannot create a scratch folder: {e}"),
            })?;
        Ok(Scratch { dir })
    }

    /// Write `bytes` to a file named `name` in the scratch folder.
    pub(super) fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, ExtractError> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).map_err(|e| ExtractError::OcrFailed {
            detail: format!("cannot write {}: {e}", path.display()),
        })?;
        Ok(path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The text of every page of the image at `image` (a multi-page TIFF has
/// several), one string per page.
pub(super) fn image_pages(
    scratch: &Scratch,
    image: &Path,
    settings: &OcrSettings,
    deadline: Option<Instant>,
) -> Result<Vec<String>, ExtractError> {
    let base = scratch.path("image-out");
    let mut cmd = Command::new("tesseract");
    cmd.arg(image)
        .arg(&base)
        .arg("-l")
        .arg(settings.language_arg());
    run(cmd, scratch, "tesseract", deadline)?;
    let text = read_output(&base.with_extension("txt"))?;
    // Tesseract ends every page with a form feed.
    Ok(text
        .split('\x0c')
        .map(|p| p.trim().to_owned())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .skip_while(String::is_empty)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect())
}

/// Rasterise page `page` (from 1) of the PDF at `pdf` at `settings.dpi` and
/// read its text.
pub(super) fn pdf_page(
    scratch: &Scratch,
    pdf: &Path,
    page: u32,
    settings: &OcrSettings,
    deadline: Option<Instant>,
) -> Result<String, ExtractError> {
    let prefix = scratch.path(&format!("page-{page}"));
    let mut render = Command::new("pdftoppm");
    render
        .arg("-r")
        .arg(settings.dpi.to_string())
        .arg("-f")
        .arg(page.to_string())
        .arg("-l")
        .arg(page.to_string())
        .args(["-gray", "-png", "-singlefile"])
        .arg(pdf)
        .arg(&prefix);
    run(render, scratch, "pdftoppm", deadline)?;
    let image = prefix.with_extension("png");
    let base = scratch.path(&format!("page-{page}-out"));
    let mut read = Command::new("tesseract");
    read.arg(&image)
        .arg(&base)
        .arg("-l")
        .arg(settings.language_arg())
        .arg("--dpi")
        .arg(settings.dpi.to_string());
    let result = run(read, scratch, "tesseract", deadline);
    // The page image is some megabytes: do not keep one per page.
    let _ = std::fs::remove_file(&image);
    result?;
    let text = read_output(&base.with_extension("txt"))?;
    let _ = std::fs::remove_file(base.with_extension("txt"));
    Ok(text.replace('\x0c', "").trim().to_owned())
}

fn read_output(path: &Path) -> Result<String, ExtractError> {
    let bytes = std::fs::read(path).map_err(|e| ExtractError::OcrFailed {
        detail: format!("tesseract wrote no text file {}: {e}", path.display()),
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Run a tool to completion or until `deadline`, killing it then. Its output
/// goes to files (the tools write them), its stderr to a file in `scratch`,
/// so no pipe can fill up and stall it.
fn run(
    mut cmd: Command,
    scratch: &Scratch,
    tool: &str,
    deadline: Option<Instant>,
) -> Result<(), ExtractError> {
    let stderr_path = scratch.path(&format!("{tool}.stderr"));
    let stderr = std::fs::File::create(&stderr_path).map_err(|e| ExtractError::OcrFailed {
        detail: format!("cannot create {}: {e}", stderr_path.display()),
    })?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .env("OMP_THREAD_LIMIT", "1");
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no
        // pointers; it is async-signal-safe and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|e| ExtractError::OcrFailed {
        detail: format!("cannot run {tool}: {e}"),
    })?;
    let mut pause = Duration::from_millis(5);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                return Err(ExtractError::OcrFailed {
                    detail: format!("cannot wait for {tool}: {e}"),
                });
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ExtractError::OcrFailed {
                detail: format!("{tool} was still running at the file's deadline"),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    if status.success() {
        return Ok(());
    }
    let stderr = std::fs::read(&stderr_path).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr);
    // The last few lines: Tesseract ends every failure with "Error during
    // processing.", the cause is on the lines before.
    let mut last: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .rev()
        .take(3)
        .collect();
    last.reverse();
    let mut words: String = last.join("; ");
    if words.len() > 400 {
        let cut = (0..=400)
            .rev()
            .find(|&i| words.is_char_boundary(i))
            .unwrap_or(0);
        words.truncate(cut);
    }
    Err(ExtractError::OcrFailed {
        detail: format!("{tool} failed ({status}): {words}"),
    })
}
