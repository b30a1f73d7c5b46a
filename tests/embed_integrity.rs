//! `eqae embed` never writes a wrong row: a resume continues only the
//! output it was started on (the same features settings, the same files
//! with the same contents), files that come or go while it runs change
//! nothing, a link is never written through, shards join bit for bit
//! whatever their size (one image, none), and bad folders get one line.

use std::path::Path;

use ndarray::Array2;

mod common;
use common::{fails_with, grey_png, killed_at_rename, run, succeeds, text, trained_syn_d4};

fn read_npy(path: &Path) -> Array2<f32> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `n` PNGs under `dir/imgs`, spread over `classes` class folders (none: flat).
fn images(dir: &Path, n: u32, classes: &[&str]) {
    for i in 0..n {
        let sub = if classes.is_empty() {
            String::new()
        } else {
            format!("{}/", classes[i as usize % classes.len()])
        };
        grey_png(&dir.join(format!("imgs/{sub}{i:04}.png")), 20, 18, i);
    }
}

const GRAM: [&str; 9] = [
    "embed", "--run", "runs/syn", "--images", "imgs", "--head", "gram", "--quiet", "--out",
];

fn embed_args(out: &str, extra: &[&'static str]) -> Vec<String> {
    GRAM.iter()
        .map(|s| s.to_string())
        .chain([out.to_string()])
        .chain(extra.iter().map(|s| s.to_string()))
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// An embed of 600 images killed at its second checkpoint (rows of the
/// first batch written), leaving `.f.npy.partial` to resume.
fn interrupted(d: &Path) {
    trained_syn_d4(d, "syn");
    images(d, 600, &[]);
    let out = killed_at_rename(d, &strs(&embed_args("f.npy", &[])), 2);
    assert!(!out.status.success(), "the embed was not interrupted");
    assert!(d.join(".f.npy.partial/state.json").exists());
}

#[test]
fn a_features_change_between_a_kill_and_the_resume_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    interrupted(d);
    // allowed on a trained run; it changes the width of every row
    let config = std::fs::read_to_string(d.join("runs/syn/config.toml")).unwrap();
    let changed = config.replace("gram_band = 8", "gram_band = 2");
    assert_ne!(changed, config);
    std::fs::write(d.join("runs/syn/config.toml"), changed).unwrap();
    fails_with(
        d,
        &strs(&embed_args("f.npy", &["--resume"])),
        &["--resume", "features settings"],
    );
    assert!(!d.join("f.npy").exists());
}

#[test]
fn a_resume_after_the_folder_changed_is_refused() {
    for change in ["swap one file for another", "rewrite an embedded file"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        interrupted(d);
        match change {
            "swap one file for another" => {
                std::fs::remove_file(d.join("imgs/0599.png")).unwrap();
                grey_png(&d.join("imgs/0600.png"), 20, 18, 9999);
            }
            _ => grey_png(&d.join("imgs/0003.png"), 20, 18, 12345),
        }
        let last = fails_with(
            d,
            &strs(&embed_args("f.npy", &["--resume"])),
            &["--resume", "changed since the interrupted embed"],
        );
        assert!(!d.join("f.npy").exists(), "{change}: {last}");
        // started again, it embeds the folder as it is now
        succeeds(d, &strs(&embed_args("f.npy", &[])));
        let files = std::fs::read_to_string(d.join("f_files.txt")).unwrap();
        assert_eq!(files.lines().count(), 600, "{change}");
    }
}

/// Files copied into a class folder while the embed runs (it is held at
/// its first checkpoint for two seconds) are not in the output, and no
/// file that was there is missing from it.
#[test]
fn files_added_while_embedding_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn_d4(d, "syn");
    let classes = ["a", "b", "c", "d", "e"];
    images(d, 1500, &classes);
    succeeds(d, &strs(&embed_args("want.npy", &[])));
    let mut cmd = std::process::Command::new("strace");
    cmd.current_dir(d)
        .args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=rename",
            "-e",
            "inject=rename:delay_enter=2000000:when=1",
            "--",
        ])
        .arg(common::bin())
        .args(embed_args("f.npy", &[]));
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("strace (apt-get install strace)");
    // the first batch is embedded when its state is about to be renamed
    let partial = d.join(".f.npy.partial");
    let started = std::time::Instant::now();
    while !std::fs::read_dir(&partial).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".state.json."))
    }) {
        assert!(
            started.elapsed().as_secs() < 60,
            "the embed never reached its first batch"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for i in 0..3 {
        grey_png(&d.join(format!("imgs/e/0000new{i}.png")), 20, 18, 7000 + i);
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = std::fs::read_to_string(d.join("want_files.txt")).unwrap();
    let got = std::fs::read_to_string(d.join("f_files.txt")).unwrap();
    assert!(
        got == want,
        "the files embedded are not those there when it started"
    );
    assert_eq!(read_npy(&d.join("f.npy")), read_npy(&d.join("want.npy")));
}

#[test]
fn a_link_named_as_the_working_folder_is_refused_and_its_target_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn_d4(d, "syn");
    images(d, 5, &[]);
    std::fs::create_dir(d.join("victim")).unwrap();
    std::fs::write(d.join("victim/important.txt"), "keep me").unwrap();
    std::os::unix::fs::symlink("victim", d.join(".h.npy.partial")).unwrap();
    fails_with(
        d,
        &strs(&embed_args("h.npy", &[])),
        &[".h.npy.partial", "symbolic link"],
    );
    assert_eq!(
        std::fs::read_to_string(d.join("victim/important.txt")).unwrap(),
        "keep me"
    );
}

/// Shards of one image each, and shards with no image at all (more shards
/// than files), joined in order: the whole output, bit for bit.
#[test]
fn shards_of_one_image_and_of_none_join_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn_d4(d, "syn");
    images(d, 5, &["a", "b"]);
    succeeds(d, &strs(&embed_args("whole.npy", &[])));
    let whole = read_npy(&d.join("whole.npy"));
    for count in [5usize, 8] {
        let mut rows: Vec<f32> = Vec::new();
        let mut files = String::new();
        let mut labels: Vec<i64> = Vec::new();
        for i in 1..=count {
            let out = format!("s{count}_{i}.npy");
            let shard = format!("{i}/{count}");
            let mut args = embed_args(&out, &[]);
            args.extend(["--shard".to_string(), shard]);
            succeeds(d, &strs(&args));
            let part = read_npy(&d.join(&out));
            assert_eq!(part.ncols(), whole.ncols(), "shard {i}/{count}: its width");
            rows.extend(part.iter());
            files += &std::fs::read_to_string(d.join(format!("s{count}_{i}_files.txt"))).unwrap();
            let l: ndarray::Array1<i64> =
                ndarray_npy::read_npy(d.join(format!("s{count}_{i}_labels.npy"))).unwrap();
            labels.extend(l.iter());
        }
        let joined = Array2::from_shape_vec((whole.nrows(), whole.ncols()), rows).unwrap();
        assert!(
            joined
                .iter()
                .zip(whole.iter())
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{count} shards: not bit for bit the whole"
        );
        assert_eq!(
            files,
            std::fs::read_to_string(d.join("whole_files.txt")).unwrap()
        );
        let whole_labels: ndarray::Array1<i64> =
            ndarray_npy::read_npy(d.join("whole_labels.npy")).unwrap();
        assert_eq!(labels, whole_labels.to_vec());
    }
}

