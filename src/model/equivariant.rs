//! The equivariant autoencoder (paper Figure 5) and its attention variant
//! (paper section 4.2, Figure 6).
//!
//! Encoder: branches (C12/D12 only) -> G-CNN over the grid group ->
//! interleaved rows `V0 [B, N, L]` -> group-linear layers -> `V [B, N, m]`.
//! Decoder: the mirror image, equivariant in turn.
//!
//! With attention: equivariant logits over G (a group-linear layer to one
//! column), `w = softmax`, `Q = sum_t w_t lambda(t^-1) V` (invariant), an
//! optional linear compression of Q to the code; the decoder inverts it with
//! `V ~= sum_t w_t lambda(t) Q`, reusing the encoder's weights w.
//!
//! Symbols: B batch, N = |G|, m columns of V, S image size.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;

use crate::nn::activation;
use crate::nn::field::Field;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::branches::Branches;
use super::gcnn::{GcnnDecoder, GcnnEncoder, GcnnShape};
use crate::config::{ModelConfig, ModelKind};
use crate::group::{Group, GroupKind};
use crate::nn::GroupLinear;

/// Equivariant attention: weights over G and the invariant Q.
#[derive(Module, Debug)]
pub struct EquivariantAttention {
    logits: GroupLinear,
    /// `(t, g) -> t g`, `[N * N]`: `[lambda(t^-1) V]_g = V_{t g}`.
    gather_inv: Tensor<1, Int>,
    /// `(t, g) -> t^-1 g`, `[N * N]`: `[lambda(t) Q]_g = Q_{t^-1 g}`.
    gather: Tensor<1, Int>,
    /// Optional compression of Q to the code, and its mirror.
    compress: Option<Linear>,
    expand: Option<Linear>,
}

impl EquivariantAttention {
    fn new(group: &Group, m: usize, code: usize, device: &Device) -> Self {
        let n = group.order();
        let mut gather_inv = Vec::with_capacity(n * n);
        let mut gather = Vec::with_capacity(n * n);
        for t in 0..n {
            for g in 0..n {
                gather_inv.push(group.compose(t, g) as i64);
                gather.push(group.compose(group.inverse(t), g) as i64);
            }
        }
        let (compress, expand) = if code > 0 {
            (
                Some(LinearConfig::new(n * m, code).init(device)),
                Some(LinearConfig::new(code, n * m).init(device)),
            )
        } else {
            (None, None)
        };
        EquivariantAttention {
            logits: GroupLinear::new(group, m, 1, device),
            gather_inv: Tensor::from_data(TensorData::new(gather_inv, [n * n]), device),
            gather: Tensor::from_data(TensorData::new(gather, [n * n]), device),
            compress,
            expand,
        }
    }

    /// Attention weights, equivariant: `w(t.x)_g = w(x)_{t^-1 g}`.
    ///
    /// # Shapes
    /// `[B, N, m] -> [B, N]`
    pub fn weights(&self, v: Tensor<3>) -> Tensor<2> {
        let [b, n, _] = v.dims();
        softmax(self.logits.forward(v).reshape([b, n]), 1)
    }

    /// `sum_t w_t V[perm_t(g)]` for a gather table ordered `(t, g)`.
    ///
    /// # Shapes
    /// `[B, N, m], [B, N] -> [B, N, m]`
    fn mix(v: Tensor<3>, w: Tensor<2>, table: Tensor<1, Int>) -> Tensor<3> {
        let [b, n, m] = v.dims();
        // # Shapes: [B, N, m] -> [B, N*N, m] -> [B, N(t), N(g), m]
        let rows = v.select(1, table).reshape([b, n, n, m]);
        // weights [B, N(t)] -> [B, N, 1, 1]; sum over t -> [B, N, m]
        (rows * w.reshape([b, n, 1, 1]))
            .sum_dim(1)
            .reshape([b, n, m])
    }

    /// The group-linear layer that gives the logits of the weights.
    pub fn logits_layer(&self) -> &GroupLinear {
        &self.logits
    }

