//! Extraction in separate worker processes, so that a parser cannot take the
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
//! A worker serves many files, one at a time. It writes [`REPLY_MAGIC`] once,
//! as soon as it starts; no magic means the executable is not a ragd worker.
//! Then, per file, the parent writes a request — the format's name (one length
//! byte, then the name) and the file's bytes (a `u64` little-endian length, then
//! the very bytes it hashed, so text and hash always belong together) — and the
//! worker answers with one frame: a byte that says whether it exits after this
//! reply, a `u64` little-endian length and a JSON `Reply`. End of input
//! between requests is the parent's way to retire a worker (or the parent is
//! gone): the worker exits 0. Anything else — a signal, another exit code, a
//! missing reply — is a failure that the parent classifies from the exit status
//! and the tail of stderr.
//!
//! # What runs where
//!
//! Plain text and Markdown are extracted in-process: their decoding
//! (`encoding_rs`, `chardetng`, a scan for binary data) is linear-time, loops
//! over the input once, allocates in proportion to it (which
//! `limits.max_file_bytes` bounds), and is fuzzed upstream and by ragd's own
//! fuzz target. Sending them to a worker would cost more than extracting them.
//!
//! PDF and HTML go to a worker. HTML too, because html5ever does not cap how
//! deeply elements nest and its tree building is quadratic in the nesting
//! depth: 20,000 nested `<div>`s take it 26 s in a debug build, and only a
//! worker can be stopped at a deadline. (The text walk in `html.rs` is
//! iterative, so depth alone no longer overflows a stack.) See
//! `deeply_nested_html_*` in `tests/hostile.rs`.
//!
//! # Cost: a pool of workers
//!
//! Starting the (debug, 1.3 GB) ragd binary costs milliseconds of mostly system
//! CPU (fork, exec, page faults); for a folder of small HTML files that was more
//! than the extraction itself, so workers are kept and reused. Idle workers wait
//! in a pool, keyed by what they were started with (executable, memory limit,
//! environment), so a worker only ever serves requests it would have been
//! started for; at most one per core waits, and one idle for `IDLE_TTL` is
//! retired.
//!
//! Reuse is safe because only a worker that answered cleanly goes back to the
//! pool. After a timeout, a crash, a panic (even one `pdf.rs` caught: the
//! worker says it exits after that reply) or an unreadable reply, the worker is
//! killed and reaped, and the next file gets a fresh one. A parser's state
//! cannot leak from one file into the next except through memory it left
//! allocated, and a worker is retired after `RECYCLE_AFTER` files so that
//! such leaks and heap fragmentation stay bounded. Workers are started from one
//! long-lived thread, because `PR_SET_PDEATHSIG` fires when the *thread* that
//! forked the worker ends, and blocking-pool threads come and go.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{ExtractError, ExtractOptions, OcrSettings};
use crate::document::{Document, Format, Section};

/// Timeouts of the same bytes after which a file is given up on until it
/// changes. One timeout may be a loaded machine, so the file is retried once;
/// a second one is taken as a property of the file.
pub const MAX_TIMEOUT_ATTEMPTS: u32 = 2;

/// The hidden subcommand the worker runs as (see `cli.rs`).
pub const WORKER_SUBCOMMAND: &str = "extract-worker";
/// Environment variable that makes the worker fail on purpose, for the tests
/// that prove a failure is contained: `panic`, `abort`, `loop`, `oom`, `stack`,
/// `sleep` (three seconds, then extract as usual), `print` (write to stdout,
/// then extract as usual) or `env` (panic naming the worker's environment
/// variables). With the prefix `marked-` (`marked-panic`, ...) only
/// files that contain [`TEST_FAULT_MARKER`] fail, so a test can make one file
/// of several fail in a worker that served others before. Only the worker
/// subcommand reads it.
pub const TEST_FAULT_ENV: &str = "RAGD_EXTRACT_WORKER_TEST_FAULT";
/// Environment variable that carries the worker's [`ExtractOptions`] (JSON):
/// the OCR settings and the time one file may take.
const OPTIONS_ENV: &str = "RAGD_EXTRACT_OPTIONS";
/// The bytes that trigger a `marked-` test fault (see [`TEST_FAULT_ENV`]).
pub const TEST_FAULT_MARKER: &str = "ragd-test-fault";
/// First bytes a worker writes: tells a ragd worker from any other program that
/// `worker_exe` might point at (a test harness, a stale path).
pub const REPLY_MAGIC: &[u8] = b"ragd-extract-worker v2\n";

