//! Invariant heads over the equivariant embedding `V [B, N, m]` (paper
//! section 4.1, `docs/conventions.md`): every head `f` satisfies `f(lambda(t) V) = f(V)`.
//!
//! - average pooling: the mean row, `m` features;
//! - Gram pooling: `q^h_ij = sum_g V[g,i] V[g h, j] = (V^T rho(h) V)_ij`
//!   for chosen right-regular elements h (which commute with every
//!   lambda(t)), keeping a band of diagonals; plus the rotation
//!   autocorrelations `<u_i, lambda(R^j) u_i>` (the P' features, invariant
//!   in D_n because conjugation by M inverts R^j).
//!
//! Feature counts for `m` columns, `k` Gram elements and band `b`
//! (0 = full): each involution h (e, M, R^k M, R^{n/2}) gives the upper band
//! `sum_{d<b} (m - d)`; any other h gives both sides `m + 2 sum_{0<d<b}(m-d)`
//! (since `q^h_ij = q^{h^-1}_ji`); autocorrelation adds `m * n/2`.
//! With the defaults (e, R, M; band 8; m = 32): 228 + 424 + 228 = 880 Gram
//! features, plus 64 (D4) or 192 (D12) autocorrelations: 944 and 1072.
//!
//! Symbols: B batch, N = |G|, m columns, F features.

use burn::tensor::{Int, Tensor, TensorData};

use serde::{Deserialize, Serialize};

use crate::group::{Element, Group, NameError};

/// The right-regular elements h of the Gram features, as a config names
/// them (`features.gram_elements`): the default set, every element, or a
/// list of elements. Written as a list of names (`[]`, `["all"]`,
/// `["e", "R^1", "M"]`); one name may stand alone (`"all"`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum GramElements {
    /// e, R^1, and M when the group has reflections.
    #[default]
    Default,
    /// Every element of the group.
    All,
    /// These elements, in this order (a repeated one counts once).
    Listed(Vec<Element>),
}

impl GramElements {
    /// The elements' indices in `group`, or the first one it lacks.
    pub fn resolve(&self, group: &Group) -> Result<Vec<usize>, NameError> {
        match self {
            GramElements::Default => {
                let mut default = vec![group.identity(), group.rotation(1)];
                default.extend(group.mirror());
                Ok(default)
            }
            GramElements::All => Ok((0..group.order()).collect()),
            GramElements::Listed(elements) => {
                let mut out = Vec::new();
                for &e in elements {
                    let a = group.find(e)?;
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
                Ok(out)
            }
        }
    }

    /// The names a config writes.
    fn names(&self) -> Vec<String> {
        match self {
            GramElements::Default => Vec::new(),
            GramElements::All => vec!["all".to_string()],
            GramElements::Listed(elements) => elements.iter().map(|e| e.to_string()).collect(),
        }
    }
}

impl GramElements {
    /// From a config's list of names.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, NameError> {
        if names.is_empty() {
            return Ok(GramElements::Default);
        }
        if names.iter().any(|n| n.as_ref() == "all") {
            return Ok(GramElements::All);
        }
        let elements = names
            .iter()
            .map(|n| n.as_ref().parse())
            .collect::<Result<_, _>>()?;
        Ok(GramElements::Listed(elements))
    }
}

impl Serialize for GramElements {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for GramElements {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let names = match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        GramElements::from_names(&names).map_err(serde::de::Error::custom)
    }
}

/// Average pooling: the mean row of V.
///
/// # Shapes
/// `[B, N, m] -> [B, m]`
pub fn average_pooling(v: Tensor<3>) -> Tensor<2> {
    let [b, _, m] = v.dims();
    v.mean_dim(1).reshape([b, m])
}

/// Gram pooling with chosen right-regular elements and a band.
#[derive(Clone, Debug)]
pub struct GramPooling {
    group: Group,
    elements: Vec<usize>,
    band: usize,
    autocorrelation: bool,
}

