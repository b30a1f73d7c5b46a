//! `eqae cluster`: planted clusters are found (and a set without any
//! scores at chance), the result repeats bit for bit under one seed, k is
//! chosen when not given, the contact sheets show the collection's own
//! images, and bad input gets one line with nothing written.

use std::path::Path;

use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::{fails_with, grey_png, killed_at_rename, renames, succeeds, trained_syn_d4};

/// Write `x` as an output of `eqae embed` named `name.npy`: its file
/// list, labels, class names and a manifest that records their sizes.
fn features(d: &Path, name: &str, x: &Array2<f32>, labels: &[usize]) {
    let npy = d.join(format!("{name}.npy"));
    ndarray_npy::write_npy(&npy, x).unwrap();
    let files: String = (0..x.nrows())
        .map(|i| format!("img_{i:04}.png\n"))
        .collect();
    std::fs::write(d.join(format!("{name}_files.txt")), files).unwrap();
    let l: Array1<i64> = labels.iter().map(|&c| c as i64).collect();
    ndarray_npy::write_npy(d.join(format!("{name}_labels.npy")), &l).unwrap();
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let names: String = (0..classes).map(|c| format!("class{c}\n")).collect();
    std::fs::write(d.join(format!("{name}_classes.txt")), names).unwrap();
    let mut parts = serde_json::Map::new();
    for part in ["", "_files.txt", "_labels.npy", "_classes.txt"] {
        let file = if part.is_empty() {
            format!("{name}.npy")
        } else {
            format!("{name}{part}")
        };
        let bytes = std::fs::metadata(d.join(&file)).unwrap().len();
        parts.insert(file, serde_json::json!({ "bytes": bytes }));
    }
    let manifest = serde_json::json!({
        "cols": x.ncols(), "rows": x.nrows(), "parts": parts,
        "source": { "head": "gram", "images": null, "run": null, "split": null },
    });
    std::fs::write(
        d.join(format!("{name}_manifest.json")),
        serde_json::to_string(&manifest).unwrap(),
    )
    .unwrap();
}

/// `k` Gaussian blobs of `per` rows in `dims` dimensions (centres spread
/// by 4, noise 1), rows shuffled; and their labels.
fn blobs(k: usize, per: usize, dims: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut normal = move || -> f32 {
        // Box-Muller
        let (u, v): (f32, f32) = (rng.gen_range(1e-7..1.0), rng.gen());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    let centres: Vec<Vec<f32>> = (0..k)
        .map(|_| (0..dims).map(|_| 4.0 * normal()).collect())
        .collect();
    let mut order: Vec<usize> = (0..k * per).collect();
    order.sort_by_key(|&i| (i * 7919) % (k * per));
    let labels: Vec<usize> = order.iter().map(|&i| i / per).collect();
    let x = Array2::from_shape_fn((k * per, dims), |(r, c)| centres[labels[r]][c] + normal());
    (x, labels)
}

fn report(d: &Path, out: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(d.join(out).join("clusters.json")).unwrap()).unwrap()
}

/// `eqae cluster --features F --out O --quiet` with `extra` arguments.
fn cluster_run(d: &Path, features: &str, out: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["cluster", "--features", features, "--out", out, "--quiet"];
    args.extend_from_slice(extra);
    common::run(d, &args)
}

/// [`cluster_run`], which must succeed.
fn cluster_ok(d: &Path, features: &str, out: &str, extra: &[&str]) {
    let mut args = vec!["cluster", "--features", features, "--out", out, "--quiet"];
    args.extend_from_slice(extra);
    succeeds(d, &args);
}

