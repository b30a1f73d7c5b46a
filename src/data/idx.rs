//! IDX files (MNIST's format), plain or gzipped. Every check returns an
//! error naming the file and what is wrong; nothing here panics on bad bytes.

use std::io::Read;
use std::path::Path;

use super::DataError;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Read a whole file, gunzipping it when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|error| DataError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::format(path, format!("corrupt gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn header(bytes: &[u8], path: &Path, magic: u32, dims: usize) -> Result<Vec<usize>, DataError> {
    let need = 4 + 4 * dims;
    if bytes.is_empty() {
        return Err(DataError::format(path, "file is empty"));
    }
    if bytes.len() < need {
        return Err(DataError::format(
            path,
            format!("truncated header: {} bytes, need {need}", bytes.len()),
        ));
    }
    let word = |k: usize| {
        u32::from_be_bytes([
            bytes[4 * k],
            bytes[4 * k + 1],
            bytes[4 * k + 2],
            bytes[4 * k + 3],
        ])
    };
    let found = word(0);
    if found != magic {
        return Err(DataError::format(
            path,
            format!("wrong magic number {found:#010x}, expected {magic:#010x}"),
        ));
    }
    let shape: Vec<usize> = (1..=dims).map(|k| word(k) as usize).collect();
    let body = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::format(path, "dimensions overflow"))?;
    let have = bytes.len() - need;
    if have != body {
        return Err(DataError::format(
            path,
            format!(
                "{} data: header says {shape:?} = {body} bytes, file has {have}",
                if have < body { "truncated" } else { "trailing" }
            ),
        ));
    }
    Ok(shape)
}

/// Images `n x rows x cols` as bytes, checked against the header.
pub fn parse_images(
    bytes: &[u8],
    path: &Path,
) -> Result<(Vec<u8>, usize, usize, usize), DataError> {
    let shape = header(bytes, path, IMAGES_MAGIC, 3)?;
    Ok((bytes[16..].to_vec(), shape[0], shape[1], shape[2]))
}

/// Labels as bytes, checked against the header.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    header(bytes, path, LABELS_MAGIC, 1)?;
    Ok(bytes[8..].to_vec())
}
