#!/usr/bin/env bash
# Figures for issue 20: the same corpus and embedder indexed by `ragd index` into the
# embedded store and into a Qdrant server (files/s, chunks/s, peak RSS of ragd), and the
# no-op rerun over 10,000 files against the server. A script, not a timed test: it
# prints figures and asserts nothing about them.
#
#   scripts/qdrant-bench.sh                      (debug build: target/debug/ragd)
#   RAGD_BIN=target/release/ragd scripts/qdrant-bench.sh
#
# Environment (all optional):
#   RAGD_BIN            ragd binary (default target/debug/ragd); the figures say which
#   RAGD_QDRANT_BIN     Qdrant binary (default $RAGD_CI_DIR/qdrant-bin/qdrant)
#   RAGD_BENCH_FILES    files of the embedded-vs-server corpus (default 2000)
#   RAGD_BENCH_NOOP     files of the no-op rerun (default 10000)
#   RAGD_BENCH_PORT     first of the ports used (default 17400)
# Its own Qdrant node (own storage, own ports) is started and killed by pid.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
ci_dir=${RAGD_CI_DIR:-${TMPDIR:-/tmp}/ragd-ci}
ragd=${RAGD_BIN:-$repo_root/target/debug/ragd}
qdrant=${RAGD_QDRANT_BIN:-$ci_dir/qdrant-bin/qdrant}
files=${RAGD_BENCH_FILES:-2000}
noop_files=${RAGD_BENCH_NOOP:-10000}
base=${RAGD_BENCH_PORT:-17400}
work=$(mktemp -d "${TMPDIR:-/tmp}/ragd-qbench.XXXXXX")
log() { printf 'qdrant-bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
[[ -x $ragd ]] || die "no ragd binary at $ragd"
if [[ ! -x $qdrant ]]; then
    RAGD_CI_DIR=$ci_dir scripts/qdrant-up.sh
    qdrant=$ci_dir/qdrant-bin/qdrant
fi

qpid="" epid=""
cleanup() {
    [[ -n $qpid ]] && kill -9 "$qpid" 2>/dev/null || true
    [[ -n $epid ]] && kill "$epid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/q"
(
    cd "$work/q"
    export QDRANT__SERVICE__HOST=127.0.0.1 QDRANT__SERVICE__HTTP_PORT=$base
    export QDRANT__SERVICE__GRPC_PORT=$((base + 1)) QDRANT__TELEMETRY_DISABLED=true
    export QDRANT__STORAGE__STORAGE_PATH=$work/q/storage QDRANT__STORAGE__SNAPSHOTS_PATH=$work/q/snapshots
    exec "$qdrant" >"$work/q/log" 2>&1 </dev/null
) &
qpid=$!
until curl -sf --max-time 2 "http://127.0.0.1:$base/readyz" >/dev/null; do
    kill -0 "$qpid" 2>/dev/null || die "qdrant exited: $(tail -3 "$work/q/log")"
    sleep 0.2
done
"$ragd" embed-server --listen "127.0.0.1:$((base + 2))" --model hash-embed=384 >"$work/embed.log" 2>&1 &
epid=$!

corpus() { # dir n
    python3 - "$1" "$2" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i % 50}")
    os.makedirs(d, exist_ok=True)
    body = "\n\n".join(f"Paragraph {j} of note {i}: " + ("words about item %d " % i) * 12 for j in range(1 + i % 7))
    with open(os.path.join(d, f"note{i}.md"), "w") as f:
        f.write(f"# Note {i}\n\n{body}\n")
PY
}

install() { # name docs-dir server?
    local dir=$work/$1
    mkdir -p "$dir/config" "$dir/pipelines"
    {
        printf 'state_dir = "../state"\npipelines_dir = "../pipelines"\n'
        [[ $3 == server ]] && printf '[qdrant]\nurl = "http://127.0.0.1:%s"\n' $((base + 1))
        printf '[embedding]\nurl = "http://127.0.0.1:%s"\n' $((base + 2))
    } >"$dir/config/ragd.toml"
    printf 'sources = ["%s"]\n[qdrant]\ncollection = "%s"\n[embedding]\nmodel = "hash-embed"\nbatch_size = 32\n[chunking]\nmax_size = 400\noverlap = 40\n' \
        "$2" "bench_$1" >"$dir/pipelines/docs.toml"
}

# Runs `ragd index` of install $1; prints "wall_seconds peak_rss_mib".
measure() {
    python3 - "$ragd" "$work/$1/config/ragd.toml" <<'PY'
import os, subprocess, sys, time
ragd, config = sys.argv[1:]
start = time.monotonic()
p = subprocess.Popen([ragd, "-c", config, "index"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
_, status, usage = os.wait4(p.pid, 0)
wall = time.monotonic() - start
if status != 0:
    sys.stderr.write(p.stderr.read().decode())
    sys.exit(f"ragd index failed ({status})")
print(f"{wall:.2f} {usage.ru_maxrss / 1024:.0f}")
PY
}

chunks() {
    python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select sum(chunk_count) from files').fetchone()[0])" \
        "$work/$1/state/ledger.sqlite"
}

corpus "$work/docs" "$files"
install edge "$work/docs" edge
install server "$work/docs" server
m=$(measure edge) || die "ragd index (edge) failed"
read -r edge_wall edge_rss <<<"$m"
m=$(measure server) || die "ragd index (server) failed"
read -r server_wall server_rss <<<"$m"
n_chunks=$(chunks edge)
[[ $(chunks server) == "$n_chunks" ]] || die "the two runs made different chunk counts"

corpus "$work/docs10k" "$noop_files"
install noop "$work/docs10k" server
m=$(measure noop) || die "ragd index (first) failed"
read -r first_wall first_rss <<<"$m"
m=$(measure noop) || die "ragd index (noop) failed"
read -r noop_wall noop_rss <<<"$m"

profile=debug
[[ $ragd == */release/* ]] && profile=release
rate() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.1f}')" "$@"; }
echo "== ragd index, embedded vs Qdrant server ($profile build; hashing embedder, no delay; Qdrant 1.14.1 on loopback)"
printf '%-10s %8s %9s %10s %11s %10s\n' backend files chunks wall_s "files/s" "chunks/s"
printf '%-10s %8s %9s %10s %11s %10s   peak RSS %s MiB\n' embedded "$files" "$n_chunks" "$edge_wall" \
    "$(rate "$files" "$edge_wall")" "$(rate "$n_chunks" "$edge_wall")" "$edge_rss"
printf '%-10s %8s %9s %10s %11s %10s   peak RSS %s MiB\n' server "$files" "$n_chunks" "$server_wall" \
    "$(rate "$files" "$server_wall")" "$(rate "$n_chunks" "$server_wall")" "$server_rss"
echo "server / embedded wall time: $(rate "$server_wall" "$edge_wall")x"
echo "== no-op rerun over $noop_files files against the server"
echo "first index: ${first_wall} s (peak RSS ${first_rss} MiB); no-op rerun: ${noop_wall} s (peak RSS ${noop_rss} MiB)"
