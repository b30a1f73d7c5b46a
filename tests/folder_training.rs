//! Training on the user's own images (`dataset = "folder"`): a generated
//! collection of shapes at random angles, in class folders, trains,
//! evaluates, embeds and exports like a built-in data set, and its images
//! are prepared by the same code as `embed --images`, bit for bit.

use std::collections::HashMap;
use std::path::Path;

use ndarray::Array2;

mod common;
use common::{fails_with, succeeds, toy};

/// `n` PNGs per class of `side x side` pixels: a bar, a ring and an L,
/// each turned by a random angle and drawn in colour on a light ground
/// for every third image (read as luma, inverted to a dark background).
fn shapes(root: &Path, n: usize, side: u32) {
    let mut state = 12345u64;
    let mut rand = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f32 / (1u64 << 31) as f32
    };
    for class in ["bar", "ring", "ell"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..n {
            let angle = rand() * std::f32::consts::TAU;
            let (s, c) = angle.sin_cos();
            let half = side as f32 / 2.0;
            let ink = |x: u32, y: u32| -> f32 {
                let (u, v) = (x as f32 + 0.5 - half, y as f32 + 0.5 - half);
                let (u, v) = (c * u + s * v, -s * u + c * v);
                let r = half * 0.6;
                let on = match class {
                    "bar" => u.abs() < r && v.abs() < r * 0.25,
                    "ring" => ((u * u + v * v).sqrt() - r * 0.7).abs() < r * 0.2,
                    _ => {
                        (u.abs() < r * 0.2 && v.abs() < r)
                            || (v > r * 0.6 && v < r && u > 0.0 && u < r)
                    }
                };
                if on {
                    1.0
                } else {
                    0.0
                }
            };
            let path = root.join(class).join(format!("{i:03}.png"));
            if i % 3 == 0 {
                image::RgbImage::from_fn(side, side, |x, y| {
                    let v = 1.0 - 0.8 * ink(x, y);
                    image::Rgb([(v * 250.0) as u8, (v * 240.0) as u8, (v * 255.0) as u8])
                })
                .save(path)
                .unwrap();
            } else {
                image::GrayImage::from_fn(side, side, |x, y| {
                    image::Luma([(ink(x, y) * 220.0) as u8])
                })
                .save(path)
                .unwrap();
            }
        }
    }
}

fn read_npy(path: &Path) -> Array2<f32> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_folder_of_images_trains_evaluates_embeds_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    shapes(&d.join("shapes"), 40, 16);
    let config = toy(
        "mine",
        "dataset = \"folder\"\nroot = \"shapes\"\naugment = false",
        "group = \"d4\"",
        "epochs = 2",
    );
    std::fs::write(d.join("mine.toml"), config).unwrap();
    let log = succeeds(d, &["train", "--config", "mine.toml", "--quiet"]);
    // 120 images: a fifth held out for testing, a tenth of the rest validates
    assert!(log.contains("87 training / 9 validation images"), "{log}");
    let report = succeeds(
        d,
        &["eval", "--run", "runs/mine", "--out", "rep", "--quiet"],
    );
    assert!(report.contains("| Gram Pooling | D4 |"), "{report}");
    succeeds(d, &["export", "--run", "runs/mine", "--out", "mine.onnx"]);

    // the test split, embedded as a split and as files: the same rows
    succeeds(
        d,
        &[
            "embed",
            "--run",
            "runs/mine",
            "--split",
            "test",
            "--head",
            "gram",
            "--quiet",
            "--out",
            "split.npy",
        ],
    );
    let names: Vec<String> = std::fs::read_to_string(d.join("split_files.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(names.len(), 24);
    let classes = std::fs::read_to_string(d.join("split_classes.txt")).unwrap();
    assert_eq!(classes, "bar\nell\nring\n");
    for name in &names {
        let to = d.join("copy").join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(d.join("shapes").join(name), to).unwrap();
    }
    succeeds(
        d,
        &[
            "embed",
            "--run",
            "runs/mine",
            "--images",
            "copy",
            "--head",
            "gram",
            "--quiet",
            "--out",
            "files.npy",
        ],
    );
    let (split, files) = (
        read_npy(&d.join("split.npy")),
        read_npy(&d.join("files.npy")),
    );
    let row_of: HashMap<String, usize> = std::fs::read_to_string(d.join("files_files.txt"))
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, n)| (n.to_string(), i))
        .collect();
    for (i, name) in names.iter().enumerate() {
        let j = row_of[name];
        assert!(
            split
                .row(i)
                .iter()
                .zip(files.row(j))
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}: the split's row is not the file's"
        );
    }
}

