//! Evaluation of frozen features: probes, the paper's tables, pictures.

pub mod cluster;
pub mod embed;
pub mod embed_run;
pub mod features;
pub mod figures;
pub mod index;
pub mod map;
pub mod npy;
pub mod plots;
pub mod probes;
pub mod search;

use anyhow::Result;
use burn::tensor::Device;
use ndarray::Array2;

use crate::config::Config;
use crate::data::Splits;
use crate::model::Autoencoder;

/// The training and test features of `head`: `(train, test)`. Refuses
/// empty splits.
pub fn split_features(
    model: &Autoencoder,
    config: &Config,
    head: features::Head,
    data: &Splits,
    device: &Device,
    quiet: bool,
) -> Result<(Array2<f32>, Array2<f32>)> {
    for (split, set) in [("training", &data.train), ("test", &data.test)] {
        if set.is_empty() {
            anyhow::bail!(
                "{}: the {split} split is empty; nothing to evaluate (check data.train_limit, data.test_limit and the data files)",
                config.name
            );
        }
    }
    let f_train = features::extract(model, config, head, &data.train, device, quiet)?;
    let f_test = features::extract(model, config, head, &data.test, device, quiet)?;
    Ok((f_train, f_test))
}
