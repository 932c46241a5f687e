//! Extraction in a separate worker process, so that a parser cannot take the
//! daemon down.
//!
//! PDF parsers are known to panic, overflow their stack, abort, loop forever and
//! allocate without bound on malformed files. `catch_unwind` (see `pdf.rs`)
//! only covers the first. [`extract_isolated`] therefore runs risky formats in a
//! child process — ragd re-executing itself with the hidden `extract-worker`
//! subcommand — under a wall-clock timeout and an address-space limit
//! (`RLIMIT_AS`). Whatever goes wrong kills that worker only and comes back as a
//! specific [`ExtractError`]: [`ExtractError::Timeout`],
//! [`ExtractError::OutOfMemory`], [`ExtractError::Crashed`] or
//! [`ExtractError::Panicked`].
//!
//! # Protocol
//!
//! The parent writes the file's bytes (the very bytes it hashed, so text and
//! hash always belong together) to the worker's stdin and closes it. The worker
//! writes [`REPLY_MAGIC`] at once, then, after extracting, one JSON [`Reply`],
//! and exits 0. Anything else — a signal, another exit code — is a failure
//! that the parent classifies from the exit status and the tail of stderr; no
//! magic at all means the executable is not a ragd worker.
//!
//! # What runs where
//!
//! Plain text and Markdown are extracted in-process: their decoding
//! (`encoding_rs`, `chardetng`, a scan for binary data) is linear-time, loops
//! over the input once, allocates in proportion to it (which
//! `limits.max_file_bytes` bounds), and is fuzzed upstream and by ragd's own
//! fuzz target. Spawning a worker for them would cost more than extracting them.
//!
//! PDF and HTML go to the worker. HTML too, because html5ever does not cap how
//! deeply elements nest, and the text walk in `html.rs` recurses once per
//! level: 20,000 nested `<div>`s overflow a 2 MiB blocking-pool thread's stack
//! (which in-process would abort the daemon) and take html5ever 26 s in a debug
//! build (its tree building is quadratic in the nesting depth); 50,000 overflow
//! even the worker's 8 MiB main thread. See `deeply_nested_html_*` in
//! `tests/hostile.rs`.
//!
//! # Cost
//!
//! One worker per file, no pool: a fresh process is the only state that is
//! certainly clean after a crash, and spawning the (debug, 1.3 GB) ragd binary
//! costs about 8 ms (`worker_spawn_cost` in `tests/hostile.rs` prints it),
//! small next to parsing a PDF and to embedding its text.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ExtractError;
use crate::document::{Document, Format, Section};

/// Default for `limits.extract_timeout_secs`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for `limits.extract_memory_mb`.
pub const DEFAULT_MEMORY_MB: u64 = 1024;
/// Timeouts of the same bytes after which a file is given up on until it
/// changes. One timeout may be a loaded machine, so the file is retried once;
/// a second one is taken as a property of the file.
pub const MAX_TIMEOUT_ATTEMPTS: u32 = 2;

/// The hidden subcommand the worker runs as (see `cli.rs`).
pub const WORKER_SUBCOMMAND: &str = "extract-worker";
/// Environment variable that makes the worker fail on purpose, for the tests
/// that prove a failure is contained: `panic`, `abort`, `loop`, `oom`, `stack`,
/// `sleep` (three seconds, then extract as usual) or `print` (write to stdout,
/// then extract as usual). Only the worker
/// subcommand reads it.
pub const TEST_FAULT_ENV: &str = "RAGD_EXTRACT_WORKER_TEST_FAULT";
/// First line of every reply: tells a ragd worker from any other program that
/// `worker_exe` might point at (a test harness, a stale path).
pub const REPLY_MAGIC: &[u8] = b"ragd-extract-worker v1\n";

/// Bytes of the worker's stderr kept to explain a crash.
const STDERR_TAIL: usize = 4096;

/// How extraction is isolated: `[limits]` of `ragd.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationLimits {
    /// Run risky formats in a worker process (`limits.isolate`). Off means
    /// in-process, where only a panic is caught.
    pub isolate: bool,
    /// Wall-clock time one worker may take before it is killed.
    pub timeout: Duration,
    /// Address space of one worker, in MiB (`RLIMIT_AS`).
    pub memory_mb: u64,
    /// The ragd binary to run as the worker. Defaults to the running executable;
    /// tests point it at the real `ragd` binary, because their own executable is
    /// the test harness.
    pub worker_exe: PathBuf,
    /// Extra environment for the worker (the tests set [`TEST_FAULT_ENV`]).
    pub worker_env: Vec<(String, String)>,
}

