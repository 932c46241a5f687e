//! The daemon's HTTP endpoint: `/healthz` and `/readyz` (and, later, `/metrics`
//! and `/status`).
//!
//! Bound to loopback by default (`[server] listen`). Handlers only read shared
//! state; they never wait on pipeline work, so a busy daemon still answers.
//!
//! To add an endpoint: add a handler taking `State<ServerState>` and a `.route`
//! line in [`router`]; put the state it reads in [`ServerState`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Failures of the HTTP endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source} (set [server] listen in ragd.toml)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Serve(#[source] std::io::Error),
}

/// Where the daemon is in its life; what `/readyz` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Opening the store, arming watchers: not ready.
    Starting = 0,
    /// Watching and indexing: ready.
    Running = 1,
    /// Shutting down, finishing in-flight files: not ready, so a load balancer or
    /// supervisor stops sending work before the process goes away.
    Draining = 2,
}

/// The daemon's phase, shared between the supervisor (writer) and the handlers.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicU8>);

impl Default for Readiness {
    fn default() -> Self {
        Readiness(Arc::new(AtomicU8::new(Phase::Starting as u8)))
    }
}

impl Readiness {
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::SeqCst);
    }

    pub fn get(&self) -> Phase {
        match self.0.load(Ordering::SeqCst) {
            0 => Phase::Starting,
            1 => Phase::Running,
            _ => Phase::Draining,
        }
    }
}

/// What handlers can see. Cheap to clone (axum clones it per request).
#[derive(Debug, Clone, Default)]
pub struct ServerState {
    pub readiness: Readiness,
}

/// All routes.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // Prometheus text; names and labels in `telemetry::metrics`.
        .merge(crate::telemetry::metrics::metrics_router())
        .with_state(state)
}

/// 200 while the process lives and its runtime answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 when running; 503 while starting and while draining.
async fn readyz(State(state): State<ServerState>) -> (StatusCode, &'static str) {
    match state.readiness.get() {
        Phase::Running => (StatusCode::OK, "ready\n"),
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        Phase::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
    }
}

/// Bind `addr`; separate from [`serve`] so a bad address fails the start, before
/// any work begins.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// What one client may hold of the endpoint. A monitor polls a few short
/// requests; anything that holds connections open or trickles its headers is
/// either broken or hostile, and must not keep `/healthz` from the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A connection whose request headers are not complete this long after it
    /// opened (or after its previous response) is closed.
    pub header_timeout: Duration,
    /// Connections served at once; one over it is closed at accept.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            max_connections: 64,
        }
    }
}

/// How long a shutdown waits for open requests (they only read shared state).
const DRAIN: Duration = Duration::from_secs(5);

/// Serve until `stop` is cancelled, then finish open requests and return.
pub async fn serve(
    listener: TcpListener,
    state: ServerState,
    stop: CancellationToken,
) -> Result<(), ServerError> {
    serve_with(listener, state, stop, Limits::default()).await
}

/// [`serve`] with other [`Limits`]. HTTP/1.1 only: the endpoint's clients
/// (probes, Prometheus) speak it.
pub async fn serve_with(
    listener: TcpListener,
    state: ServerState,
    stop: CancellationToken,
    limits: Limits,
) -> Result<(), ServerError> {
    let app = router(state);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors and the like: the next accept may work;
                // a tight loop would not help it.
                Err(e) if accept_error_is_transient(&e) => {
                    tracing::warn!(error = %e, "HTTP endpoint: accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => return Err(ServerError::Serve(e)),
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(
                max = limits.max_connections,
                "HTTP endpoint: connection limit reached; closing a new connection"
            );
            drop(stream);
            continue;
        };
        let connection = graceful.watch(
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone())),
        );
        tokio::spawn(async move {
            // A client that went away or timed out is its own business.
            let _ = connection.await;
            drop(slot);
        });
    }
    // Open requests finish (they are short); idle keep-alive connections close.
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
    Ok(())
}

/// Accept errors that concern one connection or a passing shortage, not the
/// listener.
fn accept_error_is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_status(addr: SocketAddr, path: &str) -> u16 {
        try_status(addr, path).await.expect("an HTTP answer")
    }

    /// The status of one request, or `None` if the connection gave no answer.
    async fn try_status(addr: SocketAddr, path: &str) -> Option<u16> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.ok()?;
        buf.split_whitespace().nth(1)?.parse().ok()
    }

    #[tokio::test]
    async fn readyz_follows_the_phase_and_healthz_is_always_ok() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = ServerState::default();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, state.clone(), stop.clone()));

        assert_eq!(get_status(addr, "/healthz").await, 200);
        assert_eq!(get_status(addr, "/readyz").await, 503);
        state.readiness.set(Phase::Running);
        assert_eq!(get_status(addr, "/readyz").await, 200);
        state.readiness.set(Phase::Draining);
        assert_eq!(get_status(addr, "/readyz").await, 503);
        assert_eq!(get_status(addr, "/healthz").await, 200);
        assert_eq!(get_status(addr, "/nope").await, 404);

        stop.cancel();
        server.await.unwrap().unwrap();
    }

    /// Whether the server closed `s`: a read returns end of file (or a reset)
    /// within `within`.
    async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(within, s.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                // A 408 or the like before the close.
                Ok(Ok(_)) => continue,
            }
        }
    }

    #[tokio::test]
    async fn a_client_trickling_its_headers_is_cut_off() {
        use tokio::io::AsyncWriteExt;
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let limits = Limits {
            header_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let server = tokio::spawn(serve_with(
            listener,
            ServerState::default(),
            stop.clone(),
            limits,
        ));
        // Half a request line, then nothing: closed after the header timeout.
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /healthz HT").await.unwrap();
        assert!(closed_within(&mut slow, Duration::from_secs(20)).await);
        // A connection that never sends a byte goes the same way.
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut silent, Duration::from_secs(20)).await);
        assert_eq!(get_status(addr, "/healthz").await, 200);
        stop.cancel();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_and_the_rest_still_served() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let limits = Limits {
            header_timeout: Duration::from_secs(60),
            max_connections: 3,
        };
        let server = tokio::spawn(serve_with(
            listener,
            ServerState::default(),
            stop.clone(),
            limits,
        ));
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        // Let the server accept the three (a slot is taken at accept).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut fourth = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut fourth, Duration::from_secs(20)).await);
        drop(held);
        // The slots come back as the held connections close.
        let mut status = None;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            status = tokio::time::timeout(Duration::from_secs(5), try_status(addr, "/healthz"))
                .await
                .ok()
                .flatten();
            if status == Some(200) {
                break;
            }
        }
        assert_eq!(status, Some(200));
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
