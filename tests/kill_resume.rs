//! Training killed at random moments (`kill -9`, also while a checkpoint
//! is being written) and resumed must end where an uninterrupted run
//! ends: the same weights (bit for bit the same outputs), a `metrics.csv`
//! with each epoch once and the same losses, and no temporary files left
//! behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use burn::module::Module;
use eqae::train::{batch_tensor, RunDir};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const EPOCHS: usize = 3;

mod common;

/// A D4 run of 3 epochs on 320 synthetic images: a second or two.
fn config() -> String {
    common::toy(
        "kill",
        "train_limit = 320\ntest_limit = 16",
        "group = \"d4\"",
        "epochs = 3",
    )
}

fn start(dir: &Path, runs: &str) -> Child {
    Command::new(assert_cmd::cargo::cargo_bin("eqae"))
        .current_dir(dir)
        .args([
            "train",
            "--config",
            "kill.toml",
            "--runs",
            runs,
            "--quiet",
            "--resume",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for a child, killing it (and failing) after a minute.
fn finish(mut child: Child) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if t.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("training did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether a checkpoint is being written right now (its temporary folder exists).
fn writing_checkpoint(run: &Path) -> bool {
    std::fs::read_dir(run.join("checkpoints"))
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        })
        .unwrap_or(false)
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The trained model's reconstructions of a few test images, as bits.
/// (The weight files themselves hold a random id per parameter, so two
/// equal models are not equal files.)
fn outputs(run: &Path) -> Vec<u32> {
    let run = RunDir::new(run);
    let config = run.load_config().unwrap();
    let device = burn::tensor::Device::flex();
    let model = run.load_model(&config, &device).unwrap();
    let data = eqae::data::load_splits(&config.data).unwrap();
    let x = batch_tensor(&data.test, &(0..8).collect::<Vec<_>>(), &device).unwrap();
    let y = model.valid().forward(x).reconstruction;
    eqae::nn::transform::to_vec(&y)
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

/// (epoch, train_loss, validation_loss) per row of metrics.csv.
fn metrics(run: &Path) -> Vec<(usize, String, String)> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

#[test]
fn killed_and_resumed_training_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("kill.toml"), config()).unwrap();

    let t = Instant::now();
    let status = finish(start(d, "reference"));
    assert!(status.success());
    let whole_ms = t.elapsed().as_millis() as u64;
    let reference = d.join("reference/kill");
    let expected_outputs = outputs(&reference);
    let expected = metrics(&reference);
    assert_eq!(
        expected.iter().map(|m| m.0).collect::<Vec<_>>(),
        (1..=EPOCHS).collect::<Vec<_>>()
    );

    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let (mut kills, mut in_checkpoint) = (0, 0);
    for trial in 0..20 {
        let runs = format!("trial{trial}");
        let run = d.join(&runs).join("kill");
        // up to three kills per trial, then let it finish
        for round in 0.. {
            let mut child = start(d, &runs);
            if round >= 3 {
                assert!(
                    finish(child).success(),
                    "trial {trial}: final resume failed"
                );
                break;
            }
            // odd trials wait for a checkpoint write and kill inside it;
            // even ones kill at a random moment of the whole run
            let deadline = Instant::now() + Duration::from_millis(rng.gen_range(0..whole_ms));
            // a folder left by the last kill is cleaned up first: wait for
            // that before watching for a new one
            let mut armed = !writing_checkpoint(&run);
            let mut caught = false;
            let exited = loop {
                if child.try_wait().unwrap().is_some() {
                    break true;
                }
                let writing = writing_checkpoint(&run);
                if trial % 2 == 1 && armed && writing {
                    caught = true;
                    break false;
                }
                armed |= !writing;
                if trial % 2 == 0 && Instant::now() >= deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_micros(200));
            };
            if exited {
                let out = child.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "trial {trial}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                break;
            }
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            in_checkpoint += caught as usize;
        }
        assert!(
            outputs(&run) == expected_outputs,
            "trial {trial}: the model differs from the uninterrupted run's"
        );
        assert_eq!(metrics(&run), expected, "trial {trial}: metrics.csv");
        let stray: Vec<PathBuf> = files(&d.join(&runs))
            .into_iter()
            .filter(|p| {
                p.strip_prefix(d)
                    .unwrap()
                    .components()
                    .any(|c| c.as_os_str().to_string_lossy().ends_with(".tmp"))
            })
            .collect();
        assert!(stray.is_empty(), "trial {trial}: left behind {stray:?}");
    }
    // the trials really interrupted training, some inside a checkpoint write
    assert!(kills >= 20, "only {kills} kills");
    assert!(
        in_checkpoint >= 5,
        "only {in_checkpoint} kills inside a checkpoint write"
    );
}