#[test]
fn bad_folders_get_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn_d4(d, "syn");
    // every file bad: the first reason, not a list that was never written
    std::fs::create_dir_all(d.join("imgs")).unwrap();
    std::fs::write(d.join("imgs/a.png"), b"not a png").unwrap();
    std::fs::write(d.join("imgs/b.png"), b"").unwrap();
    let last = fails_with(
        d,
        &strs(&embed_args("f.npy", &["--skip-bad"])),
        &["all 2 files were bad", "a.png"],
    );
    assert!(!last.contains("skipped list"), "{last}");
    // a zero-byte file says so
    std::fs::remove_file(d.join("imgs/a.png")).unwrap();
    fails_with(
        d,
        &strs(&embed_args("f.npy", &[])),
        &["b.png", "empty file (0 bytes)"],
    );
    // an empty class folder is refused, as torchvision's ImageFolder does
    std::fs::remove_dir_all(d.join("imgs")).unwrap();
    images(d, 4, &["cat", "dog"]);
    std::fs::create_dir_all(d.join("imgs/emu")).unwrap();
    fails_with(
        d,
        &strs(&embed_args("f.npy", &[])),
        &["imgs/emu", "class folder holds no"],
    );
    // --skip-bad reads files, not a split
    let out = run(
        d,
        &[
            "embed",
            "--run",
            "runs/syn",
            "--split",
            "test",
            "--skip-bad",
            "--out",
            "s.npy",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // a resume that had nothing left to embed states no rate of 0 images/s
    std::fs::remove_dir_all(d.join("imgs/emu")).unwrap();
    killed_at_rename(d, &strs(&embed_args("f.npy", &[])), 2);
    let resumed = succeeds(d, &strs(&embed_args("f.npy", &["--resume"])));
    assert!(
        resumed.contains("4 images (4 of them from the interrupted run)")
            && !resumed.contains("images/s"),
        "{resumed}"
    );
}
