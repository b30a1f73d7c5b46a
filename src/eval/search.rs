//! The nearest images of a query in an embedded collection (`eqae
//! search`): the collection is an output of `eqae embed` (its `.npy`,
//! `_files.txt` and `_manifest.json`, checked to agree); queries are image
//! files, embedded by the same run and head, or rows of the collection.
//! Since the features are invariant, a query turned by any element of the
//! model's group, or mirrored, finds the same neighbours.
//!
//! Distance: cosine distance (1 - cos) between rows standardised by the
//! collection's own column means and deviations, so that no feature
//! dominates by its scale; exact (every row is compared), one matrix
//! product per batch of queries.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ndarray::{Array2, ArrayView1, Axis};
use serde::Serialize;

use super::embed::side_path;
use super::features::{FeatureReader, Head};
use crate::data::folder::{load_image_onto, Canvas};
use crate::nn::transform::to_vec;
use crate::train::images_tensor;

/// An embedded collection, read back and checked.
pub struct Collection {
    /// The rows, standardised and scaled to unit length.
    unit: Array2<f32>,
    /// Column means and inverse deviations of the raw rows.
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    /// The source of each row (relative to `images`).
    pub files: Vec<String>,
    /// The folder the rows were embedded from, where the manifest names one.
    pub images: Option<PathBuf>,
    /// The run and head that computed the rows.
    pub run: Option<PathBuf>,
    /// The head's name.
    pub head: Option<String>,
    /// The `.npy` it was read from.
    path: PathBuf,
    /// Where the rows are a split of the run's data set, which rows.
    split: Option<SplitRows>,
    /// That split's images, read on first use (None where they cannot be).
    split_images: std::sync::OnceLock<Option<crate::data::Dataset>>,
    /// The approximate index beside the features, where one is used.
    index: Option<super::index::Index>,
}

/// Candidates the index is asked for, per neighbour wanted (at least 100).
const CANDIDATES_PER_HIT: usize = 10;

/// The rows of a split that an output of `eqae embed --split` holds.
struct SplitRows {
    /// `train`, `validation` or `test`.
    split: String,
    /// The split's index of row 0 (non-zero for shards after the first).
    offset: usize,
}

/// The split, and the first row of this shard, that a manifest's source
/// names (a shard after the first reads the split once to place itself).
fn split_source(source: &serde_json::Value) -> Option<SplitRows> {
    let split = source["split"].as_str()?.to_string();
    let shard = source["shard"].as_array();
    let (index, count) = match shard.map(|s| (s[0].as_u64(), s[1].as_u64())) {
        Some((Some(i), Some(c))) if i >= 1 && c >= i => (i as usize - 1, c as usize),
        _ => (0, 1),
    };
    let mut rows = SplitRows { split, offset: 0 };
    if index > 0 {
        let run = source["run"].as_str()?;
        let len = load_split(Path::new(run), &rows.split)?.len();
        rows.offset = super::embed::shard_range(len, (index, count)).start;
    }
    Some(rows)
}

/// A split of a run's data set, read again through the run's config.
fn load_split(run: &Path, split: &str) -> Option<crate::data::Dataset> {
    let config = crate::train::RunDir::new(run).load_config().ok()?;
    if split == "test" {
        return crate::data::load_test_split(&config.data).ok();
    }
    let splits = crate::data::load_splits(&config.data).ok()?;
    match split {
        "train" => Some(splits.train),
        "validation" => Some(splits.validation),
        "test" => Some(splits.test),
        _ => None,
    }
}

/// The `_files.txt` beside `features`: one line per row.
fn read_file_list(features: &Path) -> Result<Vec<String>> {
    let files_path = side_path(features, "_files.txt");
    Ok(std::fs::read_to_string(&files_path)
        .with_context(|| {
            format!(
                "{} has no file list ({}): an output of `eqae embed --images` has one beside it",
                features.display(),
                files_path.display()
            )
        })?
        .lines()
        .map(String::from)
        .collect())
}

