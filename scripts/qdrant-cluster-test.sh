#!/usr/bin/env bash
# The 3-node Qdrant cluster test (issue 20): three real Qdrant nodes on loopback,
# `ragd index` of a few hundred files into a collection with shard_number = 3 and
# replication_factor = 2, one node killed with SIGKILL mid-run and started again on
# its storage; then every file's points must be present exactly once, read with
# consistency = all, and agree with ragd's ledger. Prints the figures. A few minutes.
#
#   scripts/qdrant-cluster-test.sh            (after cargo build; uses target/debug/ragd)
#
# Environment (all optional):
#   RAGD_BIN              the ragd binary (default target/debug/ragd)
#   RAGD_QDRANT_BIN       the Qdrant binary (default: unpacked by scripts/qdrant-up.sh's
#                         rules into $RAGD_CI_DIR/qdrant-bin/qdrant)
#   RAGD_CLUSTER_FILES    files to index (default 300)
#   RAGD_CLUSTER_PORT     first port; nodes use PORT+10*i .. +2 (default 17200)
#   RAGD_CI_DIR           as for scripts/qdrant-up.sh (default ${TMPDIR:-/tmp}/ragd-ci)
# Exit status 0 only if the run completed and the check found nothing wrong.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

ci_dir=${RAGD_CI_DIR:-${TMPDIR:-/tmp}/ragd-ci}
ragd=${RAGD_BIN:-$repo_root/target/debug/ragd}
files=${RAGD_CLUSTER_FILES:-300}
base=${RAGD_CLUSTER_PORT:-17200}
work=$(mktemp -d "${TMPDIR:-/tmp}/ragd-cluster.XXXXXX")

