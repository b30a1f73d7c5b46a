//! Data sets: MNIST and Fashion-MNIST (IDX), NDSB 2015 plankton, a plain
//! folder of images, and generated shapes for tests. Every loader returns
//! images as `f32` in [0, 1] on a square canvas, background 0.

pub mod augment;
pub mod disk;
pub mod folder;
pub mod idx;
pub mod plankton;
pub mod synthetic;

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{DataConfig, DatasetKind};
use crate::group::resample::Resampling;

/// Errors of the data layer; each names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A file was read but its contents are wrong.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A data set is not where the config says.
    #[error("{what} not found at {path}: {hint}")]
    Missing {
        /// What was looked for.
        what: String,
        /// Where.
        path: PathBuf,
        /// How to get it.
        hint: String,
    },
}

impl DataError {
    /// The same error with `hint` (what the user can do) after its message.
    pub fn hinted(self, hint: &str) -> Self {
        match self {
            DataError::Missing {
                what,
                path,
                hint: h,
            } => DataError::Missing {
                what,
                path,
                hint: format!("{h}; {hint}"),
            },
            DataError::Io { path, error } => DataError::Format {
                path,
                message: format!("cannot read: {error}; {hint}"),
            },
            DataError::Format { path, message } => DataError::Format {
                path,
                message: format!("{message}; {hint}"),
            },
        }
    }

    /// A copy that keeps the text (an I/O error becomes its message).
    pub fn clone_text(&self) -> Self {
        match self {
            DataError::Io { path, error } => DataError::Format {
                path: path.clone(),
                message: format!("cannot read: {error}"),
            },
            DataError::Format { path, message } => DataError::Format {
                path: path.clone(),
                message: message.clone(),
            },
            DataError::Missing { what, path, hint } => DataError::Missing {
                what: what.clone(),
                path: path.clone(),
                hint: hint.clone(),
            },
        }
    }

    pub(crate) fn format(path: &Path, message: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Where a data set's pixels are.
#[derive(Clone, Debug)]
pub enum Pixels {
    /// In memory, image after image (`len * size * size` values).
    Memory(Vec<f32>),
    /// Rows of a file on disk ([`disk`]): folder data sets, so that a
    /// collection larger than memory trains in bounded memory.
    Disk(disk::DiskRows),
}

impl Default for Pixels {
    fn default() -> Self {
        Pixels::Memory(Vec::new())
    }
}

impl From<Vec<f32>> for Pixels {
    fn from(images: Vec<f32>) -> Self {
        Pixels::Memory(images)
    }
}

/// Images with labels, each `size * size` values in [0, 1].
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// The pixels, in memory or on disk.
    pub pixels: Pixels,
    /// Side of the square images.
    pub size: usize,
    /// Class index per image.
    pub labels: Vec<usize>,
    /// Class names, indexed by label.
    pub class_names: Vec<String>,
    /// Source file per image, when images came from files.
    pub file_names: Option<Vec<String>>,
}

/// Images mapped to others a chunk at a time when they are on disk: 2,048
/// images of 64x64 are 32 MiB.
const DISK_CHUNK: usize = 2048;

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Whether the pixels are on disk.
    pub fn on_disk(&self) -> bool {
        matches!(self.pixels, Pixels::Disk(_))
    }

    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> Result<Vec<f32>, DataError> {
        self.gather(&[i])
    }

