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

/// The header of a `[rows, cols]` array (`[rows]` for a vector) of `descr`.
fn header(rows: u64, cols: usize, descr: &str, vector: bool) -> Vec<u8> {
    let shape = if vector {
        format!("({rows},)")
    } else {
        format!("({rows}, {cols})")
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    let len = HEADER_BYTES as usize - 10;
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(HEADER_BYTES as usize - 1, b' ');
    out.push(b'\n');
    out
}

/// A `.npy` being written one batch of rows at a time: float32 rows of
/// features, or an int64 vector of labels.
pub struct NpyRows {
    file: BufWriter<File>,
    path: PathBuf,
    cols: usize,
    rows: u64,
    /// NumPy's type: `<f4` or `<i8`.
    descr: &'static str,
    /// One value per row, shape `(rows,)`.
    vector: bool,
}

impl NpyRows {
    /// Start a new float32 file of `cols` columns at `path` (the temporary name).
    pub fn create(path: &Path, cols: usize) -> Result<Self> {
        Self::start(path, cols, "<f4", false)
    }

    /// Start a new int64 vector (labels) at `path`.
    pub fn create_labels(path: &Path) -> Result<Self> {
        Self::start(path, 1, "<i8", true)
    }

    fn start(path: &Path, cols: usize, descr: &'static str, vector: bool) -> Result<Self> {
        let file =
            File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
        let mut w = NpyRows {
            file: BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            cols,
            rows: 0,
            descr,
            vector,
        };
        w.file
            .write_all(&header(0, cols, descr, vector))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(w)
    }

    /// Continue an int64 vector that holds at least `rows` values.
    pub fn reopen_labels(path: &Path, rows: u64) -> Result<Self> {
        let mut w = Self::reopen_with(path, 1, rows, 8)?;
        (w.descr, w.vector) = ("<i8", true);
        Ok(w)
    }

    /// Continue a float32 file that holds at least `rows` complete rows of
    /// `cols` columns: anything after them (a row cut by a kill) is dropped.
    pub fn reopen(path: &Path, cols: usize, rows: u64) -> Result<Self> {
        Self::reopen_with(path, cols, rows, 4)
    }

    fn reopen_with(path: &Path, cols: usize, rows: u64, item: u64) -> Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let end = HEADER_BYTES + rows * cols as u64 * item;
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
            descr: "<f4",
            vector: false,
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

    /// Append labels to an int64 vector.
    pub fn append_labels(&mut self, labels: &[i64]) -> Result<()> {
        debug_assert_eq!(self.descr, "<i8");
        let mut bytes = Vec::with_capacity(labels.len() * 8);
        for v in labels {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        self.file
            .write_all(&bytes)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.rows += labels.len() as u64;
        Ok(())
    }

    /// Append rows (`values.len()` a multiple of the columns).
    pub fn append(&mut self, values: &[f32]) -> Result<()> {
        debug_assert_eq!(self.descr, "<f4");
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

    /// Hand what is buffered to the operating system, without waiting
    /// for the disk ([`Self::handle`] waits for it from elsewhere).
    pub fn write_buffered(&mut self) -> Result<()> {
        self.file
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// A second handle on the file: syncing it waits for every byte written
    /// through this one.
    pub fn handle(&self) -> Result<File> {
        self.file
            .get_ref()
            .try_clone()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Write the final row count into the header and close the file.
    pub fn finish(mut self) -> Result<()> {
        let header = header(self.rows, self.cols, self.descr, self.vector);
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
        let labels = dir.path().join("l.npy");
        let mut w = NpyRows::create_labels(&labels).unwrap();
        w.append_labels(&[3, 1]).unwrap();
        w.finish().unwrap();
        let mut w = NpyRows::reopen_labels(&labels, 1).unwrap();
        w.append_labels(&[7]).unwrap();
        w.finish().unwrap();
        let l: ndarray::Array1<i64> = ndarray_npy::read_npy(&labels).unwrap();
        assert_eq!(l.to_vec(), vec![3, 7]);
    }

    #[test]
    fn the_header_fits_the_largest_shapes() {
        assert_eq!(
            header(u64::MAX, usize::MAX, "<f4", false).len(),
            HEADER_BYTES as usize
        );
    }
}