/// Files one worker serves before it is retired: bounds what a parser's leaks
/// and heap fragmentation can add up to, at the price of one spawn per this
/// many files.
const RECYCLE_AFTER: u32 = 256;
/// An idle worker unused for this long is retired, so that a daemon with
/// nothing to do holds no workers.
const IDLE_TTL: Duration = Duration::from_secs(30);
/// Bytes of the worker's stderr kept to explain a crash.
const STDERR_TAIL: usize = 4096;
/// How long a worker that was told to exit, or a program that turned out not to
/// be a worker, gets to exit by itself before it is killed.
const GRACE: Duration = Duration::from_secs(1);
/// Stack of the threads that read a worker's stdout and stderr: they only copy
/// bytes.
const READER_STACK: usize = 64 * 1024;

/// First byte of a reply frame: the worker serves more requests.
const FRAME_MORE: u8 = 0;
/// First byte of a reply frame: the worker exits after this reply (something
/// panicked while it extracted, so its state is no longer trusted).
const FRAME_LAST: u8 = 1;

/// Workers started so far by this process, for the tests that prove reuse.
static SPAWNED: AtomicU64 = AtomicU64::new(0);

/// How extraction is isolated: `[limits]` of `ragd.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationLimits {
    /// Run risky formats in a worker process (`limits.isolate`). Off means
    /// in-process, where only a panic is caught.
    pub isolate: bool,
    /// Wall-clock time one file may take in a worker before the worker is killed.
    pub timeout: Duration,
    /// Address space of one worker, in MiB (`RLIMIT_AS`).
    pub memory_mb: u64,
    /// The ragd binary to run as the worker. Defaults to the running executable;
    /// tests point it at the real `ragd` binary, because their own executable is
    /// the test harness.
    pub worker_exe: PathBuf,
    /// Extra environment for the worker (the tests set [`TEST_FAULT_ENV`]).
    pub worker_env: Vec<(String, String)>,
    /// OCR of scanned PDF pages and images (`[ocr]`), done in the worker.
    pub ocr: OcrSettings,
    /// The largest answer the daemon reads from a worker: a worker (a parser
    /// gone wrong) may announce and stream any length.
    pub max_reply_bytes: u64,
}

/// [`IsolationLimits::max_reply_bytes`] for a text limit: JSON escaping and
/// the sections' fields on top of the text.
pub const fn reply_cap(max_text_bytes: u64) -> u64 {
    max_text_bytes.saturating_mul(2).saturating_add(1 << 20)
}

impl IsolationLimits {
    /// What extraction may do for a file under these limits.
    pub fn options(&self) -> ExtractOptions {
        ExtractOptions {
            ocr: self.ocr.clone(),
            budget: Some(self.timeout),
        }
    }
}

/// The running executable, which is ragd itself when ragd is running.
pub fn default_worker_exe() -> PathBuf {
    // If even that cannot be found, a bare name is looked up on PATH; a spawn
    // failure is reported as `WorkerUnavailable`, which is retried.
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ragd"))
}

/// Does `format` run in a worker when isolation is on? Every format but the
/// plain-text ones: their parsers (zip, XML, calamine, mail-parser) are young
/// code on hostile input, and OCR runs external tools.
pub const fn needs_worker(format: Format) -> bool {
    !matches!(
        format,
        Format::Markdown | Format::Text | Format::Delimited | Format::Code(_)
    )
}

/// Worker processes started by this process so far (reused ones count once).
pub fn workers_spawned() -> u64 {
    SPAWNED.load(Ordering::Relaxed)
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
        return super::extract_with(bytes, format, &limits.options());
    }
    let started = Instant::now();
    let result = run_worker(bytes, format, limits);
    tracing::debug!(
        path = %path.display(),
        took_ms = started.elapsed().as_millis() as u64,
        outcome = match &result { Ok(_) => "ok", Err(e) => e.kind().label() },
        "extraction worker finished"
    );
    result
}

/// What the worker sends for each request, inside a reply frame.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// The sections of the document.
    Ok(Vec<WireSection>),
    /// The sections read, and what was left out (`Document::warnings`). Sent
    /// only when something was left out, so that a reply of a file read whole
    /// is the same as before this variant existed.
    Partial {
        sections: Vec<WireSection>,
        warnings: Vec<String>,
    },
    /// Extraction failed the ordinary way.
    Err(ExtractError),
}

/// [`Section`] on the wire (the document types stay free of serde).
#[derive(Debug, Serialize, Deserialize)]
struct WireSection {
    text: String,
    page: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header_row: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ocr: bool,
}

impl From<Section> for WireSection {
    fn from(s: Section) -> Self {
        WireSection {
            text: s.text,
            page: s.page,
            headings: s.headings,
            header_row: s.header_row,
            ocr: s.ocr,
        }
    }
}

