//! `eqae check`: the measured equivariance error of every layer and
//! group element of a model, and (`--angles`) how far each invariant
//! head's features move over the whole circle.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::{Device, Distribution, Tensor};

use super::invariance::{feature_change_over_angles, group_mirrors, upright_test_set, AngleChange};
use super::report::csv_text;
use crate::config::Config;
use crate::data::{augment, synthetic};
use crate::eval::features::Head;
use crate::eval::plots;
use crate::group::resample::Resampling;
use crate::model::check::{check_model, CheckRow};
use crate::model::{Autoencoder, EquivariantAutoencoder};
use crate::train::{images_tensor, RunDir};

/// Where the model to check comes from.
pub enum ModelSource {
    /// The trained model of a run folder.
    Run(PathBuf),
    /// An untrained model built from a config.
    Config(Box<Config>),
}

/// What `eqae check` measures and where it writes.
pub struct CheckRequest {
    pub source: ModelSource,
    /// Images per input kind.
    pub batch: usize,
    /// Write the rows as JSON here too.
    pub json: Option<PathBuf>,
    /// The invariance study over the circle, when asked for.
    pub angles: Option<AngleRequest>,
}

/// `--angles`: every multiple of `step` degrees, on the first `images`
/// upright test images, written to `out`.
pub struct AngleRequest {
    pub step: f64,
    pub images: usize,
    /// The folder for angles.csv/json/png (None: the run's folder, or
    /// `reports/` for a config).
    pub out: Option<PathBuf>,
    /// How the images are turned (None: as the run's training did).
    pub resample: Option<Resampling>,
}

/// Check the model, print the table (and the angle study), write the files;
/// an error when an exact element's error exceeds 1e-5.
pub fn check(request: &CheckRequest, device: &Device) -> Result<()> {
    let (config, model) = checked_model(request, device)?;
    let rows = check_inputs(&model, &config, request.batch, device);
    let worst_exact = print_rows(&config, &model, &rows);
    if let Some(path) = &request.json {
        crate::atomic::write(path, serde_json::to_string_pretty(&rows)?.as_bytes())
            .with_context(|| format!("--json {}", path.display()))?;
    }
    if let Some(a) = &request.angles {
        let out = match (&a.out, &request.source) {
            (Some(out), _) => out.clone(),
            (None, ModelSource::Run(run)) => run.clone(),
            (None, ModelSource::Config(_)) => PathBuf::from("reports"),
        };
        let model = Autoencoder::Equivariant(model.clone());
        let mut config = config.clone();
        if let Some(r) = a.resample {
            config.data.resampling = r;
        }
        angle_study(&model, &config, (a.step, a.images), &out, device)?;
    }
    if worst_exact > 1e-5 {
        bail!("equivariance broken: error {worst_exact:.2e} > 1e-5 for an exact element");
    }
    Ok(())
}

/// The model to check (the run's trained one, or an untrained one of the
/// config), after checking that the outputs can be written and the check
/// fits in memory. The untrained model and the random inputs come from the
/// config's training seed, so that repeated checks print the same numbers.
fn checked_model(
    request: &CheckRequest,
    device: &Device,
) -> Result<(Config, EquivariantAutoencoder)> {
    let (config, model) = match &request.source {
        ModelSource::Run(dir) => {
            let run = RunDir::new(dir);
            let config = run.load_config()?;
            device.seed(config.train.seed);
            let model = run.load_model(&config, device)?;
            (config, model)
        }
        ModelSource::Config(config) => {
            let config = (**config).clone();
            device.seed(config.train.seed);
            let model = Autoencoder::new(&config.model, config.data.image_size, device);
            (config, model)
        }
    };
    // the outputs can be written: found out now, not after the check
    if let Some(path) = &request.json {
        crate::atomic::check_writable(path, "--json")?;
    }
    crate::model::flops::ensure_step_fits(
        &config.model,
        config.data.image_size,
        request.batch as f64,
        4.0, // every input kind and layer of the check at once
        &format!("the check: --batch {}", request.batch),
    )?;
    match model {
        Autoencoder::Equivariant(m) => Ok((config, m)),
        Autoencoder::Baseline(_) => bail!(
            "{}: the baseline autoencoder is not equivariant; nothing to check",
            config.name
        ),
    }
}

/// Every layer and element on two kinds of input: random pixels stress
/// every layer; smooth centred shapes look like real data and stay inside
/// the canvas under any rotation.
fn check_inputs(
    model: &EquivariantAutoencoder,
    config: &Config,
    batch: usize,
    device: &Device,
) -> Vec<CheckRow> {
    let s = config.data.image_size;
    let random = Tensor::<4>::random([batch, 1, s, s], Distribution::Uniform(0.0, 1.0), device);
    let shapes = synthetic::shapes(batch, s - 4, 5);
    let placed = augment::place(
        &shapes.all_pixels().expect("generated in memory"),
        (s - 4, s),
        Resampling::Bilinear,
        |i| augment::draw(5, i),
    );
    let blobs = images_tensor(placed, s, device);
    let mut rows = check_model(model, &random, "random");
    rows.extend(check_model(model, &blobs, "shapes"));
    rows
}

