//! Helpers shared by the integration tests.
#![allow(dead_code)]

use burn::tensor::{Device, Tensor, TensorData};

/// The device the tests run on: burn's flex CPU backend, or the wgpu
/// backend when built with `--features wgpu` and `EQAE_TEST_DEVICE=wgpu`.
pub fn device() -> Device {
    match std::env::var("EQAE_TEST_DEVICE").as_deref() {
        Ok("wgpu") => eqae::device::select(eqae::device::Backend::Wgpu)
            .expect("EQAE_TEST_DEVICE=wgpu needs --features wgpu"),
        _ => Device::flex(),
    }
}

/// Smooth, asymmetric images that vanish outside a centred disk, so that
/// rotations by any angle keep them inside the canvas (`[B, 1, S, S]`).
pub fn blob_images(batch: usize, size: usize, seed: u64) -> Tensor<4> {
    let mut data = Vec::with_capacity(batch * size * size);
    let c = (size as f32 - 1.0) / 2.0;
    for b in 0..batch {
        let phase = seed as f32 * 0.77 + b as f32 * 1.3;
        let (cx1, cy1) = (3.0 * phase.cos(), 4.0 * phase.sin());
        let (cx2, cy2) = (-5.0 * (phase * 0.5).sin(), 2.0 + phase.cos());
        for i in 0..size {
            for j in 0..size {
                let (u, v) = (j as f32 - c, c - i as f32);
                let r2 = u * u + v * v;
                let window = if r2 < (0.4 * size as f32).powi(2) {
                    1.0
                } else {
                    0.0
                };
                let g1 = (-((u - cx1).powi(2) + (v - cy1).powi(2)) / 12.0).exp();
                let g2 = 0.6 * (-((u - cx2).powi(2) + (v - cy2).powi(2)) / 6.0).exp();
                let edge = (1.0 - r2 / (0.4 * size as f32).powi(2)).max(0.0);
                data.push(window * edge * (g1 + g2));
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [batch, 1, size, size]), &device())
}

/// IDX image file bytes (MNIST's format): magic, count, rows, cols, pixels.
pub fn idx_images(pixels: &[u8], n: usize, rows: usize, cols: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + pixels.len());
    for w in [0x0803u32, n as u32, rows as u32, cols as u32] {
        out.extend_from_slice(&w.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// IDX label file bytes: magic, count, labels.
pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    for w in [0x0801u32, labels.len() as u32] {
        out.extend_from_slice(&w.to_be_bytes());
    }
    out.extend_from_slice(labels);
    out
}

/// Exact 90-degree rotations (counter-clockwise, `quarter_turns` times) of
/// a square image.
pub fn rotate90(img: &[f32], size: usize, quarter_turns: usize) -> Vec<f32> {
    let g = eqae::group::Group::cyclic(4);
    eqae::group::action::transform_square(img, size, &g, quarter_turns % 4)
}

/// Exact mirror (`x -> -x`) of a square image.
pub fn flip(img: &[f32], size: usize) -> Vec<f32> {
    let g = eqae::group::Group::dihedral(4);
    eqae::group::action::transform_square(img, size, &g, 4)
}

/// A fake MNIST-format data set under `root/<name>`: `train` and `test`
/// 28x28 images with a textured square in the middle, labels cycling 0..10.
pub fn fake_mnist(root: &std::path::Path, name: &str, train: usize, test: usize) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (stem, n) in [("train", train), ("t10k", test)] {
        let pixels: Vec<u8> = (0..n * 28 * 28)
            .map(|i| {
                let (y, x) = ((i / 28) % 28, i % 28);
                if (6..22).contains(&y) && (6..22).contains(&x) {
                    ((i * 37 + n) % 251) as u8
                } else {
                    0
                }
            })
            .collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        std::fs::write(
            dir.join(format!("{stem}-images-idx3-ubyte")),
            idx_images(&pixels, n, 28, 28),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{stem}-labels-idx1-ubyte")),
            idx_labels(&labels),
        )
        .unwrap();
    }
}

/// The binary in `dir`, with a time limit: a hang fails the test instead
/// of CI.
pub fn eqae(dir: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("eqae").unwrap();
    cmd.current_dir(dir)
        .timeout(std::time::Duration::from_secs(300));
    cmd
}

/// Run the binary in `dir` with `args`.
pub fn run(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    eqae(dir).args(args).output().unwrap()
}

/// Bytes as text, lossily.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The command must succeed; returns stdout and stderr together.
pub fn succeeds(dir: &std::path::Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "{args:?} failed ({:?}): {}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout) + &text(&out.stderr)
}

/// A tiny synthetic-data run config. `data`, `model` and `train` hold
/// `key = value` lines that replace or extend those sections.
pub fn toy(name: &str, data: &str, model: &str, train: &str) -> String {
    let mut config: toml::Table = toml::from_str(&format!(
        r#"name = "{name}"
[data]
dataset = "synthetic"
image_size = 16
train_limit = 128
test_limit = 40
[model]
group = "c4"
channels = [2, 4]
latent = 4
group_linear = [4]
[train]
epochs = 1
batch_size = 32
"#
    ))
    .unwrap();
    for (section, lines) in [("data", data), ("model", model), ("train", train)] {
        let extra: toml::Table = toml::from_str(lines).unwrap();
        let table = config[section].as_table_mut().unwrap();
        table.extend(extra);
    }
    toml::to_string(&config).unwrap()
}

/// The command must fail with exit code 1 and one error line, `Error: ...`,
/// last, containing every one of `needles` (lines before it are the
/// command's log, e.g. a training's first lines). Returns that line.
pub fn fails_with(dir: &std::path::Path, args: &[&str], needles: &[&str]) -> String {
    let out = run(dir, args);
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?}: expected a clean failure (exit 1), got {:?} (None = killed: a hang or a signal); stderr: {err}",
        out.status
    );
    let lines: Vec<&str> = err.trim().lines().collect();
    let errors = lines.iter().filter(|l| l.starts_with("Error: ")).count();
    assert_eq!(errors, 1, "{args:?}: not one error line: {err}");
    let last = lines.last().copied().unwrap_or_default();
    assert!(last.starts_with("Error: "), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    for n in needles {
        assert!(
            last.contains(n),
            "{args:?}: {last:?} does not mention {n:?}"
        );
    }
    last.to_string()
}

