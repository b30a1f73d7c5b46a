//! Per-layer convolution benchmark: the D4 model's convolutions (batch 64,
//! channels [4, 8, 16, 16] x |D4|, 32x32 images), forward + backward, with
//! eqae's CPU kernels against burn's stock conv2d / conv_transpose2d on the
//! flex backend.
//!
//!     cargo bench --bench conv
//!
//! Prints one row per layer: milliseconds and GFLOP/s of each (2 FLOPs per
//! multiply-add, forward plus the two backward products = 3x the forward).

use std::time::Instant;

use burn::tensor::module::{conv2d as burn_conv2d, conv_transpose2d as burn_conv_transpose2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Distribution, Tensor};
use eqae::nn::ops::{conv2d, conv_transpose2d};

struct Layer {
    name: &'static str,
    c_in: usize,
    c_out: usize,
    size: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    transposed: bool,
}

fn layers() -> Vec<Layer> {
    let l = |name, c_in, c_out, size, kernel, stride, padding, transposed| Layer {
        name,
        c_in,
        c_out,
        size,
        kernel,
        stride,
        padding,
        transposed,
    };
    vec![
        l("enc lift 1->32 @32", 1, 32, 32, 3, 1, 1, false),
        l("enc conv 32->64 @16", 32, 64, 16, 3, 1, 1, false),
        l("enc conv 64->128 @8", 64, 128, 8, 3, 1, 1, false),
        l("enc conv 128->128 @4", 128, 128, 4, 3, 1, 1, false),
        l("enc collapse 128->256 @2", 128, 256, 2, 2, 2, 0, false),
        l("dec up 128->128 @4", 128, 128, 4, 2, 2, 0, true),
        l("dec conv 128->64 @8", 128, 64, 8, 3, 1, 1, false),
        l("dec up 32->32 @16", 32, 32, 16, 2, 2, 0, true),
        l("dec conv 32->8 @32", 32, 8, 32, 3, 1, 1, false),
    ]
}

/// Milliseconds per forward + backward (median of `reps`).
fn time(layer: &Layer, ours: bool, device: &Device, reps: usize) -> f64 {
    let batch = 64;
    let normal = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<4>::random([batch, layer.c_in, layer.size, layer.size], normal, device);
    let w_shape = if layer.transposed {
        [layer.c_in, layer.c_out, layer.kernel, layer.kernel]
    } else {
        [layer.c_out, layer.c_in, layer.kernel, layer.kernel]
    };
    let w = Tensor::<4>::random(w_shape, normal, device);
    let b = Tensor::<1>::zeros([layer.c_out], device);
    let (s, p) = (layer.stride, layer.padding);
    let mut times = Vec::new();
    for _ in 0..reps + 1 {
        let (x, w, b) = (
            x.clone().require_grad(),
            w.clone().require_grad(),
            b.clone().require_grad(),
        );
        let start = Instant::now();
        let y = match (ours, layer.transposed) {
            (true, false) => conv2d(x.clone(), w.clone(), b, s, p, None),
            (true, true) => conv_transpose2d(x.clone(), w.clone(), b, s, p, None),
            (false, false) => burn_conv2d(
                x.clone(),
                w.clone(),
                Some(b),
                ConvOptions::new([s; 2], [p; 2], [1, 1], 1),
            ),
            (false, true) => burn_conv_transpose2d(
                x.clone(),
                w.clone(),
                Some(b),
                ConvTransposeOptions::new([s; 2], [p; 2], [0, 0], [1, 1], 1),
            ),
        };
        let grads = y.sum().backward();
        let _ = (x.grad(&grads).unwrap(), w.grad(&grads).unwrap());
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.remove(0); // warm-up
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    times[times.len() / 2]
}

fn main() {
    let device = Device::flex().autodiff();
    let reps = 5;
    println!(
        "{:<26} {:>10} {:>9} {:>10} {:>9} {:>8}",
        "layer (fwd+bwd, batch 64)", "burn ms", "GFLOP/s", "eqae ms", "GFLOP/s", "speedup"
    );
    let (mut total_burn, mut total_ours) = (0.0, 0.0);
    for layer in layers() {
        let out = if layer.transposed {
            layer.size * layer.stride
        } else {
            (layer.size + 2 * layer.padding - layer.kernel) / layer.stride + 1
        };
        // Multiply-adds of the forward pass, counted on the narrow side.
        let (narrow_c, wide_c, narrow_s) = if layer.transposed {
            (layer.c_in, layer.c_out, layer.size)
        } else {
            (layer.c_out, layer.c_in, out)
        };
        let macs = 64 * narrow_c * narrow_s * narrow_s * wide_c * layer.kernel * layer.kernel;
        let gflop = 3.0 * 2.0 * macs as f64 / 1e9;
        let burn_ms = time(&layer, false, &device, reps);
        let ours_ms = time(&layer, true, &device, reps);
        total_burn += burn_ms;
        total_ours += ours_ms;
        println!(
            "{:<26} {:>10.2} {:>9.1} {:>10.2} {:>9.1} {:>7.1}x",
            layer.name,
            burn_ms,
            gflop / burn_ms * 1e3,
            ours_ms,
            gflop / ours_ms * 1e3,
            burn_ms / ours_ms
        );
    }
    println!(
        "{:<26} {:>10.2} {:>9} {:>10.2} {:>9} {:>7.1}x",
        "total",
        total_burn,
        "",
        total_ours,
        "",
        total_burn / total_ours
    );
}
