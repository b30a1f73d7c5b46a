//! `eqae tune`: variants trained once each, scored on the validation split,
//! feature settings read from the base's model, bad settings refused
//! before anything trains.

use std::path::Path;

mod common;
use common::{run, succeeds, text, toy};

fn csv_rows(dir: &Path) -> Vec<Vec<String>> {
    csv::Reader::from_path(dir.join("reports/tune_toy.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect()
}

#[test]
fn variants_train_once_and_feature_settings_reuse_the_base_model() {
    let dir = tempfile::tempdir().unwrap();
    let config = toy("toy", "validation_fraction = 0.25", "", "");
    std::fs::write(dir.path().join("toy.toml"), config).unwrap();
    let args = [
        "tune",
        "--config",
        "toy.toml",
        "--quiet",
        "--head",
        "gram",
        "--set",
        "train.batch_size=16",
        "--vary",
        "model.latent=6",
        "--vary",
        "features.gram_band=1",
    ];
    let out = run(dir.path(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut runs: Vec<String> = std::fs::read_dir(dir.path().join("runs/tune-toy"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    runs.sort();
    // the feature setting trained nothing of its own
    assert_eq!(runs, ["default", "model.latent_6"]);
    let saved = std::fs::read_to_string(dir.path().join("runs/tune-toy/default/config.toml"));
    assert!(
        saved.unwrap().contains("batch_size = 16"),
        "--set reaches the base"
    );

    let rows = csv_rows(dir.path());
    let variants: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        variants,
        ["default", "model.latent=6", "features.gram_band=1"]
    );
    // 3 rows of validation data: accuracies are multiples of 1/32 (128
    // images, a quarter held out)
    for r in &rows {
        let logistic: f64 = r[7].parse().unwrap();
        assert!((0.0..=1.0).contains(&logistic), "{r:?}");
        // written with 4 decimals: k/32 is off by at most 0.5e-4 * 32
        let steps = logistic * 32.0;
        assert!(
            (steps - steps.round()).abs() < 2e-3,
            "{r:?}: not scored on 32 images"
        );
    }
    // the band changes the Gram features' width, not the model
    assert_ne!(rows[0][6], rows[2][6], "{rows:?}");
    assert_eq!(rows[0][2], rows[2][2], "{rows:?}");
    let md = std::fs::read_to_string(dir.path().join("reports/tune_toy.md")).unwrap();
    assert!(md.contains("scored on 32 validation images"), "{md}");

    // a second call trains nothing and reads every scored variant back
    let out = run(dir.path(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(!err.contains("epoch 1/1"), "{err}");
    assert_eq!(err.matches("scored before").count(), 3, "{err}");
    assert_eq!(csv_rows(dir.path()), rows);
    // one more variant: only it is scored
    let more = [&args[..], &["--vary", "features.gram_band=2"]].concat();
    let out = run(dir.path(), &more);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr).matches("scored before").count(), 3);
    let again = csv_rows(dir.path());
    assert_eq!(again.len(), 4);
    assert_eq!(again[..3], rows[..]);
}

#[test]
fn a_bad_setting_is_refused_before_anything_trains() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("toy.toml"), toy("toy", "", "", "")).unwrap();
    for (vary, says) in [
        ("model.latnt=8", "the config has no key `model.latnt`"),
        ("model.kernel=4", "model.kernel"),
        ("latent", "expected KEY=VALUE"),
    ] {
        let out = run(
            dir.path(),
            &[
                "tune",
                "--config",
                "toy.toml",
                "--vary",
                "model.latent=6",
                "--vary",
                vary,
            ],
        );
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(says), "{vary}: {err}");
        assert!(
            !dir.path().join("runs").exists(),
            "{vary}: trained before refusing"
        );
    }
}

#[test]
fn a_trained_run_varies_only_its_features() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("toy.toml"), toy("toy", "", "", "")).unwrap();
    succeeds(dir.path(), &["train", "--config", "toy.toml", "--quiet"]);
    let tune = ["tune", "--trained", "runs/toy", "--quiet", "--vary"];
    succeeds(
        dir.path(),
        &[&tune[..], &["features.gram_band=1", "--head", "gram"]].concat(),
    );
    assert!(dir.path().join("reports/tune_toy.csv").exists());
    assert!(!dir.path().join("runs/tune-toy").exists(), "nothing trains");
    let out = run(dir.path(), &[&tune[..], &["model.latent=6"]].concat());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("only features.* can vary on a trained run"),
        "{}",
        text(&out.stderr)
    );
}
