//! Defects found by trying eqae as a hostile user, each a run of the real
//! binary: outputs are complete or absent, a config describes the weights
//! beside it, a resume never throws trained weights away, images from
//! files are prepared as the model's own data were, and every error names
//! its culprit in one line.

use std::path::Path;

use ndarray::{Array1, Array2};

mod common;
use common::{fails_with, run, succeeds, text, toy};

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(name), body).unwrap();
}

/// A small D4 config: 200 synthetic 16x16 images.
fn syn(epochs: usize, extra_train: &str) -> String {
    toy(
        "syn",
        "train_limit = 200\ntest_limit = 100",
        "group = \"d4\"\nlatent = 8\ngroup_linear = [8]",
        &format!("epochs = {epochs}\n{extra_train}"),
    )
}

/// The 1-epoch `syn` run trained into `d/runs/syn` (config `d/s.toml`).
fn trained_syn(d: &Path) {
    write(d, "s.toml", &syn(1, ""));
    succeeds(d, &["train", "--config", "s.toml", "--quiet"]);
}

fn read_npy(path: &Path) -> Array2<f32> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ------------------------------------------------- outputs are never partial

#[test]
fn an_embed_never_leaves_a_partial_npy_under_its_final_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // V of 8 x 256 values per image: a 14 MB output, written for a while
    write(
        d,
        "big.toml",
        &toy(
            "big",
            "train_limit = 2000",
            "group = \"d4\"\ngroup_linear = [256]",
            "",
        ),
    );
    succeeds(d, &["train", "--config", "big.toml", "--quiet"]);
    let old_args = [
        "embed",
        "--run",
        "runs/big",
        "--split",
        "train",
        "--head",
        "average",
        "--out",
        "out/kv.npy",
        "--quiet",
    ];
    succeeds(d, &old_args);
    let old = std::fs::read(d.join("out/kv.npy")).unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("eqae"))
        .current_dir(d)
        .args([
            "embed",
            "--run",
            "runs/big",
            "--split",
            "train",
            "--head",
            "v",
            "--out",
            "out/kv.npy",
            "--quiet",
        ])
        .spawn()
        .unwrap();
    // watch the final name while the new output is written: its size is
    // the old file's or the whole new one's, never one in between
    let out = d.join("out/kv.npy");
    let new_data = 1800 * 8 * 256 * 4;
    let started = std::time::Instant::now();
    loop {
        let len = std::fs::metadata(&out)
            .expect("the previous output vanished before the new one was whole")
            .len();
        assert!(
            len == old.len() as u64 || len >= new_data,
            "a partial file of {len} bytes under the final name"
        );
        if len >= new_data {
            let a = read_npy(&out);
            assert_eq!(a.shape(), &[1800, 8 * 256]);
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
        }
        assert!(started.elapsed().as_secs() < 120, "embed did not finish");
    }
    assert!(child.wait().unwrap().success());
    let files: Vec<String> = std::fs::read_dir(d.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().all(|f| !f.starts_with('.')),
        "temporary files left: {files:?}"
    );
}

