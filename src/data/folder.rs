//! Image files: decode (PNG or JPEG, by the `image` crate), convert to
//! grayscale, pad to a square with the image's background colour (the mean
//! of its border pixels), resize, and make the background dark (images with
//! a bright border are inverted), since the models rotate images on a zero
//! background. Then place them as the model's own data were placed (see
//! [`Canvas`]): MNIST-style digits of 28x28 are centred on the larger
//! canvas without scaling, other data sets are resized to the canvas.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::GrayImage;
use rayon::prelude::*;

use super::{DataError, Dataset};
use crate::config::DataConfig;
use crate::group::action::rotate_bilinear;

/// How an image file becomes a model input: resized (after padding to a
/// square) to `content x content` pixels, then centred on a
/// `size x size` canvas. For MNIST and Fashion-MNIST runs `content` is 28
/// (the digits are centred on the canvas unscaled, as in training); for
/// the other data sets it is the canvas size. An image already of the
/// canvas size is taken as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Canvas {
    /// Side of the model's input.
    pub size: usize,
    /// Side an image is resized to before it is centred on the canvas.
    pub content: usize,
}

impl Canvas {
    /// Resize every image to `size x size`.
    pub fn square(size: usize) -> Self {
        Canvas {
            size,
            content: size,
        }
    }

    /// The canvas a run's images were prepared on.
    pub fn of(config: &DataConfig) -> Self {
        match config.dataset.source_size() {
            Some(source) if source < config.image_size => Canvas {
                size: config.image_size,
                content: source,
            },
            _ => Canvas::square(config.image_size),
        }
    }
}

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
    load_image_onto(path, Canvas::square(size))
}

/// The bytes of a regular file; anything else is refused, naming what it
/// is. The file is opened without blocking (an ordinary open of a FIFO
/// waits for a writer forever) and checked on the open handle, so that one
/// path lookup serves; where the open fails, the path is examined to say
/// why (a dangling link, a loop, a socket).
fn read_regular(path: &Path) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |error| DataError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(error) => {
            check_regular(path)?;
            return Err(io(error));
        }
    };
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize + 1);
    file.read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

/// Refuse what is not a regular file, naming what it is (following
/// symbolic links, and saying where one leads nowhere or in a loop).
fn check_regular(path: &Path) -> Result<(), DataError> {
    let link = std::fs::symlink_metadata(path).map_err(|error| DataError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let meta = if link.file_type().is_symlink() {
        std::fs::metadata(path).map_err(|e| {
            let why = if e.raw_os_error() == Some(libc::ELOOP) {
                "symbolic link loop".to_string()
            } else if e.kind() == std::io::ErrorKind::NotFound {
                "dangling symbolic link (its target does not exist)".to_string()
            } else {
                format!("cannot follow the symbolic link: {e}")
            };
            DataError::format(path, why)
        })?
    } else {
        link
    };
    if meta.is_file() {
        return Ok(());
    }
    Err(not_regular(path, &meta))
}

/// The error for `path`, which `meta` says is not a regular file.
fn not_regular(path: &Path, meta: &std::fs::Metadata) -> DataError {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    let what = if ft.is_dir() {
        "a folder"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    };
    DataError::format(path, format!("{what}, not an image file"))
}

/// Decode one image file and place it on `canvas` (see [`Canvas`]).
pub fn load_image_onto(path: &Path, canvas: Canvas) -> Result<Vec<f32>, DataError> {
    let bytes = read_regular(path)?;
    if bytes.is_empty() {
        return Err(DataError::format(
            path,
            "empty file (0 bytes), not an image",
        ));
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| DataError::format(path, format!("cannot read image: {e}")))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => DataError::format(
            path,
            format!(
                "image exceeds the decoding limit ({MAX_SIDE}x{MAX_SIDE} pixels, {} MiB): {e}",
                MAX_ALLOC >> 20
            ),
        ),
        e => DataError::format(path, format!("cannot decode image: {e}")),
    })?;
    let img = grey_levels(img);
    if img.width() == 0 || img.height() == 0 {
        return Err(DataError::format(path, "image has no pixels"));
    }
    let (w, h) = img.dimensions();
    if canvas.content == canvas.size || (w as usize, h as usize) == (canvas.size, canvas.size) {
        return Ok(square_and_resize(&img, canvas.size));
    }
    let content = square_and_resize(&img, canvas.content);
    Ok(centre_on(&content, canvas))
}