impl From<WireSection> for Section {
    fn from(s: WireSection) -> Self {
        Section {
            text: s.text,
            page: s.page,
            headings: s.headings,
            header_row: s.header_row,
            ocr: s.ocr,
        }
    }
}

fn run_worker(
    bytes: &[u8],
    format: Format,
    limits: &IsolationLimits,
) -> Result<Document, ExtractError> {
    let worker = match checkout(limits) {
        Some(worker) => worker,
        None => Worker::spawn(limits).map_err(|e| ExtractError::WorkerUnavailable {
            detail: format!(
                "cannot start the extraction worker {}: {e}",
                limits.worker_exe.display()
            ),
        })?,
    };
    let deadline = Instant::now() + limits.timeout;
    let (mut worker, frame) = worker.exchange(bytes, format, limits, deadline)?;
    let (result, trusted) = match serde_json::from_slice::<Reply>(&frame.json) {
        Ok(Reply::Ok(sections)) => (
            Ok(Document {
                format,
                sections: sections.into_iter().map(Section::from).collect(),
                warnings: Vec::new(),
            }),
            true,
        ),
        Ok(Reply::Partial { sections, warnings }) => (
            Ok(Document {
                format,
                sections: sections.into_iter().map(Section::from).collect(),
                warnings,
            }),
            true,
        ),
        // A caught panic still ran the parser into a state nobody checked.
        Ok(Reply::Err(e)) => {
            let trusted = !matches!(e, ExtractError::Panicked { .. });
            (Err(e), trusted)
        }
        Err(e) => (
            Err(ExtractError::Crashed {
                detail: format!("unreadable reply from the extraction worker: {e}"),
            }),
            false,
        ),
    };
    worker.served += 1;
    if trusted && !frame.last && worker.served < RECYCLE_AFTER {
        checkin(worker);
    } else {
        worker.retire();
    }
    result
}

/// Idle workers, oldest first.
static IDLE: Mutex<Vec<Worker>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data stays consistent whatever a panicking holder was doing: a list
    // of workers, a byte buffer, a sender.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An idle worker started for `limits`, if there is one that is still alive.
fn checkout(limits: &IsolationLimits) -> Option<Worker> {
    loop {
        let mut worker = {
            let mut idle = lock(&IDLE);
            // The most recently used one: the oldest are the first to expire.
            let at = idle.iter().rposition(|w| w.started_for(limits))?;
            idle.remove(at)
        };
        // Killed while idle (by an operator, the OOM killer): not this file's
        // fault, so it must not be the one blamed for the death.
        match worker.child.try_wait() {
            Ok(None) => return Some(worker),
            _ => drop(worker.stop(false)),
        }
    }
}

/// Put a worker that answered cleanly back in the pool.
fn checkin(mut worker: Worker) {
    worker.idle_since = Instant::now();
    static MAX_IDLE: OnceLock<usize> = OnceLock::new();
    // Enough for one extraction per core, the default `limits.extract_concurrency`.
    let max_idle =
        *MAX_IDLE.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let evicted = {
        let mut idle = lock(&IDLE);
        idle.push(worker);
        let excess = idle.len().saturating_sub(max_idle);
        idle.drain(..excess).collect::<Vec<_>>()
    };
    evicted.into_iter().for_each(Worker::retire);
}

/// Retire the workers idle for longer than [`IDLE_TTL`].
fn expire_idle() {
    let expired = {
        let mut idle = lock(&IDLE);
        // Oldest first, since `checkin` pushes to the end.
        let expired = idle
            .iter()
            .position(|w| w.idle_since.elapsed() < IDLE_TTL)
            .unwrap_or(idle.len());
        idle.drain(..expired).collect::<Vec<_>>()
    };
    expired.into_iter().for_each(Worker::retire);
}

/// What a worker was started with: it serves only requests with the same.
#[derive(Debug)]
struct WorkerKey {
    exe: PathBuf,
    memory_mb: u64,
    env: Vec<(String, String)>,
    /// Sent to the worker at its start (OCR settings, the file budget).
    options: ExtractOptions,
    /// Held by its stdout reader since the start.
    max_reply_bytes: u64,
}

/// One worker process and the threads that drain its output.
struct Worker {
    key: WorkerKey,
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::Receiver<Message>,
    stdout_reader: JoinHandle<()>,
    stderr_reader: JoinHandle<()>,
    /// The end of what the worker wrote to stderr since the current request.
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    /// Requests answered.
    served: u32,
    idle_since: Instant,
}

