//! Group convolutions on the pixel grid for a group H that acts exactly on
//! it (C4 = p4, D4 = p4m), done as ordinary conv2d with a filter bank
//! expanded from the base filter by an index table built once in `init`.
//!
//! Feature maps on H are stored as `[B, C * N, S, S]` with channel
//! `c * N + h` (N = |H|). Symbols in `# Shapes` lines: B batch, Co/Ci output
//! and input channels per group element, N = |H|, Nin = 1 (lifting) or N,
//! k kernel size, S spatial size.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::ops::{conv2d, conv_transpose2d, expand_filters};

use super::field::Field;
use super::filter_bank::filter_bank_indices;
use super::LEAKY_SLOPE;
use crate::group::Group;

/// A base filter and the index table that expands it into a filter bank.
#[derive(Module, Debug)]
pub struct FilterBank {
    /// Base filters `[Co, Ci, Nin * k * k]`.
    pub weight: Param<Tensor<3>>,
    /// One bias per output channel, shared over the group `[Co]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// Gather table over the last weight axis, `[N * Nin * k * k]`.
    index: Tensor<1, Int>,
    n: usize,
    n_in: usize,
    kernel: usize,
    /// The expanded bank, kept by [`FilterBank::freeze`] for inference (not
    /// saved; never set while training, where the weights change every step).
    #[module(skip)]
    frozen: Option<Tensor<4>>,
}

/// The shape and initialisation of a [`FilterBank`], named field by field
/// (as burn's `Conv2dConfig` does) so that no call site is a row of bare
/// numbers and bools.
struct BankConfig {
    /// The input is an image (a lifting convolution, Nin = 1), not maps over H.
    lifting: bool,
    /// Channels per group element in and out (`Ci`, `Co`).
    c_in: usize,
    c_out: usize,
    /// Kernel size k.
    kernel: usize,
    /// Whether the bank has a bias (one per output channel).
    bias: bool,
    /// The number of inputs each output sums over, for He initialisation
    /// (variance 2 / fan_in, right for ReLU networks).
    fan_in: usize,
}

impl FilterBank {
    fn new(group: &Group, config: BankConfig, device: &Device) -> Self {
        let BankConfig {
            lifting,
            c_in,
            c_out,
            kernel,
            bias,
            fan_in,
        } = config;
        let n = group.order();
        let n_in = if lifting { 1 } else { n };
        let init = Initializer::KaimingUniform {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: false,
        };
        let weight = init.init_with(
            [c_out, c_in, n_in * kernel * kernel],
            Some(fan_in),
            Some(c_out * kernel * kernel),
            device,
        );
        let bias = bias.then(|| Initializer::Zeros.init([c_out], device));
        let idx = filter_bank_indices(group, lifting, kernel);
        let len = idx.len();
        let index = Tensor::from_data(TensorData::new(idx, [len]), device);
        FilterBank {
            weight,
            bias,
            index,
            n,
            n_in,
            kernel,
            frozen: None,
        }
    }

    /// The same bank with its expansion done once and kept: for inference
    /// with fixed weights.
    fn freeze(self) -> Self {
        if self.frozen.is_some() {
            return self;
        }
        let frozen = Some(self.expanded_weight());
        FilterBank { frozen, ..self }
    }

    /// The expanded filter bank `[Co * N, Ci * Nin, k, k]`.
    fn expanded_weight(&self) -> Tensor<4> {
        if let Some(w) = &self.frozen {
            return w.clone();
        }
        let [c_out, c_in, _] = self.weight.dims();
        let (n, n_in, k) = (self.n, self.n_in, self.kernel);
        // # Shapes: [Co, Ci, Nin*k*k] -> [Co, N, Ci, Nin*k*k] -> [Co*N, Ci*Nin, k, k]
        expand_filters(self.weight.val(), self.index.clone(), n).reshape([
            c_out * n,
            c_in * n_in,
            k,
            k,
        ])
    }

