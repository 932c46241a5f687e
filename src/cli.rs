//! The command line: argument parsing and one function per command.
//!
//! Exit codes (stable, for scripts):
//! - 0: success;
//! - 1: the command ran but some files failed (see the summary / `ragd status`);
//! - 2: bad usage or configuration (`ragd validate` lists every problem);
//! - 3: a fatal runtime error (a server unreachable, the state directory unusable);
//! - `ragd doctor`: 1 when any check FAILs (2 when the config itself is invalid);
//! - `ragd why`: 4 when no pipeline knows the path.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::App;
use crate::config::{self, Config};
use crate::embed::server::{EmbedServerConfig, parse_model_spec, serve_forever};
use crate::pipeline::{Progress, RunRequest, RunSummary};
use crate::telemetry::{self, LogFormat};

pub const EXIT_OK: u8 = 0;
pub const EXIT_FILES_FAILED: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_FATAL: u8 = 3;
/// `ragd why`: the path is under no pipeline's folders and in no ledger.
pub const EXIT_NOT_FOUND: u8 = 4;

/// ragd keeps folders of documents in sync with a Qdrant index and Open WebUI
/// knowledge bases.
#[derive(Debug, Parser)]
#[command(name = "ragd", version, about, long_about = None)]
pub struct Cli {
    /// The daemon config; pipelines are read from its `pipelines_dir`.
    #[arg(
        long,
        short,
        global = true,
        env = "RAGD_CONFIG",
        default_value = "config/ragd.toml"
    )]
    pub config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub log_format: LogFormat,
    /// More logging (-v, -vv). `RUST_LOG` overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Index every pipeline (or one) once: new, changed and deleted files.
    Index {
        /// Only this pipeline.
        #[arg(long, short)]
        pipeline: Option<String>,
        /// Re-embed every file even if unchanged.
        #[arg(long)]
        force: bool,
        /// Carry out deletions even when more than half of a pipeline's files are gone.
        #[arg(long)]
        allow_mass_delete: bool,
    },
    /// Compare the ledger, Qdrant and the knowledge base; repair missing vectors,
    /// stale versions, orphan points, missing links and orphan uploads; then sync.
    Reconcile {
        /// Only this pipeline.
        #[arg(long, short)]
        pipeline: Option<String>,
        /// Carry out deletions even when more than half of a pipeline's files are gone.
        #[arg(long)]
        allow_mass_delete: bool,
    },
    /// Put failed (quarantined) files back in the queue; the next run retries them.
    Retry {
        /// Only this pipeline.
        #[arg(long, short)]
        pipeline: Option<String>,
        /// Every failed file.
        #[arg(long, conflicts_with = "path")]
        all: bool,
        /// One file, relative to its source folder.
        #[arg(required_unless_present = "all")]
        path: Option<String>,
    },
    /// Search a pipeline's collection: the quickest proof that indexing worked.
    Search {
        #[arg(long, short)]
        pipeline: String,
        /// Number of hits.
        #[arg(short, default_value_t = 5)]
        k: usize,
        /// The query text.
        query: String,
    },
    /// Run the daemon: watch every pipeline's folders, reconcile at startup and on
    /// schedule, serve /healthz and /readyz. Stops on SIGTERM/SIGINT; SIGHUP reloads.
    Run {
        /// Seconds in-flight files get to finish after a shutdown signal.
        #[arg(long, default_value_t = 30)]
        shutdown_timeout: u64,
        /// Override every pipeline's settle time, in milliseconds.
        #[arg(long)]
        settle_ms: Option<u64>,
    },
    /// Rebuild every pipeline (or one) into a new collection and switch its alias
    /// to it atomically; searches never see a half-built index.
    Reindex {
        /// Only this pipeline.
        #[arg(long, short)]
        pipeline: Option<String>,
        /// Switch even when more than half of the live files are missing from the new build.
        #[arg(long)]
        allow_mass_delete: bool,
    },
    /// Check the configuration without touching the network; lists every problem.
    Validate,
    /// Per pipeline: files by state, chunks, last run, backlog (what the next run
    /// would do), failures grouped by kind with example paths, knowledge-base
    /// states. Reads only; works while `ragd run` is running.
    Status {
        /// Machine-readable output (stable field names).
        #[arg(long)]
        json: bool,
        /// Only this pipeline.
        #[arg(long, short)]
        pipeline: Option<String>,
    },
    /// One file's journey: on disk and matching the globs?, ledger state, hashes,
    /// attempts and last error, Qdrant points, Open WebUI file and link state, and
    /// what happens next. Exit 4 if no pipeline knows it.
    Why {
        /// The file: absolute, relative to the working directory, or relative to a
        /// pipeline's source folder.
        path: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Live checks, each ok / warn / FAIL with a reason: config, state directory,
    /// Qdrant and collection dimensions, embedding endpoint, models and their
    /// dimension, Open WebUI version, API key (user, role), knowledge bases.
    /// Exit 1 on any FAIL. Changes nothing on any server.
    Doctor {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// What the next sync would do — add, update, retry, rebuild, move, delete —
    /// with counts and paths. Changes nothing.
    Plan {
        /// Only this pipeline.
        #[arg(long, short)]
        pipeline: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Serve an Ollama-compatible embedding API from ragd's deterministic
    /// hashing embedder (for tests, CI and demos; not a language model).
    EmbedServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:11434")]
        listen: SocketAddr,
        /// Model to serve, as NAME=DIM (repeatable).
        #[arg(long = "model", default_value = "hash-embed=384")]
        models: Vec<String>,
        /// Artificial delay per embedded text, in milliseconds (benchmarks).
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
    /// Internal: extract files sent on stdin, one after another, in a worker
    /// process and reply on stdout. Started by ragd itself; see
    /// `extract::isolate`.
    #[command(hide = true)]
    ExtractWorker,
}

/// Parse, run, map the outcome to an exit code.
/// An error and its causes, each cause added only when the message so far
/// does not already say it: ragd's typed errors name their source in their
/// own message, while `anyhow` context does not.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The extraction worker runs before logging and the async runtime: one
    // thread, and a stderr that holds nothing but a crash report.
    if let Command::ExtractWorker = &cli.command {
        return crate::extract::isolate::worker_main();
    }
    crate::alloc::tune(); // before the runtime starts any thread
    telemetry::init(cli.log_format, cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FATAL);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            let code = if e.downcast_ref::<config::ConfigErrors>().is_some() {
                EXIT_CONFIG
            } else {
                EXIT_FATAL
            };
            ExitCode::from(code)
        }
    }
}

