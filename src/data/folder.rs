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

/// File extensions read as images, in any letter case.
const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Largest width or height decoded; a file that declares more is refused
/// before any pixel is allocated (a few bytes can declare gigabytes).
pub const MAX_SIDE: u32 = 16384;

/// Largest decoding buffer in bytes.
const MAX_ALLOC: u64 = 512 << 20;

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Decode one image file into `size x size` pixels in [0, 1], background 0.
pub fn load_image(path: &Path, size: usize) -> Result<Vec<f32>, DataError> {
    let bytes = std::fs::read(path).map_err(|error| DataError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| DataError::format(path, format!("cannot read image: {e}")))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| match e {
            image::ImageError::Limits(_) => DataError::format(
                path,
                format!(
                    "image exceeds the decoding limit ({MAX_SIDE}x{MAX_SIDE} pixels, {} MiB): {e}",
                    MAX_ALLOC >> 20
                ),
            ),
            e => DataError::format(path, format!("cannot decode image: {e}")),
        })?
        .to_luma8();
    if img.width() == 0 || img.height() == 0 {
        return Err(DataError::format(path, "image has no pixels"));
    }
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

/// The name of a file as written into `*_files.txt`, one per line: refused
/// when it is not UTF-8 or holds a line break or other control character,
/// since it could not be read back line by line as it is.
pub fn listed_name(path: &Path) -> Result<String, DataError> {
    let Some(name) = path.to_str() else {
        return Err(DataError::format(
            path,
            "file name is not valid UTF-8; rename it, or pass --skip-bad to leave it out",
        ));
    };
    if name.chars().any(char::is_control) {
        return Err(DataError::format(
            // shown escaped, so that the message stays one line
            Path::new(&name.escape_default().to_string()),
            "file name holds a line break or control character; rename it, or pass --skip-bad to leave it out",
        ));
    }
    Ok(name.to_string())
}

/// Every image file directly in `dir`, sorted by name.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|error| DataError::Io {
        path: dir.to_path_buf(),
        error,
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

/// A plain folder of PNG/JPEG images (no labels: every label is 0), and
/// the files left out with why. With `skip_bad`, a file that cannot be
/// read, decoded or named is left out; without, the first one stops the load.
pub fn load_folder(
    dir: &Path,
    size: usize,
    skip_bad: bool,
) -> Result<(Dataset, Vec<DataError>), DataError> {
    let files = image_files(dir)?;
    if files.is_empty() {
        return Err(DataError::Missing {
            what: "PNG or JPEG images".into(),
            path: dir.to_path_buf(),
            hint: "point --images at a folder of .png/.jpg/.jpeg files".into(),
        });
    }
    let loaded: Vec<Result<(String, Vec<f32>), DataError>> = files
        .par_iter()
        .map(|f| Ok((listed_name(f)?, load_image(f, size)?)))
        .collect();
    let (mut images, mut names, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for item in loaded {
        match item {
            Ok((name, pixels)) => {
                names.push(name);
                images.extend(pixels);
            }
            Err(e) if skip_bad => skipped.push(e),
            Err(e) => return Err(e),
        }
    }
    if names.is_empty() {
        return Err(DataError::Missing {
            what: "readable images".into(),
            path: dir.to_path_buf(),
            hint: format!("all {} image files were bad", files.len()),
        });
    }
    let data = Dataset {
        images,
        size,
        labels: vec![0; names.len()],
        class_names: vec!["unlabelled".into()],
        file_names: Some(names),
    };
    Ok((data, skipped))
}
