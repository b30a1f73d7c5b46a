//! `.npy` files written row by row (NumPy's format 1.0, little-endian
//! float32, C order), for outputs too large to hold in memory. The header
//! has a fixed size, so the row count is rewritten in place when the file
//! is finished; until then the file lives under a temporary name (see
//! [`crate::atomic`]). Arrays held in memory are written by `ndarray-npy`.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Bytes of the header: magic, version, length, the padded dictionary.
pub const HEADER_BYTES: u64 = 128;

/// The header of a `[rows, cols]` float32 array.
fn header(rows: u64, cols: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    let len = HEADER_BYTES as usize - 10;
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(HEADER_BYTES as usize - 1, b' ');
    out.push(b'\n');
    out
}

/// A float32 `.npy` being written one batch of rows at a time.
pub struct NpyRows {
    file: BufWriter<File>,
    path: PathBuf,
    cols: usize,
    rows: u64,
}

impl NpyRows {
    /// Start a new file of `cols` columns at `path` (the temporary name).
    pub fn create(path: &Path, cols: usize) -> Result<Self> {
        let file =
            File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
        let mut w = NpyRows {
            file: BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            cols,
            rows: 0,
        };
        w.file
            .write_all(&header(0, cols))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(w)
    }

    /// Continue a file that holds at least `rows` complete rows of `cols`
    /// columns: anything after them (a row cut by a kill) is dropped.
    pub fn reopen(path: &Path, cols: usize, rows: u64) -> Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let end = HEADER_BYTES + rows * cols as u64 * 4;
        let len = file.metadata()?.len();
        if len < end {
            bail!(
                "{} holds {len} bytes, fewer than its {rows} recorded rows need",
                path.display()
            );
        }
        file.set_len(end)
            .and_then(|_| file.seek(SeekFrom::Start(end)))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(NpyRows {
            file: BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            cols,
            rows,
        })
    }

    /// Columns per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Append rows (`values.len()` a multiple of the columns).
    pub fn append(&mut self, values: &[f32]) -> Result<()> {
        debug_assert_eq!(values.len() % self.cols.max(1), 0);
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        self.file
            .write_all(&bytes)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.rows += (values.len() / self.cols.max(1)) as u64;
        Ok(())
    }

    /// Write what is buffered to the disk (a point a resume can continue from).
    pub fn flush(&mut self) -> Result<()> {
        self.file
            .flush()
            .and_then(|_| self.file.get_ref().sync_data())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Write the final row count into the header and close the file.
    pub fn finish(mut self) -> Result<()> {
        let header = header(self.rows, self.cols);
        self.file
            .flush()
            .and_then(|_| self.file.seek(SeekFrom::Start(0)))
            .and_then(|_| self.file.write_all(&header))
            .and_then(|_| self.file.flush())
            .and_then(|_| self.file.get_ref().sync_all())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_written_in_batches_read_back_with_ndarray_npy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let mut w = NpyRows::create(&path, 3).unwrap();
        w.append(&[1.0, 2.0, 3.0]).unwrap();
        w.append(&[4.0, 5.0, 6.0, 7.0, 8.0, 9.5]).unwrap();
        w.finish().unwrap();
        let a: ndarray::Array2<f32> = ndarray_npy::read_npy(&path).unwrap();
        assert_eq!(a.shape(), &[3, 3]);
        assert_eq!(a[[2, 2]], 9.5);
        // a reopened file drops a cut row and continues
        let mut w = NpyRows::reopen(&path, 3, 2).unwrap();
        w.append(&[0.5, 0.25, 0.125]).unwrap();
        w.finish().unwrap();
        let a: ndarray::Array2<f32> = ndarray_npy::read_npy(&path).unwrap();
        assert_eq!(a.row(2).to_vec(), vec![0.5, 0.25, 0.125]);
    }

    #[test]
    fn the_header_fits_the_largest_shapes() {
        assert_eq!(header(u64::MAX, usize::MAX).len(), HEADER_BYTES as usize);
    }
}