    /// Bias repeated over the group `[Co * N]` (zeros for a bank without bias).
    pub fn expanded_bias(&self) -> Tensor<1> {
        match &self.bias {
            Some(b) => bias_over_group(b.val(), self.n),
            None => {
                let [c_out, _, _] = self.weight.dims();
                Tensor::zeros([c_out * self.n], &self.weight.device())
            }
        }
    }

    /// The bank applied as one convolution, with its bias and an optional
    /// fused leaky ReLU of this slope.
    ///
    /// # Shapes
    /// `[B, Ci * Nin, S, S] -> [B, Co * N, S', S']`
    fn conv(&self, x: Tensor<4>, geometry: (usize, usize), activation: Option<f32>) -> Tensor<4> {
        let (stride, padding) = geometry;
        let (w, b) = (self.expanded_weight(), self.expanded_bias());
        conv2d(x, w, b, stride, padding, activation)
    }

    /// The bank as an ordinary convolution with this (stride, padding).
    fn plain(&self, (stride, padding): (usize, usize)) -> PlainConv {
        PlainConv {
            weight: self.expanded_weight(),
            bias: self.expanded_bias(),
            stride,
            padding,
        }
    }
}

/// One bias per channel, shared by the channel's N group copies.
///
/// # Shapes
/// `[Co] -> [Co, 1] -> [Co, N] -> [Co*N]`
fn bias_over_group(bias: Tensor<1>, n: usize) -> Tensor<1> {
    let c = bias.dims()[0];
    bias.reshape([c, 1]).repeat_dim(1, n).reshape([c * n])
}

/// An ordinary convolution: what a group convolution is once its filter
/// bank is expanded (the form the ONNX export writes).
#[derive(Clone, Debug)]
pub struct PlainConv {
    /// Expanded filter bank `[Co * N, Ci * Nin, k, k]` (cross-correlation, as in conv2d).
    pub weight: Tensor<4>,
    /// Bias `[Co * N]`.
    pub bias: Tensor<1>,
    /// Stride of both axes.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

/// Lifting convolution: image channels to feature maps on H (`P4ConvZ2`).
#[derive(Module, Debug)]
pub struct LiftingConv {
    bank: FilterBank,
    padding: usize,
}

impl LiftingConv {
    /// Images in, feature maps over H out.
    pub const FIELDS: (Field, Field) = (Field::Image, Field::GroupMaps);

    /// A `k x k` lifting convolution with symmetric "same" padding (k odd).
    pub fn new(group: &Group, c_in: usize, c_out: usize, kernel: usize, device: &Device) -> Self {
        assert!(
            kernel % 2 == 1,
            "same-padded group convolutions need an odd kernel"
        );
        let bank = BankConfig {
            lifting: true,
            c_in,
            c_out,
            kernel,
            bias: true,
            fan_in: c_in * kernel * kernel,
        };
        LiftingConv {
            bank: FilterBank::new(group, bank, device),
            padding: kernel / 2,
        }
    }

    /// The same layer with its filter bank expanded once, for inference.
    pub fn freeze(self) -> Self {
        Self {
            bank: self.bank.freeze(),
            ..self
        }
    }

    /// # Shapes
    /// `[B, Ci, S, S] -> [B, Co * N, S, S]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.bank.conv(x, (1, self.padding), None)
    }

    /// `activation(self.forward(x))`, fused on the CPU.
    pub fn forward_activated(&self, x: Tensor<4>) -> Tensor<4> {
        self.bank.conv(x, (1, self.padding), Some(LEAKY_SLOPE))
    }

    /// The layer as an ordinary convolution.
    pub fn plain(&self) -> PlainConv {
        self.bank.plain((1, self.padding))
    }
}

/// Group convolution: feature maps on H to feature maps on H (`P4ConvP4`).
///
/// `stride == kernel` with no padding gives an exactly equivariant
/// downsampling on even sizes (the sampled grid is symmetric about the
/// centre); otherwise the kernel is odd and padded symmetrically.
#[derive(Module, Debug)]
pub struct GroupConv {
    bank: FilterBank,
    padding: usize,
    stride: usize,
}

impl GroupConv {
    /// Feature maps over H in and out.
    pub const FIELDS: (Field, Field) = (Field::GroupMaps, Field::GroupMaps);

