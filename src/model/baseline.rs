//! The paper's baseline: a plain convolutional autoencoder of similar size
//! (3x3 conv + leaky ReLU + 2x2 average pool per stage, a linear code, and the
//! mirror decoder). Its code is neither equivariant nor invariant.
//!
//! Symbols: B batch, C channels, S image size, s = S / 2^stages, D code size.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use std::f64::consts::SQRT_2;

use crate::nn::{activation, ops, PlainConv, LEAKY_SLOPE};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::config::ModelConfig;

/// Plain convolutional autoencoder.
#[derive(Module, Debug)]
pub struct BaselineAutoencoder {
    enc_convs: Vec<Conv2d>,
    enc_linear: Linear,
    dec_linear: Linear,
    dec_ups: Vec<ConvTranspose2d>,
    dec_convs: Vec<Conv2d>,
    final_size: usize,
    last_channels: usize,
}

impl BaselineAutoencoder {
    /// Build from a model config: the config's channels times
    /// [`crate::config::BASELINE_WIDENING`] plain channels per stage.
    pub fn new(config: &ModelConfig, image_size: usize, device: &Device) -> Self {
        let widen = config.maps_per_channel();
        let c: Vec<usize> = config.channels.iter().map(|c| c * widen).collect();
        let k = config.kernel;
        // He initialisation (burn's default is scaled for linear layers).
        let he = |gain: f64| Initializer::KaimingUniform {
            gain,
            fan_out_only: false,
        };
        // Zero biases: burn draws them like the weights, which at He scale
        // drowns the sparse image signal. (The "same" padding is applied in
        // `same_conv`, which runs these weights through our operations.)
        let same = |ci: usize, co: usize| {
            let mut conv = Conv2dConfig::new([ci, co], [k, k])
                .with_initializer(he(SQRT_2))
                .init(device);
            conv.bias = Some(Initializer::Zeros.init([co], device));
            conv
        };
        let mut enc_convs = vec![same(1, c[0])];
        enc_convs.extend(c.windows(2).map(|w| same(w[0], w[1])));
        let final_size = image_size >> c.len();
        let last = *c.last().unwrap();
        let flat = last * final_size * final_size;
        let dec_ups = (0..c.len())
            .rev()
            .map(|i| {
                ConvTranspose2dConfig::new([c[i], c[i]], [2, 2])
                    .with_stride([2, 2])
                    .init(device)
            })
            .collect();
        let dec_convs = (0..c.len())
            .rev()
            .map(|i| same(c[i], if i > 0 { c[i - 1] } else { 1 }))
            .collect();
        BaselineAutoencoder {
            enc_convs,
            enc_linear: LinearConfig::new(flat, config.code).init(device),
            dec_linear: LinearConfig::new(config.code, flat)
                .with_initializer(he(SQRT_2))
                .init(device),
            dec_ups,
            dec_convs,
            final_size,
            last_channels: last,
        }
    }

    /// The encoder as ordinary operations: its convolutions (each "same"
    /// padded, followed by the activation and 2x2 average pooling), then
    /// the linear map of the flattened `[C, s, s]` maps to the code.
    pub fn plain_encoder(&self) -> (Vec<PlainConv>, &Linear) {
        let convs = self
            .enc_convs
            .iter()
            .map(|conv| {
                let weight = conv.weight.val();
                let [co, _, k, _] = weight.dims();
                let bias = match &conv.bias {
                    Some(b) => b.val(),
                    None => Tensor::zeros([co], &weight.device()),
                };
                PlainConv {
                    weight,
                    bias,
                    stride: 1,
                    padding: k / 2,
                }
            })
            .collect();
        (convs, &self.enc_linear)
    }

    /// # Shapes
    /// `[B, 1, S, S] -> [B, D]`
    pub fn encode(&self, x: Tensor<4>) -> Tensor<2> {
        let mut h = x;
        for conv in &self.enc_convs {
            h = crate::nn::avg_pool2(same_conv(conv, h, true));
        }
        let b = h.dims()[0];
        // # Shapes: [B, C, s, s] -> [B, C*s*s] -> [B, D]
        self.enc_linear.forward(h.reshape([b as i32, -1]))
    }

    /// # Shapes
    /// `[B, D] -> [B, 1, S, S]`
    pub fn decode(&self, code: Tensor<2>) -> Tensor<4> {
        let b = code.dims()[0];
        let s = self.final_size;
        // # Shapes: [B, D] -> [B, C*s*s] -> [B, C, s, s]
        let mut h =
            activation(self.dec_linear.forward(code)).reshape([b, self.last_channels, s, s]);
        let last = self.dec_convs.len() - 1;
        for (i, (up, conv)) in self.dec_ups.iter().zip(&self.dec_convs).enumerate() {
            h = same_conv(conv, upsample(up, h), i < last);
        }
        h
    }

    /// Reconstruction and code.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<2>) {
        let code = self.encode(x);
        (self.decode(code.clone()), code)
    }
}

/// A same-padded stride-1 `conv`, with the activation fused if `activated`:
/// the layer's own parameters through [`crate::nn::ops`] (our CPU
/// kernels on flex, burn's conv2d elsewhere).
fn same_conv(conv: &Conv2d, x: Tensor<4>, activated: bool) -> Tensor<4> {
    let weight = conv.weight.val();
    let [co, _, k, _] = weight.dims();
    let bias = bias_or_zeros(conv.bias.as_ref(), co, &x);
    let slope = activated.then_some(LEAKY_SLOPE);
    ops::conv2d(x, weight, bias, 1, k / 2, slope)
}

/// The decoder's 2x upsampling `up` (stride = kernel = 2), then the activation.
fn upsample(up: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    let weight = up.weight.val();
    let [_, co, k, _] = weight.dims();
    let bias = bias_or_zeros(up.bias.as_ref(), co, &x);
    ops::conv_transpose2d(x, weight, bias, k, 0, Some(LEAKY_SLOPE))
}

fn bias_or_zeros(bias: Option<&Param<Tensor<1>>>, channels: usize, x: &Tensor<4>) -> Tensor<1> {
    match bias {
        Some(b) => b.val(),
        None => Tensor::zeros([channels], &x.device()),
    }
}