/// What the stdout reader thread passes on.
enum Message {
    Reply(Frame),
    /// A reply announced longer than `max_reply_bytes`: not read.
    Oversized(u64),
    /// The first bytes were not [`REPLY_MAGIC`].
    NotAWorker,
    /// Stdout ended (or broke): the worker is exiting.
    Closed,
}

/// One decoded reply frame.
struct Frame {
    /// The worker exits after this reply.
    last: bool,
    json: Vec<u8>,
}

/// The only variables of the daemon's environment a worker sees.
pub const WORKER_INHERITS: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "TESSDATA_PREFIX",
    "RUST_LOG",
];

impl Worker {
    /// Start `worker_exe extract-worker` with piped stdio and its resource
    /// limits, and the threads that read its output.
    fn spawn(limits: &IsolationLimits) -> std::io::Result<Worker> {
        let mut cmd = Command::new(&limits.worker_exe);
        cmd.arg(WORKER_SUBCOMMAND)
            // The worker parses hostile files: it gets none of the daemon's
            // environment (API keys, tokens), only what finding tools and
            // reading text need.
            .env_clear()
            .envs(
                WORKER_INHERITS
                    .iter()
                    .filter_map(|k| Some((k, std::env::var_os(k)?))),
            )
            // A crash report needs the message, not a backtrace (symbolizing one
            // costs time and memory inside the limit).
            .env("RUST_BACKTRACE", "0")
            .env(
                OPTIONS_ENV,
                serde_json::to_string(&limits.options()).expect("options serialize"),
            )
            .envs(limits.worker_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            let address_space = limits.memory_mb.saturating_mul(1024 * 1024);
            // SAFETY: the closure runs in the forked child before exec and only
            // makes async-signal-safe system calls (setrlimit, prctl); it
            // allocates nothing.
            unsafe {
                cmd.pre_exec(move || child_limits(address_space));
            }
        }
        let mut child = spawner::spawn(cmd)?;
        SPAWNED.fetch_add(1, Ordering::Relaxed);
        let stdin = child.stdin.take().expect("stdin is piped");
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        // Each pipe is drained by its own thread for the worker's whole life, so
        // that neither can fill up and stall the worker (a chatty parser, a
        // crash report written before the request was read in full).
        let (tx, replies) = mpsc::channel();
        let cap = limits.max_reply_bytes;
        let stdout_reader = std::thread::Builder::new()
            .name("ragd-extract-out".into())
            .stack_size(READER_STACK)
            .spawn(move || read_replies(&mut stdout, &tx, cap));
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let tail = Arc::clone(&stderr_tail);
        let stderr_reader = std::thread::Builder::new()
            .name("ragd-extract-err".into())
            .stack_size(READER_STACK)
            .spawn(move || read_tail(&mut stderr, STDERR_TAIL, &tail));
        let (stdout_reader, stderr_reader) = match (stdout_reader, stderr_reader) {
            (Ok(out), Ok(err)) => (out, err),
            (out, err) => {
                // Killing closes the pipes, which ends whichever thread started.
                let _ = child.kill();
                let _ = child.wait();
                let failed = [out.map(|t| t.join()).err(), err.map(|t| t.join()).err()];
                let e = failed.into_iter().flatten().next();
                return Err(e.unwrap_or_else(|| std::io::Error::other("thread spawn failed")));
            }
        };
        Ok(Worker {
            key: WorkerKey {
                exe: limits.worker_exe.clone(),
                memory_mb: limits.memory_mb,
                env: limits.worker_env.clone(),
                options: limits.options(),
                max_reply_bytes: limits.max_reply_bytes,
            },
            child,
            stdin,
            replies,
            stdout_reader,
            stderr_reader,
            stderr_tail,
            served: 0,
            idle_since: Instant::now(),
        })
    }

    fn started_for(&self, limits: &IsolationLimits) -> bool {
        self.key.exe == limits.worker_exe
            && self.key.memory_mb == limits.memory_mb
            && self.key.env == limits.worker_env
            && self.key.options == limits.options()
            && self.key.max_reply_bytes == limits.max_reply_bytes
    }

