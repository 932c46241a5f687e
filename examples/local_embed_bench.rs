//! Throughput of the in-process embedder: chunks per second on this machine.
//!
//! A benchmark, not a test: run it by hand, or through `scripts/bench-embed.sh`, which
//! runs sentence-transformers on the same texts and prints the ratio (dev profile: the
//! numeric crates are built with opt-level 3 by the profile overrides in Cargo.toml).
//!
//! ```text
//! cargo run --example local_embed_bench -- [OPTIONS]
//!   --model DIR          model directory (default models/all-MiniLM-L6-v2)
//!   --markdown DIR       embed the chunks of DIR's *.md files (recursively, target/ and
//!                        hidden folders left out), cut as the docs pipeline cuts them
//!                        (Markdown, 1,200 characters, 100 overlap); default: synthetic
//!                        prose, --chunks chunks of --chars characters
//!   --texts FILE         embed the texts of a JSON array of strings instead
//!   --chunks N --chars N synthetic texts (default 256 × 800)
//!   --batch N            texts per forward pass (default DEFAULT_BATCH_SIZE)
//!   --rounds N           timed passes after a warm-up; the best is reported (default 3)
//!   --write-texts FILE   write the texts as a JSON array and exit (for the Python side)
//!   --compare FILE       a JSON array of vectors for the same texts (sentence-transformers'):
//!                        print the lowest and mean cosine against ours
//!   --write-vectors FILE write our vectors of the last round as a JSON array
//! ```
//!
//! Prints one line `ragd: N chunks (T tokens) in S s: R chunks/s, CPU C s, G GFLOP/s`,
//! where GFLOP counts the model's real-token arithmetic (see [`flops`]), then the same
//! per CPU-second against this CPU's measured limit (`ragd_bert::limit`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ragd::chunk::{ChunkSettings, Chunker, SizeUnit};
use ragd::document::Format;
use ragd::embed::Embedder;
use ragd::embed::local::{DEFAULT_BATCH_SIZE, DEFAULT_MODEL_DIR, LocalEmbedder};

struct Options {
    model: PathBuf,
    markdown: Option<PathBuf>,
    texts: Option<PathBuf>,
    chunks: usize,
    chars: usize,
    batch: usize,
    rounds: usize,
    write_texts: Option<PathBuf>,
    compare: Option<PathBuf>,
    write_vectors: Option<PathBuf>,
}

