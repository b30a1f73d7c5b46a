//! `eqae export`: the ONNX file of every group and head, run by ONNX
//! Runtime (`tests/onnx_check.py`), computes what `eqae embed` computes on
//! the same images, passes ONNX's full check, and keeps the exact
//! invariance under quarter turns and mirror images. Bad input gets one
//! clear line.

use std::path::Path;

use ndarray::Array4;

mod common;
use common::{fails_with, succeeds, toy};

/// Side of the toy models' images.
const SIZE: usize = 16;

/// Smooth asymmetric shapes on a dark border, as 8-bit grey levels.
fn shapes(count: usize) -> Vec<Vec<u8>> {
    let c = (SIZE as f32 - 1.0) / 2.0;
    (0..count)
        .map(|b| {
            let phase = b as f32 * 1.3 + 0.4;
            let (cx, cy) = (3.0 * phase.cos(), 2.5 * phase.sin());
            (0..SIZE * SIZE)
                .map(|p| {
                    let (u, v) = ((p % SIZE) as f32 - c, c - (p / SIZE) as f32);
                    let r2 = u * u + v * v;
                    let edge = (1.0 - r2 / (0.45 * SIZE as f32).powi(2)).max(0.0);
                    let g = (-((u - cx).powi(2) + (v - cy).powi(2)) / 8.0).exp()
                        + 0.5 * (-((u + cy).powi(2) + (v - 1.0).powi(2)) / 3.0).exp();
                    (255.0 * (edge * g).min(1.0)).round() as u8
                })
                .collect()
        })
        .collect()
}

/// The shapes as PNG files in `dir/imgs` (what `eqae embed` reads) and as
/// the network's input in `dir/images.npy` (what ONNX Runtime is given):
/// grey level / 255, float32 `[N, 1, S, S]`.
fn image_files(dir: &Path, count: usize) {
    let imgs = dir.join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    let mut inputs = Vec::new();
    for (i, pixels) in shapes(count).into_iter().enumerate() {
        let img = image::GrayImage::from_raw(SIZE as u32, SIZE as u32, pixels.clone()).unwrap();
        img.save(imgs.join(format!("shape_{i:03}.png"))).unwrap();
        inputs.extend(pixels.iter().map(|&p| p as f32 / 255.0));
    }
    let inputs = Array4::from_shape_vec((count, 1, SIZE, SIZE), inputs).unwrap();
    ndarray_npy::write_npy(dir.join("images.npy"), &inputs).unwrap();
}

/// What `tests/onnx_check.py` measured of one file.
struct Checked {
    metadata: serde_json::Value,
    shape: Vec<usize>,
    row_difference: f64,
    orbit_difference: f64,
}

