//! What a careful or hostile user meets, by behaviour: every test is a run
//! of the real binary that must end, within a time limit, either in
//! success or in one clear line starting `Error:`. Never a hang, a panic,
//! an abort, or a file written outside the run.

use ndarray::Array2;
use std::path::Path;
use std::time::Duration;

mod common;
use common::{fails_with, run, succeeds, text, toy};

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(name), body).unwrap();
}

// ========================================================================
// Training that goes wrong stops with one line and keeps its last good
// checkpoint; a second training of a run is refused while the first runs;
// a resume says what changed
// ========================================================================

#[test]
fn diverging_loss_with_many_batches_left_stops_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    // batch 8 over ~115 images: 15 batches, the loss explodes on the second
    write(
        dir.path(),
        "lr.toml",
        &toy(
            "lr",
            "",
            "",
            "learning_rate = 1e30\nbatch_size = 8\nepochs = 3",
        ),
    );
    fails_with(
        dir.path(),
        &["train", "--config", "lr.toml", "--quiet"],
        &["loss became", "epoch 1"],
    );
}

/// A loss that jumps by orders of magnitude without becoming NaN (the
/// full-scale D4 attention run: validation MSE 0.0076 -> 4.05 in epoch 7)
/// stops the run before the diverged weights replace the last good
/// checkpoint, which is the only one kept. Here the first epoch's record
/// claims a validation MSE no real epoch reaches, so the second epoch
/// looks like a divergence.
#[test]
fn a_diverged_epoch_stops_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "d.toml", &toy("d", "", "", "epochs = 1"));
    succeeds(dir.path(), &["train", "--config", "d.toml", "--quiet"]);
    let ckpt = dir.path().join("runs/d/checkpoints/epoch-0001");
    let metrics = std::fs::read_to_string(ckpt.join("metrics.csv")).unwrap();
    let mut lines: Vec<String> = metrics.lines().map(String::from).collect();
    let mut cols: Vec<String> = lines[1].split(',').map(String::from).collect();
    cols[2] = "0.0000001".into();
    lines[1] = cols.join(",");
    std::fs::write(ckpt.join("metrics.csv"), lines.join("\n") + "\n").unwrap();
    write(dir.path(), "d.toml", &toy("d", "", "", "epochs = 2"));
    fails_with(
        dir.path(),
        &["train", "--config", "d.toml", "--quiet", "--resume"],
        &[
            "jumped from 1.000e-7 to",
            "in epoch 2",
            "epoch 1 is kept",
            "train.grad_clip",
        ],
    );
    assert!(ckpt.exists(), "the good checkpoint was replaced");
    assert!(!dir.path().join("runs/d/checkpoints/epoch-0002").exists());
}

