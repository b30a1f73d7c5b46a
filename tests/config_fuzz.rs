//! Property test over whole configs: random keys (real ones and typos),
//! random types and random values in every section. No config may panic
//! or hang: in-process, parsing, validation and building and running the
//! model it describes; through the binary, `eqae train` under a time limit
//! must succeed or fail with one line starting `Error:`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use eqae::config::Config;
use eqae::model::Autoencoder;
use proptest::prelude::*;

mod common;

/// Any TOML value, of any type: what a careless or hostile user might write.
fn wild_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (-3i64..300).prop_map(|v| v.to_string()),
        Just("9223372036854775807".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("1e30".to_string()),
        Just("nan".to_string()),
        Just("-inf".to_string()),
        Just("0.5".to_string()),
        Just("-0.0".to_string()),
        Just("true".to_string()),
        Just("\"\"".to_string()),
        Just("\"d12\"".to_string()),
        Just("\"..\"".to_string()),
        Just("\"all\"".to_string()),
        Just("[]".to_string()),
        prop::collection::vec(0usize..6, 0..8).prop_map(|v| format!("{v:?}")),
        prop::collection::vec(1usize..3, 60..70).prop_map(|v| format!("{v:?}")),
        Just("[\"e\", \"R^1\", \"M\"]".to_string()),
        Just("[\"R^7\"]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("1979-05-27".to_string()),
    ]
}

/// A value that fits the key, mostly small enough to run in a test.
fn plausible(key: &str) -> BoxedStrategy<String> {
    let s = |v: &[&str]| {
        let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        prop::sample::select(v).boxed()
    };
    match key {
        "name" => s(&["\"fuzz\"", "\"a b\"", "\"x.y\""]),
        "dataset" => s(&[
            "\"synthetic\"",
            "\"mnist\"",
            "\"fashion-mnist\"",
            "\"plankton\"",
        ]),
        "root" => s(&["\"nowhere\"", "\"data\""]),
        "train_limit" | "test_limit" => s(&["0", "1", "5", "40", "64", "48"]),
        "image_size" => s(&["8", "12", "16", "17", "32", "7", "257"]),
        "augment" | "autocorrelation" => s(&["true", "false"]),
        "validation_fraction" => s(&["0.0", "0.1", "0.5", "0.89", "0.9", "1.0"]),
        "seed" => s(&["0", "1", "18446744073709551615"]),
        "kind" => s(&["\"baseline\"", "\"equivariant\"", "\"attention\""]),
        "group" => s(&[
            "\"c4\"", "\"d4\"", "\"c12\"", "\"d12\"", "\"p4\"", "\"p4m\"",
        ]),
        "channels" => s(&["[1]", "[2, 2]", "[1, 2, 1]", "[3]", "[1, 1, 1, 1, 1]"]),
        "kernel" => s(&["1", "3", "5", "2", "0", "15"]),
        "latent" | "code" => s(&["1", "3", "8", "0"]),
        "group_linear" => s(&["[]", "[2]", "[3, 2]", "[0]"]),
        "epochs" => s(&["1", "2", "0"]),
        "batch_size" => s(&["1", "7", "64", "0"]),
        "learning_rate" => s(&["0.001", "0.01", "1.0", "0.0", "1e30"]),
        "entropy_weight" => s(&["0.0", "0.01", "10.0"]),
        "gram_elements" => s(&[
            "[]",
            "\"all\"",
            "[\"e\"]",
            "[\"M\"]",
            "[\"R^2 M\"]",
            "[\"x\"]",
        ]),
        "gram_band" => s(&["0", "1", "8", "1000"]),
        "resampling" => s(&["\"bilinear\"", "\"bicubic\"", "\"fourier\"", "\"sinc\""]),
        "smoothing" => s(&["0.0", "0.5", "1.0", "-1.0", "4.5", "nan", "inf"]),
        _ => wild_value().boxed(),
    }
}

const SECTIONS: [(&str, &[&str]); 5] = [
    ("", &["name", "~nmae"]),
    (
        "data",
        &[
            "dataset",
            "root",
            "train_limit",
            "test_limit",
            "image_size",
            "augment",
            "validation_fraction",
            "seed",
            "resampling",
            "~imagesize",
        ],
    ),
    (
        "model",
        &[
            "kind",
            "group",
            "channels",
            "kernel",
            "latent",
            "group_linear",
            "code",
            "smoothing",
            "~kernal",
        ],
    ),
    (
        "train",
        &[
            "epochs",
            "batch_size",
            "learning_rate",
            "entropy_weight",
            "seed",
            "~epoch",
        ],
    ),
    (
        "features",
        &["gram_elements", "gram_band", "autocorrelation", "~band"],
    ),
];

/// A whole config: each section present or not, each key present or not
/// (typos rarely), each value plausible for its key (usually: plausible
/// values include impossible ones) or of any type.
fn config_text() -> impl Strategy<Value = String> {
    let sections: Vec<BoxedStrategy<String>> = SECTIONS
        .iter()
        .map(|(section, keys)| {
            let entries: Vec<BoxedStrategy<Option<String>>> = keys
                .iter()
                .map(|key| {
                    // `~key` is a typo of a real key: present only now and then
                    let (key, presence) = match key.strip_prefix('~') {
                        Some(typo) => (typo.to_string(), 0.02),
                        None => (key.to_string(), 0.5),
                    };
                    let value = prop_oneof![12 => plausible(&key), 1 => wild_value()];
                    prop::option::weighted(presence, value)
                        .prop_map(move |v| v.map(|v| format!("{key} = {v}\n")))
                        .boxed()
                })
                .collect();
            let header = if section.is_empty() {
                String::new()
            } else {
                format!("[{section}]\n")
            };
            (entries, any::<bool>())
                .prop_map(move |(lines, present)| {
                    if !present && !header.is_empty() {
                        return String::new();
                    }
                    header.clone() + &lines.into_iter().flatten().collect::<String>()
                })
                .boxed()
        })
        .collect();
    sections.prop_map(|parts| parts.concat())
}

