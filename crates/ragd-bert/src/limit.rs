//! What one core of this CPU can compute at most: the yardstick the benchmark holds the
//! forward pass against ("how close to the FLOP limit", issue 27).
//!
//! Measured, not looked up: a loop of independent vector multiply-adds, the best any
//! matrix kernel can do, timed in the thread's CPU time so that load from elsewhere on
//! the machine does not count. The clock a core runs at (turbo, a VM's share) is what it
//! is during the run, so the figure belongs next to the benchmark's, taken the same way.

use std::time::Duration;

/// GFLOP per CPU-second of one core (a multiply-add counts two).
#[derive(Debug, Clone, Copy)]
pub struct FlopLimit {
    /// f32 fused multiply-adds at the widest width the CPU has (AVX-512 or AVX2).
    pub f32: f64,
    /// `vdpbf16ps` (bf16 pairs, f32 accumulation) where the CPU has AVX512_BF16.
    pub bf16: Option<f64>,
}

/// Independent accumulators: more than an FMA's latency × its throughput per cycle
/// (4 × 2 on current x86 cores), so the loop is bound by throughput alone.
const CHAINS: usize = 12;

/// Loop trips: about 0.2 s per measurement on a 3–4 GHz core.
const TRIPS: u64 = 50_000_000;

/// The limits of this CPU, or `None` without AVX2/FMA (the forward pass then runs on
/// the baseline's SSE2, and no limit measured here would describe it).
pub fn measure() -> Option<FlopLimit> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let f32 = if has!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            rate(16, || unsafe { x86::fma512() })
        } else if has!("avx2") && has!("fma") {
            // SAFETY: as above, for AVX2 and FMA.
            rate(8, || unsafe { x86::fma256() })
        } else {
            return None;
        };
        let bf16 = (has!("avx512f") && has!("avx512bf16"))
            // SAFETY: as above, for AVX-512F and AVX512_BF16; 32 bf16 pairs a lane group.
            .then(|| rate(32, || unsafe { x86::dpbf16() }));
        Some(FlopLimit { f32, bf16 })
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// GFLOP per CPU-second of `run`, which does [`TRIPS`] × [`CHAINS`] instructions of
/// `lanes` multiply-adds each and returns a value that depends on all of them.
fn rate(lanes: usize, run: impl Fn() -> f32) -> f64 {
    let before = thread_cpu_time();
    std::hint::black_box(run());
    let took = (thread_cpu_time() - before).as_secs_f64();
    (TRIPS as f64 * CHAINS as f64 * lanes as f64 * 2.0) / took / 1e9
}

/// CPU time of the calling thread so far.
fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{CHAINS, TRIPS};
    use std::arch::x86_64::*;

    // Each accumulator is a chain of its own; `black_box` on the factors keeps the
    // compiler from folding the loop, the sum at the end from dropping it.

    #[target_feature(enable = "avx512f")]
    pub(super) fn fma512() -> f32 {
        let (x, y) = std::hint::black_box((_mm512_set1_ps(0.999_999_9), _mm512_set1_ps(1e-7)));
        let mut acc = [_mm512_setzero_ps(); CHAINS];
        for _ in 0..TRIPS {
            for a in &mut acc {
                *a = _mm512_fmadd_ps(*a, x, y);
            }
        }
        acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn fma256() -> f32 {
        let (x, y) = std::hint::black_box((_mm256_set1_ps(0.999_999_9), _mm256_set1_ps(1e-7)));
        let mut acc = [_mm256_setzero_ps(); CHAINS];
        for _ in 0..TRIPS {
            for a in &mut acc {
                *a = _mm256_fmadd_ps(*a, x, y);
            }
        }
        let mut lanes = [0f32; 8];
        let mut sum = 0.0;
        for a in acc {
            // SAFETY: `lanes` holds the 8 floats the store writes.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
            sum += lanes.iter().sum::<f32>();
        }
        sum
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) fn dpbf16() -> f32 {
        let (x, y) = std::hint::black_box((_mm512_set1_ps(0.999_999_9), _mm512_set1_ps(1e-7)));
        let (x, y) = (_mm512_cvtne2ps_pbh(x, y), _mm512_cvtne2ps_pbh(y, x));
        let mut acc = [_mm512_setzero_ps(); CHAINS];
        for _ in 0..TRIPS {
            for a in &mut acc {
                *a = _mm512_dpbf16_ps(*a, x, y);
            }
        }
        acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
    }
}
