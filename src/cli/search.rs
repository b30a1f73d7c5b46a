//! `eqae search`: the nearest images of query images (or of rows) in a
//! collection embedded by `eqae embed` (see [`crate::eval::search`]).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::DeviceArgs;
use crate::eval::search::{search, Queries, SearchRequest};

/// Arguments of `eqae search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// The collection: an output of `eqae embed` (its `.npy`, with
    /// `_files.txt` and `_manifest.json` beside it).
    #[arg(long)]
    pub features: PathBuf,
    /// Query image files, embedded by the collection's run and head.
    #[arg(long, num_args = 1.., required_unless_present = "row", conflicts_with = "row")]
    pub query: Vec<PathBuf>,
    /// Rows of the collection (0-based) as queries.
    #[arg(long, num_args = 1..)]
    pub row: Vec<usize>,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Compare every row, even where `eqae index` has built an index
    /// beside the features.
    #[arg(long)]
    pub exact: bool,
    /// Folder for `search.csv`, `search.json` and `search.png`.
    #[arg(long, default_value = "search")]
    pub out: PathBuf,
    /// The run that embeds the queries (default: the collection's, as its
    /// manifest names it).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// The compute device.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Run `eqae search`.
pub fn run(args: SearchArgs) -> Result<()> {
    let device = args.device.select()?;
    let queries = if args.row.is_empty() {
        Queries::Files(&args.query)
    } else {
        Queries::Rows(&args.row)
    };
    let done = search(&SearchRequest {
        features: &args.features,
        queries,
        k: args.k,
        exact: args.exact,
        out: &args.out,
        run: args.run.as_deref(),
        device: &device,
    })?;
    for (query, hits) in &done.results {
        let shown: Vec<String> = hits
            .iter()
            .take(5)
            .map(|h| format!("{} ({:.3})", h.file, h.distance))
            .collect();
        println!("{query}: {}", shown.join(", "));
    }
    if done.missing_pictures > 0 {
        eprintln!(
            "warning: {} neighbour picture(s) could not be read back from the collection's folder; their cells in search.png are grey",
            done.missing_pictures
        );
    }
    println!(
        "wrote {}, search.json and search.png beside it ({} rows searched, k = {})",
        done.csv.display(),
        done.rows,
        args.k
    );
    Ok(())
}
