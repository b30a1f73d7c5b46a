//! Values and flags that pass a first look but would mislead: each gets
//! one clear line (naming the key or flag) before any work, or the answer
//! the user asked for; reports hold only what this evaluation computed;
//! memory is estimated with everything a model holds.

use std::path::Path;

mod common;
use common::{fails_with, run, succeeds, text, toy, trained_syn_d4};

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(name), body).unwrap();
}

#[test]
fn degenerate_smoothing_is_refused_and_huge_numbers_read_short() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "s.toml", &toy("s", "", "smoothing = 1e-200", ""));
    fails_with(
        d,
        &["train", "--config", "s.toml"],
        &["model.smoothing", "0.25"],
    );
    write(d, "s.toml", &toy("s", "", "smoothing = 1e300", ""));
    let last = fails_with(
        d,
        &["train", "--config", "s.toml"],
        &["model.smoothing", "1e300"],
    );
    assert!(!last.contains("0000000000"), "{last}");
}

#[test]
fn label_counts_below_the_classes_and_angle_steps_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn_d4(d, "syn");
    fails_with(
        d,
        &[
            "eval", "--run", "runs/syn", "--labels", "1", "--out", "rep", "--quiet",
        ],
        &["--labels 1", "classes"],
    );
    for args in [
        ["check", "--run", "runs/syn", "--angles", "250"],
        ["check", "--run", "runs/syn", "--angles", "0.001"],
        ["eval", "--run", "runs/syn", "--rotations", "1e-300"],
    ] {
        let out = run(d, &args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("a step must be from 0.25"), "{args:?}: {err}");
    }
    // a step whose angles are all exact elements: no "-0.00e0" for the rest
    let out = succeeds(
        d,
        &[
            "check", "--run", "runs/syn", "--angles", "90", "--out", "ang",
        ],
    );
    assert!(!out.contains("-0.00"), "{out}");
    assert!(
        out.contains("every angle measured is an exact element"),
        "{out}"
    );
    // options of --angles without it
    for flag in [
        ["--angle-images", "5"],
        ["--resample", "fourier"],
        ["--out", "x"],
    ] {
        let mut args = vec!["check", "--run", "runs/syn"];
        args.extend(flag);
        fails_with(d, &args, &[flag[0], "with --angles only"]);
    }
}

