//! `eqae index`: an approximate neighbour index beside an embedded
//! collection, for `eqae search` on large collections (see
//! [`crate::eval::index`]).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::eval::index::{build, folder, IndexOptions};
use crate::eval::search::Collection;

/// Arguments of `eqae index`.
#[derive(Args, Debug)]
pub struct IndexArgs {
    /// The collection: an output of `eqae embed`.
    #[arg(long)]
    pub features: PathBuf,
    /// Principal coordinates the graph is built on (its candidates are
    /// ranked by the exact distance over every feature).
    #[arg(long, default_value_t = 128)]
    pub dims: usize,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Run `eqae index`.
pub fn run(args: IndexArgs) -> Result<()> {
    let collection = Collection::open(&args.features)?;
    let meta = build(
        &args.features,
        collection.unit_rows(),
        &IndexOptions {
            dims: args.dims,
            quiet: args.quiet,
        },
    )?;
    println!(
        "indexed {} rows on {} principal coordinates in {:.1}s: {}",
        meta.rows,
        meta.dims,
        meta.build_seconds,
        folder(&args.features).display()
    );
    Ok(())
}
