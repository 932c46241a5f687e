#!/usr/bin/env bash
# The figure of issue 27: ragd's local embedder against sentence-transformers, the same
# model folder and the same texts, in one run. Prints both rates and their ratio, the ratio
# of their CPU times (the figure load elsewhere on the machine does not move), how close
# ragd comes to the FLOP limit, and the cosine between the two engines' vectors.
#
# The texts are the chunks README command 1 embeds: the repository's Markdown cut as
# pipelines/docs.toml cuts it (examples/local_embed_bench.rs --markdown). Each engine runs
# ROUNDS timed passes after a warm-up and reports its fastest; the two take turns (ragd,
# sentence-transformers, ragd, ...) PASSES times, so load from elsewhere on the machine
# falls on both alike.
#
# Usage: scripts/bench-embed.sh
#   RAGD_ST_VENV      venv with sentence-transformers + torch (default /opt/ragd/st-venv;
#                     created with `pip install sentence-transformers` when missing: the
#                     PyPI torch wheel, large but CPU-capable)
#   RAGD_BENCH_PROFILE cargo profile of the example (default dev: the numeric crates are
#                     optimised there too, see Cargo.toml; "release" for release figures)
#   ROUNDS, PASSES    default 3 and 2
#   BENCH_DIR         the Markdown to chunk (default: the repository)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RAGD_ST_VENV:-/opt/ragd/st-venv}"
profile="${RAGD_BENCH_PROFILE:-dev}"
rounds="${ROUNDS:-3}"
passes="${PASSES:-2}"
corpus="${BENCH_DIR:-$repo}"
cd "$repo"

log() { echo "bench-embed: $*" >&2; }

model="$(scripts/fetch-model.sh)"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sentence_transformers' 2>/dev/null; then
    log "installing sentence-transformers into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check sentence-transformers >&2
fi

cargo build --quiet --profile "$profile" --example local_embed_bench
case "$profile" in
    dev) bench="target/debug/examples/local_embed_bench" ;;
    *) bench="target/$profile/examples/local_embed_bench" ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bench" --markdown "$corpus" --write-texts "$work/texts.json"

ragd_out="$work/ragd.txt"
st_out="$work/st.txt"
for ((pass = 1; pass <= passes; pass++)); do
    log "pass $pass/$passes: ragd"
    "$bench" --model "$model" --markdown "$corpus" --rounds "$rounds" \
        ${st_vectors:+--compare "$st_vectors"} 2>/dev/null | tee -a "$ragd_out"
    log "pass $pass/$passes: sentence-transformers"
    "$venv/bin/python" scripts/bench-embed-st.py "$model" "$work/texts.json" \
        "$work/st-vectors.json" "$rounds" 2>/dev/null | tee -a "$st_out"
    st_vectors="$work/st-vectors.json"
done
# The vectors of sentence-transformers' last pass against ragd's, once more at the end.
"$bench" --model "$model" --markdown "$corpus" --rounds 1 --compare "$st_vectors" 2>/dev/null \
    | grep cosine

# Best of the passes on each side.
best() { sed -nE "s|.* ([0-9.]+) $2.*|\\1|p" "$1" | sort -g | tail -1; }
ragd_rate="$(best "$ragd_out" 'chunks/s')"
ragd_gflops="$(best "$ragd_out" 'GFLOP/s')"
st_rate="$(best "$st_out" 'chunks/s')"
# CPU time of the same texts, lowest of the passes: what a run costs whatever else the
# machine is doing. On a shared machine the rates depend on how many cores each engine
# happened to get; this ratio does not.
least_cpu() { sed -nE 's|.* CPU ([0-9.]+) s.*|\1|p' "$1" | sort -g | head -1; }
ragd_cpu="$(least_cpu "$ragd_out")"
st_cpu="$(least_cpu "$st_out")"
awk -v r="$ragd_rate" -v s="$st_rate" -v g="$ragd_gflops" -v rc="$ragd_cpu" -v sc="$st_cpu" 'BEGIN {
    printf "ragd %.1f chunks/s, sentence-transformers %.1f chunks/s: ratio %.2fx\n", r, s, r / s
    printf "CPU time: ragd %.2f s, sentence-transformers %.2f s: ratio %.2fx\n", rc, sc, sc / rc
    printf "ragd at %.0f GFLOP/s of real-token arithmetic\n", g
}'
