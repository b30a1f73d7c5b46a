//! A kill at every rename: `embed` (a flat folder and class folders),
//! `export --safetensors` and the end of `train --resume`, each killed by
//! SIGKILL at its 1st, 2nd, ... rename (strace's `inject`), then, where it
//! applies, run again with `--resume`. After the kill the files are the
//! previous complete output, the new complete one, or a set that eqae
//! refuses in one line (no manifest, a config that does not describe the
//! weights); after the resume they are the uninterrupted run's, byte for
//! byte. Never a wrong row.

use std::collections::BTreeMap;
use std::path::Path;

mod common;
use common::{killed_at_rename, renames, run, succeeds, text, trained_syn_d4};

/// Every file of `dir` whose name starts with `stem`, with its bytes.
fn outputs(dir: &Path, stem: &str) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(stem))
        .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
        .collect()
}

/// Whether the manifest beside `stem.npy` (if any) describes the parts on
/// disk: every part there with its size and SHA-256.
fn manifest_holds(dir: &Path, stem: &str) -> bool {
    use sha2::Digest;
    let Ok(text) = std::fs::read_to_string(dir.join(format!("{stem}_manifest.json"))) else {
        return true; // no manifest: the set is not current, and says so
    };
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    m["parts"].as_object().unwrap().iter().all(|(name, part)| {
        let Ok(bytes) = std::fs::read(dir.join(name)) else {
            return false;
        };
        let sha: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        part["bytes"].as_u64() == Some(bytes.len() as u64) && part["sha256"] == sha.as_str()
    })
}

/// Embed into `f.npy` over an earlier output (of another head) and kill at
/// each rename: what is left is the earlier output, the new one, or a set
/// without a manifest; `--resume` then gives the new output exactly.
fn embed_killed_at_every_rename(layout: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn_d4(d, "syn");
    // 600 images: three batches, so kills fall between batches too
    for i in 0..600u32 {
        let folder = layout[i as usize % layout.len()];
        common::grey_png(&d.join(format!("imgs/{folder}{i:04}.png")), 20, 18, i);
    }
    let new: &[&str] = &[
        "embed", "--run", "runs/syn", "--images", "imgs", "--head", "gram", "--quiet",
    ];
    let with_out = |args: &[&str], out: &str| -> Vec<String> {
        args.iter()
            .map(|s| s.to_string())
            .chain(["--out".to_string(), out.to_string()])
            .collect()
    };
    let args = with_out(new, "want.npy");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    succeeds(d, &args);
    let want: BTreeMap<String, Vec<u8>> = outputs(d, "want")
        .into_iter()
        .filter(|(n, _)| !n.ends_with("_manifest.json"))
        .map(|(n, b)| (n.replacen("want", "f", 1), b))
        .collect();
    let earlier_args = [
        "embed", "--run", "runs/syn", "--images", "imgs", "--head", "average", "--quiet", "--out",
        "f.npy",
    ];
    let total = renames(d, &earlier_args) + 6;
    let new_args = with_out(new, "f.npy");
    let new_args: Vec<&str> = new_args.iter().map(String::as_str).collect();
    let mut resume_args = new_args.clone();
    resume_args.push("--resume");
    for n in 1..=total {
        for (name, _) in outputs(d, "f") {
            std::fs::remove_file(d.join(name)).unwrap();
        }
        let _ = std::fs::remove_dir_all(d.join(".f.npy.partial"));
        succeeds(d, &earlier_args);
        let earlier = outputs(d, "f");
        let out = killed_at_rename(d, &new_args, n);
        let left = outputs(d, "f");
        let current = left.contains_key("f_manifest.json");
        assert!(
            manifest_holds(d, "f"),
            "kill at rename {n}: a manifest beside parts it does not describe: {:?}",
            left.keys().collect::<Vec<_>>()
        );
        if current {
            let parts: BTreeMap<_, _> = left
                .iter()
                .filter(|(k, _)| !k.ends_with("_manifest.json"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert!(
                left == earlier || parts == want,
                "kill at rename {n}: a manifest over a mixed set"
            );
        }
        let resumed = run(d, &resume_args);
        assert!(
            resumed.status.success(),
            "kill at rename {n} ({:?}), then --resume: {}",
            out.status,
            text(&resumed.stderr)
        );
        let got: BTreeMap<String, Vec<u8>> = outputs(d, "f")
            .into_iter()
            .filter(|(n, _)| !n.ends_with("_manifest.json"))
            .collect();
        assert!(
            got == want,
            "kill at rename {n}, then --resume: not the uninterrupted output ({:?} against {:?})",
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        assert!(manifest_holds(d, "f"));
        assert!(!d.join(".f.npy.partial").exists());
    }
}

#[test]
fn embed_of_a_flat_folder_killed_at_every_rename_resumes_to_the_same_rows() {
    embed_killed_at_every_rename(&[""]);
}

#[test]
fn embed_of_class_folders_killed_at_every_rename_resumes_to_the_same_rows() {
    embed_killed_at_every_rename(&["a/", "b/", "c/"]);
}

/// `export --safetensors` over the pair of another run, killed at each
/// rename: the pair is the old one, the new one, or a model alone, never
/// a model beside weights that are not its own.
#[test]
fn export_with_safetensors_killed_at_every_rename_never_pairs_old_and_new() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn_d4(d, "a");
    std::fs::write(
        d.join("b.toml"),
        common::toy(
            "b",
            "train_limit = 200\ntest_limit = 100",
            "group = \"d4\"\nlatent = 8\ngroup_linear = [8]",
            "epochs = 1\nseed = 7",
        ),
    )
    .unwrap();
    succeeds(d, &["train", "--config", "b.toml", "--quiet"]);
    let export = |run: &str, out: &str| {
        vec![
            "export".to_string(),
            "--run".into(),
            format!("runs/{run}"),
            "--out".into(),
            out.into(),
            "--safetensors".into(),
        ]
    };
    let call = |v: &[String]| succeeds(d, &v.iter().map(String::as_str).collect::<Vec<_>>());
    call(&export("b", "new.onnx"));
    let new = (
        std::fs::read(d.join("new.onnx")).unwrap(),
        tensors_of(&std::fs::read(d.join("new.safetensors")).unwrap()),
    );
    let args = export("b", "p.onnx");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let total = renames(d, &args) + 2;
    for n in 1..=total {
        call(&export("a", "p.onnx"));
        let old = (
            std::fs::read(d.join("p.onnx")).unwrap(),
            tensors_of(&std::fs::read(d.join("p.safetensors")).unwrap()),
        );
        assert!(old.0 != new.0 && old.1 != new.1);
        killed_at_rename(d, &args, n);
        let onnx = std::fs::read(d.join("p.onnx")).ok();
        let tensors = std::fs::read(d.join("p.safetensors"))
            .ok()
            .map(|b| tensors_of(&b));
        let state = match (&onnx, &tensors) {
            (Some(o), Some(t)) if *o == old.0 && *t == old.1 => "old pair",
            (Some(o), Some(t)) if *o == new.0 && *t == new.1 => "new pair",
            (Some(o), None) if *o == old.0 => "old model alone",
            (Some(o), None) if *o == new.0 => "new model alone",
            _ => "mixed",
        };
        assert_ne!(
            state, "mixed",
            "kill at rename {n}: a model beside other weights"
        );
        // the same export again gives the new pair
        succeeds(d, &args);
        assert!(std::fs::read(d.join("p.onnx")).unwrap() == new.0);
        assert!(tensors_of(&std::fs::read(d.join("p.safetensors")).unwrap()) == new.1);
    }
}

/// The end of `train --resume` killed at each rename: the run is then
/// usable (its weights and config agree) or refused in one line, and
/// `--resume` repairs it to the weights of an uninterrupted resume.
#[test]
fn train_resume_killed_at_every_rename_is_repaired_by_resume() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained_syn_d4(d, "r");
    std::fs::write(d.join("r2.toml"), common::syn_d4("r", 2)).unwrap();
    let base = tempfile::tempdir().unwrap();
    copy_dir(&d.join("runs/r"), base.path());
    let resume = ["train", "--config", "r2.toml", "--resume", "--quiet"];
    let embed = [
        "embed", "--run", "runs/r", "--split", "test", "--quiet", "--out", "e.npy",
    ];
    let total = renames(d, &resume) + 2;
    succeeds(d, &embed);
    let want = std::fs::read(d.join("e.npy")).unwrap();
    for n in 1..=total {
        std::fs::remove_dir_all(d.join("runs/r")).unwrap();
        copy_dir(base.path(), &d.join("runs/r"));
        killed_at_rename(d, &resume, n);
        // after the kill: usable, or refused in one line saying what to do
        let out = run(d, &embed);
        if !out.status.success() {
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "kill at rename {n}: {err}");
            assert!(err.contains("--resume"), "kill at rename {n}: {err}");
        }
        succeeds(d, &resume);
        succeeds(d, &embed);
        assert!(
            std::fs::read(d.join("e.npy")).unwrap() == want,
            "kill at rename {n}, then --resume: other weights than an uninterrupted resume"
        );
        // and the repaired run is usable by every command
        succeeds(d, &["export", "--run", "runs/r", "--out", "r.onnx"]);
    }
}

