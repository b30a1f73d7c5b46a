//! Frozen features of a trained run: invariant heads over V, the attention
//! code, the baseline's code, or V itself.

use anyhow::{bail, Result};
use burn::tensor::{Device, Tensor};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::config::{Config, ModelKind};
use crate::data::Dataset;
use crate::invariant::{average_pooling, GramPooling};
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
    /// Every head.
    pub const ALL: [Head; 6] = [
        Head::Code,
        Head::Average,
        Head::Gram,
        Head::Attention,
        Head::AttentionQ,
        Head::V,
    ];

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

    /// The head whose [`Head::label`] is `label`.
    pub fn from_label(label: &str) -> Option<Head> {
        Head::ALL.into_iter().find(|h| h.label() == label)
    }

    /// The head whose [`Head::name`] is `name`.
    pub fn from_name(name: &str) -> Option<Head> {
        Head::ALL.into_iter().find(|h| h.name() == name)
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

    /// Every head a model kind can read.
    pub fn offered(kind: ModelKind) -> Vec<Head> {
        match kind {
            ModelKind::Baseline => vec![Head::Code],
            ModelKind::Equivariant => vec![Head::Average, Head::Gram, Head::V],
            ModelKind::Attention => vec![
                Head::Attention,
                Head::AttentionQ,
                Head::Average,
                Head::Gram,
                Head::V,
            ],
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

/// A model ready to read one head's features, batch by batch (inference
/// mode, the Gram pooling tables built once).
pub struct FeatureReader {
    model: Autoencoder,
    head: Head,
    gram: Option<GramPooling>,
    name: String,
    size: usize,
    model_config: crate::config::ModelConfig,
    device: Device,
}

impl FeatureReader {
    /// Prepare `model` (trained as `config`) to read `head`; a head the
    /// model does not have is refused here, before any image is read.
    pub fn new(model: &Autoencoder, config: &Config, head: Head, device: &Device) -> Result<Self> {
        let model = model.for_inference();
        let device = device.clone().without_autodiff();
        let applies = matches!(
            (&model, head),
            (Autoencoder::Baseline(_), Head::Code)
                | (
                    Autoencoder::Equivariant(_),
                    Head::Average | Head::Gram | Head::V
                )
        ) || matches!((&model, head), (Autoencoder::Equivariant(m), Head::Attention | Head::AttentionQ) if m.attention().is_some());
        if !applies {
            bail!(
                "{}: the {} model has no {} features (its heads: {})",
                config.name,
                config.model.kind.name(),
                head.name(),
                Head::offered(config.model.kind)
                    .iter()
                    .map(|h| h.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let gram = match (&model, head) {
            (Autoencoder::Equivariant(m), Head::Gram) => {
                let g = m.group().group();
                let elements = config.features.gram_elements.resolve(&g)?;
                Some(GramPooling::new(
                    g,
                    elements,
                    config.features.gram_band,
                    config.features.autocorrelation,
                ))
            }
            _ => None,
        };
        Ok(FeatureReader {
            model,
            head,
            gram,
            name: config.name.clone(),
            size: config.data.image_size,
            model_config: config.model.clone(),
            device,
        })
    }

    /// Images per batch: [`BATCH`], or the largest power of two below it
    /// whose inference fits the memory available (large images); refused
    /// only where a single image does not fit. Commands that read no
    /// features (`export`) never ask.
    pub fn batch(&self) -> Result<usize> {
        // inference keeps about a third of a training step's maps
        let mut batch = BATCH;
        loop {
            let fits = crate::model::flops::ensure_step_fits(
                &self.model_config,
                self.size,
                batch as f64,
                1.0 / 3.0,
                &format!("reading the features of {batch} image(s)"),
            );
            match fits {
                Ok(()) => return Ok(batch),
                Err(e) if batch == 1 => return Err(e),
                Err(_) => batch /= 2,
            }
        }
    }

    /// Features per image, read from one blank image.
    pub fn width(&self) -> Result<usize> {
        let blank = Tensor::<4>::zeros([1, 1, self.size, self.size], &self.device);
        Ok(self.read(blank)?.dims()[1])
    }

    /// Side of the images the model reads.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The model, prepared for inference (filter banks expanded).
    pub fn model(&self) -> &Autoencoder {
        &self.model
    }

    /// The head it reads.
    pub fn head(&self) -> Head {
        self.head
    }

    /// Gram pooling's tables, for the Gram head.
    pub fn gram(&self) -> Option<&GramPooling> {
        self.gram.as_ref()
    }

    /// The device the images must be on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Features of one batch; each row depends on its own image only, and
    /// is the same bit for bit whatever batch it is read in (a batch of one
    /// is read as two copies: matrix products of one row take other
    /// kernels, which round differently).
    ///
    /// # Shapes
    /// `x [B, 1, S, S]` -> `[B, F]`
    pub fn read(&self, x: Tensor<4>) -> Result<Tensor<2>> {
        if x.dims()[0] == 1 {
            let f = self.read_batch(Tensor::cat(vec![x.clone(), x], 0))?;
            let width = f.dims()[1];
            return Ok(f.slice([0..1, 0..width]));
        }
        self.read_batch(x)
    }

    /// [`FeatureReader::read`] for any batch as it comes.
    ///
    /// # Shapes
    /// `x [B, 1, S, S]` -> `[B, F]`
    fn read_batch(&self, x: Tensor<4>) -> Result<Tensor<2>> {
        Ok(match (&self.model, self.head) {
            (Autoencoder::Baseline(m), Head::Code) => m.encode(x),
            (Autoencoder::Equivariant(m), Head::Average) => average_pooling(m.embed(x)),
            (Autoencoder::Equivariant(m), Head::Gram) => {
                self.gram.as_ref().expect("gram head").features(m.embed(x))
            }
            (Autoencoder::Equivariant(m), Head::V) => {
                // # Shapes: [B, N, L] -> [B, N*L]
                let v = m.embed(x);
                let [b, n, c] = v.dims();
                v.reshape([b, n * c])
            }
            (Autoencoder::Equivariant(m), Head::Attention) => match m.encode(x).code {
                Some(code) => code,
                None => bail!("{}: --head attention needs an attention model", self.name),
            },
            (Autoencoder::Equivariant(m), Head::AttentionQ) => match m.attention() {
                Some(att) => {
                    // # Shapes: [B, N, m] -> Q [B, N, m] -> [B, N*m]
                    let v = m.embed(x);
                    let q = att.invariant(v.clone(), att.weights(v));
                    let [b, n, c] = q.dims();
                    q.reshape([b, n * c])
                }
                None => bail!("{}: --head attention-q needs an attention model", self.name),
            },
            (_, h) => bail!("{}: head {h:?} does not apply to this model", self.name),
        })
    }
}

/// Images per batch when features are read.
pub const BATCH: usize = 256;

/// Features `[len, F]` of every image in `data`.
pub fn extract(
    model: &Autoencoder,
    config: &Config,
    head: Head,
    data: &Dataset,
    device: &Device,
    quiet: bool,
) -> Result<Array2<f32>> {
    let reader = FeatureReader::new(model, config, head, device)?;
    let batch = reader.batch()?;
    let bar = progress::bar(data.len() as u64, quiet, head.label());
    let mut rows: Vec<f32> = Vec::new();
    let mut width = 0;
    let all: Vec<usize> = (0..data.len()).collect();
    for chunk in all.chunks(batch) {
        let f = reader.read(batch_tensor(data, chunk, reader.device())?)?;
        width = f.dims()[1];
        rows.extend(to_vec(&f));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(Array2::from_shape_vec((data.len(), width), rows)?)
}

/// A trained run read for one head (`--head`, or the model's first):
/// the run folder, its config, its weights, and the reader of the head
/// (refused here when the model has no such head).
pub struct TrainedHead {
    /// The run folder.
    pub run: crate::train::RunDir,
    /// Its resolved config.
    pub config: crate::config::Config,
    /// Its trained weights.
    pub model: crate::model::Autoencoder,
    /// The head's features, ready to read.
    pub reader: FeatureReader,
}

impl TrainedHead {
    /// Load the run at `dir` on `device` and prepare `head`.
    pub fn load(
        dir: &std::path::Path,
        head: Option<Head>,
        device: &Device,
    ) -> anyhow::Result<Self> {
        let run = crate::train::RunDir::new(dir);
        let config = run.load_config()?;
        let model = run.load_model(&config, device)?;
        let head = head.unwrap_or(Head::defaults(config.model.kind)[0]);
        let reader = FeatureReader::new(&model, &config, head, device)?;
        Ok(TrainedHead {
            run,
            config,
            model,
            reader,
        })
    }
}