/// An operator command's verdict as the exit code scripts rely on.
fn ops_exit(outcome: crate::ops::Outcome) -> u8 {
    use crate::ops::Outcome;
    match outcome {
        Outcome::Done => EXIT_OK,
        Outcome::ChecksFailed => EXIT_FILES_FAILED,
        Outcome::ConfigInvalid => EXIT_CONFIG,
        Outcome::NotFound => EXIT_NOT_FOUND,
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Validate => validate(&cli.config),
        Command::Status { json, pipeline } => {
            let view = crate::ops::View::open(load(&cli.config)?)?;
            Ok(ops_exit(crate::ops::status::run(
                &view,
                pipeline.as_deref(),
                json,
            )?))
        }
        Command::Why { path, json } => {
            let view = crate::ops::View::open(load(&cli.config)?)?;
            Ok(ops_exit(crate::ops::why::run(&view, &path, json).await?))
        }
        Command::Doctor { json } => Ok(ops_exit(crate::ops::doctor::run(&cli.config, json).await?)),
        Command::Plan { pipeline, json } => {
            let view = crate::ops::View::open(load(&cli.config)?)?;
            Ok(ops_exit(crate::ops::plan::run(
                &view,
                pipeline.as_deref(),
                json,
            )?))
        }
        Command::Index {
            pipeline,
            force,
            allow_mass_delete,
        } => index(&cli.config, pipeline.as_deref(), force, allow_mass_delete).await,
        Command::Search { pipeline, k, query } => search(&cli.config, &pipeline, &query, k).await,
        Command::Reconcile {
            pipeline,
            allow_mass_delete,
        } => reconcile(&cli.config, pipeline.as_deref(), allow_mass_delete).await,
        Command::Retry { pipeline, path, .. } => {
            retry(&cli.config, pipeline.as_deref(), path.as_deref())
        }
        Command::Run {
            shutdown_timeout,
            settle_ms,
        } => {
            run_daemon(
                &cli.config,
                Duration::from_secs(shutdown_timeout),
                settle_ms,
            )
            .await
        }
        Command::Reindex {
            pipeline,
            allow_mass_delete,
        } => reindex(&cli.config, pipeline.as_deref(), allow_mass_delete).await,
        // Handled in `main` before the runtime starts; kept working here too.
        Command::ExtractWorker => Ok(match crate::extract::isolate::worker_main() {
            code if code == ExitCode::SUCCESS => EXIT_OK,
            _ => EXIT_FATAL,
        }),
        Command::EmbedServer {
            listen,
            models,
            delay_ms,
        } => {
            let models = models
                .iter()
                .map(|m| parse_model_spec(m).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let config = EmbedServerConfig {
                models,
                delay_per_text: Duration::from_millis(delay_ms),
                max_batch: None,
            };
            eprintln!("embedding server listening on http://{listen}");
            serve_forever(config, listen)
                .await
                .context("embedding server")?;
            Ok(EXIT_OK)
        }
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Ok(config::load(path)?)
}

fn validate(path: &std::path::Path) -> anyhow::Result<u8> {
    match config::load(path) {
        Ok(c) => {
            println!("{}: ok", path.display());
            for p in &c.pipelines {
                println!(
                    "  pipeline {}: {} source(s) → collection {:?}, model {:?}{}",
                    p.name,
                    p.sources.len(),
                    p.collection,
                    p.model,
                    p.knowledge
                        .as_ref()
                        .map(|k| format!(", knowledge base {k:?}"))
                        .unwrap_or_default()
                );
            }
            Ok(EXIT_OK)
        }
        Err(errors) => {
            eprint!("{errors}");
            Ok(EXIT_CONFIG)
        }
    }
}

async fn index(
    path: &std::path::Path,
    only: Option<&str>,
    force: bool,
    allow_mass_delete: bool,
) -> anyhow::Result<u8> {
    let app = App::open(load(path)?)?;
    let mut any_failed = false;
    let terminal = std::io::stderr().is_terminal();
    for pc in app.select(only)? {
        let pipeline = app.pipeline(pc)?;
        let progress = progress_bar(&pc.name, terminal);
        let ticker = (!terminal).then(|| plain_progress(pc.name.clone(), progress.clone()));
        let result = pipeline
            .run(&RunRequest {
                force,
                allow_mass_delete,
                progress: Arc::new(progress.clone()),
                ..RunRequest::default()
            })
            .await;
        if let Some(t) = ticker {
            t.abort();
        }
        let summary = result?;
        print_summary(&summary);
        any_failed |=
            summary.failed > 0 || summary.knowledge.as_ref().is_some_and(|k| k.failed > 0);
    }
    Ok(if any_failed {
        EXIT_FILES_FAILED
    } else {
        EXIT_OK
    })
}

async fn run_daemon(
    path: &std::path::Path,
    shutdown_timeout: Duration,
    settle_ms: Option<u64>,
) -> anyhow::Result<u8> {
    let app = App::open(load(path)?)?;
    let control = crate::daemon::control_from_signals().context("installing signal handlers")?;
    let options = crate::daemon::DaemonOptions {
        shutdown_timeout,
        settle_override: settle_ms.map(Duration::from_millis),
        ..Default::default()
    };
    crate::daemon::run(app, options, control).await?;
    Ok(EXIT_OK)
}

async fn reindex(
    path: &std::path::Path,
    only: Option<&str>,
    allow_mass_delete: bool,
) -> anyhow::Result<u8> {
    let app = App::open(load(path)?)?;
    let mut any_failed = false;
    for o in crate::daemon::reindex_pipelines(&app, only, allow_mass_delete).await? {
        if o.switched() {
            println!(
                "collection {}: {} file(s) indexed, {} failed; alias switched",
                o.collection, o.files_indexed, o.files_failed
            );
        } else {
            println!(
                "collection {}: {} file(s) indexed, {} failed; alias NOT switched: the new build \
                 lacks files the live collection has. The live collection keeps serving, and the \
                 next `ragd reindex` resumes the build",
                o.collection, o.files_indexed, o.files_failed
            );
            let h = &o.held_back;
            if let Some(first) = h.failed.first() {
                println!(
                    "  {} file(s) indexed in the live collection failed in the new build (first: \
                     {first}); the next reindex retries them (the log names their failures)",
                    h.failed.len()
                );
            }
            if h.unsure > 0 {
                println!(
                    "  {} live file(s) are under a folder the build could not read, or their \
                     source folder turned up empty (see the scan problems)",
                    h.unsure
                );
            }
            if let Some((n, total)) = h.mass_delete {
                println!(
                    "  mass-delete rail: {n} of {total} live files are missing from the new \
                     build. Check the source folders, then rerun with --allow-mass-delete"
                );
            }
        }
        for p in &o.scan_problems {
            println!("  scan: {p}");
        }
        any_failed |= o.files_failed > 0 || !o.switched();
    }
    Ok(if any_failed {
        EXIT_FILES_FAILED
    } else {
        EXIT_OK
    })
}

async fn reconcile(
    path: &std::path::Path,
    only: Option<&str>,
    allow_mass_delete: bool,
) -> anyhow::Result<u8> {
    let app = App::open(load(path)?)?;
    let mut any_failed = false;
    for pc in app.select(only)? {
        let pipeline = app.pipeline(pc)?;
        let (report, summary) = pipeline
            .repair(RunRequest {
                allow_mass_delete,
                ..RunRequest::default()
            })
            .await?;
        println!(
            "pipeline {}: reconcile found {} orphan point(s), {} stale point(s), {} file(s) missing vectors — repaired",
            pc.name, report.orphan_points, report.stale_points, report.missing_vectors
        );
        for d in &report.details {
            println!("  {d}");
        }
        print_summary(&summary);
        any_failed |=
            summary.failed > 0 || summary.knowledge.as_ref().is_some_and(|k| k.failed > 0);
    }
    Ok(if any_failed {
        EXIT_FILES_FAILED
    } else {
        EXIT_OK
    })
}

fn retry(path: &std::path::Path, only: Option<&str>, file: Option<&str>) -> anyhow::Result<u8> {
    let app = App::open(load(path)?)?;
    let mut total = 0;
    for pc in app.select(only)? {
        let (files, kb) = app.pipeline(pc)?.retry(file)?;
        if files + kb > 0 {
            println!(
                "pipeline {}: {files} file(s) and {kb} knowledge-base entr(ies) queued for retry",
                pc.name
            );
        }
        total += files + kb;
    }
    if total == 0 {
        println!(
            "nothing to retry{}",
            file.map(|f| format!(" for {f}")).unwrap_or_default()
        );
    } else {
        println!("the next `ragd index` (or the running daemon's next sync) retries them");
    }
    Ok(EXIT_OK)
}

fn progress_bar(name: &str, terminal: bool) -> ProgressBar {
    if !terminal {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} files {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_owned());
    bar
}

/// The bar follows the run (hidden when not on a terminal).
impl Progress for ProgressBar {
    fn planned(&self, files: u64) {
        self.set_length(files);
    }
    fn advanced(&self, files: u64) {
        self.inc(files);
    }
    fn finished(&self) {
        self.finish_and_clear();
    }
}

/// Without a terminal, a plain line every 10 s instead of a bar.
fn plain_progress(name: String, bar: ProgressBar) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        loop {
            tick.tick().await;
            telemetry::events::run_progress(&name, bar.position(), bar.length().unwrap_or(0));
        }
    })
}