fn options() -> Result<Options, Box<dyn std::error::Error>> {
    let mut o = Options {
        model: PathBuf::from(DEFAULT_MODEL_DIR),
        markdown: None,
        texts: None,
        chunks: 256,
        chars: 800,
        batch: DEFAULT_BATCH_SIZE,
        rounds: 3,
        write_texts: None,
        compare: None,
        write_vectors: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => o.model = value()?.into(),
            "--markdown" => o.markdown = Some(value()?.into()),
            "--texts" => o.texts = Some(value()?.into()),
            "--chunks" => o.chunks = value()?.parse()?,
            "--chars" => o.chars = value()?.parse()?,
            "--batch" => o.batch = value()?.parse()?,
            "--rounds" => o.rounds = value()?.parse::<usize>()?.max(1),
            "--write-texts" => o.write_texts = Some(value()?.into()),
            "--compare" => o.compare = Some(value()?.into()),
            "--write-vectors" => o.write_vectors = Some(value()?.into()),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(o)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The malloc settings `ragd` itself runs with, so page-fault costs are the daemon's.
    ragd::alloc::tune();
    let o = options()?;
    let texts = match (&o.texts, &o.markdown) {
        (Some(file), _) => serde_json::from_slice(&std::fs::read(file)?)?,
        (None, Some(dir)) => markdown_chunks(dir)?,
        (None, None) => synthetic(o.chunks, o.chars),
    };
    if let Some(path) = &o.write_texts {
        std::fs::write(path, serde_json::to_vec(&texts)?)?;
        eprintln!("wrote {} texts to {}", texts.len(), path.display());
        return Ok(());
    }

    let started = Instant::now();
    let embedder =
        LocalEmbedder::load(&o.model, "all-MiniLM-L6-v2".to_owned())?.with_batch_size(o.batch);
    eprintln!("loaded {} in {:.2?}", o.model.display(), started.elapsed());
    let lengths: Vec<usize> = texts
        .iter()
        .map(|t| {
            embedder
                .tokenizer()
                .encode(t.as_str(), true)
                .map_or(0, |e| e.len())
        })
        .collect();
    let tokens: usize = lengths.iter().sum();
    let gflop = lengths.iter().map(|&l| flops(l)).sum::<f64>() / 1e9;

    // Warm-up: first-touch allocations and thread-pool start are not throughput.
    embedder.embed(&texts[..32.min(texts.len())]).await?;

    let mut best: Option<(Duration, Duration)> = None;
    let mut vectors = Vec::new();
    for _ in 0..o.rounds {
        let cpu_before = cpu_time();
        let started = Instant::now();
        vectors = embedder.embed(&texts).await?;
        let wall = started.elapsed();
        let cpu = cpu_time() - cpu_before;
        if best.is_none_or(|(w, _)| wall < w) {
            best = Some((wall, cpu));
        }
    }
    let (wall, cpu) = best.expect("at least one round");
    println!(
        "ragd: {} chunks ({tokens} tokens, {:.0} per chunk) in {:.2} s: {:.1} chunks/s, \
         CPU {:.2} s, {:.1} GFLOP/s (batch {})",
        texts.len(),
        tokens as f64 / texts.len().max(1) as f64,
        wall.as_secs_f64(),
        texts.len() as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64(),
        gflop / wall.as_secs_f64(),
        o.batch,
    );

    // How close to the FLOP limit: the same arithmetic per CPU-second, against what one
    // core can do at most (measured now, under the same load).
    let per_cpu_second = gflop / cpu.as_secs_f64();
    match ragd_bert::limit::measure() {
        Some(limit) => println!(
            "ragd at {per_cpu_second:.0} GFLOP per CPU-second: {:.0}% of this CPU's f32 limit \
             ({:.0} per core{})",
            100.0 * per_cpu_second / limit.f32,
            limit.f32,
            limit
                .bf16
                .map_or(String::new(), |b| format!("; bf16: {b:.0}")),
        ),
        None => println!("ragd at {per_cpu_second:.0} GFLOP per CPU-second"),
    }

    if let Some(path) = &o.write_vectors {
        std::fs::write(path, serde_json::to_vec(&vectors)?)?;
    }
    if let Some(path) = &o.compare {
        let theirs: Vec<Vec<f32>> = serde_json::from_slice(&std::fs::read(path)?)?;
        if theirs.len() != vectors.len() {
            return Err(format!(
                "{} has {} vectors, not {}",
                path.display(),
                theirs.len(),
                vectors.len()
            )
            .into());
        }
        let cosines: Vec<f32> = vectors
            .iter()
            .zip(&theirs)
            .map(|(a, b)| cosine(a, b))
            .collect();
        let lowest = cosines.iter().copied().fold(f32::INFINITY, f32::min);
        let mean = cosines.iter().sum::<f32>() / cosines.len().max(1) as f32;
        println!("cosine vs sentence-transformers: lowest {lowest:.7}, mean {mean:.7}");
    }
    Ok(())
}

/// Floating-point operations of a BERT-MiniLM-L6 forward pass over one text of `len`
/// tokens (h = 384, 1,536 intermediate, 6 layers): per layer the dense products
/// (q, k, v, output: 4·h², feed-forward: 2·h·i multiply-adds per token) and attention
/// (q·kᵀ and p·v: 2·len²·h multiply-adds), two FLOPs per multiply-add. 256 tokens ≈ 6 GFLOP.
/// Element-wise work (GELU, softmax, norms) is left out: it is under 1 %.
fn flops(len: usize) -> f64 {
    let (l, h, i, layers) = (len as f64, 384.0, 1536.0, 6.0);
    layers * 2.0 * (l * (4.0 * h * h + 2.0 * h * i) + 2.0 * l * l * h)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// User + system time of this process so far (all threads).
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we own and reads nothing else.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The chunks the docs pipeline (`pipelines/docs.toml`) makes of a folder's Markdown.
fn markdown_chunks(dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let chunker = Chunker::new(ChunkSettings {
        max_size: 1200,
        overlap: 100,
        unit: SizeUnit::Characters,
        markdown: true,
    })?;
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0 || !(name.starts_with('.') || name == "target" || name == "models")
        })
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "md"))
        .map(|e| e.into_path())
        .collect();
    files.sort();
    let mut texts = Vec::new();
    for file in files {
        let doc = ragd::extract::extract(&std::fs::read(&file)?, Format::Markdown)?;
        texts.extend(chunker.chunk(&doc).into_iter().map(|c| c.text));
    }
    if texts.is_empty() {
        return Err(format!("no Markdown text under {}", dir.display()).into());
    }
    Ok(texts)
}

/// Prose-like text with varied words, so token counts resemble real chunks
/// (~800 characters is ~170 tokens, under the 256-token limit).
fn synthetic(chunks: usize, chars: usize) -> Vec<String> {
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
    (0..chunks)
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
        .collect()
}