/// The binary under test (`CARGO_BIN_EXE_eqae` at run time, where set:
/// another build can be tried with the same tests).
pub fn bin() -> std::path::PathBuf {
    std::env::var_os("CARGO_BIN_EXE_eqae")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_eqae").into())
}

/// `strace`, which the kill tests drive: a clear failure where it is missing.
fn strace() -> std::process::Command {
    let probe = std::process::Command::new("strace").arg("-V").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "these tests kill eqae at chosen system calls with strace: apt-get install strace"
    );
    std::process::Command::new("strace")
}

/// Run the binary in `dir` with `args` under strace, killed by SIGKILL at
/// its `n`th rename (1-based), as a kill at that moment would; a run with
/// fewer renames ends normally.
pub fn killed_at_rename(dir: &std::path::Path, args: &[&str], n: usize) -> std::process::Output {
    let mut cmd = strace();
    cmd.current_dir(dir)
        .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=rename", "-e"])
        .arg(format!("inject=rename:signal=KILL:when={n}"))
        .arg("--")
        .arg(bin())
        .args(args);
    assert_cmd::Command::from_std(cmd)
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap()
}

/// How many renames the binary makes running `args` in `dir` (the command
/// runs to its end, as it would without strace).
pub fn renames(dir: &std::path::Path, args: &[&str]) -> usize {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = strace();
    cmd.current_dir(dir)
        .args(["-f", "-qq", "-e", "trace=rename", "-o"])
        .arg(log.path())
        .arg("--")
        .arg(bin())
        .args(args);
    let out = assert_cmd::Command::from_std(cmd)
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    std::fs::read_to_string(log.path())
        .unwrap()
        .lines()
        .filter(|l| l.contains("rename("))
        .count()
}

/// A PNG of `w x h` grey pixels drawn from `seed`: a textured square on a
/// dark background.
pub fn grey_png(path: &std::path::Path, w: u32, h: u32, seed: u32) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let img = image::GrayImage::from_fn(w, h, |x, y| {
        let inside = x > w / 5 && x < 4 * w / 5 && y > h / 5 && y < 4 * h / 5;
        image::Luma([if inside {
            ((x * 7 + y * 13 + seed * 29) % 200 + 40) as u8
        } else {
            0
        }])
    });
    img.save(path).unwrap();
}

/// The small D4 config most file tests use: 200 synthetic 16x16 images.
pub fn syn_d4(name: &str, epochs: usize) -> String {
    toy(
        name,
        "train_limit = 200\ntest_limit = 100",
        "group = \"d4\"\nlatent = 8\ngroup_linear = [8]",
        &format!("epochs = {epochs}"),
    )
}

/// `syn_d4(name, 1)` trained into `dir/runs/<name>`.
pub fn trained_syn_d4(dir: &std::path::Path, name: &str) {
    std::fs::write(dir.join(format!("{name}.toml")), syn_d4(name, 1)).unwrap();
    succeeds(
        dir,
        &["train", "--config", &format!("{name}.toml"), "--quiet"],
    );
}

/// The Python the tests run their clients with (`EQAE_PYTHON`, which
/// `scripts/test.sh` sets, or `python3`), after checking that it imports
/// `modules`: a test without them fails at once with what is missing and
/// how to get it, not later on a confusing mismatch.
pub fn python_with(modules: &[&str]) -> String {
    let python = std::env::var("EQAE_PYTHON").unwrap_or_else(|_| "python3".into());
    let import = format!("import {}", modules.join(", "));
    let found = std::process::Command::new(&python)
        .args(["-c", &import])
        .output();
    match found {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "this test needs the Python modules {modules:?} in {python}, which cannot `{import}` ({}): run scripts/test.sh, which installs them into target/pyenv, or point EQAE_PYTHON at a Python that has them",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("").trim()
        ),
        Err(e) => panic!(
            "this test needs Python ({python}: {e}) with {modules:?}: run scripts/test.sh, or point EQAE_PYTHON at one"
        ),
    }
}
