//! The grid encoder with fixed weights, run image by image on the blocked
//! direct convolution ([`super::direct`]): inference only (`embed`,
//! `eval`'s features, `check`, `search` and `cluster` on images).
//!
//! Each stage is a convolution and one fused epilogue (bias, leaky ReLU,
//! 2x2 average pooling) that writes the next stage's bordered input
//! directly, so no im2col matrix is built. The first stage (one input
//! channel) runs on the direct kernel; the 3x3 stages after it in Winograd
//! form ([`super::winograd`]: 2.25 times fewer multiply-adds, measured
//! faster by `benches/inference.rs`). The final `s x s`, stride `s` collapse maps a
//! whole image to one pixel: it runs as a 1x1 convolution over a row of
//! "pixels" that are the chunk's images, so that every image's features are
//! computed in the same order whatever images share its chunk (resumed and
//! sharded embeddings equal whole ones bit for bit).

use rayon::prelude::*;

use super::direct::{BlockedMaps, Isa, PackedConv};
use super::winograd::{self, WinogradConv, WinogradScratch};

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

/// Images per parallel task: enough for the Winograd products of the small
/// maps and the collapse to have many columns, few enough that every thread
/// gets work on a batch of 256.
const CHUNK: usize = 16;

/// How the stages after the first convolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageKernel {
    /// Winograd F(2x2, 3x3) for 3x3 stages with 16 input channels or more,
    /// direct otherwise.
    Auto,
    /// The direct convolution everywhere (the reference the benchmark
    /// compares with).
    Direct,
}

/// One stage's convolution.
#[derive(Debug)]
enum Stage {
    Direct(PackedConv),
    Winograd(WinogradConv),
}

/// One thread's buffers for a chunk of images, kept between chunks: the
/// maps' borders are zero once and only interiors are written after that.
struct ChunkBuffers {
    /// The maps' shapes these buffers were made for.
    shapes: Vec<BlockedMaps>,
    /// `maps[i][b]`: the output of stage `i` for image `b` of the chunk.
    maps: Vec<Vec<Vec<f32>>>,
    /// The first stage's input, one image at a time.
    first: Vec<f32>,
    scratch: Vec<f32>,
    winograd: WinogradScratch,
    /// The collapse's input, the chunk's images as pixels of one row.
    row_maps: Vec<f32>,
}

impl ChunkBuffers {
    fn new(shapes: &[BlockedMaps]) -> Self {
        let last = shapes[shapes.len() - 1];
        let rows = BlockedMaps {
            channels: last.channels * last.height * last.width,
            height: 1,
            width: CHUNK,
            border: 0,
        };
        ChunkBuffers {
            shapes: shapes.to_vec(),
            maps: shapes[1..]
                .iter()
                .map(|m| (0..CHUNK).map(|_| vec![0.0; m.alloc_len()]).collect())
                .collect(),
            first: vec![0.0; shapes[0].alloc_len()],
            scratch: Vec::new(),
            winograd: WinogradScratch::default(),
            row_maps: vec![0.0; rows.alloc_len()],
        }
    }
}

thread_local! {
    /// This thread's [`ChunkBuffers`] (a few MiB), remade when an encoder
    /// of other shapes runs.
    static BUFFERS: std::cell::RefCell<Option<ChunkBuffers>> = const { std::cell::RefCell::new(None) };
}