fn onnx_check(dir: &Path, model: &str, features: &str) -> Checked {
    let python = common::python_with(&["numpy", "onnx", "onnxruntime"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx_check.py");
    let out = std::process::Command::new(&python)
        .current_dir(dir)
        .arg(&script)
        .args([model, "images.npy", features])
        .output()
        .expect("Python is needed for this test: run scripts/test.sh");
    assert!(
        out.status.success(),
        "{model}: onnx_check.py failed (ONNX Runtime and onnx come with scripts/test.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Checked {
        metadata: v["metadata"].clone(),
        shape: v["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect(),
        row_difference: v["row_difference"].as_f64().unwrap(),
        orbit_difference: v["orbit_difference"].as_f64().unwrap(),
    }
}

/// Train a toy run `name` with `model` lines in `dir/runs/name`.
fn trained(dir: &Path, name: &str, model: &str) {
    std::fs::write(dir.join(format!("{name}.toml")), toy(name, "", model, "")).unwrap();
    succeeds(
        dir,
        &["train", "--config", &format!("{name}.toml"), "--quiet"],
    );
}

/// Every model kind and group, and the heads each offers.
const MODELS: [(&str, &str, &[&str]); 11] = [
    ("c4", "group = \"c4\"", &["average", "gram", "v"]),
    (
        "d4",
        "group = \"d4\"\ngroup_linear = [6]",
        &["average", "gram", "v"],
    ),
    ("c12", "group = \"c12\"", &["average", "gram", "v"]),
    ("d12", "group = \"d12\"", &["average", "gram", "v"]),
    ("c8", "group = \"c8\"", &["gram"]),
    ("d24", "group = \"d24\"", &["average", "gram"]),
    // smoothed input: Gaussian taps in the branches, and for D4 alone
    ("d12_smooth", "group = \"d12\"\nsmoothing = 1.0", &["gram"]),
    ("d4_smooth", "group = \"d4\"\nsmoothing = 1.0", &["gram"]),
    (
        "d4_attention",
        "group = \"d4\"\nkind = \"attention\"\ncode = 8",
        &["attention", "attention-q"],
    ),
    (
        "d12_attention",
        "group = \"d12\"\nkind = \"attention\"\ncode = 0",
        &["attention", "attention-q"],
    ),
    ("baseline", "kind = \"baseline\"", &["code"]),
];

/// Invariant heads of groups that contain D4: exact under every element of D4.
fn exact_under_d4(name: &str, head: &str) -> bool {
    (name.starts_with("d4") || name.starts_with("d12") || name.starts_with("d24"))
        && matches!(head, "average" | "gram" | "attention" | "attention-q")
}

#[test]
fn every_group_and_head_in_onnx_runtime_computes_what_embed_computes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let count = 9;
    image_files(d, count);
    let mut measured = Vec::new();
    for (name, model, heads) in MODELS {
        trained(d, name, model);
        let run = format!("runs/{name}");
        for head in heads {
            let onnx = format!("{name}_{head}.onnx");
            let npy = format!("{name}_{head}.npy");
            let said = succeeds(
                d,
                &["export", "--run", &run, "--head", head, "--out", &onnx],
            );
            assert!(said.contains(&onnx), "{said}");
            succeeds(
                d,
                &[
                    "embed", "--run", &run, "--images", "imgs", "--head", head, "--out", &npy,
                    "--quiet",
                ],
            );
            let embedded: ndarray::Array2<f32> = ndarray_npy::read_npy(d.join(&npy)).unwrap();
            let c = onnx_check(d, &onnx, &npy);
            assert_eq!(c.shape, [count, embedded.ncols()], "{onnx}");
            assert!(
                c.row_difference <= 1e-5,
                "{onnx}: ONNX Runtime and eqae embed differ by {:.2e} (relative, worst row)",
                c.row_difference
            );
            if exact_under_d4(name, head) {
                assert!(
                    c.orbit_difference <= 1e-5,
                    "{onnx}: features change by {:.2e} under quarter turns and mirror images",
                    c.orbit_difference
                );
            }
            assert_eq!(c.metadata["head"], *head, "{onnx}");
            assert_eq!(c.metadata["image_size"], SIZE.to_string(), "{onnx}");
            assert_eq!(
                c.metadata["features"],
                embedded.ncols().to_string(),
                "{onnx}"
            );
            assert!(c.metadata["preprocessing"]
                .as_str()
                .unwrap()
                .contains("[0, 1]"));
            measured.push((onnx, c.row_difference, c.orbit_difference));
        }
    }
    for (file, row, orbit) in &measured {
        eprintln!("{file}: largest row difference {row:.1e}, orbit difference {orbit:.1e}");
    }
    // the negative control: a head that is not invariant moves under the group
    let v = measured.iter().find(|m| m.0 == "d4_v.onnx").unwrap();
    assert!(v.2 > 1e-3, "V is not invariant, yet moved by {:.2e}", v.2);
    // nothing but the finished files is left in the folder
    let leftovers: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn export_refuses_bad_input_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained(d, "toy", "group = \"d4\"");
    fails_with(
        d,
        &["export", "--run", "runs/none", "--out", "a.onnx"],
        &["runs/none", "no such run directory"],
    );
    fails_with(
        d,
        &[
            "export",
            "--run",
            "runs/toy",
            "--head",
            "attention",
            "--out",
            "a.onnx",
        ],
        &["no attention features", "average, gram"],
    );
    fails_with(
        d,
        &["export", "--run", "runs/toy", "--out", "a.npy"],
        &["must end in .onnx"],
    );
    fails_with(
        d,
        &["export", "--run", "runs/toy", "--out", "toy.toml/a.onnx"],
        &["--out toy.toml/a.onnx", "cannot create the folder"],
    );
    fails_with(
        d,
        &["export", "--run", "runs/toy", "--out", "runs"],
        &["--out runs", "must end in .onnx"],
    );
    // a run whose weights are gone
    std::fs::remove_file(d.join("runs/toy/model.bpk")).unwrap();
    fails_with(
        d,
        &["export", "--run", "runs/toy", "--out", "a.onnx"],
        &["no trained weights"],
    );
    assert!(!d.join("a.onnx").exists());
}

#[test]
fn safetensors_hold_the_trained_weights_and_say_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained(d, "toy", "group = \"d4\"");
    succeeds(
        d,
        &[
            "export",
            "--run",
            "runs/toy",
            "--out",
            "toy.onnx",
            "--safetensors",
        ],
    );
    let bytes = std::fs::read(d.join("toy.safetensors")).unwrap();
    // safetensors: 8-byte little-endian header length, then a JSON header
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    let names: Vec<&String> = header.as_object().unwrap().keys().collect();
    assert!(
        names.iter().any(|n| n.ends_with("lift.bank.weight")),
        "{names:?}"
    );
    assert!(header["__metadata__"]["tensors"]
        .as_str()
        .unwrap()
        .contains("base filter"));
    assert_eq!(header["__metadata__"]["run"], "toy");
}

/// `scripts/prepare.py` (the preprocessing the ONNX file's metadata
/// states) gives the features `eqae embed` gives, on every kind of file:
/// a 28x28 digit, one of the canvas size (taken as it is), 16-bit grey,
/// colour (Rec. 709 luma), and a digit drawn in the alpha channel (laid
/// over white: the same as the dark-on-white digit).
#[test]
fn prepare_py_gives_embeds_features_on_every_kind_of_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let imgs = d.join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    let stroke = |x: u32, y: u32, w: u32| -> f32 {
        // a thick ring off centre, with soft edges
        let (cx, cy) = (w as f32 * 0.45, w as f32 * 0.55);
        let r = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
        (1.0 - ((r - w as f32 * 0.25).abs() / 3.0)).clamp(0.0, 1.0)
    };
    let grey = |w: u32| {
        image::GrayImage::from_fn(w, w, |x, y| image::Luma([(stroke(x, y, w) * 255.0) as u8]))
    };
    grey(28).save(imgs.join("a_grey28.png")).unwrap();
    grey(32).save(imgs.join("b_canvas32.png")).unwrap();
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(28, 28, |x, y| {
        image::Luma([(stroke(x, y, 28) * 65535.0) as u16 | (x as u16 & 7)])
    })
    .save(imgs.join("c_grey16.png"))
    .unwrap();
    image::RgbImage::from_fn(28, 28, |x, y| {
        let v = stroke(x, y, 28);
        image::Rgb([
            (v * 250.0) as u8,
            (v * 120.0) as u8 + (y as u8),
            (v * 40.0) as u8,
        ])
    })
    .save(imgs.join("d_rgb.png"))
    .unwrap();
    // black ink whose strokes are in the alpha channel, and the same digit
    // as dark strokes on white
    image::RgbaImage::from_fn(28, 28, |x, y| {
        image::Rgba([0, 0, 0, (stroke(x, y, 28) * 255.0) as u8])
    })
    .save(imgs.join("e_alpha.png"))
    .unwrap();
    image::GrayImage::from_fn(28, 28, |x, y| {
        image::Luma([255 - (stroke(x, y, 28) * 255.0) as u8])
    })
    .save(imgs.join("f_ink.png"))
    .unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mnist_d4_gram");
    common::succeeds(
        d,
        &[
            "embed",
            "--run",
            model.to_str().unwrap(),
            "--images",
            "imgs",
            "--head",
            "gram",
            "--quiet",
            "--out",
            "f.npy",
        ],
    );
    let f: ndarray::Array2<f32> = ndarray_npy::read_npy(d.join("f.npy")).unwrap();
    let (alpha, ink) = (f.row(4), f.row(5));
    assert!(
        alpha.iter().zip(ink.iter()).all(|(a, b)| a == b),
        "alpha over white is not the ink digit"
    );
    let python = common::python_with(&["numpy", "onnxruntime", "PIL"]);
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let check = format!(
        r#"
import sys, numpy as np, onnxruntime as ort
sys.path.insert(0, {scripts:?})
from prepare import prepare
names = open("f_files.txt").read().split()
x = np.stack([prepare("imgs/" + n) for n in names]).astype(np.float32)
onnx = ort.InferenceSession({onnx:?}).run(["features"], {{"images": x}})[0]
eqae = np.load("f.npy")
for n, a, b in zip(names, onnx, eqae):
    print(n, float(np.abs(a - b).max() / np.abs(b).max()))
"#,
        onnx = model.join("model.onnx").to_str().unwrap()
    );
    let out = std::process::Command::new(&python)
        .current_dir(d)
        .args(["-c", &check])
        .output()
        .expect("Python is needed for this test: run scripts/test.sh");
    assert!(
        out.status.success(),
        "prepare.py failed (numpy, Pillow and ONNX Runtime come with scripts/test.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 6, "{report}");
    for line in lines {
        let (name, diff) = line.rsplit_once(' ').unwrap();
        let diff: f64 = diff.parse().unwrap();
        assert!(
            diff < 1e-5,
            "{name}: prepare.py and eqae embed differ by {diff:.2e} (relative)"
        );
    }
}