impl GramPooling {
    /// Gram pooling over `group` for the right-regular `elements`.
    pub fn new(group: Group, elements: Vec<usize>, band: usize, autocorrelation: bool) -> Self {
        GramPooling {
            group,
            elements,
            band,
            autocorrelation,
        }
    }

    /// Flat indices `(i, j)` kept from the `m x m` matrix of element `h`.
    fn kept_entries(&self, h: usize, m: usize) -> Vec<i64> {
        let band = if self.band == 0 { m } else { self.band };
        let involution = self.group.inverse(h) == h;
        let mut idx = Vec::new();
        for i in 0..m {
            for j in 0..m {
                let d = i.abs_diff(j);
                // for involutions q^h is symmetric: keep the upper band only
                if d < band && (!involution || j >= i) {
                    idx.push((i * m + j) as i64);
                }
            }
        }
        idx
    }

    /// Rotations j = 1..=n/2 used for the autocorrelation features.
    fn autocorrelation_shifts(&self) -> Vec<usize> {
        if self.autocorrelation {
            (1..=self.group.n / 2)
                .map(|j| self.group.rotation(j))
                .collect()
        } else {
            Vec::new()
        }
    }

    /// Number of features for V with `m` columns.
    pub fn feature_count(&self, m: usize) -> usize {
        self.elements
            .iter()
            .map(|&h| self.kept_entries(h, m).len())
            .sum::<usize>()
            + self.autocorrelation_shifts().len() * m
    }

    /// The blocks of features for V with `m` columns, in output order.
    pub fn parts(&self, m: usize) -> Vec<GramPart> {
        let products = self.elements.iter().map(|&h| GramPart::Products {
            perm: self.group.right_regular_perm(h),
            kept: self.kept_entries(h, m),
        });
        let autocorrelations =
            self.autocorrelation_shifts()
                .into_iter()
                .map(|r| GramPart::Autocorrelation {
                    perm: self.group.left_regular_perm(r),
                });
        products.chain(autocorrelations).collect()
    }

    /// # Shapes
    /// `[B, N, m] -> [B, F]`
    pub fn features(&self, v: Tensor<3>) -> Tensor<2> {
        let [b, n, m] = v.dims();
        let device = v.device();
        let indices = |idx: &[i64]| {
            Tensor::<1, Int>::from_data(TensorData::new(idx.to_vec(), [idx.len()]), &device)
        };
        let gather = |perm: &[usize]| indices(&perm.iter().map(|&x| x as i64).collect::<Vec<_>>());
        debug_assert_eq!(n, self.group.order());
        let vt = v.clone().swap_dims(1, 2);
        let parts = self.parts(m).into_iter().map(|part| match part {
            GramPart::Products { perm, kept } => {
                // # Shapes: rho(h) V [B, N, m]; V^T rho(h) V [B, m, m] -> [B, m*m] -> [B, kept]
                let vh = v.clone().select(1, gather(&perm));
                let q = vt.clone().matmul(vh).reshape([b, m * m]);
                q.select(1, indices(&kept))
            }
            GramPart::Autocorrelation { perm } => {
                // # Shapes: sum_g V[g, i] (lambda(R^j) V)[g, i] -> [B, 1, m] -> [B, m]
                let vr = v.clone().select(1, gather(&perm));
                (v.clone() * vr).sum_dim(1).reshape([b, m])
            }
        });
        Tensor::cat(parts.collect(), 1)
    }
}

/// One block of Gram pooling's features.
#[derive(Clone, Debug)]
pub enum GramPart {
    /// The entries `kept` of `V^T rho(h) V` flattened row-major (`m * m`),
    /// where `(rho(h) V)[g] = V[perm[g]]`.
    Products {
        /// Right-regular permutation of h over the rows `[N]`.
        perm: Vec<usize>,
        /// Flat indices `i * m + j` kept.
        kept: Vec<i64>,
    },
    /// `sum_g V[g, i] V[perm[g], i]`, one feature per column.
    Autocorrelation {
        /// Left-regular permutation of a rotation over the rows `[N]`.
        perm: Vec<usize>,
    },
}
