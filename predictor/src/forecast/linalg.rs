//! Least squares by the normal equations with a small ridge, solved by Gaussian elimination
//! with partial pivoting: enough for the few coefficients of SPAR.

/// Ridge added to each diagonal element (relative to it, so the fit is scale-free), so a
/// collinear system still solves.
const RIDGE: f64 = 1e-9;

/// Coefficients `b` minimising |X b - y|^2 (+ a tiny ridge); `rows` are X's rows. `None` if
/// there are no rows.
pub fn least_squares(rows: &[Vec<f64>], y: &[f64]) -> Option<Vec<f64>> {
    let n = rows.first()?.len();
    let mut a = vec![vec![0.0; n + 1]; n];
    for (x, &t) in rows.iter().zip(y) {
        for i in 0..n {
            for j in 0..n {
                a[i][j] += x[i] * x[j];
            }
            a[i][n] += x[i] * t;
        }
    }
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += RIDGE * row[i].max(1e-12);
    }
    for col in 0..n {
        let pivot = (col..n).max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))?;
        a.swap(col, pivot);
        let d = a[col][col];
        if d.abs() < 1e-300 {
            return None;
        }
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / d;
                if f != 0.0 {
                    for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                        *x -= f * p;
                    }
                }
            }
        }
    }
    Some((0..n).map(|i| a[i][n] / a[i][i]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_known_coefficients() {
        let rows: Vec<Vec<f64>> =
            (0..50).map(|i| vec![1.0, i as f64, ((i * 7) % 11) as f64]).collect();
        let y: Vec<f64> = rows.iter().map(|x| 3.0 + 0.5 * x[1] - 2.0 * x[2]).collect();
        let b = least_squares(&rows, &y).unwrap();
        for (got, want) in b.iter().zip([3.0, 0.5, -2.0]) {
            assert!((got - want).abs() < 1e-3, "{b:?}");
        }
        assert!(least_squares(&[], &[]).is_none());
    }
}
