//! The matrix products under the convolutions (the `gemm` crate, which
//! burn's flex backend also uses for matmul) and the per-thread scratch
//! buffers that feed them.

/// GEMM parallelism: chunks run in parallel when there are enough of them;
/// otherwise the GEMM itself is split.
pub(super) fn gemm_parallelism(chunks: usize) -> gemm::Parallelism {
    let threads = rayon::current_num_threads();
    if chunks >= threads {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    }
}

thread_local! {
    /// Per-thread scratch buffers (im2col matrices, gathered gradients):
    /// reusing them avoids a fresh multi-megabyte allocation, with its page
    /// faults, per chunk.
    static SCRATCH: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A scratch buffer of `len` elements with unspecified contents. Taken out
/// of the thread's pool (not borrowed), so a nested rayon task that runs on
/// this thread while a GEMM waits simply gets another buffer.
pub(super) fn scratch(len: usize) -> Vec<f32> {
    let mut v = SCRATCH.with(|s| s.borrow_mut().pop()).unwrap_or_default();
    v.resize(len, 0.0);
    v
}

pub(super) fn release(v: Vec<f32>) {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < 4 {
            s.push(v);
        }
    });
}

/// `dst[m x n] (+)= lhs[m x k] . rhs[k x n]` with explicit strides
/// (row stride, column stride) for each operand; `dst` is row-major.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
    parallelism: gemm::Parallelism,
) {
    let dst_strides = (n, 1);
    matmul_strided(
        (m, n, k),
        dst,
        dst_strides,
        accumulate,
        lhs,
        lhs_strides,
        rhs,
        rhs_strides,
        parallelism,
    )
}

/// [`matmul`] with `dst` strides too. The gemm crate packs the operands
/// that are not laid out for its microkernel; which ones depends on the
/// orientation of `dst` (it transposes the problem when `dst` is
/// row-major), so the caller picks the orientation that leaves its biggest
/// operand unpacked.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul_strided(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    parallelism: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() > (m - 1) * dst_rs + (n - 1) * dst_cs);
    assert!(k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(k == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts above keep every index the GEMM touches inside the
    // slices; dst does not alias lhs or rhs (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