/// A `content x content` image centred on the `size x size` canvas: the
/// pixels copied where the margin is whole (the same values the bilinear
/// placement gives there, at a fraction of its cost), interpolated where
/// it is half a pixel.
fn centre_on(content: &[f32], canvas: Canvas) -> Vec<f32> {
    let (c, s) = (canvas.content, canvas.size);
    if s < c || (s - c) % 2 == 1 {
        return rotate_bilinear(content, c, c, 0.0, false, s, s);
    }
    let margin = (s - c) / 2;
    let mut out = vec![0.0f32; s * s];
    for (y, row) in content.chunks(c).enumerate() {
        out[(y + margin) * s + margin..][..c].copy_from_slice(row);
    }
    out
}

/// An image's grey levels in 0..=255, the same for every pixel format:
/// each sample scaled to [0, 1] (8 and 16 bits alike), colour read as its
/// Rec. 709 luma (0.2126 R + 0.7152 G + 0.0722 B), a transparent pixel
/// laid over white (grey * alpha + 1 - alpha), then rounded to the nearest
/// of 256 levels. `scripts/prepare.py` does the same in NumPy. An 8-bit
/// grey image is its own levels, taken as it is.
pub fn grey_levels(img: image::DynamicImage) -> GrayImage {
    match img {
        image::DynamicImage::ImageLuma8(grey) => grey,
        other => converted_grey_levels(&other),
    }
}

/// [`grey_levels`] of any pixel format, by the formula.
fn converted_grey_levels(img: &image::DynamicImage) -> GrayImage {
    let colour = img.color().has_color();
    let rgba = img.to_rgba32f();
    let mut out = GrayImage::new(img.width(), img.height());
    for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
        let [r, g, b, a] = p.0.map(f64::from);
        let grey = if colour {
            0.2126 * r + 0.7152 * g + 0.0722 * b
        } else {
            r
        };
        let v = grey * a + (1.0 - a);
        o.0[0] = (v * 255.0 + 0.5).floor().clamp(0.0, 255.0) as u8;
    }
    out
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
    let resized = if side == size as u32 {
        canvas
    } else {
        image::imageops::resize(&canvas, size as u32, size as u32, FilterType::Triangle)
    };
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
            "file name is not valid UTF-8; rename it",
        ));
    };
    if name.chars().any(char::is_control) {
        return Err(DataError::format(
            // shown escaped, so that the message stays one line
            Path::new(&name.escape_default().to_string()),
            "file name holds a line break or control character; rename it",
        ));
    }
    Ok(name.to_string())
}

/// Every image file directly in `dir`, sorted by name: entries with an
/// image extension that are not folders. Symbolic links that lead nowhere
/// and special files are listed too, so that loading reports them.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|error| DataError::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_image(p) && !p.is_dir())
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

