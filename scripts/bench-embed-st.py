#!/usr/bin/env python3
"""sentence-transformers' side of scripts/bench-embed.sh: embed the texts ragd embeds.

Reads a JSON array of texts (written by `examples/local_embed_bench.rs --write-texts`),
loads the model directory offline, embeds the texts the way sentence-transformers users do
(`encode`, batch 32, normalised), and prints one line:

    sentence-transformers: N chunks in S s: R chunks/s, CPU C s (torch V, T threads)

then writes the vectors as JSON so ragd's side can compare its own with them.

Usage: bench-embed-st.py MODEL_DIR TEXTS_JSON VECTORS_OUT [ROUNDS]
ROUNDS timed passes (default 3) after one warm-up pass; the fastest is reported, as on ragd's
side, with the process's CPU time (all threads) during it.
"""

import json
import os
import sys
import time

# The model is a local directory: never reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402


def main() -> None:
    model_dir, texts_path, vectors_out = sys.argv[1:4]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    with open(texts_path, encoding="utf-8") as f:
        texts = json.load(f)
    model = SentenceTransformer(model_dir, device="cpu")
    # Warm-up: first-call allocations and kernel selection are not throughput.
    model.encode(texts[:32], batch_size=32, normalize_embeddings=True)
    best = None
    vectors = None
    for _ in range(rounds):
        cpu_before = time.process_time()
        started = time.perf_counter()
        vectors = model.encode(texts, batch_size=32, normalize_embeddings=True)
        took = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        if best is None or took < best[0]:
            best = (took, cpu)
    took, cpu = best
    print(
        f"sentence-transformers: {len(texts)} chunks in {took:.2f} s: "
        f"{len(texts) / took:.1f} chunks/s, CPU {cpu:.2f} s (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads)"
    )
    with open(vectors_out, "w", encoding="utf-8") as f:
        json.dump([[float(x) for x in v] for v in vectors], f)


if __name__ == "__main__":
    main()
