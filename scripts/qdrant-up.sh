#!/usr/bin/env bash
# Starts the real Qdrant server from ../shared/qdrant/ (v1.14.1, built from the official
# source) as a single node on loopback, for ragd's store tests and CI.
#
# Idempotent: reuses a node it started earlier that still answers. On success it writes
# "$RAGD_CI_DIR/qdrant.env" with QDRANT_URL (gRPC, what ragd and the tests use),
# QDRANT_REST_URL and RAGD_QDRANT_BIN (the unpacked binary, for tests that start and kill
# nodes of their own), so `set -a; . "$RAGD_CI_DIR/qdrant.env"; set +a` before
# `cargo test` runs every store test against it too.
#
# Environment (all optional):
#   RAGD_SHARED_DIR     the shared folder holding qdrant/qdrant.xz (default ../shared)
#   QDRANT_HTTP_PORT    REST port on 127.0.0.1 (default 6333)
#   QDRANT_GRPC_PORT    gRPC port on 127.0.0.1 (default 6334)
#   RAGD_CI_DIR         binary, storage, log, pid and qdrant.env (default ${TMPDIR:-/tmp}/ragd-ci)
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${RAGD_SHARED_DIR:-$repo_root/../shared}
http_port=${QDRANT_HTTP_PORT:-6333}
grpc_port=${QDRANT_GRPC_PORT:-6334}
ci_dir=${RAGD_CI_DIR:-${TMPDIR:-/tmp}/ragd-ci}
bin="$ci_dir/qdrant-bin/qdrant"
node_dir="$ci_dir/qdrant-node"
env_file="$ci_dir/qdrant.env"
pid_file="$ci_dir/qdrant.pid"

log() { printf 'qdrant-up: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
healthy() { curl -sf --max-time 2 "http://127.0.0.1:$http_port/healthz" >/dev/null; }

mkdir -p "$ci_dir"

# 1. The binary: unpacked once, checked against the shipped sha256.
if [[ ! -x $bin ]]; then
    [[ -f $shared/qdrant/qdrant.xz ]] || die "no $shared/qdrant/qdrant.xz (set RAGD_SHARED_DIR)"
    command -v xz >/dev/null || die "xz is not installed (apt-get install xz-utils)"
    mkdir -p "$(dirname "$bin")"
    xz -dc "$shared/qdrant/qdrant.xz" >"$bin.part"
    echo "$(cat "$shared/qdrant/qdrant.sha256")  $bin.part" | sha256sum -c --quiet - \
        || die "the unpacked binary does not match qdrant.sha256"
    chmod +x "$bin.part"
    mv "$bin.part" "$bin"
    log "unpacked $bin"
fi

write_env() {
    cat >"$env_file" <<ENV
QDRANT_URL=http://127.0.0.1:$grpc_port
QDRANT_REST_URL=http://127.0.0.1:$http_port
RAGD_QDRANT_BIN=$bin
ENV
}

# 2. A node of ours that still answers is reused; anything else on the port is not ours.
if healthy; then
    alive "$pid_file" || die "something else answers on port $http_port; stop it or set QDRANT_HTTP_PORT"
    log "Qdrant already running on port $http_port (pid $(cat "$pid_file"))"
    write_env
    exit 0
fi

# 3. A fresh node: its own storage, loopback only, no telemetry.
rm -rf "$node_dir"
mkdir -p "$node_dir"
started=$(date +%s)
(
    cd "$node_dir"
    export QDRANT__SERVICE__HOST=127.0.0.1
    export QDRANT__SERVICE__HTTP_PORT=$http_port
    export QDRANT__SERVICE__GRPC_PORT=$grpc_port
    export QDRANT__STORAGE__STORAGE_PATH=$node_dir/storage
    export QDRANT__STORAGE__SNAPSHOTS_PATH=$node_dir/snapshots
    export QDRANT__TELEMETRY_DISABLED=true
    exec "$bin" >"$ci_dir/qdrant.log" 2>&1 </dev/null
) &
echo $! >"$pid_file"
until healthy; do
    alive "$pid_file" || die "Qdrant exited during start-up; see $ci_dir/qdrant.log"
    (($(date +%s) < started + 60)) || die "Qdrant not healthy after 60 s; see $ci_dir/qdrant.log"
    sleep 0.2
done
write_env
log "Qdrant $(curl -sf "http://127.0.0.1:$http_port/" | sed -n 's/.*"version":"\([^"]*\)".*/\1/p') healthy on gRPC $grpc_port after $(($(date +%s) - started)) s"
