//! BERT's encoder forward pass on the CPU, over texts packed without padding.
//!
//! The local embedder used to run candle-transformers' `BertModel`, which pads every
//! batch to its longest text, computes attention over the padding and masks it away,
//! allocates a fresh tensor for every operation (a page fault on every 4 KiB of the
//! hundreds of megabytes a batch of 256-token texts goes through per layer) and runs
//! element-wise work (GELU, bias, residuals, scaling, masking) on one core. Profiled on
//! the 2-core machine of issue 27, that was more than half of the time, a third of it in
//! the kernel. This pass keeps what costs the FLOPs — the matrix products, done by the
//! `gemm` crate that candle itself uses — and drops the rest:
//!
//! - the texts of a batch are packed one after another (`tokens × hidden` rows), so the
//!   dense layers see only real tokens and attention is computed per text over its own
//!   length: no padding, no mask;
//! - every layer writes into the same few buffers, allocated once per batch;
//! - the bias and the residual are written into the output before the product adds to
//!   it, so neither is a pass of its own; GELU, layer norm and softmax run on every
//!   core (rayon), attention one text per task;
//! - GELU's erf and softmax's exp are polynomials (the ones PyTorch and Cephes use)
//!   in loops compiled for the CPU's widest vectors, not a library call per element.
//!
//! The arithmetic is BERT's as written in Hugging Face transformers (`modeling_bert.py`):
//! the vectors match sentence-transformers' (ragd's `tests/local_embed.rs`).

pub mod limit;

use candle_core::DType;
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct, PositionEmbeddingType};
use gemm::Parallelism;
use rayon::prelude::*;

/// Rows handed to one rayon task by the element-wise passes: enough work per task
/// (tens of microseconds) that scheduling is noise, small enough to balance 2–64 cores.
const ROWS_PER_TASK: usize = 32;

/// Why the weights could not be used, or a text could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum BertError {
    /// A tensor is missing or has the wrong shape, or the file is not safetensors.
    #[error("{0}")]
    Weights(#[from] candle_core::Error),
    /// The config asks for something this forward pass does not implement.
    #[error("{0}")]
    Unsupported(String),
    /// A token id, type id or position the weights have no row for: a tokenizer that
    /// does not belong to the model. Refused rather than read out of bounds.
    #[error("{what} {value} out of range (the model has {limit})")]
    OutOfRange {
        what: &'static str,
        value: usize,
        limit: usize,
    },
}

/// One text of a batch, as the tokenizer produced it (special tokens included,
/// truncated, not padded).
pub struct Sequence<'a> {
    pub ids: &'a [u32],
    pub type_ids: &'a [u32],
}

/// A BERT encoder's weights, laid out for the forward pass.
pub struct Bert {
    hidden: usize,
    heads: usize,
    eps: f32,
    activation: HiddenAct,
    /// `vocab × hidden`, `positions × hidden`, `types × hidden`, row-major.
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
}