#[test]
fn a_second_training_into_the_same_run_is_refused_while_the_first_runs() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "long.toml",
        &toy("long", "", "", "epochs = 500"),
    );
    let exe = assert_cmd::cargo::cargo_bin("eqae");
    let mut first = std::process::Command::new(&exe)
        .current_dir(dir.path())
        .args(["train", "--config", "long.toml", "--quiet"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let csv = dir.path().join("runs/long/metrics.csv");
    let t = std::time::Instant::now();
    while !csv.exists() && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = first.id().to_string();
    for args in [
        &["train", "--config", "long.toml", "--quiet", "--resume"][..],
        &["train", "--config", "long.toml", "--quiet"][..],
    ] {
        fails_with(dir.path(), args, &["runs/long", "in use by process", &pid]);
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // the lock dies with its process: the run resumes (or, if the killed
    // process had already done 2 epochs, says it has nothing to do)
    write(dir.path(), "long.toml", &toy("long", "", "", "epochs = 2"));
    let log = succeeds(
        dir.path(),
        &["train", "--config", "long.toml", "--quiet", "--resume"],
    );
    assert!(
        log.contains("trained long for 2 epochs") || log.contains("long already trained for"),
        "{log}"
    );
}

#[test]
fn resume_records_changed_training_settings_and_says_when_done() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "r.toml", &toy("r", "", "", "epochs = 2"));
    succeeds(dir.path(), &["train", "--config", "r.toml", "--quiet"]);
    // fewer (or as many) epochs than done: nothing to do, said plainly
    write(dir.path(), "r.toml", &toy("r", "", "", "epochs = 1"));
    let log = succeeds(
        dir.path(),
        &["train", "--config", "r.toml", "--quiet", "--resume"],
    );
    assert!(log.contains("already trained for 2 epochs"), "{log}");
    assert!(!log.contains("NaN"), "{log}");
    // more epochs and another learning rate: trained on, and recorded
    write(
        dir.path(),
        "r.toml",
        &toy("r", "", "", "epochs = 3\nlearning_rate = 0.002"),
    );
    let log = succeeds(
        dir.path(),
        &["train", "--config", "r.toml", "--quiet", "--resume"],
    );
    assert!(log.contains("train.epochs: 2 -> 3"), "{log}");
    assert!(log.contains("train.learning_rate: 0.001 -> 0.002"), "{log}");
    let saved = std::fs::read_to_string(dir.path().join("runs/r/config.toml")).unwrap();
    assert!(saved.contains("epochs = 3"), "{saved}");
    assert!(saved.contains("learning_rate = 0.002"), "{saved}");
    let history = std::fs::read_to_string(dir.path().join("runs/r/history.txt")).unwrap();
    assert!(history.contains("train.epochs: 2 -> 3"), "{history}");
    let csv = std::fs::read_to_string(dir.path().join("runs/r/metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    // a changed model is still refused
    write(
        dir.path(),
        "r.toml",
        &toy("r", "", "latent = 5", "epochs = 4"),
    );
    fails_with(
        dir.path(),
        &["train", "--config", "r.toml", "--quiet", "--resume"],
        &["model.latent"],
    );
}

// ========================================================================
// Configs, weights and arguments that cannot work are refused before the work
// ========================================================================

#[test]
fn a_stage_count_that_overflows_the_shift_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for stages in [9, 63, 64, 65, 200] {
        let channels = vec!["1"; stages].join(", ");
        write(
            dir.path(),
            "s.toml",
            &toy("s", "", &format!("channels = [{channels}]"), ""),
        );
        fails_with(
            dir.path(),
            &["check", "--config", "s.toml"],
            &["model.channels"],
        );
    }
}

#[test]
fn mnist_canvases_that_would_cut_the_digit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (dataset, size) in [("mnist", 24), ("fashion-mnist", 16), ("mnist", 8)] {
        write(
            dir.path(),
            "c.toml",
            &toy("c", "", "", "")
                .replace(
                    "dataset = \"synthetic\"",
                    &format!("dataset = \"{dataset}\""),
                )
                .replace("image_size = 16", &format!("image_size = {size}")),
        );
        fails_with(
            dir.path(),
            &["train", "--config", "c.toml", "--quiet"],
            &["data.image_size", "28"],
        );
    }
}

#[test]
fn weights_of_another_group_are_refused_even_when_the_shapes_match() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "g.toml", &toy("g", "", "group_linear = []", ""));
    succeeds(dir.path(), &["train", "--config", "g.toml", "--quiet"]);
    let saved = std::fs::read_to_string(dir.path().join("runs/g/config.toml")).unwrap();
    for group in ["c12", "d12"] {
        std::fs::write(
            dir.path().join("runs/g/config.toml"),
            saved.replace("group = \"c4\"", &format!("group = \"{group}\"")),
        )
        .unwrap();
        fails_with(
            dir.path(),
            &["embed", "--run", "runs/g", "--out", "f.npy", "--quiet"],
            &["model.group", "c4", group],
        );
    }
    std::fs::write(dir.path().join("runs/g/config.toml"), &saved).unwrap();
    succeeds(
        dir.path(),
        &["embed", "--run", "runs/g", "--out", "f.npy", "--quiet"],
    );
}

#[test]
fn a_table_does_not_reuse_a_model_trained_with_another_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("configs")).unwrap();
    // the table names its runs <config>-s<seed>; train that run as the table would
    let row = toy("baseline", "", "kind = \"baseline\"\ncode = 8", "");
    write(&dir.path().join("configs"), "baseline.toml", &row);
    write(
        dir.path(),
        "pre.toml",
        &row.replace("name = \"baseline\"", "name = \"baseline-s0\""),
    );
    succeeds(
        dir.path(),
        &[
            "train",
            "--config",
            "pre.toml",
            "--runs",
            "runs/table1-full",
            "--quiet",
        ],
    );
    // now the row's config changes: the stale model must not be used
    write(
        &dir.path().join("configs"),
        "baseline.toml",
        &row.replace("epochs = 1", "epochs = 2"),
    );
    fails_with(
        dir.path(),
        &[
            "eval", "--table", "1", "--preset", "full", "--seeds", "1", "--quiet",
        ],
        &["train.epochs", "baseline-s0"],
    );
}

