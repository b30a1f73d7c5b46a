//! A map of an embedded collection (`eqae map`): every row placed in 2-D
//! (t-SNE of the standardised features, reduced to 50 PCA dimensions
//! first; UMAP of their neighbour graph above 20,000 rows), written as one HTML page that needs no network (its script and
//! data inline, the thumbnails as one PNG beside it: points on a canvas,
//! the image on hover, the nearest neighbours in the features on a click)
//! and as a plain PNG scatter plot for reports.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndarray::Array2;

use super::cluster::reduce::{nearest, start_layout, whiten};
use super::cluster::umap;
use super::plots;
use super::search::Collection;
use crate::data::folder::Canvas;

/// The page's script and layout, with `__DATA__` and `__THUMBS__` to fill.
const PAGE: &str = include_str!("../../assets/map.html");

/// Side of one thumbnail in the sheet, in pixels.
const THUMB: usize = 24;

/// Thumbnails per row of the sheet: 100, or the square root of the rows
/// for large collections, so that the sheet stays about square (browsers
/// refuse images tens of thousands of pixels long).
fn thumbs_per_row(n: usize) -> usize {
    ((n as f64).sqrt().ceil() as usize).max(100)
}

/// Neighbours listed on a click.
const NEIGHBOURS: usize = 8;

/// Neighbours of each row in the graph UMAP lays out.
const LAYOUT_NEIGHBOURS: usize = 15;

/// Principal axes whitened for the neighbours of a large map.
const WHITENED_AXES: usize = 100;

/// Above this many rows the map is laid out by UMAP (Barnes-Hut t-SNE
/// takes minutes at 50,000 rows on 2 cores, UMAP seconds).
const UMAP_FROM_ROWS: usize = 20_000;

/// How to draw the map.
pub struct MapRequest<'a> {
    /// The collection's `.npy` (an output of `eqae embed`).
    pub features: &'a Path,
    /// Folder for `map.html`, `map_thumbs.png`, `map.png`, `map.json`.
    pub out: &'a Path,
    /// Seed of the layout.
    pub seed: u64,
    /// No progress lines.
    pub quiet: bool,
}

/// What the map holds and where it went.
pub struct MapDone {
    /// Points drawn.
    pub points: usize,
    /// The page.
    pub html: PathBuf,
    /// Thumbnails that could not be read back (grey).
    pub missing_thumbnails: usize,
}

/// Lay out the collection in 2-D and write the page, the thumbnails, the
/// plain PNG and the coordinates (`map.json`).
pub fn map(req: &MapRequest) -> Result<MapDone> {
    let collection = Collection::open(req.features)?;
    let html = req.out.join("map.html");
    let files = [
        html.clone(),
        req.out.join("map_thumbs.png"),
        req.out.join("map.png"),
        req.out.join("map.json"),
    ];
    for f in &files {
        crate::atomic::check_writable(f, "--out")?;
    }
    let say = |line: &str| {
        if !req.quiet {
            eprintln!("{line}");
        }
    };
    let n = collection.len();
    // large maps: UMAP of the neighbours in the whitened space that `eqae
    // cluster` uses (its axes fitted on a sample); small ones: t-SNE of
    // the rows' 50 leading principal coordinates, neighbours there too
    let (reduced32, reduced) = if n > UMAP_FROM_ROWS {
        let axes = WHITENED_AXES.min(collection.width());
        say(&format!("map: {n} rows, whitened on {axes} principal axes"));
        (whiten(collection.unit_rows(), axes, req.seed)?, None)
    } else {
        say(&format!("map: {n} rows, reducing to 50 PCA dimensions"));
        let reduced = plots::pca(&collection.unit_rows().mapv(f64::from), 50.min(n), 50)?.0;
        (reduced.mapv(|v| v as f32), Some(reduced))
    };
    say("map: nearest neighbours");
    let bar = crate::progress::bar(n as u64, req.quiet, "neighbours");
    let (ids, dist) = nearest(&reduced32, LAYOUT_NEIGHBOURS.max(NEIGHBOURS), |rows| {
        bar.inc(rows as u64)
    });
    bar.finish_and_clear();
    let k = NEIGHBOURS.min(n.saturating_sub(1)).max(1);
    let neighbours = Array2::from_shape_fn((n, k), |(i, c)| ids[i].get(c).copied().unwrap_or(i));
    let xy = match &reduced {
        None => {
            say("map: UMAP");
            umap_layout(&reduced32, &ids, &dist, req)
        }
        Some(reduced) => {
            say("map: t-SNE");
            layout(reduced, req.seed)?
        }
    };
    drop((ids, dist));
    let labels = collection.labels()?;
    let canvas = collection.canvas()?;
    let (sheet, missing_thumbnails) = thumbnail_sheet(&collection, canvas);
    crate::atomic::with_temp(&files[1], ".png", |tmp| {
        sheet
            .save(tmp)
            .with_context(|| format!("cannot write {}", files[1].display()))
    })?;
    let title = format!("{} ({} images)", req.features.display(), n);
    let plain: Vec<usize> = labels.as_ref().map_or(vec![0; n], |(l, _)| l.clone());
    plots::scatter(&xy, &plain, &title, &files[2])?;
    let data = serde_json::json!({
        "title": title,
        "x": xy.column(0).to_vec(),
        "y": xy.column(1).to_vec(),
        "files": collection.files,
        "labels": labels.as_ref().map(|(l, _)| l),
        "classes": labels.as_ref().map(|(_, c)| c),
        "k": neighbours.ncols(),
        "neighbours": neighbours.iter().collect::<Vec<_>>(),
        "thumb": THUMB,
        "thumbs_per_row": thumbs_per_row(n),
    });
    crate::atomic::write(&files[3], serde_json::to_string(&data)?.as_bytes())?;
    // inline JSON must not close its script element early
    let inline = serde_json::to_string(&data)?.replace("</", "<\\/");
    let page = PAGE
        .replace("__THUMBS__", "map_thumbs.png")
        .replace("__DATA__", &inline);
    crate::atomic::write(&html, page.as_bytes())?;
    Ok(MapDone {
        points: n,
        html,
        missing_thumbnails,
    })
}

