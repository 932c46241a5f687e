#!/usr/bin/env bash
# Runs ragd's benchmarks (issue 8) in the release (bench) profile:
#
#   1. benches/extract_chunk.rs — criterion: extraction per format (Markdown,
#      text, HTML, a 4-page PDF) and chunking of a 200,000-character document;
#   2. benches/pipeline.rs — the whole pipeline against the project's embedding
#      server (instant and 2 ms per text), extraction+chunking alone, no-op
#      reruns, memory scaling and the one-paragraph edit; prints a table of
#      each figure against its target.
#
#   scripts/bench.sh                  both
#   scripts/bench.sh pipeline         only the pipeline benchmark
#   scripts/bench.sh extract_chunk    only criterion
#
# Environment (pipeline benchmark):
#   RAGD_BENCH_FILES=2000        files in the main folder
#   RAGD_BENCH_SCALE_FILES=1000  N of the N vs 10×N memory run; 10×N is the
#                                no-op rerun folder (target stated for 10,000)
#   RAGD_BENCH_ONLY=scaling,...  only these groups: ratio, busy, scaling, edit
#
# The first build takes a long time (qdrant-edge, candle: 10–20 minutes on two
# cores); later runs reuse target/release. Loopback network only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

which=${1:-all}
case "$which" in
    all | pipeline | extract_chunk) ;;
    *) echo "usage: $0 [all|pipeline|extract_chunk]" >&2; exit 2 ;;
esac

# Build both first, so compile time is not mixed into what follows.
cargo bench --no-run --bench pipeline --bench extract_chunk

if [[ $which == all || $which == extract_chunk ]]; then
    # Short measurement windows: the figures are stable to a few percent and
    # the whole script must stay within a few minutes on two cores.
    cargo bench --bench extract_chunk -- --warm-up-time 1 --measurement-time 3
fi
if [[ $which == all || $which == pipeline ]]; then
    cargo bench --bench pipeline
fi
