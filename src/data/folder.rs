//! Image files: decode (PNG or JPEG, by the `image` crate), convert to
//! grayscale, pad to a square with the image's background colour (the mean
//! of its border pixels), resize to the model's size, and make the
//! background dark (images with a bright border are inverted), since the
//! models rotate images on a zero background.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::GrayImage;
use rayon::prelude::*;

use super::{DataError, Dataset};

const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "PNG"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| {
            EXTENSIONS.contains(&e)
                || e.eq_ignore_ascii_case("jpg")
                || e.eq_ignore_ascii_case("jpeg")
        })
        .unwrap_or(false)
}

/// Decode one image file into `size x size` pixels in [0, 1], background 0.
pub fn load_image(path: &Path, size: usize) -> Result<Vec<f32>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let img = image::load_from_memory(&bytes)
        .map_err(|e| DataError::format(path, format!("cannot decode image: {e}")))?
        .to_luma8();
    Ok(square_and_resize(&img, size))
}

/// Pad to a square with the border's mean colour, resize, darken background.
pub fn square_and_resize(img: &GrayImage, size: usize) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let border: Vec<f32> = (0..w)
        .flat_map(|x| [img.get_pixel(x, 0)[0], img.get_pixel(x, h - 1)[0]])
        .chain((0..h).flat_map(|y| [img.get_pixel(0, y)[0], img.get_pixel(w - 1, y)[0]]))
        .map(|p| p as f32)
        .collect();
    let background = (border.iter().sum::<f32>() / border.len() as f32).round() as u8;
    let side = w.max(h);
    let mut canvas = GrayImage::from_pixel(side, side, image::Luma([background]));
    image::imageops::overlay(
        &mut canvas,
        img,
        ((side - w) / 2) as i64,
        ((side - h) / 2) as i64,
    );
    let resized = image::imageops::resize(&canvas, size as u32, size as u32, FilterType::Triangle);
    let invert = background > 127;
    resized
        .pixels()
        .map(|p| {
            let v = p[0] as f32 / 255.0;
            if invert {
                1.0 - v
            } else {
                v
            }
        })
        .collect()
}

/// Every image file directly in `dir`, sorted by name.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image(p))
        .collect();
    files.sort();
    Ok(files)
}

/// Decode many files in parallel; the first failure is returned.
pub fn load_files(files: &[PathBuf], size: usize) -> Result<Vec<f32>, DataError> {
    let images: Result<Vec<Vec<f32>>, DataError> =
        files.par_iter().map(|f| load_image(f, size)).collect();
    Ok(images?.concat())
}

/// A plain folder of PNG/JPEG images (no labels: every label is 0).
pub fn load_folder(dir: &Path, size: usize) -> Result<Dataset, DataError> {
    let files = image_files(dir)?;
    if files.is_empty() {
        return Err(DataError::Missing {
            what: "PNG or JPEG images".into(),
            path: dir.to_path_buf(),
            hint: "point --images at a folder of .png/.jpg files".into(),
        });
    }
    let images = load_files(&files, size)?;
    Ok(Dataset {
        images,
        size,
        labels: vec![0; files.len()],
        class_names: vec!["unlabelled".into()],
        file_names: Some(files.iter().map(|f| f.display().to_string()).collect()),
    })
}
