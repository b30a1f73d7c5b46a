//! `eqae search`: a query turned by any element of D4 finds the same
//! neighbours (the features are invariant); rows of the collection are
//! queries too; names with commas and quotes survive the CSV; and bad
//! input gets one line.

use std::path::Path;

mod common;
use common::{fails_with, grey_png, succeeds, trained_syn_d4};

/// A D4 run and a collection of 60 images (two with awkward names),
/// embedded into `c.npy`.
fn collection(d: &Path) {
    trained_syn_d4(d, "syn");
    for i in 0..58u32 {
        grey_png(&d.join(format!("imgs/{i:03}.png")), 16, 16, i * 7 + 1);
    }
    grey_png(&d.join("imgs/a,b.png"), 16, 16, 1000);
    grey_png(&d.join("imgs/say \"hi\".png"), 16, 16, 1001);
    succeeds(
        d,
        &[
            "embed", "--run", "runs/syn", "--images", "imgs", "--head", "gram", "--quiet", "--out",
            "c.npy",
        ],
    );
}

/// `(query, file)` pairs in rank order, from `search.csv`.
fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn ranked(path: &Path) -> Vec<(String, String)> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].to_string(), rec[3].to_string())
        })
        .collect()
}

#[test]
fn a_query_turned_or_mirrored_finds_the_same_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    collection(d);
    // the query: a collection image, turned by every element of D4
    let upright = image::open(d.join("imgs/017.png")).unwrap();
    let mut names = Vec::new();
    for (t, img) in [
        upright.clone(),
        upright.rotate90(),
        upright.rotate180(),
        upright.rotate270(),
        upright.fliph(),
        upright.fliph().rotate90(),
        upright.fliph().rotate180(),
        upright.fliph().rotate270(),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("q{t}.png");
        img.save(d.join(&name)).unwrap();
        names.push(name);
    }
    let mut args = vec![
        "search",
        "--features",
        "c.npy",
        "--k",
        "8",
        "--out",
        "s",
        "--query",
    ];
    args.extend(names.iter().map(String::as_str));
    succeeds(d, &args);
    let hits = ranked(&d.join("s/search.csv"));
    assert_eq!(hits.len(), 8 * 8);
    let lists: Vec<Vec<&str>> = hits
        .chunks(8)
        .map(|c| c.iter().map(|(_, f)| f.as_str()).collect())
        .collect();
    assert_eq!(lists[0][0], "017.png", "the image itself is nearest");
    for (t, list) in lists.iter().enumerate() {
        assert_eq!(list, &lists[0], "element {t}: other neighbours");
    }
    // a row of the collection as the query gives the same list
    succeeds(
        d,
        &[
            "search",
            "--features",
            "c.npy",
            "--k",
            "8",
            "--out",
            "r",
            "--row",
            "17",
        ],
    );
    let row: Vec<String> = ranked(&d.join("r/search.csv"))
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    assert_eq!(row, lists[0]);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("s/search.json")).unwrap()).unwrap();
    assert_eq!(json["queries"].as_array().unwrap().len(), 8);
    let strip = image::open(d.join("s/search.png")).unwrap();
    assert_eq!((strip.width(), strip.height()), (9 * 70 + 12, 8 * 70 + 6));
}

#[test]
fn file_names_with_commas_and_quotes_survive_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    collection(d);
    succeeds(
        d,
        &[
            "search",
            "--features",
            "c.npy",
            "--k",
            "60",
            "--out",
            "s",
            "--query",
            "imgs/a,b.png",
        ],
    );
    let rows = ranked(&d.join("s/search.csv"));
    assert!(rows.iter().all(|(q, _)| q == "imgs/a,b.png"), "{rows:?}");
    let files: Vec<&str> = rows.iter().map(|(_, f)| f.as_str()).collect();
    assert_eq!(files.len(), 60);
    assert!(files.contains(&"a,b.png"), "{files:?}");
    assert!(files.contains(&"say \"hi\".png"), "{files:?}");
}

