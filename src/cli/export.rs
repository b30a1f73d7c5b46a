//! `eqae export`: a trained run's feature extractor as an ONNX file (see
//! [`crate::export`]), and optionally its weights as safetensors.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::{HeadArg, TrainedHead};
use crate::export::{self, Description};
use crate::train::run_dir::WeightsInfo;

/// Arguments of `eqae export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Trained run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// Which features the file computes (default: the model's first head,
    /// as for `eqae embed`).
    #[arg(long, value_enum)]
    pub head: Option<HeadArg>,
    /// Output `.onnx` file.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the run's trained weights as `<out>.safetensors` (same
    /// name, that extension), for fine-tuning in another framework.
    #[arg(long)]
    pub safetensors: bool,
}

/// Run `eqae export`.
pub fn run(args: ExportArgs) -> Result<()> {
    // export is fixed linear algebra on the host: always the CPU
    let device = crate::device::select(crate::device::Backend::Cpu)?;
    let TrainedHead {
        run,
        config,
        model,
        reader,
    } = TrainedHead::load(&args.run, args.head, &device)?;
    crate::atomic::check_output(&args.out, "onnx", "--out")?;
    let tensors = args.out.with_extension("safetensors");
    if args.safetensors {
        crate::atomic::check_writable(&tensors, "--safetensors")?;
    }
    // what a killed export left
    crate::atomic::remove_stale(&args.out);
    crate::atomic::remove_stale(&tensors);
    let head = reader.head();
    let weights_sha256 = WeightsInfo::read(&run.model())?.and_then(|i| i.sha256);
    let about = Description {
        run: config.name.clone(),
        weights_sha256: weights_sha256.clone(),
    };
    let onnx = export::onnx_model(&reader, &config, &about)?;
    let features = onnx.graph.output[0]
        .type_
        .tensor_type()
        .shape
        .dim
        .last()
        .map(|d| d.dim_value())
        .unwrap_or(0);
    let bytes = export::to_bytes(&onnx)?;
    let weights = if args.safetensors {
        let meta = [
            ("run", config.name.clone()),
            ("model", config.model.kind.name().to_string()),
            ("eqae_version", env!("CARGO_PKG_VERSION").to_string()),
            ("weights_sha256", weights_sha256.unwrap_or_default()),
        ];
        Some(export::safetensors::to_bytes(&model, &meta)?)
    } else {
        None
    };
    // the pair is published together: never a new model beside old weights
    let mut files: Vec<(&std::path::Path, &[u8])> = vec![(&args.out, &bytes)];
    if let Some(w) = &weights {
        files.push((&tensors, w));
    }
    crate::atomic::write_together(&files)?;
    println!(
        "wrote {} ({} head, {:.1} MiB): input images float32 [N, 1, {s}, {s}], output features float32 [N, {features}]",
        args.out.display(),
        head.name(),
        bytes.len() as f64 / (1 << 20) as f64,
        s = config.data.image_size,
    );
    if let Some(w) = &weights {
        println!(
            "wrote {} ({:.1} MiB, the trained weights; names explained in its metadata)",
            tensors.display(),
            w.len() as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}
