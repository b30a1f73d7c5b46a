//! Analytic multiply-add counts of a forward pass (2 FLOPs per
//! multiply-add), for the benchmark's achieved GFLOP/s. Only convolutions,
//! matrix products and the branch rotations are counted; pointwise work is
//! left out. A training step is counted as 3 forward passes (forward,
//! and the two products of the backward).

use crate::config::{ModelConfig, ModelKind};

fn conv(c_out: usize, c_in: usize, k: usize, out_side: usize) -> f64 {
    2.0 * (c_out * c_in * k * k * out_side * out_side) as f64
}

/// FLOPs of one forward pass for one `size x size` image.
pub fn forward_flops(config: &ModelConfig, size: usize) -> f64 {
    let k = config.kernel;
    let stages = config.channels.len();
    let f = size >> stages;
    let (n, nb) = (config.grid_order(), config.branch_count());
    let maps = config.maps_per_channel();
    let c: Vec<usize> = config.channels.iter().map(|c| c * maps).collect();
    let mut net = conv(c[0], 1, k, size);
    for i in 1..stages {
        net += conv(c[i], c[i - 1], k, size >> i);
    }
    // decoder stages: upsample (k = 2) then conv, from the smallest map up
    for i in (0..stages).rev() {
        let side = size >> i;
        // stride-2 transposed conv: each output pixel gets one tap per input channel
        net += conv(c[i], c[i], 1, side);
        net += conv(if i > 0 { c[i - 1] } else { n }, c[i], k, side);
    }
    let code = match config.kind {
        ModelKind::Baseline => 2.0 * 2.0 * (c[stages - 1] * f * f * config.code) as f64,
        _ => {
            let l = config.latent * n;
            // collapse and its transposed mirror
            2.0 * conv(l, c[stages - 1], f, 1)
        }
    };
    let mut total = nb as f64 * (net + code);
    if nb > 1 {
        // rotations into and out of the branches
        total += 2.0 * 2.0 * (nb * size * size * size * size) as f64;
    }
    if config.kind != ModelKind::Baseline {
        let ng = config.group.group().order();
        let mut widths = vec![config.latent];
        widths.extend(&config.group_linear);
        for w in widths.windows(2) {
            total += 2.0 * 2.0 * (ng * w[0] * ng * w[1]) as f64;
        }
    }
    total
}

/// Rough upper estimate of the memory one image takes in a training step,
/// in bytes: every feature map the forward pass keeps for the backward
/// (convolution outputs, pooled maps, the largest im2col buffer), for each
/// branch, counted three times (the maps, their gradients, scratch). Used
/// to refuse a batch that cannot fit before allocating it.
pub fn training_bytes(config: &ModelConfig, size: usize) -> f64 {
    let k = config.kernel;
    let (per_channel, nb) = (config.maps_per_channel(), config.branch_count());
    let mut maps = (size * size) as f64; // the input
    let mut im2col = 0.0f64;
    let mut c_in = 1;
    for (i, &c) in config.channels.iter().enumerate() {
        let side = (size >> i) as f64;
        let c = (c * per_channel) as f64;
        // encoder: conv output and pooled map; decoder: upsampled and conv output
        maps += 2.0 * (c * side * side + c * side * side / 4.0);
        im2col = im2col.max(c_in.max(c as usize) as f64 * (k * k) as f64 * side * side);
        c_in = c as usize;
    }
    let gathered = if nb > 1 || config.smoothing > 0.0 {
        // the branches' input resampling gathers K taps per pixel
        (nb * size * size) as f64 * branch_taps(config)
    } else {
        0.0
    };
    3.0 * 4.0 * nb as f64 * (maps + im2col) + 3.0 * 4.0 * gathered
}

/// Taps per pixel of the branches' input resampling: 4 bilinear ones, or
/// a smoothing Gaussian's, which reach 3 widths (an upper estimate of the
/// lattice points in that disk).
fn branch_taps(config: &ModelConfig) -> f64 {
    if config.smoothing > 0.0 {
        (std::f64::consts::PI * (3.0 * config.smoothing + 1.5).powi(2)).ceil()
    } else {
        4.0
    }
}

/// Memory a model holds whatever its batch, in bytes: the branches'
/// resampling tables (an index and a weight per tap, for the input and the
/// output, and their copies while they are built).
pub fn model_bytes(config: &ModelConfig, size: usize) -> f64 {
    let nb = config.branch_count();
    if nb == 1 && config.smoothing == 0.0 {
        return 0.0;
    }
    let per_table = (nb * size * size) as f64 * 12.0;
    2.0 * per_table * (branch_taps(config) + 4.0)
}

/// Refuse, before allocating, `batch` images of `size` through `config`'s
/// training step (`share` of it: 1 for training, less for inference)
/// where the machine has not the memory; `what` names the settings.
pub fn ensure_step_fits(
    config: &ModelConfig,
    size: usize,
    batch: f64,
    share: f64,
    what: &str,
) -> anyhow::Result<()> {
    crate::device::ensure_fits(
        training_bytes(config, size) * batch * share + model_bytes(config, size),
        &format!(
            "{what} with data.image_size = {size} and model.group = {}",
            config.group.name()
        ),
    )
}
