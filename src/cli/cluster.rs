//! `eqae cluster`: the groups in an embedded collection, found without
//! labels (see [`crate::eval::cluster`]).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::args::{DeviceArgs, HeadArg};
use super::embed::{EmbedArgs, SplitArg};
use crate::eval::cluster::{cluster_and_report, Assign, ClusterRequest, ClusterSettings, Method};

/// What k-means cuts.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MethodArg {
    /// The UMAP layout of the whitened features' neighbour graph (the most
    /// accurate: see docs/clustering.md).
    Umap,
    /// The whitened features themselves.
    Kmeans,
}

/// How the layout is cut into clusters.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AssignArg {
    /// A Gaussian mixture with full covariances, started from k-means.
    Mixture,
    /// k-means.
    Kmeans,
}

/// Arguments of `eqae cluster`.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// The collection: an output of `eqae embed` (its `.npy`, with
    /// `_manifest.json` beside it, and `_files.txt` or `_labels.npy` where
    /// the embedding wrote them).
    #[arg(long, required_unless_present = "run", conflicts_with = "run")]
    pub features: Option<PathBuf>,
    /// Or a trained run: its features of --split or --images are written
    /// to `<out>/features.npy` first (as `eqae embed` writes them), then
    /// clustered.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// With --run: the split of the run's data set.
    #[arg(
        long,
        value_enum,
        default_value = "test",
        requires = "run",
        conflicts_with = "images"
    )]
    pub split: SplitArg,
    /// With --run: a folder of images instead.
    #[arg(long, requires = "run")]
    pub images: Option<PathBuf>,
    /// With --run: which features (default: the model's first head).
    #[arg(long, value_enum, requires = "run")]
    pub head: Option<HeadArg>,
    /// Folder for `clusters.npy`, `clusters.csv`, `clusters.json`,
    /// `clusters.md`, `clusters.png`, `sheets/` and `confusion.png`.
    #[arg(long, default_value = "clusters")]
    pub out: PathBuf,
    /// Number of clusters; without it, the k of 2 to --max-k with the best
    /// mean silhouette.
    #[arg(long)]
    pub k: Option<usize>,
    /// Largest k tried when --k is not given.
    #[arg(long, default_value_t = crate::eval::cluster::DEFAULT_MAX_K)]
    pub max_k: usize,
    /// What k-means cuts.
    #[arg(long, value_enum, default_value = "umap")]
    pub method: MethodArg,
    /// How the UMAP layout is cut into clusters.
    #[arg(long, value_enum, default_value = "mixture")]
    pub assign: AssignArg,
    /// Principal axes kept by the whitening (default: all of them, up to an
    /// eighth of the rows).
    #[arg(long)]
    pub dims: Option<usize>,
    /// Neighbours of each row in the graph UMAP lays out.
    #[arg(long, default_value_t = crate::eval::cluster::DEFAULT_NEIGHBOURS)]
    pub neighbours: usize,
    /// Dimensions of the UMAP layout.
    #[arg(long, default_value_t = crate::eval::cluster::DEFAULT_LAYOUT_DIMS)]
    pub layout_dims: usize,
    /// Seed of the layout, the k-means starts and the samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No progress bars or lines.
    #[arg(long)]
    pub quiet: bool,
}

/// Run `eqae cluster`.
pub fn run(args: ClusterArgs) -> Result<()> {
    let (features, embed) = match (&args.features, &args.run) {
        (Some(f), _) => (f.clone(), None),
        (None, Some(run)) => {
            let out = args.out.join("features.npy");
            let embed = EmbedArgs {
                run: run.clone(),
                split: args.split,
                images: args.images.clone(),
                head: args.head,
                out: out.clone(),
                skip_bad: false,
                shard: None,
                resume: false,
                quiet: args.quiet,
                device: DeviceArgs::default(),
            };
            (out, Some(embed.request()))
        }
        (None, None) => anyhow::bail!("give --features, or --run with --split or --images"),
    };
    let settings = ClusterSettings {
        k: args.k,
        max_k: args.max_k,
        method: match args.method {
            MethodArg::Umap => Method::Umap,
            MethodArg::Kmeans => Method::Kmeans,
        },
        assign: match args.assign {
            AssignArg::Mixture => Assign::Mixture,
            AssignArg::Kmeans => Assign::Kmeans,
        },
        dims: args.dims,
        neighbours: args.neighbours,
        layout_dims: args.layout_dims,
        seed: args.seed,
        quiet: args.quiet,
    };
    let request = ClusterRequest {
        features: &features,
        out: &args.out,
        settings,
    };
    cluster_and_report(embed.as_ref(), &request)
}
