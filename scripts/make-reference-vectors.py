#!/usr/bin/env python3
"""Compute the reference vectors that tests/local_embed.rs checks ragd's local embedder against.

The reference is sentence-transformers itself, loading the same model directory offline,
so a match means ragd's tokenisation, truncation, pooling and normalisation agree with it.

Usage (needs sentence-transformers, e.g. the Open WebUI venv):
    HF_HUB_OFFLINE=1 /opt/ragd/owui-venv/bin/python scripts/make-reference-vectors.py \
        [MODEL_DIR] [OUT_JSON]
Defaults: models/all-MiniLM-L6-v2 and tests/data/minilm_reference.json under the repository.
"""

import json
import os
import sys
from pathlib import Path

# Never reach for the hub: the model is a local directory.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sentence_transformers import SentenceTransformer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# Varied on purpose: short and long, punctuation, digits, non-ASCII (exercises the
# normaliser's lowercasing and accent stripping), and one text longer than max_seq_length
# (256 tokens) so the reference also pins truncation.
SENTENCES = [
    "The cat sits on the mat.",
    "How do I reset my password?",
    "Qdrant stores vectors and payloads; Open WebUI shows knowledge bases.",
    "Die Katze schläft auf dem Sofa, während es draußen regnet.",
    "In 2023, revenue grew 14% to $3.2 billion (EBITDA: 812m).",
    "A",
    " ".join(
        f"Paragraph {i}: the quarterly maintenance of the hydraulic press requires checking seals."
        for i in range(40)
    ),
]


def main() -> None:
    model_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "models/all-MiniLM-L6-v2"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else REPO / "tests/data/minilm_reference.json"
    model = SentenceTransformer(str(model_dir), device="cpu")
    vectors = model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    data = {
        "model": "all-MiniLM-L6-v2",
        "generator": "scripts/make-reference-vectors.py (sentence-transformers "
        + __import__("sentence_transformers").__version__
        + ")",
        "max_seq_length": model.max_seq_length,
        "dimension": int(vectors.shape[1]),
        "items": [
            {"text": text, "vector": [round(float(x), 7) for x in vec]}
            for text, vec in zip(SENTENCES, vectors)
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    # One line per vector keeps the file small and its diffs readable.
    lines = [json.dumps({k: v for k, v in data.items() if k != "items"}, ensure_ascii=False)[:-1]]
    lines[0] += ', "items": ['
    lines.append(",\n".join(json.dumps(item, ensure_ascii=False) for item in data["items"]))
    lines.append("]}")
    out.write_text("\n".join(lines) + "\n")
    json.loads(out.read_text())  # the hand-joined file must still be valid JSON
    print(f"wrote {len(SENTENCES)} vectors of dimension {data['dimension']} to {out}")


if __name__ == "__main__":
    main()
