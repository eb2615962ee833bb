//! Classification metrics (confusion matrix, per-class recall and precision), summary statistics
//! over seeds, and the kernel inception distance on arbitrary feature vectors.

use serde::{Deserialize, Serialize};

/// Counts of (true class, predicted class).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// `counts[truth][predicted]`.
    pub counts: Vec<Vec<u64>>,
}

impl Confusion {
    /// An empty matrix for `n` classes.
    pub fn new(n: usize) -> Self {
        Self {
            counts: vec![vec![0; n]; n],
        }
    }

    /// The matrix of `truth` against `predicted` (indices below `n`; others are ignored).
    pub fn from_pairs(n: usize, truth: &[usize], predicted: &[usize]) -> Self {
        let mut c = Self::new(n);
        for (&t, &p) in truth.iter().zip(predicted) {
            if t < n && p < n {
                c.counts[t][p] += 1;
            }
        }
        c
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.counts.len()
    }

    /// Samples of class `c`.
    fn support(&self, c: usize) -> u64 {
        self.counts[c].iter().sum()
    }

    /// Samples predicted as class `c`.
    fn predicted(&self, c: usize) -> u64 {
        self.counts.iter().map(|row| row[c]).sum()
    }

    /// Share of class `c`'s samples predicted as `c`; `None` when the class has no sample.
    pub fn recall(&self, c: usize) -> Option<f64> {
        let n = self.support(c);
        (n > 0).then(|| self.counts[c][c] as f64 / n as f64)
    }

    /// Share of the samples predicted as `c` that are `c`; `None` when nothing was predicted as
    /// `c` (the classifier never names the class, so its precision is undefined).
    pub fn precision(&self, c: usize) -> Option<f64> {
        let n = self.predicted(c);
        (n > 0).then(|| self.counts[c][c] as f64 / n as f64)
    }

    /// Precision of class `c` as if every class had as many test samples (each row scaled to
    /// sum 1), so it does not depend on how many samples of each class the test set happens to
    /// hold. Classes without samples are left out. `None` when nothing is predicted as `c`.
    pub fn balanced_precision(&self, c: usize) -> Option<f64> {
        let mut predicted = 0.0;
        for t in 0..self.classes() {
            let n = self.support(t);
            if n > 0 {
                predicted += self.counts[t][c] as f64 / n as f64;
            }
        }
        let right = self.recall(c).unwrap_or(0.0);
        (predicted > 0.0).then(|| right / predicted)
    }

    /// Mean recall over the classes that have samples (accuracy with every class weighted
    /// equally); 0 for an empty matrix.
    pub fn balanced_accuracy(&self) -> f64 {
        let recalls: Vec<f64> = (0..self.classes()).filter_map(|c| self.recall(c)).collect();
        if recalls.is_empty() {
            0.0
        } else {
            recalls.iter().sum::<f64>() / recalls.len() as f64
        }
    }

    /// Share of all samples predicted correctly (0 for an empty matrix).
    pub fn accuracy(&self) -> f64 {
        let total: u64 = self.counts.iter().flatten().sum();
        let right: u64 = (0..self.classes()).map(|c| self.counts[c][c]).sum();
        if total == 0 {
            0.0
        } else {
            right as f64 / total as f64
        }
    }
}

/// A number that is `null` in JSON when it is not finite (JSON has no NaN), and NaN when read
/// back from `null`.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// Mean and sample standard deviation (n - 1) of a set of values; both NaN (`null` in JSON)
/// for no values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanSd {
    /// Mean.
    #[serde(with = "nan_as_null")]
    pub mean: f64,
    /// Sample standard deviation (0 for a single value).
    #[serde(with = "nan_as_null")]
    pub sd: f64,
    /// How many values.
    pub n: usize,
}

impl MeanSd {
    /// The mean and standard deviation of `values` (NaN mean for none).
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        if n == 0 {
            return Self {
                mean: f64::NAN,
                sd: f64::NAN,
                n,
            };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Self { mean, sd, n }
    }
}

impl std::fmt::Display for MeanSd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.mean.is_nan() {
            write!(f, "n/a")
        } else {
            write!(f, "{:.3} ± {:.3}", self.mean, self.sd)
        }
    }
}