#[test]
fn outputs_are_checked_before_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn_d4(d, "syn");
    std::fs::create_dir(d.join("folder")).unwrap();
    let out = run(d, &["check", "--run", "runs/syn", "--json", "folder"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is a folder"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stdout).contains("equivariance of"),
        "checked after the work"
    );
    // a model key on a trained run: refused before the base is scored
    let out = run(
        d,
        &[
            "tune",
            "--trained",
            "runs/syn",
            "--vary",
            "model.latent=4",
            "--out",
            "rep",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("only features.* can vary"));
    assert!(!d.join("rep").exists(), "scored before refusing");
    write(d, "t.toml", &common::syn_d4("t", 1));
    fails_with(
        d,
        &["tune", "--config", "t.toml", "--out", "/proc/eqae-reports"],
        &["--out", "/proc"],
    );
    assert!(!d.join("runs/tune-t").exists(), "trained before refusing");
    fails_with(
        d,
        &[
            "export",
            "--run",
            "runs/syn",
            "--out",
            "/dev/eqae-test.onnx",
        ],
        &["/dev"],
    );
    assert!(!Path::new("/dev/eqae-test.onnx").exists());
    // no output folder for a run that does not exist
    fails_with(
        d,
        &["export", "--run", "runs/nope", "--out", "new/x.onnx"],
        &["runs/nope"],
    );
    fails_with(
        d,
        &[
            "embed",
            "--run",
            "runs/nope",
            "--split",
            "test",
            "--out",
            "new2/x.npy",
        ],
        &["runs/nope"],
    );
    assert!(!d.join("new").exists() && !d.join("new2").exists());
    // the temporary file of a killed export is removed by the next one
    let stale = d.join(".x.onnx.4194000.tmp");
    std::fs::write(&stale, vec![0u8; 1000]).unwrap();
    succeeds(d, &["export", "--run", "runs/syn", "--out", "x.onnx"]);
    assert!(!stale.exists());
}

#[test]
fn eval_reports_hold_only_this_evaluation_and_keep_runs_apart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn_d4(d, "syn");
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--run", "runs/syn", "--out", "rep", "--quiet"];
        args.extend(extra);
        succeeds(d, &args);
    };
    eval(&["--labels", "10"]);
    assert!(d.join("rep/label_efficiency.csv").exists());
    eval(&["--rotations", "90"]);
    assert!(d.join("rep/rotation_robustness.csv").exists());
    for stale in [
        "label_efficiency.csv",
        "label_efficiency.png",
        "label_draws.json",
    ] {
        assert!(
            !d.join("rep").join(stale).exists(),
            "{stale} of the earlier evaluation"
        );
    }
    fails_with(
        d,
        &["eval", "--run", "runs/syn", "./runs/syn", "--out", "rep"],
        &["given twice"],
    );
    // same-name runs whose folders read alike get rows of their own
    for folder in ["a-b", "a_b"] {
        std::fs::create_dir_all(d.join(folder)).unwrap();
        write(&d.join(folder), "syn.toml", &common::syn_d4("syn", 1));
        succeeds(
            &d.join(folder),
            &["train", "--config", "syn.toml", "--quiet"],
        );
    }
    let out = succeeds(
        d,
        &[
            "eval",
            "--run",
            "a-b/runs/syn",
            "a_b/runs/syn",
            "--out",
            "rep2",
            "--quiet",
        ],
    );
    let runs: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("| Gram Pooling |"))
        .filter_map(|l| l.split('|').nth(1))
        .collect();
    assert_eq!(runs.len(), 2, "{out}");
    assert_ne!(runs[0], runs[1], "two runs read alike: {out}");
}

/// Every CSV goes through a CSV writer: a run name with a comma and a
/// quote reads back as it is.
#[test]
fn a_run_name_with_a_comma_and_a_quote_reads_back_from_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let name = "a,b \"c\"";
    let config = common::syn_d4("placeholder", 1);
    assert!(config.contains("name = \"placeholder\""));
    write(
        d,
        "odd.toml",
        &config.replace("name = \"placeholder\"", &format!("name = {name:?}")),
    );
    succeeds(d, &["train", "--config", "odd.toml", "--quiet"]);
    let run = format!("runs/{name}");
    succeeds(
        d,
        &[
            "eval",
            "--run",
            &run,
            "--labels",
            "10",
            "--rotations",
            "90",
            "--out",
            "rep",
            "--quiet",
        ],
    );
    for file in ["label_efficiency.csv", "rotation_robustness.csv"] {
        let mut r = csv::Reader::from_path(d.join("rep").join(file)).unwrap();
        let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        assert!(!rows.is_empty(), "{file}");
        for row in rows {
            assert_eq!(&row[0], name, "{file}");
            assert_eq!(row.len(), 7, "{file}");
        }
    }
}

#[test]
fn config_answers_name_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "v.toml", &toy("v", "train_limit = 3", "", ""));
    fails_with(
        d,
        &["train", "--config", "v.toml"],
        &["no validation image", "data.validation_fraction"],
    );
    write(
        d,
        "e.toml",
        &toy("e", "train_limit = 1\nvalidation_fraction = 0.5", "", ""),
    );
    fails_with(d, &["train", "--config", "e.toml"], &["data.train_limit"]);
    // one Gram element may stand alone, as docs/configs.md writes it
    let text = toy("g", "", "", "") + "[features]\ngram_elements = \"all\"\n";
    let config = eqae::config::Config::from_toml(&text, Path::new("g.toml")).unwrap();
    assert_eq!(
        config.features.gram_elements,
        eqae::invariant::GramElements::All
    );
    // a key written only when set (model.smoothing) can be varied
    let varied = config.with_setting("model.smoothing=1.0").unwrap();
    assert_eq!(varied.model.smoothing, 1.0);
    assert!(config.with_setting("model.smoothnes=1.0").is_err());
}

