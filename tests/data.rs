//! Data layer: IDX parsing and its errors, image files, plankton layout,
//! augmentation. All fixtures are generated here.

use std::path::Path;

use eqae::config::{DataConfig, DatasetKind};
use eqae::data::augment::{draw_or_upright, place};
use eqae::data::idx::{parse_images, parse_labels};
use eqae::data::{folder, load_idx_pair, load_splits, plankton, stratified_split, synthetic};
use eqae::group::resample::Resampling;
use proptest::prelude::*;

mod common;
use common::{flip, idx_images as encode_images, idx_labels as encode_labels, rotate90};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn classes(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_round_trip_plain_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..3 * 4 * 4).map(|k| (k * 5) as u8).collect();
    let labels = vec![0u8, 2, 1];
    for (suffix, enc) in [("", false), (".gz", true)] {
        let (img, lab) = (encode_images(&pixels, 3, 4, 4), encode_labels(&labels));
        let (img, lab) = if enc {
            (gz(&img), gz(&lab))
        } else {
            (img, lab)
        };
        let ip = write(dir.path(), &format!("img{suffix}"), &img);
        let lp = write(dir.path(), &format!("lab{suffix}"), &lab);
        let d = load_idx_pair(&ip, &lp, classes(3)).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d.size, 4);
        assert_eq!(d.labels, vec![0, 2, 1]);
        assert_eq!(d.image(0).unwrap()[1], 5.0 / 255.0);
    }
}

fn err_of(images: &[u8], labels: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let ip = write(dir.path(), "images.idx", images);
    let lp = write(dir.path(), "labels.idx", labels);
    load_idx_pair(&ip, &lp, classes(10))
        .unwrap_err()
        .to_string()
}

#[test]
fn idx_errors_are_clear() {
    let good_img = encode_images(&[0u8; 2 * 9], 2, 3, 3);
    let good_lab = encode_labels(&[1, 2]);

    let truncated = &good_img[..good_img.len() - 4];
    let e = err_of(truncated, &good_lab);
    assert!(
        e.contains("images.idx") && e.contains("truncated data"),
        "{e}"
    );

    let mut wrong_magic = good_img.clone();
    wrong_magic[3] = 0x99;
    let e = err_of(&wrong_magic, &good_lab);
    assert!(e.contains("wrong magic number 0x00000899"), "{e}");

    let e = err_of(&good_img, &encode_labels(&[1, 2, 3]));
    assert!(
        e.contains("3 labels but") && e.contains("has 2 images"),
        "{e}"
    );

    let e = err_of(&[], &good_lab);
    assert!(e.contains("images.idx: file is empty"), "{e}");

    let e = err_of(&good_img[..10], &good_lab);
    assert!(e.contains("truncated header"), "{e}");

    let e = err_of(&good_img, &encode_labels(&[1, 12]));
    assert!(e.contains("label 12 out of range"), "{e}");

    let e = err_of(&gz(&good_img)[..20], &good_lab);
    assert!(e.contains("corrupt gzip stream"), "{e}");
}

#[test]
fn missing_files_name_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let config = DataConfig {
        dataset: DatasetKind::Mnist,
        root: dir.path().to_path_buf(),
        ..DataConfig::default()
    };
    let e = load_splits(&config).unwrap_err().to_string();
    assert!(
        e.contains("train-images-idx3-ubyte not found") && e.contains("scripts/fetch_data.sh"),
        "{e}"
    );

    let e = load_idx_pair(
        &dir.path().join("nope"),
        &dir.path().join("nope2"),
        classes(2),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("cannot read") && e.contains("nope"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn idx_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_images(&bytes, Path::new("fuzz"));
        let _ = parse_labels(&bytes, Path::new("fuzz"));
    }

    #[test]
    fn idx_parser_never_panics_on_valid_headers(n in 0u32..5, r in 0u32..5, c in 0u32..5, extra in 0usize..40) {
        let mut bytes = encode_images(&[], 0, 0, 0);
        bytes[4..8].copy_from_slice(&n.to_be_bytes());
        bytes[8..12].copy_from_slice(&r.to_be_bytes());
        bytes[12..16].copy_from_slice(&c.to_be_bytes());
        bytes.extend(std::iter::repeat_n(7u8, extra));
        let ok = parse_images(&bytes, Path::new("fuzz")).is_ok();
        prop_assert_eq!(ok, (n * r * c) as usize == extra);
    }

    #[test]
    fn image_loader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        for name in ["x.png", "x.jpg"] {
            let p = write(dir.path(), name, &bytes);
            let _ = folder::load_image(&p, 8);
        }
    }
}

#[test]
fn corrupt_image_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "broken.png", b"\x89PNG not really");
    let e = folder::load_image(&p, 8).unwrap_err().to_string();
    assert!(
        e.contains("broken.png") && e.contains("cannot decode image"),
        "{e}"
    );
}

