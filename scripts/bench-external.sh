#!/usr/bin/env bash
# The figure of external knowledge: folder → answerable in Open WebUI, mode "files"
# against mode "external", same machine, same folder, one run each:
#
#   set -a; . /tmp/ragd-ci/qdrant.env; set +a; scripts/bench-external.sh [--release]
#
# (RAGD_BENCH_NO_BUILD=1: use the binary already in target/, RAGD_BENCH_BIN: another one;
# RAGD_BENCH_FILES=N: files, default 1000; RAGD_BENCH_MODES="external": one mode only,
# default "files external".) It starts its own Open WebUI 0.12.4 (venv of scripts/openwebui-up.sh,
# with qdrant-client) on 127.0.0.1:${BENCH_OWUI_PORT:-18280} with a fresh data dir, whose
# embedding server (`ragd embed-server`, port ${BENCH_OWUI_EMBED_PORT:-18211}) serves Open
# WebUI alone, so its counters are Open WebUI's own embedding calls; ragd embeds through
# another one (${BENCH_RAGD_EMBED_PORT:-18212}), both the same hash-embed model (384 dims).
# Qdrant is the server in QDRANT_URL / QDRANT_REST_URL (scripts/qdrant-up.sh), with fresh
# collections. Over N generated Markdown files (2–20 KB, headed sections):
#   files:    `ragd index` uploads every file and returns once each is processed and
#             linked (Open WebUI extracts, chunks and embeds it, RAG_EMBEDDING_BATCH_SIZE
#             left at its default); timed until the knowledge base lists all N;
#   external: `ragd index` embeds into Qdrant and registers the external base; timed
#             until retrieve-test, asked the last file's opening lines, cites that file first.
# For each: the time, and Open WebUI's embedding requests and texts during the sync; for
# external also during a second `ragd index` with nothing changed (the base exists then:
# Open WebUI embeds a base's name and description only when one is created or its source
# is changed, `embed_knowledge_base_metadata` in its routers/knowledge.py).
set -euo pipefail

profile=debug
[[ ${1:-} == --release ]] && profile=release
: "${QDRANT_URL:?set QDRANT_URL (and QDRANT_REST_URL): . /tmp/ragd-ci/qdrant.env}"
qdrant_rest=${QDRANT_REST_URL:-${QDRANT_URL/:6334/:6333}}
files=${RAGD_BENCH_FILES:-1000}
modes=${RAGD_BENCH_MODES:-files external}
venv=${RAGD_OWUI_VENV:-/opt/ragd/owui-venv}
owui_port=${BENCH_OWUI_PORT:-18280}
owui_embed_port=${BENCH_OWUI_EMBED_PORT:-18211}
ragd_embed_port=${BENCH_RAGD_EMBED_PORT:-18212}

root=$(cd "$(dirname "$0")/.." && pwd)
if [[ -n ${RAGD_BENCH_NO_BUILD:-} ]]; then
    : # the binary in target/ is current
elif [[ $profile == release ]]; then
    cargo build --release --bin ragd --manifest-path "$root/Cargo.toml"
else
    cargo build --bin ragd --manifest-path "$root/Cargo.toml"
