#!/usr/bin/env bash
# Runs ragd's whole test suite: unit tests and the integration binary, against the
# embedded store and a real Qdrant server (from ../shared/qdrant/), the in-process fake
# and a real Open WebUI (installed into a venv outside the repo on first use, ~7 GB),
# and the real local embedding model. Every real part it starts is then required: a
# test that cannot reach it fails instead of passing on what it could reach.
#
#   scripts/test.sh                     everything
#   RAGD_SKIP_OWUI=1 scripts/test.sh    without the real Open WebUI (contract tests
#                                       then run against the in-process fake only)
#   RAGD_SKIP_QDRANT=1 scripts/test.sh  without the Qdrant server (embedded store only)
#   scripts/test.sh -- NAME             pass a filter to cargo test
#
# It runs clippy (`--all-targets -- -D warnings`) after the build, and ends with how
# many tests ran against each real part, the clippy verdict, the time of each phase and
# one closing line 'tests: N passed, N failed' (a clippy failure counts as one failed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ ${1:-} == -- ]] && shift

export RAGD_CI_DIR=${RAGD_CI_DIR:-${TMPDIR:-/tmp}/ragd-ci}
mkdir -p "$RAGD_CI_DIR"

phases=()
phase_start=0
phase() { phase_start=$(date +%s); echo "== $1" >&2; }
phase_end() { phases+=("$(printf '%-28s %5d s' "$1" $(($(date +%s) - phase_start)))"); }

phase "build (debug)"
cargo build --bins --tests
phase_end "build (debug)"

