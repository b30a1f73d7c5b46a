//! A paper table end to end: train each row's model where it is missing,
//! evaluate every row over several seeds, write the reports as rows finish.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::tensor::Device;

use super::evaluate::row_group;
use super::pipeline::{evaluate_head, Extras, HeadResult, Studies, StudyFiles};
use super::report::spelled::group_label;
use super::report::{markdown, write_reports, RowResult};
use super::row_cache::{row_key, stable_key, RowCache};
use super::tables::{PaperRow, PaperTable, Preset};
use crate::config::Config;
use crate::data::{load_splits, Splits};
use crate::eval::features::Head;
use crate::eval::figures::figures;
use crate::model::Autoencoder;
use crate::train::{trained_model, RunDir};

/// Options of a table reproduction.
#[derive(Clone, Debug)]
pub struct TableOptions {
    /// Which table.
    pub table: PaperTable,
    /// Quick or full.
    pub preset: Preset,
    /// Seeds first_seed..seeds.
    pub seeds: u64,
    /// The first seed evaluated (0 but where earlier seeds were evaluated
    /// elsewhere, their rows given in `earlier`).
    pub first_seed: u64,
    /// Earlier reports of this table (`<stem>.json`), whose rows are
    /// reported with this run's: a table over seeds trained at different
    /// times or on different machines. A (row, seed) evaluated here replaces the same
    /// one read from a file.
    pub earlier: Vec<PathBuf>,
    /// Where the row configs live.
    pub configs: PathBuf,
    /// Where runs go (`<runs>/table<N>-<preset>/<name>-s<seed>`).
    pub runs: PathBuf,
    /// Where the report goes.
    pub out: PathBuf,
    /// No progress bars.
    pub quiet: bool,
    /// Train (or resume) every row's model for every seed, evaluate nothing:
    /// the long part of a reproduction, run first so that the evaluation can
    /// follow later (or with other probe settings) without training again.
    pub train_only: bool,
    /// Studies of seed 0's rows (label efficiency, rotation robustness, the
    /// attention rows' pose), with their confusion matrices, written to
    /// `<out>/<stem>_studies/`.
    pub studies: Studies,
    /// Evaluate only the rows whose models are trained, leaving the others
    /// out (no training): for evaluating while the trainings still run.
    pub skip_untrained: bool,
}

impl TableOptions {
    /// `table<N>_<preset>`: the stem of the report and figure files.
    pub fn stem(&self) -> String {
        format!("table{}_{}", self.table.number(), self.preset.name())
    }

    /// The report's title.
    pub fn title(&self) -> String {
        format!("{}, preset {:?}", self.table.title(), self.preset)
    }
}

/// The run folder of one row config and seed:
/// `<runs>/table<N>-<preset>/<name>-s<seed>`.
fn row_run(opts: &TableOptions, config: &Config) -> RunDir {
    let root = opts.runs.join(format!(
        "table{}-{}",
        opts.table.number(),
        opts.preset.name()
    ));
    RunDir::new(root.join(&config.name))
}

/// Reproduce a table; returns the per-seed results (also written to disk
/// after every row, so an interrupted reproduction keeps what it did).
pub fn reproduce(opts: &TableOptions, device: &Device) -> Result<Vec<RowResult>> {
    let rows = opts.table.rows();
    if opts.first_seed >= opts.seeds {
        bail!(
            "--first-seed {} must be below --seeds {} (seeds first..seeds are evaluated)",
            opts.first_seed,
            opts.seeds
        );
    }
    let earlier = earlier_rows(opts)?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let mut data_cache: BTreeMap<String, Splits> = BTreeMap::new();
    let mut results = Vec::new();
    let mut figure_rows = FigureRows::default();
    let mut seed_studies = StudyFiles::new(&opts.out.join(format!("{}_studies", opts.stem())));
    let cache = RowCache::new(&opts.out, &opts.stem());
    for seed in opts.first_seed..opts.seeds {
        // each row config's trained model and run, or None where it is
        // not trained and --skip-untrained leaves it out
        let mut trained: BTreeMap<&str, Option<Trained>> = BTreeMap::new();
        for row in &rows {
            if !trained.contains_key(row.config) {
                let model = train_row_config(opts, row.config, seed, &mut data_cache, device)?;
                trained.insert(row.config, model);
            }
            if opts.train_only {
                continue;
            }
            let Some(model) = &trained[row.config] else {
                continue;
            };
            let config = &model.0;
            let data = &data_cache[&stable_key(&config.data)?];
            let (done, f_test, with_studies) =
                evaluate_row(opts, &cache, row, seed, model, data, device)?;
            if with_studies {
                for w in seed_studies.add(&done)? {
                    eprintln!("warning: {w}");
                }
            }
            let group = row_group(config);
            if let Some(f_test) = f_test {
                let suffix = row
                    .group
                    .map(|_| format!(" {}", group_label(group)))
                    .unwrap_or_default();
                figure_rows.push(
                    format!("{}{suffix}", row.head.label()),
                    f_test,
                    data.test.labels.clone(),
                    done.scores.logistic,
                );
            }
            let result = RowResult::new(
                (row.config, row.head),
                group,
                seed,
                (done.features, &done.scores),
                (row.logistic, row.mlp),
            );
            eprintln!(
                "table {} seed {seed}: {} {}: {}",
                opts.table.number(),
                result.model,
                group_label(result.group),
                result.scores.summary()
            );
            results.push(result);
            write_reports(
                &opts.out,
                &opts.stem(),
                &opts.title(),
                &merged(opts, &earlier, &results),
            )?;
        }
    }
    if opts.train_only {
        return Ok(results);
    }
    finish(opts, merged(opts, &earlier, &results), &figure_rows)
}

