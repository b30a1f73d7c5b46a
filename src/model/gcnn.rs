//! The spatial G-CNN for a group H acting exactly on the grid (C4 = p4 or
//! D4 = p4m): an encoder from images to `V0 in R^{|H| x L}` and its mirror
//! decoder.
//!
//! Encoder stage: 3x3 group conv (lifting first), leaky ReLU, 2x2 average pool.
//! After the stages a `s x s`, stride `s` group conv collapses the last
//! `s x s` map to one pixel. Pooling and the collapse act on even sizes, so
//! their sampling grids are symmetric about the centre and the whole network
//! is exactly equivariant for every element of H.
//!
//! Symbols: B batch, N = |H|, L latent columns, S image size.

use std::sync::Arc;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use crate::group::Group;
use crate::nn::cpu::frozen::{ConvWeights, FrozenEncoder};
use crate::nn::field::Field;
use crate::nn::ops::cpu_inference;
use crate::nn::transform::to_vec;
use crate::nn::{avg_pool2, GroupConv, GroupConvTranspose, LiftingConv, PlainConv, LEAKY_SLOPE};

/// Shape settings shared by the encoder and decoder.
#[derive(Clone, Debug)]
pub struct GcnnShape {
    /// Channels per group element at each stage.
    pub channels: Vec<usize>,
    /// Odd kernel of the stage convolutions.
    pub kernel: usize,
    /// Columns L of V0.
    pub latent: usize,
    /// Input image side S (divisible by 2^stages).
    pub image_size: usize,
}

impl GcnnShape {
    /// Side of the map that the collapse convolution sees.
    pub fn final_size(&self) -> usize {
        self.image_size >> self.channels.len()
    }
}

/// Images `[B, 1, S, S]` to `V0 [B, N, L]`.
#[derive(Module, Debug)]
pub struct GcnnEncoder {
    lift: LiftingConv,
    stages: Vec<GroupConv>,
    collapse: GroupConv,
    n: usize,
    /// The same encoder packed for the CPU's direct convolution, set by
    /// [`Self::freeze`] on the CPU (not saved).
    #[module(skip)]
    packed: Option<Arc<FrozenEncoder>>,
    /// Side of the images, for packing.
    #[module(skip)]
    image_size: usize,
}

impl GcnnEncoder {
    /// Build the encoder for grid group `h`.
    pub fn new(h: &Group, shape: &GcnnShape, device: &Device) -> Self {
        let c = &shape.channels;
        let lift = LiftingConv::new(h, 1, c[0], shape.kernel, device);
        let stages = c
            .windows(2)
            .map(|w| GroupConv::new(h, w[0], w[1], shape.kernel, device))
            .collect();
        let collapse = GroupConv::strided(
            h,
            *c.last().unwrap(),
            shape.latent,
            shape.final_size(),
            device,
        );
        GcnnEncoder {
            lift,
            stages,
            collapse,
            n: h.order(),
            packed: None,
            image_size: shape.image_size,
        }
    }

    /// The same encoder with every filter bank expanded once, for inference;
    /// on the CPU also packed for the direct convolution.
    pub fn freeze(self) -> Self {
        let frozen = GcnnEncoder {
            lift: self.lift.freeze(),
            stages: self.stages.into_iter().map(GroupConv::freeze).collect(),
            collapse: self.collapse.freeze(),
            ..self
        };
        let packed = frozen.pack().map(Arc::new);
        GcnnEncoder { packed, ..frozen }
    }

    /// The packed CPU encoder, where the weights live on the CPU without
    /// autodiff and the shapes fit it.
    fn pack(&self) -> Option<FrozenEncoder> {
        let (stages, collapse) = self.plain();
        if !cpu_inference(&collapse.weight) {
            return None;
        }
        // Stages are "same" convolutions; the collapse tiles its input.
        let weights = |p: &PlainConv, fits: fn(usize, usize, usize) -> bool| {
            let [c_out, c_in, kernel, _] = p.weight.dims();
            fits(kernel, p.stride, p.padding).then(|| ConvWeights {
                weight: to_vec(&p.weight),
                bias: to_vec(&p.bias),
                c_in,
                c_out,
                kernel,
            })
        };
        let same = |k: usize, stride: usize, padding: usize| stride == 1 && padding == k / 2;
        let tiling = |k: usize, stride: usize, padding: usize| stride == k && padding == 0;
        let stages: Option<Vec<ConvWeights>> = stages.iter().map(|p| weights(p, same)).collect();
        let collapse = weights(&collapse, tiling)?;
        FrozenEncoder::new(&stages?, collapse, self.image_size, self.n, LEAKY_SLOPE)
    }

    /// Images in, rows over H out.
    pub const FIELDS: (Field, Field) = (Field::Image, Field::Rows);

    /// The first stage: lifting conv, activation, pooling (each stage maps
    /// images or feature maps over H to feature maps over H).
    ///
    /// # Shapes
    /// `[B, 1, S, S] -> [B, C0 * N, S/2, S/2]`
    pub fn lift_stage(&self, x: Tensor<4>) -> Tensor<4> {
        avg_pool2(self.lift.forward_activated(x))
    }