log() { printf 'qdrant-cluster: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x $ragd ]] || die "no ragd binary at $ragd (cargo build, or set RAGD_BIN)"
qdrant=${RAGD_QDRANT_BIN:-$ci_dir/qdrant-bin/qdrant}
if [[ ! -x $qdrant ]]; then
    # qdrant-up.sh unpacks and checks the binary; reuse that one home for it.
    [[ -f $ci_dir/qdrant.env ]] || RAGD_CI_DIR=$ci_dir scripts/qdrant-up.sh
    qdrant=$ci_dir/qdrant-bin/qdrant
fi
[[ -x $qdrant ]] || die "no Qdrant binary (set RAGD_QDRANT_BIN)"

http() { echo $((base + 10 * $1)); }
grpc() { echo $((base + 10 * $1 + 1)); }
p2p() { echo $((base + 10 * $1 + 2)); }

declare -A pids=()
embed_pid=""
cleanup() {
    for i in "${!pids[@]}"; do kill -9 "${pids[$i]}" 2>/dev/null || true; done
    [[ -n $embed_pid ]] && kill "$embed_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    if [[ ${keep:-0} == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

for i in 1 2 3; do
    for port in "$(http $i)" "$(grpc $i)" "$(p2p $i)"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "port $port is in use (a node of an earlier run?); set RAGD_CLUSTER_PORT"
        fi
    done
done

# Node i on its own storage; node 1 founds the cluster, the others join it. A
# restarted node finds its peers in its own storage.
start_node() {
    local i=$1
    local dir=$work/node$i
    mkdir -p "$dir"
    local join=(--uri "http://127.0.0.1:$(p2p 1)")
    [[ $i != 1 ]] && join=(--bootstrap "http://127.0.0.1:$(p2p 1)" --uri "http://127.0.0.1:$(p2p "$i")")
    (
        cd "$dir"
        export QDRANT__SERVICE__HOST=127.0.0.1
        export QDRANT__SERVICE__HTTP_PORT=$(http "$i")
        export QDRANT__SERVICE__GRPC_PORT=$(grpc "$i")
        export QDRANT__CLUSTER__ENABLED=true
        export QDRANT__CLUSTER__P2P__PORT=$(p2p "$i")
        export QDRANT__STORAGE__STORAGE_PATH=$dir/storage
        export QDRANT__STORAGE__SNAPSHOTS_PATH=$dir/snapshots
        export QDRANT__TELEMETRY_DISABLED=true
        exec "$qdrant" "${join[@]}" >>"$dir/qdrant.log" 2>&1 </dev/null
    ) &
    pids[$i]=$!
    local until=$((SECONDS + 90))
    until curl -sf --max-time 2 "http://127.0.0.1:$(http "$i")/readyz" >/dev/null; do
        kill -0 "${pids[$i]}" 2>/dev/null || die "node $i exited; see $dir/qdrant.log"
        ((SECONDS < until)) || die "node $i not ready after 90 s; see $dir/qdrant.log"
        sleep 0.2
    done
}

# `py ARGS <<'PY'` runs a script from the here-document; `pyc SCRIPT` reads stdin.
py() { python3 - "$@"; }
pyc() { python3 -c "$1"; }

peers() {
    curl -sf "http://127.0.0.1:$(http 1)/cluster" \
        | pyc 'import json, sys; print(len(json.load(sys.stdin)["result"]["peers"]))' 2>/dev/null
}

t0=$SECONDS
start_node 1
sleep 1
start_node 2
start_node 3
until [[ $(peers) == 3 ]]; do
    ((SECONDS < t0 + 90)) || die "the cluster has not 3 peers after 90 s"
    sleep 0.5
done
log "3 peers up after $((SECONDS - t0)) s"

# The embedding server: ragd's hashing embedder, slowed so the kill lands mid-run.
embed_port=$((base + 50))
"$ragd" embed-server --listen "127.0.0.1:$embed_port" --model hash-embed=384 --delay-ms 60 \
    >"$work/embed.log" 2>&1 &
embed_pid=$!

mkdir -p "$work/config" "$work/pipelines" "$work/docs"
cat >"$work/config/ragd.toml" <<TOML
state_dir = "../state"
pipelines_dir = "../pipelines"
[qdrant]
url = "http://127.0.0.1:$(grpc 1)"
shard_number = 3
replication_factor = 2
timeout_secs = 10
[embedding]
url = "http://127.0.0.1:$embed_port"
concurrency = 2
[server]
listen = "127.0.0.1:$((base + 51))"
TOML
cat >"$work/pipelines/docs.toml" <<TOML
sources = ["../docs"]
[embedding]
model = "hash-embed"
batch_size = 8
[chunking]
max_size = 400
overlap = 40
TOML
py "$work/docs" "$files" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i % 10}")
    os.makedirs(d, exist_ok=True)
    body = "\n\n".join(f"Paragraph {j} of note {i}: " + ("words about item %d " % i) * 12 for j in range(1 + i % 5))
    with open(os.path.join(d, f"note{i}.md"), "w") as f:
        f.write(f"# Note {i}\n\n{body}\n")
PY

indexed() {
    py "$work/state/ledger.sqlite" <<'PY' 2>/dev/null || echo 0
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(db.execute("select count(*) from files where state = 'indexed'").fetchone()[0])
PY
}

# Points written so far (through the alias ragd reads and writes by).
points() {
    curl -sf -X POST -H 'content-type: application/json' -d '{"exact": true}' \
        "http://127.0.0.1:$(http 1)/collections/docs/points/count" \
        | pyc 'import json, sys; print(json.load(sys.stdin)["result"]["count"])' 2>/dev/null || echo 0
}

# ragd index, and node 3 killed with SIGKILL once the first points are written (the
# ledger marks files indexed in groups after a sync, so points show progress first).
victim=3
started=$SECONDS
"$ragd" -c "$work/config/ragd.toml" index >"$work/index.out" 2>"$work/index.err" &
ragd_pid=$!
until (($(points) >= 50)); do
    kill -0 "$ragd_pid" 2>/dev/null || break
    sleep 0.2
done
kill -0 "$ragd_pid" 2>/dev/null || die "ragd index ended before the kill: $(tail -5 "$work/index.err")"
at_kill="$(points) points, $(indexed) files"
kill -9 "${pids[$victim]}"
wait "${pids[$victim]}" 2>/dev/null || true
unset "pids[$victim]"
killed_at=$SECONDS
log "node $victim killed (SIGKILL) after $((killed_at - started)) s, $at_kill indexed"
sleep 5
start_node $victim
log "node $victim back after $((SECONDS - killed_at)) s down"
status=0
wait "$ragd_pid" || status=$?
elapsed=$((SECONDS - started))
((status == 0)) || { keep=1; die "ragd index exited $status: $(tail -20 "$work/index.err")"; }
log "ragd index completed in $elapsed s"

# Recovery: every replica of the collection active again on every node.
collection=$(curl -sf "http://127.0.0.1:$(http 1)/aliases" | pyc '
import json, sys
names = [a["collection_name"] for a in json.load(sys.stdin)["result"]["aliases"] if a["alias_name"] == "docs"]
print(names[0] if names else "docs")')
recovered() {
    for i in 1 2 3; do
        curl -sf "http://127.0.0.1:$(http "$i")/collections/$collection/cluster" | pyc '
import json, sys
r = json.load(sys.stdin)["result"]
states = [s["state"] for s in r["local_shards"]] + [s["state"] for s in r["remote_shards"]]
sys.exit(0 if states and all(s == "Active" for s in states) else 1)' 2>/dev/null || return 1
    done
}
rec_start=$SECONDS
until recovered; do
    ((SECONDS < rec_start + 180)) || { keep=1; die "replicas not all Active after 180 s"; }
    sleep 1
done
recovery=$((SECONDS - rec_start))
log "all replicas active $recovery s after the run"

# The check: scroll with consistency=all from each node, compare with the ledger.
for i in 1 2 3; do
    py "$work/state/ledger.sqlite" "http://127.0.0.1:$(http "$i")" "$collection" "$files" <<'PY' || { keep=1; die "check against node $i failed"; }
import json, sqlite3, sys, urllib.request
ledger, url, collection, files = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
rows = {p: (h, n, s) for p, h, n, s in db.execute(
    "select path, content_hash, chunk_count, state from files where pipeline = 'docs'")}
problems = []
if len(rows) != files:
    problems.append(f"{len(rows)} ledger rows for {files} files")
problems += [f"{p}: state {s}" for p, (h, n, s) in rows.items() if s != "indexed"]
seen, per_path, offset = set(), {}, None
while True:
    body = {"limit": 1000, "with_payload": ["path", "chunk_index", "content_hash"], "with_vector": False}
    if offset is not None:
        body["offset"] = offset
    req = urllib.request.Request(f"{url}/collections/{collection}/points/scroll?consistency=all",
                                 data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    result = json.load(urllib.request.urlopen(req, timeout=60))["result"]
    for p in result["points"]:
        if p["id"] in seen:
            problems.append(f"point {p['id']} returned twice")
        seen.add(p["id"])
        pl = p["payload"]
        per_path.setdefault(pl["path"], []).append((pl["chunk_index"], pl["content_hash"]))
    offset = result.get("next_page_offset")
    if offset is None:
        break
for path, (hash_, n, _) in rows.items():
    got = sorted(per_path.pop(path, []))
    if [i for i, _ in got] != list(range(n)):
        problems.append(f"{path}: chunks {[i for i, _ in got]}, ledger says 0..{n}")
    elif any(h != hash_ for _, h in got):
        problems.append(f"{path}: points of another version")
problems += [f"{path}: {len(v)} points of a file not in the ledger" for path, v in per_path.items()]
chunks = sum(n for _, n, _ in rows.values())
print(f"node {url}: {len(seen)} points read with consistency=all, {chunks} chunks in the ledger, "
      f"{len(problems)} problems", file=sys.stderr)
for p in problems[:20]:
    print("  " + p, file=sys.stderr)
sys.exit(1 if problems or len(seen) != chunks else 0)
PY
done

chunks=$(py "$work/state/ledger.sqlite" <<'PY'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("select sum(chunk_count) from files").fetchone()[0])
PY
)
echo "== 3-node cluster (shard_number=3, replication_factor=2), node $victim SIGKILLed for ~5 s mid-run"
printf '%-34s %s\n' "files / chunks" "$files / $chunks" \
    "ragd index wall time" "$elapsed s (embedder: 60 ms per text, 2 requests in flight)" \
    "files/s, chunks/s (incl. outage)" "$(py "$files" "$chunks" "$elapsed" <<'PY'
import sys
f, c, e = map(float, sys.argv[1:])
print(f"{f / e:.1f}, {c / e:.1f}")
PY
)" \
    "written at the kill" "$at_kill" \
    "replicas all Active after the run" "$recovery s" \
    "store operations retried by ragd" "$(grep -c 'retrying' "$work/index.err" || true)" \
    "check (consistency=all, 3 nodes)" "every file's points exactly once, as the ledger says"