struct Layer {
    /// Query, key and value as one product: `hidden → 3 × hidden`.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

/// A linear layer. The weight is stored transposed (`inputs × outputs`, row-major),
/// the layout the product reads without striding.
struct Dense {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Bert {
    /// Reads the weights of `config`'s shape from `vb` (a Hugging Face BERT checkpoint,
    /// with or without the `bert.` prefix), converted to f32.
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self, BertError> {
        if config.position_embedding_type != PositionEmbeddingType::Absolute {
            return Err(BertError::Unsupported(format!(
                "position_embedding_type {:?}",
                config.position_embedding_type
            )));
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(BertError::Unsupported(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden_size, config.num_attention_heads
            )));
        }
        // BertForMaskedLM-style checkpoints keep the encoder under `bert.`.
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp(config.model_type.as_deref().unwrap_or("bert"))
        };
        let h = config.hidden_size;
        let embeddings = vb.pp("embeddings");
        let word = matrix(&embeddings.pp("word_embeddings"), config.vocab_size, h)?;
        let position = matrix(
            &embeddings.pp("position_embeddings"),
            config.max_position_embeddings,
            h,
        )?;
        let token_type = matrix(
            &embeddings.pp("token_type_embeddings"),
            config.type_vocab_size,
            h,
        )?;
        let embedding_norm = Norm::load(&embeddings.pp("LayerNorm"), h)?;

        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let vb = vb.pp(format!("encoder.layer.{i}"));
                let attention = vb.pp("attention");
                let q = attention.pp("self").pp("query");
                let k = attention.pp("self").pp("key");
                let v = attention.pp("self").pp("value");
                Ok(Layer {
                    qkv: Dense::load_stacked(&[q, k, v], h, h)?,
                    attention_out: Dense::load(&attention.pp("output").pp("dense"), h, h)?,
                    attention_norm: Norm::load(&attention.pp("output").pp("LayerNorm"), h)?,
                    intermediate: Dense::load(
                        &vb.pp("intermediate").pp("dense"),
                        h,
                        config.intermediate_size,
                    )?,
                    output: Dense::load(&vb.pp("output").pp("dense"), config.intermediate_size, h)?,
                    output_norm: Norm::load(&vb.pp("output").pp("LayerNorm"), h)?,
                })
            })
            .collect::<Result<Vec<_>, BertError>>()?;

        Ok(Self {
            hidden: h,
            heads: config.num_attention_heads,
            eps: config.layer_norm_eps as f32,
            activation: config.hidden_act,
            word,
            position,
            token_type,
            embedding_norm,
            layers,
        })
    }

    /// The last hidden state of every token: the sequences' rows one after another,
    /// `Σ len × hidden`, row-major.
    pub fn forward(&self, sequences: &[Sequence]) -> Result<Vec<f32>, BertError> {
        let h = self.hidden;
        let tokens: usize = sequences.iter().map(|s| s.ids.len()).sum();
        let mut x = self.embed(sequences)?;
        // Buffers every layer reuses: one allocation per batch, not per operation.
        let widest = self
            .layers
            .iter()
            .map(|l| l.intermediate.outputs)
            .max()
            .unwrap_or(0);
        let mut qkv = vec![0f32; tokens * 3 * h];
        let mut context = vec![0f32; tokens * h];
        let mut attended = vec![0f32; tokens * h];
        let mut intermediate = vec![0f32; tokens * widest];
        let lengths: Vec<usize> = sequences.iter().map(|s| s.ids.len()).collect();

        for layer in &self.layers {
            layer.qkv.apply(&x, tokens, &mut qkv, None);
            self.attention(&qkv, &lengths, &mut context);
            // attended = LayerNorm(x + context · Wo + bo)
            layer
                .attention_out
                .apply(&context, tokens, &mut attended, Some(&x));
            layer.attention_norm.apply(&mut attended, h, self.eps);
            // x = LayerNorm(attended + act(attended · W1 + b1) · W2 + b2)
            let inter = &mut intermediate[..tokens * layer.intermediate.outputs];
            layer.intermediate.apply(&attended, tokens, inter, None);
            activate(self.activation, inter);
            layer.output.apply(inter, tokens, &mut x, Some(&attended));
            layer.output_norm.apply(&mut x, h, self.eps);
        }
        Ok(x)
    }

    /// Word + position + token-type embeddings, layer-normalised.
    fn embed(&self, sequences: &[Sequence]) -> Result<Vec<f32>, BertError> {
        let h = self.hidden;
        let tokens: usize = sequences.iter().map(|s| s.ids.len()).sum();
        let mut x = vec![0f32; tokens * h];
        let mut rows = x.chunks_exact_mut(h);
        for sequence in sequences {
            for (position, (&id, &kind)) in sequence.ids.iter().zip(sequence.type_ids).enumerate() {
                let word = row(&self.word, h, id as usize, "token id")?;
                let pos = row(&self.position, h, position, "position")?;
                let kind = row(&self.token_type, h, kind as usize, "token type id")?;
                // Every sequence's ids fill exactly its rows of `x`.
                let out = rows.next().expect("one row per token");
                for (((o, w), p), k) in out.iter_mut().zip(word).zip(pos).zip(kind) {
                    *o = w + p + k;
                }
            }
        }
        self.embedding_norm.apply(&mut x, h, self.eps);
        Ok(x)
    }

    /// Multi-head self-attention of each sequence over itself: `context` gets, for every
    /// token and head, the softmax(q·kᵀ/√d)-weighted sum of the values.
    fn attention(&self, qkv: &[f32], lengths: &[usize], context: &mut [f32]) {
        let h = self.hidden;
        let d = h / self.heads;
        let scale = 1.0 / (d as f32).sqrt();
        // Each sequence's context rows as a slice of its own, for one task each.
        let mut tasks = Vec::with_capacity(lengths.len());
        let mut rest = context;
        let mut start = 0;
        for &len in lengths {
            let (mine, others) = rest.split_at_mut(len * h);
            tasks.push((start, len, mine));
            rest = others;
            start += len;
        }
        tasks
            .into_par_iter()
            .for_each_init(Vec::new, |scores, (start, len, out)| {
                scores.clear();
                scores.resize(len * len, 0f32);
                let base = start * 3 * h;
                for head in 0..self.heads {
                    let column = head * d;
                    // scores = q · kᵀ · scale  (len × len)
                    matmul(
                        Target {
                            data: scores,
                            view: View::rows(0, len, len, len),
                            accumulate: false,
                        },
                        Operand {
                            data: qkv,
                            view: View::rows(base + column, len, d, 3 * h),
                        },
                        Operand {
                            data: qkv,
                            view: View::rows(base + h + column, len, d, 3 * h).transposed(),
                        },
                        scale,
                        Parallelism::None,
                    );
                    softmax_rows(scores, len);
                    // context[:, head] = scores · v  (len × d)
                    matmul(
                        Target {
                            data: out,
                            view: View::rows(column, len, d, h),
                            accumulate: false,
                        },
                        Operand {
                            data: scores,
                            view: View::rows(0, len, len, len),
                        },
                        Operand {
                            data: qkv,
                            view: View::rows(base + 2 * h + column, len, d, 3 * h),
                        },
                        1.0,
                        Parallelism::None,
                    );
                }
            });
    }
}