/// Kernel inception distance: the unbiased estimate of the squared MMD between two sets of
/// feature vectors under the cubic polynomial kernel `(x·y / d + 1)^3` (Bińkowski et al. 2018).
/// About 0 when both come from one distribution; it can be slightly negative. `None` when a set
/// has fewer than two vectors or the dimensions differ.
pub fn kid(a: &[Vec<f32>], b: &[Vec<f32>]) -> Option<f64> {
    let (m, n) = (a.len(), b.len());
    let d = a.first()?.len();
    if m < 2 || n < 2 || d == 0 || a.iter().chain(b).any(|v| v.len() != d) {
        return None;
    }
    let k = |x: &[f32], y: &[f32]| -> f64 {
        let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
        (dot / d as f64 + 1.0).powi(3)
    };
    let within = |s: &[Vec<f32>]| -> f64 {
        let mut sum = 0.0;
        for i in 0..s.len() {
            for j in i + 1..s.len() {
                sum += k(&s[i], &s[j]);
            }
        }
        2.0 * sum / (s.len() * (s.len() - 1)) as f64
    };
    let mut cross = 0.0;
    for x in a {
        for y in b {
            cross += k(x, y);
        }
    }
    Some(within(a) + within(b) - 2.0 * cross / (m * n) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_precision_and_accuracy_of_a_hand_made_matrix() {
        // Rows: truth; columns: predicted.
        let c = Confusion {
            counts: vec![vec![8, 2, 0], vec![1, 3, 6], vec![0, 0, 10]],
        };
        assert_eq!(c.recall(0), Some(0.8));
        assert_eq!(c.recall(1), Some(0.3));
        assert_eq!(c.recall(2), Some(1.0));
        assert_eq!(c.precision(0), Some(8.0 / 9.0));
        assert_eq!(c.precision(1), Some(3.0 / 5.0));
        assert_eq!(c.precision(2), Some(10.0 / 16.0));
        assert_eq!(c.accuracy(), 21.0 / 30.0);
    }

    #[test]
    fn a_class_never_predicted_has_no_precision_and_an_absent_class_no_recall() {
        let c = Confusion {
            counts: vec![vec![5, 0, 0], vec![4, 0, 0], vec![0, 0, 0]],
        };
        assert_eq!(c.recall(1), Some(0.0));
        assert_eq!(c.precision(1), None);
        assert_eq!(c.recall(2), None);
        assert_eq!(c.precision(0), Some(5.0 / 9.0));
        assert_eq!(Confusion::new(2).accuracy(), 0.0);
    }

    #[test]
    fn balanced_scores_weight_every_class_equally() {
        // Class 1 has 10x the samples of class 0; both rows have the same proportions.
        let c = Confusion {
            counts: vec![vec![8, 2], vec![10, 90]],
        };
        // Raw precision of class 0: 8 / 18; balanced: 0.8 / (0.8 + 0.1).
        assert_eq!(c.precision(0), Some(8.0 / 18.0));
        assert!((c.balanced_precision(0).expect("defined") - 0.8 / 0.9).abs() < 1e-12);
        assert!((c.balanced_accuracy() - 0.85).abs() < 1e-12);
        // Scaling a row changes nothing.
        let scaled = Confusion {
            counts: vec![vec![80, 20], vec![10, 90]],
        };
        assert!((scaled.balanced_precision(0).expect("defined") - 0.8 / 0.9).abs() < 1e-12);
        assert_eq!(
            Confusion {
                counts: vec![vec![0, 5], vec![0, 5]]
            }
            .balanced_precision(0),
            None
        );
    }

    #[test]
    fn the_matrix_counts_pairs() {
        let c = Confusion::from_pairs(2, &[0, 0, 1, 1, 1], &[0, 1, 1, 1, 0]);
        assert_eq!(c.counts, vec![vec![1, 1], vec![1, 2]]);
    }

    #[test]
    fn mean_and_sample_sd() {
        let s = MeanSd::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(s.mean, 5.0);
        assert!((s.sd - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(MeanSd::of(&[3.0]).sd, 0.0);
        assert!(MeanSd::of(&[]).mean.is_nan());
    }

    #[test]
    fn an_empty_summary_goes_to_json_as_null_and_comes_back() {
        let empty = MeanSd::of(&[]);
        let json = serde_json::to_string(&empty).expect("json");
        assert_eq!(json, r#"{"mean":null,"sd":null,"n":0}"#);
        let back: MeanSd = serde_json::from_str(&json).expect("parse");
        assert!(back.mean.is_nan() && back.sd.is_nan() && back.n == 0);
        let full = MeanSd::of(&[1.0, 2.0]);
        let back: MeanSd =
            serde_json::from_str(&serde_json::to_string(&full).expect("json")).expect("parse");
        assert_eq!(back, full);
    }

    #[test]
    fn kid_is_near_zero_for_one_distribution_and_grows_with_a_shift() {
        // Deterministic pseudo-random vectors.
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
        };
        let set = |n: usize, shift: f32, next: &mut dyn FnMut() -> f32| -> Vec<Vec<f32>> {
            (0..n)
                .map(|_| (0..8).map(|_| next() + shift).collect())
                .collect()
        };
        let a = set(200, 0.0, &mut next);
        let b = set(200, 0.0, &mut next);
        let c = set(200, 0.5, &mut next);
        let same = kid(&a, &b).expect("kid");
        let shifted = kid(&a, &c).expect("kid");
        assert!(same.abs() < 0.01, "same distribution: {same}");
        assert!(shifted > 0.05, "shifted: {shifted}");
        // Identical sets: the unbiased estimate is slightly negative, never large.
        assert!(kid(&a, &a).expect("kid") <= 0.0);
        assert_eq!(kid(&a[..1], &b), None);
    }
}