/// Small enough to build and run in a test (the property is about panics,
/// not about how long a large but valid model takes).
fn small(c: &Config) -> bool {
    let per_stage: usize = c.model.channels.iter().sum();
    let m = &c.model;
    c.data.image_size <= 32
        && per_stage <= 48
        && m.kernel <= 7
        && m.latent <= 64
        && m.code <= 64
        && m.group_linear.iter().all(|&w| w <= 64)
}

/// Run `check` on `cases` generated configs and return how many passed
/// each outcome's counter (the closure returns the index of its outcome).
fn run_cases(cases: u32, check: impl Fn(&str) -> Result<usize, TestCaseError>) -> [usize; 3] {
    use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};
    let counts = std::cell::RefCell::new([0usize; 3]);
    // a fixed seed: the same cases on every run, so the counts below are stable
    let mut runner = TestRunner::new_with_rng(
        RunnerConfig {
            cases,
            failure_persistence: None,
            max_global_rejects: 100_000,
            ..RunnerConfig::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let result = runner.run(&config_text(), |text| {
        let outcome = check(&text)?;
        counts.borrow_mut()[outcome] += 1;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    counts.into_inner()
}

#[test]
fn no_config_panics_in_process() {
    // outcomes: 0 refused with a message, 1 valid, 2 valid and run
    let counts = run_cases(1500, |text| {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            match Config::from_toml(text, Path::new("fuzz.toml")) {
                Err(e) => {
                    let msg = e.to_string();
                    assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
                    0
                }
                Ok(c) => {
                    // what validates round-trips and builds a model that runs
                    let again = Config::from_toml(&c.to_toml(), Path::new("again.toml")).unwrap();
                    assert_eq!(again, c);
                    if !small(&c) {
                        return 1;
                    }
                    let device = Device::flex();
                    let model = Autoencoder::new(&c.model, c.data.image_size, &device);
                    let s = c.data.image_size;
                    let out = model
                        .valid()
                        .forward(Tensor::<4>::zeros([1, 1, s, s], &device));
                    assert_eq!(out.reconstruction.dims(), [1, 1, s, s]);
                    2
                }
            }
        }));
        outcome.map_err(|_| TestCaseError::fail(format!("panicked on config:\n{text}")))
    });
    eprintln!(
        "in process: {} refused, {} valid, {} built and run",
        counts[0], counts[1], counts[2]
    );
    // the generator reaches both sides of validation
    assert!(counts[0] > 100 && counts[2] > 50, "{counts:?}");
}

#[test]
fn no_config_panics_or_hangs_the_binary() {
    // outcomes: 0 trained, 1 refused with one error line
    let counts = run_cases(48, |text| {
        let mut text = text.to_string();
        let mut parsed = Config::from_toml(&text, Path::new("fuzz.toml"));
        if let Ok(c) = &parsed {
            // a valid config of a large model only takes long (the property
            // is about hangs and panics); a small one trains one epoch on few images
            prop_assume!(small(c));
            let mut table: toml::Table = toml::from_str(&text).unwrap();
            let data = table
                .entry("data")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let data = data.as_table_mut().unwrap();
            data.insert("train_limit".into(), toml::Value::Integer(48));
            data.insert("test_limit".into(), toml::Value::Integer(16));
            let train = table
                .entry("train")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            train
                .as_table_mut()
                .unwrap()
                .insert("epochs".into(), toml::Value::Integer(1));
            text = toml::to_string(&table).unwrap();
            parsed = Config::from_toml(&text, Path::new("fuzz.toml"));
        }
        let text = text.as_str();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fuzz.toml"), text).unwrap();
        // small stand-ins for the downloaded data sets, so that those configs train too
        for name in ["mnist", "fashion-mnist"] {
            common::fake_mnist(&dir.path().join("data"), name, 80, 20);
        }
        let out = assert_cmd::Command::cargo_bin("eqae")
            .unwrap()
            .current_dir(dir.path())
            .args(["train", "--config", "fuzz.toml", "--quiet"])
            .timeout(Duration::from_secs(90))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code() {
            Some(0) => {
                prop_assert!(parsed.is_ok(), "trained on an invalid config:\n{}", text);
                Ok(0)
            }
            Some(1) => {
                let lines: Vec<&str> = err
                    .trim()
                    .lines()
                    .filter(|l| l.starts_with("Error: "))
                    .collect();
                prop_assert_eq!(lines.len(), 1, "{}\n---\n{}", err, text);
                prop_assert!(!err.contains("panicked"), "{}\n---\n{}", err, text);
                eprintln!("refused: {}", lines[0]);
                Ok(1)
            }
            other => Err(TestCaseError::fail(format!(
                "exit {other:?} (None: killed by the time limit or a signal)\n{err}\n---\n{text}"
            ))),
        }
    });
    eprintln!("binary: {} trained, {} refused", counts[0], counts[1]);
    assert!(counts[0] >= 3 && counts[1] >= 3, "{counts:?}");
}