/// A safetensors file's header (as JSON: the order of its metadata keys
/// varies between writes) and its tensor bytes.
fn tensors_of(bytes: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&bytes[8..8 + n]).unwrap(),
        bytes[8 + n..].to_vec(),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// `export --safetensors` that runs out of space on the weights (a file
/// size limit, with SIGXFSZ ignored, fails the write as a full disk does)
/// leaves the earlier pair as it was: the new model is not published
/// beside the earlier weights.
#[test]
fn export_with_safetensors_on_a_full_disk_keeps_the_earlier_pair() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // the baseline's weights (encoder and decoder) outweigh its model file
    for (name, seed) in [("a", 0), ("b", 5)] {
        std::fs::write(
            d.join(format!("{name}.toml")),
            common::toy(
                name,
                "train_limit = 100\ntest_limit = 20",
                "kind = \"baseline\"\ncode = 16",
                &format!("seed = {seed}"),
            ),
        )
        .unwrap();
        succeeds(
            d,
            &["train", "--config", &format!("{name}.toml"), "--quiet"],
        );
    }
    succeeds(
        d,
        &[
            "export",
            "--run",
            "runs/a",
            "--out",
            "p.onnx",
            "--safetensors",
        ],
    );
    let onnx = std::fs::read(d.join("p.onnx")).unwrap();
    let tensors = std::fs::read(d.join("p.safetensors")).unwrap();
    assert!(tensors.len() > onnx.len() + 4096);
    let limit = onnx.len() + 2048;
    let mut cmd = std::process::Command::new("sh");
    cmd.current_dir(d)
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; exec prlimit --fsize={limit} \"$0\" \"$@\""
        ))
        .arg(common::bin())
        .args([
            "export",
            "--run",
            "runs/b",
            "--out",
            "p.onnx",
            "--safetensors",
        ]);
    let out = assert_cmd::Command::from_std(cmd)
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("p.safetensors"), "{err}");
    assert!(
        std::fs::read(d.join("p.onnx")).unwrap() == onnx,
        "a new model beside the earlier weights"
    );
    assert!(std::fs::read(d.join("p.safetensors")).unwrap() == tensors);
    let left: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}
