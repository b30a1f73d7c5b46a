//! `eqae map` in a real browser: headless Chromium (Debian's package;
//! `scripts/test.sh` installs it when missing) opens the page with
//! `#selftest`, which counts the drawn points' pixels and clicks a point;
//! the test reads the result from the page, checks that the points are
//! drawn and the click lists the neighbours, and takes a screenshot.

use std::path::Path;

mod common;
use common::{fails_with, grey_png, succeeds, trained_syn_d4};

/// The Chromium binary, or a clear failure.
fn chromium() -> &'static str {
    for name in ["chromium", "chromium-browser"] {
        if std::process::Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return name;
        }
    }
    panic!("the map test opens the page in headless Chromium: apt-get install chromium (scripts/test.sh does)")
}

/// Run headless Chromium on `url` with `args`, with a time limit.
fn browse(dir: &Path, args: &[&str], url: &str) -> String {
    let mut cmd = std::process::Command::new(chromium());
    cmd.current_dir(dir)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .arg(url);
    let out = assert_cmd::Command::from_std(cmd)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_map_draws_every_point_and_a_click_shows_neighbours_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn_d4(d, "syn");
    for i in 0..60u32 {
        let class = ["a", "b", "c"][i as usize % 3];
        grey_png(
            &d.join(format!("imgs/{class}/{i:03}.png")),
            16,
            16,
            i * 3 + 1,
        );
    }
    succeeds(
        d,
        &[
            "embed", "--run", "runs/syn", "--images", "imgs", "--head", "gram", "--quiet", "--out",
            "c.npy",
        ],
    );
    succeeds(d, &["map", "--features", "c.npy", "--out", "m", "--quiet"]);
    for f in ["map.html", "map_thumbs.png", "map.png", "map.json"] {
        assert!(d.join("m").join(f).exists(), "{f}");
    }
    let page = d.join("m/map.html");
    let url = format!("file://{}#selftest", page.display());
    let dom = browse(d, &["--dump-dom"], &url);
    let start = dom
        .find("<pre id=\"selftest\"")
        .expect("the page ran its self-test");
    let json = &dom[start..];
    let json = &json[json.find('>').unwrap() + 1..json.find("</pre>").unwrap()];
    let result: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(result["points"], 60, "{result}");
    // 3x3 pixels a point; points may overlap, but far from all of them
    assert!(
        result["inked_pixels"].as_u64().unwrap() >= 60 * 4,
        "{result}"
    );
    assert_eq!(result["neighbours_shown"], 8, "{result}");
    assert_eq!(result["k"], 8, "{result}");
    assert_eq!(result["thumbnails_loaded"], true, "{result}");
    let shot = d.join("shot.png");
    browse(
        d,
        &[
            "--window-size=1000,700",
            &format!("--screenshot={}", shot.display()),
        ],
        &url,
    );
    let img = image::open(&shot).expect("a screenshot");
    assert_eq!((img.width(), img.height()), (1000, 700));
}

#[test]
fn a_map_of_an_incomplete_output_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("c.npy"), b"").unwrap();
    fails_with(
        d,
        &["map", "--features", "c.npy"],
        &["c.npy", "no manifest"],
    );
}