    /// Send one request and wait for its reply until `deadline`. Any failure
    /// kills and reaps the worker and says why; only a worker that replied
    /// comes back.
    fn exchange(
        mut self,
        bytes: &[u8],
        format: Format,
        limits: &IsolationLimits,
        deadline: Instant,
    ) -> Result<(Worker, Frame), ExtractError> {
        lock(&self.stderr_tail).clear();
        let Worker {
            child,
            stdin,
            replies,
            ..
        } = &mut self;
        let outcome = std::thread::scope(|scope| -> std::io::Result<_> {
            // Written from a thread so that a worker that stops reading (stuck,
            // or not a ragd worker at all) cannot block past the deadline.
            std::thread::Builder::new()
                .name("ragd-extract-in".into())
                .stack_size(READER_STACK)
                .spawn_scoped(scope, || {
                    // A worker that dies early closes its end: the write fails
                    // with EPIPE, and the exit status explains why.
                    let _ = write_request(stdin, format, bytes);
                })?;
            let message = replies.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            let status = match &message {
                Ok(Message::Reply(_)) => return Ok((message, None)),
                // Stdout closed: the worker is exiting (or has closed stdout and
                // hangs, which only a non-ragd program would do; the deadline
                // still holds).
                Ok(Message::Closed) => wait_until(child, deadline),
                Ok(Message::NotAWorker) => wait_until(child, deadline.min(Instant::now() + GRACE)),
                // Still writing the rest: killed below.
                Ok(Message::Oversized(_)) | Err(_) => None,
            };
            // Before the scope ends: killing is what unblocks a stuck writer.
            if status.is_none() {
                let _ = child.kill();
            }
            Ok((message, status))
        });
        let (message, status) = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                drop(self.stop(false));
                return Err(ExtractError::WorkerUnavailable {
                    detail: format!("cannot start a thread to feed the extraction worker: {e}"),
                });
            }
        };
        if let Ok(Message::Reply(frame)) = message {
            return Ok((self, frame));
        }
        let exited = status.is_some();
        let (reaped, stderr) = self.stop(false);
        let status = status.or(reaped);
        Err(match message {
            Ok(Message::NotAWorker) => ExtractError::WorkerUnavailable {
                // The worker writes the magic before it reads a byte of the
                // file, so this is a setup problem, not the file's fault.
                detail: format!(
                    "{} did not answer as a ragd extraction worker{}",
                    limits.worker_exe.display(),
                    status.map(|s| format!(" ({s})")).unwrap_or_default()
                ),
            },
            Ok(Message::Closed) if exited => {
                classify_exit(status.expect("the worker exited"), &stderr, limits)
            }
            Ok(Message::Oversized(bytes)) => ExtractError::TooMuchText {
                bytes,
                cap: limits.max_reply_bytes,
            },
            _ => ExtractError::Timeout {
                secs: limits.timeout.as_secs_f64().ceil() as u64,
            },
        })
    }

    /// Retire a worker that is in good order.
    fn retire(self) {
        drop(self.stop(true));
    }

    /// End the worker — by closing its input when `gently`, else (or if that
    /// does not work within [`GRACE`]) by killing it — and reap it. Returns its
    /// exit status and the tail of its stderr.
    fn stop(self, gently: bool) -> (Option<ExitStatus>, Vec<u8>) {
        let Worker {
            mut child,
            stdin,
            stdout_reader,
            stderr_reader,
            stderr_tail,
            ..
        } = self;
        drop(stdin);
        if !gently || wait_until(&mut child, Instant::now() + GRACE).is_none() {
            // Does nothing to a worker already reaped.
            let _ = child.kill();
        }
        let status = child.wait().ok();
        // The process is gone, so its pipes are closed and the readers end.
        let _ = stdout_reader.join();
        let _ = stderr_reader.join();
        let tail = std::mem::take(&mut *lock(&stderr_tail));
        (status, tail)
    }
}

/// The thread that starts every worker.
///
/// `PR_SET_PDEATHSIG` (see [`child_limits`]) fires when the thread that forked
/// the child ends, not the process: a worker forked from a blocking-pool thread
/// would be killed, idle in the pool, when that thread retires, and the next
/// file would be blamed for its death. This thread lives as long as the
/// process, and between spawns it retires workers that have been idle too long.
mod spawner {
    use super::*;

    struct Job {
        command: Command,
        done: mpsc::SyncSender<std::io::Result<Child>>,
    }

    static JOBS: Mutex<Option<mpsc::Sender<Job>>> = Mutex::new(None);

    /// Spawn `command` from the spawner thread, starting that thread if needed.
    pub(super) fn spawn(command: Command) -> std::io::Result<Child> {
        let gone = || std::io::Error::other("the extraction worker spawner thread is gone");
        let (done, result) = mpsc::sync_channel(1);
        let job = Job { command, done };
        {
            let mut jobs = lock(&JOBS);
            if jobs.is_none() {
                let (tx, rx) = mpsc::channel();
                std::thread::Builder::new()
                    .name("ragd-extract-spawner".into())
                    .spawn(move || serve(&rx))?;
                *jobs = Some(tx);
            }
            if jobs.as_ref().expect("set above").send(job).is_err() {
                // Only a panic ends the thread; the next call starts another.
                *jobs = None;
                return Err(gone());
            }
        }
        result.recv().map_err(|_| gone())?
    }

