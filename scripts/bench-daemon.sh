#!/usr/bin/env bash
# Benchmark `ragd run`: drop-to-searchable latency and burst throughput.
#
#   scripts/bench-daemon.sh [--release] [--drops N] [--burst N] [--settle-ms MS]
#
# Starts the project's embedding server (`ragd embed-server`, hash-embed=384) and
# `ragd run` over a throwaway installation on loopback, then:
#   1. drops N (default 50) 10 KB Markdown files one at a time and measures, for
#      each, the time from the file being written (closed) to the ledger row being
#      `indexed` — which the daemon writes only after the points are upserted into
#      Qdrant, so the file is searchable at that moment;
#   2. writes a burst of M (default 5000) small files at once and measures the
#      time until every one is `indexed`, and how many were.
# Latency includes the settle time (default 1000 ms, ragd's default), which is
# there on purpose: a file is not read until it has stopped changing.
#
# Reads the ledger with Python's sqlite3 (WAL allows a reader next to the daemon).
set -euo pipefail

profile=debug
drops=50
burst=5000
settle_ms=1000
while [[ $# -gt 0 ]]; do
    case "$1" in
        --release) profile=release ;;
        --drops) drops=$2; shift ;;
        --burst) burst=$2; shift ;;
        --settle-ms) settle_ms=$2; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

root=$(cd "$(dirname "$0")/.." && pwd)
if [[ $profile == release ]]; then
    cargo build --release --bin ragd --manifest-path "$root/Cargo.toml"
else
    cargo build --bin ragd --manifest-path "$root/Cargo.toml"
fi
bin="$root/target/$profile/ragd"

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
embed_port=$(free_port)
http_port=$(free_port)

mkdir -p "$work/config" "$work/pipelines" "$work/docs"
cat >"$work/config/ragd.toml" <<EOF
state_dir = "../state"
pipelines_dir = "../pipelines"
[embedding]
url = "http://127.0.0.1:$embed_port"
[server]
listen = "127.0.0.1:$http_port"
EOF
cat >"$work/pipelines/docs.toml" <<EOF
sources = ["../docs"]
settle_ms = $settle_ms
[embedding]
model = "hash-embed"
EOF

"$bin" embed-server --listen "127.0.0.1:$embed_port" --model hash-embed=384 2>"$work/embed.log" &
pids+=($!)
"$bin" -c "$work/config/ragd.toml" run 2>"$work/ragd.log" &
pids+=($!)

# Wait for /readyz.
for _ in $(seq 1 600); do
    if python3 - "$http_port" <<'EOF' 2>/dev/null; then break; fi
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=1)
EOF
    sleep 0.1
done

python3 - "$work" "$drops" "$burst" "$profile" "$settle_ms" <<'EOF'
import os, sqlite3, statistics, sys, time

work, drops, burst, profile, settle_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
docs = os.path.join(work, "docs")
ledger_path = os.path.join(work, "state", "ledger.sqlite")

def ledger():
    while not os.path.exists(ledger_path):
        time.sleep(0.05)
    return sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True, timeout=30)

def ten_kb(i):
    para = (f"Paragraph about benchmark topic {i}: the daemon watches folders, waits for files "
            f"to settle, extracts, chunks, embeds and stores them. ")
    text = f"# Benchmark document {i}\n\n"
    while len(text) < 10 * 1024:
        text += para * 3 + "\n\n"
    return text[: 10 * 1024]

db = ledger()
def indexed(path):
    row = db.execute("SELECT state FROM files WHERE pipeline='docs' AND path=?", (path,)).fetchone()
    return row is not None and row[0] == "indexed"

# 1. Drop-to-searchable latency, one file at a time.
lat = []
for i in range(drops):
    rel = f"drops/doc{i:03}.md"
    os.makedirs(os.path.join(docs, "drops"), exist_ok=True)
    with open(os.path.join(docs, rel), "w") as f:
        f.write(ten_kb(i))
    t0 = time.monotonic()
    deadline = t0 + 120
    while not indexed(rel):
        if time.monotonic() > deadline:
            sys.exit(f"{rel} not indexed within 120 s")
        time.sleep(0.005)
    lat.append(time.monotonic() - t0)
lat.sort()
def pct(p):
    return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]
print(f"profile: {profile}; settle: {settle_ms} ms")
print(f"drop-to-searchable over {len(lat)} drops of a 10 KB Markdown file: "
      f"p50 {pct(50)*1000:.0f} ms, p95 {pct(95)*1000:.0f} ms, "
      f"min {lat[0]*1000:.0f} ms, max {lat[-1]*1000:.0f} ms, mean {statistics.mean(lat)*1000:.0f} ms")

# 2. A burst of small files.
bdir = os.path.join(docs, "burst")
os.makedirs(bdir)
t0 = time.monotonic()
for i in range(burst):
    with open(os.path.join(bdir, f"note{i:05}.md"), "w") as f:
        f.write(f"# Note {i}\n\nA small note number {i} for the burst benchmark.\n")
written = time.monotonic() - t0
deadline = t0 + 3600
n = 0
while True:
    n = db.execute("SELECT COUNT(*) FROM files WHERE pipeline='docs' AND path LIKE 'burst/%' "
                   "AND state='indexed'").fetchone()[0]
    if n >= burst or time.monotonic() > deadline:
        break
    time.sleep(0.1)
took = time.monotonic() - t0
print(f"burst of {burst} files (written in {written:.1f} s): {n}/{burst} indexed "
      f"{took:.1f} s after the first write ({n / took:.0f} files/s)")
if n != burst:
    sys.exit("burst not fully indexed")
EOF
