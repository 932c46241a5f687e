//! `ragd run`: the supervisor.
//!
//! ```text
//!            ┌──────────── per pipeline (isolated: own queue, own concurrency) ─────────┐
//! signals ─▶ │ watcher ─settled paths / rescan─▶ TriggerQueue ─▶ worker ─▶ reconcile    │
//! (TERM,INT, │ cron ────────schedule fired────▶      ▲             (or reindex)         │
//!  HUP)      │ startup ───────────────────────────────┘                                 │
//!            └───────────────────────────────────────────────────────────────────────────┘
//! HTTP: /healthz, /readyz ◀── Readiness (Starting → Running → Draining)
//! ```
//!
//! # Shutdown
//!
//! The first SIGTERM/SIGINT cancels the workers' token (the caller maps signals
//! to [`Control`]): `/readyz` turns 503 first, watchers and schedules stop, and each
//! worker lets its reconcile finish the batch of files in flight (the reconcile
//! checks the token between batches) — up to `shutdown_timeout`. Past that, the
//! work in flight is abandoned; that is safe because every file's side effects
//! are preceded by a write-ahead `indexing`/`deleting` intent in the ledger, so the
//! next start redoes exactly those files. A second signal exits at once (the CLI
//! does that).
//!
//! # Reload
//!
//! SIGHUP re-reads the config. A config that does not validate is logged and the
//! running one stays. A valid one replaces the pipelines: the current generation
//! drains like a shutdown — what does not finish within the shutdown timeout is
//! aborted, so two generations never work at once — and a new generation starts
//! (with a startup reconcile, which finds nothing to do for unchanged pipelines),
//! with its Open WebUI client and embedder made anew when their settings changed.
//! The state directory and the vector store are opened once per process and are
//! not changed by a reload.

pub mod reindex;
pub mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppError};
use crate::config::{self, Config};
use crate::server::{self, Phase, ServerState};
use worker::{PipelineTasks, WorkerSettings};

pub use worker::{Trigger, TriggerQueue};

/// Default time in-flight work gets to finish after a shutdown signal.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Failures that stop the daemon (as opposed to a pipeline's run failing, which
/// is logged and retried).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error(transparent)]
    App(#[from] AppError),
}

/// How to run.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Time in-flight work gets after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// Overrides every pipeline's `settle_ms` (tests, benchmarks).
    pub settle_override: Option<Duration>,
    /// Paths buffered per watcher before overflowing into a rescan.
    pub event_queue: usize,
    /// Serve /healthz and /readyz on `config.listen`.
    pub http: bool,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            settle_override: None,
            event_queue: crate::triggers::watch::EVENT_QUEUE,
            http: true,
        }
    }
}

/// How the outside world steers a running daemon.
#[derive(Debug)]
pub struct Control {
    /// Cancelled on the first SIGTERM/SIGINT.
    pub shutdown: CancellationToken,
    /// One message per SIGHUP.
    pub reload: mpsc::Receiver<()>,
}

impl Control {
    /// A control with no reload source, stopped by `shutdown`.
    pub fn with_shutdown(shutdown: CancellationToken) -> Self {
        let (_tx, reload) = mpsc::channel(1);
        Control { shutdown, reload }
    }
}

