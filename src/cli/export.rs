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
    crate::atomic::check_output(&args.out, "onnx", "--out")?;
    let tensors = args.out.with_extension("safetensors");
    if args.safetensors {
        crate::atomic::check_writable(&tensors, "--safetensors")?;
    }
    // export is fixed linear algebra on the host: always the CPU
    let device = crate::device::select("cpu")?;
    let TrainedHead {
        run,
        config,
        model,
        reader,
    } = TrainedHead::load(&args.run, args.head, &device)?;
    let head = reader.head();
    let about = Description {
        run: config.name.clone(),
        weights_sha256: WeightsInfo::read(&run.model())?.and_then(|i| i.sha256),
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
    crate::atomic::write(&args.out, &bytes)?;
    println!(
        "wrote {} ({} head, {:.1} MiB): input images float32 [N, 1, {s}, {s}], output features float32 [N, {features}]",
        args.out.display(),
        head.name(),
        bytes.len() as f64 / (1 << 20) as f64,
        s = config.data.image_size,
    );
    if args.safetensors {
        let meta = [
            ("run", config.name.clone()),
            ("model", format!("{:?}", config.model.kind).to_lowercase()),
            ("eqae_version", env!("CARGO_PKG_VERSION").to_string()),
        ];
        let bytes = export::safetensors::to_bytes(&model, &meta)?;
        crate::atomic::write(&tensors, &bytes)?;
        println!(
            "wrote {} ({:.1} MiB, the trained weights; names explained in its metadata)",
            tensors.display(),
            bytes.len() as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}