#[test]
fn a_missing_or_empty_image_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = |root: &str| {
        toy(
            "f",
            &format!("dataset = \"folder\"\nroot = \"{root}\""),
            "",
            "",
        )
    };
    std::fs::write(d.join("f.toml"), config("nowhere")).unwrap();
    fails_with(
        d,
        &["train", "--config", "f.toml"],
        &["nowhere", "data.root"],
    );
    std::fs::create_dir(d.join("empty")).unwrap();
    std::fs::write(d.join("f.toml"), config("empty")).unwrap();
    fails_with(
        d,
        &["train", "--config", "f.toml"],
        &["empty", "PNG or JPEG images"],
    );
}

/// A folder data set is held on disk, and its splits are those of the same
/// images held in memory: the same files, labels and pixels, bit for bit,
/// after the stratified splits, the limits and the random turns.
#[test]
fn a_folder_data_set_on_disk_splits_and_turns_as_in_memory() {
    use eqae::config::{DataConfig, DatasetKind};
    use eqae::data::{self, stratified_split, Pixels};
    let dir = tempfile::tempdir().unwrap();
    shapes(&dir.path().join("shapes"), 30, 20);
    let config = DataConfig {
        dataset: DatasetKind::Folder,
        root: dir.path().join("shapes"),
        image_size: 24,
        augment: true,
        train_limit: 60,
        validation_fraction: 0.2,
        seed: 3,
        ..DataConfig::default()
    };
    let splits = data::load_splits(&config).unwrap();
    assert!(splits.train.on_disk() && splits.validation.on_disk() && splits.test.on_disk());

    // the same steps on the same images, in memory
    let (train, test) = data::load_raw(&config).unwrap();
    let in_memory = |d: data::Dataset| data::Dataset {
        pixels: Pixels::Memory(d.all_pixels().unwrap().into_owned()),
        ..d
    };
    let (train, test) = (in_memory(train), in_memory(test));
    let place = |d: data::Dataset, seed| d.augmented(24, true, seed, config.resampling).unwrap();
    let train = place(train.take(60), data::train_augment_seed(&config));
    let test = place(test, data::test_augment_seed(&config));
    let (train, validation) = stratified_split(&train, 0.2, 3);
    for (name, disk, memory) in [
        ("train", &splits.train, &train),
        ("validation", &splits.validation, &validation),
        ("test", &splits.test, &test),
    ] {
        assert!(!memory.on_disk());
        assert_eq!(disk.file_names, memory.file_names, "{name}");
        assert_eq!(disk.labels, memory.labels, "{name}");
        let (a, b) = (disk.all_pixels().unwrap(), memory.all_pixels().unwrap());
        assert_eq!(a.len(), memory.len() * 24 * 24, "{name}");
        assert!(
            a.iter()
                .zip(b.iter())
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name}: pixels differ"
        );
        // rows gathered out of order, with repeats, are those rows
        let idx = [memory.len() - 1, 0, 2, 1, 1];
        assert_eq!(
            disk.gather(&idx).unwrap(),
            memory.gather(&idx).unwrap(),
            "{name}"
        );
    }
    assert_eq!(train.len() + validation.len(), 60);
    assert_eq!(test.len(), 18);
}

/// Where the image cache cannot be written, training says where and what
/// to do, in one line.
#[test]
fn an_unwritable_cache_folder_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    shapes(&d.join("shapes"), 4, 16);
    let config = toy("f", "dataset = \"folder\"\nroot = \"shapes\"", "", "");
    std::fs::write(d.join("f.toml"), config).unwrap();
    let out = common::eqae(d)
        .args(["train", "--config", "f.toml", "--quiet"])
        .env("TMPDIR", d.join("no such folder"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("no such folder") && err.contains("TMPDIR"),
        "{err}"
    );
}
