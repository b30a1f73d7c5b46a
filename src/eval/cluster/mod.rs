//! Clusters of an embedded collection (`eqae cluster`), found without
//! labels: the invariant features are whitened by PCA and compared by
//! cosine distance, their nearest-neighbour graph is laid out by UMAP in
//! a few dimensions (started from the graph's spectral embedding), and a
//! Gaussian mixture cuts that layout into `k` clusters (`k` given, or
//! chosen by modularity on the graph). Labels, where the collection has
//! them, only score the result.
//!
//! This pipeline was chosen by measurement over k-means, Gaussian
//! mixtures, Ward, spectral clustering and HDBSCAN on the same features
//! (`docs/clustering.md`, `scripts/cluster_methods.py`).
//!
//! Writes into `--out`: `clusters.npy` (int64, a cluster per row),
//! `clusters.csv` (row, file, cluster, confidence, outlier),
//! `clusters.json` and `clusters.md` (how, sizes, scores),
//! `sheets/cluster_NN.png` (the most central images of each cluster),
//! `clusters.png` (a line of each cluster) and, with labels,
//! `confusion.png`. All are written whole under temporary names first and
//! renamed together, `clusters.npy` first.

pub mod reduce;
pub mod score;
mod sheets;
pub mod umap;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use linfa::prelude::*;
use linfa_clustering::{GaussianMixtureModel, KMeans};
use ndarray::{Array1, Array2, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::embed_run::{embed_run, EmbedRequest};
use super::search::Collection;
pub use score::Scores;

/// What k-means cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The UMAP layout of the whitened features' neighbour graph.
    Umap,
    /// The whitened features themselves (the paper's k-means, whitened).
    Kmeans,
}

impl Method {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::Umap => "umap",
            Method::Kmeans => "kmeans",
        }
    }
}

/// How the rows are put into clusters once laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assign {
    /// A Gaussian mixture with full covariances, started from k-means
    /// (on the UMAP layout; with `Method::Kmeans`, k-means alone).
    Mixture,
    /// k-means.
    Kmeans,
}

/// How to cluster, whatever the rows come from.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// Clusters; None: chosen by modularity in `2..=max_k`.
    pub k: Option<usize>,
    /// Largest k tried when choosing.
    pub max_k: usize,
    /// What is cut into clusters.
    pub method: Method,
    /// How it is cut.
    pub assign: Assign,
    /// Principal axes kept by the whitening (None: all, up to an eighth
    /// of the rows).
    pub dims: Option<usize>,
    /// Neighbours per row in the graph.
    pub neighbours: usize,
    /// Dimensions of the UMAP layout.
    pub layout_dims: usize,
    /// Seed of the layout, the k-means starts and the samples.
    pub seed: u64,
    /// No progress bars or lines.
    pub quiet: bool,
}

/// The defaults of `eqae cluster` (and of `eval`'s clustering columns):
/// the largest k tried when choosing, neighbours per row, layout dimensions.
pub const DEFAULT_MAX_K: usize = 30;
pub const DEFAULT_NEIGHBOURS: usize = 20;
pub const DEFAULT_LAYOUT_DIMS: usize = 10;

impl ClusterSettings {
    /// `eqae cluster`'s defaults: a UMAP layout of the 20-neighbour graph
    /// of all whitened axes in 10 dimensions, cut by a Gaussian mixture;
    /// `k` clusters, or (None) chosen by modularity over 2..=30.
    pub fn defaults(k: Option<usize>, seed: u64) -> Self {
        ClusterSettings {
            k,
            max_k: DEFAULT_MAX_K,
            method: Method::Umap,
            assign: Assign::Mixture,
            dims: None,
            neighbours: DEFAULT_NEIGHBOURS,
            layout_dims: DEFAULT_LAYOUT_DIMS,
            seed,
            quiet: true,
        }
    }
}

/// What to cluster and where its outputs go.
pub struct ClusterRequest<'a> {
    /// The collection's `.npy` (an output of `eqae embed`).
    pub features: &'a Path,
    /// Folder for the outputs.
    pub out: &'a Path,
    pub settings: ClusterSettings,
}