/// The table of errors; returns the worst over exact elements.
fn print_rows(config: &Config, model: &EquivariantAutoencoder, rows: &[CheckRow]) -> f64 {
    println!(
        "equivariance of {} ({}), relative error ||f(t.x) - t.f(x)|| / ||t.f(x)||",
        config.name,
        model.group()
    );
    println!(
        "{:<40} {:<8} {:<8} {:>10}  note",
        "layer", "element", "input", "error"
    );
    let mut worst_exact = 0.0f64;
    for r in rows {
        let note = if r.exact {
            "exact on the grid"
        } else {
            "finer rotation: resampled"
        };
        println!(
            "{:<40} {:<8} {:<8} {:>10.2e}  {note}",
            r.layer, r.element, r.input, r.error
        );
        if r.exact {
            worst_exact = worst_exact.max(r.error);
        }
    }
    println!("worst error over exact elements: {worst_exact:.2e}");
    worst_exact
}

/// `eqae check --angles`: every invariant head's feature change over the
/// circle (every `step` degrees, on the first `images` upright test
/// images), printed and written to `out` (CSV, JSON, a plot over the angle).
pub fn angle_study(
    model: &Autoencoder,
    config: &Config,
    (step, images): (f64, usize),
    out: &Path,
    device: &Device,
) -> Result<()> {
    let csv_path = out.join("angles.csv");
    crate::atomic::check_writable(&csv_path, "--out")?;
    let raw = upright_test_set(config)?.take(images);
    let mirrors = group_mirrors(model);
    let mut csv_rows: Vec<Vec<String>> = Vec::new();
    let mut json = Vec::new();
    let mut series = Vec::new();
    for head in Head::defaults(config.model.kind) {
        let points = feature_change_over_angles(model, config, (head, &raw), step, device, false)?;
        print_angles(config, head, raw.len(), mirrors, &points);
        csv_rows.extend(points.iter().map(|p| {
            vec![
                head.name().to_string(),
                p.degrees.to_string(),
                p.mirrored.to_string(),
                format!("{:.6e}", p.mean),
                format!("{:.6e}", p.worst),
                p.exact.to_string(),
            ]
        }));
        for mirrored in [false, true] {
            let curve = points
                .iter()
                .filter(|p| p.mirrored == mirrored)
                .map(|p| (p.degrees, p.mean))
                .collect();
            let suffix = if mirrored { plots::MIRRORED } else { "" };
            series.push((format!("{}{suffix}", head.label()), curve));
        }
        json.push(serde_json::json!({
            "head": head.name(),
            "resampling": config.data.resampling.name(),
            "points": points
        }));
    }
    let header = ["head", "degrees", "mirrored", "mean", "worst", "exact"];
    crate::atomic::write(&csv_path, csv_text(&header, &csv_rows)?.as_bytes())?;
    crate::atomic::write(
        &out.join("angles.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    let png = out.join("angles.png");
    let title = format!(
        "{}: mean relative feature change under rotation ({} images)",
        config.name,
        raw.len()
    );
    let axes = ("rotation (degrees)", "mean |f(R x) - f(x)| / |f(x)|");
    if let Err(e) = plots::lines(&title, axes, false, &series, &png) {
        eprintln!("warning: no figure {}: {e:#}", png.display());
    }
    println!(
        "\nwrote {}, angles.json and angles.png beside it",
        csv_path.display()
    );
    Ok(())
}

/// One head's feature change per angle, plain and mirrored, and its summary.
fn print_angles(config: &Config, head: Head, images: usize, mirrors: bool, points: &[AngleChange]) {
    println!(
        "\n{} {}: relative feature change |f(R x) - f(x)| / |f(x)| over {images} upright test images, turned by {} resampling",
        config.name,
        head.label(),
        config.data.resampling.name()
    );
    println!(
        "{:>8} {:>12} {:>12} {:>14} {:>14}",
        "degrees", "mean", "worst", "mirrored mean", "mirrored worst"
    );
    let half = points.len() / 2;
    let mark = |exact: bool| if exact { "*" } else { " " };
    for (p, m) in points[..half].iter().zip(&points[half..]) {
        println!(
            "{:>8.1} {:>11.2e}{} {:>12.2e} {:>13.2e}{} {:>14.2e}",
            p.degrees,
            p.mean,
            mark(p.exact),
            p.worst,
            m.mean,
            mark(m.exact),
            m.worst
        );
    }
    let worst = |exact: bool| {
        points
            .iter()
            .filter(|p| p.exact == exact)
            .map(|p| p.worst)
            .fold(0.0, f64::max)
    };
    let off_mean: Vec<f64> = points.iter().filter(|p| !p.exact).map(|p| p.mean).collect();
    let others = if off_mean.is_empty() {
        "every angle measured is an exact element".to_string()
    } else {
        format!(
            "every other angle: mean {:.2e}, largest mean {:.2e}, worst {:.2e}",
            off_mean.iter().sum::<f64>() / off_mean.len() as f64,
            off_mean.iter().copied().fold(0.0, f64::max),
            worst(false)
        )
    };
    println!(
        "* exact (quarter turns{}): worst {:.2e}; {others}",
        if mirrors { " and mirrors" } else { "" },
        worst(true),
    );
}