/// Signals at random moments: after each, every output with a final name
/// is the previous complete one or the new complete one.
#[test]
fn embed_and_eval_killed_at_random_moments_leave_whole_outputs() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "big.toml",
        &toy(
            "big",
            "train_limit = 600\ntest_limit = 60",
            "group = \"d4\"\ngroup_linear = [32]",
            "",
        ),
    );
    succeeds(d, &["train", "--config", "big.toml", "--quiet"]);
    let embed = |head: &str| -> Vec<String> {
        [
            "embed",
            "--run",
            "runs/big",
            "--split",
            "train",
            "--head",
            head,
            "--out",
            "out/f.npy",
            "--quiet",
        ]
        .map(String::from)
        .to_vec()
    };
    let eval = || -> Vec<String> {
        [
            "eval", "--run", "runs/big", "--out", "rep", "--quiet", "--plots",
        ]
        .map(String::from)
        .to_vec()
    };
    let shapes = [vec![540usize, 8 * 32], vec![540, 32]];
    let check_embed = || {
        let out = d.join("out/f.npy");
        if out.exists() {
            let a = read_npy(&out);
            assert!(shapes.contains(&a.shape().to_vec()), "{:?}", a.shape());
            let labels: Array1<i64> = ndarray_npy::read_npy(d.join("out/f_labels.npy"))
                .expect("the labels beside a complete output");
            assert_eq!(labels.len(), a.nrows());
        }
    };
    let check_eval = || {
        for e in std::fs::read_dir(d.join("rep")).into_iter().flatten() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue; // a temporary name: allowed to be partial
            }
            match p.extension().and_then(|e| e.to_str()) {
                Some("png") => {
                    image::open(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                Some("json") => {
                    let v: Result<serde_json::Value, _> =
                        serde_json::from_slice(&std::fs::read(&p).unwrap());
                    v.unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                Some("md") => assert!(std::fs::read_to_string(&p).unwrap().ends_with('\n')),
                _ => {}
            }
        }
    };
    // the full durations, so the moments cover the whole run
    let time = |args: &[String]| {
        let t = std::time::Instant::now();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        succeeds(d, &refs);
        t.elapsed().as_secs_f64()
    };
    let embed_secs = time(&embed("v"));
    let eval_secs = time(&eval());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        // 20 moments for each command and signal
        for k in 0..40 {
            let (args, secs) = if k % 2 == 0 {
                (embed(if k % 4 == 0 { "average" } else { "v" }), embed_secs)
            } else {
                (eval(), eval_secs)
            };
            let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("eqae"))
                .current_dir(d)
                .args(&args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_secs_f64(
                rng.gen_range(0.0..secs * 1.1),
            ));
            // SAFETY: kill(2) on our own child's pid
            unsafe { libc::kill(child.id() as i32, signal) };
            let _ = child.wait();
            check_embed();
            check_eval();
        }
    }
}

// ----------------------------------------------------- large images, memory

#[test]
fn d12_on_large_images_builds_without_dense_tables_and_huge_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // the dense rotation tables of 256x256 D12 were 103 GB: an abort
    write(
        d,
        "big.toml",
        &toy("big", "image_size = 256", "group = \"d12\"", ""),
    );
    let out = succeeds(d, &["check", "--config", "big.toml", "--batch", "1"]);
    assert!(out.contains("worst error over exact elements"), "{out}");
    write(
        d,
        "huge.toml",
        &toy(
            "huge",
            "image_size = 256",
            "group = \"d12\"\nchannels = [8, 16]",
            "batch_size = 8192",
        ),
    );
    fails_with(
        d,
        &["train", "--config", "huge.toml", "--quiet"],
        &["train.batch_size = 8192", "data.image_size = 256", "GiB"],
    );
    assert!(!d.join("runs/huge").exists());
}

// ------------------------------------- a config describes the weights beside it

#[test]
fn a_resume_that_diverges_leaves_config_and_history_as_the_weights_are() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn(d);
    let config = std::fs::read_to_string(d.join("runs/syn/config.toml")).unwrap();
    write(d, "s.toml", &syn(3, "learning_rate = 1e30"));
    fails_with(
        d,
        &["train", "--config", "s.toml", "--quiet", "--resume"],
        &["loss became", "(epoch 1) is kept"],
    );
    assert_eq!(
        std::fs::read_to_string(d.join("runs/syn/config.toml")).unwrap(),
        config,
        "config.toml describes settings that never produced the weights"
    );
    assert!(!d.join("runs/syn/history.txt").exists());
    succeeds(d, &["embed", "--run", "runs/syn", "--out", "f.npy"]);
}

