#!/usr/bin/env bash
# The large crash-safety runs, each killed with SIGKILL at random moments, then run
# to completion and checked against the files on disk (missing, duplicate points,
# duplicate knowledge-base entries, orphan uploads):
# - `ragd index` over FILES files (default 1,000), KILLS kills (default 50);
# - every folder of FILES/2 files renamed back and forth before each run (batched
#   deletes, re-adds from the cache, knowledge-base moves, vacuums), KILLS kills;
# - with a real Open WebUI (RAGD_OWUI_URL and RAGD_OWUI_KEY, as scripts/openwebui-up.sh
#   writes them to $RAGD_CI_DIR/owui.env): REAL_FILES files (default 60) moved and
#   edited against it, REAL_KILLS kills (default 25); skipped without one.
#
#   scripts/crash-soak.sh [FILES] [KILLS] [REAL_FILES] [REAL_KILLS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export RAGD_CRASH_FILES=${1:-1000}
export RAGD_CRASH_KILLS=${2:-50}
export RAGD_REAL_CRASH_FILES=${3:-60}
export RAGD_REAL_CRASH_KILLS=${4:-25}
cargo test --test integration crash::kill_9_ -- --nocapture 2>&1 \
    | grep -E '^crash-soak|^test |test result|panicked|skipped'
