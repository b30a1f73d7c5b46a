//! Frozen features of a trained run: invariant heads over V, the attention
//! code, the baseline's code, or V itself.

use anyhow::{bail, Result};
use burn::tensor::Device;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::config::{Config, ModelKind};
use crate::data::Dataset;
use crate::invariant::{average_pooling, parse_elements, GramPooling};
use crate::model::Autoencoder;
use crate::nn::transform::to_vec;
use crate::progress;
use crate::train::batch_tensor;

/// Which features to read from a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// The baseline's code (not invariant).
    Code,
    /// Average pooling over the rows of V.
    Average,
    /// Gram pooling (plus rotation autocorrelations).
    Gram,
    /// The equivariant attention model's invariant code.
    Attention,
    /// The attention model's invariant Q before its compression to the
    /// code, flattened row-major (`N * m` features).
    AttentionQ,
    /// The raw equivariant embedding V, flattened row-major (not invariant).
    V,
}

impl Head {
    /// Paper-style row name.
    pub fn label(self) -> &'static str {
        match self {
            Head::Code => "Autoencoder",
            Head::Average => "Average Pooling",
            Head::Gram => "Gram Pooling",
            Head::Attention => "Equivariant Attention",
            Head::AttentionQ => "Equivariant Attention (Q)",
            Head::V => "Equivariant embedding V",
        }
    }

    /// The name configs and the command line use (`gram`, `average`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Head::Code => "code",
            Head::Average => "average",
            Head::Gram => "gram",
            Head::Attention => "attention",
            Head::AttentionQ => "attention-q",
            Head::V => "v",
        }
    }

    /// The heads a model kind offers by default.
    pub fn defaults(kind: ModelKind) -> Vec<Head> {
        match kind {
            ModelKind::Baseline => vec![Head::Code],
            ModelKind::Equivariant => vec![Head::Average, Head::Gram],
            ModelKind::Attention => vec![Head::Attention, Head::AttentionQ],
        }
    }
}

/// Features `[len, F]` of every image in `data`.
pub fn extract(
    model: &Autoencoder,
    config: &Config,
    head: Head,
    data: &Dataset,
    device: &Device,
    quiet: bool,
) -> Result<Array2<f32>> {
    let model = model.for_inference();
    let device = device.clone().without_autodiff();
    let gram = match (&model, head) {
        (Autoencoder::Equivariant(m), Head::Gram) => {
            let g = m.group().group();
            let elements =
                parse_elements(&g, &config.features.gram_elements).map_err(anyhow::Error::msg)?;
            Some(GramPooling::new(
                g,
                elements,
                config.features.gram_band,
                config.features.autocorrelation,
            ))
        }
        _ => None,
    };
    let bar = progress::bar(data.len() as u64, quiet, head.label());
    let mut rows: Vec<f32> = Vec::new();
    let mut width = 0;
    let all: Vec<usize> = (0..data.len()).collect();
    for chunk in all.chunks(256) {
        let x = batch_tensor(data, chunk, &device);
        let f = match (&model, head) {
            (Autoencoder::Baseline(m), Head::Code) => m.encode(x),
            (Autoencoder::Equivariant(m), Head::Average) => average_pooling(m.embed(x)),
            (Autoencoder::Equivariant(m), Head::Gram) => {
                gram.as_ref().expect("gram head").features(m.embed(x))
            }
            (Autoencoder::Equivariant(m), Head::V) => {
                let v = m.embed(x);
                let [b, n, c] = v.dims();
                v.reshape([b, n * c])
            }
            (Autoencoder::Equivariant(m), Head::Attention) => match m.encode(x).code {
                Some(code) => code,
                None => bail!("{}: --head attention needs an attention model", config.name),
            },
            (Autoencoder::Equivariant(m), Head::AttentionQ) => match m.attention() {
                Some(att) => {
                    // # Shapes: [B, N, m] -> Q [B, N, m] -> [B, N*m]
                    let v = m.embed(x);
                    let q = att.invariant(v.clone(), att.weights(v));
                    let [b, n, c] = q.dims();
                    q.reshape([b, n * c])
                }
                None => bail!(
                    "{}: --head attention-q needs an attention model",
                    config.name
                ),
            },
            (_, h) => bail!("{}: head {h:?} does not apply to this model", config.name),
        };
        width = f.dims()[1];
        rows.extend(to_vec(&f));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(Array2::from_shape_vec((data.len(), width), rows)?)
}
