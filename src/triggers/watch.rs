//! Watching a pipeline's source folders: OS events (or polling) → a bounded
//! channel → a debouncer that says when a path has *settled*.
//!
//! ```text
//! notify thread ──try_send──▶ bounded channel ──▶ EventStream::next ──▶ Debouncer
//!        │ full / Rescan flag / watcher error           ▲                  │ settled paths
//!        └──────────── set `rescan` flag, wake ─────────┘                  ▼
//!                                                                   the pipeline's worker
//! ```
//!
//! # Overflow policy
//!
//! notify calls us on its own thread and must never block, so events go through
//! `try_send` into a channel of [`EVENT_QUEUE`] paths. When the channel is full the
//! event is **dropped** and a "rescan needed" flag is set; the same happens when the
//! OS says it lost events (notify's `Rescan` flag, inotify queue overflow) or the
//! watcher reports an error. The consumer turns the flag into one
//! [`WatchEvent::Rescan`], and the worker answers it with a full reconcile scan,
//! which finds every change a dropped event would have announced. Dropping is
//! therefore harmless; blocking notify's thread would not be.
//!
//! # Settling
//!
//! A path is *settled* once (a) no event arrived for it for `settle`, and (b) its
//! size and mtime were the same at two checks `settle` apart. (b) is what keeps a
//! half-copied file out of the index even when the copier pauses without events
//! (network shares, slow downloads). Atomic saves (write a temp file, rename it
//! over the original) produce events on the temp name, which is ignored, and on the
//! target, which then settles once: one modification.
//!
//! Time is `tokio::time::Instant`, so tests drive the debouncer with paused time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::{EventKind, RecursiveMode};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::scan;
use crate::config::PipelineConfig;
use crate::config::validate::WatchMode;

/// Paths buffered between notify's thread and the debouncer. A burst larger than
/// this costs one rescan, not lost changes.
pub const EVENT_QUEUE: usize = 8192;

/// The debouncer wakes at most this many times per `settle` when many paths are
/// pending, so a burst of thousands of files costs O(n) work per wake, not per event.
const CHECKS_PER_SETTLE: u32 = 8;

/// Failures to start watching.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot start the file watcher: {0}")]
    Start(#[source] notify::Error),
}

/// What the event stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Something happened at this path (a file or a folder; created, changed,
    /// removed or renamed — the reconcile works out which).
    Changed(PathBuf),
    /// Events may have been lost: the whole tree must be rescanned.
    Rescan,
}

/// The producing half of the bridge; cheap to clone, never blocks.
#[derive(Clone)]
pub struct EventSender {
    tx: mpsc::Sender<PathBuf>,
    rescan: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl EventSender {
    /// Queue `path`; if the queue is full, drop it and ask for a rescan instead.
    pub fn send(&self, path: PathBuf) {
        if self.tx.try_send(path).is_err() {
            self.request_rescan();
        }
    }

    /// Ask the consumer for a full rescan (lost events, watcher errors).
    pub fn request_rescan(&self) {
        self.rescan.store(true, Ordering::SeqCst);
        // `notify_one` keeps a permit when nobody waits, so the wake is not lost.
        self.wake.notify_one();
    }

    /// Translate one notify callback.
    fn handle(&self, event: notify::Result<notify::Event>) {
        match event {
            Ok(event) => {
                if event.need_rescan() {
                    self.request_rescan();
                }
                // Opening or reading a file changes nothing; a close after writing
                // is a useful "done writing" nudge, so it is kept.
                if let EventKind::Access(kind) = event.kind
                    && kind != notify::event::AccessKind::Close(notify::event::AccessMode::Write)
                {
                    return;
                }
                for path in event.paths {
                    self.send(path);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "file watcher error; a rescan follows");
                self.request_rescan();
            }
        }
    }
}

/// The consuming half of the bridge.
pub struct EventStream {
    rx: mpsc::Receiver<PathBuf>,
    rescan: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl EventStream {
    /// The next event; `None` when every sender is gone.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            // Checked first so a rescan request is not starved by a steady stream.
            if self.rescan.swap(false, Ordering::SeqCst) {
                return Some(WatchEvent::Rescan);
            }
            tokio::select! {
                path = self.rx.recv() => return path.map(WatchEvent::Changed),
                () = self.wake.notified() => {}
            }
        }
    }
}

