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

/// An untrained model of `config` on the CPU, initialised from `seed`.
fn seeded_model(config: Config, seed: u64) -> (Config, Device, Autoencoder) {
    let device = Device::flex();
    device.seed(seed);
    let model = Autoencoder::new(&config.model, config.data.image_size, &device);
    (config, device, model)
}

#[test]
fn d4_features_score_the_same_at_every_grid_angle_mirrored_or_not() {
    let (config, device, model) = seeded_model(tiny(GroupKind::D4), 3);
    let data = load_splits(&config.data).unwrap();
    for head in [Head::Gram, Head::Average] {
        let points = rotation_robustness(
            &model,
            &config,
            (head, None),
            &data,
            (90.0, 0),
            &device,
            true,
        )
        .unwrap();
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
        "--plots",
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
        "confusion.json",
        "confusion_toy_gram.png",
        "kmeans_toy_gram.png",
    ] {
        assert!(rep.join(f).exists(), "{f} missing");
    }
    // each confusion matrix counts every test image once
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rep.join("confusion.json")).unwrap())
            .unwrap();
    for probe in ["logistic", "kmeans"] {
        let total: u64 = json[0][probe]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
            .sum();
        assert_eq!(total, 40, "{probe}: {json}");
    }

    // the pose study of an attention run
    let config = common::toy(
        "att",
        "",
        "group = \"d4\"\nkind = \"attention\"\ncode = 8",
        "",
    );
    std::fs::write(dir.path().join("att.toml"), config).unwrap();
    run(&["train", "--config", "att.toml", "--quiet"]);
    let out = run(&[
        "eval", "--run", "runs/att", "--out", "pose", "--quiet", "--pose",
    ]);
    assert!(out.contains("attention recovers the pose of"), "{out}");
    let pose = dir.path().join("pose");
    assert!(pose.join("pose.json").exists() && pose.join("pose_att.png").exists());
}

#[test]
fn control_the_raw_embedding_is_not_invariant() {
    let (config, device, model) = seeded_model(tiny(GroupKind::D4), 3);
    let data = load_splits(&config.data).unwrap();
    let points = rotation_robustness(
        &model,
        &config,
        (Head::V, None),
        &data,
        (90.0, 0),
        &device,
        true,
    )
    .unwrap();
    let scores: Vec<[f64; 3]> = points
        .iter()
        .map(|p| [p.scores.logistic, p.scores.mlp, p.scores.knn])
        .collect();
    eprintln!("raw V, logistic / MLP / kNN by angle: {scores:?}");
    // V's rows move with the image: the probes see other vectors, and
    // some probe scores differently at some angle
    assert!(scores.iter().any(|s| s != &scores[0]), "{scores:?}");
}

/// Whatever the weights, equivariant attention moves its argmax with the
/// image: on every D4 transform of the same upright images, the offset
/// `t^-1 argmax w(t.x)` is the same for each image, so with one image per
/// class the pose is recovered for all of them. This fails if the study's
/// reading of a draw (mirror first, then rotate counter-clockwise) and the
/// group's element order disagree, or if the attention is not equivariant.
#[test]
fn attention_recovers_exact_grid_transforms_of_the_same_images() {
    use eqae::data::augment::Draw;
    use eqae::data::Dataset;
    use eqae::experiment::pose::pose_study;
    use eqae::group::action::transform_square;
    use eqae::group::Group;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    let mut config = tiny(GroupKind::D4);
    config.model.kind = ModelKind::Attention;
    config.model.code = 8;
    config.validate().unwrap();
    let (config, device, model) = seeded_model(config, 5);
    // one upright image per class: random pixels, so that no rotation or
    // reflection maps an image to itself (a symmetric shape ties the weights)
    let classes = 4;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let upright: Vec<Vec<f32>> = (0..classes)
        .map(|_| (0..256).map(|_| rng.gen_range(0.0..1.0f32)).collect())
        .collect();
    let d4 = Group::dihedral(4);
    let (mut images, mut labels, mut draws) = (Vec::new(), Vec::new(), Vec::new());
    for (c, img) in upright.iter().enumerate() {
        for t in 0..d4.order() {
            images.extend(transform_square(img, 16, &d4, t));
            labels.push(c);
            let e = d4.element(t);
            draws.push(Draw {
                degrees: 90.0 * e.rotation as f64,
                mirror: e.reflection,
            });
        }
    }
    let test = Dataset {
        pixels: images.into(),
        size: 16,
        labels,
        class_names: (0..classes).map(|c| c.to_string()).collect(),
        file_names: None,
    };
    let study = pose_study(&model, &config, &test, &draws, &device, true).unwrap();
    assert_eq!(study.images, classes * 8);
    assert_eq!(study.agreement, 1.0, "{study:?}");
    assert_eq!(study.mirror_agreement, 1.0);
    // counts: every true element recovered as itself
    for (t, row) in study.counts.iter().enumerate() {
        assert_eq!(row[t], classes, "row {t}: {row:?}");
    }
    assert!(study.mean_entropy >= 0.0 && study.mean_entropy <= study.uniform_entropy + 1e-9);
}

