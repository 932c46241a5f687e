//! Helpers for daemon tests: run `ragd run` in-process over a [`TestEnv`], or
//! start the real binary over a throwaway installation, and wait for outcomes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ragd::daemon::{self, Control, DaemonOptions};
use ragd::embed::server::{self, EmbedServerConfig, EmbedServerHandle};
use ragd::ledger::{FileState, Ledger};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::embed::MODEL;
use super::env::{DIM, TestEnv};

/// Settle time for tests: short, so tests are quick, but real.
pub const TEST_SETTLE: Duration = Duration::from_millis(300);

/// How long an outcome may take on a loaded 2-core machine before it counts as
/// never happening. Generous on purpose: tests assert outcomes, never timing.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// `ragd run` in this process, over `env`'s store.
pub struct InProcessDaemon {
    pub ledger: Arc<Ledger>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl InProcessDaemon {
    pub fn start(env: &TestEnv) -> Self {
        // `RUST_LOG=ragd=debug cargo test ... daemon::` shows what the daemon did.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let app = env.app();
        let ledger = app.ledger.clone();
        let shutdown = CancellationToken::new();
        let options = DaemonOptions {
            settle_override: Some(TEST_SETTLE),
            http: false,
            ..Default::default()
        };
        let control = Control::with_shutdown(shutdown.clone());
        let task = tokio::spawn(async move {
            daemon::run(app, options, control)
                .await
                .expect("daemon runs");
        });
        InProcessDaemon {
            ledger,
            shutdown,
            task,
        }
    }

    /// SIGTERM-equivalent; waits for the drain. Releases the state lock.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("daemon task");
    }

    pub fn state(&self, rel: &str) -> Option<FileState> {
        self.ledger.get("docs", rel).ok().flatten().map(|r| r.state)
    }

    pub fn count(&self, state: FileState) -> u64 {
        self.ledger
            .count_by_state("docs")
            .ok()
            .and_then(|m| m.get(&state).copied())
            .unwrap_or(0)
    }
}

/// Poll `check` every 100 ms until it is true; panic with `what` after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_within(what, DEADLINE, check).await;
}

/// [`eventually`] with another deadline (for bursts of thousands of files).
pub async fn eventually_within<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < until, "not within {deadline:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A throwaway installation for the `ragd` binary: nothing in this process opens
/// its store while the binary runs (embedded Qdrant has one writer).
pub struct BinEnv {
    /// Kept alive for the binary to call.
    _embed: EmbedServerHandle,
    pub dir: tempfile::TempDir,
    pub listen: std::net::SocketAddr,
}

impl BinEnv {
    /// Embedding server with `delay` per text, so work takes long enough to be
    /// interrupted.
    pub async fn new(delay: Duration) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = EmbedServerConfig::single(MODEL, DIM);
        config.delay_per_text = delay;
        let embed = server::spawn(config, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("embedding server");
        let listen = free_port();
        for d in ["config", "pipelines", "docs"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(
            dir.path().join("config/ragd.toml"),
            format!(
                "state_dir = \"../state\"\npipelines_dir = \"../pipelines\"\n\
                 [embedding]\nurl = \"{}\"\nmax_retries = 3\nconcurrency = 1\n[server]\nlisten = \"{listen}\"\n",
                embed.url()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pipelines/docs.toml"),
            format!(
                "sources = [\"../docs\"]\nsettle_ms = 300\n[embedding]\nmodel = \"{MODEL}\"\n\
                 batch_size = 4\n[chunking]\nmax_size = 400\noverlap = 40\n"
            ),
        )
        .unwrap();
        BinEnv {
            _embed: embed,
            dir,
            listen,
        }
    }

    pub fn docs(&self) -> PathBuf {
        self.dir.path().join("docs")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Start `ragd run`, logging to `<dir>/ragd-<n>.log`.
    pub fn start(&self, n: u32) -> Child {
        let log = std::fs::File::create(self.dir.path().join(format!("ragd-{n}.log"))).unwrap();
        Command::new(crate::support::ragd_bin())
            .args(["-c"])
            .arg(self.dir.path().join("config/ragd.toml"))
            .args(["run", "--shutdown-timeout", "30"])
            .env("RUST_LOG", "ragd=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ragd")
    }

    pub fn log(&self, n: u32) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("ragd-{n}.log"))).unwrap_or_default()
    }

    /// The ledger, opened next to the running binary (SQLite WAL allows a reader).
    pub fn ledger(&self) -> Option<Ledger> {
        let p = self.state_dir().join("ledger.sqlite");
        p.exists().then(|| Ledger::open(&p).ok()).flatten()
    }

    /// HTTP status of `path` on the daemon's endpoint, if it answers.
    pub async fn http_status(&self, path: &str) -> Option<u16> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.listen).await.ok()?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.ok()?;
        buf.split_whitespace().nth(1)?.parse().ok()
    }
}

/// Send SIGTERM (via `kill`, to keep libc out of the test's dependencies).
pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// Wait for the child to exit, up to `deadline`.
pub async fn wait_exit(child: &mut Child, deadline: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("ragd did not exit within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Write `n` small Markdown files named `<prefix><i>.md` under `dir`.
pub fn write_many(dir: &Path, prefix: &str, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::write(
            dir.join(format!("{prefix}{i}.md")),
            format!("# Note {i}\n\nA small note number {i} about item {prefix}{i}.\n"),
        )
        .unwrap();
    }
}
