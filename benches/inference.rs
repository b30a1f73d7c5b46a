//! The frozen encoder's CPU kernels against the practical GEMM peak of the
//! same cores.
//!
//!     RAYON_NUM_THREADS=2 cargo bench --bench inference [-- --out docs/results/inference_kernels.csv]
//!
//! 1. The peak: the gemm crate's own 2048 x 2048 x 2048 sgemm, best of 10,
//!    on all of rayon's threads.
//! 2. Every 3x3 convolution of the D4 grid encoder (channels [4, 8, 16, 16]
//!    per element of D4, 32x32 images; the D12 model runs the same encoder
//!    on three turned copies of each image) with its fused bias, leaky ReLU
//!    and pooling, over 2,048 images split between the threads, on the
//!    blocked direct kernel and in Winograd form: GFLOP/s of the direct
//!    convolution's multiply-adds (2 per multiply-add, whichever kernel
//!    computes them, so Winograd can pass the peak; the border columns the
//!    direct kernel also computes are not counted) and the share of the
//!    peak.
//! 3. The whole D4 grid encoder (lift, stages, collapse) with either
//!    kernel for the stages after the first, images/s.
//! 4. What `eqae embed` runs per batch on the shipped D4 and D12 Gram
//!    models (encoder, Gram head, tensors in and out), batches of 256,
//!    images/s: the network's own rate, without files.
//!
//! Prints a table and writes it as CSV with `--out`.

mod common;

use common::{best_of, flag_value, gemm_peak, values};
use eqae::eval::features::{Head, TrainedHead, BATCH};
use eqae::nn::cpu::direct::{BlockedMaps, Isa, PackedConv};
use eqae::nn::cpu::frozen::{ConvWeights, FrozenEncoder, StageKernel};
use eqae::nn::cpu::winograd::{WinogradConv, WinogradScratch};
use eqae::nn::transform::to_vec;
use eqae::train::images_tensor;
use rayon::prelude::*;

/// GFLOP/s of one stage (conv + bias + leaky ReLU + pool) over `images`
/// images, parallel over images, counted as the direct convolution's
/// multiply-adds.
fn stage_rate(c_in: usize, c_out: usize, size: usize, images: usize, kernel: StageKernel) -> f64 {
    let (w, b) = (values(c_out * c_in * 9, 3), values(c_out, 4));
    let isa = Isa::detect();
    let direct = PackedConv::new(&w, &b, c_in, c_out, 3, isa);
    let winograd = WinogradConv::new(&w, &b, c_in, c_out, isa);
    let shape = direct.input_shape(size, size);
    let next = BlockedMaps {
        channels: c_out,
        height: size / 2,
        width: size / 2,
        border: 1,
    };
    let input = values(shape.alloc_len(), 5);
    let group = WinogradConv::images_per_group(size, size);
    let seconds = best_of(3, || match kernel {
        StageKernel::Direct => (0..images).into_par_iter().for_each_init(
            || {
                (
                    vec![0.0f32; direct.scratch_len(&shape)],
                    vec![0.0f32; next.alloc_len()],
                )
            },
            |(scratch, out), _| {
                direct.conv_image(&input, &shape, scratch);
                direct.finish_pooled(scratch, &shape, 0.1, out, &next);
            },
        ),
        StageKernel::Auto => (0..images / group).into_par_iter().for_each_init(
            || {
                (
                    WinogradScratch::default(),
                    vec![vec![0.0f32; next.alloc_len()]; group],
                )
            },
            |(scratch, outs), _| {
                let ins = vec![input.as_slice(); group];
                let mut outs: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
                winograd.run(&ins, &shape, &mut outs, &next, 0.1, scratch);
            },
        ),
    });
    let done = match kernel {
        StageKernel::Direct => images,
        StageKernel::Auto => images / group * group,
    };
    2.0 * (c_out * c_in * 9 * size * size * done) as f64 / seconds / 1e9
}

