//! Training on generated data: the loss falls, resume reproduces an
//! uninterrupted run, a NaN stops training cleanly.

use burn::module::Module;
use eqae::config::{Config, DatasetKind, ModelKind};
use eqae::data::load_splits;
use eqae::group::GroupKind;
use eqae::model::Autoencoder;
use eqae::nn::transform::to_vec;
use eqae::train::{batch_tensor, train, RunDir, TrainOptions};

mod common;
use common::device;

/// burn seeds a device-wide generator: trainings in parallel test threads
/// would interleave their draws, so the tests here take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn tiny_config(kind: ModelKind, group: GroupKind, epochs: usize) -> Config {
    let mut c = Config {
        name: "tiny".into(),
        ..Config::default()
    };
    c.data.dataset = DatasetKind::Synthetic;
    c.data.image_size = 16;
    c.data.train_limit = 480;
    c.data.test_limit = 32;
    c.data.validation_fraction = 0.25;
    c.model.kind = kind;
    c.model.group = group;
    c.model.channels = vec![2, 4];
    c.model.latent = 6;
    c.model.group_linear = vec![6];
    c.model.code = 8;
    c.train.epochs = epochs;
    c.train.batch_size = 32;
    c.train.learning_rate = 3e-3;
    c.validate().unwrap();
    c
}

fn quiet(resume: bool, stop_after: Option<usize>) -> TrainOptions {
    TrainOptions {
        quiet: true,
        resume,
        stop_after,
    }
}

#[test]
fn loss_falls_and_run_directory_is_complete() {
    let _turn = serial();
    for (kind, group) in [
        (ModelKind::Equivariant, GroupKind::D4),
        (ModelKind::Attention, GroupKind::C4),
        (ModelKind::Baseline, GroupKind::D4),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = tiny_config(kind, group, 4);
        let data = load_splits(&config.data).unwrap();
        let run = RunDir::new(dir.path().join("run"));
        let s = train(&config, &run, &data, &device(), &quiet(false, None)).unwrap();
        let csv = std::fs::read_to_string(run.metrics()).unwrap();
        let losses: Vec<f64> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(losses.len(), 4);
        assert!(losses[3] < 0.8 * losses[0], "{kind:?}: losses {losses:?}");
        assert!(s.validation_loss.is_finite());
        for path in [run.config(), run.model(), run.reconstructions()] {
            assert!(path.exists(), "{} missing", path.display());
        }
        if kind == ModelKind::Attention {
            let entropy = csv.lines().nth(1).unwrap().split(',').nth(5).unwrap();
            assert!(
                entropy.parse::<f64>().unwrap() > 0.0,
                "entropy column: {csv}"
            );
        }
        // the saved config is the resolved one and loads back
        assert_eq!(run.load_config().unwrap(), config);
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

fn outputs(run: &RunDir, config: &Config) -> Vec<f32> {
    let model: Autoencoder = run.load_model(config, &device()).unwrap();
    let data = load_splits(&config.data).unwrap();
    let x = batch_tensor(&data.test, &(0..8).collect::<Vec<_>>(), &device()).unwrap();
    to_vec(&model.valid().forward(x).reconstruction)
}

#[test]
fn resume_reproduces_an_uninterrupted_run() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(ModelKind::Equivariant, GroupKind::D4, 3);
    let data = load_splits(&config.data).unwrap();

    let whole = RunDir::new(dir.path().join("whole"));
    train(&config, &whole, &data, &device(), &quiet(false, None)).unwrap();

    let parts = RunDir::new(dir.path().join("parts"));
    train(&config, &parts, &data, &device(), &quiet(false, Some(1))).unwrap();
    assert!(
        !parts.model().exists(),
        "an interrupted run has no final weights"
    );
    assert_eq!(parts.latest_checkpoint().unwrap().unwrap().0, 1);
    // without --resume an existing run is refused
    let err = train(&config, &parts, &data, &device(), &quiet(false, None)).unwrap_err();
    assert!(err.to_string().contains("pass --resume"), "{err}");
    train(&config, &parts, &data, &device(), &quiet(true, None)).unwrap();

    let (a, b) = (outputs(&whole, &config), outputs(&parts, &config));
    let diff = max_abs_diff(&a, &b);
    // same seed, same batches, same optimiser state: identical results
    assert!(diff <= 1e-6, "resumed run differs by {diff}");

    // control: a second uninterrupted run matches the first as closely
    let again = RunDir::new(dir.path().join("again"));
    train(&config, &again, &data, &device(), &quiet(false, None)).unwrap();
    let c = outputs(&again, &config);
    let control = max_abs_diff(&a, &c);
    assert!(
        control <= 1e-6,
        "two uninterrupted runs differ by {control}"
    );
    // and a different seed really gives different weights
    let mut other = config.clone();
    other.train.seed = 1;
    let third = RunDir::new(dir.path().join("other"));
    train(&other, &third, &data, &device(), &quiet(false, None)).unwrap();
    let d = outputs(&third, &other);
    let seed_diff = max_abs_diff(&a, &d);
    assert!(seed_diff > 1e-3, "seed had no effect: {seed_diff}");
    let csv = std::fs::read_to_string(parts.metrics()).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
}

#[test]
fn nan_in_the_data_stops_training_cleanly() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(ModelKind::Equivariant, GroupKind::C4, 2);
    let mut data = load_splits(&config.data).unwrap();
    let run = RunDir::new(dir.path().join("nan"));
    // first epoch clean, so a checkpoint exists; then poison one image
    train(&config, &run, &data, &device(), &quiet(false, Some(1))).unwrap();
    let eqae::data::Pixels::Memory(pixels) = &mut data.train.pixels else {
        panic!("generated shapes are held in memory")
    };
    pixels[5] = f32::NAN;
    let err = train(&config, &run, &data, &device(), &quiet(true, None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("loss became NaN at epoch 2"), "{err}");
    assert!(err.contains("last good checkpoint (epoch 1)"), "{err}");
    assert_eq!(run.latest_checkpoint().unwrap().unwrap().0, 1);
}