/// Every image under `root` (at any depth, as [`ImageWalk`] lists them),
/// each prepared as `eqae embed --images` prepares it for a run of this
/// canvas (resized to `size x size`): the data set of `dataset =
/// "folder"`. Top-level class folders, where every image has one, are
/// the labels; else every label is 0 (class `unlabelled`). The first file
/// that cannot be listed or read stops the load, with its name. The
/// prepared images are kept on disk ([`super::disk`]), not in memory.
pub fn load_image_folder(root: &Path, size: usize) -> Result<Dataset, DataError> {
    let mut names = Vec::new();
    let summary = FolderSummary::walk(root, false, |item| {
        if let Ok(rel) = item {
            names.push(rel.clone());
        }
        Ok(())
    })
    .map_err(|e| match e {
        DataError::Io { path, error } if error.kind() == std::io::ErrorKind::NotFound => {
            DataError::Missing {
                what: "the image folder (data.root)".into(),
                path,
                hint: "point data.root at a folder of .png/.jpg/.jpeg files".into(),
            }
        }
        e => e,
    })?;
    if names.is_empty() {
        return Err(DataError::Missing {
            what: "PNG or JPEG images".into(),
            path: root.to_path_buf(),
            hint: "point data.root at a folder of .png/.jpg/.jpeg files (sub-folders are searched)"
                .into(),
        });
    }
    let canvas = Canvas::square(size);
    // decoded in parallel a chunk at a time into a file on disk, so that
    // memory holds one chunk whatever the number of images
    let mut out = super::disk::PixelFileWriter::new(size * size)?;
    let bar = crate::progress::bar(names.len() as u64, names.len() < 20_000, "decoding");
    for chunk in names.chunks(2048) {
        let images = chunk
            .par_iter()
            .map(|rel| load_image_onto(&root.join(rel), canvas))
            .collect::<Result<Vec<Vec<f32>>, DataError>>()?;
        for image in &images {
            out.push(image)?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let labels = names.iter().map(|rel| summary.label(rel)).collect();
    let class_names = if summary.classes.is_empty() {
        vec!["unlabelled".to_string()]
    } else {
        summary.classes.clone()
    };
    Ok(Dataset {
        pixels: super::Pixels::Disk(out.finish()?),
        size,
        labels,
        class_names,
        file_names: Some(names),
    })
}

/// The image files under a folder, at any depth, in sorted order (path
/// components compared in turn), walked lazily: only the folders on the
/// current path are held, so a million files cost no more memory than a
/// thousand. Hidden entries (names starting with `.`) and symbolic links
/// to folders are not entered. Each item is a path relative to the root,
/// or the error of an entry that cannot be named (not UTF-8, control
/// characters) or a folder that cannot be read.
pub struct ImageWalk {
    root: PathBuf,
    /// `(relative folder, its remaining entries)` from the root down.
    stack: Vec<(String, std::vec::IntoIter<Entry>)>,
}

/// A folder entry: its name, and what the folder's listing says it is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    name: std::ffi::OsString,
    is_dir: bool,
    /// A symbolic link, which may point at a folder (not followed).
    is_link: bool,
}

/// A folder's sorted entries, hidden ones left out. Their kinds come with
/// the listing (no system call per entry).
fn sorted_entries(dir: &Path) -> Result<Vec<Entry>, DataError> {
    let io = |error| DataError::Io {
        path: dir.to_path_buf(),
        error,
    };
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = e.file_type().map_err(io)?;
        entries.push(Entry {
            name: e.file_name(),
            is_dir: ft.is_dir(),
            is_link: ft.is_symlink(),
        });
    }
    entries.sort();
    Ok(entries)
}

impl ImageWalk {
    /// Start walking `dir` (which must be a readable folder).
    pub fn new(dir: &Path) -> Result<Self, DataError> {
        let meta = std::fs::metadata(dir).map_err(|error| DataError::Io {
            path: dir.to_path_buf(),
            error,
        })?;
        if !meta.is_dir() {
            return Err(DataError::format(dir, "--images must be a folder"));
        }
        Ok(ImageWalk {
            root: dir.to_path_buf(),
            stack: vec![(String::new(), sorted_entries(dir)?.into_iter())],
        })
    }
}

impl Iterator for ImageWalk {
    type Item = Result<String, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (rel, entries) = self.stack.last_mut()?;
            let Some(Entry {
                name,
                is_dir,
                is_link,
            }) = entries.next()
            else {
                self.stack.pop();
                continue;
            };
            let rel = rel.clone();
            let path = self.root.join(&rel).join(&name);
            let joined = |n: &str| {
                if rel.is_empty() {
                    n.to_string()
                } else {
                    format!("{rel}/{n}")
                }
            };
            if is_dir {
                let n = match listed_name(Path::new(&name)) {
                    Ok(n) => n,
                    Err(_) => return Some(Err(DataError::format(
                        &path,
                        "folder name is not valid UTF-8 or holds a control character; rename it",
                    ))),
                };
                match sorted_entries(&path) {
                    Ok(sub) => self.stack.push((joined(&n), sub.into_iter())),
                    Err(e) => return Some(Err(e)),
                }
                continue;
            }
            if !is_image(&path) || (is_link && path.is_dir()) {
                continue; // other files, and links to folders (not followed)
            }
            return Some(match listed_name(Path::new(&name)) {
                Ok(n) => Ok(joined(&n)),
                Err(_) => Err(listed_name(&path).err().unwrap_or_else(|| {
                    DataError::format(&path, "file name cannot be listed; rename it")
                })),
            });
        }
    }
}