    /// A `k x k` group convolution with "same" padding (k odd).
    pub fn new(group: &Group, c_in: usize, c_out: usize, kernel: usize, device: &Device) -> Self {
        assert!(
            kernel % 2 == 1,
            "same-padded group convolutions need an odd kernel"
        );
        Self::with_geometry(group, c_in, c_out, kernel, kernel / 2, 1, device)
    }

    /// A `k x k`, stride `k` group convolution without padding (downsampling).
    pub fn strided(
        group: &Group,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        device: &Device,
    ) -> Self {
        Self::with_geometry(group, c_in, c_out, kernel, 0, kernel, device)
    }

    fn with_geometry(
        group: &Group,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        padding: usize,
        stride: usize,
        device: &Device,
    ) -> Self {
        let bank = BankConfig {
            lifting: false,
            c_in,
            c_out,
            kernel,
            bias: true,
            fan_in: c_in * group.order() * kernel * kernel,
        };
        GroupConv {
            bank: FilterBank::new(group, bank, device),
            padding,
            stride,
        }
    }

    /// The same layer with its filter bank expanded once, for inference.
    pub fn freeze(self) -> Self {
        Self {
            bank: self.bank.freeze(),
            ..self
        }
    }

    /// # Shapes
    /// `[B, Ci * N, S, S] -> [B, Co * N, S', S']`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.bank.conv(x, (self.stride, self.padding), None)
    }

    /// `activation(self.forward(x))`, fused on the CPU.
    pub fn forward_activated(&self, x: Tensor<4>) -> Tensor<4> {
        self.bank
            .conv(x, (self.stride, self.padding), Some(LEAKY_SLOPE))
    }

    /// The layer as an ordinary convolution.
    pub fn plain(&self) -> PlainConv {
        self.bank.plain((self.stride, self.padding))
    }
}

/// Transposed group convolution with `stride == kernel` (upsampling by k),
/// the decoder's mirror of [`GroupConv::strided`]. It is the adjoint of an
/// equivariant convolution under permutation representations, hence
/// equivariant itself.
#[derive(Module, Debug)]
pub struct GroupConvTranspose {
    /// Filter bank of the adjoint convolution (`Co` to `Ci`).
    bank: FilterBank,
    bias: Param<Tensor<1>>,
    n: usize,
    stride: usize,
}

impl GroupConvTranspose {
    /// Feature maps over H in and out.
    pub const FIELDS: (Field, Field) = (Field::GroupMaps, Field::GroupMaps);

    /// Upsample by `kernel` with a `kernel x kernel` transposed group convolution.
    pub fn new(group: &Group, c_in: usize, c_out: usize, kernel: usize, device: &Device) -> Self {
        let bank = BankConfig {
            lifting: false,
            c_in: c_out,
            c_out: c_in,
            kernel,
            // the layer's own bias is over its output (the bank's input)
            bias: false,
            // With stride == kernel every output pixel sees one tap of each
            // input channel: the fan-in is Ci * N, not Ci * N * k * k.
            fan_in: c_in * group.order(),
        };
        GroupConvTranspose {
            bank: FilterBank::new(group, bank, device),
            bias: Initializer::Zeros.init([c_out], device),
            n: group.order(),
            stride: kernel,
        }
    }

    /// The same layer with its filter bank expanded once, for inference.
    pub fn freeze(self) -> Self {
        Self {
            bank: self.bank.freeze(),
            ..self
        }
    }

    /// # Shapes
    /// `[B, Ci * N, S, S] -> [B, Co * N, k S, k S]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.run(x, None)
    }

    /// `activation(self.forward(x))`, fused on the CPU.
    pub fn forward_activated(&self, x: Tensor<4>) -> Tensor<4> {
        self.run(x, Some(LEAKY_SLOPE))
    }

    fn run(&self, x: Tensor<4>, activation: Option<f32>) -> Tensor<4> {
        let bias = bias_over_group(self.bias.val(), self.n);
        let w = self.bank.expanded_weight();
        conv_transpose2d(x, w, bias, self.stride, 0, activation)
    }
}
