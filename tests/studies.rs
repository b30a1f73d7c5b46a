//! The invariance studies of `eqae eval`: label subsets are stratified and
//! reproducible, exactly invariant features give exactly flat rotation
//! curves at the grid's angles, and the command writes its files.

use burn::tensor::Device;
use eqae::config::{Config, DatasetKind, ModelKind};
use eqae::data::load_splits;
use eqae::eval::features::Head;
use eqae::experiment::invariance::{rotation_robustness, stratified_subset};
use eqae::group::GroupKind;
use eqae::model::Autoencoder;

mod common;

#[test]
fn label_subsets_are_stratified_and_reproducible() {
    // 3 classes in proportion 5 : 3 : 2
    let labels: Vec<usize> = (0..1000)
        .map(|i| [0, 0, 0, 0, 0, 1, 1, 1, 2, 2][i % 10])
        .collect();
    let a = stratified_subset(&labels, 100, 7);
    let count = |rows: &[usize], c: usize| rows.iter().filter(|&&i| labels[i] == c).count();
    assert_eq!(a.len(), 100);
    assert_eq!([count(&a, 0), count(&a, 1), count(&a, 2)], [50, 30, 20]);
    assert_eq!(
        a,
        stratified_subset(&labels, 100, 7),
        "same seed, same rows"
    );
    assert_ne!(
        a,
        stratified_subset(&labels, 100, 8),
        "another seed, other rows"
    );
    let mut unique = a.clone();
    unique.dedup();
    assert_eq!(unique.len(), a.len(), "drawn without replacement");
    // every class present even when its share rounds to zero
    let few = stratified_subset(&labels, 2, 0);
    assert_eq!([count(&few, 0), count(&few, 1), count(&few, 2)], [1, 1, 1]);
}

fn tiny(group: GroupKind) -> Config {
    let mut c = Config::default();
    c.data.dataset = DatasetKind::Synthetic;
    c.data.image_size = 16;
    c.data.train_limit = 200;
    c.data.test_limit = 60;
    c.model.kind = ModelKind::Equivariant;
    c.model.group = group;
    c.model.channels = vec![2, 3];
    c.model.latent = 4;
    c.model.group_linear = vec![4];
    c.validate().unwrap();
    c
}

#[test]
fn d4_features_score_the_same_at_every_grid_angle_mirrored_or_not() {
    let config = tiny(GroupKind::D4);
    let device = Device::flex();
    device.seed(3);
    let model = Autoencoder::new(&config.model, 16, &device);
    let data = load_splits(&config.data).unwrap();
    for head in [Head::Gram, Head::Average] {
        let points =
            rotation_robustness(&model, &config, head, &data, 90.0, &device, true, 0).unwrap();
        assert_eq!(
            points.len(),
            8,
            "0, 90, 180, 270 degrees, plain and mirrored"
        );
        let first = points[0].scores;
        for p in &points {
            // the features are equal up to rounding, so every probe decides alike
            assert_eq!(
                (p.scores.logistic, p.scores.mlp, p.scores.knn),
                (first.logistic, first.mlp, first.knn),
                "{head:?} at {} degrees, mirrored {}",
                p.degrees,
                p.mirrored
            );
        }
    }
}

#[test]
fn eval_writes_the_studies() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::toy("toy", "train_limit = 160", "group = \"d4\"", "");
    std::fs::write(dir.path().join("toy.toml"), config).unwrap();
    let run = |args: &[&str]| common::succeeds(dir.path(), args);
    run(&["train", "--config", "toy.toml", "--quiet"]);
    run(&[
        "eval",
        "--run",
        "runs/toy",
        "--head",
        "gram",
        "--out",
        "rep",
        "--quiet",
        "--labels",
        "20",
        "0",
        "--draws",
        "2",
        "--rotations",
        "90",
    ]);
    let rep = dir.path().join("rep");
    let csv = std::fs::read_to_string(rep.join("label_efficiency.csv")).unwrap();
    // header, 2 draws of 20 labels, 1 of all
    assert_eq!(csv.lines().count(), 4, "{csv}");
    let csv = std::fs::read_to_string(rep.join("rotation_robustness.csv")).unwrap();
    assert_eq!(csv.lines().count(), 9, "{csv}");
    for f in [
        "studies.json",
        "label_efficiency.png",
        "rotation_robustness.png",
    ] {
        assert!(rep.join(f).exists(), "{f} missing");
    }
}

#[test]
fn control_the_raw_embedding_is_not_invariant() {
    let config = tiny(GroupKind::D4);
    let device = Device::flex();
    device.seed(3);
    let model = Autoencoder::new(&config.model, 16, &device);
    let data = load_splits(&config.data).unwrap();
    let points =
        rotation_robustness(&model, &config, Head::V, &data, 90.0, &device, true, 0).unwrap();
    let knn: Vec<f64> = points.iter().map(|p| p.scores.knn).collect();
    eprintln!("raw V, kNN by angle: {knn:?}");
    // V's rows move with the image: the probes see other vectors
    assert!(knn.iter().any(|&a| a != knn[0]), "{knn:?}");
}
