//! User-facing TOML configuration: plain serde with `deny_unknown_fields`
//! and defaults, validated once with errors that name the key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::group::resample::Resampling;
use crate::group::GroupKind;
use crate::invariant::GramElements;

mod validate;
pub use validate::{MAX_BATCH, MAX_EPOCHS, MAX_KERNEL, MAX_WEIGHTS};

/// Configuration errors; every message names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {error}")]
    Read {
        /// The config path.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// TOML syntax, an unknown key or a wrong type (toml's message names the key).
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The config path.
        path: PathBuf,
        /// What toml said.
        message: String,
    },
    /// A `KEY=VALUE` setting from the command line that names no key of the
    /// config or does not parse.
    #[error("cannot apply `{assignment}`: {message}")]
    Setting {
        /// The setting as given.
        assignment: String,
        /// Why it cannot be applied.
        message: String,
    },
    /// A value that parses but cannot work.
    #[error("invalid value for `{key}`: {message}")]
    Value {
        /// Dotted key, e.g. `model.kernel`.
        key: &'static str,
        /// Why it is wrong.
        message: String,
    },
}

/// Which autoencoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Plain convolutional autoencoder (the paper's baseline).
    Baseline,
    /// Equivariant autoencoder; average and Gram pooling read its V.
    Equivariant,
    /// Equivariant autoencoder with equivariant attention (paper 4.2).
    Attention,
}

impl ModelKind {
    /// The name a config uses.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Baseline => "baseline",
            ModelKind::Equivariant => "equivariant",
            ModelKind::Attention => "attention",
        }
    }
}

/// Which data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// MNIST digits, augmented by random rotations and reflections.
    Mnist,
    /// Fashion-MNIST, augmented the same way.
    FashionMnist,
    /// NDSB 2015 plankton (`train/<class>/<id>.jpg`).
    Plankton,
    /// Generated shapes; needs no download (tests, quick checks).
    Synthetic,
    /// The user's own images: every PNG/JPEG under `data.root`, at any
    /// depth, prepared as `eqae embed --images` prepares them; top-level
    /// class folders, where every image has one, label them (for scoring
    /// only). A seeded fifth is held out as the test set.
    Folder,
}

impl DatasetKind {
    /// The name a config uses.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Plankton => "plankton",
            DatasetKind::Synthetic => "synthetic",
            DatasetKind::Folder => "folder",
        }
    }

    /// Side of the data set's own square images, when it has a fixed one.
    pub fn source_size(self) -> Option<usize> {
        match self {
            DatasetKind::Mnist | DatasetKind::FashionMnist => Some(28),
            DatasetKind::Plankton | DatasetKind::Synthetic | DatasetKind::Folder => None,
        }
    }
}

/// `[data]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Data set.
    pub dataset: DatasetKind,
    /// Folder holding the data (`scripts/fetch_data.sh` fills `data/`);
    /// for `dataset = "folder"`, the folder of images itself.
    pub root: PathBuf,
    /// Use at most this many training images (0 = all).
    pub train_limit: usize,
    /// Use at most this many test images (0 = all).
    pub test_limit: usize,
    /// Side of the square canvas the models see.
    pub image_size: usize,
    /// Randomly rotate (any angle) and reflect every image.
    pub augment: bool,
    /// Fraction of the training images held out for validation.
    pub validation_fraction: f64,
    /// Seed of augmentation and splits.
    pub seed: u64,
    /// How augmentation resamples an image turned off the pixel grid
    /// (`bilinear`, `bicubic`, `fourier`); also the default of the rotation
    /// studies and `check --angles`.
    #[serde(skip_serializing_if = "is_default")]
    pub resampling: Resampling,
}

/// Whether `value` is its type's default (such keys are left out of the
/// TOML a run stores, so configs written before the key existed keep
/// their text and their cache keys).
fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: DatasetKind::Mnist,
            root: PathBuf::from("data"),
            train_limit: 0,
            test_limit: 0,
            image_size: 32,
            augment: true,
            validation_fraction: 0.1,
            seed: 0,
            resampling: Resampling::Bilinear,
        }
    }
}