/// A row config's trained model: its config (this seed's), the model and its run.
type Trained = (Config, Autoencoder, RunDir);

/// Seed 0's test features of every row, for the figures, and each one's
/// logistic accuracy (the best row is drawn beside the baseline).
#[derive(Default)]
struct FigureRows {
    rows: Vec<(String, ndarray::Array2<f32>, Vec<usize>)>,
    logistic: Vec<f64>,
}

impl FigureRows {
    fn push(&mut self, label: String, f: ndarray::Array2<f32>, labels: Vec<usize>, logistic: f64) {
        self.rows.push((label, f, labels));
        self.logistic.push(logistic);
    }
}

/// Train (or load) the model of row config `name` for `seed`; None where
/// it is not trained and --skip-untrained leaves it out.
fn train_row_config(
    opts: &TableOptions,
    name: &str,
    seed: u64,
    data_cache: &mut BTreeMap<String, Splits>,
    device: &Device,
) -> Result<Option<Trained>> {
    let path = opts.configs.join(format!("{name}.toml"));
    let mut config = Config::load(&path)?;
    opts.preset.apply(&mut config);
    config.train.seed = seed;
    config.name = format!("{name}-s{seed}");
    let run = row_run(opts, &config);
    if opts.skip_untrained && !run.model().exists() {
        eprintln!(
            "table {} seed {seed}: {} is not trained yet; its rows are left out (--skip-untrained)",
            opts.table.number(),
            config.name
        );
        return Ok(None);
    }
    let key = stable_key(&config.data)?;
    if !data_cache.contains_key(&key) {
        data_cache.insert(key.clone(), load_splits(&config.data)?);
    }
    let model = trained_model(&config, &run, &data_cache[&key], device, opts.quiet)
        .with_context(|| format!("row config {}", path.display()))?;
    Ok(Some((config, model, run)))
}

/// One row's scores for `seed`: read from the row cache where they were
/// computed before with the same inputs, else evaluated and stored. Also
/// seed 0's test features (for the figures), and whether the row carries
/// the studies.
fn evaluate_row(
    opts: &TableOptions,
    cache: &RowCache,
    row: &PaperRow,
    seed: u64,
    (config, model, run): &Trained,
    data: &Splits,
    device: &Device,
) -> Result<(HeadResult, Option<ndarray::Array2<f32>>, bool)> {
    // seed 0's rows carry the studies asked for, with their confusion
    // matrices; the attention head its pose
    let with_studies = seed == 0 && opts.studies.any();
    let no_studies = Studies::default();
    let extras = Extras {
        studies: if with_studies {
            &opts.studies
        } else {
            &no_studies
        },
        pose: with_studies && opts.studies.pose && row.head == Head::Attention,
        confusions: with_studies,
    };
    let name = format!("{}_{}", config.name, row.head.name());
    let key = row_key(&run.model(), config, row.head, &extras)?;
    let kept = cache.load::<HeadResult>(&name, &key).and_then(|done| {
        if seed > 0 {
            return Some((done, None));
        }
        cache.load_features(&name).map(|f| (done, Some(f)))
    });
    if let Some((done, f_test)) = kept {
        eprintln!(
            "table {} seed {seed}: {name}: evaluated before, read from {}",
            opts.table.number(),
            cache.dir().display()
        );
        return Ok((done, f_test, with_studies));
    }
    let (done, f_test) =
        evaluate_head((model, config), row.head, data, extras, device, opts.quiet)?;
    // seed 0's test features are kept for the figures
    let f_test = (seed == 0).then_some(f_test);
    cache.store(&name, &key, &done, f_test.as_ref())?;
    Ok((done, f_test, with_studies))
}