    fn serve(jobs: &mpsc::Receiver<Job>) {
        let mut expired_at = Instant::now();
        loop {
            match jobs.recv_timeout(IDLE_TTL / 2) {
                Ok(mut job) => {
                    // The caller may have given up; the child is then dropped
                    // with the reply and ends on the end of its input.
                    let _ = job.done.send(job.command.spawn());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if expired_at.elapsed() >= IDLE_TTL / 2 {
                expire_idle();
                expired_at = Instant::now();
            }
        }
    }
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
    // A worker must not outlive the daemon, even one killed with SIGKILL while
    // the worker is busy (an idle worker exits on the end of its input anyway).
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    Ok(())
}

/// Wait for the child to exit, until `deadline`. `None` means it is still running.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    // Only called when the worker is in its last instructions (its stdout has
    // closed, or its stdin): poll briefly rather than park a thread in `wait`.
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

/// The stdout reader thread: check the magic, then pass on each reply frame.
fn read_replies(stdout: &mut impl Read, replies: &mpsc::Sender<Message>, cap: u64) {
    let mut magic = [0u8; REPLY_MAGIC.len()];
    if stdout.read_exact(&mut magic).is_err() || magic != REPLY_MAGIC {
        let _ = replies.send(Message::NotAWorker);
        return;
    }
    loop {
        let message = match read_reply(stdout, cap) {
            Ok(Some(frame)) => Message::Reply(frame),
            Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                // Stop reading: the worker is discarded once this is seen.
                let _ = replies.send(Message::Oversized(oversized_len(&e)));
                return;
            }
            Ok(None) | Err(_) => Message::Closed,
        };
        let closed = matches!(message, Message::Closed);
        // The receiver is gone once the worker is discarded: nothing to do then.
        if replies.send(message).is_err() || closed {
            return;
        }
    }
}

/// One reply frame, or `None` at the end of the stream.
fn read_reply(r: &mut impl Read, cap: u64) -> std::io::Result<Option<Frame>> {
    let mut flag = [0u8; 1];
    if !read_exact_or_eof(r, &mut flag)? {
        return Ok(None);
    }
    let last = match flag[0] {
        FRAME_MORE => false,
        FRAME_LAST => true,
        other => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad reply frame flag {other}"),
            ));
        }
    };
    // The length is not trusted with an allocation: the JSON grows as it comes,
    // and only up to the cap.
    let mut len = [0u8; 8];
    r.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            Oversized(len),
        ));
    }
    let mut json = Vec::new();
    r.take(len).read_to_end(&mut json)?;
    if json.len() as u64 != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some(Frame { last, json }))
}

/// A reply frame announced longer than the cap, by its length.
#[derive(Debug)]
struct Oversized(u64);

impl std::fmt::Display for Oversized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a reply frame of {} bytes", self.0)
    }
}

impl std::error::Error for Oversized {}

fn oversized_len(e: &std::io::Error) -> u64 {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Oversized>())
        .map_or(0, |o| o.0)
}

/// Fill `buf`, or return false if the stream ends before its first byte.
fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A `u64` little-endian length and that many bytes, read into a buffer of
/// at most `reserve` bytes reserved up front.
fn read_payload(r: &mut impl Read, reserve: usize) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 8];
    r.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    let mut payload = Vec::with_capacity(reserve.min(usize::try_from(len).unwrap_or(usize::MAX)));
    r.take(len).read_to_end(&mut payload)?;
    if payload.len() as u64 != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(payload)
}

/// The parent's side of a request.
fn write_request(w: &mut impl Write, format: Format, bytes: &[u8]) -> std::io::Result<()> {
    let name = format.as_str().as_bytes();
    let mut header = Vec::with_capacity(1 + name.len() + 8);
    header.push(u8::try_from(name.len()).expect("format names are short"));
    header.extend_from_slice(name);
    header.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    w.write_all(&header)?;
    w.write_all(bytes)?;
    w.flush()
}

/// The worker's side of a request: the format and the file's bytes, or `None`
/// when the input ends between requests.
fn read_request(r: &mut impl Read) -> std::io::Result<Option<(Format, Vec<u8>)>> {
    let mut name_len = [0u8; 1];
    if !read_exact_or_eof(r, &mut name_len)? {
        return Ok(None);
    }
    let mut name = vec![0u8; usize::from(name_len[0])];
    r.read_exact(&mut name)?;
    let format = std::str::from_utf8(&name).ok().and_then(parse_format);
    let Some(format) = format else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unknown format {:?}", String::from_utf8_lossy(&name)),
        ));
    };
    // The parent is trusted with the length: allocating it all at once keeps a
    // large file from needing twice its size while the buffer grows, and a
    // file too large for the memory limit fails here, as out of memory.
    let bytes = read_payload(r, usize::MAX)?;
    Ok(Some((format, bytes)))
}

