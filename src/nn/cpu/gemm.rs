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

/// One operand of a matrix product: its values and its (row stride,
/// column stride) in elements.
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub values: &'a [f32],
    pub strides: (usize, usize),
}

/// A row-major matrix with `columns` columns.
pub(crate) fn row_major(values: &[f32], columns: usize) -> Operand<'_> {
    Operand {
        values,
        strides: (columns, 1),
    }
}

/// A column-major matrix with `rows` rows (the transpose of a row-major one).
pub(crate) fn column_major(values: &[f32], rows: usize) -> Operand<'_> {
    Operand {
        values,
        strides: (1, rows),
    }
}

/// `dst[m x n] (+)= lhs[m x k] . rhs[k x n]`; `dst` is row-major.
pub(crate) fn matmul(
    mnk: (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: Operand,
    rhs: Operand,
    parallelism: gemm::Parallelism,
) {
    let dst_strides = (mnk.1, 1);
    matmul_strided(mnk, (dst, dst_strides), accumulate, lhs, rhs, parallelism)
}

/// [`matmul`] with `dst` strides too. The gemm crate packs the operands
/// that are not laid out for its microkernel; which ones depends on the
/// orientation of `dst` (it transposes the problem when `dst` is
/// row-major), so the caller picks the orientation that leaves its biggest
/// operand unpacked.
pub(crate) fn matmul_strided(
    (m, n, k): (usize, usize, usize),
    (dst, (dst_rs, dst_cs)): (&mut [f32], (usize, usize)),
    accumulate: bool,
    lhs: Operand,
    rhs: Operand,
    parallelism: gemm::Parallelism,
) {
    let (lhs, (lhs_rs, lhs_cs)) = (lhs.values, lhs.strides);
    let (rhs, (rhs_rs, rhs_cs)) = (rhs.values, rhs.strides);
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