#[test]
fn check_and_bench_refuse_nonsense_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let clap_error = |args: &[&str], needle: &str| {
        let out = run(d, args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    };
    clap_error(&["check", "--batch", "0"], "--batch");
    clap_error(&["bench", "--model", "c4", "--steps", "0"], "--steps");
    clap_error(&["bench", "--model", "c4", "--channels", "0"], "--channels");
    clap_error(&["bench", "--model", "c4", "--batch", "0"], "--batch");
    clap_error(&["eval", "--table", "1", "--seeds", "0"], "--seeds");
    fails_with(
        d,
        &[
            "bench",
            "--model",
            "c4",
            "--channels",
            "1",
            "1",
            "1",
            "1",
            "1",
            "1",
            "1",
            "1",
            "1",
            "1",
        ],
        &["--channels"],
    );
    fails_with(
        d,
        &["bench", "--model", "d12", "--batch", "100000000"],
        &["--batch", "memory"],
    );
}

// ========================================================================
// Evaluation on small or empty test sets says so and keeps what it measured
// ========================================================================

#[test]
fn eval_plots_on_small_test_sets_keep_the_results() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.toml", &toy("t", "", "", ""));
    succeeds(dir.path(), &["train", "--config", "t.toml", "--quiet"]);
    let saved = std::fs::read_to_string(dir.path().join("runs/t/config.toml")).unwrap();
    for n in [3, 10, 20, 40, 50] {
        std::fs::write(
            dir.path().join("runs/t/config.toml"),
            saved.replace("test_limit = 40", &format!("test_limit = {n}")),
        )
        .unwrap();
        let out = format!("rep{n}");
        let log = succeeds(
            dir.path(),
            &[
                "eval", "--run", "runs/t", "--out", &out, "--quiet", "--plots",
            ],
        );
        let json = dir.path().join(&out).join("eval.json");
        assert!(json.exists(), "n = {n}: no eval.json; {log}");
        let rows: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
        assert_eq!(rows.as_array().unwrap().len(), 2, "n = {n}");
        // a figure is either drawn or skipped with a warning that says so
        let drawn = dir.path().join(&out).join("eval_explained_variance.png");
        assert!(drawn.exists() || log.contains("warning:"), "n = {n}: {log}");
    }
}

#[test]
fn eval_on_an_empty_test_set_says_so() {
    let dir = tempfile::tempdir().unwrap();
    common::fake_mnist(&dir.path().join("data"), "mnist", 100, 0);
    let config = toy("m", "", "", "")
        .replace("dataset = \"synthetic\"", "dataset = \"mnist\"")
        .replace("image_size = 16", "image_size = 32");
    write(dir.path(), "m.toml", &config);
    succeeds(dir.path(), &["train", "--config", "m.toml", "--quiet"]);
    fails_with(
        dir.path(),
        &["eval", "--run", "runs/m", "--quiet"],
        &["test", "empty"],
    );
}

// ========================================================================
// Paths: run names stay inside the runs folder, and messages name a path once
// ========================================================================

#[test]
fn run_names_that_leave_the_runs_folder_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runs")).unwrap();
    for name in ["..", ".", "a/..", ""] {
        write(dir.path(), "n.toml", &toy(name, "", "", ""));
        fails_with(
            dir.path(),
            &["train", "--config", "n.toml", "--quiet"],
            &["`name`"],
        );
    }
    assert!(!dir.path().join("config.toml").exists());
    assert!(!dir.path().join("metrics.csv").exists());
}

#[test]
fn messages_name_the_path_and_say_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // an output's missing folders are made; a file in the way is named
    write(d, "in_the_way", "a file, not a folder");
    let line = fails_with(
        d,
        &["check", "--json", "in_the_way/c.json"],
        &["in_the_way/c.json"],
    );
    assert_eq!(line.matches("os error").count(), 1, "{line}");
    succeeds(d, &["check", "--json", "no/such/folder/c.json"]);
    assert!(d.join("no/such/folder/c.json").exists());
    let line = fails_with(d, &["train", "--config", "missing.toml"], &["missing.toml"]);
    assert_eq!(line.matches("os error").count(), 1, "{line}");
    write(d, "t.toml", &toy("t", "", "", ""));
    succeeds(d, &["train", "--config", "t.toml", "--quiet"]);
    write(d, "plain.txt", "a file, not a folder");
    let line = fails_with(
        d,
        &[
            "embed",
            "--run",
            "runs/t",
            "--out",
            "plain.txt/f.npy",
            "--quiet",
        ],
        &["plain.txt"],
    );
    assert_eq!(line.matches("os error").count(), 1, "{line}");
}