impl Default for IsolationLimits {
    fn default() -> Self {
        IsolationLimits {
            isolate: true,
            timeout: DEFAULT_TIMEOUT,
            memory_mb: DEFAULT_MEMORY_MB,
            worker_exe: default_worker_exe(),
            worker_env: Vec::new(),
        }
    }
}

/// The running executable, which is ragd itself when ragd is running.
pub fn default_worker_exe() -> PathBuf {
    // If even that cannot be found, a bare name is looked up on PATH; a spawn
    // failure is reported as `WorkerUnavailable`, which is retried.
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ragd"))
}

/// Does `format` run in a worker when isolation is on?
pub const fn needs_worker(format: Format) -> bool {
    matches!(format, Format::Pdf | Format::Html)
}

/// Extract `bytes` (the content of `path`) as `format`, in a worker process when
/// the format is risky and isolation is on. Blocking: call it from the blocking
/// pool. `path` is only used in log lines.
pub fn extract_isolated(
    path: &Path,
    bytes: &[u8],
    format: Format,
    limits: &IsolationLimits,
) -> Result<Document, ExtractError> {
    if !limits.isolate || !needs_worker(format) {
        return super::extract(bytes, format);
    }
    let started = Instant::now();
    let result = run_worker(bytes, format, limits);
    tracing::debug!(
        path = %path.display(),
        took_ms = started.elapsed().as_millis() as u64,
        outcome = match &result { Ok(_) => "ok", Err(e) => e.kind() },
        "extraction worker finished"
    );
    result
}

/// What the worker writes after [`REPLY_MAGIC`].
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// The sections of the document.
    Ok(Vec<WireSection>),
    /// Extraction failed the ordinary way.
    Err(ExtractError),
}

/// [`Section`] on the wire (the document types stay free of serde).
#[derive(Debug, Serialize, Deserialize)]
struct WireSection {
    text: String,
    page: Option<u32>,
}

fn run_worker(
    bytes: &[u8],
    format: Format,
    limits: &IsolationLimits,
) -> Result<Document, ExtractError> {
    let mut child = spawn(format, limits).map_err(|e| ExtractError::WorkerUnavailable {
        detail: format!(
            "cannot start the extraction worker {}: {e}",
            limits.worker_exe.display()
        ),
    })?;
    let deadline = Instant::now() + limits.timeout;

    // Three threads so that no pipe can fill up and stall the other two: the
    // worker may write (a crash report, say) before it has read all its input.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let (out_tx, out_rx) = mpsc::channel();
    let stdout_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let result = stdout.read_to_end(&mut buf).map(|_| buf);
        // The receiver may be gone after a timeout; nothing to do then.
        let _ = out_tx.send(result);
    });
    let stderr_reader = std::thread::spawn(move || read_tail(&mut stderr, STDERR_TAIL));
    let reply = std::thread::scope(|scope| {
        scope.spawn(move || {
            // A worker that dies early closes its end: the write fails with
            // EPIPE, and the exit status explains why.
            let _ = stdin.write_all(bytes);
        });
        out_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
    });

    let status = match reply {
        // Stdout closed: the worker is exiting (or has closed stdout and hangs,
        // which only a non-ragd program would do; the deadline still holds).
        Ok(_) => wait_until(&mut child, deadline),
        Err(_) => None,
    };
    let Some(status) = status else {
        // Killing closes the pipes, which ends the reader and writer threads.
        let _ = child.kill();
        let _ = child.wait();
        let _ = stdout_reader.join();
        let _ = stderr_reader.join();
        return Err(ExtractError::Timeout {
            secs: limits.timeout.as_secs_f64().ceil() as u64,
        });
    };
    let _ = stdout_reader.join();
    let stderr_tail = stderr_reader.join().unwrap_or_default();
    let stdout = match reply {
        Ok(Ok(buf)) => buf,
        _ => Vec::new(),
    };
    classify(status, &stdout, &stderr_tail, format, limits)
}

/// Start `worker_exe extract-worker --format F` with piped stdio and its
/// resource limits.
fn spawn(format: Format, limits: &IsolationLimits) -> std::io::Result<Child> {
    let mut cmd = Command::new(&limits.worker_exe);
    cmd.arg(WORKER_SUBCOMMAND)
        .arg("--format")
        .arg(format.as_str())
        // A crash report needs the message, not a backtrace (symbolizing one
        // costs time and memory inside the limit).
        .env("RUST_BACKTRACE", "0")
        .envs(limits.worker_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let address_space = limits.memory_mb.saturating_mul(1024 * 1024);
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (setrlimit, prctl); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || child_limits(address_space));
        }
    }
    cmd.spawn()
}