/// `--table` with every study: `--train-only` trains each row's model and
/// writes no report; the evaluation after it reuses them and writes seed
/// 0's studies for all nine rows (the paper's seven and the attention
/// models' Q), the pose of both attention models and a confusion matrix
/// per row. With one model untrained, `--skip-untrained` evaluates the
/// other rows; the run after it reads those back and adds the rest.
#[test]
fn a_table_trains_first_then_writes_every_rows_studies() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    std::fs::create_dir(&configs).unwrap();
    for (name, model) in [
        ("baseline", "kind = \"baseline\"\ncode = 8"),
        ("d4_gram", "group = \"d4\""),
        ("d12_gram", "group = \"d12\""),
        ("d12_average", "group = \"d12\""),
        (
            "d4_attention",
            "group = \"d4\"\nkind = \"attention\"\ncode = 8",
        ),
        (
            "d12_attention",
            "group = \"d12\"\nkind = \"attention\"\ncode = 8",
        ),
    ] {
        let config = common::toy(name, "", model, "");
        std::fs::write(configs.join(format!("{name}.toml")), config).unwrap();
    }
    let table = [
        "eval", "--table", "1", "--preset", "full", "--seeds", "1", "--quiet",
    ];
    let out = common::succeeds(dir.path(), &[&table[..], &["--train-only"]].concat());
    assert!(out.contains("trained every row"), "{out}");
    assert!(dir
        .path()
        .join("runs/table1-full/d12_attention-s0/model.bpk")
        .exists());
    assert!(!dir.path().join("reports/table1_full.json").exists());
    let studies = [
        "--labels",
        "20",
        "0",
        "--draws",
        "1",
        "--rotations",
        "180",
        "--pose",
    ];
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("reports").join(f)).unwrap())
            .unwrap()
    };
    // one model not trained yet: --skip-untrained evaluates the other rows
    let weights = dir
        .path()
        .join("runs/table1-full/d12_attention-s0/model.bpk");
    let aside = dir.path().join("model.bpk.aside");
    std::fs::rename(&weights, &aside).unwrap();
    let skip = [&table[..], &studies[..], &["--skip-untrained"]].concat();
    let out = common::succeeds(dir.path(), &skip);
    assert!(out.contains("d12_attention-s0 is not trained yet"), "{out}");
    assert!(!out.contains("epoch 1/1"), "nothing is trained: {out}");
    assert_eq!(read("table1_full.json").as_array().unwrap().len(), 7);
    let first = read("table1_full.json");
    // once it is trained, the evaluation reads the seven rows back and
    // evaluates the two new ones
    std::fs::rename(&aside, &weights).unwrap();
    let out = common::succeeds(dir.path(), &[&table[..], &studies[..]].concat());
    assert!(
        !out.contains("epoch 1/1"),
        "the trained rows are reused: {out}"
    );
    assert_eq!(out.matches("evaluated before").count(), 7, "{out}");
    let all = read("table1_full.json");
    assert_eq!(all.as_array().unwrap().len(), 9);
    for row in first.as_array().unwrap() {
        let again = all
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == row["model"] && r["group"] == row["group"])
            .unwrap();
        assert_eq!(again["scores"], row["scores"], "read back as evaluated");
    }
    let rep = dir.path().join("reports/table1_full_studies");
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(rep.join(f)).unwrap()).unwrap()
    };
    assert_eq!(read("studies.json").as_array().unwrap().len(), 9);
    assert_eq!(read("pose.json").as_array().unwrap().len(), 2);
    assert_eq!(read("confusion.json").as_array().unwrap().len(), 9);
    for f in [
        "label_efficiency.png",
        "rotation_robustness.png",
        "pose_d4_attention-s0.png",
        "confusion_d12_gram-s0_gram.png",
    ] {
        assert!(rep.join(f).exists(), "{f} missing");
    }
    seeds_evaluated_apart_merge(dir.path(), &table);
}