fi
bin=${RAGD_BENCH_BIN:-$root/target/$profile/ragd}
"$venv/bin/python" -c 'import qdrant_client' 2>/dev/null \
    || { echo "qdrant-client is not in $venv: run scripts/openwebui-up.sh" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
log() { printf 'bench-external: %s\n' "$*" >&2; }
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

owui="http://127.0.0.1:$owui_port"
for p in "$owui_embed_port" "$ragd_embed_port"; do
    setsid "$bin" embed-server --listen "127.0.0.1:$p" --model hash-embed=384 >"$work/embed-$p.log" 2>&1 &
    pids+=($!)
done

log "starting Open WebUI on $owui (fresh data dir)"
mkdir -p "$work/owui"
(
    cd "$work/owui"
    export DATA_DIR="$work/owui/data" WEBUI_SECRET_KEY=bench-external-secret
    export OLLAMA_BASE_URL="http://127.0.0.1:$owui_embed_port" ENABLE_OLLAMA_API=true ENABLE_OPENAI_API=false
    export RAG_EMBEDDING_ENGINE=ollama RAG_EMBEDDING_MODEL=hash-embed
    export OFFLINE_MODE=true HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ENABLE_VERSION_UPDATE_CHECK=false
    export ANONYMIZED_TELEMETRY=false DO_NOT_TRACK=true SCARF_NO_ANALYTICS=true ENABLE_WEB_SEARCH=false
    export ENABLE_OTEL=false ENABLE_API_KEYS=true ENABLE_SIGNUP=true WEBUI_URL="$owui"
    exec setsid "$venv/bin/open-webui" serve --host 127.0.0.1 --port "$owui_port" >"$work/owui.log" 2>&1 </dev/null
) &
pids+=($!)
for _ in $(seq 1 300); do
    curl -sf --max-time 2 "$owui/health" >/dev/null && break
    sleep 1
done
curl -sf --max-time 2 "$owui/health" >/dev/null || { tail -20 "$work/owui.log" >&2; exit 1; }
token=$(curl -sf -H 'Content-Type: application/json' \
    -d '{"name":"bench","email":"bench@example.com","password":"bench-external-pw"}' \
    "$owui/api/v1/auths/signup" | json 'd["token"]')
key=$(curl -sf -X POST -H "Authorization: Bearer $token" "$owui/api/v1/auths/api_key" | json 'd["api_key"]')

log "generating $files Markdown files"
python3 - "$work/docs" "$files" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(23)
words = [w for w in open('/usr/share/dict/words').read().split() if w.isalpha() and w.islower()] \
    if os.path.exists('/usr/share/dict/words') else \
    [''.join(rng.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(rng.randint(3, 9))) for _ in range(5000)]
def para(k):
    return ' '.join(rng.choice(words) for _ in range(k)).capitalize() + '.'
for i in range(n):
    d = os.path.join(root, f'area{i % 10}', f'topic{i % 37}')
    os.makedirs(d, exist_ok=True)
    target = rng.randint(2_000, 20_000)
    # A word only this file has; the question is the file's opening (title and this
    # line): one word alone is too weak a signal for the 384-bucket hashing
    # embedder against 14,000 chunks of random words.
    token = ''.join(rng.choice('bcdfghjklmnpqrstvwxz') for _ in range(12))
    out = [f'# Note {i}: {para(4)}', '', f'Reference code {token} appears only here: {token}.', '']
    open(os.path.join(root, '..', 'last-question'), 'w').write(' '.join(out).replace('#', '').strip())
    size = 0
    while size < target:
        out += [f'## {para(3)}', '', para(rng.randint(40, 120)), '', f'- {para(8)}', f'- {para(8)}', '']
        size = sum(len(l) + 1 for l in out)
    open(os.path.join(d, f'note{i:05d}.md'), 'w').write('\n'.join(out))
PY
last=$(cat "$work/last-question")
last_path=$(cd "$work/docs" && find . -name "note$(printf %05d $((files - 1))).md" | sed 's|^\./||')
log "$(du -sh "$work/docs" | cut -f1) in $files files; the last one is $last_path"

stats() { curl -sf "http://127.0.0.1:$owui_embed_port/api/ragd/stats"; }

# One installation per mode: its own state directory and collection.
setup() { # mode name collection
    local dir="$work/$1"
    mkdir -p "$dir/config" "$dir/pipelines"
    cat >"$dir/config/ragd.toml" <<EOF
state_dir = "../state"
pipelines_dir = "../pipelines"
[qdrant]
url = "$QDRANT_URL"
[embedding]
url = "http://127.0.0.1:$ragd_embed_port"
[open_webui]
url = "$owui"
api_key = "$key"
concurrency = 4
process_timeout_secs = 900
EOF
    cat >"$dir/pipelines/bench.toml" <<EOF
sources = ["$work/docs"]
[qdrant]
collection = "$3"
[knowledge]
name = "$2"
mode = "$1"
$([[ $1 == external ]] && echo "qdrant_url_for_openwebui = \"$qdrant_rest\"")
[embedding]
model = "hash-embed"
EOF
}

tag=$(date +%s)
results=()

# --- files --------------------------------------------------------------------------
if [[ " $modes " == *" files "* ]]; then
setup files "bench-files-$tag" "bench_files_$tag"
before=$(stats)
log "mode files: ragd index (uploads, Open WebUI processing, links)"
t0=$(now)
"$bin" --config "$work/files/config/ragd.toml" index >"$work/files.out" 2>"$work/files.err" || true
t1=$(now)
after=$(stats)
kb_id=$(curl -sf -H "Authorization: Bearer $key" "$owui/api/v1/knowledge/" \
    | json "[k['id'] for k in d['items'] if k['name']=='bench-files-$tag'][0]")
listed=$(curl -sf -H "Authorization: Bearer $key" "$owui/api/v1/knowledge/$kb_id/files?limit=1" | json 'd.get("total")')
files_secs=$(secs "$t0" "$t1")
files_req=$(( $(json 'd["requests"]' <<<"$after") - $(json 'd["requests"]' <<<"$before") ))
files_texts=$(( $(json 'd["texts"]' <<<"$after") - $(json 'd["texts"]' <<<"$before") ))
grep -E 'knowledge base|indexed|files' "$work/files.out" >&2 || true
log "files: ${files_secs}s, knowledge base lists $listed of $files, Open WebUI embedding: $files_req requests, $files_texts texts"
fi

# --- external -----------------------------------------------------------------------
if [[ " $modes " == *" external "* ]]; then
setup external "bench-external-$tag" "bench_ext_$tag"
before=$(stats)
log "mode external: ragd index (embed into Qdrant, register the external base)"
t0=$(now)
"$bin" --config "$work/external/config/ragd.toml" index >"$work/external.out" 2>"$work/external.err" || true
t_index=$(now)
during=$(stats)
conn=$(curl -sf -H "Authorization: Bearer $key" "$owui/api/v1/knowledge/external/connections" \
    | json "([c['id'] for c in d['items'] if c['name']=='ragd: bench-external-$tag'] + [''])[0]")
[[ -n $conn ]] || { log "ragd registered no external connection"; tail -20 "$work/external.err" >&2; exit 1; }
found=""
for _ in $(seq 1 600); do
    top=$(curl -sf -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
        -d "{\"query\": $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$last"), \"count\": 1, \"source\": {\"name\": \"bench_ext_$tag\", \"config\": {\"content_field\": \"payload.text\", \"metadata_field\": \"payload.metadata\"}}}" \
        "$owui/api/v1/knowledge/external/connections/$conn/retrieve-test" | json 'd["metadatas"][0]["source"] if d["metadatas"] else ""' || true)
    if [[ $top == "$last_path" ]]; then found=yes; break; fi
    sleep 0.1