    /// Gather table `[N * N]` of [`Self::invariant`], ordered `(t, g)`: `t g`.
    pub fn invariant_table(&self) -> Tensor<1, Int> {
        self.gather_inv.clone()
    }

    /// The compression of Q to the code, if configured.
    pub fn compression(&self) -> Option<&Linear> {
        self.compress.as_ref()
    }

    /// Invariant `Q = sum_t w_t lambda(t^-1) V`.
    pub fn invariant(&self, v: Tensor<3>, w: Tensor<2>) -> Tensor<3> {
        Self::mix(v, w, self.gather_inv.clone())
    }

    /// Inverse (exact for one-hot w): `V = sum_t w_t lambda(t) Q`.
    pub fn restore(&self, q: Tensor<3>, w: Tensor<2>) -> Tensor<3> {
        Self::mix(q, w, self.gather.clone())
    }

    /// The invariant code: Q flattened, compressed when configured.
    ///
    /// # Shapes
    /// `[B, N, m] -> [B, code]` (or `[B, N*m]`)
    pub fn code(&self, q: Tensor<3>) -> Tensor<2> {
        let [b, n, m] = q.dims();
        let flat = q.reshape([b, n * m]);
        match &self.compress {
            Some(lin) => lin.forward(flat),
            None => flat,
        }
    }

    /// Mirror of [`EquivariantAttention::code`].
    ///
    /// # Shapes
    /// `[B, code] -> [B, N, m]`
    pub fn uncode(&self, code: Tensor<2>, n: usize, m: usize) -> Tensor<3> {
        let b = code.dims()[0];
        let flat = match &self.expand {
            Some(lin) => lin.forward(code),
            None => code,
        };
        flat.reshape([b, n, m])
    }
}

/// What the encoder of an equivariant model produces.
#[derive(Clone, Debug)]
pub struct Encoding {
    /// Equivariant embedding V `[B, N, m]`.
    pub v: Tensor<3>,
    /// Attention weights `[B, N]` (attention models only).
    pub weights: Option<Tensor<2>>,
    /// Invariant code `[B, code]` (attention models only).
    pub code: Option<Tensor<2>>,
}

/// Equivariant autoencoder for C4, D4, C12 or D12.
#[derive(Module, Debug)]
pub struct EquivariantAutoencoder {
    branches: Branches,
    encoder: GcnnEncoder,
    enc_linear: Vec<GroupLinear>,
    attention: Option<EquivariantAttention>,
    dec_linear: Vec<GroupLinear>,
    decoder: GcnnDecoder,
    #[module(skip)]
    group: GroupKind,
}

impl EquivariantAutoencoder {
    /// Build from a model config and the image size.
    pub fn new(config: &ModelConfig, image_size: usize, device: &Device) -> Self {
        let kind = config.group;
        let (grid, group) = (kind.grid_group(), kind.group());
        let shape = GcnnShape {
            channels: config.channels.clone(),
            kernel: config.kernel,
            latent: config.latent,
            image_size,
        };
        let mut widths = vec![config.latent];
        widths.extend(&config.group_linear);
        let enc_linear = widths
            .windows(2)
            .map(|w| GroupLinear::new(&group, w[0], w[1], device))
            .collect();
        let dec_linear = widths
            .windows(2)
            .rev()
            .map(|w| GroupLinear::new(&group, w[1], w[0], device))
            .collect();
        let attention = (config.kind == ModelKind::Attention)
            .then(|| EquivariantAttention::new(&group, config.columns(), config.code, device));
        EquivariantAutoencoder {
            branches: Branches::new(kind, image_size, config.smoothing, device),
            encoder: GcnnEncoder::new(&grid, &shape, device),
            enc_linear,
            attention,
            dec_linear,
            decoder: GcnnDecoder::new(&grid, &shape, device),
            group: kind,
        }
    }

    /// The group G of V's rows.
    pub fn group(&self) -> GroupKind {
        self.group
    }

