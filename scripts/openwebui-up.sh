#!/usr/bin/env bash
# Starts a real Open WebUI on loopback for ragd's contract tests and CI, fully offline.
#
# Idempotent: reuses the venv, the embedding server, the data directory and the API key
# when they are still good; starts only what is missing. On success it writes
# "$RAGD_CI_DIR/owui.env" with OWUI_URL / OWUI_API_KEY (and the RAGD_OWUI_URL /
# RAGD_OWUI_KEY names the tests read), so `set -a; . "$RAGD_CI_DIR/owui.env"; set +a`
# before `cargo test` runs the contract tests against it.
#
# Environment (all optional):
#   RAGD_OWUI_VENV   venv holding open-webui (default /opt/ragd/owui-venv; created if missing)
#   OWUI_VERSION     pinned open-webui version (default 0.12.4)
#   OWUI_QDRANT_CLIENT_VERSION qdrant-client installed next to it (default 1.18.0)
#   OWUI_PORT        Open WebUI port on 127.0.0.1 (default 8080)
#   RAGD_BIN         ragd binary that serves the Ollama embedding API (default target/debug/ragd)
#   RAGD_EMBED_PORT  embedding server port on 127.0.0.1 (default 11434)
#   RAGD_CI_DIR      state, logs, pids and owui.env (default ${TMPDIR:-/tmp}/ragd-ci)
#   OWUI_START_TIMEOUT seconds to wait for /health (default 180)
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${RAGD_OWUI_VENV:-/opt/ragd/owui-venv}
version=${OWUI_VERSION:-0.12.4}
port=${OWUI_PORT:-8080}
embed_port=${RAGD_EMBED_PORT:-11434}
ragd_bin=${RAGD_BIN:-$repo_root/target/debug/ragd}
ci_dir=${RAGD_CI_DIR:-${TMPDIR:-/tmp}/ragd-ci}
start_timeout=${OWUI_START_TIMEOUT:-180}
embed_model=hash-embed

url="http://127.0.0.1:$port"
embed_url="http://127.0.0.1:$embed_port"
state_dir="$ci_dir/owui-state"
env_file="$ci_dir/owui.env"

log() { printf 'openwebui-up: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A process we started, recorded in a pid file, that is still running.
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

mkdir -p "$ci_dir" "$state_dir"

# 1. The venv: installing is slow (about 7 GB), so only when the pinned version is missing.
installed=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("open-webui"))' 2>/dev/null || true)
if [[ $installed != "$version" ]]; then
    log "installing open-webui==$version into $venv (found: ${installed:-none}); this takes minutes"
    [[ -x $venv/bin/python ]] || python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "open-webui==$version"
fi

# 1b. qdrant-client, for ragd's external knowledge ([knowledge] mode = "external"): Open WebUI
# imports it when it first searches an external Qdrant source, and the PyPI package does not
# depend on it (open-webui[all] pins this version). Installing it does not disturb a server
# running from the venv: the import is made per search, so a running server finds it too.
qdrant_client_version=${OWUI_QDRANT_CLIENT_VERSION:-1.18.0}
have_qdrant_client=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("qdrant-client"))' 2>/dev/null || true)
if [[ $have_qdrant_client != "$qdrant_client_version" ]]; then
    log "installing qdrant-client==$qdrant_client_version into $venv (found: ${have_qdrant_client:-none})"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "qdrant-client==$qdrant_client_version"
fi

# 2. The embedding server Open WebUI embeds knowledge files through (Ollama API).
if curl -sf --max-time 2 "$embed_url/api/tags" >/dev/null; then
    log "embedding server already answers on $embed_url; reusing it"
else
    [[ -x $ragd_bin ]] || die "no embedding server on $embed_url and RAGD_BIN ($ragd_bin) is not executable; build ragd first"
    log "starting $ragd_bin embed-server on $embed_url"
    setsid nohup "$ragd_bin" embed-server --listen "127.0.0.1:$embed_port" --model "$embed_model=384" \
        >"$ci_dir/embed.log" 2>&1 </dev/null &
    echo $! >"$ci_dir/embed.pid"
    for _ in $(seq 1 60); do
        curl -sf --max-time 2 "$embed_url/api/tags" >/dev/null && break
        alive "$ci_dir/embed.pid" || die "embedding server exited; see $ci_dir/embed.log"
        sleep 0.5
    done
    curl -sf --max-time 2 "$embed_url/api/tags" >/dev/null || die "embedding server did not answer; see $ci_dir/embed.log"