/// `[model]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Autoencoder kind.
    pub kind: ModelKind,
    /// Symmetry group (ignored by the baseline).
    pub group: GroupKind,
    /// Channels per group element at each encoder stage (the baseline uses
    /// them as plain channels).
    pub channels: Vec<usize>,
    /// Odd kernel size of the stage convolutions.
    pub kernel: usize,
    /// Columns of V after the spatial network.
    pub latent: usize,
    /// Widths of the group-linear layers after it; the last is m, the
    /// columns of V. Empty: m = latent.
    pub group_linear: Vec<usize>,
    /// Code size: the baseline's embedding, or the attention model's
    /// compressed invariant code (0 = keep Q uncompressed).
    pub code: usize,
    /// Width (standard deviation, pixels) of the Gaussian that smooths the
    /// input of the equivariant models before their branches turn it; 0 =
    /// none (and bilinear branch turns). About one pixel hides the pixel
    /// lattice, so that a turn by any angle changes the features little.
    #[serde(skip_serializing_if = "is_default")]
    pub smoothing: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            kind: ModelKind::Equivariant,
            group: GroupKind::D4,
            channels: vec![4, 8, 16, 16],
            kernel: 3,
            latent: 32,
            group_linear: vec![32],
            code: 64,
            smoothing: 0.0,
        }
    }
}

/// The baseline's channels are the config's times this: close to the
/// parameter count of the D4 model, whose channels each hold |H| = 8 maps.
pub const BASELINE_WIDENING: usize = 4;

impl ModelConfig {
    /// Elements of the grid group H whose maps each channel holds (1 for
    /// the baseline).
    pub fn grid_order(&self) -> usize {
        match self.kind {
            ModelKind::Baseline => 1,
            _ => self.group.grid_group().order(),
        }
    }

    /// Feature maps per configured channel: |H| for the equivariant models,
    /// [`BASELINE_WIDENING`] plain channels for the baseline.
    pub fn maps_per_channel(&self) -> usize {
        match self.kind {
            ModelKind::Baseline => BASELINE_WIDENING,
            _ => self.grid_order(),
        }
    }

    /// Copies of the grid network the image runs through: |G| / |H| (3 for
    /// C12, 6 for D12; 1 otherwise).
    pub fn branch_count(&self) -> usize {
        match self.kind {
            ModelKind::Baseline => 1,
            _ => self.group.group().order() / self.grid_order(),
        }
    }

    /// Rough count of the floats the model's weights take, expanded filter
    /// banks included (each base filter appears once per grid-group
    /// element): enough to refuse a config whose model cannot be allocated.
    pub fn weight_count_estimate(&self, image_size: usize) -> f64 {
        let (n, maps) = (self.grid_order() as f64, self.maps_per_channel() as f64);
        let k2 = (self.kernel * self.kernel) as f64;
        let mut previous = 1.0;
        let mut total = 0.0;
        for &c in &self.channels {
            let c = c as f64 * maps;
            // encoder conv, decoder conv and upsampling
            total += 2.0 * c * previous * k2 + c * c * 4.0;
            previous = c;
        }
        let side = (image_size >> self.channels.len().min(usize::BITS as usize - 1)) as f64;
        let ng = self.group.group().order() as f64;
        let mut width = self.latent as f64;
        total += 2.0 * previous * width * n * side * side;
        for &w in &self.group_linear {
            total += ng * width * ng * w as f64;
            width = w as f64;
        }
        total + 2.0 * previous * side * side * self.code as f64
    }

    /// Columns m of V.
    pub fn columns(&self) -> usize {
        self.group_linear.last().copied().unwrap_or(self.latent)
    }
}

/// `[train]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Weight of the attention entropy regulariser (paper Eq. 16).
    pub entropy_weight: f64,
    /// Seed of weight initialisation and batch order.
    pub seed: u64,
    /// How the learning rate changes over the run.
    pub schedule: Schedule,
    /// Clip each parameter's gradient to this L2 norm before the Adam step
    /// (burn's per-tensor norm clipping); 0 = no clipping.
    pub grad_clip: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 5,
            batch_size: 64,
            learning_rate: 1e-3,
            entropy_weight: 0.01,
            seed: 0,
            schedule: Schedule::Constant,
            grad_clip: 0.0,
        }
    }
}