    /// The equivariant embedding V, `V(t.x) = lambda(t) V(x)`.
    ///
    /// # Shapes
    /// `[B, 1, S, S] -> [B, N, m]`
    pub fn embed(&self, x: Tensor<4>) -> Tensor<3> {
        let last = self.enc_linear.len();
        let mut v = self.spatial_embed(x);
        for (i, layer) in self.enc_linear.iter().enumerate() {
            v = layer.forward(v);
            if i + 1 < last {
                v = activation(v);
            }
        }
        v
    }

    /// Images in, rows over G out ([`Self::embed`]); [`Self::decode`] the other way.
    pub const FIELDS: (Field, Field) = (Field::Image, Field::Rows);

    /// The grid network's part of the embedding: the rows over G before the
    /// group-linear layers.
    ///
    /// # Shapes
    /// `[B, 1, S, S] -> [B*nb, 1, S, S] -> [B*nb, n, L] -> [B, N, L]`
    pub fn spatial_embed(&self, x: Tensor<4>) -> Tensor<3> {
        self.branches
            .merge_rows(self.encoder.forward(self.branches.split_images(x)))
    }

    /// The branches (C12/D12) around the grid network.
    pub fn branches(&self) -> &Branches {
        &self.branches
    }

    /// The grid network's encoder (over H; run on each branch).
    pub fn grid_encoder(&self) -> &GcnnEncoder {
        &self.encoder
    }

    /// The encoder's group-linear layers (over G).
    pub fn encoder_group_linear(&self) -> &[GroupLinear] {
        &self.enc_linear
    }

    /// V plus, for attention models, the weights and the invariant code.
    pub fn encode(&self, x: Tensor<4>) -> Encoding {
        let v = self.embed(x);
        match &self.attention {
            None => Encoding {
                v,
                weights: None,
                code: None,
            },
            Some(att) => {
                let w = att.weights(v.clone());
                let code = att.code(att.invariant(v.clone(), w.clone()));
                Encoding {
                    v,
                    weights: Some(w),
                    code: Some(code),
                }
            }
        }
    }

    /// Decode V to images: `decode(lambda(t) V) = t . decode(V)`.
    ///
    /// # Shapes
    /// `[B, N, m] -> [B, 1, S, S]`
    pub fn decode(&self, v: Tensor<3>) -> Tensor<4> {
        let mut h = v;
        for layer in &self.dec_linear {
            h = activation(layer.forward(h));
        }
        // # Shapes: [B, N, L] -> [B*nb, n, L] -> [B*nb, 1, S, S] -> [B, 1, S, S]
        self.branches
            .merge_images(self.decoder.forward(self.branches.split_rows(h)))
    }

    /// Reconstruction and the encoding it came from. Attention models decode
    /// through the invariant code and the encoder's weights.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Encoding) {
        let enc = self.encode(x);
        let v = match (&self.attention, &enc.code, &enc.weights) {
            (Some(att), Some(code), Some(w)) => {
                let [_, n, m] = enc.v.dims();
                att.restore(att.uncode(code.clone(), n, m), w.clone())
            }
            _ => enc.v.clone(),
        };
        (self.decode(v), enc)
    }

    /// The same model with every filter bank and group-linear weight
    /// expanded once: inference (`embed`, `eval`, `check`) then runs only the
    /// products. Call on fixed weights (after loading, on `valid()`).
    pub fn freeze(self) -> Self {
        let freeze =
            |layers: Vec<GroupLinear>| layers.into_iter().map(GroupLinear::freeze).collect();
        EquivariantAutoencoder {
            encoder: self.encoder.freeze(),
            enc_linear: freeze(self.enc_linear),
            dec_linear: freeze(self.dec_linear),
            decoder: self.decoder.freeze(),
            ..self
        }
    }

    /// The attention block, if this is an attention model.
    pub fn attention(&self) -> Option<&EquivariantAttention> {
        self.attention.as_ref()
    }
}
