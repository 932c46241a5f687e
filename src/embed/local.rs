//! The in-process embedder: a sentence-transformers BERT model run on the CPU with candle.
//!
//! It lets ragd index with no embedding server at all. A model directory is what
//! sentence-transformers saves (and what `scripts/fetch-model.sh` provides):
//! `config.json`, `tokenizer.json`, `model.safetensors`, and optionally `modules.json`,
//! the pooling module's `config.json` and `sentence_bert_config.json`. We reproduce
//! sentence-transformers' pipeline exactly — truncate to `max_seq_length`, run BERT,
//! pool over each text's tokens, L2-normalise when the model has a `Normalize`
//! module — so the vectors match the Python reference (`tests/local_embed.rs`).
//! The forward pass itself is `crates/ragd-bert`: texts packed without padding, on
//! every core (issue 27; figures in docs/performance.md).
//!
//! Inference is CPU-bound and blocking, so it runs on tokio's blocking pool, one batch
//! at a time (see [`LocalEmbedder::embed`] for why not several).

use std::fs;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config as BertConfig;
use serde::Deserialize;
use tokenizers::{Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};
use tokio::sync::Semaphore;

use super::{EmbedError, Embedder};
use ragd_bert::{Bert, BertError, Sequence};

/// Where `scripts/fetch-model.sh` puts all-MiniLM-L6-v2, relative to the repository:
/// a sensible default for `model_dir` in development.
pub const DEFAULT_MODEL_DIR: &str = "models/all-MiniLM-L6-v2";

/// Texts per forward pass. Big enough to keep the matrix kernels busy, small enough
/// that the attention scores of a batch of 256-token texts stay around 100 MB.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// A sentence-transformers model loaded into memory, embedding on the CPU.
///
/// Cheap to share behind an `Arc`; concurrent [`Embedder::embed`] calls queue for the
/// model rather than running side by side.
pub struct LocalEmbedder {
    model_name: String,
    model: Arc<Model>,
    batch_size: usize,
    /// One forward pass at a time: each pass already uses every core, so running two
    /// only adds memory (activations) and cache thrashing, not throughput.
    compute: Arc<Semaphore>,
}

/// What the blocking pool needs; everything is read-only after load.
struct Model {
    bert: Bert,
    tokenizer: Tokenizer,
    pooling: Pooling,
    normalize: bool,
    dimension: usize,
    max_tokens: usize,
}

/// How token vectors become one text vector (sentence-transformers `Pooling` modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    /// Average of the real (unmasked) tokens: what all-MiniLM-L6-v2 uses.
    Mean,
    /// Sum of the real tokens divided by the square root of their count.
    MeanSqrtLen,
    /// Element-wise maximum over the real tokens.
    Max,
    /// The `[CLS]` token's vector.
    Cls,
}

/// `1_Pooling/config.json`. Only the fields we act on; others are ignored so newer
/// sentence-transformers versions still load.
#[derive(Debug, Deserialize)]
struct PoolingConfig {
    word_embedding_dimension: Option<usize>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

/// The post-transformer part of a sentence-transformers model, from `modules.json`.
#[derive(Debug, Clone, Copy)]
struct Pipeline {
    pooling: Pooling,
    /// `word_embedding_dimension` of the pooling config, checked against the model.
    pooled_dimension: Option<usize>,
    normalize: bool,
}

/// One entry of `modules.json`: the model's pipeline, in order.
#[derive(Debug, Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// `sentence_bert_config.json`: the truncation length sentence-transformers uses.
#[derive(Debug, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

impl LocalEmbedder {
    /// Loads the model in `model_dir`; `model_name` is what payloads and the ledger
    /// record (e.g. `"all-MiniLM-L6-v2"`).
    ///
    /// Blocking: reads ~90 MB and builds the network, taking about a second. Fails with
    /// [`EmbedError::Local`] when a file is missing or malformed, or when the directory
    /// holds something this embedder would get wrong (a non-BERT architecture, a
    /// `Dense` layer, an unsupported pooling mode) rather than silently returning
    /// vectors that do not match the model.
    pub fn load(model_dir: &Path, model_name: String) -> Result<Self, EmbedError> {
        let model = Model::load(model_dir, &model_name)?;
        Ok(Self {
            model_name,
            model: Arc::new(model),
            batch_size: DEFAULT_BATCH_SIZE,
            compute: Arc::new(Semaphore::new(1)),
        })
    }

    /// Texts per forward pass (at least 1); see [`DEFAULT_BATCH_SIZE`].
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The vector dimension (384 for all-MiniLM-L6-v2), known from the config at load.
    pub fn dimension(&self) -> usize {
        self.model.dimension
    }

    /// Tokens per text, special tokens included; longer texts are truncated, so a
    /// chunker should keep chunks within this many tokens of [`Self::tokenizer`].
    pub fn max_tokens(&self) -> usize {
        self.model.max_tokens
    }

    /// The model's tokenizer (truncation set to [`Self::max_tokens`]), so a chunker can
    /// size chunks in the model's own tokens.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.model.tokenizer
    }