/// `train.schedule`: the learning rate over the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// `learning_rate` throughout (the paper's setting).
    #[default]
    Constant,
    /// Cosine decay from `learning_rate` to 0 over all epochs.
    Cosine,
}

impl TrainConfig {
    /// The learning rate after `done` of the run's steps (0 at the start,
    /// 1 at the end).
    pub fn learning_rate_at(&self, done: f64) -> f64 {
        match self.schedule {
            Schedule::Constant => self.learning_rate,
            Schedule::Cosine => {
                let done = done.clamp(0.0, 1.0);
                self.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * done).cos())
            }
        }
    }
}

/// `[features]`: how invariant features are read from V.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureConfig {
    /// Right-regular elements h of the Gram features `<u_i, rho(h) u_j>`,
    /// by name: "e", "R^k", "M", "R^k M", or "all". Empty: e, R^1, and M
    /// when the group has reflections. One name may stand alone
    /// (`gram_elements = "all"`).
    pub gram_elements: GramElements,
    /// Diagonals of each Gram matrix to keep (|i - j| < band); 0 keeps all.
    pub gram_band: usize,
    /// Add the rotation autocorrelations `<u_i, lambda(R^j) u_i>`, j = 1..=n/2.
    pub autocorrelation: bool,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            gram_elements: GramElements::Default,
            gram_band: 8,
            autocorrelation: true,
        }
    }
}

/// A whole run's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Run name (run directory `runs/<name>`).
    pub name: String,
    /// Data.
    pub data: DataConfig,
    /// Model.
    pub model: ModelConfig,
    /// Training.
    pub train: TrainConfig,
    /// Invariant features.
    pub features: FeatureConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "default".into(),
            data: DataConfig::default(),
            model: ModelConfig::default(),
            train: TrainConfig::default(),
            features: FeatureConfig::default(),
        }
    }
}

impl Config {
    /// The built-in default: a small D4 model on 6,000 augmented MNIST
    /// images, a few minutes on two cores.
    pub fn builtin_default() -> Self {
        let mut c = Config {
            name: "default_d4".into(),
            ..Config::default()
        };
        c.data.train_limit = 6000;
        c.data.test_limit = 2000;
        c.train.epochs = 3;
        c
    }

    /// Parse and validate TOML text; `path` is only used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Read, parse and validate a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_toml(&text, path)
    }

    /// The resolved config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// This config with one dotted key set, `model.latent=64` or
    /// `train.schedule=cosine` (the value is TOML; a bare word is read as a
    /// string), checked like a config file: an unknown key, a wrong type or
    /// a value that cannot work is an error naming the key.
    pub fn with_setting(&self, assignment: &str) -> Result<Config, ConfigError> {
        let fail = |message: String| ConfigError::Setting {
            assignment: assignment.to_string(),
            message,
        };
        let (key, raw) = assignment
            .split_once('=')
            .ok_or_else(|| fail("expected KEY=VALUE, e.g. model.latent=64".into()))?;
        let (key, raw) = (key.trim(), raw.trim());
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        let mut root = toml::Value::try_from(self).expect("config serialises");
        let parts: Vec<&str> = key.split('.').collect();
        let (last, sections) = parts.split_last().expect("split gives one part");
        let mut table = &mut root;
        for part in sections {
            table = table
                .get_mut(*part)
                .ok_or_else(|| fail(format!("the config has no key `{key}`")))?;
        }
        // a key at its default is not written out (model.smoothing): set
        // it all the same, and let the parse refuse a key that is unknown
        match table.as_table_mut() {
            Some(t) if sections.is_empty() && !t.contains_key(*last) => {
                return Err(fail(format!("the config has no key `{key}`")))
            }
            Some(t) => {
                let unwritten = !t.contains_key(*last);
                t.insert(last.to_string(), value);
                if unwritten {
                    let text = toml::to_string(&root).map_err(|e| fail(e.to_string()))?;
                    return Config::from_toml(&text, Path::new(assignment)).map_err(|e| {
                        if e.to_string().contains("unknown field") {
                            fail(format!("the config has no key `{key}`"))
                        } else {
                            e
                        }
                    });
                }
            }
            None => return Err(fail(format!("the config has no key `{key}`"))),
        }
        let text = toml::to_string(&root).map_err(|e| fail(e.to_string()))?;
        Config::from_toml(&text, Path::new(assignment))
    }

    /// Every key whose value differs between `self` (old) and `other`
    /// (new), in the alphabetical order of their written keys.
    pub fn diff(&self, other: &Config) -> Vec<ConfigChange> {
        fn walk(path: &[&str], a: &toml::Value, b: &toml::Value, out: &mut Vec<ConfigChange>) {
            match (a, b) {
                (toml::Value::Table(ta), toml::Value::Table(tb)) => {
                    let keys: std::collections::BTreeSet<&String> =
                        ta.keys().chain(tb.keys()).collect();
                    for k in keys {
                        let missing = toml::Value::String("(absent)".into());
                        let mut inner = path.to_vec();
                        inner.push(k);
                        walk(
                            &inner,
                            ta.get(k).unwrap_or(&missing),
                            tb.get(k).unwrap_or(&missing),
                            out,
                        );
                    }
                }
                _ if a != b => out.push(ConfigChange::new(path, a, b)),
                _ => {}
            }
        }
        let value = |c: &Config| toml::Value::try_from(c).expect("config serialises");
        let mut out = Vec::new();
        walk(&[], &value(self), &value(other), &mut out);
        out
    }
}