/// Seed 1 trained and evaluated apart from seed 0 (`--first-seed 1`, as in
/// an evaluation on a machine that no longer has seed 0's models), its rows reported
/// together with seed 0's report (`--with-rows`): seed 0's rows are read
/// back as they were, seed 1's added, in the table's row order.
fn seeds_evaluated_apart_merge(dir: &std::path::Path, table: &[&str]) {
    std::fs::create_dir(dir.join("seed0")).unwrap();
    let seed0 = dir.join("seed0/table1_full.json");
    std::fs::copy(dir.join("reports/table1_full.json"), &seed0).unwrap();
    let with = [
        "eval",
        "--table",
        "1",
        "--preset",
        "full",
        "--quiet",
        "--seeds",
        "2",
        "--first-seed",
        "1",
    ];
    let out = common::succeeds(dir, &[&with[..], &["--train-only"]].concat());
    assert!(out.contains("trained every row"), "{out}");
    let runs = dir.join("runs/table1-full");
    assert!(runs.join("d12_attention-s1/model.bpk").exists());
    // seed 1 of the Gram D4 model only (two rows: average and Gram)
    for run in [
        "baseline",
        "d12_gram",
        "d12_average",
        "d4_attention",
        "d12_attention",
    ] {
        std::fs::remove_file(runs.join(format!("{run}-s1/model.bpk"))).unwrap();
    }
    let merge = [
        "--skip-untrained",
        "--out",
        "merged",
        "--with-rows",
        seed0.to_str().unwrap(),
    ];
    let out = common::succeeds(dir, &[&with[..], &merge[..]].concat());
    assert!(!out.contains("seed 0:"), "seed 0 is not evaluated: {out}");
    let read = |p: &std::path::Path| -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(p).unwrap())
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let before = read(&seed0);
    let all = read(&dir.join("merged/table1_full.json"));
    assert_eq!(all.len(), before.len() + 2);
    let key = |r: &serde_json::Value| {
        (
            r["config"].as_str().unwrap().to_string(),
            r["model"].as_str().unwrap().to_string(),
            r["seed"].as_u64().unwrap(),
        )
    };
    let keys: Vec<_> = all.iter().map(key).collect();
    let d4 = |model: &str, seed| ("d4_gram".to_string(), model.to_string(), seed);
    // table order: the Average D4 row (seeds 0, 1) comes second
    assert_eq!(keys[1], d4("Average Pooling", 0));
    assert_eq!(keys[2], d4("Average Pooling", 1));
    assert!(keys.contains(&d4("Gram Pooling", 1)));
    for row in &before {
        let again = all.iter().find(|r| key(r) == key(row)).unwrap();
        assert_eq!(again, row, "seed 0's rows are reported as read");
    }
    let md = std::fs::read_to_string(dir.join("merged/table1_full.md")).unwrap();
    let gram_d4 = md.lines().find(|l| l.starts_with("| Gram Pooling | D4 |"));
    assert!(gram_d4.unwrap().contains("| 2 |"), "two seeds: {md}");
    // a report given twice, a file that is not a report, another preset's
    // report, a first seed past the last: one-line errors
    let twice = [&with[..], &merge[..], &[seed0.to_str().unwrap()]].concat();
    let out = common::run(dir, &twice);
    assert!(!out.status.success());
    assert!(common::text(&out.stderr).contains("is in both"));
    std::fs::create_dir(dir.join("junk")).unwrap();
    std::fs::write(dir.join("junk/table1_full.json"), "{\"rows\": 3}").unwrap();
    let junk = [&with[..], &["--with-rows", "junk/table1_full.json"]].concat();
    let out = common::run(dir, &junk);
    assert!(!out.status.success());
    assert!(common::text(&out.stderr).contains("table1_full.json is not a table report"));
    std::fs::copy(&seed0, dir.join("table1_quick.json")).unwrap();
    let quick = [&with[..], &["--with-rows", "table1_quick.json"]].concat();
    let out = common::run(dir, &quick);
    assert!(!out.status.success());
    assert!(common::text(&out.stderr).contains("is not named table1_full.json"));
    let past = [table, &["--first-seed", "1"]].concat();
    let out = common::run(dir, &past);
    assert!(!out.status.success());
    assert!(common::text(&out.stderr).contains("must be below --seeds"));
}