/// The stderr reader thread: read `r` to its end, keeping only the last `keep`
/// bytes in `tail`.
fn read_tail(r: &mut impl Read, keep: usize, tail: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
            Ok(n) => {
                let mut tail = lock(tail);
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > keep {
                    let excess = tail.len() - keep;
                    tail.drain(..excess);
                }
            }
        }
    }
}

/// Why a worker that exited by itself, before replying, gave no reply.
fn classify_exit(status: ExitStatus, stderr: &[u8], limits: &IsolationLimits) -> ExtractError {
    let stderr = String::from_utf8_lossy(stderr);
    // The allocator's message when an allocation fails; Rust then aborts.
    if stderr.contains("memory allocation of") {
        return ExtractError::OutOfMemory {
            limit_mb: limits.memory_mb,
        };
    }
    if stderr.contains("has overflowed its stack") {
        return ExtractError::Crashed {
            detail: "stack overflow".into(),
        };
    }
    if let Some(message) = panic_message(&stderr) {
        return ExtractError::Panicked { detail: message };
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return ExtractError::Crashed {
                detail: format!("killed by signal {signal} ({})", signal_name(signal)),
            };
        }
    }
    let last_line = stderr.lines().rev().find(|l| !l.trim().is_empty());
    ExtractError::Crashed {
        detail: format!(
            "the extraction worker exited with {status}{}",
            last_line.map(|l| format!(": {l}")).unwrap_or_default()
        ),
    }
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

/// Set by the worker's panic hook: something panicked, caught or not.
static WORKER_PANICKED: AtomicBool = AtomicBool::new(false);

/// The `extract-worker` subcommand: requests on stdin, a `Reply` for each on
/// stdout, until stdin ends.
///
/// Runs before the async runtime and telemetry start, so the worker is one
/// thread (its address space limit is spent on the parser, not on thread
/// stacks) and its stderr holds nothing but a crash report.
pub fn worker_main() -> ExitCode {
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
    // A panic that `pdf.rs` catches leaves the process running, in a state no
    // one checked: the worker reports it and exits after that reply.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        WORKER_PANICKED.store(true, Ordering::Relaxed);
        report(info);
    }));
    let fault = std::env::var(TEST_FAULT_ENV).ok();
    // Started by an older daemon, or by hand: parse only.
    let options = std::env::var(OPTIONS_ENV)
        .ok()
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_else(ExtractOptions::without_ocr);
    let mut input = std::io::stdin().lock();
    loop {
        let (format, bytes) = match read_request(&mut input) {
            Ok(Some(request)) => request,
            // The parent retires this worker, or is gone.
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("extract-worker: cannot read a request: {e}");
                return ExitCode::from(2);
            }
        };
        if let Some(fault) = &fault {
            test_fault(fault, &bytes);
        }
        let reply = match super::extract_with(&bytes, format, &options) {
            Ok(doc) => {
                let sections = doc.sections.into_iter().map(WireSection::from).collect();
                if doc.warnings.is_empty() {
                    Reply::Ok(sections)
                } else {
                    Reply::Partial {
                        sections,
                        warnings: doc.warnings,
                    }
                }
            }
            Err(e) => Reply::Err(e),
        };
        drop(bytes);
        let last = WORKER_PANICKED.load(Ordering::Relaxed);
        if let Err(e) = write_reply(&mut out, &reply, last) {
            eprintln!("extract-worker: cannot write the reply: {e}");
            return ExitCode::from(2);
        }
        if last {
            return ExitCode::SUCCESS;
        }
    }
}

/// The worker's side of a reply.
fn write_reply(out: &mut impl Write, reply: &Reply, last: bool) -> std::io::Result<()> {
    let json = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    let mut header = [0u8; 9];
    header[0] = if last { FRAME_LAST } else { FRAME_MORE };
    header[1..].copy_from_slice(&(json.len() as u64).to_le_bytes());
    out.write_all(&header)?;
    out.write_all(&json)?;
    out.flush()
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
    Format::ALL.into_iter().find(|f| f.as_str() == name)
}