#[test]
fn the_documented_defaults_block_is_the_code_default() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configs.md")).unwrap();
    let start = doc
        .find("```toml\nname = ")
        .expect("docs/configs.md has the defaults block");
    let block = &doc[start + "```toml\n".len()..];
    let block = &block[..block.find("```").unwrap()];
    let parsed = eqae::config::Config::from_toml(block, Path::new("docs/configs.md")).unwrap();
    assert_eq!(parsed, eqae::config::Config::default(), "{block}");
}

// ========================================================================
// Image folders: names round-trip, bad files are named
// ========================================================================

fn png(path: &Path, w: u32, h: u32) {
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([((x * 7 + y * 3) % 255) as u8]))
        .save_with_format(path, image::ImageFormat::Png)
        .unwrap();
}

/// A valid PNG header that declares `w x h` pixels, with almost no data.
fn png_declaring(path: &Path, w: u32, h: u32) {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit grayscale
    chunk(&mut out, b"IHDR", &ihdr);
    // a zlib stream of a few zero bytes
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn image_folders_round_trip_names_and_handle_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.toml", &toy("t", "", "", ""));
    succeeds(dir.path(), &["train", "--config", "t.toml", "--quiet"]);
    fn embed<'a>(folder: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "embed", "--run", "runs/t", "--images", folder, "--out", "f.npy", "--quiet",
        ];
        args.extend_from_slice(extra);
        args
    }

    // extensions in any case
    let cases = dir.path().join("cases");
    std::fs::create_dir(&cases).unwrap();
    for name in ["a.png", "b.Png", "c.PNG", "d.JPG", "e.Jpeg"] {
        let p = cases.join(name);
        if name.to_lowercase().ends_with("png") {
            png(&p, 12, 9);
        } else {
            image::GrayImage::from_pixel(9, 9, image::Luma([200]))
                .save_with_format(&p, image::ImageFormat::Jpeg)
                .unwrap();
        }
    }
    let args = embed("cases", &[]);
    succeeds(dir.path(), &args);
    let f: Array2<f32> = ndarray_npy::read_npy(dir.path().join("f.npy")).unwrap();
    assert_eq!(f.nrows(), 5);
    let files = std::fs::read_to_string(dir.path().join("f_files.txt")).unwrap();
    assert_eq!(files.lines().count(), 5, "{files}");

    // a corrupt file stops the embed and is named; --skip-bad skips and lists it
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    png(&bad.join("good.png"), 10, 10);
    std::fs::write(bad.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let args = embed("bad", &[]);
    fails_with(dir.path(), &args, &["broken.png"]);
    let args = embed("bad", &["--skip-bad"]);
    let log = succeeds(dir.path(), &args);
    assert!(
        log.contains("skipped") && log.contains("broken.png"),
        "{log}"
    );
    let f: Array2<f32> = ndarray_npy::read_npy(dir.path().join("f.npy")).unwrap();
    assert_eq!(f.nrows(), 1);
    let skipped = std::fs::read_to_string(dir.path().join("f_skipped.txt")).unwrap();
    assert!(skipped.contains("broken.png"), "{skipped}");

    // an image that declares a huge size is refused before it is decoded
    let huge = dir.path().join("huge");
    std::fs::create_dir(&huge).unwrap();
    png_declaring(&huge.join("bomb.png"), 20000, 20000);
    let args = embed("huge", &[]);
    fails_with(dir.path(), &args, &["bomb.png", "limit"]);

    // names that cannot be written one per line are refused, by name
    let odd = dir.path().join("odd");
    std::fs::create_dir(&odd).unwrap();
    png(&odd.join("new\nline.png"), 8, 8);
    let args = embed("odd", &[]);
    fails_with(dir.path(), &args, &["line.png"]);
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let latin = dir.path().join("latin");
        std::fs::create_dir(&latin).unwrap();
        png(
            &latin.join(std::ffi::OsStr::from_bytes(b"caf\xe9.png")),
            8,
            8,
        );
        let args = embed("latin", &[]);
        fails_with(dir.path(), &args, &["UTF-8"]);
    }
}