/// One neighbour of a query.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Hit {
    /// 1 for the nearest.
    pub rank: usize,
    /// Its row in the collection.
    pub row: usize,
    /// Its file.
    pub file: String,
    /// Cosine distance, 0 to 2.
    pub distance: f32,
}

impl Collection {
    /// Read `features` (`F.npy`) and its side files: the manifest must be
    /// there and describe the parts (sizes), the file list must have a
    /// line per row, and every value must be finite.
    pub fn open(features: &Path) -> Result<Self> {
        let manifest_path = side_path(features, "_manifest.json");
        let text = std::fs::read_to_string(&manifest_path).with_context(|| {
            format!(
                "{} has no manifest ({}): it is not a complete output of `eqae embed` (an interrupted one is finished by the same command with --resume)",
                features.display(),
                manifest_path.display()
            )
        })?;
        let manifest: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("corrupt {}", manifest_path.display()))?;
        check_parts(features, &manifest)?;
        let raw: Array2<f32> = ndarray_npy::read_npy(features)
            .with_context(|| format!("cannot read {} as a float32 matrix", features.display()))?;
        let source = &manifest["source"];
        let split = split_source(source);
        let files = match &split {
            Some(from) => (0..raw.nrows())
                .map(|i| format!("{}/{}", from.split, from.offset + i))
                .collect(),
            None => read_file_list(features)?,
        };
        if files.len() != raw.nrows() {
            bail!(
                "{} holds {} rows but {} lists {} files",
                features.display(),
                raw.nrows(),
                side_path(features, "_files.txt").display(),
                files.len()
            );
        }
        if raw.nrows() == 0 {
            bail!("{} holds no rows", features.display());
        }
        if let Some((i, _)) = raw
            .outer_iter()
            .enumerate()
            .find(|(_, r)| r.iter().any(|v| !v.is_finite()))
        {
            bail!(
                "{}: row {i} ({}) holds a value that is not finite",
                features.display(),
                files[i]
            );
        }
        let path = |key: &str| source[key].as_str().map(PathBuf::from);
        let (mean, inv_std) = column_scales(&raw);
        let unit = standardise(raw, &mean, &inv_std);
        Ok(Collection {
            unit,
            mean,
            inv_std,
            files,
            images: path("images"),
            run: path("run"),
            head: source["head"].as_str().map(String::from),
            path: features.to_path_buf(),
            split,
            split_images: std::sync::OnceLock::new(),
            index: None,
        })
    }

    /// Search through the index beside the features (`eqae index`) where
    /// there is one; a stale or unreadable one is named in a warning and
    /// the search is exact.
    pub fn with_index(mut self) -> Self {
        match super::index::Index::open(&self.path) {
            Ok(index) => self.index = index,
            Err(e) => eprintln!("warning: {e:#}; searching every row instead"),
        }
        self
    }

    /// How the rows are searched, for reports.
    pub fn search_kind(&self) -> String {
        match &self.index {
            Some(i) => format!(
                "approximate: an HNSW graph over {} principal coordinates ({}) proposes {} candidates per neighbour wanted (at least 100), ranked by the exact distance",
                i.meta.dims,
                super::index::folder(&self.path).display(),
                CANDIDATES_PER_HIT
            ),
            None => "exact: every row compared".into(),
        }
    }

    /// Rows in the collection.
    pub fn len(&self) -> usize {
        self.unit.nrows()
    }

    /// Whether it holds no row (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Features per row.
    pub fn width(&self) -> usize {
        self.unit.ncols()
    }

    /// The `k` nearest rows of each query (raw feature rows, `[Q, F]`),
    /// nearest first; ties go to the lower row.
    pub fn nearest(&self, queries: &Array2<f32>, k: usize) -> Result<Vec<Vec<Hit>>> {
        if queries.ncols() != self.width() {
            bail!(
                "the queries have {} features, the collection {}: embed them with the collection's run and head",
                queries.ncols(),
                self.width()
            );
        }
        self.nearest_unit(&standardise(queries.clone(), &self.mean, &self.inv_std), k)
    }

    /// The `k` nearest rows of the collection's own rows `rows`.
    pub fn nearest_of_rows(&self, rows: &[usize], k: usize) -> Result<Vec<Vec<Hit>>> {
        if let Some(i) = rows.iter().find(|&&i| i >= self.len()) {
            bail!("--row {i}: the collection has rows 0 to {}", self.len() - 1);
        }
        self.nearest_unit(&self.unit.select(Axis(0), rows), k)
    }

    /// # Shapes
    /// `q [Q, F]` (standardised, unit rows) -> Q lists of `k` hits
    fn nearest_unit(&self, q: &Array2<f32>, k: usize) -> Result<Vec<Vec<Hit>>> {
        if k == 0 || k > self.len() {
            bail!(
                "--k {k}: give 1 to the {} rows of the collection",
                self.len()
            );
        }
        if let Some(index) = &self.index {
            let wanted = (k * CANDIDATES_PER_HIT).max(100).min(self.len());
            return Ok(q
                .outer_iter()
                .map(|row| self.ranked_among(row, &index.candidates(row, wanted), k))
                .collect());
        }
        // # Shapes: [Q, F] x [F, N] -> [Q, N]
        let cos = q.dot(&self.unit.t());
        Ok(cos.outer_iter().map(|row| self.ranked(row, k)).collect())
    }

    /// The `k` nearest of `candidates` to the unit row `q`, by the exact
    /// distance.
    fn ranked_among(&self, q: ArrayView1<f32>, candidates: &[usize], k: usize) -> Vec<Hit> {
        let mut scored: Vec<(f32, usize)> = candidates
            .iter()
            .map(|&i| (-q.dot(&self.unit.row(i)), i))
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .take(k)
            .enumerate()
            .map(|(r, (neg, i))| Hit {
                rank: r + 1,
                row: i,
                file: self.files[i].clone(),
                distance: (1.0 + neg).max(0.0),
            })
            .collect()
    }

    /// Row `i`'s image read back from the collection's folder, or a grey
    /// square where it cannot be.
    pub fn picture(&self, i: usize, canvas: Canvas) -> Vec<f32> {
        self.try_picture(i, canvas)
            .unwrap_or_else(|| vec![0.5; canvas.size * canvas.size])
    }

    /// The rows as compared: standardised, unit length.
    pub fn unit_rows(&self) -> &Array2<f32> {
        &self.unit
    }

    /// Each row's class and the class names, where the output has them
    /// (`_labels.npy` and `_classes.txt`: splits and class folders).
    pub fn labels(&self) -> Result<Option<(Vec<usize>, Vec<String>)>> {
        let (labels, classes) = (
            side_path(&self.path, "_labels.npy"),
            side_path(&self.path, "_classes.txt"),
        );
        if !labels.exists() || !classes.exists() {
            return Ok(None);
        }
        let l: ndarray::Array1<i64> = ndarray_npy::read_npy(&labels)
            .with_context(|| format!("cannot read {}", labels.display()))?;
        let names: Vec<String> = std::fs::read_to_string(&classes)
            .with_context(|| format!("cannot read {}", classes.display()))?
            .lines()
            .map(String::from)
            .collect();
        if l.len() != self.len() || l.iter().any(|&c| c < 0 || c as usize >= names.len()) {
            bail!(
                "{} does not hold a class of {} for each of the {} rows",
                labels.display(),
                classes.display(),
                self.len()
            );
        }
        Ok(Some((l.iter().map(|&c| c as usize).collect(), names)))
    }

    /// How the collection's images were placed on the model's canvas (from
    /// its run's config); None where the manifest names no run.
    pub fn canvas(&self) -> Result<Option<Canvas>> {
        let Some(run) = &self.run else {
            return Ok(None);
        };
        let config = crate::train::RunDir::new(run).load_config()?;
        Ok(Some(Canvas::of(&config.data)))
    }

    /// Row `i`'s image read back from the collection's folder.
    pub(crate) fn try_picture(&self, i: usize, canvas: Canvas) -> Option<Vec<f32>> {
        if let Some(rows) = &self.split {
            let data = self
                .split_images
                .get_or_init(|| load_split(self.run.as_ref()?, &rows.split))
                .as_ref()?;
            let j = rows.offset + i;
            return (j < data.len() && data.size == canvas.size)
                .then(|| data.image(j).ok())
                .flatten();
        }
        let root = self.images.as_ref()?;
        load_image_onto(&root.join(&self.files[i]), canvas).ok()
    }

    fn ranked(&self, cos: ArrayView1<f32>, k: usize) -> Vec<Hit> {
        let mut order: Vec<usize> = (0..cos.len()).collect();
        let key = |i: &usize| -cos[*i];
        order.select_nth_unstable_by(k - 1, |a, b| key(a).total_cmp(&key(b)).then(a.cmp(b)));
        order.truncate(k);
        order.sort_by(|a, b| key(a).total_cmp(&key(b)).then(a.cmp(b)));
        order
            .into_iter()
            .enumerate()
            .map(|(r, i)| Hit {
                rank: r + 1,
                row: i,
                file: self.files[i].clone(),
                distance: (1.0 - cos[i]).max(0.0),
            })
            .collect()
    }
}