fn print_summary(s: &RunSummary) {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let handled = s.added + s.updated + s.touched + s.failed + s.skipped;
    println!(
        "pipeline {}: {} added, {} updated, {} deleted, {} unchanged, {} metadata-only, {} skipped, {} failed",
        s.pipeline, s.added, s.updated, s.deleted, s.unchanged, s.touched, s.skipped, s.failed
    );
    println!(
        "  {} chunks written, {} texts embedded in {} requests; {:.2}s ({:.1} files/s, {:.1} chunks/s, {:.2} MB/s)",
        s.chunks_written,
        s.texts_embedded,
        s.embed_requests,
        secs,
        handled as f64 / secs,
        s.chunks_written as f64 / secs,
        s.bytes_read as f64 / 1e6 / secs,
    );
    if s.moved > 0 {
        println!(
            "  {} file(s) moved or renamed: their vectors kept, nothing re-embedded",
            s.moved
        );
    }
    if s.embed_requests > 0 || s.cache_hits > 0 {
        println!(
            "  embedding: {:.2}s waiting on {} request(s) (summed over overlapping requests), {} chunk(s) from the cache",
            s.embed_time.as_secs_f64(),
            s.embed_requests,
            s.cache_hits
        );
    }
    if let Some((n, total)) = s.mass_delete_blocked {
        println!(
            "  mass-delete rail: {n} of {total} files are gone; nothing deleted. \
             Check the source folders, then rerun with --allow-mass-delete"
        );
    }
    if s.held_back > 0 {
        println!(
            "  {} deletion(s) held back: a source folder could not be read",
            s.held_back
        );
    }
    for p in &s.scan_problems {
        println!("  scan: {p}");
    }
    for f in &s.failures {
        println!("  failed: {}: [{}] {}", f.path, f.kind, f.message);
    }
    if let Some(ext) = &s.external {
        let what = match (ext.created, ext.repaired) {
            (true, _) => "registered",
            (false, true) => "repaired",
            (false, false) => "registered already",
        };
        println!(
            "  external knowledge base: {what} ({}, connection {})",
            ext.base_id, ext.connection_id
        );
        if ext.citations_added > 0 {
            println!(
                "  citation metadata added to {} older point(s)",
                ext.citations_added
            );
        }
    }
    if let Some(kb) = &s.knowledge {
        println!(
            "  knowledge base: {} uploaded, {} linked, {} removed, {} moved, {} placed, {} adopted, {} orphans deleted, {} refused, {} deferred",
            kb.uploads,
            kb.linked,
            kb.removed,
            kb.moved,
            kb.placed,
            kb.adopted,
            kb.orphans_deleted,
            kb.failed,
            kb.deferred
        );
        if kb.dirs_created + kb.dirs_renamed + kb.dirs_removed > 0 {
            println!(
                "  knowledge base directories: {} created, {} renamed or moved, {} removed",
                kb.dirs_created, kb.dirs_renamed, kb.dirs_removed
            );
        }
        for (path, why) in &kb.problems {
            println!("  knowledge base: {path}: {why}");
        }
    }
}