/// The final reports, and seed 0's figures where this run evaluated it.
fn finish(
    opts: &TableOptions,
    results: Vec<RowResult>,
    figure_rows: &FigureRows,
) -> Result<Vec<RowResult>> {
    if results.is_empty() {
        bail!(
            "table {}: no row evaluated (no model trained, and no --with-rows report)",
            opts.table.number()
        );
    }
    write_reports(&opts.out, &opts.stem(), &opts.title(), &results)?;
    if figure_rows.rows.is_empty() {
        // seed 0 was evaluated elsewhere (--first-seed, --with-rows): its
        // figures are that run's
        return Ok(results);
    }
    let logistic = &figure_rows.logistic;
    let best = (0..logistic.len())
        .max_by(|&a, &b| logistic[a].total_cmp(&logistic[b]))
        .unwrap_or(0);
    for warning in figures(&figure_rows.rows, best, &opts.out, &opts.stem()) {
        eprintln!("warning: {warning}");
    }
    Ok(results)
}

/// Where `result` stands in `opts`'s table: the index of its row (config
/// and head label), or None when it is not one of the table's rows.
fn row_index(opts: &TableOptions, result: &RowResult) -> Option<usize> {
    opts.table
        .rows()
        .iter()
        .position(|row| row.config == result.config && row.head == result.head)
}

/// The rows of the earlier reports given with --with-rows, each checked to
/// be a row of this table and given once.
fn earlier_rows(opts: &TableOptions) -> Result<Vec<RowResult>> {
    let mut rows: Vec<(RowResult, &PathBuf)> = Vec::new();
    let name = format!("{}.json", opts.stem());
    for path in &opts.earlier {
        // rows carry no preset: the file name is what tells a quick
        // table's rows from a full one's
        if path.file_name().and_then(|n| n.to_str()) != Some(name.as_str()) {
            bail!(
                "--with-rows: {} is not named {name}: give reports of the same table and preset",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--with-rows: cannot read {}", path.display()))?;
        let read: Vec<RowResult> = serde_json::from_str(&text)
            .with_context(|| format!("--with-rows: {} is not a table report", path.display()))?;
        for r in read {
            if row_index(opts, &r).is_none() {
                bail!(
                    "--with-rows: {} has a row ({} {}, config {}) that table {} does not have",
                    path.display(),
                    r.model,
                    group_label(r.group),
                    r.config,
                    opts.table.number()
                );
            }
            if let Some((_, first)) = rows.iter().find(|(x, _)| x.same_row_and_seed(&r)) {
                bail!(
                    "--with-rows: {} {} seed {} is in both {} and {}",
                    r.model,
                    group_label(r.group),
                    r.seed,
                    first.display(),
                    path.display()
                );
            }
            rows.push((r, path));
        }
    }
    Ok(rows.into_iter().map(|(r, _)| r).collect())
}

/// The earlier rows that this run did not evaluate again, and this run's,
/// in the table's row order, seeds ascending within a row.
fn merged(opts: &TableOptions, earlier: &[RowResult], results: &[RowResult]) -> Vec<RowResult> {
    let evaluated_now = |r: &RowResult| results.iter().any(|x| x.same_row_and_seed(r));
    let mut all: Vec<RowResult> = earlier
        .iter()
        .filter(|r| !evaluated_now(r))
        .chain(results)
        .cloned()
        .collect();
    all.sort_by_key(|r| (row_index(opts, r).unwrap_or(usize::MAX), r.seed));
    all
}

/// Reproduce the table (see [`reproduce`]) and print its Markdown (or,
/// with `train_only`, what was trained).
pub fn reproduce_and_print(opts: &TableOptions, device: &Device) -> Result<()> {
    let results = reproduce(opts, device)?;
    if opts.train_only {
        println!(
            "trained every row of table {} (preset {}) for {} seed(s)",
            opts.table.number(),
            opts.preset.name(),
            opts.seeds
        );
        return Ok(());
    }
    println!("{}", table_markdown(opts, &results));
    Ok(())
}

/// The table's Markdown for these results.
pub fn table_markdown(opts: &TableOptions, results: &[RowResult]) -> String {
    markdown(&opts.title(), results)
}
