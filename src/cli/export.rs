//! `eqae export`: a trained run's feature extractor as an ONNX file (see
//! [`crate::export`]), and optionally its weights as safetensors.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::HeadArg;
use crate::export::{export_run, ExportRequest};

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
    export_run(&ExportRequest {
        run: args.run,
        head: args.head.map(Into::into),
        out: args.out,
        safetensors: args.safetensors,
    })
}