/// A config section, as [`ConfigChange`] names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// Top-level keys (`name`).
    Top,
    /// `[data]`
    Data,
    /// `[model]`
    Model,
    /// `[train]`
    Train,
    /// `[features]`
    Features,
}

/// One key whose value differs between two configs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigChange {
    /// Its section.
    pub section: Section,
    /// The key within the section.
    pub key: String,
    /// The old value, as TOML writes it (`(absent)` where there was none).
    pub old: String,
    /// The new value.
    pub new: String,
}

impl ConfigChange {
    fn new(path: &[&str], old: &toml::Value, new: &toml::Value) -> Self {
        let (section, key) = match path {
            [only] => (Section::Top, only.to_string()),
            [section, rest @ ..] => (
                match *section {
                    "data" => Section::Data,
                    "model" => Section::Model,
                    "train" => Section::Train,
                    "features" => Section::Features,
                    _ => Section::Top,
                },
                rest.join("."),
            ),
            [] => (Section::Top, String::new()),
        };
        ConfigChange {
            section,
            key,
            old: old.to_string(),
            new: new.to_string(),
        }
    }

    /// Whether the change can alter what training produces: everything
    /// but how features are read (`[features]`), the run's name, where the
    /// data files lie and how many test images are evaluated.
    pub fn alters_training(&self) -> bool {
        !matches!(
            (self.section, self.key.as_str()),
            (Section::Features, _)
                | (Section::Top, "name")
                | (Section::Data, "root" | "test_limit")
        )
    }
}

impl std::fmt::Display for ConfigChange {
    /// `section.key: old -> new`, as people read it in messages and history.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let section = match self.section {
            Section::Top => "",
            Section::Data => "data.",
            Section::Model => "model.",
            Section::Train => "train.",
            Section::Features => "features.",
        };
        write!(f, "{section}{}: {} -> {}", self.key, self.old, self.new)
    }
}

