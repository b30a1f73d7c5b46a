//! Validation: every value that parses but cannot work is refused with the
//! key's name, before any work starts.

use std::path::Path;

use super::{Config, ConfigError, DataConfig, ModelConfig, ModelKind, TrainConfig};

/// Widest input smoothing accepted, in pixels (its taps grow with its square).
pub const MAX_SMOOTHING: f64 = 4.0;

/// Narrowest input smoothing accepted, in pixels: a turned pixel lies up
/// to 0.71 pixel from the nearest one, and the taps reach 3 widths.
pub const MIN_SMOOTHING: f64 = 0.25;

/// A number as people read it in a message: `1e300`, not 301 digits.
pub fn short_number(v: f64) -> String {
    if v != 0.0 && !(1e-4..1e6).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// Largest kernel side accepted.
pub const MAX_KERNEL: usize = 63;
/// Largest model accepted, in weights (expanded filter banks included):
/// 2^28 floats are a gigabyte before any gradient or optimiser state.
pub const MAX_WEIGHTS: f64 = (1u64 << 28) as f64;
/// Largest batch accepted.
pub const MAX_BATCH: usize = 1 << 16;
/// Most epochs accepted.
pub const MAX_EPOCHS: usize = 1_000_000;

impl Config {
    /// Check every value that parses but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_name(&self.name)?;
        validate_canvas(&self.data)?;
        validate_stages(&self.data, &self.model)?;
        validate_model(&self.data, &self.model)?;
        validate_features(self)?;
        validate_train(&self.train)
    }
}

/// The error of `key`.
fn bad(key: &'static str, message: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError::Value {
        key,
        message: message.into(),
    })
}

/// `name`: one plain folder name.
fn validate_name(name: &str) -> Result<(), ConfigError> {
    if !is_plain_file_name(name) {
        return bad(
            "name",
            format!(
                "{:?} is not a plain folder name: the run goes to <runs>/<name>, so the name must be one path component, not empty, `.` or `..`, without slashes or control characters",
                name
            ),
        );
    }
    Ok(())
}

/// `data.image_size` and `data.validation_fraction`.
fn validate_canvas(d: &DataConfig) -> Result<(), ConfigError> {
    if !(8..=256).contains(&d.image_size) {
        return bad(
            "data.image_size",
            format!("{} is outside 8..=256", d.image_size),
        );
    }
    if !(0.0..0.9).contains(&d.validation_fraction) {
        return bad("data.validation_fraction", "must be in [0, 0.9)");
    }
    Ok(())
}

/// The kernel and the stages: odd kernel, at least one stage, and a canvas
/// that every stage can halve and that holds the data set's images.
fn validate_stages(d: &DataConfig, m: &ModelConfig) -> Result<(), ConfigError> {
    if m.kernel.is_multiple_of(2) {
        return bad(
            "model.kernel",
            format!(
                "{} is even; group convolutions need an odd kernel so that the filter rotates about its centre pixel",
                m.kernel
            ),
        );
    }
    if m.channels.is_empty() || m.channels.contains(&0) {
        return bad(
            "model.channels",
            "needs at least one stage, each with channels > 0",
        );
    }
    let stages = m.channels.len();
    // checked: a long list must not wrap the shift around
    let factor = u32::try_from(stages)
        .ok()
        .and_then(|k| 1usize.checked_shl(k))
        .filter(|&f| f <= d.image_size);
    match factor {
        None => {
            return bad(
                "model.channels",
                format!(
                    "{stages} stages halve the image {stages} times, more than data.image_size = {} allows",
                    d.image_size
                ),
            )
        }
        Some(f) if !d.image_size.is_multiple_of(f) => {
            return bad(
                "model.channels",
                format!(
                    "{stages} stages halve the image {stages} times, but data.image_size = {} is not divisible by {f}",
                    d.image_size
                ),
            )
        }
        Some(_) => {}
    }
    if let Some(source) = d.dataset.source_size() {
        if d.image_size < source {
            let f = 1usize << stages;
            let smallest = source.div_ceil(f) * f;
            return bad(
                "data.image_size",
                format!(
                    "{} would cut the {source}x{source} images of {}; the smallest canvas that holds them is {source} ({smallest} with {stages} stages)",
                    d.image_size,
                    d.dataset.name()
                ),
            );
        }
    }
    Ok(())
}

/// The model's widths, smoothing, kernel size and weight count.
fn validate_model(d: &DataConfig, m: &ModelConfig) -> Result<(), ConfigError> {
    if m.latent == 0 || m.group_linear.contains(&0) {
        return bad("model.latent", "latent and group_linear widths must be > 0");
    }
    if m.kind == ModelKind::Baseline && m.code == 0 {
        return bad("model.code", "the baseline needs a code size > 0");
    }
    if !(m.smoothing == 0.0 || (MIN_SMOOTHING..=MAX_SMOOTHING).contains(&m.smoothing)) {
        return bad(
            "model.smoothing",
            format!(
                "{} is not a width in pixels: 0 (none), or from {MIN_SMOOTHING} (narrower, a Gaussian has no weight between pixels) to {MAX_SMOOTHING}",
                short_number(m.smoothing)
            ),
        );
    }
    if m.kernel > MAX_KERNEL {
        return bad(
            "model.kernel",
            format!("{} is larger than {MAX_KERNEL}", m.kernel),
        );
    }
    let weights = m.weight_count_estimate(d.image_size);
    if weights > MAX_WEIGHTS {
        return bad(
            "model",
            format!(
                "too large: channels {:?}, latent {}, group_linear {:?}, code {} and kernel {} make about {weights:.1e} weights (expanded filter banks included), more than {MAX_WEIGHTS:.1e}",
                m.channels, m.latent, m.group_linear, m.code, m.kernel
            ),
        );
    }
    Ok(())
}

/// `features.gram_elements` names elements of the model's group.
fn validate_features(config: &Config) -> Result<(), ConfigError> {
    let m = &config.model;
    if m.kind != ModelKind::Baseline {
        if let Err(e) = config.features.gram_elements.resolve(&m.group.group()) {
            return bad("features.gram_elements", e.to_string());
        }
    }
    Ok(())
}

/// `[train]`: epochs, batch, clipping, learning rate, entropy weight.
fn validate_train(t: &TrainConfig) -> Result<(), ConfigError> {
    if t.epochs == 0 {
        return bad("train.epochs", "must be > 0");
    }
    if t.batch_size == 0 || t.batch_size > MAX_BATCH {
        return bad("train.batch_size", format!("must be in 1..={MAX_BATCH}"));
    }
    if t.epochs > MAX_EPOCHS {
        return bad("train.epochs", format!("must be at most {MAX_EPOCHS}"));
    }
    if !(t.grad_clip >= 0.0 && t.grad_clip.is_finite()) {
        return bad(
            "train.grad_clip",
            format!("{} must be 0 (off) or positive", t.grad_clip),
        );
    }
    if !(t.learning_rate > 0.0 && t.learning_rate.is_finite()) {
        return bad(
            "train.learning_rate",
            format!("{} must be positive", t.learning_rate),
        );
    }
    if !(t.entropy_weight >= 0.0 && t.entropy_weight.is_finite()) {
        return bad("train.entropy_weight", "must be >= 0");
    }
    Ok(())
}

/// One normal path component: not empty, not `.` or `..`, no separators
/// or control characters (a run name becomes a folder under `--runs`).
fn is_plain_file_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(p)), None) if p == std::ffi::OsStr::new(name)
    ) && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}
