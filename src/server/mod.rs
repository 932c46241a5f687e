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

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
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

/// Serve until `stop` is cancelled, then finish open requests and return.
pub async fn serve(
    listener: TcpListener,
    state: ServerState,
    stop: CancellationToken,
) -> Result<(), ServerError> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .map_err(ServerError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_status(addr: SocketAddr, path: &str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        buf.split_whitespace().nth(1).unwrap().parse().unwrap()
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
}