/// A 2-D UMAP layout of the neighbour graph (seeded, 200 epochs),
/// started from the first two principal coordinates.
///
/// # Shapes
/// `reduced [N, 50]` -> `[N, 2]`
fn umap_layout(
    reduced: &Array2<f32>,
    ids: &[Vec<usize>],
    dist: &[Vec<f32>],
    req: &MapRequest,
) -> Array2<f64> {
    let n = reduced.nrows();
    let graph = umap::fuzzy_graph(ids, dist);
    let opts = umap::LayoutOptions {
        dims: 2,
        epochs: 200,
        seed: req.seed,
    };
    let bar = crate::progress::bar(opts.epochs as u64, req.quiet, "UMAP");
    let y = umap::layout(&graph, start_layout(reduced, 2), &opts, || bar.inc(1));
    bar.finish_and_clear();
    Array2::from_shape_vec((n, 2), y)
        .expect("two coordinates a row")
        .mapv(f64::from)
}

/// 2-D t-SNE; for more rows than exact t-SNE handles in seconds, the
/// Barnes-Hut approximation, on a thread with a large stack (its trees
/// recurse deeply on clumped data).
fn layout(reduced: &Array2<f64>, seed: u64) -> Result<Array2<f64>> {
    if reduced.nrows() < plots::TSNE_MIN_ROWS {
        // too few rows for t-SNE: the first two principal axes
        let mut xy = Array2::zeros((reduced.nrows(), 2));
        for c in 0..2.min(reduced.ncols()) {
            xy.column_mut(c).assign(&reduced.column(c));
        }
        return Ok(xy);
    }
    let data = reduced.clone();
    std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(move || plots::tsne_large(&data, seed))
        .context("cannot start the t-SNE thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("t-SNE failed"))?
}

/// Every row's image read back from the collection's folder, scaled to a
/// thumbnail, in a sheet of [`thumbs_per_row`] a row (grey where a file
/// cannot be read; their count is returned).
fn thumbnail_sheet(collection: &Collection, canvas: Option<Canvas>) -> (image::GrayImage, usize) {
    let n = collection.len();
    let per_row = thumbs_per_row(n);
    let rows = n.div_ceil(per_row);
    let mut sheet = image::GrayImage::from_pixel(
        (per_row * THUMB) as u32,
        (rows.max(1) * THUMB) as u32,
        image::Luma([128]),
    );
    let mut missing = 0;
    for i in 0..n {
        let Some(pixels) = canvas.and_then(|c| collection.try_picture(i, c).map(|p| (p, c.size)))
        else {
            missing += 1;
            continue;
        };
        let (p, size) = pixels;
        let (x0, y0) = ((i % per_row) * THUMB, (i / per_row) * THUMB);
        for y in 0..THUMB {
            for x in 0..THUMB {
                let v = p[(y * size / THUMB) * size + x * size / THUMB];
                let grey = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                sheet.put_pixel((x0 + x) as u32, (y0 + y) as u32, image::Luma([grey]));
            }
        }
    }
    (sheet, missing)
}