/// Applied in the child between fork and exec.
#[cfg(unix)]
fn child_limits(address_space: u64) -> std::io::Result<()> {
    let set = |resource, value: u64| {
        let limit = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: `limit` is a valid rlimit for the duration of the call.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // A memory blow-up fails an allocation instead of swapping the machine.
    set(libc::RLIMIT_AS, address_space)?;
    // An abort is expected now and then; it must not write a core file each time.
    set(libc::RLIMIT_CORE, 0)?;
    // A worker must not outlive the daemon (killed with SIGKILL, say).
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    Ok(())
}

/// Wait for the child to exit, until `deadline`. `None` means it is still running.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    // Stdout has closed, so the worker is in its last instructions: poll
    // briefly rather than park a thread in `wait`.
    let mut pause = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            // The child is ours and not yet reaped: this does not happen.
            Err(_) => return None,
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Read `r` to its end, keeping only the last `keep` bytes.
fn read_tail(r: &mut impl Read, keep: usize) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return tail,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > keep {
                    tail.drain(..tail.len() - keep);
                }
            }
        }
    }
}

/// Turn the worker's exit into the document or the reason there is none.
fn classify(
    status: ExitStatus,
    stdout: &[u8],
    stderr: &[u8],
    format: Format,
    limits: &IsolationLimits,
) -> Result<Document, ExtractError> {
    let stderr = String::from_utf8_lossy(stderr);
    let Some(json) = stdout.strip_prefix(REPLY_MAGIC) else {
        // The worker writes the magic before it reads a byte of the file, so
        // without it this is not a ragd worker (a test harness, a stale path) or
        // it could not even start: a setup problem, not the file's fault.
        return Err(ExtractError::WorkerUnavailable {
            detail: format!(
                "{} did not answer as a ragd extraction worker ({status})",
                limits.worker_exe.display()
            ),
        });
    };
    if status.success() {
        return match serde_json::from_slice::<Reply>(json) {
            Ok(Reply::Ok(sections)) => Ok(Document {
                format,
                sections: sections
                    .into_iter()
                    .map(|s| Section {
                        text: s.text,
                        page: s.page,
                    })
                    .collect(),
            }),
            Ok(Reply::Err(e)) => Err(e),
            Err(e) => Err(ExtractError::Crashed {
                detail: format!("unreadable reply from the extraction worker: {e}"),
            }),
        };
    }
    // The allocator's message when an allocation fails; Rust then aborts.
    if stderr.contains("memory allocation of") {
        return Err(ExtractError::OutOfMemory {
            limit_mb: limits.memory_mb,
        });
    }
    if stderr.contains("has overflowed its stack") {
        return Err(ExtractError::Crashed {
            detail: "stack overflow".into(),
        });
    }
    if let Some(message) = panic_message(&stderr) {
        return Err(ExtractError::Panicked { detail: message });
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return Err(ExtractError::Crashed {
                detail: format!("killed by signal {signal} ({})", signal_name(signal)),
            });
        }
    }
    let last_line = stderr.lines().rev().find(|l| !l.trim().is_empty());
    Err(ExtractError::Crashed {
        detail: format!(
            "the extraction worker exited with {status}{}",
            last_line.map(|l| format!(": {l}")).unwrap_or_default()
        ),
    })
}

/// The message of a Rust panic report on stderr ("thread 'main' panicked at
/// src/x.rs:1:2:\nMESSAGE").
fn panic_message(stderr: &str) -> Option<String> {
    let at = stderr.find("panicked at ")?;
    let mut lines = stderr[at..].lines();
    let location = lines.next()?.trim_start_matches("panicked at ");
    let message = lines.next().unwrap_or("").trim();
    Some(if message.is_empty() {
        location.trim_end_matches(':').to_owned()
    } else {
        message.to_owned()
    })
}

/// Names of the signals a crashing worker dies of.
#[cfg(unix)]
fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGABRT => "SIGABRT, aborted",
        libc::SIGSEGV => "SIGSEGV, invalid memory access",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// The `extract-worker` subcommand: bytes on stdin, a [`Reply`] on stdout.
///
/// Runs before the async runtime and telemetry start, so the worker is one
/// thread (its address space limit is spent on the parser, not on thread
/// stacks) and its stderr holds nothing but a crash report.
pub fn worker_main(format: &str) -> ExitCode {
    let Some(format) = parse_format(format) else {
        eprintln!("extract-worker: unknown format {format:?}");
        return ExitCode::from(2);
    };
    let mut out = match reply_channel() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("extract-worker: cannot set up stdout: {e}");
            return ExitCode::from(2);
        }
    };
    // The magic goes first, before anything can fail: a reply without it means
    // "not a ragd worker", never "this file crashed the parser".
    if let Err(e) = out.write_all(REPLY_MAGIC).and_then(|()| out.flush()) {
        eprintln!("extract-worker: cannot write to stdout: {e}");
        return ExitCode::from(2);
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut bytes) {
        eprintln!("extract-worker: cannot read stdin: {e}");
        return ExitCode::from(2);
    }
    if let Ok(fault) = std::env::var(TEST_FAULT_ENV) {
        test_fault(&fault);
    }
    let reply = match super::extract(&bytes, format) {
        Ok(doc) => Reply::Ok(
            doc.sections
                .into_iter()
                .map(|s| WireSection {
                    text: s.text,
                    page: s.page,
                })
                .collect(),
        ),
        Err(e) => Reply::Err(e),
    };
    let written = serde_json::to_writer(&mut out, &reply)
        .map_err(std::io::Error::other)
        .and_then(|()| out.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("extract-worker: cannot write the reply: {e}");
            ExitCode::from(2)
        }
    }
}

