#!/usr/bin/env bash
# The large crash-safety run: `ragd index` over 1,000 files, killed with SIGKILL 50
# times at random moments, then run to completion and checked against the files on
# disk (missing, duplicate points, duplicate knowledge-base entries, orphan uploads).
#
#   scripts/crash-soak.sh [FILES] [KILLS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export RAGD_CRASH_FILES=${1:-1000}
export RAGD_CRASH_KILLS=${2:-50}
cargo test --test integration crash::kill_9_at_random_moments -- --nocapture 2>&1 \
    | grep -E '^crash-soak:|test result|panicked'