#[test]
fn a_config_that_does_not_describe_the_weights_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn(d);
    // what a kill during a resume of more epochs left before
    let path = d.join("runs/syn/config.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, config.replace("epochs = 1", "epochs = 8")).unwrap();
    for args in [
        &["eval", "--run", "runs/syn", "--out", "rep"][..],
        &["embed", "--run", "runs/syn", "--out", "f.npy"],
    ] {
        fails_with(
            d,
            args,
            &["does not describe the weights", "train.epochs", "--resume"],
        );
    }
    // weights cut by a kill between their description and the rename
    std::fs::write(&path, config).unwrap();
    let weights = d.join("runs/syn/model.bpk");
    let mut bytes = std::fs::read(&weights).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&weights, bytes).unwrap();
    fails_with(
        d,
        &["embed", "--run", "runs/syn", "--out", "f.npy"],
        &["model.bpk is not the file", "interrupted", "--resume"],
    );
    write(d, "s.toml", &syn(1, ""));
    succeeds(d, &["train", "--config", "s.toml", "--quiet", "--resume"]);
    succeeds(d, &["embed", "--run", "runs/syn", "--out", "f.npy"]);
}

#[test]
fn reading_a_run_while_it_trains_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn(d);
    write(
        d,
        "long.toml",
        &toy(
            "syn",
            "train_limit = 200\ntest_limit = 100",
            "group = \"d4\"\nlatent = 8\ngroup_linear = [8]",
            "epochs = 100000",
        ),
    );
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("eqae"))
        .current_dir(d)
        .args(["train", "--config", "long.toml", "--quiet", "--resume"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // wait for the lock to name the training process
    let lock = d.join("runs/syn/.lock");
    let pid = child.id().to_string();
    let t = std::time::Instant::now();
    while std::fs::read_to_string(&lock).unwrap_or_default() != pid {
        assert!(t.elapsed().as_secs() < 60, "training did not start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = run(d, &["embed", "--run", "runs/syn", "--out", "f.npy"]);
    child.kill().unwrap();
    let _ = child.wait();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("is being trained by process {pid}")),
        "{}",
        text(&out.stderr)
    );
}

// ------------------------------------------- resume never discards weights

#[test]
fn resume_without_a_checkpoint_keeps_the_trained_weights() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn(d);
    let weights = std::fs::read(d.join("runs/syn/model.bpk")).unwrap();
    std::fs::remove_dir_all(d.join("runs/syn/checkpoints")).unwrap();
    write(d, "s2.toml", &syn(2, ""));
    fails_with(
        d,
        &["train", "--config", "s2.toml", "--quiet", "--resume"],
        &["holds trained weights but no checkpoint"],
    );
    assert_eq!(
        std::fs::read(d.join("runs/syn/model.bpk")).unwrap(),
        weights
    );
}

#[test]
fn a_checkpoint_pointer_to_nothing_or_a_folder_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn(d);
    let latest = d.join("runs/syn/checkpoints/latest");
    std::fs::write(&latest, "epoch-0099").unwrap();
    write(d, "s2.toml", &syn(2, ""));
    fails_with(
        d,
        &["train", "--config", "s2.toml", "--quiet", "--resume"],
        &["epoch-0099", "not a complete checkpoint"],
    );
    std::fs::remove_file(&latest).unwrap();
    std::fs::create_dir(&latest).unwrap();
    fails_with(
        d,
        &["train", "--config", "s2.toml", "--quiet", "--resume"],
        &["checkpoints/latest", "is a folder"],
    );
}

// ---------------------------------------- images prepared as the data were