    /// Every image's pixels, one after the other (read whole from disk
    /// where they are there).
    pub fn all_pixels(&self) -> Result<std::borrow::Cow<'_, [f32]>, DataError> {
        match &self.pixels {
            Pixels::Memory(v) => Ok(std::borrow::Cow::Borrowed(v)),
            Pixels::Disk(_) => Ok(std::borrow::Cow::Owned(
                self.gather(&(0..self.len()).collect::<Vec<_>>())?,
            )),
        }
    }

    /// The pixels of the images at `indices`, one after the other: a batch.
    pub fn gather(&self, indices: &[usize]) -> Result<Vec<f32>, DataError> {
        let per = self.size * self.size;
        let mut pixels = Vec::with_capacity(indices.len() * per);
        match &self.pixels {
            Pixels::Memory(v) => {
                for &i in indices {
                    pixels.extend_from_slice(&v[i * per..(i + 1) * per]);
                }
            }
            Pixels::Disk(rows) => rows.read(indices, &mut pixels)?,
        }
        Ok(pixels)
    }

    /// The images at `indices`, in that order (on disk: the same file).
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let pixels = match &self.pixels {
            Pixels::Memory(_) => {
                Pixels::Memory(self.gather(indices).expect("in-memory reads cannot fail"))
            }
            Pixels::Disk(rows) => Pixels::Disk(rows.subset(indices)),
        };
        Dataset {
            pixels,
            size: self.size,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            class_names: self.class_names.clone(),
            file_names: self
                .file_names
                .as_ref()
                .map(|f| indices.iter().map(|&i| f[i].clone()).collect()),
        }
    }

    /// The first `limit` images (all when `limit == 0`).
    pub fn take(self, limit: usize) -> Dataset {
        if limit == 0 || limit >= self.len() {
            return self;
        }
        self.subset(&(0..limit).collect::<Vec<_>>())
    }

    /// Place every image onto a `canvas x canvas` square, rotated and
    /// mirrored at random when `augment` is set, resampled by `resampling`.
    /// Image `i` gets `augment::draw(seed, i)` wherever its pixels are.
    pub fn augmented(
        &self,
        canvas: usize,
        augment: bool,
        seed: u64,
        resampling: Resampling,
    ) -> Result<Dataset, DataError> {
        let transform = |i| augment::draw_or_upright(augment, seed, i);
        self.placed(canvas, resampling, transform)
    }

    /// Every image under the same transform `d` (mirror, then rotate
    /// counter-clockwise about the centre), placed on `canvas x canvas`.
    pub fn transformed(
        &self,
        canvas: usize,
        d: augment::Draw,
        resampling: Resampling,
    ) -> Result<Dataset, DataError> {
        self.placed(canvas, resampling, |_| d)
    }

    /// Image `i` placed on the canvas under `draw_for(i)`; on disk, a chunk
    /// at a time into a new file.
    fn placed(
        &self,
        canvas: usize,
        resampling: Resampling,
        draw_for: impl Fn(usize) -> augment::Draw + Sync,
    ) -> Result<Dataset, DataError> {
        let src = self.size;
        let pixels = match &self.pixels {
            Pixels::Memory(v) => {
                Pixels::Memory(augment::place(v, (src, canvas), resampling, draw_for))
            }
            Pixels::Disk(_) => {
                let mut out = disk::PixelFileWriter::new(canvas * canvas)?;
                for start in (0..self.len()).step_by(DISK_CHUNK) {
                    let idx: Vec<usize> = (start..(start + DISK_CHUNK).min(self.len())).collect();
                    let chunk = self.gather(&idx)?;
                    let placed =
                        augment::place(&chunk, (src, canvas), resampling, |k| draw_for(start + k));
                    for image in placed.chunks(canvas * canvas) {
                        out.push(image)?;
                    }
                }
                Pixels::Disk(out.finish()?)
            }
        };
        Ok(Dataset {
            pixels,
            size: canvas,
            labels: self.labels.clone(),
            class_names: self.class_names.clone(),
            file_names: self.file_names.clone(),
        })
    }

    /// Images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.class_names.len()];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }
}

/// Train, validation and test sets, ready for a model.
#[derive(Clone, Debug)]
pub struct Splits {
    /// Training images.
    pub train: Dataset,
    /// Held-out part of the training images.
    pub validation: Dataset,
    /// Test images.
    pub test: Dataset,
}

/// Seeded stratified split: `fraction` of each class goes to the second set.
pub fn stratified_split(data: &Dataset, fraction: f64, seed: u64) -> (Dataset, Dataset) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for class in 0..data.class_names.len() {
        let mut idx: Vec<usize> = (0..data.len())
            .filter(|&i| data.labels[i] == class)
            .collect();
        idx.shuffle(&mut rng);
        let k = (idx.len() as f64 * fraction).round() as usize;
        second.extend_from_slice(&idx[..k]);
        first.extend_from_slice(&idx[k..]);
    }
    first.sort_unstable();
    second.sort_unstable();
    (data.subset(&first), data.subset(&second))
}

/// The IDX file `name` under `dir`, plain or with `.gz`.
fn idx_path(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(DataError::Missing {
        what: name.to_string(),
        path: dir.to_path_buf(),
        hint: "run scripts/fetch_data.sh first".into(),
    })
}

