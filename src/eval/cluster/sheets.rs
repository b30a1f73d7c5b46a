//! Pictures of the clusters: one contact sheet per cluster (its most
//! central images, read back from the files or the split) and one
//! overview with a row of each.

use anyhow::Result;

use crate::data::folder::Canvas;
use crate::eval::search::Collection;

/// Side of one picture in a sheet, in pixels.
const CELL: u32 = 56;

/// Gap between pictures, in pixels.
const GAP: u32 = 4;

/// Pictures per row of a cluster's sheet.
const SHEET_COLUMNS: usize = 8;

/// A drawn sheet, and how many of its pictures could not be read back.
pub struct Drawn {
    /// The PNG file's bytes.
    pub png: Vec<u8>,
    /// Pictures left grey (files that could not be read).
    pub missing: usize,
}

/// The sheet of one cluster: `rows` (most central first) in a grid of
/// [`SHEET_COLUMNS`].
pub fn sheet(collection: &Collection, canvas: Option<Canvas>, rows: &[usize]) -> Result<Drawn> {
    let lines = rows.len().div_ceil(SHEET_COLUMNS).max(1);
    grid(collection, canvas, rows, SHEET_COLUMNS, lines)
}

/// The overview: a line per cluster (in order), its `per_line` most
/// central images.
pub fn overview(
    collection: &Collection,
    canvas: Option<Canvas>,
    central: &[Vec<usize>],
    per_line: usize,
) -> Result<Drawn> {
    let mut cells: Vec<Option<usize>> = Vec::with_capacity(central.len() * per_line);
    for rows in central {
        for c in 0..per_line {
            cells.push(rows.get(c).copied());
        }
    }
    draw(collection, canvas, &cells, per_line, central.len().max(1))
}

fn grid(
    collection: &Collection,
    canvas: Option<Canvas>,
    rows: &[usize],
    columns: usize,
    lines: usize,
) -> Result<Drawn> {
    let cells: Vec<Option<usize>> = rows.iter().map(|&r| Some(r)).collect();
    draw(collection, canvas, &cells, columns, lines)
}

/// `cells` (a row of the collection, or none: left white) drawn in a grid.
fn draw(
    collection: &Collection,
    canvas: Option<Canvas>,
    cells: &[Option<usize>],
    columns: usize,
    lines: usize,
) -> Result<Drawn> {
    let (w, h) = (
        columns as u32 * (CELL + GAP) + GAP,
        lines as u32 * (CELL + GAP) + GAP,
    );
    let mut img = image::GrayImage::from_pixel(w, h, image::Luma([255]));
    let mut missing = 0;
    for (at, cell) in cells.iter().enumerate() {
        let Some(row) = cell else { continue };
        let (x, y) = (
            GAP + (at % columns) as u32 * (CELL + GAP),
            GAP + (at / columns) as u32 * (CELL + GAP),
        );
        let picture = canvas.and_then(|c| collection.try_picture(*row, c).map(|p| (p, c.size)));
        let Some((pixels, size)) = picture else {
            missing += 1;
            fill(&mut img, (x, y), 160);
            continue;
        };
        crate::eval::search::paste(&mut img, &pixels, size, CELL, (x, y));
    }
    let mut png = Vec::new();
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok(Drawn { png, missing })
}

fn fill(img: &mut image::GrayImage, (x, y): (u32, u32), grey: u8) {
    for cy in 0..CELL {
        for cx in 0..CELL {
            img.put_pixel(x + cx, y + cy, image::Luma([grey]));
        }
    }
}
