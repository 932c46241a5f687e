#!/usr/bin/env bash
# Stops the node scripts/qdrant-up.sh started (only the process in its pid file) and
# removes its storage.
set -euo pipefail

ci_dir=${RAGD_CI_DIR:-${TMPDIR:-/tmp}/ragd-ci}
pid_file="$ci_dir/qdrant.pid"
[[ -f $pid_file ]] || exit 0
pid=$(cat "$pid_file")
if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$pid_file" "$ci_dir/qdrant.env"
rm -rf "$ci_dir/qdrant-node"