done
t1=$(now)
[[ -n $found ]] || { log "retrieve-test never found $last_path"; tail -5 "$work/external.err" >&2; exit 1; }
ext_secs=$(secs "$t0" "$t1")
ext_index_secs=$(secs "$t0" "$t_index")
ext_req=$(( $(json 'd["requests"]' <<<"$during") - $(json 'd["requests"]' <<<"$before") ))
ext_texts=$(( $(json 'd["texts"]' <<<"$during") - $(json 'd["texts"]' <<<"$before") ))
grep -E 'external|indexed|files' "$work/external.out" >&2 || true
log "external: ${ext_secs}s (ragd index ${ext_index_secs}s), Open WebUI embedding during the sync: $ext_req requests, $ext_texts texts"
before=$(stats)
"$bin" --config "$work/external/config/ragd.toml" index >"$work/external2.out" 2>"$work/external2.err" || true
after=$(stats)
ext2_req=$(( $(json 'd["requests"]' <<<"$after") - $(json 'd["requests"]' <<<"$before") ))
ext2_texts=$(( $(json 'd["texts"]' <<<"$after") - $(json 'd["texts"]' <<<"$before") ))
log "external, second sync (nothing changed): Open WebUI embedding: $ext2_req requests, $ext2_texts texts"
fi

printf '\n| mode | folder → answerable | Open WebUI embedding calls during the sync (texts) |\n|---|---|---|\n'
[[ -n ${files_secs:-} ]] && printf '| files | %s s (knowledge base lists %s of %s) | %s (%s) |\n' "$files_secs" "$listed" "$files" "$files_req" "$files_texts"
[[ -n ${ext_secs:-} ]] && printf '| external | %s s (ragd index %s s) | %s (%s); second sync %s (%s) |\n' "$ext_secs" "$ext_index_secs" "$ext_req" "$ext_texts" "$ext2_req" "$ext2_texts"
if [[ -n ${files_secs:-} && -n ${ext_secs:-} ]]; then
    ratio=$(python3 -c "print(f'{$files_secs / $ext_secs:.0f}')")
    printf '\nexternal is %s× sooner (%s files, %s, %s build)\n' "$ratio" "$files" "$(du -sh "$work/docs" | cut -f1)" "$profile"
fi

# Leave the shared Qdrant as it was.
for c in "bench_files_$tag" "bench_ext_$tag"; do
    curl -sf -X DELETE "$qdrant_rest/collections/$c" >/dev/null || true
    for v in $(curl -sf "$qdrant_rest/collections" | json "' '.join(c['name'] for c in d['result']['collections'] if c['name'].startswith('$c'))"); do
        curl -sf -X DELETE "$qdrant_rest/collections/$v" >/dev/null || true
    done
done