/// The worker's reply channel: the original stdout, moved to a private file
/// descriptor, with fd 1 pointed at stderr. A parser that prints (lopdf has
/// `println!`s) then cannot corrupt the reply; its output lands in the
/// stderr tail instead.
#[cfg(unix)]
fn reply_channel() -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain descriptor calls on fds 1 and 2, which the process owns;
    // the duplicate is owned by the returned File and closed exactly once.
    unsafe {
        let reply = libc::dup(libc::STDOUT_FILENO);
        if reply < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) < 0 {
            let e = std::io::Error::last_os_error();
            libc::close(reply);
            return Err(e);
        }
        Ok(std::fs::File::from_raw_fd(reply))
    }
}

/// Elsewhere stdout is the reply channel as it is.
#[cfg(not(unix))]
fn reply_channel() -> std::io::Result<std::io::Stdout> {
    Ok(std::io::stdout())
}

fn parse_format(name: &str) -> Option<Format> {
    [Format::Pdf, Format::Markdown, Format::Text, Format::Html]
        .into_iter()
        .find(|f| f.as_str() == name)
}

/// Fail the way a broken parser would. Returns for an unknown fault name.
fn test_fault(fault: &str) {
    match fault {
        "panic" => panic!("test fault: a parser panicked"),
        "abort" => std::process::abort(),
        "loop" => loop {
            // Busy, like a parser stuck in a cycle of objects.
            std::hint::black_box(0u64);
        },
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 64 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        // Chatty but well, like lopdf's stray println!s.
        "print" => println!("noise from a parser on stdout"),
        // Slow but well: lets a test change files while a run is under way.
        "sleep" => std::thread::sleep(Duration::from_secs(3)),
        "stack" => {
            std::hint::black_box(recurse(u64::MAX));
        }
        _ => {}
    }
}

/// Recursion that never returns in practice: a parser following a cycle.
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    if depth == 0 {
        return frame[0];
    }
    recurse(depth - 1).wrapping_add(frame[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdf_and_html_need_a_worker() {
        assert!(needs_worker(Format::Pdf));
        assert!(needs_worker(Format::Html));
        for f in [Format::Text, Format::Markdown] {
            assert!(!needs_worker(f), "{f:?}");
        }
    }

    #[test]
    fn formats_round_trip_through_their_names() {
        for f in [Format::Pdf, Format::Markdown, Format::Text, Format::Html] {
            assert_eq!(parse_format(f.as_str()), Some(f));
        }
        assert_eq!(parse_format("docx"), None);
    }

    #[test]
    fn panic_reports_give_their_message() {
        let stderr = "\nthread 'main' panicked at src/extract/isolate.rs:10:5:\ntest fault: boom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(panic_message(stderr).as_deref(), Some("test fault: boom"));
        assert_eq!(panic_message("nothing"), None);
    }

    #[test]
    fn stderr_tail_keeps_the_end() {
        let input = vec![b'a'; 10_000]
            .into_iter()
            .chain(*b"END")
            .collect::<Vec<_>>();
        let tail = read_tail(&mut input.as_slice(), 16);
        assert_eq!(tail.len(), 16);
        assert!(tail.ends_with(b"END"));
    }

    #[test]
    fn text_formats_never_start_a_worker() {
        let limits = IsolationLimits {
            worker_exe: PathBuf::from("/nonexistent/ragd"),
            ..IsolationLimits::default()
        };
        let doc = extract_isolated(Path::new("a.txt"), b"hello", Format::Text, &limits).unwrap();
        assert_eq!(doc.sections[0].text, "hello");
    }

    #[test]
    fn a_missing_worker_is_retried_not_blamed_on_the_file() {
        let limits = IsolationLimits {
            worker_exe: PathBuf::from("/nonexistent/ragd"),
            ..IsolationLimits::default()
        };
        let err = extract_isolated(Path::new("a.pdf"), b"%PDF", Format::Pdf, &limits).unwrap_err();
        assert_eq!(err.kind(), "worker_unavailable");
        assert!(!err.is_permanent());
    }
}