/// The manifest's parts are there with the sizes it records.
fn check_parts(features: &Path, manifest: &serde_json::Value) -> Result<()> {
    let dir = features
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(parts) = manifest["parts"].as_object() else {
        bail!("{}: its manifest lists no parts", features.display());
    };
    for (name, part) in parts {
        let path = dir.join(name);
        let bytes = std::fs::metadata(&path).map(|m| m.len()).ok();
        if bytes != part["bytes"].as_u64() {
            bail!(
                "{} is not the file its manifest describes ({} bytes recorded): the output was changed or is incomplete; embed it again",
                path.display(),
                part["bytes"]
            );
        }
    }
    Ok(())
}

/// Column means and inverse standard deviations (1 where a column is constant).
fn column_scales(x: &Array2<f32>) -> (Vec<f32>, Vec<f32>) {
    let n = x.nrows().max(1) as f64;
    let mut mean = vec![0f64; x.ncols()];
    let mut square = vec![0f64; x.ncols()];
    for row in x.outer_iter() {
        for (j, &v) in row.iter().enumerate() {
            mean[j] += f64::from(v);
            square[j] += f64::from(v) * f64::from(v);
        }
    }
    let mut inv = Vec::with_capacity(x.ncols());
    for j in 0..x.ncols() {
        mean[j] /= n;
        let var = (square[j] / n - mean[j] * mean[j]).max(0.0);
        inv.push(if var > 1e-24 {
            (1.0 / var.sqrt()) as f32
        } else {
            1.0
        });
    }
    (mean.into_iter().map(|m| m as f32).collect(), inv)
}

