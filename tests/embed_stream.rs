//! `eqae embed` over folders of any size: shards that join into the whole,
//! a killed run resumed to the same output, class folders as labels.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ndarray::{concatenate, Array1, Array2, Axis};

mod common;
use common::{succeeds, toy};

/// A trained toy D4 run in `dir/runs/toy` (16x16 synthetic images).
fn trained(dir: &Path) {
    std::fs::write(
        dir.join("toy.toml"),
        toy("toy", "", "group = \"d4\"\ngroup_linear = [16]", ""),
    )
    .unwrap();
    succeeds(dir, &["train", "--config", "toy.toml", "--quiet"]);
}

/// `per_class` PNGs of varied sizes in each of `classes` sub-folders.
fn image_folder(root: &Path, classes: &[&str], per_class: usize) {
    for (c, class) in classes.iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let side = 12 + (i % 3) as u32 * 6;
            let img = image::GrayImage::from_fn(side, side, |x, y| {
                let (u, v) = (x as i32 - side as i32 / 2, y as i32 - side as i32 / 2);
                let inside = u * u + v * v < (side as i32 * side as i32) / 6;
                image::Luma([if inside {
                    ((x * (3 + c as u32) + y * 5 + i as u32 * 11) % 200 + 50) as u8
                } else {
                    0
                }])
            });
            img.save(dir.join(format!("img_{i:05}.png"))).unwrap();
        }
    }
}

fn npy(path: &Path) -> Array2<f32> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn labels(path: &Path) -> Array1<i64> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn class_folders_give_labels_and_class_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained(d);
    image_folder(&d.join("imgs"), &["dog", "cat", "owl"], 4);
    succeeds(
        d,
        &[
            "embed", "--run", "runs/toy", "--images", "imgs", "--out", "f.npy",
        ],
    );
    assert_eq!(lines(&d.join("f_classes.txt")), ["cat", "dog", "owl"]);
    let files = lines(&d.join("f_files.txt"));
    assert_eq!(files.len(), 12);
    assert_eq!(files[0], "cat/img_00000.png");
    assert_eq!(
        labels(&d.join("f_labels.npy")).to_vec(),
        [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    );
    assert_eq!(npy(&d.join("f.npy")).nrows(), 12);
}

#[test]
fn four_shards_joined_equal_the_whole_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained(d);
    // 1,000 images: the shards' batches hold other images than the whole's
    image_folder(&d.join("imgs"), &["a", "b"], 500);
    succeeds(
        d,
        &[
            "embed", "--run", "runs/toy", "--images", "imgs", "--out", "all.npy", "--quiet",
        ],
    );
    let mut parts = Vec::new();
    let (mut files, mut labs) = (Vec::new(), Vec::new());
    for i in 1..=4 {
        let out = format!("part{i}.npy");
        succeeds(
            d,
            &[
                "embed",
                "--run",
                "runs/toy",
                "--images",
                "imgs",
                "--out",
                &out,
                "--quiet",
                "--shard",
                &format!("{i}/4"),
            ],
        );
        parts.push(npy(&d.join(&out)));
        files.extend(lines(&d.join(format!("part{i}_files.txt"))));
        labs.extend(labels(&d.join(format!("part{i}_labels.npy"))).to_vec());
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    let joined = concatenate(Axis(0), &views).unwrap();
    // exactly: a row depends on its own image only
    assert_eq!(joined, npy(&d.join("all.npy")));
    assert_eq!(files, lines(&d.join("all_files.txt")));
    assert_eq!(labs, labels(&d.join("all_labels.npy")).to_vec());
}

#[test]
fn an_embed_killed_partway_resumes_to_the_uninterrupted_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained(d);
    image_folder(&d.join("imgs"), &["a", "b", "c"], 2000);
    let args = [
        "embed",
        "--run",
        "runs/toy",
        "--images",
        "imgs",
        "--out",
        "out/f.npy",
        "--quiet",
        "--resume",
    ];
    succeeds(d, &args[..args.len() - 1]);
    let whole = std::fs::read(d.join("out/f.npy")).unwrap();
    let whole_files = std::fs::read(d.join("out/f_files.txt")).unwrap();
    std::fs::remove_dir_all(d.join("out")).unwrap();

    let mut child = Command::new(assert_cmd::cargo::cargo_bin("eqae"))
        .current_dir(d)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // kill -9 once some but not all batches are recorded
    let state = d.join("out/.f.npy.partial/state.json");
    let t = Instant::now();
    loop {
        let done = std::fs::read_to_string(&state)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["done"].as_u64())
            .unwrap_or(0);
        if done >= 256 {
            assert!(done < 6000, "the embed finished before it could be killed");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no progress recorded"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        !d.join("out/f.npy").exists(),
        "a complete-looking output exists before the end"
    );
    // a resume with other arguments would mix two outputs: refused
    let mut other = args.to_vec();
    other.extend(["--head", "v"]);
    common::fails_with(d, &other, &["--resume", "other arguments"]);
    let out = succeeds(d, &args);
    assert!(out.contains("from the interrupted run"), "{out}");
    assert_eq!(std::fs::read(d.join("out/f.npy")).unwrap(), whole);
    assert_eq!(
        std::fs::read(d.join("out/f_files.txt")).unwrap(),
        whole_files
    );
    assert!(!d.join("out/.f.npy.partial").exists());
}
