//! Per-layer convolution benchmark for training: the D4 model's
//! convolutions (batch 64, channels [4, 8, 16, 16] x |D4|, 32x32 images),
//! forward and backward, with eqae's CPU kernels against burn's stock
//! conv2d / conv_transpose2d on the flex backend, and against the practical
//! GEMM peak of the same cores.
//!
//!     RAYON_NUM_THREADS=2 cargo bench --bench conv [-- --eqae-only] [--layer NAME] [--out F.csv]
//!
//! 1. The peak: the gemm crate's own 2048 x 2048 x 2048 sgemm, best of 10.
//! 2. One row per layer: milliseconds of the forward pass and of the
//!    backward pass (median of 9 steps), and GFLOP/s of both together, with
//!    2 FLOPs per multiply-add of the products training needs: the forward
//!    one, the weight gradient, and the input gradient except for the lift,
//!    whose input is the image. The share of the peak is eqae's.

mod common;

use std::time::Instant;

use burn::tensor::module::{conv2d as burn_conv2d, conv_transpose2d as burn_conv_transpose2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Distribution, Tensor};
use common::{flag_value, gemm_peak};
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

impl Layer {
    /// Training needs the input gradient of every layer but the lift.
    fn input_grad(&self) -> bool {
        self.c_in > 1
    }

    /// GFLOP of the forward pass and of the backward pass at batch `batch`.
    fn gflop(&self, batch: usize) -> (f64, f64) {
        let out = if self.transposed {
            self.size * self.stride
        } else {
            (self.size + 2 * self.padding - self.kernel) / self.stride + 1
        };
        // Multiply-adds of the forward pass, counted on the narrow side.
        let (narrow_c, wide_c, narrow_s) = if self.transposed {
            (self.c_in, self.c_out, self.size)
        } else {
            (self.c_out, self.c_in, out)
        };
        let macs = batch * narrow_c * narrow_s * narrow_s * wide_c * self.kernel * self.kernel;
        let forward = 2.0 * macs as f64 / 1e9;
        let products = if self.input_grad() { 2.0 } else { 1.0 };
        (forward, products * forward)
    }
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

const BATCH: usize = 64;

/// Milliseconds of the forward and of the backward pass (medians of
/// `reps` steps after a warm-up step).
fn time(layer: &Layer, ours: bool, device: &Device, reps: usize) -> (f64, f64) {
    let normal = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<4>::random([BATCH, layer.c_in, layer.size, layer.size], normal, device);
    let w_shape = if layer.transposed {
        [layer.c_in, layer.c_out, layer.kernel, layer.kernel]
    } else {
        [layer.c_out, layer.c_in, layer.kernel, layer.kernel]
    };
    let w = Tensor::<4>::random(w_shape, normal, device);
    let b = Tensor::<1>::zeros([layer.c_out], device);
    let (s, p) = (layer.stride, layer.padding);
    let (mut forward, mut backward) = (Vec::new(), Vec::new());
    for _ in 0..reps + 1 {
        let x = if layer.input_grad() {
            x.clone().require_grad()
        } else {
            x.clone()
        };
        let (w, b) = (w.clone().require_grad(), b.clone().require_grad());
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
        // The flex backend is eager: the output is computed here, and
        // the gradients by `backward`.
        let middle = Instant::now();
        let grads = y.sum().backward();
        let end = Instant::now();
        assert!(w.grad(&grads).is_some());
        assert_eq!(x.grad(&grads).is_some(), layer.input_grad());
        forward.push((middle - start).as_secs_f64() * 1e3);
        backward.push((end - middle).as_secs_f64() * 1e3);
    }
    (median(&forward[1..]), median(&backward[1..]))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // As the binary does: large buffers stay in the heap between steps.
    eqae::device::keep_large_allocations();
    let eqae_only = std::env::args().any(|a| a == "--eqae-only");
    let out = flag_value("--out");
    let only = flag_value("--layer");
    let device = Device::flex().autodiff();
    let reps: usize = flag_value("--reps").map_or(9, |r| r.parse().expect("--reps N"));
    let peak = gemm_peak(2048);
    println!(
        "threads {}, practical GEMM peak (gemm sgemm 2048^3) {peak:.1} GFLOP/s",
        rayon::current_num_threads()
    );
    println!(
        "{:<26} {:>8} {:>8} {:>8} {:>9} {:>8} {:>10} {:>9}",
        "layer (batch 64)",
        "fwd ms",
        "bwd ms",
        "eqae ms",
        "GFLOP/s",
        "of peak",
        "burn ms",
        "speedup"
    );
    let mut csv =
        String::from("layer,forward_ms,backward_ms,gflops,of_peak,burn_ms,peak_gflops,threads\n");
    let (mut total_burn, mut total_ours) = (0.0, 0.0);
    for layer in layers() {
        if only
            .as_ref()
            .is_some_and(|name| !layer.name.contains(name.as_str()))
        {
            continue;
        }
        let (fwd, bwd) = layer.gflop(BATCH);
        let (f_ms, b_ms) = time(&layer, true, &device, reps);
        let ours = f_ms + b_ms;
        let rate = (fwd + bwd) / ours * 1e3;
        let burn = if eqae_only {
            f64::NAN
        } else {
            let (f, b) = time(&layer, false, &device, reps);
            f + b
        };
        total_ours += ours;
        total_burn += burn;
        let (burn_ms, speedup) = if eqae_only {
            ("-".to_string(), "-".to_string())
        } else {
            (format!("{burn:.2}"), format!("{:.1}x", burn / ours))
        };
        println!(
            "{:<26} {f_ms:>8.2} {b_ms:>8.2} {ours:>8.2} {rate:>9.1} {:>7.0}% {burn_ms:>10} {speedup:>9}",
            layer.name,
            100.0 * rate / peak,
        );
        csv += &format!(
            "{},{f_ms:.3},{b_ms:.3},{rate:.1},{:.3},{},{peak:.1},{}\n",
            layer.name,
            rate / peak,
            burn_ms.replace('-', ""),
            rayon::current_num_threads()
        );
    }
    let (burn_ms, speedup) = if eqae_only {
        ("-".to_string(), "-".to_string())
    } else {
        (
            format!("{total_burn:.2}"),
            format!("{:.1}x", total_burn / total_ours),
        )
    };
    println!(
        "{:<26} {:>8} {:>8} {total_ours:>8.2} {:>9} {:>8} {burn_ms:>10} {speedup:>9}",
        "total", "", "", "", ""
    );
    if let Some(path) = out {
        std::fs::write(&path, csv).expect("write the CSV");
        println!("wrote {path}");
    }
}
