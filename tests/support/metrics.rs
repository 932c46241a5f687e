//! Exact metric values for one test. The process's global recorder is shared by
//! every test running at once, and they all name their pipeline `docs`, so its
//! counts are anybody's; a recorder of the test's own is not.

use std::future::Future;

/// Run `test` to completion on a single-threaded runtime whose metrics go to a
/// Prometheus recorder of its own (ragd's `/metrics` format), and return what
/// that recorder renders afterwards with `test`'s output. Every task of the
/// runtime runs on this thread and so records there; events sent from
/// blocking threads (`spawn_blocking`) are not seen.
pub fn own_metrics<T>(test: impl Future<Output = T>) -> (T, String) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let out = metrics::with_local_recorder(&recorder, || runtime.block_on(test));
    (out, handle.render())
}

/// The value of one series (`name{labels}` exactly as rendered) in `text`, if
/// it was recorded at all.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}