/// The packed encoder: stages (conv, bias, leaky ReLU, pool), then the
/// collapse.
#[derive(Debug)]
pub struct FrozenEncoder {
    stages: Vec<Stage>,
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
        Self::with_kernel(stages, collapse, (size, order, slope), StageKernel::Auto)
    }

    /// [`Self::new`] with the stages' kernel chosen by the caller.
    pub fn with_kernel(
        stages: &[ConvWeights],
        collapse: ConvWeights,
        (size, order, slope): (usize, usize, f32),
        kernel: StageKernel,
    ) -> Option<Self> {
        let side = size >> stages.len();
        let fits = size % (1 << stages.len()) == 0
            && collapse.kernel == side
            && stages.iter().all(|s| s.kernel % 2 == 1)
            && stages.windows(2).all(|w| w[0].c_out == w[1].c_in)
            && stages.first().is_some_and(|s| s.c_in == 1)
            && stages.last().is_some_and(|s| s.c_out == collapse.c_in)
            && collapse.c_out.is_multiple_of(order);
        if !fits {
            return None;
        }
        let isa = Isa::detect();
        let taps = collapse.kernel * collapse.kernel;
        Some(FrozenEncoder {
            stages: stages
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let winograd = kernel == StageKernel::Auto
                        && winograd::enabled()
                        && i > 0
                        && s.kernel == 3
                        && s.c_in >= 16;
                    if winograd {
                        Stage::Winograd(WinogradConv::new(&s.weight, &s.bias, s.c_in, s.c_out, isa))
                    } else {
                        Stage::Direct(PackedConv::new(
                            &s.weight, &s.bias, s.c_in, s.c_out, s.kernel, isa,
                        ))
                    }
                })
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
            .map(|(i, s)| {
                let side = self.size >> i;
                match s {
                    Stage::Direct(c) => c.input_shape(side, side),
                    Stage::Winograd(c) => c.input_shape(side, side),
                }
            })
            .collect();
        let side = self.size >> self.stages.len();
        shapes.push(BlockedMaps {
            channels: self.collapse.c_in / (side * side),
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

    /// [`Self::forward`] on one chunk of images, on one thread, stage by
    /// stage.
    fn forward_chunk(&self, images: &[f32], out: &mut [f32]) {
        let s = self.size;
        let n = images.len() / (s * s);
        let shapes = self.shapes();
        BUFFERS.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.as_ref().is_none_or(|b| b.shapes != shapes) {
                *cell = Some(ChunkBuffers::new(&shapes));
            }
            let buffers = cell.as_mut().expect("just made");
            self.forward_chunk_in(images, out, n, buffers);
        });
    }

    /// [`Self::forward_chunk`] in this thread's buffers.
    fn forward_chunk_in(
        &self,
        images: &[f32],
        out: &mut [f32],
        n: usize,
        buffers: &mut ChunkBuffers,
    ) {
        let (s, c) = (self.size, &self.collapse);
        let ChunkBuffers {
            shapes,
            maps,
            first,
            scratch,
            winograd,
            row_maps,
        } = buffers;
        let shapes = &*shapes;
        for (i, stage) in self.stages.iter().enumerate() {
            let (done, rest) = maps.split_at_mut(i);
            let (inputs, outputs) = (done.last().map(|m| &m[..n]), &mut rest[0][..n]);
            let (shape, next) = (&shapes[i], &shapes[i + 1]);
            match stage {
                Stage::Direct(conv) => {
                    scratch.resize(conv.scratch_len(shape), 0.0);
                    for (b, output) in outputs.iter_mut().enumerate() {
                        let input = match inputs {
                            Some(inputs) => &inputs[b],
                            None => {
                                let image = &images[b * s * s..][..s * s];
                                for (y, row) in image.chunks(s).enumerate() {
                                    for (x, &v) in row.iter().enumerate() {
                                        first[shape.index(0, y, x)] = v;
                                    }
                                }
                                &*first
                            }
                        };
                        conv.conv_image(input, shape, scratch);
                        conv.finish_pooled(scratch, shape, self.slope, output, next);
                    }
                }
                Stage::Winograd(conv) => {
                    let inputs = inputs.expect("the first stage is direct");
                    let group = WinogradConv::images_per_group(shape.height, shape.width);
                    for (ins, outs) in inputs.chunks(group).zip(outputs.chunks_mut(group)) {
                        let ins: Vec<&[f32]> = ins.iter().map(Vec::as_slice).collect();
                        let mut outs: Vec<&mut [f32]> =
                            outs.iter_mut().map(Vec::as_mut_slice).collect();
                        conv.run(&ins, shape, &mut outs, next, self.slope, winograd);
                    }
                }
            }
        }
        // # Shapes: the collapse's input, the chunk's images as pixels of
        // one row: blocked [C * s * s, 1, CHUNK] (past n: last chunk's, unused)
        let rows = c.input_shape(1, CHUNK);
        let last = &shapes[shapes.len() - 1];
        let side = last.height;
        for (b, map) in maps[maps.len() - 1][..n].iter().enumerate() {
            for ch in 0..last.channels {
                for y in 0..side {
                    for x in 0..side {
                        let at = rows.index((ch * side + y) * side + x, 0, b);
                        row_maps[at] = map[last.index(ch, y, x)];
                    }
                }
            }
        }
        scratch.resize(c.scratch_len(&rows), 0.0);
        c.conv_image(row_maps, &rows, scratch);
        // # Shapes: [L * N, 1, CHUNK] -> [n, N, L]
        let z = c.finish_plain(scratch, &rows, 1.0);
        let (order, latent) = (self.order, c.c_out / self.order);
        for (b, ob) in out.chunks_mut(c.c_out).enumerate() {
            for l in 0..latent {
                for g in 0..order {
                    ob[g * latent + l] = z[(l * order + g) * CHUNK + b];
                }
            }
        }
    }
}