/// The running pipelines of one config.
struct Generation {
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

/// Run until `control.shutdown` is cancelled.
pub async fn run(
    mut app: App,
    options: DaemonOptions,
    mut control: Control,
) -> Result<(), DaemonError> {
    let state = ServerState::default();
    let http_stop = CancellationToken::new();
    let http = if options.http {
        let listener = server::bind(app.config.listen).await?;
        tracing::info!(addr = %listener.local_addr().map_or(app.config.listen, |a| a), "HTTP listening");
        Some(tokio::spawn(server::serve(
            listener,
            state.clone(),
            http_stop.clone(),
        )))
    } else {
        None
    };

    let mut generation = start(&app, &options)?;
    state.readiness.set(Phase::Running);
    tracing::info!(pipelines = app.config.pipelines.len(), "ragd running");

    loop {
        tokio::select! {
            () = control.shutdown.cancelled() => break,
            Some(()) = control.reload.recv() => {
                match reload(&app.config.config_path, &app.config) {
                    Ok(new) => {
                        tracing::info!("configuration reloaded; restarting pipelines");
                        drain(generation, options.shutdown_timeout).await;
                        app.reconfigure(new);
                        generation = start(&app, &options)?;
                    }
                    Err(why) => tracing::error!("configuration not reloaded; keeping the running one: {why}"),
                }
            }
        }
    }

    state.readiness.set(Phase::Draining);
    tracing::info!(timeout = ?options.shutdown_timeout, "shutting down: finishing files in flight");
    drain(generation, options.shutdown_timeout).await;
    http_stop.cancel();
    if let Some(h) = http {
        match h.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server"),
            Err(e) => tracing::warn!(error = %e, "HTTP server task"),
            Ok(Ok(())) => {}
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Validate the config at `path` for a reload: parse errors, and changes a reload
/// cannot apply, keep the old config.
fn reload(path: &std::path::Path, old: &Config) -> Result<Config, String> {
    let new = config::load(path).map_err(|e| e.to_string())?;
    if new.state_dir != old.state_dir || new.qdrant != old.qdrant || new.listen != old.listen {
        return Err("state_dir, [qdrant] and [server] listen need a restart".into());
    }
    Ok(new)
}

/// Spawn every pipeline's worker, watcher and schedule.
fn start(app: &App, options: &DaemonOptions) -> Result<Generation, DaemonError> {
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let settings = WorkerSettings {
        state_dir: app.config.state_dir.clone(),
        settle_override: options.settle_override,
        event_queue: options.event_queue,
    };
    let mut per_collection: HashMap<&str, usize> = HashMap::new();
    for p in &app.config.pipelines {
        *per_collection.entry(p.collection.as_str()).or_default() += 1;
    }
    for pc in &app.config.pipelines {
        let pipeline = app.pipeline(pc)?;
        let shared = per_collection[pc.collection.as_str()] > 1;
        let pipeline_tasks = Arc::new(PipelineTasks::new(pipeline, settings.clone(), shared));
        tasks.spawn(pipeline_tasks.clone().run_worker(cancel.child_token()));
        tasks.spawn(pipeline_tasks.clone().run_watcher(cancel.child_token()));
        tasks.spawn(
            pipeline_tasks
                .clone()
                .run_reindex_schedule(cancel.child_token()),
        );
        tasks.spawn(pipeline_tasks.run_schedule(cancel.child_token()));
    }
    Ok(Generation { cancel, tasks })
}

/// Stop a generation: no new work, in-flight batches finish within `timeout`.
async fn drain(mut generation: Generation, timeout: Duration) {
    generation.cancel.cancel();
    let finished = tokio::time::timeout(timeout, async {
        while generation.tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            ?timeout,
            "in-flight work did not finish in time; aborting it \
            (the ledger's intents make the next start redo those files)"
        );
        // Gone before this returns: a reload must not start a generation
        // while the old one still writes.
        generation.tasks.abort_all();
        while generation.tasks.join_next().await.is_some() {}
    }
}

/// Map process signals to a [`Control`]: the first SIGTERM/SIGINT cancels
/// `shutdown`, a second one exits the process at once (exit code 130); SIGHUP asks
/// for a reload.
pub fn control_from_signals() -> std::io::Result<Control> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let shutdown = CancellationToken::new();
    let (reload_tx, reload) = mpsc::channel(1);
    let token = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = hup.recv() => {
                    // A reload already queued covers this one too.
                    let _ = reload_tx.try_send(());
                    continue;
                }
            }
            if token.is_cancelled() {
                eprintln!("ragd: second signal, exiting now");
                std::process::exit(130);
            }
            tracing::info!("signal received: shutting down (send it again to exit at once)");
            token.cancel();
        }
    });
    Ok(Control { shutdown, reload })
}

/// `ragd reindex`: rebuild the selected pipelines into new collections, one after
/// the other, then reconcile each (nothing changes if the folder did not).
/// `allow_mass_delete` lets a build that lacks most of the live files switch
/// in; the reconcile after it keeps the rail.
pub async fn reindex_pipelines(
    app: &App,
    only: Option<&str>,
    allow_mass_delete: bool,
) -> Result<Vec<reindex::ReindexOutcome>, anyhow::Error> {
    let mut per_collection: HashMap<&str, usize> = HashMap::new();
    for p in &app.config.pipelines {
        *per_collection.entry(p.collection.as_str()).or_default() += 1;
    }
    let cancel = CancellationToken::new();
    let mut outcomes = Vec::new();
    for pc in app.select(only)? {
        if per_collection[pc.collection.as_str()] > 1 {
            anyhow::bail!(
                "pipeline {}: collection {:?} is shared with another pipeline; a rebuild would drop \
                 their points (use `ragd index --force` instead)",
                pc.name,
                pc.collection
            );
        }
        let pipeline = app.pipeline(pc)?;
        let outcome = reindex::reindex(
            &pipeline,
            &app.config.state_dir,
            Duration::ZERO,
            allow_mass_delete,
            &cancel,
        )
        .await?;
        pipeline
            .run(&crate::pipeline::RunRequest {
                cancel: cancel.clone(),
                ..crate::pipeline::RunRequest::reconcile()
            })
            .await?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets its flag when dropped: the future holding it is gone.
    struct Dropped(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// A task that ignores the cancellation (stuck in a request, say) is
    /// aborted once the drain timeout passes, before `drain` returns: a reload
    /// never runs two generations at once.
    #[tokio::test]
    async fn a_drain_aborts_what_outlives_its_timeout() {
        let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        let guard = Dropped(gone.clone());
        tasks.spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        let polite = CancellationToken::new();
        let token = polite.clone();
        tasks.spawn(async move { token.cancelled().await });
        let generation = Generation {
            cancel: polite,
            tasks,
        };
        drain(generation, Duration::from_millis(100)).await;
        assert!(gone.load(std::sync::atomic::Ordering::SeqCst));
    }
}
