//! ragd keeps folders of documents in sync with a Qdrant vector index and Open WebUI
//! knowledge bases.
//!
//! # Layout
//!
//! Reading the modules top-down is reading the path a file takes:
//!
//! - [`config`]: raw TOML mirrors → `${VAR}` interpolation → pure validation that
//!   collects every error → validated types. [`config::Secret`] never prints.
//! - [`document`]: the data that flows (source file, extracted document, chunk,
//!   embedded chunk) and the derivation of stable ids.
//! - [`triggers`]: when a file must be looked at — the folder scan (walk + globs),
//!   the debounced file watcher and cron schedules; a file's ledger key
//!   ([`triggers::key::FileKey`]) and its way back to the path on disk.
//! - [`pipeline`]: one run — the planner (ledger says skip/add/update/delete), then
//!   extract → chunk → embed → store → register → ledger commit.
//! - [`extract`]: bytes → text, per format (PDF, Markdown, plain text, HTML).
//! - [`chunk`]: the text-splitter wrapper that keeps page and heading trail.
//! - [`embed`]: the [`embed::Embedder`] trait, the Ollama-API client (direct or via
//!   Open WebUI's proxy) and the project's own Ollama-API embedding server.
//! - [`store`]: the [`store::VectorStore`] trait; `edge` (embedded Qdrant, the
//!   default) and `qdrant` (a Qdrant server over gRPC).
//! - [`backoff`]: the one backoff every retry loop waits by (exponential, capped,
//!   jittered, at least a server's `Retry-After`).
//! - [`http`]: the one way HTTP clients are made (no redirects, trusted CAs)
//!   and answers read (capped, URLs shown without credentials).
//! - [`open_webui`]: the typed Open WebUI client (files, knowledge bases,
//!   directories, access) and its errors.
//! - [`publish`]: the stage after the ledger — the knowledge base kept equal to the
//!   folder (plan from the ledger, write-ahead upload states, lost-upload recovery,
//!   the verify sweep, the directory tree).
//! - [`ledger`]: the SQLite record of every file's state, and why one failed
//!   ([`ledger::FailKind`]); what makes reruns free and restarts safe.
//! - [`daemon`]: `ragd run` — the supervisor, one worker per pipeline, graceful
//!   shutdown, and full reindexes into versioned collections behind an alias.
//! - [`server`]: the daemon's HTTP endpoint (`/healthz`, `/readyz`).
//! - [`failpoint`]: named crash points for the crash-safety tests (inert unless
//!   `RAGD_FAILPOINTS` is set).
//! - [`telemetry`]: tracing initialisation, metric names, one function per
//!   notable event (logs and counts together), the `/metrics` route.
//! - [`pairing`]: a removal and an addition of the same thing are one move — the
//!   one mechanism behind move detection in the index and in the knowledge base.
//! - [`ops`]: the operator commands — `status`, `why`, `doctor`, `plan`.
//! - [`cli`] and [`app`]: the command line and the composition root that wires
//!   validated config into components.
//! - [`alloc`]: malloc settings that keep freed memory from staying resident.

pub mod alloc;
pub mod app;
pub mod backoff;
pub mod chunk;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod document;
pub mod embed;
pub mod extract;
pub mod failpoint;
pub mod http;
pub mod ledger;
pub mod open_webui;
pub mod ops;
pub mod pairing;
pub mod pipeline;
pub mod publish;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod triggers;
