//! `eqae search`: the nearest images of query images (or of rows) in a
//! collection embedded by `eqae embed` (see [`crate::eval::search`]).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};

use super::args::{DeviceArgs, HeadArg, TrainedHead};
use crate::data::folder::Canvas;
use crate::eval::search::{csv_bytes, draw_strip, embed_files, Collection};

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
    let collection = Collection::open(&args.features)?;
    let (csv, json, png) = (
        args.out.join("search.csv"),
        args.out.join("search.json"),
        args.out.join("search.png"),
    );
    for p in [&csv, &json, &png] {
        crate::atomic::check_writable(p, "--out")?;
    }
    let Some(run) = args.run.clone().or(collection.run.clone()) else {
        bail!(
            "{}: its manifest names no run; give --run (the run it was embedded with)",
            args.features.display()
        );
    };
    let head = collection
        .head
        .as_deref()
        .and_then(|h| HeadArg::from_str(h, true).ok());
    let device = args.device.select()?;
    let trained = TrainedHead::load(&run, head, &device)?;
    let canvas = Canvas::of(&trained.config.data);
    let (names, hits, pictures) = if args.row.is_empty() {
        let features = embed_files(&trained.reader, canvas, &args.query)?;
        let pictures = args
            .query
            .iter()
            .map(|p| crate::data::folder::load_image_onto(p, canvas))
            .collect::<Result<Vec<_>, _>>()?;
        let names: Vec<String> = args.query.iter().map(|p| p.display().to_string()).collect();
        (names, collection.nearest(&features, args.k)?, pictures)
    } else {
        let hits = collection.nearest_of_rows(&args.row, args.k)?;
        let pictures = args
            .row
            .iter()
            .map(|&i| {
                collection
                    .images
                    .as_ref()
                    .and_then(|root| {
                        crate::data::folder::load_image_onto(
                            &root.join(&collection.files[i]),
                            canvas,
                        )
                        .ok()
                    })
                    .unwrap_or_else(|| vec![0.5; canvas.size * canvas.size])
            })
            .collect();
        let names: Vec<String> = args
            .row
            .iter()
            .map(|&i| format!("row {i}: {}", collection.files[i]))
            .collect();
        (names, hits, pictures)
    };
    crate::atomic::write(&csv, &csv_bytes(&names, &hits)?)?;
    let report = serde_json::json!({
        "features": args.features,
        "run": run,
        "k": args.k,
        "distance": "cosine distance between rows standardised by the collection's column means and deviations",
        "queries": names.iter().zip(&hits).map(|(q, h)| serde_json::json!({"query": q, "neighbours": h})).collect::<Vec<_>>(),
    });
    crate::atomic::write(&json, serde_json::to_string_pretty(&report)?.as_bytes())?;
    let missing = draw_strip(&collection, &pictures, &hits, canvas, &png)?;
    for (q, list) in names.iter().zip(&hits) {
        let shown: Vec<String> = list
            .iter()
            .take(5)
            .map(|h| format!("{} ({:.3})", h.file, h.distance))
            .collect();
        println!("{q}: {}", shown.join(", "));
    }
    if missing > 0 {
        eprintln!(
            "warning: {missing} neighbour picture(s) could not be read back from the collection's folder; their cells in {} are grey",
            png.display()
        );
    }
    println!(
        "wrote {}, search.json and search.png beside it ({} rows searched, k = {})",
        csv.display(),
        collection.len(),
        args.k
    );
    Ok(())
}