#[test]
fn an_index_beside_the_features_is_used_and_a_stale_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    collection(d);
    let search = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "search",
            "--features",
            "c.npy",
            "--k",
            "8",
            "--row",
            "17",
            "3",
            "--out",
            out,
        ];
        args.extend(extra);
        common::run(d, &args)
    };
    assert!(search("exact", &[]).status.success());
    let built = succeeds(
        d,
        &["index", "--features", "c.npy", "--dims", "16", "--quiet"],
    );
    assert!(built.contains("indexed 60 rows on 16"), "{built}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("c_index/index.json")).unwrap()).unwrap();
    assert_eq!(meta["rows"], 60);
    let out = search("indexed", &[]);
    assert!(out.status.success());
    assert_eq!(
        ranked(&d.join("indexed/search.csv")),
        ranked(&d.join("exact/search.csv"))
    );
    let json = std::fs::read_to_string(d.join("indexed/search.json")).unwrap();
    assert!(json.contains("approximate: an HNSW graph"), "{json}");
    // the features embedded again (another manifest): the index is stale
    succeeds(
        d,
        &[
            "embed", "--run", "runs/syn", "--images", "imgs", "--head", "average", "--quiet",
            "--out", "c.npy",
        ],
    );
    let out = search("stale", &[]);
    assert!(out.status.success());
    let err = common::text(&out.stderr);
    assert!(
        err.contains("another version of c.npy") && err.contains("eqae index"),
        "{err}"
    );
    let json = std::fs::read_to_string(d.join("stale/search.json")).unwrap();
    assert!(json.contains("exact: every row compared"), "{json}");
    fails_with(d, &["index", "--features", "nowhere.npy"], &["nowhere"]);
}

#[test]
fn shards_loaded_into_faiss_find_the_neighbours_eqae_finds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    collection(d);
    for i in 1..=3 {
        succeeds(
            d,
            &[
                "embed",
                "--run",
                "runs/syn",
                "--images",
                "imgs",
                "--head",
                "gram",
                "--quiet",
                "--shard",
                &format!("{i}/3"),
                "--out",
                &format!("part{i}.npy"),
            ],
        );
    }
    succeeds(
        d,
        &[
            "search",
            "--features",
            "c.npy",
            "--k",
            "8",
            "--row",
            "17",
            "--out",
            "s",
            "--exact",
        ],
    );
    let eqae: Vec<String> = ranked(&d.join("s/search.csv"))
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    let python = common::python_with(&["numpy", "faiss"]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/faiss_load.py");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&python)
            .arg(&script)
            .args(args)
            .current_dir(d)
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let built = run(&[
        "build",
        "--out",
        "fx",
        "part1.npy",
        "part2.npy",
        "part3.npy",
    ]);
    assert!(built.starts_with("60 rows"), "{built}");
    let found = run(&["query", "--index", "fx", "--file", "017.png", "--k", "8"]);
    let faiss: Vec<String> = csv::Reader::from_reader(found.as_bytes())
        .records()
        .map(|r| r.unwrap()[1].to_string())
        .collect();
    assert_eq!(faiss, eqae);
    // the approximate HNSW variant of the recipe, on so few rows, too
    run(&[
        "build",
        "--out",
        "fh",
        "--hnsw",
        "16",
        "part1.npy",
        "part2.npy",
        "part3.npy",
    ]);
    let found = run(&["query", "--index", "fh", "--file", "017.png", "--k", "8"]);
    assert_eq!(found.lines().count(), 9);
}

#[test]
fn bad_input_gets_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    collection(d);
    let search = |extra: &[&str]| {
        let mut args = vec!["search", "--features", "c.npy", "--out", "s"];
        args.extend(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    fails_with(
        d,
        &strs(&search(&["--k", "61", "--row", "0"])),
        &["--k 61", "60 rows"],
    );
    fails_with(d, &strs(&search(&["--row", "60"])), &["--row 60"]);
    std::fs::write(d.join("bad.png"), b"not an image").unwrap();
    fails_with(
        d,
        &strs(&search(&["--query", "bad.png"])),
        &["query", "bad.png"],
    );
    fails_with(
        d,
        &strs(&search(&["--query", "nowhere.png"])),
        &["nowhere.png"],
    );
    // a value that is not finite, in a set whose manifest still holds sizes
    let mut bytes = std::fs::read(d.join("c.npy")).unwrap();
    let at = bytes.len() - 4;
    bytes[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::copy(d.join("c.npy"), d.join("keep.npy")).unwrap();
    std::fs::write(d.join("c.npy"), &bytes).unwrap();
    fails_with(
        d,
        &strs(&search(&["--row", "0"])),
        &["row 59", "not finite"],
    );
    std::fs::copy(d.join("keep.npy"), d.join("c.npy")).unwrap();
    // side files that disagree with the rows, or are gone
    let files = std::fs::read_to_string(d.join("c_files.txt")).unwrap();
    std::fs::write(d.join("c_files.txt"), files.replacen("000.png\n", "", 1)).unwrap();
    fails_with(
        d,
        &strs(&search(&["--row", "0"])),
        &["c_files.txt", "manifest"],
    );
    std::fs::remove_file(d.join("c_manifest.json")).unwrap();
    fails_with(
        d,
        &strs(&search(&["--row", "0"])),
        &["no manifest", "--resume"],
    );
    // an empty file is not a collection
    std::fs::write(d.join("e.npy"), b"").unwrap();
    fails_with(
        d,
        &["search", "--features", "e.npy", "--row", "0"],
        &["e.npy", "no manifest"],
    );
}
