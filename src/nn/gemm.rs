//! A bounds-checked, safe front to the `gemm` crate's strided matrix product.
//!
//! This is the only module of the crate that contains `unsafe` code. Every matrix is described
//! by a slice plus an offset and strides; [`gemm`] checks, before calling into the `gemm` crate,
//! that every element the product can touch lies inside its slice, and that the destination's
//! elements do not overlap, so the safe signature cannot be used to read or write out of bounds.
#![allow(unsafe_code)]

/// A read-only strided matrix view: element `(i, j)` is `data[offset + i * row_stride + j *
/// col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    /// The backing storage.
    pub data: &'a [f32],
    /// Index of element `(0, 0)`.
    pub offset: usize,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Distance between consecutive rows.
    pub row_stride: usize,
    /// Distance between consecutive columns.
    pub col_stride: usize,
}

/// A mutable row-major matrix view: element `(i, j)` is `data[offset + i * row_stride + j]`,
/// with `row_stride >= cols`, so no two elements share a memory location.
#[derive(Debug)]
pub struct MatMut<'a> {
    /// The backing storage.
    pub data: &'a mut [f32],
    /// Index of element `(0, 0)`.
    pub offset: usize,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Distance between consecutive rows (at least `cols`).
    pub row_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major view of `rows × cols` elements starting at `offset`, rows `row_stride` apart.
    pub fn row_major(
        data: &'a [f32],
        offset: usize,
        rows: usize,
        cols: usize,
        row_stride: usize,
    ) -> Self {
        Self {
            data,
            offset,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// Whether every element of the view lies inside `data`.
    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        last_index(
            self.offset,
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
        )
        .is_some_and(|last| last < self.data.len())
    }
}

impl MatMut<'_> {
    /// Whether every element of the view lies inside `data` and no two elements overlap.
    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        (self.rows == 1 || self.row_stride >= self.cols)
            && last_index(self.offset, self.rows, self.cols, self.row_stride, 1)
                .is_some_and(|last| last < self.data.len())
    }
}

/// Index of element `(rows - 1, cols - 1)`, or `None` on overflow. Rows and columns must be
/// non-zero. Since strides are non-negative, this is the largest index of the view.
fn last_index(offset: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    (rows - 1)
        .checked_mul(rs)?
        .checked_add((cols - 1).checked_mul(cs)?)?
        .checked_add(offset)
}

/// Whether `x` fits the `isize` strides the `gemm` crate takes.
fn fits_isize(x: usize) -> bool {
    isize::try_from(x).is_ok()
}

/// `dst = lhs · rhs` (or `dst += lhs · rhs` when `accumulate`), single-threaded.
///
/// Callers parallelise over independent destination blocks themselves, which keeps results
/// independent of the number of threads.
///
/// # Panics
///
/// Panics if the shapes do not agree (`lhs` is `m × k`, `rhs` is `k × n`, `dst` is `m × n`) or a
/// view reaches outside its slice. Callers in this crate compute views from checked tensor
/// shapes, so a panic here is a bug in the caller, never a data error.
pub fn gemm(dst: MatMut<'_>, lhs: MatRef<'_>, rhs: MatRef<'_>, accumulate: bool) {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    assert_eq!(lhs.rows, m, "gemm: lhs rows");
    assert_eq!(rhs.rows, k, "gemm: rhs rows");
    assert_eq!(rhs.cols, n, "gemm: rhs cols");
    assert!(
        dst.in_bounds(),
        "gemm: destination view out of bounds or overlapping"
    );
    assert!(lhs.in_bounds(), "gemm: lhs view out of bounds");
    assert!(rhs.in_bounds(), "gemm: rhs view out of bounds");
    assert!(
        [
            dst.row_stride,
            lhs.row_stride,
            lhs.col_stride,
            rhs.row_stride,
            rhs.col_stride
        ]
        .into_iter()
        .all(fits_isize),
        "gemm: stride too large"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                let start = dst.offset + i * dst.row_stride;
                dst.data[start..start + n].fill(0.0);
            }
        }
        return;
    }
    let dst_ptr = dst.data.as_mut_ptr().wrapping_add(dst.offset);
    let lhs_ptr = lhs.data.as_ptr().wrapping_add(lhs.offset);
    let rhs_ptr = rhs.data.as_ptr().wrapping_add(rhs.offset);
    // SAFETY: the checks above prove, for each of the three views, that the largest index the
    // product can touch, `offset + (rows-1)*row_stride + (cols-1)*col_stride`, is inside its
    // slice (all strides are non-negative, so this is the maximum over the view, and `in_bounds`
    // computed it with overflow checks); so every pointer `gemm` forms, `ptr + i*rs + j*cs` for
    // in-range `i, j`, stays inside the allocation. The destination is borrowed mutably and the
    // two sources immutably, so Rust guarantees they do not alias, and `MatMut::in_bounds`
    // checked `row_stride >= cols` (unit column stride), so no two destination elements share a
    // location. Strides fit in `isize` (checked). `k > 0`, `m > 0`, `n > 0`. With
    // `read_dst == false` the destination is only written, so uninitialised-looking contents are
    // never read; f32 has no invalid bit patterns anyway. `Parallelism::None` runs on this thread
    // only, so the borrows outlive every access.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst_ptr,
            1,
            dst.row_stride as isize,
            accumulate,
            lhs_ptr,
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs_ptr,
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            ::gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_naive_product_and_accumulates() {
        let (m, n, k) = (7, 13, 5);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let want = naive(m, n, k, &a, &b);
        let mut c = vec![f32::NAN; m * n];
        let dst = MatMut {
            data: &mut c,
            offset: 0,
            rows: m,
            cols: n,
            row_stride: n,
        };
        gemm(
            dst,
            MatRef::row_major(&a, 0, m, k, k),
            MatRef::row_major(&b, 0, k, n, n),
            false,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        let dst = MatMut {
            data: &mut c,
            offset: 0,
            rows: m,
            cols: n,
            row_stride: n,
        };
        gemm(
            dst,
            MatRef::row_major(&a, 0, m, k, k),
            MatRef::row_major(&b, 0, k, n, n),
            true,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - 2.0 * y).abs() < 1e-5, "{x} vs {}", 2.0 * y);
        }
    }

    #[test]
    #[should_panic(expected = "rhs view out of bounds")]
    fn refuses_out_of_bounds_views() {
        let a = vec![1.0; 4];
        let b = vec![1.0; 3];
        let mut c = vec![0.0; 4];
        let dst = MatMut {
            data: &mut c,
            offset: 0,
            rows: 2,
            cols: 2,
            row_stride: 2,
        };
        gemm(
            dst,
            MatRef::row_major(&a, 0, 2, 2, 2),
            MatRef::row_major(&b, 0, 2, 2, 2),
            false,
        );
    }
}
