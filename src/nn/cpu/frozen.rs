//! The grid encoder with fixed weights, run image by image on the blocked
//! direct convolution ([`super::direct`]): inference only (`embed`,
//! `eval`'s features, `check`, `search` and `cluster` on images).
//!
//! Each stage is one call of the microkernel and one fused epilogue (bias,
//! leaky ReLU, 2x2 average pooling) that writes the next stage's bordered
//! input directly, so an image's maps never leave the core's cache and no
//! im2col matrix is built. The final `s x s`, stride `s` collapse maps a
//! whole image to one pixel: it runs as a 1x1 convolution over a row of
//! "pixels" that are the chunk's images, so that every image's features are
//! computed in the same order whatever images share its chunk (resumed and
//! sharded embeddings equal whole ones bit for bit).

use rayon::prelude::*;

use super::direct::{BlockedMaps, Isa, PackedConv};

/// One convolution's weights as plain buffers.
#[derive(Clone, Debug)]
pub struct ConvWeights {
    /// `[c_out, c_in, k, k]`.
    pub weight: Vec<f32>,
    /// `[c_out]`.
    pub bias: Vec<f32>,
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
}

/// Images per parallel task: enough for the collapse product to be a real
/// GEMM, few enough that every thread gets work on a batch of 256.
const CHUNK: usize = 16;

/// The packed encoder: stages (conv, bias, leaky ReLU, pool), then the
/// collapse.
#[derive(Debug)]
pub struct FrozenEncoder {
    stages: Vec<PackedConv>,
    /// The collapse as a 1x1 convolution from `C * s * s` to `L * N` channels.
    collapse: PackedConv,
    /// Side of the input images.
    size: usize,
    /// Order N of the grid group: the output's rows.
    order: usize,
    slope: f32,
}

impl FrozenEncoder {
    /// Pack `stages` (odd kernels, stride 1, "same" padding, each followed
    /// by the activation with `slope` and 2x2 pooling) and `collapse` (its
    /// kernel the side of the last map, stride the same) for `size x size`
    /// images, on the best instruction set of this processor.
    ///
    /// Returns `None` when the shapes do not fit that pattern.
    pub fn new(
        stages: &[ConvWeights],
        collapse: ConvWeights,
        size: usize,
        order: usize,
        slope: f32,
    ) -> Option<Self> {
        let side = size >> stages.len();
        let fits = size % (1 << stages.len()) == 0
            && collapse.kernel == side
            && stages.iter().all(|s| s.kernel % 2 == 1)
            && stages.windows(2).all(|w| w[0].c_out == w[1].c_in)
            && stages.first().is_some_and(|s| s.c_in == 1)
            && stages.last().is_some_and(|s| s.c_out == collapse.c_in)
            && collapse.c_out % order == 0;
        if !fits {
            return None;
        }
        let isa = Isa::detect();
        let taps = collapse.kernel * collapse.kernel;
        Some(FrozenEncoder {
            stages: stages
                .iter()
                .map(|s| PackedConv::new(&s.weight, &s.bias, s.c_in, s.c_out, s.kernel, isa))
                .collect(),
            collapse: PackedConv::new(
                &collapse.weight,
                &collapse.bias,
                collapse.c_in * taps,
                collapse.c_out,
                1,
                isa,
            ),
            size,
            order,
            slope,
        })
    }

    /// Side of the images this encoder takes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The blocked input of every stage, then the last stage's pooled output.
    fn shapes(&self) -> Vec<BlockedMaps> {
        let mut shapes: Vec<BlockedMaps> = self
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| s.input_shape(self.size >> i, self.size >> i))
            .collect();
        let side = self.size >> self.stages.len();
        shapes.push(BlockedMaps {
            channels: self.stages.last().map_or(1, |s| s.c_out),
            height: side,
            width: side,
            border: 0,
        });
        shapes
    }

    /// # Shapes
    /// `images [B, S, S]` -> `[B, N, L]` (the rows over the grid group)
    pub fn forward(&self, images: &[f32], batch: usize) -> Vec<f32> {
        let (s, c) = (self.size, &self.collapse);
        assert_eq!(images.len(), batch * s * s);
        let mut out = vec![0.0f32; batch * c.c_out];
        out.par_chunks_mut(CHUNK * c.c_out)
            .zip(images.par_chunks(CHUNK * s * s))
            .for_each(|(out, images)| self.forward_chunk(images, out));
        out
    }

    /// [`Self::forward`] on one chunk of images, on one thread.
    fn forward_chunk(&self, images: &[f32], out: &mut [f32]) {
        let (s, c) = (self.size, &self.collapse);
        let n = images.len() / (s * s);
        let shapes = self.shapes();
        let mut maps: Vec<Vec<f32>> = shapes.iter().map(|m| vec![0.0; m.alloc_len()]).collect();
        // # Shapes: the collapse's input, the chunk's images as pixels of
        // one row: blocked [C * s * s, 1, n]
        let rows = c.input_shape(1, n);
        let mut row_maps = vec![0.0f32; rows.alloc_len()];
        let scratch_len = self
            .stages
            .iter()
            .zip(&shapes)
            .map(|(st, sh)| st.scratch_len(sh));
        let mut scratch =
            vec![0.0f32; scratch_len.chain([c.scratch_len(&rows)]).max().unwrap_or(0)];
        let (last, side) = (shapes.len() - 1, shapes[shapes.len() - 1].height);
        for (b, image) in images.chunks(s * s).enumerate() {
            for y in 0..s {
                for x in 0..s {
                    maps[0][shapes[0].index(0, y, x)] = image[y * s + x];
                }
            }
            for (i, stage) in self.stages.iter().enumerate() {
                let (input, next) = maps.split_at_mut(i + 1);
                stage.conv_image(&input[i], &shapes[i], &mut scratch);
                stage.finish_pooled(
                    &scratch,
                    &shapes[i],
                    self.slope,
                    &mut next[0],
                    &shapes[i + 1],
                );
            }
            for ch in 0..shapes[last].channels {
                for y in 0..side {
                    for x in 0..side {
                        let at = rows.index((ch * side + y) * side + x, 0, b);
                        row_maps[at] = maps[last][shapes[last].index(ch, y, x)];
                    }
                }
            }
        }
        c.conv_image(&row_maps, &rows, &mut scratch);
        // # Shapes: [L * N, 1, n] -> [n, N, L]
        let z = c.finish_plain(&scratch, &rows, 1.0);
        let (order, latent) = (self.order, c.c_out / self.order);
        for (b, ob) in out.chunks_mut(c.c_out).enumerate() {
            for l in 0..latent {
                for g in 0..order {
                    ob[g * latent + l] = z[(l * order + g) * n + b];
                }
            }
        }
    }
}