/// Load an IDX image/label pair as a [`Dataset`].
pub fn load_idx_pair(
    images: &Path,
    labels: &Path,
    class_names: Vec<String>,
) -> Result<Dataset, DataError> {
    let (pixels, n, rows, cols) = idx::parse_images(&idx::read_maybe_gz(images)?, images)?;
    let lab = idx::parse_labels(&idx::read_maybe_gz(labels)?, labels)?;
    if rows != cols || rows == 0 {
        return Err(DataError::format(
            images,
            format!("images are {rows}x{cols}, expected square"),
        ));
    }
    if lab.len() != n {
        return Err(DataError::format(
            labels,
            format!(
                "{} labels but {} has {n} images",
                lab.len(),
                images.display()
            ),
        ));
    }
    if let Some(&bad) = lab.iter().find(|&&l| l as usize >= class_names.len()) {
        return Err(DataError::format(
            labels,
            format!("label {bad} out of range 0..{}", class_names.len()),
        ));
    }
    Ok(Dataset {
        pixels: pixels
            .iter()
            .map(|&p| p as f32 / 255.0)
            .collect::<Vec<_>>()
            .into(),
        size: rows,
        labels: lab.into_iter().map(usize::from).collect(),
        class_names,
        file_names: None,
    })
}

fn load_idx_set(dir: &Path, names: &[&str]) -> Result<(Dataset, Dataset), DataError> {
    let classes: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let train = load_idx_pair(
        &idx_path(dir, "train-images-idx3-ubyte")?,
        &idx_path(dir, "train-labels-idx1-ubyte")?,
        classes.clone(),
    )?;
    let test = load_idx_pair(
        &idx_path(dir, "t10k-images-idx3-ubyte")?,
        &idx_path(dir, "t10k-labels-idx1-ubyte")?,
        classes,
    )?;
    Ok((train, test))
}

const FASHION: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
];

/// Load the raw (unaugmented, uncanvassed) train and test sets.
pub fn load_raw(config: &DataConfig) -> Result<(Dataset, Dataset), DataError> {
    let root = &config.root;
    match config.dataset {
        DatasetKind::Mnist => {
            let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
            let names: Vec<&str> = digits.iter().map(|s| s.as_str()).collect();
            load_idx_set(&root.join("mnist"), &names)
        }
        DatasetKind::FashionMnist => load_idx_set(&root.join("fashion-mnist"), &FASHION),
        DatasetKind::Plankton => {
            let all = plankton::load_plankton(&root.join("plankton"), config.image_size)?;
            Ok(stratified_split(&all, 0.2, config.seed))
        }
        DatasetKind::Folder => {
            let all = folder::load_image_folder(root, config.image_size)?;
            Ok(stratified_split(&all, 0.2, config.seed))
        }
        DatasetKind::Synthetic => {
            // shapes a little smaller than the canvas, so rotations keep them whole
            let side = config.image_size * 7 / 8;
            Ok((
                synthetic::shapes(2000, side, config.seed),
                synthetic::shapes(500, side, config.seed + 1),
            ))
        }
    }
}

/// The augmentation seed of the training images: image `i` of the training
/// set (before the validation split) was transformed by
/// `augment::draw(train_augment_seed, i)`.
pub fn train_augment_seed(config: &DataConfig) -> u64 {
    config.seed.wrapping_mul(2)
}

/// The augmentation seed of the test images: test image `i` was
/// transformed by `augment::draw(test_augment_seed, i)`.
pub fn test_augment_seed(config: &DataConfig) -> u64 {
    config.seed.wrapping_mul(2).wrapping_add(1)
}

/// The test split alone, exactly as [`load_splits`] makes it, without
/// augmenting (or keeping) the training images: what reading back the
/// pictures of an embedded test split needs.
pub fn load_test_split(config: &DataConfig) -> Result<Dataset, DataError> {
    let (_, test) = load_raw(config)?;
    let test = test.take(config.test_limit);
    test.augmented(
        config.image_size,
        config.augment,
        test_augment_seed(config),
        config.resampling,
    )
}

/// Load, limit, augment and split as the config says. The training and
/// test sets are augmented with different seeds derived from `seed`.
pub fn load_splits(config: &DataConfig) -> Result<Splits, DataError> {
    let (train, test) = load_raw(config)?;
    let train = train.take(config.train_limit);
    let test = test.take(config.test_limit);
    let s = config.image_size;
    let train = train.augmented(
        s,
        config.augment,
        train_augment_seed(config),
        config.resampling,
    )?;
    let test = test.augmented(
        s,
        config.augment,
        test_augment_seed(config),
        config.resampling,
    )?;
    let (train, validation) = stratified_split(&train, config.validation_fraction, config.seed);
    Ok(Splits {
        train,
        validation,
        test,
    })
}
