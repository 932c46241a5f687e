#!/usr/bin/env bash
# The large crash-safety runs, each killed with SIGKILL at random moments, then run
# to completion and checked against the files on disk (missing, duplicate points,
# duplicate knowledge-base entries, orphan uploads):
# - `ragd index` over FILES files (default 1,000), KILLS kills (default 50);
# - every folder of FILES/2 files renamed back and forth before each run (batched
#   deletes, re-adds from the cache, knowledge-base moves, vacuums), KILLS kills.
#
#   scripts/crash-soak.sh [FILES] [KILLS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export RAGD_CRASH_FILES=${1:-1000}
export RAGD_CRASH_KILLS=${2:-50}
cargo test --test integration crash::kill_9_ -- --nocapture 2>&1 \
    | grep -E '^crash-soak|^test |test result|panicked'