/// A bounded bridge of `capacity` paths with the overflow policy above.
pub fn event_channel(capacity: usize) -> (EventSender, EventStream) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let rescan = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Notify::new());
    (
        EventSender {
            tx,
            rescan: rescan.clone(),
            wake: wake.clone(),
        },
        EventStream { rx, rescan, wake },
    )
}

/// Live watchers over a pipeline's source folders, and their event stream.
/// Dropping it stops watching.
pub struct SourceWatcher {
    /// Kept only to keep the OS watches alive.
    _watchers: Vec<Box<dyn notify::Watcher + Send>>,
    pub events: EventStream,
}

impl SourceWatcher {
    /// Watch every root recursively. A root that cannot be watched (missing,
    /// unreadable) is an error for that root only: it is logged and skipped, and
    /// the scheduled/startup reconciles still cover it.
    pub fn start(roots: &[PathBuf], mode: WatchMode, capacity: usize) -> Result<Self, WatchError> {
        let (sender, events) = event_channel(capacity);
        let handler = {
            let sender = sender.clone();
            move |event: notify::Result<notify::Event>| sender.handle(event)
        };
        let mut watcher: Box<dyn notify::Watcher + Send> = match mode {
            WatchMode::Notify => {
                Box::new(notify::recommended_watcher(handler).map_err(WatchError::Start)?)
            }
            WatchMode::Poll { interval } => Box::new(
                notify::PollWatcher::new(
                    handler,
                    notify::Config::default()
                        .with_poll_interval(interval)
                        .with_compare_contents(false),
                )
                .map_err(WatchError::Start)?,
            ),
        };
        let mut watched = 0;
        for root in roots {
            match watcher.watch(root, RecursiveMode::Recursive) {
                Ok(()) => watched += 1,
                Err(source) => {
                    let e = WatchError::Watch {
                        path: root.clone(),
                        source,
                    };
                    tracing::warn!(error = %e, "source folder not watched");
                }
            }
        }
        if watched == 0 && !roots.is_empty() {
            return Err(WatchError::Watch {
                path: roots[0].clone(),
                source: notify::Error::generic("no source folder could be watched"),
            });
        }
        Ok(SourceWatcher {
            _watchers: vec![watcher],
            events,
        })
    }
}

/// What a path looked like at one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    Missing,
    Dir,
    File { size: u64, mtime_ns: i64 },
}

/// Stat a path for the debouncer (does not follow a final symlink's absence).
pub fn stat(path: &Path) -> Stamp {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Stamp::Dir,
        Ok(m) => Stamp::File {
            size: m.len(),
            mtime_ns: scan::mtime_ns(&m),
        },
        Err(_) => Stamp::Missing,
    }
}

/// How the debouncer looks at the filesystem; a fake in tests.
pub type StatFn = Box<dyn Fn(&Path) -> Stamp + Send + Sync>;

struct Pending {
    last_event: Instant,
    stamp: Stamp,
    stamped_at: Instant,
}

impl Pending {
    /// When this path may next be found settled.
    fn due(&self, settle: Duration) -> Instant {
        self.last_event.max(self.stamped_at) + settle
    }
}

/// Tracks changed paths until they settle. See the module doc.
pub struct Debouncer {
    settle: Duration,
    stat: StatFn,
    pending: HashMap<PathBuf, Pending>,
    /// Earliest time worth checking again; may be early (a later event moved a
    /// path's deadline), never late.
    next_check: Option<Instant>,
}

impl Debouncer {
    pub fn new(settle: Duration, stat: StatFn) -> Self {
        Debouncer {
            settle,
            stat,
            pending: HashMap::new(),
            next_check: None,
        }
    }

    /// Record an event for `path` at `now`. The first check happens now, so a
    /// file that stays quiet settles after one `settle`.
    pub fn event(&mut self, path: PathBuf, now: Instant) {
        let stamp = (self.stat)(&path);
        self.pending.insert(
            path,
            Pending {
                last_event: now,
                stamp,
                stamped_at: now,
            },
        );
        // Every existing deadline is at most now + settle, so a new one never
        // needs to move `next_check` earlier — only set it if nothing was pending.
        self.next_check.get_or_insert(now + self.settle);
    }

    /// When [`Debouncer::poll`] should next be called; `None` when idle.
    pub fn next_check(&self) -> Option<Instant> {
        self.next_check
    }

    /// Is `path` waiting to settle?
    pub fn is_pending(&self, path: &Path) -> bool {
        self.pending.contains_key(path)
    }

    /// Paths waiting to settle.
    pub fn pending(&self) -> impl Iterator<Item = &Path> {
        self.pending.keys().map(PathBuf::as_path)
    }

