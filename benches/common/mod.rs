//! What the CPU benchmarks share: deterministic inputs, best-of timing and
//! the practical GEMM peak that their GFLOP/s are set against.

use std::time::Instant;

/// `n` values in [-0.1, 0.1) from a linear congruential sequence.
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 0.2 - 0.1
        })
        .collect()
}

/// The fastest of `rounds` runs of `f` in seconds, after one warm-up run.
pub fn best_of<F: FnMut()>(rounds: usize, mut f: F) -> f64 {
    f();
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// The practical GEMM peak: GFLOP/s of the gemm crate's own square sgemm
/// of side `n` on all of rayon's threads, best of 10.
pub fn gemm_peak(n: usize) -> f64 {
    let (a, b) = (values(n * n, 1), values(n * n, 2));
    let mut c = vec![0.0f32; n * n];
    let threads = rayon::current_num_threads();
    let seconds = best_of(10, || unsafe {
        gemm::gemm(
            n,
            n,
            n,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            n as isize,
            b.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(threads),
        )
    });
    2.0 * (n * n * n) as f64 / seconds / 1e9
}

/// The value after `--flag` on the command line, if any.
pub fn flag_value(flag: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != flag).nth(1)
}