/// Changes as one line: `a: 1 -> 2, b: x -> y`.
pub fn changes_text(changes: &[ConfigChange]) -> String {
    changes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"))
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse("[model]\nkernal = 3\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `kernal`"), "{err}");
    }

    #[test]
    fn even_kernel_is_rejected() {
        let err = parse("[model]\nkernel = 4\n").unwrap_err().to_string();
        assert!(
            err.contains("`model.kernel`") && err.contains("odd"),
            "{err}"
        );
    }

    #[test]
    fn gradient_clipping_must_be_zero_or_positive() {
        assert_eq!(
            parse("[train]\ngrad_clip = 1.0\n").unwrap().train.grad_clip,
            1.0
        );
        for bad in ["-1.0", "nan", "inf"] {
            let err = parse(&format!("[train]\ngrad_clip = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("`train.grad_clip`"), "{bad}: {err}");
        }
    }

    #[test]
    fn negative_learning_rate_is_rejected() {
        let err = parse("[train]\nlearning_rate = -0.1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`train.learning_rate`"), "{err}");
    }

    #[test]
    fn unknown_group_is_rejected() {
        let err = parse("[model]\ngroup = \"D5\"\n").unwrap_err().to_string();
        assert!(
            err.contains("unknown variant `D5`") && err.contains("group"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_is_rejected() {
        let err = parse("[train]\nepochs = \"ten\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("epochs"), "{err}");
    }

    #[test]
    fn run_names_must_be_one_plain_component() {
        for bad in ["", ".", "..", "a/b", "a/..", "/abs", "a\\b", "new\nline"] {
            let c = Config {
                name: bad.into(),
                ..Config::default()
            };
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("`name`"), "{bad:?}: {err}");
        }
        for good in ["d4", "a.b", "x-1_s0", "..a"] {
            let c = Config {
                name: good.into(),
                ..Config::default()
            };
            assert!(c.validate().is_ok(), "{good:?}");
        }
    }

    #[test]
    fn cosine_schedule_decays_from_the_rate_to_zero() {
        let mut t = TrainConfig::default();
        assert_eq!(t.learning_rate_at(0.7), t.learning_rate);
        t.schedule = Schedule::Cosine;
        assert!((t.learning_rate_at(0.0) - t.learning_rate).abs() < 1e-15);
        assert!((t.learning_rate_at(0.5) - 0.5 * t.learning_rate).abs() < 1e-15);
        assert!(t.learning_rate_at(1.0).abs() < 1e-15);
        let c = parse("[train]\nschedule = \"cosine\"\n").unwrap();
        assert_eq!(c.train.schedule, Schedule::Cosine);
        let err = parse("[train]\nschedule = \"linear\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("schedule"), "{err}");
    }

    #[test]
    fn a_setting_changes_one_key_and_is_validated() {
        let c = Config::default();
        let d = c.with_setting("model.latent=48").unwrap();
        assert_eq!(changes_text(&c.diff(&d)), "model.latent: 32 -> 48");
        let d = c.with_setting("train.schedule = cosine").unwrap();
        assert_eq!(d.train.schedule, Schedule::Cosine);
        let d = c.with_setting("model.channels=[2, 4, 8, 8]").unwrap();
        assert_eq!(d.model.channels, [2, 4, 8, 8]);
        for (bad, says) in [
            ("model.latnt=3", "no key `model.latnt`"),
            ("model.latent", "KEY=VALUE"),
            ("model.latent=big", "model.latent"),
            ("model.kernel=4", "model.kernel"),
        ] {
            let err = c.with_setting(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn diff_names_each_changed_key() {
        let a = Config::default();
        let mut b = a.clone();
        b.train.epochs = 9;
        b.model.group_linear = vec![];
        let changes = a.diff(&b);
        assert_eq!(
            changes_text(&changes),
            "model.group_linear: [32] -> [], train.epochs: 5 -> 9"
        );
        assert_eq!(
            (changes[0].section, changes[0].key.as_str()),
            (Section::Model, "group_linear")
        );
        assert!(changes.iter().all(ConfigChange::alters_training));
        b.name = "other".into();
        b.features.gram_band = 3;
        b.data.test_limit = 7;
        let ignored: Vec<String> = a
            .diff(&b)
            .iter()
            .filter(|c| !c.alters_training())
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            ignored,
            [
                "data.test_limit: 0 -> 7",
                "features.gram_band: 8 -> 3",
                "name: \"default\" -> \"other\""
            ]
        );
        assert!(a.diff(&a).is_empty());
    }

    #[test]
    fn resolved_config_round_trips() {
        let c = Config::builtin_default();
        assert_eq!(parse(&c.to_toml()).unwrap(), c);
    }
}