#[test]
fn planted_clusters_are_found_and_a_set_without_them_scores_at_chance() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 12 clusters in 16 dimensions: their centres differ in most of the
    // directions that whitening gives equal weight
    let (x, labels) = blobs(12, 40, 16, 1);
    features(d, "planted", &x, &labels);
    cluster_ok(d, "planted.npy", "p", &["--k", "12"]);
    let r = report(d, "p");
    assert!(r["scores"]["accuracy"].as_f64().unwrap() >= 0.99, "{r}");
    assert!(r["scores"]["nmi"].as_f64().unwrap() >= 0.97, "{r}");
    assert_eq!(r["sizes"].as_array().unwrap().len(), 12);
    // the same rows with the same seed: the same clusters, bit for bit
    cluster_ok(d, "planted.npy", "p2", &["--k", "12"]);
    assert_eq!(
        std::fs::read(d.join("p/clusters.npy")).unwrap(),
        std::fs::read(d.join("p2/clusters.npy")).unwrap()
    );
    // without --k, the number is chosen, and it is the planted one
    cluster_ok(d, "planted.npy", "auto", &[]);
    let r = report(d, "auto");
    assert_eq!(r["k"], 12, "{r}");
    assert!(
        r["k_chosen"].as_str().unwrap().contains("modularity"),
        "{r}"
    );
    // negative control: one blob, labels drawn at random; the scoring
    // must not find what is not there (NMI's own bias for 12 clusters of
    // 40 rows is about 0.05; ARI corrects for chance)
    let (noise, _) = blobs(1, 480, 16, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let random: Vec<usize> = (0..480).map(|_| rng.gen_range(0..12)).collect();
    features(d, "noise", &noise, &random);
    cluster_ok(d, "noise.npy", "n", &["--k", "12"]);
    let r = report(d, "n");
    assert!(r["scores"]["nmi"].as_f64().unwrap() < 0.1, "{r}");
    assert!(r["scores"]["ari"].as_f64().unwrap().abs() < 0.02, "{r}");
}

#[test]
fn every_row_gets_a_cluster_a_confidence_and_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (x, labels) = blobs(3, 40, 16, 4);
    features(d, "c", &x, &labels);
    cluster_ok(d, "c.npy", "o", &["--k", "3", "--method", "kmeans"]);
    let clusters: Array1<i64> = ndarray_npy::read_npy(d.join("o/clusters.npy")).unwrap();
    assert_eq!(clusters.len(), 120);
    let mut rows = csv::Reader::from_path(d.join("o/clusters.csv")).unwrap();
    assert_eq!(
        rows.headers().unwrap().iter().collect::<Vec<_>>(),
        ["row", "file", "cluster", "confidence", "outlier"]
    );
    for (i, rec) in rows.records().enumerate() {
        let rec = rec.unwrap();
        assert_eq!(rec[1], format!("img_{i:04}.png"));
        assert_eq!(rec[2].parse::<i64>().unwrap(), clusters[i]);
        let confidence: f64 = rec[3].parse().unwrap();
        assert!((0.0..=1.0).contains(&confidence));
        assert!(["true", "false"].contains(&&rec[4]));
    }
    for c in 0..3 {
        assert!(d.join(format!("o/sheets/cluster_{c:02}.png")).exists());
    }
    assert!(d.join("o/confusion.png").exists() && d.join("o/clusters.md").exists());
    // fewer clusters the second time: the sheets of the old ones go
    cluster_ok(d, "c.npy", "o", &["--k", "2"]);
    assert!(!d.join("o/sheets/cluster_02.png").exists());
}

#[test]
fn contact_sheets_show_the_collections_own_images() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn_d4(d, "syn");
    // two kinds of picture: dark and bright noise
    for i in 0..40u32 {
        grey_png(&d.join(format!("imgs/{i:03}.png")), 16, 16, i + 1);
    }
    succeeds(
        d,
        &[
            "embed", "--run", "runs/syn", "--images", "imgs", "--head", "gram", "--quiet", "--out",
            "c.npy",
        ],
    );
    let out = cluster_run(d, "c.npy", "o", &["--k", "3"]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    assert!(
        !common::text(&out.stderr).contains("could not be read"),
        "{}",
        common::text(&out.stderr)
    );
    let sheet = image::open(d.join("o/sheets/cluster_00.png"))
        .unwrap()
        .to_luma8();
    // drawn from the images, not left white or grey
    let distinct: std::collections::BTreeSet<u8> = sheet.pixels().map(|p| p.0[0]).collect();
    assert!(distinct.len() > 20, "{} grey levels", distinct.len());
    let overview = image::open(d.join("o/clusters.png")).unwrap();
    assert!(overview.height() > overview.width() / 16 * 2);
    // the same from the run and the folder, embedded on the way
    succeeds(
        d,
        &[
            "cluster", "--run", "runs/syn", "--images", "imgs", "--head", "gram", "--out", "r",
            "--k", "3", "--quiet",
        ],
    );
    assert!(d.join("r/features_manifest.json").exists());
    assert_eq!(
        std::fs::read(d.join("r/clusters.npy")).unwrap(),
        std::fs::read(d.join("o/clusters.npy")).unwrap()
    );
}

