//! Throughput of the in-process embedder: chunks per second on this machine.
//!
//! A benchmark, not a test: run it by hand (dev profile; the numeric crates are built
//! with opt-level 3 by the profile overrides in Cargo.toml):
//!
//! ```text
//! cargo run --example local_embed_bench -- [MODEL_DIR] [CHUNKS] [CHARS_PER_CHUNK] [BATCH]
//! ```
//!
//! Defaults: `models/all-MiniLM-L6-v2` (from `scripts/fetch-model.sh`), 256 chunks of
//! ~800 characters in batches of `DEFAULT_BATCH_SIZE`.

use std::path::PathBuf;
use std::time::Instant;

use ragd::embed::Embedder;
use ragd::embed::local::{DEFAULT_BATCH_SIZE, DEFAULT_MODEL_DIR, LocalEmbedder};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| DEFAULT_MODEL_DIR.to_owned()));
    let chunks: usize = args.next().map_or(Ok(256), |a| a.parse())?;
    let chars: usize = args.next().map_or(Ok(800), |a| a.parse())?;
    let batch: usize = args.next().map_or(Ok(DEFAULT_BATCH_SIZE), |a| a.parse())?;

    let started = Instant::now();
    let embedder = LocalEmbedder::load(&dir, "all-MiniLM-L6-v2".to_owned())?.with_batch_size(batch);
    println!("loaded {} in {:.2?}", dir.display(), started.elapsed());

    // Prose-like text with varied words, so token counts resemble real chunks
    // (~800 characters is ~170 tokens, under the 256-token limit).
    let words = [
        "the",
        "pipeline",
        "extracts",
        "text",
        "from",
        "documents",
        "and",
        "splits",
        "it",
        "into",
        "chunks",
        "which",
        "are",
        "embedded",
        "stored",
        "in",
        "Qdrant",
        "with",
        "their",
        "page",
        "numbers",
        "headings",
        "ledger",
        "records",
        "every",
        "file's",
        "state",
        "so",
        "reruns",
        "skip",
        "unchanged",
        "inputs",
        "quickly",
    ];
    let texts: Vec<String> = (0..chunks)
        .map(|i| {
            let mut text = format!("Chunk {i}.");
            let mut w = i;
            while text.len() < chars {
                text.push(' ');
                text.push_str(words[w % words.len()]);
                w = w.wrapping_mul(31).wrapping_add(7);
            }
            text
        })
        .collect();
    let tokens: usize = texts
        .iter()
        .map(|t| {
            embedder
                .tokenizer()
                .encode(t.as_str(), true)
                .map_or(0, |e| e.len())
        })
        .sum();

    // Warm-up: first-touch allocations and thread-pool start are not throughput.
    embedder.embed(&texts[..8.min(texts.len())]).await?;

    let started = Instant::now();
    let vectors = embedder.embed(&texts).await?;
    let elapsed = started.elapsed();
    println!(
        "{} chunks of {chars} chars ({} tokens on average), batch {batch}, in {elapsed:.2?}: \
         {:.1} chunks/s",
        vectors.len(),
        tokens / chunks.max(1),
        vectors.len() as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