impl Dense {
    fn load(vb: &VarBuilder, inputs: usize, outputs: usize) -> Result<Self, BertError> {
        Self::load_stacked(std::slice::from_ref(vb), inputs, outputs)
    }

    /// Several linear layers over the same input as one, their outputs side by side.
    fn load_stacked(
        parts: &[VarBuilder],
        inputs: usize,
        outputs: usize,
    ) -> Result<Self, BertError> {
        let total = outputs * parts.len();
        let mut weight = vec![0f32; inputs * total];
        let mut bias = Vec::with_capacity(total);
        for (p, vb) in parts.iter().enumerate() {
            // PyTorch's Linear stores (outputs × inputs); transpose into our columns.
            let w = matrix(vb, outputs, inputs)?;
            for (o, w_row) in w.chunks_exact(inputs).enumerate() {
                for (i, &value) in w_row.iter().enumerate() {
                    weight[i * total + p * outputs + o] = value;
                }
            }
            bias.extend(vector(vb, "bias", outputs)?);
        }
        Ok(Self {
            weight,
            bias,
            inputs,
            outputs: total,
        })
    }

    /// `out = input · W + b (+ residual)` for `rows` rows.
    fn apply(&self, input: &[f32], rows: usize, out: &mut [f32], residual: Option<&[f32]>) {
        let out = &mut out[..rows * self.outputs];
        match residual {
            Some(residual) => out
                .par_chunks_mut(self.outputs * ROWS_PER_TASK)
                .zip(residual.par_chunks(self.outputs * ROWS_PER_TASK))
                .for_each(|(o, r)| {
                    for (o_row, r_row) in o
                        .chunks_exact_mut(self.outputs)
                        .zip(r.chunks_exact(self.outputs))
                    {
                        for ((o, r), b) in o_row.iter_mut().zip(r_row).zip(&self.bias) {
                            *o = r + b;
                        }
                    }
                }),
            None => out
                .par_chunks_mut(self.outputs)
                .with_min_len(ROWS_PER_TASK)
                .for_each(|o| o.copy_from_slice(&self.bias)),
        }
        matmul(
            Target {
                data: out,
                view: View::rows(0, rows, self.outputs, self.outputs),
                accumulate: true,
            },
            Operand {
                data: input,
                view: View::rows(0, rows, self.inputs, self.inputs),
            },
            Operand {
                data: &self.weight,
                view: View::rows(0, self.inputs, self.outputs, self.outputs),
            },
            1.0,
            // The pool has one thread per core; gemm splits the product over them.
            Parallelism::Rayon(0),
        );
    }
}