/// What came out, for the command's summary.
pub struct ClusterDone {
    /// Rows clustered.
    pub rows: usize,
    /// Clusters.
    pub k: usize,
    /// How k was chosen, where it was.
    pub chosen: Option<String>,
    /// Scores against the labels, where the collection has labels.
    pub scores: Option<Scores>,
    /// Rows flagged as outliers.
    pub outliers: usize,
    /// `clusters.json`.
    pub report: PathBuf,
    /// Pictures left grey because their file could not be read back.
    pub missing_pictures: usize,
}

/// The cut of the points into clusters.
struct Cut {
    /// Each row's cluster, numbered by size (0 the largest).
    clusters: Vec<usize>,
    /// Each row's distance to its cluster's centre.
    near: Vec<f32>,
    /// How clearly each row belongs to its cluster, 0 to 1.
    confidence: Vec<f32>,
}

/// `eqae cluster` end to end: embed the collection first when `embed`
/// says so (into `request.features`), cluster it, and print the summary.
pub fn cluster_and_report(embed: Option<&EmbedRequest>, request: &ClusterRequest) -> Result<()> {
    if let Some(embed) = embed {
        std::fs::create_dir_all(request.out)
            .with_context(|| format!("cannot create {}", request.out.display()))?;
        let cpu = crate::device::select(crate::device::Backend::Cpu)?;
        embed_run(embed, &cpu)?;
    }
    let done = cluster(request)?;

    if done.missing_pictures > 0 {
        eprintln!(
            "warning: {} picture(s) could not be read back; they are grey in the sheets",
            done.missing_pictures
        );
    }
    if let Some(how) = &done.chosen {
        println!("{how}");
    }
    let scores = done
        .scores
        .map(|s| {
            format!(
                "; against the labels: accuracy {:.1}%, NMI {:.3}, ARI {:.3}",
                s.accuracy * 100.0,
                s.nmi,
                s.ari
            )
        })
        .unwrap_or_default();
    println!(
        "{} rows in {} clusters ({} outliers){scores}: {}",
        done.rows,
        done.k,
        done.outliers,
        done.report.display()
    );
    Ok(())
}

/// A progress line on standard error, unless quiet.
fn say(settings: &ClusterSettings, line: String) {
    if !settings.quiet {
        eprintln!("cluster: {line}");
    }
}

/// The clustering of standardised unit rows: whitened, their neighbour
/// graph laid out (or the whitened rows themselves), cut into k clusters,
/// k given or chosen. Returns k, how it was chosen, and the cut.
///
/// # Shapes
/// `unit [N, F]` -> a cluster per row
fn cut_rows(
    unit: &Array2<f32>,
    settings: &ClusterSettings,
) -> Result<(usize, Option<String>, Cut)> {
    let n = unit.nrows();
    let axes = reduce::whitened_axes(settings.dims, unit.ncols(), n);
    say(
        settings,
        format!(
            "{n} rows of {} features, whitened on {axes} principal axes",
            unit.ncols()
        ),
    );
    let space = reduce::whiten(unit, axes, settings.seed)?;
    say(
        settings,
        format!("{} nearest neighbours of each row", settings.neighbours),
    );
    let bar = crate::progress::bar(n as u64, settings.quiet, "neighbours");
    let (ids, dist) = reduce::nearest(&space, settings.neighbours, |rows| bar.inc(rows as u64));
    bar.finish_and_clear();
    let graph = umap::fuzzy_graph(&ids, &dist);
    drop((ids, dist));
    let points = match settings.method {
        Method::Umap => umap_layout(&space, &graph, settings)?,
        Method::Kmeans => space.mapv(f64::from),
    };
    drop(space);
    let (k, chosen) = match settings.k {
        Some(k) => (k, None),
        None => {
            let max_k = settings.max_k.min(n - 1);
            let (k, how) = choose_k(&points, &graph, max_k, settings.seed, settings.quiet)?;
            say(settings, how.clone());
            (k, Some(how))
        }
    };
    let cut = match (settings.method, settings.assign) {
        (Method::Umap, Assign::Mixture) => mixture_cut(&points, k, settings.seed)?,
        _ => kmeans_cut(&points, k, settings.seed)?,
    };
    Ok((k, chosen, cut))
}

/// The clusters of feature rows held in memory (standardised and scaled to
/// unit length as a collection's are), by `settings`: what `eval` reports
/// beside its k-means column.
///
/// # Shapes
/// `x [N, F]` -> `N` cluster indices
pub fn cluster_rows(x: &Array2<f32>, settings: &ClusterSettings) -> Result<Vec<usize>> {
    check_request(settings, x.nrows(), "the features")?;
    let unit = crate::eval::search::unit_rows_of(x.clone());
    Ok(cut_rows(&unit, settings)?.2.clusters)
}