    fn error(&self, detail: impl Into<String>) -> EmbedError {
        local_error(&self.model_name, detail)
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn model(&self) -> &str {
        &self.model_name
    }

    /// Tokenises everything, then runs length-sorted batches (nothing is padded, but
    /// batches of similar lengths split attention evenly over the cores) one at a time
    /// on the blocking pool. Each batch takes the compute
    /// permit into its blocking task, so a caller that gives up releases the model only
    /// when that batch has really finished, and later batches are never started.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let model = Arc::clone(&self.model);
        let owned = texts.to_vec();
        let encodings =
            tokio::task::spawn_blocking(move || model.tokenizer.encode_batch(owned, true))
                .await
                .map_err(|e| self.error(format!("tokenizer task failed: {e}")))?
                .map_err(|e| self.error(format!("tokenising failed: {e}")))?;

        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].len());
        let encodings = Arc::new(encodings);

        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for batch in order.chunks(self.batch_size) {
            let permit = Arc::clone(&self.compute)
                .acquire_owned()
                .await
                .map_err(|_| self.error("compute semaphore closed"))?;
            let model = Arc::clone(&self.model);
            let encodings = Arc::clone(&encodings);
            let indices = batch.to_vec();
            let batch_vectors = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let batch: Vec<&Encoding> = indices.iter().map(|&i| &encodings[i]).collect();
                model.forward(&batch)
            })
            .await
            .map_err(|e| self.error(format!("inference task failed: {e}")))?
            .map_err(|e| self.error(format!("inference failed: {e}")))?;
            for (&i, vector) in batch.iter().zip(batch_vectors) {
                vectors[i] = Some(vector);
            }
        }
        // Every index is in exactly one batch, so every slot is filled.
        Ok(vectors.into_iter().flatten().collect())
    }
}

impl Model {
    fn load(dir: &Path, model_name: &str) -> Result<Self, EmbedError> {
        let err = |detail: String| local_error(model_name, detail);

        let config: BertConfig = read_json(&dir.join("config.json"), model_name)?;
        // candle's BertModel is BERT proper; RoBERTa-style models (XLM-R, MPNet…) load
        // without error but offset positions differently and would embed wrongly.
        if let Some(kind) = config.model_type.as_deref()
            && kind != "bert"
        {
            return Err(err(format!(
                "{}: model_type {kind:?} is not supported (only \"bert\")",
                dir.display()
            )));
        }

        let pipeline = read_pipeline(dir, model_name)?;
        let dimension = config.hidden_size;
        if let Some(pool_dim) = pipeline.pooled_dimension
            && pool_dim != dimension
        {
            return Err(err(format!(
                "{}: pooling expects dimension {pool_dim} but the model's hidden size is {dimension}",
                dir.display()
            )));
        }

        // sentence-transformers truncates to max_seq_length (256 for all-MiniLM-L6-v2,
        // which was trained on 128); without it the position table is the limit.
        let sbert_path = dir.join("sentence_bert_config.json");
        let max_tokens = if sbert_path.exists() {
            let sbert: SentenceBertConfig = read_json(&sbert_path, model_name)?;
            sbert
                .max_seq_length
                .unwrap_or(config.max_position_embeddings)
        } else {
            config.max_position_embeddings
        }
        .min(config.max_position_embeddings);

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| err(format!("{}: {e}", tokenizer_path.display())))?;
        // tokenizer.json carries its own truncation and fixed padding (128 for
        // all-MiniLM-L6-v2); replace both: truncate as sentence-transformers does, and
        // never pad (the forward pass packs texts of any lengths, crates/ragd-bert).
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| err(format!("{}: {e}", tokenizer_path.display())))?;
        tokenizer.with_padding(None);

        let weights_path = dir.join("model.safetensors");
        // Read rather than mmap: mmap would need `unsafe` and the guarantee that nobody
        // rewrites the file while we run; 90 MB read once at startup is cheap.
        let weights =
            fs::read(&weights_path).map_err(|e| err(format!("{}: {e}", weights_path.display())))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| err(format!("{}: {e}", weights_path.display())))?;
        let bert =
            Bert::load(vb, &config).map_err(|e| err(format!("{}: {e}", weights_path.display())))?;

        Ok(Self {
            bert,
            tokenizer,
            pooling: pipeline.pooling,
            normalize: pipeline.normalize,
            dimension,
            max_tokens,
        })
    }

    /// Embeds one batch: runs BERT over the texts packed without padding, then pools
    /// each text's token vectors and normalises.
    fn forward(&self, batch: &[&Encoding]) -> Result<Vec<Vec<f32>>, BertError> {
        let sequences: Vec<Sequence> = batch
            .iter()
            .map(|e| Sequence {
                ids: e.get_ids(),
                type_ids: e.get_type_ids(),
            })
            .collect();
        let hidden = self.bert.forward(&sequences)?; // (Σ len × dim)
        let mut offset = 0;
        Ok(batch
            .iter()
            .map(|e| {
                let rows = &hidden[offset * self.dimension..(offset + e.len()) * self.dimension];
                offset += e.len();
                self.pool(rows)
            })
            .collect())
    }

    /// One text's vector from its tokens' rows (`len × dim`). Every row is a real token:
    /// nothing was padded, so sentence-transformers' attention mask is all ones here.
    fn pool(&self, rows: &[f32]) -> Vec<f32> {
        let dim = self.dimension;
        let tokens = rows.len() / dim;
        let mut pooled = match self.pooling {
            Pooling::Cls => rows[..dim.min(rows.len())].to_vec(),
            Pooling::Mean | Pooling::MeanSqrtLen => {
                let mut sum = vec![0f32; dim];
                for row in rows.chunks_exact(dim) {
                    sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
                }
                // Same floor as sentence-transformers (a text always has [CLS] and
                // [SEP], so it never applies).
                let count = (tokens as f32).max(1e-9);
                let count = if self.pooling == Pooling::MeanSqrtLen {
                    count.sqrt()
                } else {
                    count
                };
                sum.iter_mut().for_each(|s| *s /= count);
                sum
            }
            Pooling::Max => {
                let mut max = vec![f32::NEG_INFINITY; dim];
                for row in rows.chunks_exact(dim) {
                    max.iter_mut().zip(row).for_each(|(m, v)| *m = m.max(*v));
                }
                max
            }
        };
        pooled.resize(dim, 0.0);
        if self.normalize {
            let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            pooled.iter_mut().for_each(|v| *v /= norm);
        }
        pooled
    }
}