impl Norm {
    fn load(vb: &VarBuilder, size: usize) -> Result<Self, BertError> {
        Ok(Self {
            weight: vector(vb, "weight", size)?,
            bias: vector(vb, "bias", size)?,
        })
    }

    /// Layer norm of every `width`-wide row of `x`, in place.
    fn apply(&self, x: &mut [f32], width: usize, eps: f32) {
        x.par_chunks_mut(width * ROWS_PER_TASK).for_each(|rows| {
            vectorised(NormRows {
                rows,
                width,
                norm: self,
                eps,
            })
        });
    }
}

/// The feed-forward activation, in place.
fn activate(activation: HiddenAct, x: &mut [f32]) {
    match activation {
        // Exact GELU (erf), what BERT's "gelu" is.
        HiddenAct::Gelu => map(x, |v| {
            0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2))
        }),
        HiddenAct::GeluApproximate => map(x, |v| {
            const C: f32 = 0.797_884_6; // √(2/π)
            0.5 * v * (1.0 + (C * (v + 0.044_715 * v * v * v)).tanh())
        }),
        HiddenAct::Relu => map(x, |v| v.max(0.0)),
    }
}

/// `f` on every element, on every core, vectorised: `f` is generic so that it is
/// inlined into the loop [`vectorised`] compiles for this CPU.
fn map(x: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    x.par_chunks_mut(4096)
        .for_each(|chunk| vectorised(Map(chunk, &f)));
}

struct Map<'a, F>(&'a mut [f32], &'a F);

impl<F: Fn(f32) -> f32> Kernel for Map<'_, F> {
    #[inline(always)]
    fn run(self) {
        for v in self.0.iter_mut() {
            *v = (self.1)(*v);
        }
    }
}

/// Softmax of every `width`-wide row of `scores`, in place.
fn softmax_rows(scores: &mut [f32], width: usize) {
    vectorised(SoftmaxRows(scores, width))
}

struct SoftmaxRows<'a>(&'a mut [f32], usize);

impl Kernel for SoftmaxRows<'_> {
    #[inline(always)]
    fn run(self) {
        for row in self.0.chunks_exact_mut(self.1) {
            softmax(row);
        }
    }
}

#[inline(always)]
fn softmax(row: &mut [f32]) {
    let max = lanes(row, f32::NEG_INFINITY, f32::max);
    for v in row.iter_mut() {
        *v = exp(*v - max);
    }
    let inv = 1.0 / lanes(row, 0.0, |a, b| a + b);
    for v in row.iter_mut() {
        *v *= inv;
    }
}

struct NormRows<'a> {
    rows: &'a mut [f32],
    width: usize,
    norm: &'a Norm,
    eps: f32,
}

impl Kernel for NormRows<'_> {
    #[inline(always)]
    fn run(self) {
        for row in self.rows.chunks_exact_mut(self.width) {
            normalise(row, &self.norm.weight, &self.norm.bias, self.eps);
        }
    }
}

/// Layer norm of one row, in place.
#[inline(always)]
fn normalise(row: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = lanes(row, 0.0, |a, b| a + b) / n;
    let mut squares = 0f32;
    let mut acc = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    for v in chunks.remainder() {
        squares += (v - mean) * (v - mean);
    }
    for chunk in chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += (v - mean) * (v - mean);
        }
    }
    let variance = (acc.iter().sum::<f32>() + squares) / n;
    let inv = 1.0 / (variance + eps).sqrt();
    for ((v, w), b) in row.iter_mut().zip(weight).zip(bias) {
        *v = (*v - mean) * inv * w + b;
    }
}

/// Accumulators a reduction keeps side by side: a float sum in order cannot be
/// vectorised (addition is not associative), `LANES` partial sums can.
const LANES: usize = 16;

/// `xs` folded with `f` over [`LANES`] accumulators starting at `init`, then together.
#[inline(always)]
fn lanes(xs: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; LANES];
    let chunks = xs.chunks_exact(LANES);
    let mut tail = init;
    for &v in chunks.remainder() {
        tail = f(tail, v);
    }
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = f(*a, v);
        }
    }
    acc.into_iter().fold(tail, f)
}

