//! A Qdrant server of one test's own: the real binary (`RAGD_QDRANT_BIN`, from
//! `scripts/qdrant-up.sh`) on ports the test names, with its own storage, so
//! the test may kill it with SIGKILL and start it again on the same storage.
//! Never the shared node: that one other tests use at the same time.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::real;

pub struct QdrantNode {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub http: u16,
    pub grpc: u16,
    child: Option<Child>,
    starts: u32,
}

impl QdrantNode {
    /// Start a node with REST on `http` and gRPC on `grpc` (loopback), or
    /// `None` when there is no Qdrant binary (see [`real::qdrant_bin`]).
    pub async fn start(http: u16, grpc: u16) -> Option<Self> {
        let bin = real::qdrant_bin()?;
        let mut node = QdrantNode {
            bin,
            dir: tempfile::tempdir().expect("tempdir"),
            http,
            grpc,
            child: None,
            starts: 0,
        };
        node.restart().await;
        Some(node)
    }

    /// gRPC URL, what ragd is configured with.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    /// SIGKILL, and wait until the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the node (again) on its storage, and wait until it is ready.
    pub async fn restart(&mut self) {
        self.kill();
        for port in [self.http, self.grpc] {
            // A stale node on the port would answer in place of this one.
            assert!(
                std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "port {port} is taken: a Qdrant node of an earlier run may still be alive"
            );
        }
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.path().join(format!("qdrant-{}.log", self.starts)))
                .expect("log file");
        let storage = self.dir.path().join("storage");
        let child = Command::new(&self.bin)
            .current_dir(self.dir.path())
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", self.http.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", self.grpc.to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", &storage)
            .env(
                "QDRANT__STORAGE__SNAPSHOTS_PATH",
                self.dir.path().join("snapshots"),
            )
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start qdrant");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            if self.http_status("/readyz").await == Some(200) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("qdrant exited during start-up ({status}): {}", self.log());
            }
            assert!(Instant::now() < until, "qdrant not ready: {}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The latest start's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("qdrant-{}.log", self.starts)))
            .unwrap_or_default()
    }

    async fn http_status(&self, path: &str) -> Option<u16> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.http))
            .await
            .ok()?;
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

impl Drop for QdrantNode {
    fn drop(&mut self) {
        self.kill();
    }
}