/// Reads `modules.json` and the pooling module's config.
///
/// Without `modules.json` the folder is a bare transformer: we pool by mean and
/// normalise, what all-MiniLM-L6-v2 and most sentence-embedding models do and harmless
/// for the cosine distance the index uses.
fn read_pipeline(dir: &Path, model_name: &str) -> Result<Pipeline, EmbedError> {
    let modules_path = dir.join("modules.json");
    if !modules_path.exists() {
        let pooling_path = dir.join("1_Pooling").join("config.json");
        let (pooling, pooled_dimension) = if pooling_path.exists() {
            read_pooling(&pooling_path, model_name)?
        } else {
            (Pooling::Mean, None)
        };
        return Ok(Pipeline {
            pooling,
            pooled_dimension,
            normalize: true,
        });
    }
    let modules: Vec<ModuleEntry> = read_json(&modules_path, model_name)?;
    let mut pooling = None;
    let mut normalize = false;
    for module in &modules {
        // Types look like "sentence_transformers.models.Pooling" (or, in newer
        // versions, "sentence_transformers.sentence_transformer.modules.Pooling").
        match module.kind.rsplit('.').next().unwrap_or_default() {
            "Transformer" => {}
            "Pooling" => {
                let path = dir.join(&module.path).join("config.json");
                pooling = Some(read_pooling(&path, model_name)?);
            }
            "Normalize" => normalize = true,
            other => {
                return Err(local_error(
                    model_name,
                    format!(
                        "{}: module type {other:?} is not supported (only Transformer, Pooling, Normalize)",
                        modules_path.display()
                    ),
                ));
            }
        }
    }
    let (pooling, pooled_dimension) = pooling.unwrap_or((Pooling::Mean, None));
    Ok(Pipeline {
        pooling,
        pooled_dimension,
        normalize,
    })
}

fn read_pooling(path: &Path, model_name: &str) -> Result<(Pooling, Option<usize>), EmbedError> {
    let config: PoolingConfig = read_json(path, model_name)?;
    let modes = [
        (config.pooling_mode_mean_tokens, Pooling::Mean),
        (
            config.pooling_mode_mean_sqrt_len_tokens,
            Pooling::MeanSqrtLen,
        ),
        (config.pooling_mode_max_tokens, Pooling::Max),
        (config.pooling_mode_cls_token, Pooling::Cls),
    ];
    let chosen: Vec<Pooling> = modes.iter().filter(|m| m.0).map(|m| m.1).collect();
    // Several modes means sentence-transformers concatenates them; weighted-mean and
    // last-token need more than this embedder does. Refuse rather than approximate.
    if chosen.len() != 1 || config.pooling_mode_weightedmean_tokens || config.pooling_mode_lasttoken
    {
        return Err(local_error(
            model_name,
            format!(
                "{}: unsupported pooling (exactly one of mean, mean_sqrt_len, max, cls is supported)",
                path.display()
            ),
        ));
    }
    Ok((chosen[0], config.word_embedding_dimension))
}

fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    model_name: &str,
) -> Result<T, EmbedError> {
    let text = fs::read_to_string(path)
        .map_err(|e| local_error(model_name, format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| local_error(model_name, format!("{}: {e}", path.display())))
}

fn local_error(model: &str, detail: impl Into<String>) -> EmbedError {
    EmbedError::Local {
        model: model.to_owned(),
        detail: detail.into(),
    }
}