/// Cluster the collection and write the outputs.
pub fn cluster(req: &ClusterRequest) -> Result<ClusterDone> {
    let collection = Collection::open(req.features)?;
    let n = collection.len();
    check_request(&req.settings, n, &req.features.display().to_string())?;
    let outputs = Outputs::in_folder(req.out);
    outputs.check_writable()?;
    let started = Instant::now();
    let (k, chosen, cut) = cut_rows(collection.unit_rows(), &req.settings)?;
    let labels = collection.labels()?;
    let report = Report::new(
        req,
        &collection,
        &cut,
        k,
        chosen.clone(),
        labels.as_ref(),
        started,
    );
    let pictures = outputs.write(req, &collection, &cut, &report, labels.as_ref())?;
    say(
        &req.settings,
        format!(
            "{k} clusters in {:.1}s{}",
            started.elapsed().as_secs_f64(),
            report
                .scores
                .as_ref()
                .map(|s| format!(
                    ": accuracy {:.1}%, NMI {:.3}, ARI {:.3}",
                    s.accuracy * 100.0,
                    s.nmi,
                    s.ari
                ))
                .unwrap_or_default()
        ),
    );
    Ok(ClusterDone {
        rows: n,
        k,
        chosen,
        scores: report.scores.clone(),
        outliers: report.outliers,
        report: outputs.json,
        missing_pictures: pictures,
    })
}

/// The request fits the collection.
fn check_request(settings: &ClusterSettings, rows: usize, what: &str) -> Result<()> {
    if rows < 3 {
        bail!("{what} holds {rows} rows: clustering needs at least 3");
    }
    match settings.k {
        Some(k) if k < 2 || k > rows - 1 => bail!(
            "--k {k}: give 2 to {} (one fewer than the collection's {rows} rows)",
            rows - 1
        ),
        _ => {}
    }
    if settings.k.is_none() && settings.max_k < 2 {
        bail!("--max-k {}: give 2 or more", settings.max_k);
    }
    if settings.neighbours < 2 {
        bail!("--neighbours {}: give 2 or more", settings.neighbours);
    }
    if settings.dims == Some(0) || settings.layout_dims == 0 {
        bail!("--dims and --layout-dims must be at least 1");
    }
    Ok(())
}

/// The UMAP layout of the whitened rows' neighbour graph.
///
/// # Shapes
/// `space [N, D]` -> `[N, layout_dims]`
fn umap_layout(
    space: &Array2<f32>,
    graph: &umap::FuzzyGraph,
    settings: &ClusterSettings,
) -> Result<Array2<f64>> {
    let n = space.nrows();
    let opts = umap::LayoutOptions {
        dims: settings.layout_dims,
        epochs: if n <= 10_000 { 500 } else { 200 },
        seed: settings.seed,
    };
    let bar = crate::progress::bar(opts.epochs as u64, settings.quiet, "UMAP");
    let start = umap::spectral_start(graph, opts.dims, settings.seed)
        .unwrap_or_else(|| reduce::start_layout(space, opts.dims));
    let y = umap::layout(graph, start, &opts, || bar.inc(1));
    bar.finish_and_clear();
    if y.iter().any(|v| !v.is_finite()) {
        bail!("the UMAP layout diverged (a value is not finite); try another --seed");
    }
    Ok(Array2::from_shape_vec((n, opts.dims), y)?.mapv(f64::from))
}

/// Rows k-means is fitted on while choosing k.
const CHOOSE_ROWS: usize = 20_000;