fi

# True when owui.env holds a key this server accepts.
key_works() {
    [[ -f $env_file ]] || return 1
    local key
    key=$(sed -n 's/^OWUI_API_KEY=//p' "$env_file")
    [[ -n $key ]] && curl -sf --max-time 5 -H "Authorization: Bearer $key" "$url/api/v1/knowledge/" >/dev/null
}

healthy() { curl -sf --max-time 2 "$url/health" >/dev/null; }

if healthy; then
    if key_works; then
        log "Open WebUI already running on $url with a working key ($env_file)"
        exit 0
    fi
    alive "$ci_dir/owui.pid" || die "something else answers on $url; stop it or set OWUI_PORT"
    log "our Open WebUI on $url has no working key; restarting it from an empty data dir"
    "$repo_root/scripts/openwebui-down.sh" --keep-embed
fi

# A data dir without a key that works cannot get one: sign-up only makes an admin on an
# empty database. Start such a server from scratch.
if [[ -d $state_dir/data ]] && [[ ! -f $env_file ]]; then
    rm -rf "$state_dir/data"
fi
mkdir -p "$state_dir/data"
[[ -f $state_dir/secret ]] || (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state_dir/secret")

# 3. Open WebUI, offline: no telemetry, no version check, no model downloads; embeddings via
# the loopback Ollama-API server; API keys on.
log "starting Open WebUI $version on $url (log: $ci_dir/owui.log)"
started=$(date +%s)
(
    cd "$state_dir"
    export DATA_DIR="$state_dir/data"
    export WEBUI_SECRET_KEY
    WEBUI_SECRET_KEY=$(cat "$state_dir/secret")
    export OLLAMA_BASE_URL="$embed_url"
    export ENABLE_OLLAMA_API=true
    export ENABLE_OPENAI_API=false
    export RAG_EMBEDDING_ENGINE=ollama
    export RAG_EMBEDDING_MODEL="$embed_model"
    export OFFLINE_MODE=true
    export HF_HUB_OFFLINE=1
    export TRANSFORMERS_OFFLINE=1
    export ENABLE_VERSION_UPDATE_CHECK=false
    export ANONYMIZED_TELEMETRY=false
    export DO_NOT_TRACK=true
    export SCARF_NO_ANALYTICS=true
    export ENABLE_WEB_SEARCH=false
    export ENABLE_OTEL=false
    export ENABLE_API_KEYS=true
    export ENABLE_SIGNUP=true
    export WEBUI_URL="$url"
    exec setsid nohup "$venv/bin/open-webui" serve --host 127.0.0.1 --port "$port" \
        >"$ci_dir/owui.log" 2>&1 </dev/null
) &
echo $! >"$ci_dir/owui.pid"

deadline=$((started + start_timeout))
until healthy; do
    alive "$ci_dir/owui.pid" || die "Open WebUI exited during start-up; see $ci_dir/owui.log"
    (($(date +%s) < deadline)) || die "Open WebUI not healthy after ${start_timeout}s; see $ci_dir/owui.log"
    sleep 1
done
log "Open WebUI healthy after $(($(date +%s) - started))s"

# 4. Admin and API key. A restarted server with its data dir keeps the old key.
if key_works; then
    log "existing API key still works"
    exit 0
fi

json_field() { "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

password=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
signup=$(curl -sf --max-time 30 -H 'Content-Type: application/json' \
    -d "{\"name\":\"ragd-ci\",\"email\":\"ragd-ci@example.com\",\"password\":\"$password\"}" \
    "$url/api/v1/auths/signup") || die "sign-up failed (is the database empty?); see $ci_dir/owui.log"
token=$(json_field token <<<"$signup")
key_json=$(curl -sf --max-time 30 -X POST -H "Authorization: Bearer $token" "$url/api/v1/auths/api_key") \
    || die "creating the API key failed; see $ci_dir/owui.log"
api_key=$(json_field api_key <<<"$key_json")

(
    umask 077
    cat >"$env_file" <<ENV
OWUI_URL=$url
OWUI_API_KEY=$api_key
RAGD_OWUI_URL=$url
RAGD_OWUI_KEY=$api_key
ENV
)
key_works || die "the new API key is refused by $url"
log "admin and API key ready; wrote $env_file"