fn main() {
    // As the binary does: large buffers stay in the heap between steps.
    eqae::device::keep_large_allocations();
    let out = flag_value("--out");
    let threads = rayon::current_num_threads();
    let peak = gemm_peak(2048);
    let mut rows = vec![format!("gemm sgemm 2048^3,,,,{peak:.1},1.00")];
    println!("threads {threads}, instruction set {:?}", Isa::detect());
    println!("{:<34} {:>9} {:>8}", "operation", "GFLOP/s", "of peak");
    println!(
        "{:<34} {:>9.1} {:>8}",
        "gemm sgemm 2048^3 (the peak)", peak, "100%"
    );
    for (i, w) in [1, 32, 64, 128, 128].windows(2).enumerate() {
        let size = 32 >> i;
        let kernels: &[(StageKernel, &str)] = if w[0] >= 16 {
            &[
                (StageKernel::Direct, "direct"),
                (StageKernel::Auto, "winograd"),
            ]
        } else {
            &[(StageKernel::Direct, "direct")]
        };
        for &(kernel, label) in kernels {
            let rate = stage_rate(w[0], w[1], size, 2048, kernel);
            let name = format!("stage {}->{} @{size} {label}", w[0], w[1]);
            println!("{name:<34} {rate:>9.1} {:>7.0}%", 100.0 * rate / peak);
            rows.push(format!(
                "{name},{},{},{size},{rate:.1},{:.3}",
                w[0],
                w[1],
                rate / peak
            ));
        }
    }
    // The whole D4 grid encoder.
    let conv = |c_in: usize, c_out: usize, kernel: usize| ConvWeights {
        weight: values(c_out * c_in * kernel * kernel, (c_in * 31 + c_out) as u64),
        bias: values(c_out, c_out as u64),
        c_in,
        c_out,
        kernel,
    };
    let stages = [
        conv(1, 32, 3),
        conv(32, 64, 3),
        conv(64, 128, 3),
        conv(128, 128, 3),
    ];
    let images = 4096;
    let x = values(images * 32 * 32, 9);
    let flops = 2.0
        * (32 * 9 * 1024 + 64 * 32 * 9 * 256 + 128 * 64 * 9 * 64 + 128 * 128 * 9 * 16 + 256 * 512)
            as f64;
    for (kernel, label) in [
        (StageKernel::Direct, "direct"),
        (StageKernel::Auto, "winograd"),
    ] {
        let encoder = FrozenEncoder::with_kernel(&stages, conv(128, 256, 2), (32, 8, 0.1), kernel)
            .expect("D4 shapes");
        let seconds = best_of(3, || drop(encoder.forward(&x, images)));
        let rate = images as f64 / seconds;
        let name = format!("d4 grid encoder, stages {label}");
        println!(
            "{name}: {rate:.0} images/s, {:.1} GFLOP/s",
            rate * flops / 1e9
        );
        rows.push(format!(
            "{name} ({rate:.0} images/s),1,256,32,{:.1},{:.3}",
            rate * flops / 1e9,
            rate * flops / 1e9 / peak
        ));
    }
    // What `eqae embed` runs per batch: the shipped models' Gram features
    // (frozen encoder, Gram head, burn tensors in and out), 256 images at a
    // time. The rate a whole `embed` command is measured against.
    for model in ["mnist_d4_gram", "mnist_d12_gram"] {
        let rate = shipped_feature_rate(model, 4096);
        let name = format!("{model} Gram features, batches of 256");
        println!("{name}: {rate:.0} images/s");
        rows.push(format!("{name} ({rate:.0} images/s),1,,32,,"));
    }
    if let Some(path) = out {
        let mut csv = String::from("operation,c_in,c_out,size,gflops,of_peak\n");
        for r in rows {
            csv += &r;
            csv.push('\n');
        }
        csv += &format!("# threads {threads}, {:?}\n", Isa::detect());
        std::fs::write(&path, csv).expect("write the CSV");
        println!("wrote {path}");
    }
}

/// Images/s of the shipped model `models/<model>`'s Gram features over
/// `images` images in batches of [`BATCH`], best of 3.
fn shipped_feature_rate(model: &str, images: usize) -> f64 {
    let device = burn::tensor::Device::flex();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(model);
    let trained = TrainedHead::load(&dir, Some(Head::Gram), &device).expect("a shipped model");
    let reader = trained.reader;
    let size = reader.size();
    let pixels = values(images * size * size, 11);
    let seconds = best_of(3, || {
        for batch in pixels.chunks(BATCH * size * size) {
            let x = images_tensor(batch.to_vec(), size, &device);
            drop(to_vec(&reader.read(x).expect("features")));
        }
    });
    images as f64 / seconds
}
