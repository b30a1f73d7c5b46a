//! The trained models shipped in `models/`: each loads with its own config,
//! passes `eqae check`, embeds a folder of images with no training, and its
//! invariant features do not move under any exact group element.

use std::path::{Path, PathBuf};

use eqae::data::Dataset;
use eqae::eval::features::{extract, Head};
use eqae::group::action::transform_square;
use eqae::model::Autoencoder;
use eqae::train::RunDir;

mod common;

/// Every shipped model folder (one with a `model.bpk`).
fn shipped() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("model.bpk").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

#[test]
fn models_are_shipped() {
    let names: Vec<String> = shipped()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for name in [
        "mnist_d4_gram",
        "mnist_d12_gram",
        "mnist_d12_gram_any_angle",
        "fashion_d4_gram",
        "fashion_d12_gram",
    ] {
        assert!(names.contains(&name.to_string()), "{names:?}");
    }
}

#[test]
fn shipped_features_are_invariant_on_generated_images() {
    let device = common::device();
    for dir in shipped() {
        let run = RunDir::new(&dir);
        let config = run.load_config().unwrap();
        let model = run.load_model(&config, &device).unwrap();
        let Autoencoder::Equivariant(m) = &model else {
            continue;
        };
        let group = m.group().group();
        let size = config.data.image_size;
        let upright: Vec<f32> = common::blob_images(4, size, 9)
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap();
        let exact: Vec<usize> = (0..group.order())
            .filter(|&t| group.is_grid_exact(t))
            .collect();
        let mut images = Vec::new();
        for &t in &exact {
            for img in upright.chunks(size * size) {
                images.extend(transform_square(img, size, &group, t));
            }
        }
        let rows = exact.len() * 4;
        let data = Dataset {
            pixels: images.into(),
            size,
            labels: vec![0; rows],
            class_names: vec!["blob".into()],
            file_names: None,
        };
        for head in Head::defaults(config.model.kind) {
            let f = extract(&model, &config, head, &data, &device, true).unwrap();
            let scale = f.iter().fold(0.0f32, |a, v| a.max(v.abs())).max(1e-12);
            let mut worst = 0.0f32;
            for (k, _) in exact.iter().enumerate().skip(1) {
                for i in 0..4 {
                    let (a, b) = (f.row(i), f.row(k * 4 + i));
                    for (x, y) in a.iter().zip(b.iter()) {
                        worst = worst.max((x - y).abs() / scale);
                    }
                }
            }
            assert!(
                worst < 1e-5,
                "{}: {head:?} features move by {worst:e} under exact elements",
                dir.display()
            );
        }
    }
}

#[test]
fn shipped_models_pass_check_and_embed_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    for k in 0..3u32 {
        let img = image::GrayImage::from_fn(32, 32, |x, y| {
            let inside = (6..26).contains(&x) && (6..26).contains(&y);
            image::Luma([if inside {
                ((x * 7 + y * 13 + k * 50) % 256) as u8
            } else {
                0
            }])
        });
        img.save(images.join(format!("img{k}.png"))).unwrap();
    }
    for model in shipped() {
        let m = model.to_str().unwrap();
        let out = common::succeeds(dir.path(), &["check", "--run", m]);
        assert!(out.contains("worst error over exact elements"), "{out}");
        let npy = dir.path().join("f.npy");
        common::succeeds(
            dir.path(),
            &[
                "embed",
                "--run",
                m,
                "--images",
                "images",
                "--head",
                "gram",
                "--out",
                npy.to_str().unwrap(),
                "--quiet",
            ],
        );
        let f: ndarray::Array2<f32> = ndarray_npy::read_npy(&npy).unwrap();
        assert_eq!(f.nrows(), 3, "{m}");
    }
}

/// Each shipped `model.onnx` is what `eqae export --head gram` writes for
/// the shipped weights today, byte for byte (so it cannot go stale).
#[test]
fn shipped_onnx_files_are_the_export_of_the_shipped_weights() {
    let dir = tempfile::tempdir().unwrap();
    for model in shipped() {
        let m = model.to_str().unwrap();
        let out = dir.path().join("model.onnx");
        common::succeeds(
            dir.path(),
            &[
                "export",
                "--run",
                m,
                "--head",
                "gram",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        let shipped = std::fs::read(model.join("model.onnx"))
            .unwrap_or_else(|e| panic!("{m}/model.onnx: {e}"));
        assert!(
            shipped == std::fs::read(&out).unwrap(),
            "{m}/model.onnx is not the export of its weights: run `eqae export --run {m} --head gram --out {m}/model.onnx`"
        );
    }
}

/// Every shipped model carries the description a new run gets: the whole
/// config it was trained with (equal to its `config.toml`) and the
/// SHA-256 of its weights; so flipped bytes in `model.bpk`, or a
/// `config.toml` that says another data set, are refused, and its
/// `model.onnx` names the weights it was made from.
#[test]
fn shipped_models_are_described_as_new_runs_are() {
    use sha2::Digest;
    let device = common::device();
    for dir in shipped() {
        let name = dir.display();
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap())
                .unwrap();
        let bytes = std::fs::read(dir.join("model.bpk")).unwrap();
        let sha: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(info["sha256"], sha.as_str(), "{name}: model.json's sha256");
        let trained: eqae::config::Config = serde_json::from_value(info["trained_with"].clone())
            .unwrap_or_else(|e| panic!("{name}: trained_with: {e}"));
        let config = RunDir::new(&dir).load_config().unwrap();
        assert!(
            trained.diff(&config).is_empty(),
            "{name}: trained_with is not config.toml"
        );
        let onnx = std::fs::read(dir.join("model.onnx")).unwrap();
        assert!(
            onnx.windows(64).any(|w| w == sha.as_bytes()),
            "{name}: model.onnx does not carry weights_sha256"
        );

        // a copy with one flipped byte, and one whose config says synthetic data
        let copy = tempfile::tempdir().unwrap();
        for f in ["config.toml", "model.bpk", "model.json"] {
            std::fs::copy(dir.join(f), copy.path().join(f)).unwrap();
        }
        let mut flipped = bytes.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x40;
        std::fs::write(copy.path().join("model.bpk"), &flipped).unwrap();
        let run = RunDir::new(copy.path());
        let Err(err) = run.load_model(&config, &device) else {
            panic!("{name}: flipped bytes load");
        };
        assert!(
            format!("{err:#}").contains("is not the file"),
            "{name}: {err:#}"
        );
        std::fs::write(copy.path().join("model.bpk"), &bytes).unwrap();
        let text = std::fs::read_to_string(dir.join("config.toml")).unwrap();
        let other = text.replacen(
            &format!("dataset = \"{}\"", config.data.dataset.name()),
            "dataset = \"synthetic\"",
            1,
        );
        assert_ne!(other, text);
        std::fs::write(copy.path().join("config.toml"), other).unwrap();
        let config = run.load_config().unwrap();
        let Err(err) = run.load_model(&config, &device) else {
            panic!("{name}: a config of another data set loads");
        };
        assert!(
            format!("{err:#}").contains("data.dataset"),
            "{name}: {err:#}"
        );
    }
}