#[test]
fn words_say_what_is_true() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn_d4(d, "syn");
    // a run being trained has no final weights yet: it is not "to train"
    std::fs::create_dir_all(d.join("runs/busy")).unwrap();
    std::fs::copy(
        d.join("runs/syn/config.toml"),
        d.join("runs/busy/config.toml"),
    )
    .unwrap();
    let lock = std::fs::File::create(d.join("runs/busy/.lock")).unwrap();
    lock.lock().unwrap();
    std::fs::write(d.join("runs/busy/.lock"), std::process::id().to_string()).unwrap();
    fails_with(
        d,
        &["export", "--run", "runs/busy", "--out", "b.onnx"],
        &["being trained by process"],
    );
    drop(lock);
    // the attention model's heads include average and gram pooling
    write(
        d,
        "att.toml",
        &toy("att", "", "kind = \"attention\"\ngroup = \"d4\"", ""),
    );
    succeeds(d, &["train", "--config", "att.toml", "--quiet"]);
    fails_with(
        d,
        &[
            "embed", "--run", "runs/att", "--head", "code", "--out", "c.npy",
        ],
        &["attention, attention-q, average, gram, v"],
    );
    // bench --data writes the --json it was given
    common::fake_mnist(&d.join("data"), "mnist", 60, 20);
    succeeds(d, &["bench", "--data", "mnist", "--json", "b.json"]);
    let line = std::fs::read_to_string(d.join("b.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["training_images"], 60);
}

/// `sh -c 'ulimit -v KIB; exec eqae ARGS'` in `dir`.
fn under_ulimit(dir: &Path, kib: u64, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new("sh");
    cmd.current_dir(dir)
        .arg("-c")
        .arg(format!("ulimit -v {kib}; exec \"$0\" \"$@\""))
        .arg(common::bin())
        .args(args);
    assert_cmd::Command::from_std(cmd)
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap()
}

/// Under a limit on the address space (`ulimit -v`, which eqae reads):
/// a model of large images reads its features in smaller batches instead
/// of being refused, and a smoothed D24's resampling tables are counted,
/// so that it is refused in one line instead of aborting.
#[test]
fn memory_estimates_choose_the_batch_and_count_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "big.toml",
        &toy(
            "big",
            "image_size = 256\ntrain_limit = 8\ntest_limit = 3\nvalidation_fraction = 0.25",
            "group = \"d4\"\nchannels = [8, 8, 8, 8]",
            "batch_size = 2",
        ),
    );
    let out = under_ulimit(d, 8_000_000, &["train", "--config", "big.toml", "--quiet"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for args in [
        vec![
            "embed", "--run", "runs/big", "--split", "test", "--out", "f.npy", "--quiet",
        ],
        vec!["export", "--run", "runs/big", "--out", "f.onnx"],
    ] {
        let out = under_ulimit(d, 8_000_000, &args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    write(
        d,
        "taps.toml",
        &toy(
            "taps",
            "image_size = 256\ntrain_limit = 64\ntest_limit = 8",
            "group = \"d24\"\nchannels = [1]\nsmoothing = 4.0",
            "batch_size = 32",
        ),
    );
    let out = under_ulimit(
        d,
        12_000_000,
        &["train", "--config", "taps.toml", "--quiet"],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.trim().lines().last().unwrap().starts_with("Error: ") && err.contains("GiB"),
        "{err}"
    );
    assert!(!err.contains("memory allocation"), "{err}");
}
