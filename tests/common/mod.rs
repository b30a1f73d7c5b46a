//! Helpers shared by the integration tests.
#![allow(dead_code)]

use burn::tensor::{Device, Tensor, TensorData};

/// The device the tests run on: burn's flex CPU backend, or the wgpu
/// backend when built with `--features wgpu` and `EQAE_TEST_DEVICE=wgpu`.
pub fn device() -> Device {
    match std::env::var("EQAE_TEST_DEVICE").as_deref() {
        Ok("wgpu") => {
            eqae::device::select("wgpu").expect("EQAE_TEST_DEVICE=wgpu needs --features wgpu")
        }
        _ => Device::flex(),
    }
}

/// Smooth, asymmetric images that vanish outside a centred disk, so that
/// rotations by any angle keep them inside the canvas (`[B, 1, S, S]`).
pub fn blob_images(batch: usize, size: usize, seed: u64) -> Tensor<4> {
    let mut data = Vec::with_capacity(batch * size * size);
    let c = (size as f32 - 1.0) / 2.0;
    for b in 0..batch {
        let phase = seed as f32 * 0.77 + b as f32 * 1.3;
        let (cx1, cy1) = (3.0 * phase.cos(), 4.0 * phase.sin());
        let (cx2, cy2) = (-5.0 * (phase * 0.5).sin(), 2.0 + phase.cos());
        for i in 0..size {
            for j in 0..size {
                let (u, v) = (j as f32 - c, c - i as f32);
                let r2 = u * u + v * v;
                let window = if r2 < (0.4 * size as f32).powi(2) {
                    1.0
                } else {
                    0.0
                };
                let g1 = (-((u - cx1).powi(2) + (v - cy1).powi(2)) / 12.0).exp();
                let g2 = 0.6 * (-((u - cx2).powi(2) + (v - cy2).powi(2)) / 6.0).exp();
                let edge = (1.0 - r2 / (0.4 * size as f32).powi(2)).max(0.0);
                data.push(window * edge * (g1 + g2));
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [batch, 1, size, size]), &device())
}