/// What one pass over a folder found: how many items the walk yields,
/// the classes where every image lies in a top-level sub-folder
/// (torchvision's `ImageFolder` layout), and a digest of every item's
/// name, size, modification and change time and inode, so that a later
/// pass can tell whether the folder is still the same.
#[derive(Clone, Debug, Default)]
pub struct FolderSummary {
    /// Items of [`ImageWalk`], errors included.
    pub count: usize,
    /// Class names in sorted order; empty where the folder has no classes.
    pub classes: Vec<String>,
    /// SHA-256 (hex) over each item's name and file metadata, in order.
    pub digest: String,
}

/// One item of a folder listing: a file (relative path) or an entry that
/// could not be listed.
pub type Listed = Result<String, DataError>;

impl FolderSummary {
    /// Walk `dir` once, counting. Without `skip_bad`, the first entry that
    /// cannot be listed is an error here, before any image is read.
    pub fn of(dir: &Path, skip_bad: bool) -> Result<Self, DataError> {
        Self::walk(dir, skip_bad, |_| Ok(()))
    }

    /// [`FolderSummary::of`], handing every item to `keep` in order (to
    /// write the listing that the work then reads, so that files added or
    /// removed while it runs change nothing).
    pub fn walk(
        dir: &Path,
        skip_bad: bool,
        mut keep: impl FnMut(&Listed) -> std::io::Result<()>,
    ) -> Result<Self, DataError> {
        use sha2::Digest;
        let (mut count, mut classes, mut at_top) = (0, Vec::<String>::new(), false);
        let mut digest = sha2::Sha256::new();
        let mut walk = ImageWalk::new(dir)?;
        // The files' stamps (a `stat` each) are taken in parallel, a block
        // of items at a time, and used in order.
        let blocks = std::iter::from_fn(|| {
            let items: Vec<Listed> = walk.by_ref().take(STAMP_BLOCK).collect();
            (!items.is_empty()).then_some(items)
        });
        for items in blocks {
            let stamps: Vec<Option<String>> = items
                .par_iter()
                .map(|item| {
                    item.as_ref()
                        .ok()
                        .map(|rel| file_stamp(&dir.join(rel), rel))
                })
                .collect();
            for (item, stamp) in items.into_iter().zip(stamps) {
                count += 1;
                Self::take(
                    &item,
                    stamp,
                    skip_bad,
                    (&mut classes, &mut at_top),
                    &mut digest,
                )?;
                keep(&item).map_err(|error| DataError::Io {
                    path: dir.to_path_buf(),
                    error,
                })?;
            }
        }
        Self::check_classes(dir, classes, at_top, digest, count)
    }

    /// One item of [`FolderSummary::walk`]: its class and stamp, or its
    /// error (returned without `skip_bad`).
    fn take(
        item: &Listed,
        stamp: Option<String>,
        skip_bad: bool,
        (classes, at_top): (&mut Vec<String>, &mut bool),
        digest: &mut sha2::Sha256,
    ) -> Result<(), DataError> {
        use sha2::Digest;
        match item {
            Ok(rel) => {
                match rel.split_once('/') {
                    Some((top, _)) => {
                        if classes.last().map(String::as_str) != Some(top) {
                            classes.push(top.to_string());
                        }
                    }
                    None => *at_top = true,
                }
                digest.update(stamp.unwrap_or_default().as_bytes());
            }
            Err(e) if !skip_bad => {
                return Err(e
                    .clone_text()
                    .hinted("pass --skip-bad to leave such files out"))
            }
            Err(e) => digest.update(format!("!{e}\n").as_bytes()),
        }
        Ok(())
    }

