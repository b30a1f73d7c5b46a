//! A map of an embedded collection (`eqae map`): every row placed in 2-D
//! (t-SNE of the standardised features, reduced to 50 PCA dimensions
//! first), written as one HTML page that needs no network (its script and
//! data inline, the thumbnails as one PNG beside it: points on a canvas,
//! the image on hover, the nearest neighbours in the features on a click)
//! and as a plain PNG scatter plot for reports.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndarray::{Array2, Axis};

use super::plots;
use super::search::Collection;
use crate::data::folder::Canvas;

/// The page's script and layout, with `__DATA__` and `__THUMBS__` to fill.
const PAGE: &str = include_str!("../../assets/map.html");

/// Side of one thumbnail in the sheet, in pixels.
const THUMB: usize = 24;

/// Thumbnails per row of the sheet.
const THUMBS_PER_ROW: usize = 100;

/// Neighbours listed on a click.
const NEIGHBOURS: usize = 8;

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
    say(&format!("map: {n} rows, reducing to 50 PCA dimensions"));
    let reduced = plots::pca(&collection.unit_rows().mapv(f64::from), 50.min(n), 50)?.0;
    say("map: nearest neighbours");
    let neighbours = neighbours(&reduced, NEIGHBOURS.min(n.saturating_sub(1)).max(1));
    say("map: t-SNE");
    let xy = layout(&reduced, req.seed)?;
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
        "thumbs_per_row": THUMBS_PER_ROW,
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

/// The `k` nearest other rows of every row (exact, Euclidean in the
/// reduced space), in blocks of rows.
///
/// # Shapes
/// `x [N, D]` -> `[N, k]`
fn neighbours(x: &Array2<f64>, k: usize) -> Array2<usize> {
    let n = x.nrows();
    let norms: Vec<f64> = x.outer_iter().map(|r| r.dot(&r)).collect();
    let mut out = Array2::zeros((n, k));
    for start in (0..n).step_by(1024) {
        let end = (start + 1024).min(n);
        // # Shapes: [B, D] x [D, N] -> [B, N]
        let dots = x.slice(ndarray::s![start..end, ..]).dot(&x.t());
        for (b, row) in dots.axis_iter(Axis(0)).enumerate() {
            let i = start + b;
            let mut order: Vec<(f64, usize)> = row
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(j, d)| (norms[i] + norms[j] - 2.0 * d, j))
                .collect();
            let k = k.min(order.len());
            if k == 0 {
                continue;
            }
            order.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            order.truncate(k);
            order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for (c, (_, j)) in order.into_iter().enumerate() {
                out[[i, c]] = j;
            }
        }
    }
    out
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
/// thumbnail, in a sheet of [`THUMBS_PER_ROW`] a row (grey where a file
/// cannot be read; their count is returned).
fn thumbnail_sheet(collection: &Collection, canvas: Option<Canvas>) -> (image::GrayImage, usize) {
    let n = collection.len();
    let rows = n.div_ceil(THUMBS_PER_ROW);
    let mut sheet = image::GrayImage::from_pixel(
        (THUMBS_PER_ROW * THUMB) as u32,
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
        let (x0, y0) = ((i % THUMBS_PER_ROW) * THUMB, (i / THUMBS_PER_ROW) * THUMB);
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