#[test]
fn digit_files_are_centred_on_the_canvas_as_the_training_digits_were() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::fake_mnist(&d.join("data"), "mnist", 60, 5);
    let config = toy(
        "digits",
        "dataset = \"mnist\"\nroot = \"data\"\nimage_size = 32\naugment = false\nvalidation_fraction = 0.0\ntrain_limit = 0\ntest_limit = 0",
        "group = \"d4\"",
        "",
    );
    write(d, "digits.toml", &config);
    succeeds(d, &["train", "--config", "digits.toml", "--quiet"]);
    succeeds(
        d,
        &[
            "embed",
            "--run",
            "runs/digits",
            "--split",
            "test",
            "--out",
            "split.npy",
        ],
    );
    // the same 28x28 test digits as PNG files
    let raw = std::fs::read(d.join("data/mnist/t10k-images-idx3-ubyte")).unwrap();
    std::fs::create_dir(d.join("digits")).unwrap();
    for i in 0..5 {
        let pixels = raw[16 + i * 784..16 + (i + 1) * 784].to_vec();
        image::GrayImage::from_raw(28, 28, pixels)
            .unwrap()
            .save(d.join(format!("digits/{i}.png")))
            .unwrap();
    }
    succeeds(
        d,
        &[
            "embed",
            "--run",
            "runs/digits",
            "--images",
            "digits",
            "--out",
            "files.npy",
        ],
    );
    let (a, b) = (
        read_npy(&d.join("split.npy")),
        read_npy(&d.join("files.npy")),
    );
    let worst = (&a - &b).iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        worst <= 1e-5 * scale.max(1.0),
        "files embed {worst} away from the same digits of the split"
    );
}

// ---------------------------------------------------- runs are not merged

#[test]
fn eval_keeps_different_runs_of_one_name_apart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "s.toml", &syn(1, ""));
    write(d, "s2.toml", &syn(2, ""));
    succeeds(d, &["train", "--config", "s.toml", "--quiet"]);
    succeeds(
        d,
        &["train", "--config", "s2.toml", "--quiet", "--runs", "other"],
    );
    succeeds(
        d,
        &[
            "eval",
            "--run",
            "runs/syn",
            "other/syn",
            "--out",
            "rep",
            "--plots",
            "--quiet",
        ],
    );
    let rows: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("rep/eval.json")).unwrap()).unwrap();
    let configs: std::collections::BTreeSet<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["config"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(configs.len(), 2, "{configs:?}");
    let md = std::fs::read_to_string(d.join("rep/eval.md")).unwrap();
    assert!(
        !md.contains("| 2 |"),
        "two runs reported as two seeds: {md}"
    );
    for c in &configs {
        assert!(
            d.join(format!("rep/confusion_{c}_gram.png")).exists(),
            "{c}'s figure was overwritten"
        );
    }
}

// --------------------------------------------------- errors name the culprit

#[test]
fn output_paths_are_checked_before_the_work_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("folder")).unwrap();
    let out = run(
        d,
        &[
            "bench", "--model", "d4", "--batch", "2", "--steps", "1", "--json", "folder",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).is_empty(), "the timing ran first");
    assert!(
        text(&out.stderr).contains("--json folder"),
        "{}",
        text(&out.stderr)
    );
    trained_syn(d);
    std::fs::create_dir(d.join("dir.npy")).unwrap();
    for out in ["dir.npy", "new.npy/"] {
        fails_with(d, &["embed", "--run", "runs/syn", "--out", out], &["--out"]);
    }
    assert!(!d.join("new.npy").exists());
}

#[test]
fn links_and_fifos_in_an_image_folder_are_reported_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn(d);
    let imgs = d.join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    for i in 0..3 {
        common::grey_png(&imgs.join(format!("a{i}.png")), 16, 16, i);
    }
    std::os::unix::fs::symlink("nowhere.png", imgs.join("dangling.png")).unwrap();
    std::os::unix::fs::symlink("loop.png", imgs.join("loop.png")).unwrap();
    let fifo = std::ffi::CString::new(imgs.join("fifo.png").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    fails_with(
        d,
        &[
            "embed", "--run", "runs/syn", "--images", "imgs", "--out", "f.npy",
        ],
        &["dangling.png", "dangling symbolic link", "--skip-bad"],
    );
    succeeds(
        d,
        &[
            "embed",
            "--run",
            "runs/syn",
            "--images",
            "imgs",
            "--out",
            "f.npy",
            "--skip-bad",
        ],
    );
    let skipped = std::fs::read_to_string(d.join("f_skipped.txt")).unwrap();
    for (name, why) in [
        ("dangling.png", "dangling"),
        ("loop.png", "loop"),
        ("fifo.png", "FIFO"),
    ] {
        assert!(
            skipped.lines().any(|l| l.contains(name) && l.contains(why)),
            "{name}: {skipped}"
        );
    }
    assert!(!skipped.contains("--skip-bad"), "{skipped}");
    assert_eq!(read_npy(&d.join("f.npy")).nrows(), 3);
}

