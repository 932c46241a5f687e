#!/usr/bin/env bash
# Figures for knowledge-base directories against a real Open WebUI (0.12+):
#
#   RAGD_OWUI_URL=… RAGD_OWUI_KEY=… scripts/bench-tree.sh [--release]
#
# (RAGD_BENCH_NO_BUILD=1: use the binary already in target/.)
#
# (`. /tmp/ragd-ci/owui.env` after `scripts/openwebui-up.sh` sets both.) Over a
# throwaway installation with the project's embedding server and a fresh knowledge
# base, one `ragd index` each, timed:
#   1. first publish of 200 files in a 3-level tree (2 × 5 × 4 directories);
#   2. the no-op sync (nothing changed), then Open WebUI's own `sync/diff` with the
#      folder's manifest (what the browser's "Sync directory" would do);
#   3. a 100-file folder moved into another folder;
#   4. 100 files renamed in place;
# and after 3 and 4: uploads and links made (each would be a processing call on the
# server: extract + embed), and whether every file kept its upload (same file ids).
set -euo pipefail

profile=debug
[[ ${1:-} == --release ]] && profile=release
: "${RAGD_OWUI_URL:?set RAGD_OWUI_URL (and RAGD_OWUI_KEY)}"
: "${RAGD_OWUI_KEY:?set RAGD_OWUI_KEY}"

root=$(cd "$(dirname "$0")/.." && pwd)
if [[ -n ${RAGD_BENCH_NO_BUILD:-} ]]; then
    : # the binary in target/ is current
elif [[ $profile == release ]]; then
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
kb_name="bench-tree-$(date +%s)-$$"
tag=$(python3 -c 'import uuid; print(uuid.uuid4().hex)')

mkdir -p "$work/config" "$work/pipelines" "$work/docs"
cat >"$work/config/ragd.toml" <<EOF
state_dir = "../state"
pipelines_dir = "../pipelines"
[embedding]
url = "http://127.0.0.1:$embed_port"
[open_webui]
url = "$RAGD_OWUI_URL"
api_key = "$RAGD_OWUI_KEY"
concurrency = 4
process_timeout_secs = 300
EOF
cat >"$work/pipelines/docs.toml" <<EOF
sources = ["../docs"]
[knowledge]
name = "$kb_name"
[embedding]
model = "hash-embed"
EOF

"$bin" embed-server --listen "127.0.0.1:$embed_port" --model hash-embed=384 2>"$work/embed.log" &
pids+=($!)
sleep 1

# 2 top folders × 5 × 4 leaf folders × 5 files: 100 files under each top folder.
for a in alpha beta; do
    for b in 0 1 2 3 4; do
        for c in 0 1 2 3; do
            d="$work/docs/$a/sec$b/part$c"
            mkdir -p "$d"
            for f in 0 1 2 3 4; do
                printf '# %s %s %s %s\n\nNote %s about the %s/%s/%s/%s quokka.\n' \
                    "$a" "$b" "$c" "$f" "$tag" "$a" "$b" "$c" "$f" >"$d/note$f.md"
            done
        done
    done
done

# Open WebUI's view: file ids by place, and sync/diff against the folder.
owui() {
    python3 - "$RAGD_OWUI_URL" "$RAGD_OWUI_KEY" "$kb_name" "$work/docs" "$@" <<'EOF'
import hashlib, json, os, sys, urllib.request
url, key, name, docs, what = sys.argv[1:6]
def call(method, path, body=None):
    req = urllib.request.Request(url.rstrip('/') + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={'Authorization': 'Bearer ' + key, 'Content-Type': 'application/json'})
    return json.load(urllib.request.urlopen(req, timeout=120))
kb = None
page = 1
while kb is None:
    items = call('GET', f'/api/v1/knowledge/?page={page}')['items']
    if not items:
        sys.exit(f'no knowledge base {name}')
    kb = next((k['id'] for k in items if k['name'] == name), None)
    page += 1
if what == 'ids':
    ids, page = {}, 1
    while True:
        got = call('GET', f'/api/v1/knowledge/{kb}/files?page={page}&limit=200')['items']
        if not got:
            break
        for f in got:
            d = f.get('directory_path') or ''
            ids[(d + '/' if d else '') + f['filename']] = f['id']
        page += 1
    print(json.dumps(ids))
elif what == 'diff':
    manifest = []
    for top, _, files in os.walk(docs):
        for fn in files:
            p = os.path.join(top, fn)
            b = open(p, 'rb').read()
            rel = os.path.relpath(top, docs)
            manifest.append({'path': '' if rel == '.' else rel, 'filename': fn,
                             'checksum': hashlib.sha256(b).hexdigest(), 'size': len(b)})
    d = call('POST', f'/api/v1/knowledge/{kb}/sync/diff', {'manifest': manifest})
    print(f"sync/diff: {len(d['added'])} added, {len(d['modified'])} modified, "
          f"{len(d['deleted'])} deleted, {len(d['mkdir'])} mkdir, {len(d['rmdir'])} rmdir, "
          f"{d['unmodified_count']} unmodified of {len(manifest)}")
EOF
}

run() {
    local label=$1
    local t0 t1
    t0=$(date +%s.%N)
    "$bin" -c "$work/config/ragd.toml" index >"$work/out.txt" 2>"$work/err.txt" || {
        cat "$work/out.txt" "$work/err.txt"; exit 1; }
    t1=$(date +%s.%N)
    printf '%-40s %7.2f s   %s\n' "$label" "$(awk "BEGIN{print $t1 - $t0}")" \
        "$(grep -m1 'knowledge base:' "$work/out.txt" | sed 's/^ *//')"
    grep -m1 'knowledge base directories:' "$work/out.txt" || true
}

same_uploads() {
    python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
before, after, mapping = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
kept = sum(1 for old, new in json.loads(mapping).items() if before.get(old) and before.get(old) == after.get(new))
print(f"  same upload (file id) at the new place: {kept} of {len(json.loads(mapping))}; files listed: {len(after)}")
EOF
}

run "first publish, 200 files, 3 levels"
run "no-op sync"
owui diff

owui ids >"$work/ids0.json"
mkdir -p "$work/docs/beta/moved"
mv "$work/docs/alpha" "$work/docs/beta/moved/alpha"
run "100-file folder moved"
owui ids >"$work/ids1.json"
python3 - "$work/ids0.json" >"$work/map1.json" <<'EOF'
import json, sys
print(json.dumps({p: 'beta/moved/' + p for p in json.load(open(sys.argv[1])) if p.startswith('alpha/')}))
EOF
same_uploads "$work/ids0.json" "$work/ids1.json" "$(cat "$work/map1.json")"
owui diff

for f in "$work"/docs/beta/sec*/part*/note*.md; do
    mv "$f" "${f%/*}/renamed-${f##*/}"
done
run "100 files renamed"
owui ids >"$work/ids2.json"
python3 - "$work/ids1.json" >"$work/map2.json" <<'EOF'
import json, sys
out = {}
for p in json.load(open(sys.argv[1])):
    if p.startswith('beta/sec'):
        d, n = p.rsplit('/', 1)
        out[p] = f'{d}/renamed-{n}'
print(json.dumps(out))
EOF
same_uploads "$work/ids1.json" "$work/ids2.json" "$(cat "$work/map2.json")"
owui diff
run "no-op sync"
