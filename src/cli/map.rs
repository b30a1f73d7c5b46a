//! `eqae map`: a picture of a whole embedded collection, as a page to
//! explore and a PNG (see [`crate::eval::map`]).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::eval::map::{map, MapRequest};

/// Arguments of `eqae map`.
#[derive(Args, Debug)]
pub struct MapArgs {
    /// The collection: an output of `eqae embed` (its `.npy`, with
    /// `_files.txt` and `_manifest.json` beside it).
    #[arg(long)]
    pub features: PathBuf,
    /// Folder for `map.html` (open it in a browser), `map_thumbs.png`,
    /// `map.png` and `map.json`.
    #[arg(long, default_value = "map")]
    pub out: PathBuf,
    /// Seed of the layout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

/// Run `eqae map`.
pub fn run(args: MapArgs) -> Result<()> {
    let done = map(&MapRequest {
        features: &args.features,
        out: &args.out,
        seed: args.seed,
        quiet: args.quiet,
    })?;
    if done.missing_thumbnails > 0 {
        eprintln!(
            "warning: {} image(s) could not be read back from the collection's folder; their thumbnails are grey",
            done.missing_thumbnails
        );
    }
    println!(
        "wrote {} ({} points; map_thumbs.png, map.png and map.json beside it)",
        done.html.display(),
        done.points
    );
    Ok(())
}
