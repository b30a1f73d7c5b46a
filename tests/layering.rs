//! The layer order that `src/lib.rs` states is the one the code keeps:
//! no module imports a module listed after it.

use std::path::Path;

/// The modules in `src/lib.rs`'s list, lowest first.
fn stated_order(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! - [`"))
        .filter_map(|l| l.split('`').next())
        .map(String::from)
        .collect()
}

/// Every `.rs` file under `dir`, with each of its lines as code (the
/// part before any `//` comment), numbered from 1.
fn code_lines(dir: &Path) -> Vec<(std::path::PathBuf, Vec<(usize, String)>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().and_then(|e| e.to_str()) == Some("rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let lines = text
                    .lines()
                    .enumerate()
                    .map(|(n, l)| (n + 1, l.split("//").next().unwrap_or("").to_string()))
                    .collect();
                out.push((path, lines));
            }
        }
    }
    out
}

/// Every `crate::<module>` named on a code line of the files under `dir`,
/// with the file and line.
fn imports(dir: &Path, out: &mut Vec<(String, usize, String)>) {
    for (path, lines) in code_lines(dir) {
        for (n, code) in lines {
            for (i, _) in code.match_indices("crate::") {
                let module: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.push((path.display().to_string(), n, module));
            }
        }
    }
}

/// The layer breaches in `src`: `file:line: a imports b`.
fn breaches(src: &Path) -> Vec<String> {
    let order = stated_order(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    assert!(order.len() >= 10, "src/lib.rs lists no layers: {order:?}");
    let rank = |m: &str| order.iter().position(|o| o == m);
    let mut found = Vec::new();
    imports(src, &mut found);
    let mut out = Vec::new();
    for (file, line, target) in found {
        let rel = Path::new(&file).strip_prefix(src).unwrap().to_path_buf();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let (Some(from), Some(to)) = (rank(&module), rank(&target)) else {
            out.push(format!(
                "{file}:{line}: {module} or {target} is not in src/lib.rs's list"
            ));
            continue;
        };
        if to > from {
            out.push(format!(
                "{file}:{line}: {module} imports {target}, listed above it"
            ));
        }
    }
    out
}

#[test]
fn no_module_imports_one_listed_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = breaches(&src);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn an_upward_import_is_caught() {
    // a copy of src/ with the group algebra importing the command line
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    std::fs::copy(src.join("lib.rs"), dir.path().join("lib.rs")).unwrap();
    std::fs::create_dir(dir.path().join("group")).unwrap();
    std::fs::write(
        dir.path().join("group/mod.rs"),
        "use crate::cli::Cli; // a comment naming crate::cli is fine\n",
    )
    .unwrap();
    let found = breaches(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("group imports cli"), "{found:?}");
}

/// `docs/architecture.md`'s tree names the modules of `src/lib.rs`'s list,
/// from the highest down (nested folders such as `src/nn/cpu/` stand
/// under their module).
#[test]
fn the_architecture_doc_lists_the_modules_in_the_order_of_lib_rs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let mut documented: Vec<String> = Vec::new();
    for line in doc.lines().filter(|l| l.starts_with("src/")) {
        let path = line.split_whitespace().next().unwrap();
        let module = path["src/".len()..]
            .trim_end_matches('/')
            .trim_end_matches(".rs")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        if documented.last() != Some(&module) {
            documented.push(module);
        }
    }
    let mut stated = stated_order(&lib);
    stated.reverse();
    assert_eq!(
        documented, stated,
        "docs/architecture.md's tree (highest first) and src/lib.rs's list (lowest first) disagree"
    );
}

/// Within one folder, the files that name a sibling file through
/// `super::<sibling>` on a code line: `(folder, from, to)`.
fn sibling_imports(dir: &Path, out: &mut Vec<(String, String, String)>) {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sibling_imports(&path, out);
        } else if path.extension().and_then(|e| e.to_str()) == Some("rs") {
            files.push(path);
        }
    }
    let stem = |p: &Path| p.file_stem().unwrap().to_string_lossy().to_string();
    let siblings: Vec<String> = files.iter().map(|p| stem(p)).collect();
    for path in files.iter().filter(|p| stem(p) != "mod") {
        let text = std::fs::read_to_string(path).unwrap();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for (i, _) in code.match_indices("super::") {
                let rest = &code[i + "super::".len()..];
                // `super::{a, b}` names several
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    Some(list) => list.split('}').next().unwrap_or("").split(',').collect(),
                    None => vec![rest],
                };
                for name in names {
                    let target: String = name
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if target != stem(path) && target != "mod" && siblings.contains(&target) {
                        out.push((dir.display().to_string(), stem(path), target));
                    }
                }
            }
        }
    }
}

/// Pairs of files in one folder that import each other, directly or
/// through other files of the folder.
fn import_circles(src: &Path) -> Vec<String> {
    let mut edges = Vec::new();
    sibling_imports(src, &mut edges);
    edges.sort();
    edges.dedup();
    let reaches = |dir: &str, from: &str, to: &str| {
        let mut seen = vec![from.to_string()];
        let mut stack = vec![from.to_string()];
        while let Some(at) = stack.pop() {
            for (_, _, next) in edges.iter().filter(|(d, f, _)| d == dir && *f == at) {
                if next == to {
                    return true;
                }
                if !seen.contains(next) {
                    seen.push(next.clone());
                    stack.push(next.clone());
                }
            }
        }
        false
    };
    edges
        .iter()
        .filter(|(dir, from, to)| reaches(dir, to, from))
        .map(|(dir, from, to)| format!("{dir}: {from} imports {to}, which leads back to {from}"))
        .collect()
}

#[test]
fn no_two_files_of_one_folder_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = import_circles(&src);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn an_import_circle_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("probes");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("mod.rs"), "pub mod knn;\npub mod select;\n").unwrap();
    std::fs::write(
        folder.join("knn.rs"),
        "fn k() { super::select::choose_k(); }\n",
    )
    .unwrap();
    std::fs::write(
        folder.join("select.rs"),
        "use super::{accuracy, knn::knn_predict};\n// super::other in a comment\n",
    )
    .unwrap();
    let found = import_circles(dir.path());
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("knn imports select"), "{found:?}");
}

/// The files outside `src/cli` (and `main.rs`) that name clap on a code line.
fn clap_outside_cli(src: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (path, lines) in code_lines(src) {
        let rel = path.strip_prefix(src).unwrap().to_path_buf();
        if rel.starts_with("cli") || rel == Path::new("main.rs") {
            continue;
        }
        for (n, code) in lines {
            if code.contains("clap::") || code.contains("ValueEnum") {
                out.push(format!("{}:{n}", rel.display()));
            }
        }
    }
    out
}

#[test]
fn clap_is_read_in_cli_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = clap_outside_cli(&src);
    assert!(found.is_empty(), "clap outside src/cli: {found:?}");
}

#[test]
fn clap_below_cli_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["cli", "group"] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
    }
    std::fs::write(dir.path().join("cli/args.rs"), "use clap::Args;\n").unwrap();
    std::fs::write(dir.path().join("main.rs"), "use clap::Parser;\n").unwrap();
    std::fs::write(
        dir.path().join("group/mod.rs"),
        "// clap::ValueEnum in a comment is fine\n#[derive(clap::ValueEnum)]\nenum R {}\n",
    )
    .unwrap();
    assert_eq!(clap_outside_cli(dir.path()), ["group/mod.rs:2"]);
}