/// eˣ without a library call, so that loops over it vectorise: Cephes' `expf`
/// (x = n·ln 2 + r, eʳ by its degree-6 polynomial, 2ⁿ put into the exponent bits);
/// relative error about 2·10⁻⁷. Inputs are clamped to [-87, 88], where 2ⁿ is a normal
/// float: below, eˣ < 1.7·10⁻³⁸ counts as nothing next to the 1 softmax always has.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // 1.5·2²³: adding it rounds to an integer, which then sits in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + SHIFTER;
    let n = shifted - SHIFTER;
    // ln 2 in two parts, so n·ln 2 is exact enough for r.
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let exponent = (shifted.to_bits() as i32 - SHIFTER.to_bits() as i32 + 127) << 23;
    y * f32::from_bits(exponent as u32)
}

/// erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5·10⁻⁷): the formula PyTorch's own
/// vectorised `erf` uses, so GELU here rounds like sentence-transformers' does.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_7) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// A loop [`vectorised`] compiles for the CPU. `run` must be `#[inline(always)]`: only
/// inlined into the target-feature function does it get that function's vectors (a
/// closure there was not inlined and ran at the baseline's width, seen in a profile).
trait Kernel {
    fn run(self);
}

/// Runs `kernel` compiled for the widest vector instructions this CPU has (AVX-512,
/// else AVX2 with FMA, else the x86-64 baseline, which has only SSE2 and is what ragd
/// is built for).
fn vectorised(kernel: impl Kernel) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn v4(kernel: impl Kernel) {
            kernel.run()
        }
        #[target_feature(enable = "avx2,fma")]
        fn v3(kernel: impl Kernel) {
            kernel.run()
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has every feature v4 is compiled for (checked just above).
            return unsafe { v4(kernel) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above, for v3's features.
            return unsafe { v3(kernel) };
        }
    }
    kernel.run()
}

/// Row `index` of a `width`-wide table, or the error naming what was out of range.
fn row<'a>(
    table: &'a [f32],
    width: usize,
    index: usize,
    what: &'static str,
) -> Result<&'a [f32], BertError> {
    table
        .get(index * width..(index + 1) * width)
        .ok_or(BertError::OutOfRange {
            what,
            value: index,
            limit: table.len() / width,
        })
}

fn matrix(vb: &VarBuilder, rows: usize, cols: usize) -> Result<Vec<f32>, BertError> {
    Ok(vb
        .get((rows, cols), "weight")?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?)
}

fn vector(vb: &VarBuilder, name: &str, size: usize) -> Result<Vec<f32>, BertError> {
    Ok(vb.get(size, name)?.to_dtype(DType::F32)?.to_vec1()?)
}

