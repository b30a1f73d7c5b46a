//! The NDSB 2015 plankton set in the competition's layout:
//! `<root>/train/<class name>/<id>.jpg` (unzip the competition's
//! `train.zip` into `data/plankton`). Images are grayscale, padded to a
//! square with their background colour and resized (paper section 5.2);
//! labels are the class folders in sorted order.

use std::path::Path;

use super::folder::{image_files, listed_name, load_files};
use super::{DataError, Dataset};

/// Load every labelled image under `root/train`.
pub fn load_plankton(root: &Path, size: usize) -> Result<Dataset, DataError> {
    let train = root.join("train");
    if !train.is_dir() {
        return Err(DataError::Missing {
            what: "plankton train/ folder".into(),
            path: train,
            hint:
                "unzip the NDSB 2015 competition's train.zip into data/plankton (see docs/data.md)"
                    .into(),
        });
    }
    let read = std::fs::read_dir(&train).map_err(|error| DataError::Io {
        path: train.clone(),
        error,
    })?;
    let mut classes: Vec<String> = read
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let class_files = image_files(&train.join(class))?;
        labels.extend(std::iter::repeat_n(label, class_files.len()));
        files.extend(class_files);
    }
    if files.is_empty() {
        return Err(DataError::Missing {
            what: "plankton images".into(),
            path: train,
            hint: "expected train/<class name>/<id>.jpg".into(),
        });
    }
    let names = files
        .iter()
        .map(|f| listed_name(f))
        .collect::<Result<Vec<_>, _>>()?;
    let images = load_files(&files, size)?;
    Ok(Dataset {
        pixels: images.into(),
        size,
        labels,
        class_names: classes,
        file_names: Some(names),
    })
}
