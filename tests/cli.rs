//! The binary as a user meets it: clear one-line errors, `embed` output
//! that loads in Python, probes that separate separable classes.

use std::path::Path;

use eqae::eval::probes::run_all;
use ndarray::Array2;

mod common;
use common::{run, text, toy};

/// Run the binary in `dir`; it must succeed. Returns its stdout.
fn stdout_of(args: &[&str], dir: &Path) -> String {
    let out = run(dir, args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn stderr_of(args: &[&str], dir: &Path) -> String {
    let out = run(dir, args);
    assert!(!out.status.success(), "expected failure for {args:?}");
    text(&out.stderr)
}

#[test]
fn config_typo_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[model]\nkernal = 3\n").unwrap();
    let err = stderr_of(&["train", "--config", "bad.toml"], dir.path());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("Error: invalid config bad.toml") && err.contains("unknown field `kernal`"),
        "{err}"
    );

    std::fs::write(dir.path().join("even.toml"), "[model]\nkernel = 4\n").unwrap();
    let err = stderr_of(&["check", "--config", "even.toml"], dir.path());
    assert!(err.contains("invalid value for `model.kernel`"), "{err}");

    std::fs::write(dir.path().join("blur.toml"), "[model]\nsmoothing = -1.0\n").unwrap();
    let err = stderr_of(&["check", "--config", "blur.toml"], dir.path());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("invalid value for `model.smoothing`"), "{err}");

    std::fs::write(
        dir.path().join("turn.toml"),
        "[data]\nresampling = \"cubic\"\n",
    )
    .unwrap();
    let err = stderr_of(&["check", "--config", "turn.toml"], dir.path());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("unknown variant `cubic`"), "{err}");

    let err = stderr_of(&["train", "--config", "missing.toml"], dir.path());
    assert!(err.contains("cannot read config missing.toml"), "{err}");
}

#[test]
fn missing_data_points_at_the_fetch_script() {
    let dir = tempfile::tempdir().unwrap();
    let err = stderr_of(&["train", "--quiet"], dir.path());
    assert!(err.contains("scripts/fetch_data.sh"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn check_reports_exact_equivariance() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("d4.toml"),
        "[model]\ngroup = \"d4\"\nchannels = [2, 4]\n",
    )
    .unwrap();
    let text = stdout_of(
        &["check", "--config", "d4.toml", "--json", "check.json"],
        dir.path(),
    );
    assert!(text.contains("worst error over exact elements"), "{text}");
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("check.json")).unwrap())
            .unwrap();
    for row in rows.as_array().unwrap() {
        assert!(row["error"].as_f64().unwrap() < 1e-5, "{row}");
    }
}

#[test]
fn train_then_embed_writes_one_row_per_image_loadable_in_python() {
    let dir = tempfile::tempdir().unwrap();
    let config = toy("toy", "", "", "");
    std::fs::write(dir.path().join("toy.toml"), config).unwrap();
    let _ = stdout_of(&["train", "--config", "toy.toml", "--quiet"], dir.path());
    for (head, width) in [("gram", 10 + 16 + 8), ("average", 4), ("v", 16)] {
        let npy = format!("{head}.npy");
        let _ = stdout_of(
            &[
                "embed", "--run", "runs/toy", "--split", "test", "--head", head, "--out", &npy,
                "--quiet",
            ],
            dir.path(),
        );
        let f: Array2<f32> = ndarray_npy::read_npy(dir.path().join(&npy)).unwrap();
        assert_eq!(f.dim(), (40, width), "{head}");
        let python = common::python_with(&["numpy"]);
        let py = std::process::Command::new(&python)
            .current_dir(dir.path())
            .args([
                "-c",
                &format!("import numpy as np; a = np.load('{npy}'); l = np.load('{head}_labels.npy'); print(a.shape, a.dtype, l.shape)"),
            ])
            .output()
            .expect("Python is needed for this test: run scripts/test.sh, which provides numpy");
        let printed = String::from_utf8_lossy(&py.stdout);
        assert_eq!(
            printed.trim(),
            format!("(40, {width}) float32 (40,)"),
            "{}",
            String::from_utf8_lossy(&py.stderr)
        );
    }
    // eval writes JSON and Markdown with one row per default head
    let _ = stdout_of(
        &[
            "eval", "--run", "runs/toy", "--out", "rep", "--quiet", "--plots",
        ],
        dir.path(),
    );
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("rep/eval.json")).unwrap())
            .unwrap();
    let models: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["Average Pooling", "Gram Pooling"]);
    assert!(std::fs::read_to_string(dir.path().join("rep/eval.md"))
        .unwrap()
        .contains("| Gram Pooling | C4 |"));
    assert!(dir.path().join("rep/eval_explained_variance.png").exists());

    // a folder of images, with file names beside the features
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    for i in 0..3 {
        image::GrayImage::from_fn(20, 12, |x, y| image::Luma([((x * y + i) % 255) as u8]))
            .save(imgs.join(format!("{i}.png")))
            .unwrap();
    }
    let _ = stdout_of(
        &[
            "embed", "--run", "runs/toy", "--images", "imgs", "--out", "mine.npy", "--quiet",
        ],
        dir.path(),
    );
    let f: Array2<f32> = ndarray_npy::read_npy(dir.path().join("mine.npy")).unwrap();
    assert_eq!(f.nrows(), 3);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("mine_files.txt"))
            .unwrap()
            .lines()
            .count(),
        3
    );
}

#[test]
fn probes_separate_separable_classes() {
    // three well-separated Gaussian clusters in 5 dimensions
    let make = |n: usize, seed: u64| {
        let mut x = Array2::<f32>::zeros((n, 5));
        let mut y = Vec::new();
        for i in 0..n {
            let c = i % 3;
            for j in 0..5 {
                let noise = (((i * 7919 + j * 104729) as u64 ^ seed) % 1000) as f32 / 1000.0 - 0.5;
                x[[i, j]] = if j == c { 6.0 } else { 0.0 } + noise;
            }
            y.push(c);
        }
        (x, y)
    };
    let (xtr, ytr) = make(300, 1);
    let (xte, yte) = make(150, 2);
    let s = run_all(&xtr, &ytr, &xte, &yte, 3, 0).unwrap();
    for (name, v) in [
        ("logistic", s.logistic),
        ("mlp", s.mlp),
        ("knn", s.knn),
        ("kmeans", s.kmeans_accuracy),
        ("nmi", s.nmi),
    ] {
        assert!(v > 0.97, "{name}: {v}");
    }
}

/// A table run that would evaluate nothing stops with one line instead of
/// writing an empty report, and `--with-rows` (a report's rows) cannot go
/// with `--train-only` (which reports nothing).
#[test]
fn table_runs_with_nothing_to_report_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let configs = concat!(env!("CARGO_MANIFEST_DIR"), "/configs");
    let table = ["eval", "--table", "1", "--quiet", "--configs", configs];
    let err = stderr_of(&[&table[..], &["--skip-untrained"]].concat(), dir.path());
    let last = err.trim().lines().last().unwrap_or_default();
    assert_eq!(
        last, "Error: table 1: no row evaluated (no model trained, and no --with-rows report)",
        "{err}"
    );
    assert!(!dir.path().join("reports/table1_quick.json").exists());

    let both = [
        &table[..],
        &["--train-only", "--with-rows", "table1_quick.json"],
    ]
    .concat();
    let err = stderr_of(&both, dir.path());
    assert!(err.contains("cannot be used with"), "{err}");
    assert!(err.contains("--train-only"), "{err}");
}