/// Fail the way a broken parser would (see [`TEST_FAULT_ENV`]). Returns for an
/// unknown fault name, and for a `marked-` fault on a file without the marker.
fn test_fault(fault: &str, bytes: &[u8]) {
    let fault = match fault.strip_prefix("marked-") {
        Some(fault) => {
            let marker = TEST_FAULT_MARKER.as_bytes();
            if !bytes.windows(marker.len()).any(|w| w == marker) {
                return;
            }
            fault
        }
        None => fault,
    };
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
        // What a parser could read of the worker's environment: the names.
        "env" => {
            let mut names: Vec<String> = std::env::vars_os()
                .map(|(k, _)| k.to_string_lossy().into_owned())
                .collect();
            names.sort();
            panic!("worker environment: {}", names.join(","));
        }
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
    fn only_plain_text_formats_skip_the_worker() {
        for f in Format::ALL {
            let in_process = matches!(
                f,
                Format::Text | Format::Markdown | Format::Delimited | Format::Code(_)
            );
            assert_eq!(needs_worker(f), !in_process, "{f:?}");
        }
    }

    #[test]
    fn formats_round_trip_through_their_names() {
        for f in Format::ALL {
            assert_eq!(parse_format(f.as_str()), Some(f));
        }
        assert_eq!(parse_format("doc"), None);
    }

    #[test]
    fn sections_keep_their_structure_on_the_wire() {
        let section = Section {
            text: "row".into(),
            page: Some(2),
            headings: vec!["Sheet".into()],
            header_row: Some("h".into()),
            ocr: true,
        };
        let json = serde_json::to_string(&WireSection::from(section.clone())).unwrap();
        let back: WireSection = serde_json::from_str(&json).unwrap();
        assert_eq!(Section::from(back), section);
        // A plain section stays as small as before.
        let plain = serde_json::to_string(&WireSection::from(Section::new("t", None))).unwrap();
        assert_eq!(plain, r#"{"text":"t","page":null}"#);
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
        let tail = Mutex::new(Vec::new());
        read_tail(&mut input.as_slice(), 16, &tail);
        let tail = tail.into_inner().unwrap();
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
        assert_eq!(err.kind().as_str(), "worker_unavailable");
        assert!(!err.is_permanent());
    }

    #[test]
    fn requests_round_trip_and_end_cleanly_between_them() {
        let mut wire = Vec::new();
        write_request(&mut wire, Format::Html, b"<p>one</p>").unwrap();
        write_request(&mut wire, Format::Pdf, b"").unwrap();
        let mut r = wire.as_slice();
        let (f, b) = read_request(&mut r).unwrap().unwrap();
        assert_eq!((f, b.as_slice()), (Format::Html, b"<p>one</p>".as_slice()));
        let (f, b) = read_request(&mut r).unwrap().unwrap();
        assert_eq!((f, b.len()), (Format::Pdf, 0));
        assert!(read_request(&mut r).unwrap().is_none(), "end of input");
        // Cut inside a request (in the second one's length): an error, not a
        // clean end.
        let mut r = &wire[..wire.len() - 3];
        read_request(&mut r).unwrap().unwrap();
        assert!(read_request(&mut r).is_err());
    }

    #[test]
    fn replies_round_trip_with_their_last_flag() {
        let mut wire = Vec::new();
        write_reply(&mut wire, &Reply::Err(ExtractError::Empty), false).unwrap();
        let panicked = ExtractError::Panicked {
            detail: "boom".into(),
        };
        write_reply(&mut wire, &Reply::Err(panicked.clone()), true).unwrap();
        let mut r = wire.as_slice();
        let first = read_reply(&mut r, u64::MAX).unwrap().unwrap();
        assert!(!first.last);
        assert!(matches!(
            serde_json::from_slice(&first.json).unwrap(),
            Reply::Err(ExtractError::Empty)
        ));
        let second = read_reply(&mut r, u64::MAX).unwrap().unwrap();
        assert!(second.last);
        assert!(matches!(
            serde_json::from_slice(&second.json).unwrap(),
            Reply::Err(e) if e == panicked
        ));
        assert!(read_reply(&mut r, u64::MAX).unwrap().is_none());
        assert!(
            read_reply(&mut &wire[..4], u64::MAX).is_err(),
            "a cut frame"
        );
    }

    #[test]
    fn marked_faults_spare_unmarked_files() {
        // Returns: the marker is absent, and an unknown fault is none.
        test_fault("marked-panic", b"an ordinary file");
        test_fault("unknown", b"anything");
        // The same fault on a marked file does apply.
        let marked = format!("a file with {TEST_FAULT_MARKER} in it");
        let hit = std::panic::catch_unwind(|| test_fault("marked-panic", marked.as_bytes()));
        assert!(hit.is_err(), "a marked file must meet the fault");
    }
}