# Lints: clippy's defaults and the [lints] table of Cargo.toml, on every target. A
# failure fails the run but does not stop it, so the tests still report. Left out
# when a filter is given, like the second pass and the cluster below.
status=0
if (($# == 0)); then
    phase "clippy"
    if cargo clippy --workspace --all-targets -- -D warnings; then
        clippy="ok"
    else
        clippy="failed (cargo clippy --workspace --all-targets -- -D warnings)"
        status=1
    fi
    # Dependencies point one way: no two files or modules of src/ use each other.
    if python3 scripts/import-cycles.py src; then
        clippy="$clippy; no import cycles"
    else
        clippy="$clippy; import cycles (scripts/import-cycles.py)"
        status=1
    fi
    phase_end "clippy"
fi

# The real sentence-transformers model for the local embedder's tests.
phase "local model"
if [[ -z ${RAGD_TEST_MODEL_DIR:-} ]]; then
    scripts/fetch-model.sh >/dev/null
fi
export RAGD_REQUIRE_MODEL=${RAGD_REQUIRE_MODEL:-1}
phase_end "local model"

# Servers this run starts are stopped when it ends; ones already running (a developer's,
# reused by the up scripts) are left as they were.
started_here=()
cleanup() {
    local s
    for s in "${started_here[@]}"; do "scripts/$s-down.sh" || true; done
}
trap cleanup EXIT

if [[ -z ${RAGD_SKIP_QDRANT:-} ]]; then
    phase "Qdrant server"
    curl -sf --max-time 2 "http://127.0.0.1:${QDRANT_HTTP_PORT:-6333}/healthz" >/dev/null \
        || started_here+=(qdrant)
    scripts/qdrant-up.sh
    set -a
    # shellcheck disable=SC1091
    . "$RAGD_CI_DIR/qdrant.env"
    set +a
    export RAGD_REQUIRE_QDRANT=${RAGD_REQUIRE_QDRANT:-1}
    phase_end "Qdrant server"
fi

if [[ -z ${RAGD_SKIP_OWUI:-} ]]; then
    phase "Open WebUI (install, start)"
    curl -sf --max-time 2 "http://127.0.0.1:${OWUI_PORT:-8080}/health" >/dev/null \
        || started_here+=(openwebui)
    RAGD_BIN="$PWD/target/debug/ragd" scripts/openwebui-up.sh
    set -a
    # shellcheck disable=SC1091
    . "$RAGD_CI_DIR/owui.env"
    set +a
    export RAGD_REQUIRE_OWUI=${RAGD_REQUIRE_OWUI:-1}
    phase_end "Open WebUI (install, start)"
fi

# OCR: Tesseract and poppler from Debian (`tesseract-ocr tesseract-ocr-eng
# poppler-utils`); required once they are installed.
if command -v tesseract >/dev/null && command -v pdftoppm >/dev/null; then
    export RAGD_REQUIRE_OCR=${RAGD_REQUIRE_OCR:-1}
fi

# Each test that runs against a real part appends "part<TAB>test" here.
export RAGD_REAL_PARTS_LOG="$RAGD_CI_DIR/real-parts.log"
: >"$RAGD_REAL_PARTS_LOG"
out="$RAGD_CI_DIR/cargo-test.log"

phase "cargo test"
cargo test --workspace "$@" 2>&1 | tee "$out" || status=$?
phase_end "cargo test"

# The end-to-end tests that take a store, again on the Qdrant server: TestEnv
# reads RAGD_TEST_STORE and gives each test a collection of its own there (the
# first pass ran them on embedded qdrant-edge). Child `ragd` processes get the
# server from the test's config. `external::` is not here: it runs on the server
# in the first pass already (its own environment, always the Qdrant server).
e2e_out="$RAGD_CI_DIR/cargo-test-e2e-qdrant.log"
: >"$e2e_out"
if [[ -z ${RAGD_SKIP_QDRANT:-} && $# -eq 0 ]]; then
    phase "cargo test (end-to-end on Qdrant server)"
    RAGD_TEST_STORE=qdrant cargo test --test integration -- \
        index:: daemon:: crash:: faults:: hostile:: ops:: formats:: publish:: tree:: access:: 2>&1 | tee "$e2e_out" || status=$?
    phase_end "cargo test (end-to-end on Qdrant server)"
fi

# A 3-node Qdrant cluster on loopback, a node killed under `ragd index`: the one
# that holds shards only, then the one ragd talks to (a full run, not a filter).
if [[ -z ${RAGD_SKIP_QDRANT:-} && $# -eq 0 ]]; then
    phase "Qdrant 3-node cluster"
    cluster_log="$RAGD_CI_DIR/cluster.log"
    if scripts/qdrant-cluster-test.sh >"$cluster_log" 2>&1 \
        && RAGD_CLUSTER_VICTIM=1 scripts/qdrant-cluster-test.sh >>"$cluster_log" 2>&1; then
        cluster="2 passed, 0 failed"
    else
        cluster="failed (see $cluster_log)"
        status=1
    fi
    tail -n 20 "$cluster_log"
    phase_end "Qdrant 3-node cluster"
fi

# Counted before the summary that prints it (set -u).
e2e_passed=$(sed -n 's/^test result: .* \([0-9][0-9]*\) passed; .*/\1/p' "$e2e_out" | awk '{ s += $1 } END { print s + 0 }')
echo
echo "== tests that ran against each real part"
for part in qdrant openwebui model ocr; do
    printf '%-10s %4d tests\n' "$part" "$(awk -F'\t' -v p="$part" '$1 == p { print $2 }' "$RAGD_REAL_PARTS_LOG" | sort -u | wc -l)"
done
printf '%-10s %4d tests (end-to-end, second pass with RAGD_TEST_STORE=qdrant)\n' qdrant-e2e "$e2e_passed"
[[ -n ${cluster:-} ]] && printf '%-10s %s (scripts/qdrant-cluster-test.sh)\n' cluster "$cluster"
[[ -n ${clippy:-} ]] && printf '%-10s %s\n' clippy "$clippy"
echo "== phases"
printf '%s\n' "${phases[@]}"
passed=$(sed -n 's/^test result: .* \([0-9][0-9]*\) passed; \([0-9][0-9]*\) failed.*/\1/p' "$out" "$e2e_out" | awk '{ s += $1 } END { print s + 0 }')
failed=$(sed -n 's/^test result: .* \([0-9][0-9]*\) passed; \([0-9][0-9]*\) failed.*/\2/p' "$out" "$e2e_out" | awk '{ s += $1 } END { print s + 0 }')
if ((status != 0 && failed == 0)); then failed=1; fi
echo "tests: $passed passed, $failed failed"
exit "$status"