/// Rows standardised by their own columns' means and deviations, then
/// scaled to unit length: the rows as a collection compares them.
pub fn unit_rows_of(x: Array2<f32>) -> Array2<f32> {
    let (mean, inv_std) = column_scales(&x);
    standardise(x, &mean, &inv_std)
}

/// Rows standardised by `mean` and `inv_std`, then scaled to unit length.
fn standardise(mut x: Array2<f32>, mean: &[f32], inv_std: &[f32]) -> Array2<f32> {
    for mut row in x.axis_iter_mut(Axis(0)) {
        for ((v, m), s) in row.iter_mut().zip(mean).zip(inv_std) {
            *v = (*v - m) * s;
        }
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.mapv_inplace(|v| v / norm);
    }
    x
}

/// `search.csv`: one line per (query, neighbour), through a CSV writer
/// (file names may hold commas and quotes).
pub fn csv_bytes(queries: &[String], hits: &[Vec<Hit>]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["query", "rank", "row", "file", "distance"])?;
    for (q, list) in queries.iter().zip(hits) {
        for h in list {
            w.write_record([
                q.as_str(),
                &h.rank.to_string(),
                &h.row.to_string(),
                &h.file,
                &format!("{:.6}", h.distance),
            ])?;
        }
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Features of image files, read as `eqae embed --images` reads them
/// (the same preparation, the same reader), in batches.
///
/// # Shapes
/// `paths.len()` files -> `[Q, F]`
pub fn embed_files(
    reader: &FeatureReader,
    canvas: Canvas,
    paths: &[PathBuf],
) -> Result<Array2<f32>> {
    let mut rows: Vec<f32> = Vec::new();
    let mut width = 0;
    for chunk in paths.chunks(reader.batch()?) {
        let mut pixels = Vec::with_capacity(chunk.len() * canvas.size * canvas.size);
        for p in chunk {
            pixels.extend(load_image_onto(p, canvas).map_err(|e| anyhow::anyhow!("query {e}"))?);
        }
        let f = reader.read(images_tensor(pixels, canvas.size, reader.device()))?;
        width = f.dims()[1];
        rows.extend(to_vec(&f));
    }
    Ok(Array2::from_shape_vec((paths.len(), width), rows)?)
}

/// Side of one picture in the strip, in pixels.
const CELL: u32 = 64;

/// `search.png`: a row per query, the query then its neighbours, nearest
/// first, each read back from the collection's folder (a cell stays grey
/// where a file cannot be read; the count of those is returned).
pub fn draw_strip(
    collection: &Collection,
    queries: &[Vec<f32>],
    hits: &[Vec<Hit>],
    canvas: Canvas,
    path: &Path,
) -> Result<usize> {
    let k = hits.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let gap = 6;
    let (w, h) = (
        (k + 1) * (CELL + gap) + gap * 2,
        queries.len() as u32 * (CELL + gap) + gap,
    );
    let mut img = image::GrayImage::from_pixel(w, h, image::Luma([255]));
    let mut missing = 0;
    for (r, (query, list)) in queries.iter().zip(hits).enumerate() {
        let y = gap + r as u32 * (CELL + gap);
        paste(&mut img, query, canvas.size, CELL, (gap, y));
        for (c, hit) in list.iter().enumerate() {
            let x = gap * 3 + (c as u32 + 1) * (CELL + gap);
            let pixels = collection.try_picture(hit.row, canvas).unwrap_or_else(|| {
                missing += 1;
                vec![0.5; canvas.size * canvas.size]
            });
            paste(&mut img, &pixels, canvas.size, CELL, (x, y));
        }
    }
    crate::atomic::with_temp(path, ".png", |tmp| {
        img.save(tmp)
            .with_context(|| format!("cannot write {}", path.display()))
    })?;
    Ok(missing)
}

/// One `size x size` image in [0, 1] (dark background, drawn as it is),
/// scaled to a `cell x cell` square at `(x, y)`.
pub(crate) fn paste(
    img: &mut image::GrayImage,
    pixels: &[f32],
    size: usize,
    cell: u32,
    (x, y): (u32, u32),
) {
    for cy in 0..cell {
        for cx in 0..cell {
            let (sy, sx) = (
                cy as usize * size / cell as usize,
                cx as usize * size / cell as usize,
            );
            let v = (pixels[sy * size + sx].clamp(0.0, 1.0) * 255.0).round() as u8;
            img.put_pixel(x + cx, y + cy, image::Luma([v]));
        }
    }
}

/// What to search for.
pub enum Queries<'a> {
    /// Image files, embedded by the collection's run and head.
    Files(&'a [PathBuf]),
    /// Rows of the collection.
    Rows(&'a [usize]),
}

/// A search to run: the collection, the queries, `k`, the folder for
/// the files, and the run that embeds query files (default: the
/// manifest's).
pub struct SearchRequest<'a> {
    /// The collection's `.npy`.
    pub features: &'a Path,
    /// The queries.
    pub queries: Queries<'a>,
    /// Neighbours per query.
    pub k: usize,
    /// Folder for `search.csv`, `search.json`, `search.png`.
    pub out: &'a Path,
    /// The run that embeds query files, instead of the manifest's.
    pub run: Option<&'a Path>,
    /// Where the queries are embedded.
    pub device: &'a burn::tensor::Device,
    /// Compare every row even where an index is beside the features.
    pub exact: bool,
}

/// What a search found and wrote.
pub struct SearchDone {
    /// Each query's name and its neighbours.
    pub results: Vec<(String, Vec<Hit>)>,
    /// Rows searched.
    pub rows: usize,
    /// Neighbours whose picture could not be read back (grey cells).
    pub missing_pictures: usize,
    /// `search.csv`; `search.json` and `search.png` are beside it.
    pub csv: PathBuf,
}

/// Run a search and write its files (checked writable before the work).
pub fn search(req: &SearchRequest) -> Result<SearchDone> {
    let collection = Collection::open(req.features)?;
    let collection = if req.exact {
        collection
    } else {
        collection.with_index()
    };
    let (csv, json, png) = (
        req.out.join("search.csv"),
        req.out.join("search.json"),
        req.out.join("search.png"),
    );
    for p in [&csv, &json, &png] {
        crate::atomic::check_writable(p, "--out")?;
    }
    let Some(run) = req.run.map(Path::to_path_buf).or(collection.run.clone()) else {
        bail!(
            "{}: its manifest names no run; give --run (the run it was embedded with)",
            req.features.display()
        );
    };
    let run_dir = crate::train::RunDir::new(&run);
    let config = run_dir.load_config()?;
    let canvas = Canvas::of(&config.data);
    let (names, hits, pictures) = match req.queries {
        Queries::Files(paths) => {
            let model = run_dir.load_model(&config, req.device)?;
            let head = collection
                .head
                .as_deref()
                .and_then(Head::from_name)
                .unwrap_or(Head::defaults(config.model.kind)[0]);
            let reader = FeatureReader::new(&model, &config, head, req.device)?;
            let features = embed_files(&reader, canvas, paths)?;
            let pictures = paths
                .iter()
                .map(|p| load_image_onto(p, canvas))
                .collect::<Result<Vec<_>, _>>()?;
            let names = paths.iter().map(|p| p.display().to_string()).collect();
            (names, collection.nearest(&features, req.k)?, pictures)
        }
        Queries::Rows(rows) => {
            let hits = collection.nearest_of_rows(rows, req.k)?;
            let pictures = rows
                .iter()
                .map(|&i| collection.picture(i, canvas))
                .collect();
            let names = rows
                .iter()
                .map(|&i| format!("row {i}: {}", collection.files[i]))
                .collect::<Vec<String>>();
            (names, hits, pictures)
        }
    };
    crate::atomic::write(&csv, &csv_bytes(&names, &hits)?)?;
    let report = serde_json::json!({
        "features": req.features,
        "run": run,
        "k": req.k,
        "distance": "cosine distance between rows standardised by the collection's column means and deviations",
        "search": collection.search_kind(),
        "queries": names.iter().zip(&hits).map(|(q, h)| serde_json::json!({"query": q, "neighbours": h})).collect::<Vec<_>>(),
    });
    crate::atomic::write(&json, serde_json::to_string_pretty(&report)?.as_bytes())?;
    let missing_pictures = draw_strip(&collection, &pictures, &hits, canvas, &png)?;
    Ok(SearchDone {
        results: names.into_iter().zip(hits).collect(),
        rows: collection.len(),
        missing_pictures,
        csv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_with_commas_and_quotes_read_back() {
        let hit = Hit {
            rank: 1,
            row: 0,
            file: "a,b \"c\".png".into(),
            distance: 0.5,
        };
        let bytes = csv_bytes(&["q,1.png".into()], &[vec![hit]]).unwrap();
        let mut r = csv::Reader::from_reader(bytes.as_slice());
        let rec = r.records().next().unwrap().unwrap();
        assert_eq!(&rec[0], "q,1.png");
        assert_eq!(&rec[3], "a,b \"c\".png");
    }

    #[test]
    fn standardised_rows_have_unit_length() {
        let x = Array2::from_shape_vec((3, 2), vec![1.0, 10.0, 2.0, 20.0, 4.0, 10.0]).unwrap();
        let (m, s) = column_scales(&x);
        let u = standardise(x, &m, &s);
        for r in u.outer_iter() {
            assert!((r.dot(&r) - 1.0).abs() < 1e-5);
        }
    }
}
