//! Reconstruction grids: the first images of a set (top row) above their
//! reconstructions (bottom row), scaled up for viewing.

use std::path::Path;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::Device;
use image::{GrayImage, Luma};

use super::batch_tensor;
use crate::data::Dataset;
use crate::model::Autoencoder;
use crate::nn::transform::to_vec;

/// Write a PNG grid of `count` inputs over their reconstructions.
pub fn save_reconstructions(
    model: &Autoencoder,
    data: &Dataset,
    count: usize,
    device: &Device,
    path: &Path,
) -> Result<()> {
    let count = count.min(data.len());
    if count == 0 {
        return Ok(());
    }
    let device = device.clone().without_autodiff();
    let idx: Vec<usize> = (0..count).collect();
    let x = batch_tensor(data, &idx, &device)?;
    let y = model.valid().forward(x.clone()).reconstruction;
    save_grid(&[to_vec(&x), to_vec(&y)], count, data.size, path)
}

/// Rows of `count` images each, `size x size`, values in [0, 1].
pub fn save_grid(rows: &[Vec<f32>], count: usize, size: usize, path: &Path) -> Result<()> {
    let (scale, gap) = (4u32, 2u32);
    let cell = size as u32 * scale + gap;
    let mut img = GrayImage::from_pixel(
        count as u32 * cell + gap,
        rows.len() as u32 * cell + gap,
        Luma([128]),
    );
    for (r, row) in rows.iter().enumerate() {
        for k in 0..count {
            for i in 0..size {
                for j in 0..size {
                    let v = (row[k * size * size + i * size + j].clamp(0.0, 1.0) * 255.0) as u8;
                    for di in 0..scale {
                        for dj in 0..scale {
                            img.put_pixel(
                                gap + k as u32 * cell + j as u32 * scale + dj,
                                gap + r as u32 * cell + i as u32 * scale + di,
                                Luma([v]),
                            );
                        }
                    }
                }
            }
        }
    }
    // encoded in memory and renamed into place: a kill never leaves half a PNG
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .context("cannot encode the reconstruction grid")?;
    crate::atomic::write(path, png.get_ref())
}
