//! Autoencoders: the equivariant ones for each group (with or without
//! equivariant attention) and the plain convolutional baseline.

pub mod baseline;
pub mod branches;
pub mod check;
pub mod equivariant;
pub mod flops;
pub mod gcnn;

use burn::module::Module;
use burn::tensor::{Device, Tensor};

pub use baseline::BaselineAutoencoder;
pub use equivariant::{Encoding, EquivariantAutoencoder};

use crate::config::{ModelConfig, ModelKind};

/// Any of the project's autoencoders.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one model per program: size does not matter
pub enum Autoencoder {
    /// Plain convolutional autoencoder.
    Baseline(BaselineAutoencoder),
    /// Equivariant autoencoder (with or without attention).
    Equivariant(EquivariantAutoencoder),
}

/// One forward pass: reconstruction, the attention weights when there are
/// any, and the features the loss may need.
pub struct Forward {
    /// Reconstructed images `[B, 1, S, S]`.
    pub reconstruction: Tensor<4>,
    /// Attention weights `[B, N]` (attention models only).
    pub weights: Option<Tensor<2>>,
}

impl Autoencoder {
    /// Build the model a config describes.
    pub fn new(config: &ModelConfig, image_size: usize, device: &Device) -> Self {
        match config.kind {
            ModelKind::Baseline => {
                Autoencoder::Baseline(BaselineAutoencoder::new(config, image_size, device))
            }
            ModelKind::Equivariant | ModelKind::Attention => {
                Autoencoder::Equivariant(EquivariantAutoencoder::new(config, image_size, device))
            }
        }
    }

    /// Reconstruct a batch.
    pub fn forward(&self, x: Tensor<4>) -> Forward {
        match self {
            Autoencoder::Baseline(m) => Forward {
                reconstruction: m.forward(x).0,
                weights: None,
            },
            Autoencoder::Equivariant(m) => {
                let (reconstruction, enc) = m.forward(x);
                Forward {
                    reconstruction,
                    weights: enc.weights,
                }
            }
        }
    }

    /// The same model prepared for inference with fixed weights: no
    /// autodiff, and every filter bank expanded once instead of per call
    /// (calling it again on the result expands nothing).
    pub fn for_inference(&self) -> Self {
        match self.valid() {
            Autoencoder::Equivariant(m) => Autoencoder::Equivariant(m.freeze()),
            baseline => baseline,
        }
    }

    /// Number of trainable scalars.
    pub fn parameter_count(&self) -> usize {
        self.num_params()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GroupKind;
    use burn::tensor::Distribution;

    /// Freezing changes when the filter banks are expanded (and, on the
    /// CPU, the encoder's kernels), not the function.
    #[test]
    fn a_model_frozen_for_inference_computes_the_same() {
        let device = Device::flex();
        for (kind, group) in [
            (ModelKind::Equivariant, GroupKind::D12),
            (ModelKind::Attention, GroupKind::C4),
            (ModelKind::Baseline, GroupKind::D4),
        ] {
            let config = ModelConfig {
                kind,
                group,
                channels: vec![2, 3],
                latent: 4,
                group_linear: vec![5],
                code: 6,
                ..ModelConfig::default()
            };
            let model = Autoencoder::new(&config, 16, &device);
            let x = Tensor::<4>::random([3, 1, 16, 16], Distribution::Uniform(0.0, 1.0), &device);
            let plain = model.valid().forward(x.clone()).reconstruction;
            let frozen = model.for_inference();
            let twice = frozen.for_inference().forward(x.clone()).reconstruction;
            let frozen = frozen.forward(x).reconstruction;
            assert_eq!(
                twice.to_data(),
                frozen.to_data(),
                "{kind:?} {group:?} twice"
            );
            // The packed CPU encoder sums in another order: equal to rounding.
            let err: f32 = (plain - frozen).abs().max().into_scalar();
            assert!(err < 1e-5, "{kind:?} {group:?}: {err}");
        }
    }
}