    /// Check the paths that are due; return (and forget) those that settled.
    pub fn poll(&mut self, now: Instant) -> Vec<PathBuf> {
        let settle = self.settle;
        let mut settled = Vec::new();
        for (path, p) in &mut self.pending {
            if p.due(settle) > now {
                continue;
            }
            let stamp = (self.stat)(path);
            if stamp == p.stamp {
                settled.push(path.clone());
            } else {
                // Still being written: measure again one `settle` from now.
                p.stamp = stamp;
                p.stamped_at = now;
            }
        }
        for path in &settled {
            self.pending.remove(path);
        }
        let earliest = self.pending.values().map(|p| p.due(settle)).min();
        let floor = now + settle / CHECKS_PER_SETTLE;
        self.next_check = earliest.map(|t| t.max(floor));
        settled.sort();
        settled
    }
}

/// Is an event at `path` worth a look for this pipeline? Drops temporary and
/// hidden files, and files the pipeline's globs do not want. Folders (and paths
/// that are gone and look like folders) are kept: creating, renaming or deleting a
/// folder changes the files under it.
pub fn relevant(config: &PipelineConfig, path: &Path) -> bool {
    let Some(rel) = config
        .sources
        .iter()
        .find_map(|root| path.strip_prefix(root).ok())
    else {
        return false;
    };
    let rel = super::key::rel_to_string(rel);
    if rel.is_empty() {
        return true; // the source folder itself
    }
    if rel.split('/').any(scan::is_ignored_name) {
        return false;
    }
    match stat(path) {
        Stamp::Dir => true,
        Stamp::File { .. } => scan::wanted(&config.include, &config.exclude, &rel),
        // Gone: a file we wanted, or something without an extension (a folder).
        Stamp::Missing => {
            path.extension().is_none() || scan::wanted(&config.include, &config.exclude, &rel)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A fake filesystem the test edits while time is paused.
    #[derive(Clone, Default)]
    struct FakeFs(Arc<Mutex<HashMap<PathBuf, Stamp>>>);

    impl FakeFs {
        fn set(&self, path: &str, size: u64, mtime_ns: i64) {
            self.0
                .lock()
                .unwrap()
                .insert(PathBuf::from(path), Stamp::File { size, mtime_ns });
        }
        fn stat_fn(&self) -> StatFn {
            let fs = self.clone();
            Box::new(move |p| {
                fs.0.lock()
                    .unwrap()
                    .get(p)
                    .copied()
                    .unwrap_or(Stamp::Missing)
            })
        }
    }

    const SETTLE: Duration = Duration::from_secs(1);

    /// Poll whenever the debouncer asks to, until `until`; collect what settled and when.
    async fn drive(d: &mut Debouncer, until: Instant) -> Vec<(PathBuf, Duration, Instant)> {
        let start = Instant::now();
        let mut out = Vec::new();
        while let Some(at) = d.next_check() {
            if at > until {
                break;
            }
            tokio::time::sleep_until(at).await;
            for p in d.poll(Instant::now()) {
                out.push((p, Instant::now() - start, Instant::now()));
            }
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_file_settles_after_one_settle_period() {
        let fs = FakeFs::default();
        fs.set("/d/a.md", 10, 1);
        let mut d = Debouncer::new(SETTLE, fs.stat_fn());
        let t0 = Instant::now();
        d.event("/d/a.md".into(), t0);
        assert!(d.poll(t0 + SETTLE - Duration::from_millis(1)).is_empty());
        tokio::time::advance(SETTLE).await;
        assert_eq!(d.poll(Instant::now()), vec![PathBuf::from("/d/a.md")]);
        assert!(d.next_check().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_still_growing_without_events_is_not_settled() {
        let fs = FakeFs::default();
        fs.set("/d/big.pdf", 100, 1);
        let mut d = Debouncer::new(SETTLE, fs.stat_fn());
        d.event("/d/big.pdf".into(), Instant::now());
        // A copier that writes without events the watcher sees (a network share):
        // the file grows between every check for 5 s.
        for i in 0..5u64 {
            tokio::time::advance(SETTLE).await;
            fs.set("/d/big.pdf", 200 + i * 100, 2 + i as i64);
            assert!(
                d.poll(Instant::now()).is_empty(),
                "settled while growing (check {i})"
            );
        }
        // Growth stopped at the last check (600 bytes): the same stamp one settle
        // period later settles it.
        assert!(
            d.poll(Instant::now() + SETTLE / 2).is_empty(),
            "not before a full period"
        );
        tokio::time::advance(SETTLE).await;
        assert_eq!(d.poll(Instant::now()), vec![PathBuf::from("/d/big.pdf")]);
    }

    #[tokio::test(start_paused = true)]
    async fn steady_events_keep_a_path_pending_until_they_stop() {
        let fs = FakeFs::default();
        fs.set("/d/log.txt", 1, 1);
        let mut d = Debouncer::new(SETTLE, fs.stat_fn());
        let start = Instant::now();
        // An event every 300 ms for 3 s.
        for i in 0..10 {
            fs.set("/d/log.txt", i, i as i64);
            d.event("/d/log.txt".into(), Instant::now());
            tokio::time::advance(Duration::from_millis(300)).await;
            assert!(d.poll(Instant::now()).is_empty());
        }
        let settled = drive(&mut d, Instant::now() + Duration::from_secs(10)).await;
        assert_eq!(settled.len(), 1);
        let (_, _, at) = &settled[0];
        // Last event at 2.7 s: settles one settle period later, give or take the
        // debouncer's check granularity.
        let after_last = *at - (start + Duration::from_millis(2700));
        assert!(
            after_last >= SETTLE && after_last <= SETTLE + SETTLE / 4,
            "{after_last:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn atomic_save_settles_once_for_the_target() {
        let fs = FakeFs::default();
        let mut d = Debouncer::new(SETTLE, fs.stat_fn());
        // Editor: write `.a.md.swp`-like temp (filtered out before the debouncer
        // in real use), then rename over a.md: events on a.md only, twice.
        fs.set("/d/a.md", 5, 5);
        d.event("/d/a.md".into(), Instant::now());
        tokio::time::advance(Duration::from_millis(10)).await;
        d.event("/d/a.md".into(), Instant::now());
        let settled = drive(&mut d, Instant::now() + Duration::from_secs(5)).await;
        let paths: Vec<_> = settled.iter().map(|(p, ..)| p.clone()).collect();
        assert_eq!(paths, vec![PathBuf::from("/d/a.md")]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_path_settles_as_gone() {
        let fs = FakeFs::default();
        let mut d = Debouncer::new(SETTLE, fs.stat_fn());
        d.event("/d/gone.md".into(), Instant::now());
        let settled = drive(&mut d, Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(settled.len(), 1);
        assert!(settled[0].1 >= SETTLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_settles_every_path_with_few_wakes() {
        let fs = FakeFs::default();
        let mut d = Debouncer::new(SETTLE, fs.stat_fn());
        for i in 0..2000 {
            let p = format!("/d/f{i}.md");
            fs.set(&p, 1, 1);
            d.event(p.into(), Instant::now());
            if i % 100 == 0 {
                tokio::time::advance(Duration::from_millis(10)).await;
            }
        }
        let mut wakes = 0;
        let mut settled = 0;
        while let Some(at) = d.next_check() {
            tokio::time::sleep_until(at).await;
            wakes += 1;
            settled += d.poll(Instant::now()).len();
        }
        assert_eq!(settled, 2000);
        assert!(wakes <= 2 * CHECKS_PER_SETTLE as usize, "{wakes} wakes");
    }

    #[tokio::test(start_paused = true)]
    async fn overflow_drops_events_and_asks_for_one_rescan() {
        let (tx, mut rx) = event_channel(2);
        for i in 0..5 {
            tx.send(PathBuf::from(format!("/d/{i}.md")));
        }
        // The rescan request comes first: it is what makes the dropped ones harmless.
        assert_eq!(rx.next().await, Some(WatchEvent::Rescan));
        assert_eq!(rx.next().await, Some(WatchEvent::Changed("/d/0.md".into())));
        assert_eq!(rx.next().await, Some(WatchEvent::Changed("/d/1.md".into())));
        tx.send("/d/9.md".into());
        assert_eq!(rx.next().await, Some(WatchEvent::Changed("/d/9.md".into())));
        drop(tx);
        assert_eq!(rx.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn watcher_errors_and_rescan_flags_become_a_rescan() {
        let (tx, mut rx) = event_channel(8);
        tx.handle(Err(notify::Error::generic("inotify queue overflow")));
        assert_eq!(rx.next().await, Some(WatchEvent::Rescan));
        tx.handle(Ok(
            notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan)
        ));
        assert_eq!(rx.next().await, Some(WatchEvent::Rescan));
    }
}