    /// The summary, once every item is taken: the classes hold where
    /// every top-level folder holds an image.
    fn check_classes(
        dir: &Path,
        mut classes: Vec<String>,
        at_top: bool,
        digest: sha2::Sha256,
        count: usize,
    ) -> Result<Self, DataError> {
        use sha2::Digest;
        if at_top {
            classes.clear();
        }
        if !classes.is_empty() {
            if let Some(empty) = sorted_entries(dir)?
                .into_iter()
                .filter(|e| e.is_dir)
                .map(|e| e.name.to_string_lossy().into_owned())
                .find(|name| classes.binary_search(name).is_err())
            {
                return Err(DataError::format(
                    &dir.join(&empty),
                    "class folder holds no PNG or JPEG image; add images or remove the folder",
                ));
            }
        }
        let digest = digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(FolderSummary {
            count,
            classes,
            digest,
        })
    }

    /// The class of a file given by its relative path (0 without classes).
    pub fn label(&self, rel: &str) -> usize {
        let top = rel.split_once('/').map_or("", |(t, _)| t);
        self.classes
            .binary_search_by(|c| c.as_str().cmp(top))
            .unwrap_or(0)
    }
}

/// Items whose stamps [`FolderSummary::walk`] takes at once.
const STAMP_BLOCK: usize = 4096;

/// A file's name and what changes when its contents may have: size,
/// modification time, change time (which no program can set back) and
/// inode (a file replaced by another under the same name).
fn file_stamp(path: &Path, rel: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path).or_else(|_| std::fs::symlink_metadata(path)) {
        Ok(m) => format!(
            "{rel}\t{}\t{}.{}\t{}.{}\t{}\n",
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.ino()
        ),
        Err(e) => format!("{rel}\t{e}\n"),
    }
}

/// One listing line: `f\t<relative path>` or `e\t<path>\t<why>` (the
/// error's text with control characters escaped, so it stays one line).
pub fn listing_line(item: &Listed) -> String {
    match item {
        Ok(rel) => format!("f\t{rel}\n"),
        Err(e) => {
            let (path, why) = match e {
                DataError::Format { path, message } => {
                    (path.display().to_string(), message.clone())
                }
                DataError::Io { path, error } => {
                    (path.display().to_string(), format!("cannot read: {error}"))
                }
                DataError::Missing { what, path, hint } => (
                    path.display().to_string(),
                    format!("{what} not found: {hint}"),
                ),
            };
            let one_line = |t: &str| {
                t.chars()
                    .flat_map(|c| {
                        if c.is_control() {
                            c.escape_default().collect::<Vec<_>>()
                        } else {
                            vec![c]
                        }
                    })
                    .collect::<String>()
                    .replace('\t', " ")
            };
            format!("e\t{}\t{}\n", one_line(&path), one_line(&why))
        }
    }
}

/// Read back one line written by [`listing_line`].
pub fn parse_listing_line(line: &str) -> Option<Listed> {
    let (kind, rest) = line.split_once('\t')?;
    match kind {
        "f" => Some(Ok(rest.to_string())),
        "e" => {
            let (path, why) = rest.split_once('\t')?;
            Some(Err(DataError::format(Path::new(path), why)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 8-bit grey shortcut gives the levels the formula gives.
    #[test]
    fn eight_bit_grey_is_its_own_levels() {
        let grey = GrayImage::from_fn(16, 16, |x, y| image::Luma([(y * 16 + x) as u8]));
        let by_formula = converted_grey_levels(&image::DynamicImage::ImageLuma8(grey.clone()));
        assert_eq!(by_formula, grey);
        assert_eq!(
            grey_levels(image::DynamicImage::ImageLuma8(grey.clone())),
            grey
        );
    }

    /// The copy gives the bilinear placement's values bit for bit.
    #[test]
    fn centring_by_copy_equals_the_bilinear_placement() {
        for (content, size) in [(28, 32), (28, 64), (5, 9), (28, 33), (6, 6)] {
            let x: Vec<f32> = (0..content * content)
                .map(|i| (i as f32 * 0.37).sin())
                .collect();
            let want = rotate_bilinear(&x, content, content, 0.0, false, size, size);
            let got = centre_on(&x, Canvas { size, content });
            assert_eq!(got, want, "{content} on {size}");
        }
    }
}
