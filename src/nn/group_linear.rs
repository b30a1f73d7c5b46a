//! Group-linear layer: a group convolution over G alone, for features whose
//! spatial dimensions are gone (the C12/D12 heads, and the top of every
//! equivariant encoder):
//!
//! `out[g, c'] = sum_h sum_c W[h^-1 g, c', c] V[h, c]  (+ b[c'])`
//!
//! computed as one matrix product with a weight expanded from the Cayley
//! table. Symbols: B batch, N = |G|, Ci/Co input/output columns.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::field::Field;
use super::filter_bank::group_linear_indices;
use super::profile;
use crate::group::Group;

/// Equivariant linear map `R^{N x Ci} -> R^{N x Co}`.
#[derive(Module, Debug)]
pub struct GroupLinear {
    /// Base weight `[N, Ci * Co]`, slice `a` is `W[a]` stored `(c, c')`.
    pub weight: Param<Tensor<2>>,
    /// Bias `[Co]`, shared over the group.
    pub bias: Param<Tensor<1>>,
    /// `h^-1 g` for every `(h, g)`, `[N * N]`.
    index: Tensor<1, Int>,
    n: usize,
    c_in: usize,
    c_out: usize,
    /// The expanded weight, kept by [`GroupLinear::freeze`] for inference.
    #[module(skip)]
    frozen: Option<Tensor<2>>,
}

impl GroupLinear {
    /// Rows over G in and out.
    pub const FIELDS: (Field, Field) = (Field::Rows, Field::Rows);

    /// A group-linear layer over `group` from `c_in` to `c_out` columns.
    pub fn new(group: &Group, c_in: usize, c_out: usize, device: &Device) -> Self {
        let n = group.order();
        let init = Initializer::KaimingUniform {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: false,
        };
        let weight = init.init_with([n, c_in * c_out], Some(n * c_in), Some(n * c_out), device);
        let idx = group_linear_indices(group);
        let len = idx.len();
        GroupLinear {
            weight,
            bias: Initializer::Zeros.init([c_out], device),
            index: Tensor::from_data(TensorData::new(idx, [len]), device),
            n,
            c_in,
            c_out,
            frozen: None,
        }
    }

    /// The same layer with its weight expanded once, for inference.
    pub fn freeze(self) -> Self {
        if self.frozen.is_some() {
            return self;
        }
        let frozen = Some(self.expanded_weight());
        GroupLinear { frozen, ..self }
    }

    /// The expanded weight `[N * Ci, N * Co]`, rows `(h, c)`, columns `(g, c')`.
    pub fn expanded_weight(&self) -> Tensor<2> {
        if let Some(w) = &self.frozen {
            return w.clone();
        }
        let (n, ci, co) = (self.n, self.c_in, self.c_out);
        self.weight
            .val()
            // # Shapes: [N, Ci*Co] -> [N*N, Ci*Co]  (rows (h, g))
            .select(0, self.index.clone())
            // -> [N(h), N(g), Ci, Co]
            .reshape([n, n, ci, co])
            // -> [N(h), Ci, N(g), Co]
            .swap_dims(1, 2)
            // -> [N*Ci, N*Co]
            .reshape([n * ci, n * co])
    }

    /// # Shapes
    /// `[B, N, Ci] -> [B, N, Co]`
    pub fn forward(&self, v: Tensor<3>) -> Tensor<3> {
        let [b, n, ci] = v.dims();
        assert_eq!((n, ci), (self.n, self.c_in), "GroupLinear input shape");
        let bias = self.bias.val().reshape([1, 1, self.c_out]);
        let co = self.c_out;
        // # Shapes: [B, N*Ci] x [N*Ci, N*Co] -> [B, N*Co] -> [B, N, Co]
        let run = move |v: Tensor<3>, w: Tensor<2>, bias: Tensor<3>| {
            v.reshape([b, n * ci]).matmul(w).reshape([b, n, co]) + bias
        };
        let w = self.expanded_weight();
        if profile::recording() {
            let inputs = (
                profile::input(&v),
                profile::input(&w),
                profile::input(&bias),
            );
            profile::keep(
                format!(
                    "group linear {} x {}",
                    profile::shape(&v.dims()),
                    profile::shape(&w.dims())
                ),
                move |r| {
                    let (v, w, bias) = inputs.clone();
                    profile::finish(run(v, w, bias), r)
                },
            );
        }
        run(v, w, bias)
    }
}
