#!/usr/bin/env bash
# Runs ragd's whole test suite: unit tests, the integration binary, and the
# contract tests against a real Open WebUI (installed into a venv outside the
# repo on first use, ~7 GB) and the local embedding model.
#
#   scripts/test.sh                 everything
#   RAGD_SKIP_OWUI=1 scripts/test.sh    without the real Open WebUI (contract tests
#                                   then run against the in-process fake only)
#   scripts/test.sh -- NAME         pass a filter to cargo test
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export RAGD_CI_DIR=${RAGD_CI_DIR:-${TMPDIR:-/tmp}/ragd-ci}
mkdir -p "$RAGD_CI_DIR"

cargo build --bins --tests

# The real sentence-transformers model for the local embedder's tests.
if [[ -z ${RAGD_TEST_MODEL_DIR:-} ]]; then
    scripts/fetch-model.sh
fi

if [[ -z ${RAGD_SKIP_OWUI:-} ]]; then
    RAGD_BIN="$PWD/target/debug/ragd" scripts/openwebui-up.sh
    trap 'scripts/openwebui-down.sh || true' EXIT
    set -a
    # shellcheck disable=SC1091
    . "$RAGD_CI_DIR/owui.env"
    set +a
fi

cargo test "$@"