#[test]
fn bad_input_gets_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (x, labels) = blobs(2, 10, 8, 5);
    features(d, "c", &x, &labels);
    let cluster = |extra: &[&str]| {
        let mut args = vec!["cluster", "--features", "c.npy", "--out", "o", "--quiet"];
        args.extend(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let strs = |v: &[String]| {
        v.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\u{0}")
    };
    let check = |extra: &[&str], needles: &[&str]| {
        let args = cluster(extra);
        let joined = strs(&args);
        let args: Vec<&str> = joined.split('\u{0}').collect();
        fails_with(d, &args, needles);
        assert!(!d.join("o/clusters.npy").exists(), "{args:?} wrote output");
    };
    check(&["--k", "20"], &["--k 20", "20 rows"]);
    check(&["--k", "1"], &["--k 1"]);
    check(&["--neighbours", "1"], &["--neighbours 1"]);
    // a value that is not finite
    let mut bad = x.clone();
    bad[[7, 3]] = f32::NAN;
    features(d, "c", &bad, &labels);
    check(&[], &["row 7", "not finite"]);
    features(d, "c", &x, &labels);
    // side files that disagree with the rows, or are gone
    let files = std::fs::read_to_string(d.join("c_files.txt")).unwrap();
    std::fs::write(
        d.join("c_files.txt"),
        files.replacen("img_0000.png\n", "", 1),
    )
    .unwrap();
    check(&[], &["c_files.txt", "manifest"]);
    std::fs::remove_file(d.join("c_manifest.json")).unwrap();
    check(&[], &["no manifest"]);
    // an empty file, and one that is not there
    std::fs::write(d.join("e.npy"), b"").unwrap();
    fails_with(
        d,
        &["cluster", "--features", "e.npy", "--out", "o"],
        &["e.npy"],
    );
    fails_with(
        d,
        &["cluster", "--features", "nowhere.npy", "--out", "o"],
        &["nowhere"],
    );
    assert!(!d.join("o/clusters.npy").exists());
}

/// The clusters that `clusters.json` describes agree with `clusters.npy`.
fn whole(out: &Path) -> Option<usize> {
    let json = std::fs::read(out.join("clusters.json")).ok()?;
    let r: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let clusters: Array1<i64> = ndarray_npy::read_npy(out.join("clusters.npy")).unwrap();
    let k = r["k"].as_u64().unwrap() as usize;
    let mut sizes = vec![0u64; k];
    for &c in &clusters {
        sizes[c as usize] += 1;
    }
    let recorded: Vec<u64> = r["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(
        sizes, recorded,
        "clusters.json does not describe clusters.npy"
    );
    let csv_rows = csv::Reader::from_path(out.join("clusters.csv"))
        .unwrap()
        .records()
        .count();
    assert_eq!(csv_rows, clusters.len());
    for c in 0..k {
        assert!(out.join(format!("sheets/cluster_{c:02}.png")).exists());
    }
    assert!(out.join("confusion.png").exists());
    Some(k)
}

#[test]
fn a_kill_at_any_rename_leaves_one_whole_clustering_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (x, labels) = blobs(3, 30, 12, 6);
    features(d, "c", &x, &labels);
    let args = [
        "cluster",
        "--features",
        "c.npy",
        "--out",
        "o",
        "--k",
        "2",
        "--quiet",
    ];
    let n = renames(d, &args);
    assert!(n >= 7, "{n} renames");
    for at in 1..=n {
        let _ = std::fs::remove_dir_all(d.join("o"));
        cluster_ok(d, "c.npy", "o", &["--k", "3"]);
        let out = killed_at_rename(d, &args, at);
        assert!(!out.status.success(), "rename {at}: not killed");
        // the earlier clustering whole, the new one whole, or no report
        match whole(&d.join("o")) {
            Some(k) => assert!(k == 2 || k == 3),
            None => assert!(!d.join("o/clusters.json").exists()),
        }
    }
}
