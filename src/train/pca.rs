//! Principal components of pixel patches, used to start the autoencoder's linear paths at the
//! best linear code: the encoder's `skip` projects a patch onto the top components (whitened, so
//! latents start at unit variance) and the decoder's `skip` maps them back. With 32 components of
//! 8×8 RGB patches that alone reconstructs the reference world at about 30 dB PSNR, so training
//! spends its time on what a linear code cannot do.

use candle_core::{D, DType, Device, Tensor};

use crate::error::{Error, Result};

/// Mean and top principal components of a set of vectors.
#[derive(Clone, Debug)]
pub struct Components {
    /// Mean vector (length `dim`).
    pub mean: Vec<f32>,
    /// Eigenvalues, largest first (length `k`).
    pub variances: Vec<f32>,
    /// Eigenvectors as rows (`k × dim`).
    pub vectors: Vec<f32>,
}

/// Principal components of the rows of `x` (`n × dim`), keeping `k`.
pub fn principal_components(x: &Tensor, k: usize) -> Result<Components> {
    let (n, dim) = x.dims2()?;
    if k > dim || n < 2 {
        return Err(Error::Other(format!(
            "cannot take {k} components of {n} vectors of length {dim}"
        )));
    }
    let x = x.to_dtype(DType::F64)?;
    let mean = x.mean_keepdim(0)?;
    let centred = x.broadcast_sub(&mean)?;
    let cov = (centred.t()?.matmul(&centred)? / (n - 1) as f64)?;
    let cov: Vec<f64> = cov.flatten_all()?.to_vec1()?;
    let (values, vectors) = symmetric_eigen(cov, dim);
    let mut order: Vec<usize> = (0..dim).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let mean: Vec<f64> = mean.flatten_all()?.to_vec1()?;
    let mut rows = Vec::with_capacity(k * dim);
    for &i in order.iter().take(k) {
        // Column `i` of the eigenvector matrix.
        rows.extend((0..dim).map(|r| vectors[r * dim + i] as f32));
    }
    Ok(Components {
        mean: mean.into_iter().map(|v| v as f32).collect(),
        variances: order
            .iter()
            .take(k)
            .map(|&i| values[i].max(1e-12) as f32)
            .collect(),
        vectors: rows,
    })
}

/// Eigen-decomposition of a symmetric `n × n` matrix (row-major) by cyclic Jacobi rotations.
/// Returns the eigenvalues and the eigenvectors as the columns of a row-major matrix.
pub fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..50 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        let diag: f64 = (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum();
        if off <= 1e-22 * diag.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// Linear maps from the components: the whitening encoder `(k × dim, k)` and the decoder
/// `(dim × k, dim)`, as tensors on `device`.
pub fn linear_codec(c: &Components, device: &Device) -> Result<[Tensor; 4]> {
    let (k, dim) = (c.variances.len(), c.mean.len());
    let vectors = Tensor::from_vec(c.vectors.clone(), (k, dim), device)?;
    let std: Vec<f32> = c.variances.iter().map(|v| v.sqrt()).collect();
    let std = Tensor::from_vec(std, (k, 1), device)?;
    let mean = Tensor::from_vec(c.mean.clone(), (dim, 1), device)?;
    let enc_w = vectors.broadcast_div(&std)?;
    let enc_b = enc_w.matmul(&mean)?.neg()?.squeeze(D::Minus1)?;
    let dec_w = vectors.broadcast_mul(&std)?.t()?.contiguous()?;
    let dec_b = mean.squeeze(D::Minus1)?;
    Ok([enc_w, enc_b, dec_w, dec_b])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_decomposition_reconstructs_the_matrix() {
        let a = vec![4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 1.0];
        let (w, v) = symmetric_eigen(a.clone(), 3);
        for i in 0..3 {
            for j in 0..3 {
                let r: f64 = (0..3).map(|k| v[i * 3 + k] * w[k] * v[j * 3 + k]).sum();
                assert!((r - a[i * 3 + j]).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn linear_codec_round_trips_data_in_the_span() {
        // Points on a 2-D plane in 4-D: two components reconstruct them exactly.
        let pts: Vec<f32> = (0..40)
            .flat_map(|i| {
                let (a, b) = ((i % 7) as f32 - 3.0, (i % 5) as f32 * 0.5);
                [a + 1.0, b, a - b, 2.0 * a + 0.5]
            })
            .collect();
        let x = Tensor::from_vec(pts, (40, 4), &Device::Cpu).unwrap();
        let c = principal_components(&x, 2).unwrap();
        let [ew, eb, dw, db] = linear_codec(&c, &Device::Cpu).unwrap();
        let z = x
            .matmul(&ew.t().unwrap())
            .unwrap()
            .broadcast_add(&eb)
            .unwrap();
        let r = z
            .matmul(&dw.t().unwrap())
            .unwrap()
            .broadcast_add(&db)
            .unwrap();
        let err: f32 = (r - &x)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(err < 1e-3, "{err}");
    }
}
