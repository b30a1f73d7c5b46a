//! Whole models on our CPU kernels against the same models on the GPU
//! path's operations (burn's stock operations, the decoders' upsampling as
//! one matrix product), on the CPU and on wgpu: the same reconstruction
//! loss and the same gradient for every parameter, for the baseline and for
//! every group.
//!
//! The input is dense noise, not the blob images of the other suites: their
//! exactly-black backgrounds and faint edges give pre-activations within
//! rounding of zero, whose sign (and so the leaky ReLU's slope, 1 or 0.1)
//! depends on the order of summation. On the D12 model that moved some
//! gradients by 1% between two correct implementations; on dense inputs both
//! agree to about 1e-6 of each gradient's largest entry.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Gradients, Tensor};
use eqae::config::{ModelConfig, ModelKind};
use eqae::group::GroupKind;
use eqae::model::Autoencoder;
use eqae::nn::ops::with_stock_ops;
use eqae::nn::transform::to_vec;
use eqae::train::objective;

/// Every parameter's gradient, in the module's visiting order.
struct CollectGradients<'a> {
    grads: &'a Gradients,
    out: Vec<Vec<f32>>,
}

impl ModuleVisitor for CollectGradients<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            self.out.push(to_vec(&g));
        }
    }
}

/// Loss and parameter gradients of one forward and backward pass.
fn loss_and_gradients(model: &Autoencoder, x: &Tensor<4>) -> (f32, Vec<Vec<f32>>) {
    // the training objective (no attention here: plain reconstruction MSE)
    let loss = objective(model, x.clone(), 0.0).loss;
    // read before the backward pass, which may reuse the loss's buffer on a GPU
    let value = loss.clone().into_scalar::<f32>();
    let grads = loss.backward();
    let mut collect = CollectGradients {
        grads: &grads,
        out: Vec::new(),
    };
    model.visit(&mut collect);
    (value, collect.out)
}

/// A small model of `kind` and `group` for whole-step comparisons.
fn small_config(kind: ModelKind, group: GroupKind) -> ModelConfig {
    ModelConfig {
        kind,
        group,
        channels: vec![2, 3, 4],
        latent: 5,
        group_linear: vec![6],
        code: 7,
        ..ModelConfig::default()
    }
}

/// The same loss (to 1e-5 of it) and every parameter's gradient within
/// 5e-4 of the reference gradient's largest entry, plus `floor` (for
/// parameters whose gradient is itself rounding noise).
fn assert_same_step(
    case: &str,
    reference: &(f32, Vec<Vec<f32>>),
    other: &(f32, Vec<Vec<f32>>),
    floor: f32,
) {
    let ((loss, grads), (other_loss, other_grads)) = (reference, other);
    assert!(
        (loss - other_loss).abs() <= 1e-5 * loss.abs(),
        "{case}: loss {loss} against {other_loss}"
    );
    assert_eq!(grads.len(), other_grads.len(), "{case}");
    assert!(grads.len() > 5, "{case}: only {} gradients", grads.len());
    for (i, (a, b)) in grads.iter().zip(other_grads).enumerate() {
        // Relative to the largest entry of the parameter's gradient:
        // float32 sums over a batch of 32x32 maps in another order
        // reach a few 1e-4 of it (C12 reaches 1.7e-4); a wrong kernel
        // is off by the gradient's own size.
        let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
        let err = a
            .iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            err <= 5e-4 * scale + floor,
            "{case}: parameter {i}: gradient differs by {err} (scale {scale})"
        );
    }
}

#[test]
fn our_kernels_match_burn_in_loss_and_every_parameter_gradient() {
    let device = Device::flex().autodiff();
    device.seed(3);
    let x = Tensor::<4>::random([6, 1, 32, 32], Distribution::Uniform(0.1, 1.0), &device);
    let cases = [
        (ModelKind::Baseline, GroupKind::D4),
        (ModelKind::Equivariant, GroupKind::C4),
        (ModelKind::Equivariant, GroupKind::D4),
        (ModelKind::Equivariant, GroupKind::C12),
        (ModelKind::Equivariant, GroupKind::D12),
    ];
    for (kind, group) in cases {
        let config = small_config(kind, group);
        let model = Autoencoder::new(&config, 32, &device);
        let ours = loss_and_gradients(&model, &x);
        let stock = with_stock_ops(|| loss_and_gradients(&model, &x));
        assert_same_step(&format!("{kind:?} {group:?}"), &stock, &ours, 0.0);
    }
}

/// The GPU path (burn's stock operations on wgpu, with the decoders'
/// upsampling as a matrix product) against our CPU kernels: the same loss
/// and every parameter's gradient, for the baseline and every group. Runs
/// in a build with `--features wgpu` (CI: on Mesa's lavapipe).
#[cfg(feature = "wgpu")]
#[test]
fn the_gpu_path_matches_the_cpu_kernels_in_loss_and_every_gradient() {
    let cpu = Device::flex().autodiff();
    let gpu = eqae::device::select(eqae::device::Backend::Wgpu)
        .unwrap()
        .autodiff();
    cpu.seed(5);
    let x = Tensor::<4>::random([4, 1, 32, 32], Distribution::Uniform(0.1, 1.0), &cpu);
    let x_gpu = Tensor::<4>::from_data(x.to_data(), &gpu);
    for (kind, group) in [
        (ModelKind::Baseline, GroupKind::D4),
        (ModelKind::Equivariant, GroupKind::C4),
        (ModelKind::Equivariant, GroupKind::D4),
        (ModelKind::Equivariant, GroupKind::C12),
        (ModelKind::Attention, GroupKind::D12),
    ] {
        let config = small_config(kind, group);
        let model = Autoencoder::new(&config, 32, &cpu);
        let cpu_step = loss_and_gradients(&model, &x);
        let gpu_step = loss_and_gradients(&model.clone().fork(&gpu), &x_gpu);
        // (an absolute floor: some gradients are rounding noise, e.g. 1e-10
        // for an attention bias)
        assert_same_step(
            &format!("{kind:?} {group:?} on wgpu"),
            &cpu_step,
            &gpu_step,
            1e-8,
        );
    }
}
