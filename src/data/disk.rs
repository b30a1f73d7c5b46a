//! Pixels kept on disk instead of in memory, so that a folder of 200,000
//! images trains in the memory of a few batches.
//!
//! Prepared images are appended, as `f32` in native byte order, to an
//! unnamed file in the temporary folder (`TMPDIR`, else `/tmp`): the
//! operating system removes it when the last handle closes, even after a
//! kill. A data set then holds the file and, per image, the row of the
//! file it is; subsets and splits only choose rows. Reads go through the
//! page cache, so a collection that fits in free memory is read from RAM
//! after the first epoch without counting against the process.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use super::DataError;

/// An unnamed file of prepared images, `per_image` values each.
#[derive(Debug)]
pub struct PixelFile {
    file: File,
    per_image: usize,
    len: usize,
}

/// Rows of a [`PixelFile`]: image `i` of a data set is row `rows[i]`.
#[derive(Clone, Debug)]
pub struct DiskRows {
    /// The file, shared by every subset made from it.
    pub file: Arc<PixelFile>,
    /// The file row of each image.
    pub rows: Vec<usize>,
}

/// Where the files go: named in errors, so that a full disk says which.
fn folder() -> PathBuf {
    std::env::temp_dir()
}

fn io_error(error: std::io::Error) -> DataError {
    DataError::Format {
        path: folder(),
        message: format!(
            "cannot write or read the image cache there: {error}; set TMPDIR to a folder on a disk with room for 4 bytes per pixel of every image"
        ),
    }
}

/// Appends images to a new [`PixelFile`], in order.
pub struct PixelFileWriter {
    out: BufWriter<File>,
    per_image: usize,
    len: usize,
}

impl PixelFileWriter {
    /// A new, empty file for images of `per_image` values.
    pub fn new(per_image: usize) -> Result<Self, DataError> {
        let file = tempfile::tempfile_in(folder()).map_err(io_error)?;
        Ok(PixelFileWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            per_image,
            len: 0,
        })
    }

    /// Append one image.
    pub fn push(&mut self, image: &[f32]) -> Result<(), DataError> {
        assert_eq!(image.len(), self.per_image, "image of the wrong size");
        self.out
            .write_all(bytemuck::cast_slice(image))
            .map_err(io_error)?;
        self.len += 1;
        Ok(())
    }

    /// The finished file; its rows are the images in the order pushed.
    pub fn finish(self) -> Result<DiskRows, DataError> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| io_error(e.into_error()))?;
        let len = self.len;
        Ok(DiskRows {
            file: Arc::new(PixelFile {
                file,
                per_image: self.per_image,
                len,
            }),
            rows: (0..len).collect(),
        })
    }
}

impl DiskRows {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The images at `indices` of this set, in that order, appended to
    /// `out`. Consecutive file rows are read in one call.
    pub fn read(&self, indices: &[usize], out: &mut Vec<f32>) -> Result<(), DataError> {
        let per = self.file.per_image;
        let mut k = 0;
        while k < indices.len() {
            let first = self.rows[indices[k]];
            let mut run = 1;
            while k + run < indices.len() && self.rows[indices[k + run]] == first + run {
                run += 1;
            }
            debug_assert!(first + run <= self.file.len);
            let start = out.len();
            out.resize(start + run * per, 0.0);
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut out[start..]);
            self.file
                .file
                .read_exact_at(bytes, (first * per * 4) as u64)
                .map_err(io_error)?;
            k += run;
        }
        Ok(())
    }

    /// The same file, images `indices` of this set.
    pub fn subset(&self, indices: &[usize]) -> DiskRows {
        DiskRows {
            file: Arc::clone(&self.file),
            rows: indices.iter().map(|&i| self.rows[i]).collect(),
        }
    }
}