/// A strided matrix inside a slice: element `(r, c)` is at
/// `offset + r · row_stride + c · col_stride`.
#[derive(Debug, Clone, Copy)]
struct View {
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl View {
    /// `rows × cols` with rows `row_stride` apart and columns adjacent.
    const fn rows(offset: usize, rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            offset,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The same elements read as the transpose.
    const fn transposed(self) -> Self {
        Self {
            offset: self.offset,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// Whether every element lies inside a slice of `len`.
    fn fits(&self, len: usize) -> bool {
        self.rows == 0
            || self.cols == 0
            || self.offset + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < len
    }
}

struct Operand<'a> {
    data: &'a [f32],
    view: View,
}

struct Target<'a> {
    data: &'a mut [f32],
    view: View,
    /// Add the product to what is there (`true`) or overwrite it.
    accumulate: bool,
}

/// `dst (+)= scale · lhs · rhs`, by the `gemm` crate.
///
/// The one place ragd calls `gemm`, whose entry point takes raw pointers: the views
/// are checked against their slices here, so a wrong stride or length is a panic, never
/// a read or write out of bounds.
fn matmul(dst: Target, lhs: Operand, rhs: Operand, scale: f32, parallelism: Parallelism) {
    let (d, l, r) = (dst.view, lhs.view, rhs.view);
    assert!(
        l.rows == d.rows && r.cols == d.cols && l.cols == r.rows,
        "matmul shapes: {l:?} · {r:?} → {d:?}"
    );
    assert!(
        d.fits(dst.data.len()) && l.fits(lhs.data.len()) && r.fits(rhs.data.len()),
        "matmul view outside its slice"
    );
    // gemm's threads write disjoint elements only if no two (r, c) share an address.
    assert!(
        d.col_stride == 1 && (d.rows <= 1 || d.row_stride >= d.cols),
        "matmul target rows overlap: {d:?}"
    );
    if d.rows == 0 || d.cols == 0 {
        return;
    }
    let stride = |s: usize| isize::try_from(s).expect("stride fits isize");
    // SAFETY: every element gemm reads or writes is inside its slice (checked above);
    // `dst` is borrowed mutably, so it aliases neither operand, and its elements have
    // distinct addresses; with k = 0 gemm reads no operand at all.
    unsafe {
        gemm::gemm(
            d.rows,
            d.cols,
            l.cols,
            dst.data.as_mut_ptr().add(d.offset),
            stride(d.col_stride),
            stride(d.row_stride),
            dst.accumulate,
            lhs.data.as_ptr().add(l.offset),
            stride(l.col_stride),
            stride(l.row_stride),
            rhs.data.as_ptr().add(r.offset),
            stride(r.col_stride),
            stride(r.row_stride),
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive product, the reference for the strided views.
    fn naive(a: &[f32], (m, k): (usize, usize), b: &[f32], n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matmul_reads_transposed_and_offset_views_and_accumulates() {
        let (m, k, n) = (5, 3, 4);
        let a: Vec<f32> = (0..m * k).map(|v| v as f32 * 0.5 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|v| (v as f32).sin()).collect();
        // bᵀ stored row-major after two unused elements, read back as b.
        let mut bt = vec![9f32; 2 + n * k];
        for p in 0..k {
            for j in 0..n {
                bt[2 + j * k + p] = b[p * n + j];
            }
        }
        let mut c = vec![1f32; m * n];
        matmul(
            Target {
                data: &mut c,
                view: View::rows(0, m, n, n),
                accumulate: true,
            },
            Operand {
                data: &a,
                view: View::rows(0, m, k, k),
            },
            Operand {
                data: &bt,
                view: View::rows(2, n, k, k).transposed(),
            },
            2.0,
            Parallelism::None,
        );
        let expected = naive(&a, (m, k), &b, n);
        for (got, want) in c.iter().zip(&expected) {
            assert!((got - (1.0 + 2.0 * want)).abs() < 1e-5, "{got} vs {want}");
        }
    }

    #[test]
    #[should_panic(expected = "outside its slice")]
    fn matmul_refuses_a_view_past_the_end_of_its_slice() {
        let a = vec![0f32; 6];
        let mut c = vec![0f32; 4];
        matmul(
            Target {
                data: &mut c,
                view: View::rows(0, 2, 2, 2),
                accumulate: false,
            },
            Operand {
                data: &a,
                view: View::rows(1, 2, 3, 3),
            },
            Operand {
                data: &a,
                view: View::rows(0, 3, 2, 2),
            },
            1.0,
            Parallelism::None,
        );
    }

    #[test]
    fn exp_and_erf_agree_with_the_library_functions() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.01;
            let (got, want) = (exp(x), x.exp());
            assert!(
                ((got - want) / want).abs() < 5e-7,
                "exp({x}) = {got}, not {want}"
            );
            let (got, want) = (erf(x), libm::erff(x));
            assert!((got - want).abs() < 3e-7, "erf({x}) = {got}, not {want}");
        }
        // Far below the clamp, nothing; far above, the largest power of two it allows.
        assert!(exp(-1000.0) < 1e-37);
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn layer_norm_gives_zero_mean_and_unit_variance() {
        let mut row: Vec<f32> = (0..37)
            .map(|i| (i as f32 * 0.7).sin() * 3.0 + 1.5)
            .collect();
        normalise(&mut row, &[1.0; 37], &[0.0; 37], 1e-12);
        let mean = row.iter().sum::<f32>() / 37.0;
        let variance = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 37.0;
        assert!(
            mean.abs() < 1e-5 && (variance - 1.0).abs() < 1e-4,
            "{mean} {variance}"
        );
    }

    #[test]
    fn softmax_is_a_distribution_and_ignores_a_common_offset() {
        // 19 elements: the vector lanes and the remainder both count.
        let mut a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let mut b: Vec<f32> = a.iter().map(|v| v + 1000.0).collect();
        softmax(&mut a);
        softmax(&mut b);
        assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6);
        }
    }
}