#[test]
fn a_features_change_on_a_trained_run_is_applied_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn(d);
    let mut changed: toml::Table = toml::from_str(&syn(1, "")).unwrap();
    changed.insert(
        "features".into(),
        toml::from_str::<toml::Table>("autocorrelation = false")
            .unwrap()
            .into(),
    );
    write(d, "f.toml", &toml::to_string(&changed).unwrap());
    succeeds(d, &["train", "--config", "f.toml", "--quiet", "--resume"]);
    let config = std::fs::read_to_string(d.join("runs/syn/config.toml")).unwrap();
    assert!(config.contains("autocorrelation = false"), "{config}");
    let history = std::fs::read_to_string(d.join("runs/syn/history.txt")).unwrap();
    assert!(history.contains("features.autocorrelation"), "{history}");
    succeeds(
        d,
        &[
            "embed", "--run", "runs/syn", "--head", "gram", "--out", "g.npy",
        ],
    );
}

#[test]
fn tune_refuses_a_variant_without_validation_images_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "s.toml", &syn(1, ""));
    fails_with(
        d,
        &[
            "tune",
            "--config",
            "s.toml",
            "--vary",
            "data.validation_fraction=0",
            "--quiet",
        ],
        &["data.validation_fraction", "variant"],
    );
    assert!(!d.join("runs").exists(), "a variant was trained first");
}

#[test]
fn eval_errors_name_the_run_and_leave_no_empty_report_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fails_with(
        d,
        &["eval", "--run", "runs/doesnotexist", "--out", "newrep"],
        &["runs/doesnotexist"],
    );
    assert!(!d.join("newrep").exists());
    write(
        d,
        "one.toml",
        &toy("one", "train_limit = 1\nvalidation_fraction = 0.0", "", ""),
    );
    succeeds(d, &["train", "--config", "one.toml", "--quiet"]);
    fails_with(
        d,
        &["eval", "--run", "runs/one", "--out", "rep"],
        &["run runs/one", "at least 2 training rows"],
    );
}

#[test]
fn smaller_defects_get_clear_answers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "nv.toml",
        &toy("nv", "validation_fraction = 0.0", "", ""),
    );
    succeeds(d, &["train", "--config", "nv.toml", "--quiet"]);
    fails_with(
        d,
        &[
            "embed",
            "--run",
            "runs/nv",
            "--split",
            "validation",
            "--out",
            "v.npy",
        ],
        &["validation split is empty", "data.validation_fraction"],
    );
    assert!(!d.join("v.npy").exists());
    fails_with(
        d,
        &["eval", "--run", "runs/nv", "--with-rows", "x.json"],
        &["--with-rows"],
    );
}

/// `eval --table`'s reuse check: a `[features]` change needs no training.
#[test]
fn a_features_only_change_reuses_the_trained_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn(d);
    let run = eqae::train::RunDir::new(d.join("runs/syn"));
    let mut config = run.load_config().unwrap();
    config.features.autocorrelation = !config.features.autocorrelation;
    let data = eqae::data::load_splits(&config.data).unwrap();
    let metrics = std::fs::read(run.metrics()).unwrap();
    eqae::train::trained_model(&config, &run, &data, &common::device(), true)
        .expect("the trained model, read with other features");
    assert_eq!(std::fs::read(run.metrics()).unwrap(), metrics);
}