async fn search(
    path: &std::path::Path,
    pipeline: &str,
    query: &str,
    k: usize,
) -> anyhow::Result<u8> {
    let app = App::open(load(path)?)?;
    let pc = app.select(Some(pipeline))?[0];
    let pipeline = app.pipeline(pc)?;
    let hits = pipeline.search(query, k).await?;
    if hits.is_empty() {
        println!("no results");
    }
    for (i, h) in hits.iter().enumerate() {
        let page = h
            .payload
            .page
            .map(|p| format!(" p.{p}"))
            .unwrap_or_default();
        let heading = if h.payload.headings.is_empty() {
            String::new()
        } else {
            format!(" § {}", h.payload.headings.join(" › "))
        };
        println!(
            "{:>2}. {:.3}  {}{page}{heading}",
            i + 1,
            h.score,
            h.payload.path
        );
        println!("    {}", snippet(&h.payload.text, 200));
    }
    Ok(EXIT_OK)
}

/// The first `max` characters of `text` on one line.
fn snippet(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("pipeline p: {source}")]
    struct Named {
        #[source]
        source: std::io::Error,
    }

    /// A typed error that names its source is printed once, while a cause
    /// only `anyhow` context wraps is still shown.
    #[test]
    fn each_cause_is_printed_once() {
        let io = || std::io::Error::other("disk full");
        let named = anyhow::Error::new(Named { source: io() });
        assert_eq!(error_chain(&named), "pipeline p: disk full");
        let wrapped = anyhow::Error::new(io()).context("writing the ledger");
        assert_eq!(error_chain(&wrapped), "writing the ledger: disk full");
    }
}