    /// Group-conv stages after the first.
    pub fn group_stages(&self) -> usize {
        self.stages.len()
    }

    /// Group-conv stage `k` (0-based, after the lifting stage): group conv,
    /// activation, pooling.
    ///
    /// # Shapes
    /// `[B, Ck * N, s, s] -> [B, Ck+1 * N, s/2, s/2]`
    pub fn group_stage(&self, k: usize, h: Tensor<4>) -> Tensor<4> {
        avg_pool2(self.stages[k].forward_activated(h))
    }

    /// The collapse conv: the last feature maps to one pixel per channel.
    ///
    /// # Shapes
    /// `[B, C * N, s, s] -> [B, L * N, 1, 1]`
    pub fn collapse(&self, h: Tensor<4>) -> Tensor<4> {
        self.collapse.forward(h)
    }

    /// The encoder as ordinary convolutions: the stages (each followed by
    /// the activation and 2x2 average pooling), then the collapse (alone).
    pub fn plain(&self) -> (Vec<PlainConv>, PlainConv) {
        let mut stages = vec![self.lift.plain()];
        stages.extend(self.stages.iter().map(GroupConv::plain));
        (stages, self.collapse.plain())
    }

    /// Order of the grid group H.
    pub fn order(&self) -> usize {
        self.n
    }

    /// # Shapes
    /// `[B, 1, S, S] -> [B, N, L]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<3> {
        if let Some(packed) = &self.packed {
            let [b, _, s, _] = x.dims();
            if s == packed.size() && cpu_inference(&x) {
                let device = x.device();
                let v = packed.forward(&to_vec(&x), b);
                let l = v.len() / (b * self.n).max(1);
                return Tensor::from_data(TensorData::new(v, [b, self.n, l]), &device);
            }
        }
        let mut h = self.lift_stage(x);
        for k in 0..self.stages.len() {
            h = self.group_stage(k, h);
        }
        let v = self.collapse(h);
        // # Shapes: [B, L*N, 1, 1] -> [B, L, N] -> [B, N, L]
        let [b, ln, _, _] = v.dims();
        v.reshape([b, ln / self.n, self.n]).swap_dims(1, 2)
    }
}

/// One decoder stage: upsample by 2 with a transposed group conv, then a
/// same-padded group conv.
#[derive(Module, Debug)]
struct DecoderStage {
    up: GroupConvTranspose,
    conv: GroupConv,
}

/// `V0 [B, N, L]` to images `[B, 1, S, S]`, equivariant:
/// `decoder(lambda(t) V0) = t . decoder(V0)`.
#[derive(Module, Debug)]
pub struct GcnnDecoder {
    expand: GroupConvTranspose,
    stages: Vec<DecoderStage>,
    n: usize,
}

impl GcnnDecoder {
    /// Rows over H in, images out.
    pub const FIELDS: (Field, Field) = (Field::Rows, Field::Image);

    /// Build the decoder mirroring [`GcnnEncoder::new`].
    pub fn new(h: &Group, shape: &GcnnShape, device: &Device) -> Self {
        let c = &shape.channels;
        let expand = GroupConvTranspose::new(
            h,
            shape.latent,
            *c.last().unwrap(),
            shape.final_size(),
            device,
        );
        let stages = (0..c.len())
            .rev()
            .map(|i| DecoderStage {
                up: GroupConvTranspose::new(h, c[i], c[i], 2, device),
                conv: GroupConv::new(
                    h,
                    c[i],
                    if i > 0 { c[i - 1] } else { 1 },
                    shape.kernel,
                    device,
                ),
            })
            .collect();
        GcnnDecoder {
            expand,
            stages,
            n: h.order(),
        }
    }

    /// The same decoder with every filter bank expanded once, for inference.
    pub fn freeze(self) -> Self {
        GcnnDecoder {
            expand: self.expand.freeze(),
            stages: self
                .stages
                .into_iter()
                .map(|s| DecoderStage {
                    up: s.up.freeze(),
                    conv: s.conv.freeze(),
                })
                .collect(),
            n: self.n,
        }
    }

    /// # Shapes
    /// `[B, N, L] -> [B, 1, S, S]`
    pub fn forward(&self, v: Tensor<3>) -> Tensor<4> {
        let [b, n, l] = v.dims();
        // # Shapes: [B, N, L] -> [B, L, N] -> [B, L*N, 1, 1]
        let mut h = self
            .expand
            .forward_activated(v.swap_dims(1, 2).reshape([b, l * n, 1, 1]));
        let last = self.stages.len() - 1;
        for (i, stage) in self.stages.iter().enumerate() {
            let up = stage.up.forward_activated(h);
            h = if i < last {
                stage.conv.forward_activated(up)
            } else {
                stage.conv.forward(up)
            };
        }
        // The last conv has one channel per group element; averaging over the
        // group gives an image that transforms as an image.
        // # Shapes: [B, 1*N, S, S] -> [B, 1, S, S]
        debug_assert_eq!(h.dims()[1], self.n);
        h.mean_dim(1)
    }
}