fn write_plankton_fixture(root: &Path) {
    for (class, count) in [("copepod", 6), ("acantharia", 4), ("diatom", 5)] {
        let dir = root.join("train").join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..count {
            // non-square, white background, a dark object
            let (w, h) = (20 + i as u32, 14);
            let img = image::GrayImage::from_fn(w, h, |x, y| {
                let d = (x as i32 - w as i32 / 2).pow(2) + (y as i32 - 7).pow(2);
                image::Luma([if d < 16 { 30 } else { 250 }])
            });
            img.save(dir.join(format!("{i}.jpg"))).unwrap();
        }
    }
}

#[test]
fn plankton_layout_loads_with_sorted_labels_and_stratified_split() {
    let dir = tempfile::tempdir().unwrap();
    write_plankton_fixture(dir.path());
    let d = plankton::load_plankton(dir.path(), 16).unwrap();
    assert_eq!(d.class_names, vec!["acantharia", "copepod", "diatom"]);
    assert_eq!(d.class_counts(), vec![4, 6, 5]);
    assert_eq!(d.size, 16);
    assert_eq!(d.all_pixels().unwrap().len(), 15 * 256);
    // background padded and inverted to 0, object bright at the centre
    let img = d.image(0).unwrap();
    assert!(img[0] < 0.05, "corner {}", img[0]);
    assert!(img[8 * 16 + 8] > 0.7, "centre {}", img[8 * 16 + 8]);
    let (train, test) = stratified_split(&d, 0.2, 3);
    assert_eq!(test.class_counts(), vec![1, 1, 1]);
    assert_eq!(train.len() + test.len(), 15);
    let (_, test2) = stratified_split(&d, 0.2, 3);
    assert_eq!(test.file_names, test2.file_names);
}

#[test]
fn missing_plankton_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let e = plankton::load_plankton(dir.path(), 32)
        .unwrap_err()
        .to_string();
    assert!(e.contains("train.zip"), "{e}");
}

#[test]
fn augmentation_is_reproducible_and_seed_dependent() {
    let d = synthetic::shapes(40, 28, 1);
    let a = d.augmented(32, true, 7, Resampling::Bilinear).unwrap();
    let b = d.augmented(32, true, 7, Resampling::Bilinear).unwrap();
    let c = d.augmented(32, true, 8, Resampling::Bilinear).unwrap();
    assert_eq!(a.all_pixels().unwrap(), b.all_pixels().unwrap());
    assert_ne!(a.all_pixels().unwrap(), c.all_pixels().unwrap());
    assert_eq!(a.labels, d.labels);
    assert_eq!(a.size, 32);
}

#[test]
fn augmentation_preserves_pixel_mass() {
    // Bilinear resampling of smooth images keeps the total intensity to
    // within 2% (content stays inside the 32x32 canvas).
    let d = synthetic::shapes(40, 28, 2);
    let a = d.augmented(32, true, 3, Resampling::Bilinear).unwrap();
    for i in 0..d.len() {
        let (m0, m1): (f32, f32) = (
            d.image(i).unwrap().iter().sum(),
            a.image(i).unwrap().iter().sum(),
        );
        assert!((m1 - m0).abs() <= 0.02 * m0, "image {i}: mass {m0} -> {m1}");
    }
}

#[test]
fn exact_helpers_compose_to_identity() {
    let img: Vec<f32> = (0..25).map(|k| k as f32).collect();
    assert_eq!(rotate90(&rotate90(&img, 5, 1), 5, 3), img);
    assert_eq!(flip(&flip(&img, 5), 5), img);
    assert_ne!(rotate90(&img, 5, 1), img);
    // no augmentation only centres the image on the canvas
    let centred = place(&img, (5, 7), Resampling::Bilinear, |i| {
        draw_or_upright(false, 0, i)
    });
    assert_eq!(centred[7 + 1], 0.0);
    assert_eq!(centred[8], img[0]);
}

/// The test split read alone (for contact sheets and search strips) is the
/// test split of the whole load, image for image and label for label.
#[test]
fn the_test_split_alone_is_the_test_split_of_the_whole_load() {
    for (limit, seed) in [(0, 0), (37, 5)] {
        let config = DataConfig {
            dataset: DatasetKind::Synthetic,
            test_limit: limit,
            seed,
            ..DataConfig::default()
        };
        let whole = load_splits(&config).unwrap().test;
        let alone = eqae::data::load_test_split(&config).unwrap();
        assert!(!alone.is_empty());
        assert_eq!(alone.all_pixels().unwrap(), whole.all_pixels().unwrap());
        assert_eq!(alone.labels, whole.labels);
        assert_eq!(alone.size, whole.size);
    }
}