/// The k in `2..=max_k` whose k-means cut has the highest modularity on
/// the neighbour graph (the share of the graph's weight inside clusters
/// beyond what chance would put there), and a sentence saying so.
/// (The mean silhouette chooses k = 2 on MNIST's UMAP layout, where
/// groups of digits lie near each other.)
fn choose_k(
    points: &Array2<f64>,
    graph: &umap::FuzzyGraph,
    max_k: usize,
    seed: u64,
    quiet: bool,
) -> Result<(usize, String)> {
    let n = points.nrows();
    let mut rows: Vec<usize> = (0..n).collect();
    rows.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5111));
    rows.truncate(CHOOSE_ROWS);
    let fit = points.select(Axis(0), &rows);
    let bar = crate::progress::bar((max_k - 1) as u64, quiet, "choosing k");
    let mut best = (2, f64::NEG_INFINITY);
    for k in 2..=max_k {
        let centres = kmeans_centres(&fit, k, seed, 3)?;
        let assigned: Vec<usize> = points
            .outer_iter()
            .map(|row| by_distance(row, &centres)[0].1)
            .collect();
        let q = modularity(graph, &assigned, k);
        if q > best.1 {
            best = (k, q);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((
        best.0,
        format!(
            "k = {} has the highest modularity ({:.3}) on the neighbour graph of k = 2 to {max_k}",
            best.0, best.1
        ),
    ))
}

/// Newman's modularity of a partition of a weighted graph:
/// `sum over clusters of (inside / total) - (degree / total)^2`.
pub fn modularity(graph: &umap::FuzzyGraph, clusters: &[usize], k: usize) -> f64 {
    let mut inside = vec![0f64; k];
    let mut degree = vec![0f64; k];
    let mut total = 0f64;
    for &(i, j, w) in &graph.edges {
        let (ci, cj) = (clusters[i as usize], clusters[j as usize]);
        let w = f64::from(w);
        total += w;
        degree[ci] += w;
        if ci == cj {
            inside[ci] += w;
        }
    }
    if total <= 0.0 {
        return 0.0;
    }
    (0..k)
        .map(|c| inside[c] / total - (degree[c] / total).powi(2))
        .sum()
}

/// The centres of seeded k-means (linfa-clustering, k-means++ starts),
/// the best of `runs` starts.
///
/// # Shapes
/// `x [N, D]` -> `[k, D]`
fn kmeans_centres(x: &Array2<f64>, k: usize, seed: u64, runs: usize) -> Result<Array2<f64>> {
    let model = KMeans::params_with_rng(k, ChaCha8Rng::seed_from_u64(seed))
        .n_runs(runs)
        .max_n_iterations(300)
        .tolerance(1e-6)
        .fit(&DatasetBase::from(x.clone()))
        .with_context(|| format!("k-means with k = {k} did not converge"))?;
    Ok(model.centroids().clone())
}

/// Distances from `row` to every centre, nearest first (ties to the
/// lower centre).
fn by_distance(row: ndarray::ArrayView1<f64>, centres: &Array2<f64>) -> Vec<(f64, usize)> {
    let mut d: Vec<(f64, usize)> = centres
        .outer_iter()
        .enumerate()
        .map(|(c, centre)| ((&row - &centre).mapv(|v| v * v).sum().sqrt(), c))
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d
}

/// Seeded k-means (best of 10 starts), clusters renumbered by size; a
/// row's confidence is 1 - (distance to its centre) / (distance to the
/// next centre).
fn kmeans_cut(points: &Array2<f64>, k: usize, seed: u64) -> Result<Cut> {
    let centres = kmeans_centres(points, k, seed, 10)?;
    let n = points.nrows();
    let (mut raw, mut near, mut confidence) = (vec![0; n], vec![0f32; n], vec![0f32; n]);
    for (i, row) in points.outer_iter().enumerate() {
        let d = by_distance(row, &centres);
        raw[i] = d[0].1;
        near[i] = d[0].0 as f32;
        let second = d.get(1).map_or(f64::INFINITY, |v| v.0);
        confidence[i] = if second > 0.0 && second.is_finite() {
            (1.0 - d[0].0 / second).clamp(0.0, 1.0) as f32
        } else {
            1.0
        };
    }
    Ok(renumbered(raw, near, confidence, k))
}

/// A Gaussian mixture with full covariances (linfa-clustering, seeded,
/// started from k-means, best of 3 starts): each row in the component of
/// highest posterior probability, which is its confidence.
fn mixture_cut(points: &Array2<f64>, k: usize, seed: u64) -> Result<Cut> {
    let model = GaussianMixtureModel::params_with_rng(k, ChaCha8Rng::seed_from_u64(seed))
        .n_runs(3)
        .tolerance(1e-4)
        .max_n_iterations(300)
        .reg_covariance(1e-6)
        .fit(&DatasetBase::from(points.clone()))
        .with_context(|| format!("the Gaussian mixture with k = {k} did not converge"))?;
    let proba = model.predict_proba(points);
    let means = model.means();
    let n = points.nrows();
    let (mut raw, mut near, mut confidence) = (vec![0; n], vec![0f32; n], vec![0f32; n]);
    for (i, p) in proba.outer_iter().enumerate() {
        let (best, &pb) = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .expect("k >= 2");
        raw[i] = best;
        confidence[i] = pb.clamp(0.0, 1.0) as f32;
        near[i] = (&points.row(i) - &means.row(best))
            .mapv(|v| v * v)
            .sum()
            .sqrt() as f32;
    }
    Ok(renumbered(raw, near, confidence, k))
}

/// The cut with its clusters numbered by size, largest first (ties by
/// the lower original number).
fn renumbered(raw: Vec<usize>, near: Vec<f32>, confidence: Vec<f32>, k: usize) -> Cut {
    let mut sizes: Vec<(usize, usize)> = (0..k)
        .map(|c| (raw.iter().filter(|&&r| r == c).count(), c))
        .collect();
    sizes.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut renumber = vec![0; k];
    for (new, &(_, old)) in sizes.iter().enumerate() {
        renumber[old] = new;
    }
    Cut {
        clusters: raw.into_iter().map(|c| renumber[c]).collect(),
        near,
        confidence,
    }
}

impl Cut {
    /// Rows farther from their centre than 3 times the median distance
    /// of their cluster's rows.
    fn outliers(&self, k: usize) -> Vec<bool> {
        let mut medians = vec![0f32; k];
        for (c, m) in medians.iter_mut().enumerate() {
            let mut d: Vec<f32> = (0..self.clusters.len())
                .filter(|&i| self.clusters[i] == c)
                .map(|i| self.near[i])
                .collect();
            if !d.is_empty() {
                let mid = d.len() / 2;
                d.select_nth_unstable_by(mid, f32::total_cmp);
                *m = d[mid];
            }
        }
        (0..self.clusters.len())
            .map(|i| self.near[i] > 3.0 * medians[self.clusters[i]].max(1e-12))
            .collect()
    }

    /// Each cluster's rows, nearest to its centre first.
    fn central(&self, k: usize) -> Vec<Vec<usize>> {
        let mut by: Vec<Vec<usize>> = vec![Vec::new(); k];
        for (i, &c) in self.clusters.iter().enumerate() {
            by[c].push(i);
        }
        for rows in &mut by {
            rows.sort_by(|&a, &b| self.near[a].total_cmp(&self.near[b]).then(a.cmp(&b)));
        }
        by
    }
}

/// `clusters.json`: how the clusters were found, their sizes and scores.
#[derive(Serialize)]
struct Report {
    features: PathBuf,
    rows: usize,
    method: &'static str,
    pipeline: String,
    whitened_axes: usize,
    neighbours: usize,
    layout_dims: usize,
    seed: u64,
    k: usize,
    k_chosen: Option<String>,
    sizes: Vec<usize>,
    outliers: usize,
    scores: Option<Scores>,
    classes: Option<Vec<String>>,
    /// `confusion[c][l]`: rows of cluster c and class l.
    confusion: Option<Vec<Vec<usize>>>,
    /// The class each cluster is matched to (accuracy's map).
    matched_class: Option<Vec<Option<String>>>,
    seconds: f64,
    peak_memory_mib: Option<f64>,
    #[serde(skip)]
    outlier_flags: Vec<bool>,
    #[serde(skip)]
    started: Instant,
}

impl Report {
    fn new(
        req: &ClusterRequest,
        collection: &Collection,
        cut: &Cut,
        k: usize,
        k_chosen: Option<String>,
        labels: Option<&(Vec<usize>, Vec<String>)>,
        started: Instant,
    ) -> Self {
        let outlier_flags = cut.outliers(k);
        let mut sizes = vec![0; k];
        for &c in &cut.clusters {
            sizes[c] += 1;
        }
        let confusion =
            labels.map(|(l, names)| score::contingency(&cut.clusters, l, k, names.len()));
        let matched_class = confusion.as_ref().zip(labels).map(|(counts, (_, names))| {
            score::cluster_classes(counts)
                .into_iter()
                .map(|l| l.map(|l| names[l].clone()))
                .collect()
        });
        Report {
            features: req.features.to_path_buf(),
            rows: collection.len(),
            method: req.settings.method.name(),
            pipeline: pipeline(req.settings.method, req.settings.assign),
            whitened_axes: reduce::whitened_axes(
                req.settings.dims,
                collection.width(),
                collection.len(),
            ),
            neighbours: req.settings.neighbours,
            layout_dims: req.settings.layout_dims,
            seed: req.settings.seed,
            k,
            k_chosen,
            sizes,
            outliers: outlier_flags.iter().filter(|&&o| o).count(),
            scores: labels.map(|(l, names)| score::scores(&cut.clusters, l, k, names.len())),
            classes: labels.map(|(_, names)| names.clone()),
            confusion,
            matched_class,
            seconds: 0.0,
            peak_memory_mib: None,
            outlier_flags,
            started,
        }
    }

    /// `clusters.md`: the same, to read.
    fn markdown(&self) -> String {
        let mut md = format!(
            "# Clusters of {}\n\n{} rows, {} clusters ({}).\n\n{}\n\n",
            self.features.display(),
            self.rows,
            self.k,
            self.k_chosen.as_deref().unwrap_or("k given"),
            self.pipeline
        );
        if let Some(s) = &self.scores {
            md += &format!(
                "Against the labels (used only to score): accuracy {:.1}% (Hungarian-matched), NMI {:.3}, ARI {:.3}.\n\n",
                s.accuracy * 100.0,
                s.nmi,
                s.ari
            );
        }
        md += "| cluster | rows | matched class |\n|---|---|---|\n";
        for (c, size) in self.sizes.iter().enumerate() {
            let class = self
                .matched_class
                .as_ref()
                .and_then(|m| m[c].clone())
                .unwrap_or_else(|| "-".into());
            md += &format!("| {c} | {size} | {class} |\n");
        }
        md += &format!(
            "\n{} rows are outliers (farther from their cluster's centre than 3 times its median). {:.1} s, peak memory {}.\n",
            self.outliers,
            self.seconds,
            self.peak_memory_mib
                .map_or("unknown".into(), |m| format!("{m:.0} MiB"))
        );
        md
    }
}

/// One sentence on what the method does.
fn pipeline(method: Method, assign: Assign) -> String {
    let start = "Features standardised, whitened by PCA and scaled to unit length";
    match (method, assign) {
        (Method::Umap, Assign::Mixture) => format!("{start}; their exact nearest-neighbour graph laid out by UMAP from its spectral embedding (min_dist 0, seeded); a Gaussian mixture (full covariances, started from k-means) on the layout."),
        (Method::Umap, Assign::Kmeans) => format!("{start}; their exact nearest-neighbour graph laid out by UMAP from its spectral embedding (min_dist 0, seeded); k-means (10 starts) on the layout."),
        (Method::Kmeans, _) => format!("{start}; k-means (10 starts) on them."),
    }
}

/// The files a clustering writes.
struct Outputs {
    npy: PathBuf,
    csv: PathBuf,
    json: PathBuf,
    md: PathBuf,
    overview: PathBuf,
    confusion: PathBuf,
    sheets: PathBuf,
}

impl Outputs {
    fn in_folder(out: &Path) -> Self {
        Outputs {
            npy: out.join("clusters.npy"),
            csv: out.join("clusters.csv"),
            json: out.join("clusters.json"),
            md: out.join("clusters.md"),
            overview: out.join("clusters.png"),
            confusion: out.join("confusion.png"),
            sheets: out.join("sheets"),
        }
    }

    fn check_writable(&self) -> Result<()> {
        for p in [&self.npy, &self.csv, &self.json, &self.md, &self.overview] {
            crate::atomic::check_writable(p, "--out")?;
        }
        Ok(())
    }

    /// Everything, written whole first and renamed together; returns the
    /// pictures that could not be read back.
    fn write(
        &self,
        req: &ClusterRequest,
        collection: &Collection,
        cut: &Cut,
        report: &Report,
        labels: Option<&(Vec<usize>, Vec<String>)>,
    ) -> Result<usize> {
        let k = report.k;
        let canvas = collection.canvas().ok().flatten();
        let central = cut.central(k);
        let mut pictures: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        let mut missing = 0;
        std::fs::create_dir_all(&self.sheets)
            .with_context(|| format!("cannot create {}", self.sheets.display()))?;
        let bar = crate::progress::bar(k as u64 + 1, req.settings.quiet, "sheets");
        for (c, rows) in central.iter().enumerate() {
            let drawn = sheets::sheet(collection, canvas, &rows[..rows.len().min(64)])?;
            missing += drawn.missing;
            pictures.push((self.sheets.join(format!("cluster_{c:02}.png")), drawn.png));
            bar.inc(1);
        }
        let overview = sheets::overview(collection, canvas, &central, 16)?;
        bar.finish_and_clear();
        let confusion = match (&report.confusion, labels) {
            (Some(counts), Some((_, names))) => {
                Some(confusion_png(counts, names, report, &self.confusion)?)
            }
            _ => None,
        };
        let mut files: Vec<(PathBuf, Vec<u8>)> = vec![
            (self.npy.clone(), npy_bytes(&cut.clusters)?),
            (
                self.csv.clone(),
                csv_bytes(collection, cut, &report.outlier_flags)?,
            ),
            (self.overview.clone(), overview.png),
        ];
        files.extend(pictures);
        match confusion {
            Some(png) => files.push((self.confusion.clone(), png)),
            // an earlier run's, with labels, does not describe these clusters
            None => crate::atomic::remove_stale(&self.confusion),
        }
        let finished = finish(report);
        files.push((self.md.clone(), finished.markdown().into_bytes()));
        files.push((self.json.clone(), serde_json::to_vec_pretty(&finished)?));
        let borrowed: Vec<(&Path, &[u8])> = files
            .iter()
            .map(|(p, b)| (p.as_path(), b.as_slice()))
            .collect();
        crate::atomic::write_together(&borrowed)?;
        // only once the new clusters are published: until then the old
        // ones keep their sheets
        remove_stale_sheets(&self.sheets, k);
        Ok(missing + overview.missing)
    }
}

/// `confusion.png`'s bytes: clusters (named by their matched class)
/// against classes, drawn beside `path` and read back, so that it is
/// published with the other files.
fn confusion_png(
    counts: &[Vec<usize>],
    names: &[String],
    report: &Report,
    path: &Path,
) -> Result<Vec<u8>> {
    let matched = report.matched_class.clone().unwrap_or_default();
    let rows: Vec<String> = (0..counts.len())
        .map(|c| match matched.get(c).cloned().flatten() {
            Some(class) => format!("{c}={class}"),
            None => c.to_string(),
        })
        .collect();
    let drawn = crate::atomic::temp_path(path, ".drawn.png");
    crate::eval::plots::heatmap(
        counts,
        (&rows, names),
        "Clusters (rows) against classes",
        ("class", "cluster = matched class"),
        &drawn,
    )?;
    let bytes = std::fs::read(&drawn).with_context(|| format!("cannot read {}", drawn.display()));
    let _ = std::fs::remove_file(&drawn);
    bytes
}

/// The report with its time and memory filled in.
fn finish(report: &Report) -> Report {
    Report {
        features: report.features.clone(),
        method: report.method,
        pipeline: report.pipeline.clone(),
        k_chosen: report.k_chosen.clone(),
        sizes: report.sizes.clone(),
        scores: report.scores.clone(),
        classes: report.classes.clone(),
        confusion: report.confusion.clone(),
        matched_class: report.matched_class.clone(),
        seconds: report.started.elapsed().as_secs_f64(),
        peak_memory_mib: crate::progress::peak_rss_mib(),
        outlier_flags: Vec::new(),
        ..*report
    }
}

/// Sheets of clusters `k` and above, left by an earlier clustering.
fn remove_stale_sheets(dir: &Path, k: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let number = name
            .strip_prefix("cluster_")
            .and_then(|s| s.strip_suffix(".png"))
            .and_then(|s| s.parse::<usize>().ok());
        if number.is_some_and(|c| c >= k) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn npy_bytes(clusters: &[usize]) -> Result<Vec<u8>> {
    use ndarray_npy::WriteNpyExt;
    let a: Array1<i64> = clusters.iter().map(|&c| c as i64).collect();
    let mut bytes = Vec::new();
    a.write_npy(&mut bytes)?;
    Ok(bytes)
}

/// `clusters.csv` through a CSV writer (file names may hold commas).
fn csv_bytes(collection: &Collection, cut: &Cut, outliers: &[bool]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["row", "file", "cluster", "confidence", "outlier"])?;
    for (i, &c) in cut.clusters.iter().enumerate() {
        w.write_record([
            i.to_string().as_str(),
            collection.files[i].as_str(),
            c.to_string().as_str(),
            format!("{:.4}", cut.confidence[i]).as_str(),
            if outliers[i] { "true" } else { "false" },
        ])?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}
