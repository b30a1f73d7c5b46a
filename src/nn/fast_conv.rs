//! The models' hot operations on the CPU: convolutions (our own im2col +
//! GEMM kernels, [`super::conv_kernel`]), leaky ReLU and 2x2 average
//! pooling, each with its own backward, registered through burn's
//! backend-extension mechanism for the flex backend. On every other backend
//! (wgpu) the public functions here call burn's stock operations, untouched.
//!
//! Both paths compute the same function; `tests` compares them in value
//! and gradient.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{
    backend_extension, Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, Flex,
    TensorMetadata,
};
use burn::tensor::module::{conv2d as burn_conv2d, conv_transpose2d as burn_conv_transpose2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{DType, Int, Tensor, TensorData};

use rayon::prelude::*;

use super::conv_kernel::{self, ConvGeometry, PAR_CHUNK};

/// Square convolutions with equal stride and padding in both directions,
/// dilation 1, one group: all the group layers need.
#[backend_extension(Flex, Autodiff)]
pub trait SquareConvBackend: Backend {
    /// `conv2d(x, weight) + bias`, or with `transposed`
    /// `conv_transpose2d(x, weight) + bias` (no output padding), followed
    /// by leaky ReLU with `slope` in the same pass (`slope = 1`: none).
    #[allow(clippy::too_many_arguments)]
    fn square_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        transposed: bool,
        slope: f32,
    ) -> FloatTensor<Self>;

    /// Gradients `(dx, dweight, dbias)` of [`Self::square_conv`] from the
    /// gradient `grad` of its output `output` (read only when `slope != 1`);
    /// `dx` is all zeros when `need_x` is false.
    #[allow(clippy::too_many_arguments)]
    fn square_conv_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        transposed: bool,
        need_x: bool,
        slope: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `x` where positive, `slope * x` elsewhere.
    fn leaky_relu_fused(x: FloatTensor<Self>, slope: f32) -> FloatTensor<Self>;

    /// Gradient of [`Self::leaky_relu_fused`] at `x`.
    fn leaky_relu_fused_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        slope: f32,
    ) -> FloatTensor<Self>;

    /// A group filter bank gathered from its base filters:
    /// `out[co, r, ci, m] = weight[co, ci, index[r * M + m]]` for `r < n`,
    /// `M = len(index) / n`.
    ///
    /// # Shapes
    /// `weight [Co, Ci, L]`, `index [n * M]` -> `[Co, n, Ci, M]`
    fn expand_filters(
        weight: FloatTensor<Self>,
        index: IntTensor<Self>,
        n: usize,
    ) -> FloatTensor<Self>;

    /// Gradient of [`Self::expand_filters`]: each base weight sums the
    /// gradients of its copies.
    ///
    /// # Shapes
    /// `grad [Co, n, Ci, M]` -> `[Co, Ci, base_len]`
    fn expand_filters_backward(
        grad: FloatTensor<Self>,
        index: IntTensor<Self>,
        base_len: usize,
    ) -> FloatTensor<Self>;

    /// 2x2 average pooling with stride 2 (even sizes).
    fn avg_pool2_fused(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Gradient of [`Self::avg_pool2_fused`]: each input pixel gets a
    /// quarter of its window's output gradient.
    fn avg_pool2_fused_backward(grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// A contiguous f32 view of a flex tensor (copies only when strided).
fn contiguous(t: FlexTensor) -> FlexTensor {
    assert_eq!(
        t.dtype(),
        DType::F32,
        "the CPU group convolution supports float32 only"
    );
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.shape();
    assert_eq!(s.num_dims(), 4, "expected a 4-d tensor, got {s:?}");
    [s[0], s[1], s[2], s[3]]
}

fn tensor(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The conv geometry of `conv2d(x, weight)`.
fn conv_geometry(x: &FlexTensor, w: &FlexTensor, stride: usize, padding: usize) -> ConvGeometry {
    let [b, ca, ha, wa] = dims4(x);
    let [cz, wca, k, k2] = dims4(w);
    assert!(
        k == k2 && wca == ca,
        "weight {:?} for input {:?}",
        w.shape(),
        x.shape()
    );
    ConvGeometry::conv(b, ca, ha, wa, cz, k, stride, padding)
}

/// The conv geometry of `conv_transpose2d(x, weight)` (weight `[Cz, Ca, k, k]`).
fn transposed_geometry(
    x: &FlexTensor,
    w: &FlexTensor,
    stride: usize,
    padding: usize,
) -> ConvGeometry {
    let [b, cz, hz, wz] = dims4(x);
    let [wcz, ca, k, k2] = dims4(w);
    assert!(
        k == k2 && wcz == cz,
        "weight {:?} for input {:?}",
        w.shape(),
        x.shape()
    );
    ConvGeometry::transposed(b, cz, hz, wz, ca, k, stride, padding)
}

/// The three gradients `(dx, dweight, dbias)` of a convolution.
type Triple<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

fn conv_forward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    stride: usize,
    padding: usize,
    slope: f32,
) -> FlexTensor {
    let (x, w, bias) = (contiguous(x), contiguous(weight), contiguous(bias));
    let g = conv_geometry(&x, &w, stride, padding);
    let z = conv_kernel::forward(&g, slice(&x), slice(&w), Some(slice(&bias)), slope);
    tensor(z, [g.batch, g.cz, g.hz, g.wz])
}

fn conv_backward(
    x: FlexTensor,
    weight: FlexTensor,
    grad: FlexTensor,
    stride: usize,
    padding: usize,
    need_x: bool,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (x, w, grad) = (contiguous(x), contiguous(weight), contiguous(grad));
    let g = conv_geometry(&x, &w, stride, padding);
    let grads = conv_kernel::backward(
        &g,
        Some(slice(&x)),
        need_x.then(|| slice(&w)),
        slice(&grad),
        true,
    );
    let dx = grads
        .a
        .unwrap_or_else(|| vec![0.0; g.batch * g.ca * g.ha * g.wa]);
    (
        tensor(dx, x.shape()),
        tensor(grads.w.expect("weight gradient"), w.shape()),
        tensor(grads.bias.expect("bias gradient"), [g.cz]),
    )
}

fn transposed_forward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    stride: usize,
    padding: usize,
    slope: f32,
) -> FlexTensor {
    let (x, w, bias) = (contiguous(x), contiguous(weight), contiguous(bias));
    let g = transposed_geometry(&x, &w, stride, padding);
    let mut y = conv_kernel::backward(&g, None, Some(slice(&w)), slice(&x), false)
        .a
        .expect("transposed convolution output");
    let plane = g.ha * g.wa;
    conv_kernel::bias_and_activation_par(&mut y, Some(slice(&bias)), g.ca, plane, slope);
    tensor(y, [g.batch, g.ca, g.ha, g.wa])
}

fn transposed_backward(
    x: FlexTensor,
    weight: FlexTensor,
    grad: FlexTensor,
    stride: usize,
    padding: usize,
    need_x: bool,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (x, w, grad) = (contiguous(x), contiguous(weight), contiguous(grad));
    let g = transposed_geometry(&x, &w, stride, padding);
    // The transposed conv's input gradient is the plain conv of its
    // output gradient; its weight gradient is the conv's with the roles
    // of input (here: grad) and output gradient (here: x) swapped.
    let dx = if need_x {
        conv_kernel::forward(&g, slice(&grad), slice(&w), None, 1.0)
    } else {
        vec![0.0; g.batch * g.cz * g.hz * g.wz]
    };
    let dw = conv_kernel::backward(&g, Some(slice(&grad)), None, slice(&x), false)
        .w
        .expect("weight gradient");
    let db = conv_kernel::channel_sums(slice(&grad), g.batch, g.ca);
    (
        tensor(dx, x.shape()),
        tensor(dw, w.shape()),
        tensor(db, [g.ca]),
    )
}

impl SquareConvBackend for Flex {
    fn square_conv(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        stride: usize,
        padding: usize,
        transposed: bool,
        slope: f32,
    ) -> FlexTensor {
        if transposed {
            transposed_forward(x, weight, bias, stride, padding, slope)
        } else {
            conv_forward(x, weight, bias, stride, padding, slope)
        }
    }

    fn square_conv_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output: FlexTensor,
        grad: FlexTensor,
        stride: usize,
        padding: usize,
        transposed: bool,
        need_x: bool,
        slope: f32,
    ) -> Triple<Flex> {
        let grad = if slope == 1.0 {
            grad
        } else {
            // The gradient before the fused activation.
            let (y, grad) = (contiguous(output), contiguous(grad));
            let pre = conv_kernel::leaky_relu_backward(slice(&grad), slice(&y), slope);
            tensor(pre, grad.shape())
        };
        if transposed {
            transposed_backward(x, weight, grad, stride, padding, need_x)
        } else {
            conv_backward(x, weight, grad, stride, padding, need_x)
        }
    }

    fn leaky_relu_fused(x: FlexTensor, slope: f32) -> FlexTensor {
        let x = contiguous(x);
        let out = par_map(slice(&x), move |v| conv_kernel::leaky_relu(v, slope));
        tensor(out, x.shape())
    }

    fn leaky_relu_fused_backward(x: FlexTensor, grad: FlexTensor, slope: f32) -> FlexTensor {
        let (x, grad) = (contiguous(x), contiguous(grad));
        let out = conv_kernel::leaky_relu_backward(slice(&grad), slice(&x), slope);
        tensor(out, x.shape())
    }

    fn expand_filters(weight: FlexTensor, index: FlexTensor, n: usize) -> FlexTensor {
        let w = contiguous(weight);
        let s = w.shape();
        let (co, ci, l) = (s[0], s[1], s[2]);
        let index = gather_table(&index, l);
        let m = index.len() / n;
        let src = slice(&w);
        let mut out = vec![0.0f32; co * n * ci * m];
        if !out.is_empty() {
            out.par_chunks_mut(n * ci * m)
                .zip(src.par_chunks(ci * l))
                .for_each(|(out, src)| {
                    for (r, rows) in index.chunks(m).enumerate() {
                        for c in 0..ci {
                            let base = &src[c * l..][..l];
                            let dst = &mut out[(r * ci + c) * m..][..m];
                            dst.iter_mut().zip(rows).for_each(|(d, &i)| *d = base[i]);
                        }
                    }
                });
        }
        tensor(out, [co, n, ci, m])
    }

    fn expand_filters_backward(grad: FlexTensor, index: FlexTensor, base_len: usize) -> FlexTensor {
        let grad = contiguous(grad);
        let [co, n, ci, m] = dims4(&grad);
        let index = gather_table(&index, base_len);
        assert_eq!(index.len(), n * m, "filter table of the wrong length");
        let g = slice(&grad);
        let mut dw = vec![0.0f32; co * ci * base_len];
        if !dw.is_empty() {
            dw.par_chunks_mut(ci * base_len)
                .zip(g.par_chunks(n * ci * m))
                .for_each(|(dw, g)| {
                    for (r, rows) in index.chunks(m).enumerate() {
                        for c in 0..ci {
                            let base = &mut dw[c * base_len..][..base_len];
                            let src = &g[(r * ci + c) * m..][..m];
                            rows.iter().zip(src).for_each(|(&i, v)| base[i] += v);
                        }
                    }
                });
        }
        tensor(dw, [co, ci, base_len])
    }

    fn avg_pool2_fused(x: FlexTensor) -> FlexTensor {
        let x = contiguous(x);
        let [b, c, h, w] = dims4(&x);
        assert!(h % 2 == 0 && w % 2 == 0, "2x2 pooling needs even sizes");
        let (ho, wo) = (h / 2, w / 2);
        let src = slice(&x);
        let len = b * c * ho * wo;
        let mut out = Vec::with_capacity(len);
        if len > 0 {
            out.spare_capacity_mut()[..len]
                .par_chunks_mut(ho * wo)
                .zip(src.par_chunks(h * w))
                .for_each(|(o, plane)| {
                    for (o, rows) in o.chunks_mut(wo).zip(plane.chunks(2 * w)) {
                        let (r0, r1) = rows.split_at(w);
                        for ((o, a), b) in o.iter_mut().zip(r0.chunks(2)).zip(r1.chunks(2)) {
                            o.write(0.25 * (a[0] + a[1] + b[0] + b[1]));
                        }
                    }
                });
        }
        // SAFETY: every output plane was written whole above.
        unsafe { out.set_len(len) };
        tensor(out, [b, c, ho, wo])
    }

    fn avg_pool2_fused_backward(grad: FlexTensor) -> FlexTensor {
        let grad = contiguous(grad);
        let [b, c, ho, wo] = dims4(&grad);
        let (h, w) = (2 * ho, 2 * wo);
        let src = slice(&grad);
        let len = b * c * h * w;
        let mut out = Vec::with_capacity(len);
        if len > 0 {
            out.spare_capacity_mut()[..len]
                .par_chunks_mut(h * w)
                .zip(src.par_chunks(ho * wo))
                .for_each(|(plane, g)| {
                    // Both rows of a window pair get the same values.
                    for (rows, g) in plane.chunks_mut(2 * w).zip(g.chunks(wo)) {
                        let (r0, r1) = rows.split_at_mut(w);
                        for ((a, b), &g) in r0.chunks_mut(2).zip(r1.chunks_mut(2)).zip(g) {
                            let v = 0.25 * g;
                            a[0].write(v);
                            a[1].write(v);
                            b[0].write(v);
                            b[1].write(v);
                        }
                    }
                });
        }
        // SAFETY: every input plane was written whole above.
        unsafe { out.set_len(len) };
        tensor(out, [b, c, h, w])
    }
}

/// `f` applied to every element, in parallel, written straight into fresh
/// memory (no zero-fill first).
fn par_map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    out.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(PAR_CHUNK)
        .zip(x.par_chunks(PAR_CHUNK))
        .for_each(|(o, x)| {
            o.iter_mut().zip(x).for_each(|(o, &x)| {
                o.write(f(x));
            })
        });
    // SAFETY: the loop above wrote all `x.len()` elements.
    unsafe { out.set_len(x.len()) };
    out
}

/// An integer index tensor as `usize` indices, each checked against `len`.
fn gather_table(index: &FlexTensor, len: usize) -> Vec<usize> {
    let values: Vec<i64> = if let Some(v) = index.as_slice::<i64>() {
        v.to_vec()
    } else if let Some(v) = index.as_slice::<i32>() {
        v.iter().map(|&i| i as i64).collect()
    } else {
        let data = index.clone().into_data();
        data.convert::<i64>()
            .try_to_vec::<i64>()
            .expect("integer index")
    };
    values
        .into_iter()
        .map(|i| {
            assert!(
                (0..len as i64).contains(&i),
                "filter index {i} outside 0..{len}"
            );
            i as usize
        })
        .collect()
}

/// A convolution on the tape; the flag says whether it is transposed.
#[derive(Debug)]
struct SquareConvBackward(bool);

/// What the backward pass of a convolution keeps: the checkpointed input
/// and weight, the output when an activation was fused (its sign is the
/// activation's mask), stride, padding, slope.
type ConvState<B> = (NodeId, NodeId, Option<FloatTensor<B>>, usize, usize, f32);

impl<B: Backend + SquareConvBackend> Backward<B, 3> for SquareConvBackward {
    type State = ConvState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, cp: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, w_state, output, stride, padding, slope) = ops.state;
        let x = cp.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let w = cp.retrieve_node_output::<B::FloatTensorPrimitive>(w_state);
        let need_x = node_x.is_some();
        let output = output.unwrap_or_else(|| grad.clone());
        let (dx, dw, db) =
            B::square_conv_backward(x, w, output, grad, stride, padding, self.0, need_x, slope);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_w {
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = node_b {
            grads.register::<B>(node.id, db);
        }
    }
}

impl<B: Backend + SquareConvBackend, C: CheckpointStrategy> SquareConvBackend for Autodiff<B, C> {
    fn square_conv(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        transposed: bool,
        slope: f32,
    ) -> FloatTensor<Self> {
        let prep = SquareConvBackward(transposed)
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful();
        let run = |x: FloatTensor<Self>, w: FloatTensor<Self>, b: FloatTensor<Self>| {
            let (x, w, b) = (x.into_primitive(), w.into_primitive(), b.into_primitive());
            B::square_conv(x, w, b, stride, padding, transposed, slope)
        };
        match prep {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let w_state = prep.checkpoint(&weight);
                let y = run(x, weight, bias);
                // The output shares its buffer with the next layer's input.
                let output = (slope != 1.0).then(|| y.clone());
                let state = (x_state, w_state, output, stride, padding, slope);
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(run(x, weight, bias)),
        }
    }

    // The backward pass is only called on the inner backend, from the tape;
    // on the autodiff backend it runs untracked (no double backward).
    fn square_conv_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        transposed: bool,
        need_x: bool,
        slope: f32,
    ) -> Triple<Self> {
        let (dx, dw, db) = B::square_conv_backward(
            x.into_primitive(),
            weight.into_primitive(),
            output.into_primitive(),
            grad.into_primitive(),
            stride,
            padding,
            transposed,
            need_x,
            slope,
        );
        (
            Self::from_inner(dx),
            Self::from_inner(dw),
            Self::from_inner(db),
        )
    }

    fn leaky_relu_fused(x: FloatTensor<Self>, slope: f32) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LeakyReluBackward;
        impl<B: Backend + SquareConvBackend> Backward<B, 1> for LeakyReluBackward {
            type State = (NodeId, f32);
            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                cp: &mut Checkpointer,
            ) {
                let (x_state, slope) = ops.state;
                let x = cp.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::leaky_relu_fused_backward(x, grad, slope)
                });
            }
        }
        match LeakyReluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                prep.finish(
                    (x_state, slope),
                    B::leaky_relu_fused(x.into_primitive(), slope),
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::leaky_relu_fused(x.into_primitive(), slope)),
        }
    }

    fn expand_filters(
        weight: FloatTensor<Self>,
        index: IntTensor<Self>,
        n: usize,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ExpandBackward;
        impl<B: Backend + SquareConvBackend> Backward<B, 1> for ExpandBackward {
            type State = (IntTensor<B>, usize);
            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _cp: &mut Checkpointer,
            ) {
                let (index, base_len) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::expand_filters_backward(grad, index, base_len)
                });
            }
        }
        let base_len = weight.shape()[2];
        match ExpandBackward
            .prepare::<C>([weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                (index.clone(), base_len),
                B::expand_filters(weight.into_primitive(), index, n),
            ),
            OpsKind::UnTracked(prep) => {
                prep.finish(B::expand_filters(weight.into_primitive(), index, n))
            }
        }
    }

    fn expand_filters_backward(
        grad: FloatTensor<Self>,
        index: IntTensor<Self>,
        base_len: usize,
    ) -> FloatTensor<Self> {
        <Autodiff<B, C>>::from_inner(B::expand_filters_backward(
            grad.into_primitive(),
            index,
            base_len,
        ))
    }

    fn avg_pool2_fused(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct AvgPoolBackward;
        impl<B: Backend + SquareConvBackend> Backward<B, 1> for AvgPoolBackward {
            type State = ();
            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _cp: &mut Checkpointer,
            ) {
                unary::<B, _>(ops.parents, ops.node, grads, B::avg_pool2_fused_backward);
            }
        }
        match AvgPoolBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((), B::avg_pool2_fused(x.into_primitive())),
            OpsKind::UnTracked(prep) => prep.finish(B::avg_pool2_fused(x.into_primitive())),
        }
    }

    fn leaky_relu_fused_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        slope: f32,
    ) -> FloatTensor<Self> {
        <Autodiff<B, C>>::from_inner(B::leaky_relu_fused_backward(
            x.into_primitive(),
            grad.into_primitive(),
            slope,
        ))
    }

    fn avg_pool2_fused_backward(grad: FloatTensor<Self>) -> FloatTensor<Self> {
        <Autodiff<B, C>>::from_inner(B::avg_pool2_fused_backward(grad.into_primitive()))
    }
}

thread_local! {
    /// Set by [`with_stock_ops`]: burn's operations even on flex.
    static STOCK_OPS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` with burn's stock operations in place of our CPU kernels on this
/// thread: the reference for whole-model tests and benchmarks.
pub fn with_stock_ops<R>(f: impl FnOnce() -> R) -> R {
    let before = STOCK_OPS.replace(true);
    let result = f();
    STOCK_OPS.set(before);
    result
}

/// Whether `x` lives on the flex CPU backend (with or without autodiff)
/// and our kernels are to be used for it.
fn on_flex<const D: usize>(x: &Tensor<D>) -> bool {
    matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_)) && !STOCK_OPS.get()
}

/// Leaky ReLU: `x` where positive, `slope * x` elsewhere.
pub fn leaky_relu<const D: usize>(x: Tensor<D>, slope: f32) -> Tensor<D> {
    if on_flex(&x) {
        Tensor::from_dispatch(<Dispatch as SquareConvBackend>::leaky_relu_fused(
            x.into_dispatch(),
            slope,
        ))
    } else {
        burn::tensor::activation::leaky_relu(x, slope as f64)
    }
}

/// 2x2 average pooling with stride 2.
///
/// # Shapes
/// `[B, C, H, W] -> [B, C, H/2, W/2]` (H, W even)
pub fn avg_pool2(x: Tensor<4>) -> Tensor<4> {
    if on_flex(&x) {
        Tensor::from_dispatch(<Dispatch as SquareConvBackend>::avg_pool2_fused(
            x.into_dispatch(),
        ))
    } else {
        burn::tensor::module::avg_pool2d(x, burn::tensor::ops::AvgPoolOptions::new([2, 2]))
    }
}

/// A group filter bank from its base filters and gather table:
/// `out[co, r, ci, m] = weight[co, ci, index[r * M + m]]`.
///
/// # Shapes
/// `weight [Co, Ci, L]`, `index [n * M]` -> `[Co, n, Ci, M]`
pub fn expand_filters(weight: Tensor<3>, index: Tensor<1, Int>, n: usize) -> Tensor<4> {
    if on_flex(&weight) {
        return Tensor::from_dispatch(<Dispatch as SquareConvBackend>::expand_filters(
            weight.into_dispatch(),
            index.into_dispatch(),
            n,
        ));
    }
    let [co, ci, _] = weight.dims();
    let m = index.dims()[0] / n;
    weight
        // # Shapes: [Co, Ci, L] -> [Co, Ci, n*M] -> [Co, Ci, n, M] -> [Co, n, Ci, M]
        .select(2, index)
        .reshape([co, ci, n, m])
        .swap_dims(1, 2)
}

/// `conv2d(x, weight) + bias` with square stride and padding, followed
/// by leaky ReLU with slope `activation` if one is given (fused into the
/// convolution on the CPU).
///
/// # Shapes
/// `x [B, Ci, H, W]`, `weight [Co, Ci, k, k]`, `bias [Co]` -> `[B, Co, H', W']`
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
    activation: Option<f32>,
) -> Tensor<4> {
    if !on_flex(&x) {
        let options = ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1);
        return stock_activation(burn_conv2d(x, weight, Some(bias), options), activation);
    }
    square_conv(x, weight, bias, stride, padding, false, activation)
}

/// `conv_transpose2d(x, weight) + bias` with square stride and padding,
/// followed by leaky ReLU with slope `activation` if one is given.
///
/// # Shapes
/// `x [B, Ci, H, W]`, `weight [Ci, Co, k, k]`, `bias [Co]` -> `[B, Co, H', W']`
pub fn conv_transpose2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
    activation: Option<f32>,
) -> Tensor<4> {
    if !on_flex(&x) {
        let options = ConvTransposeOptions::new([stride; 2], [padding; 2], [0, 0], [1, 1], 1);
        let y = burn_conv_transpose2d(x, weight, Some(bias), options);
        return stock_activation(y, activation);
    }
    square_conv(x, weight, bias, stride, padding, true, activation)
}

fn stock_activation(y: Tensor<4>, activation: Option<f32>) -> Tensor<4> {
    match activation {
        Some(slope) => burn::tensor::activation::leaky_relu(y, slope as f64),
        None => y,
    }
}

/// Our convolution through the dispatch layer (flex tensors only).
fn square_conv(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
    transposed: bool,
    activation: Option<f32>,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as SquareConvBackend>::square_conv(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
        padding,
        transposed,
        activation.unwrap_or(1.0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn max_diff(a: &Tensor<4>, b: &Tensor<4>) -> f32 {
        (a.clone() - b.clone()).abs().max().into_scalar()
    }

    fn max_diff_any<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// Our kernels and burn's stock convolutions agree in value and in
    /// every gradient, for the geometries the models use.
    #[test]
    fn matches_burn_convolutions_in_value_and_gradient() {
        let device = Device::flex().autodiff();
        // (batch, c_in, size, c_out, kernel, stride, padding, transposed)
        let cases = [
            (3, 2, 8, 5, 3, 1, 1, false),
            (3, 6, 8, 2, 3, 1, 1, false),
            (2, 4, 6, 3, 2, 2, 0, false),
            (70, 3, 2, 4, 2, 2, 0, false),
            (3, 4, 3, 2, 2, 2, 0, true),
            (2, 3, 1, 4, 4, 4, 0, true),
        ];
        for (b, ci, s, co, k, stride, pad, transposed) in cases {
            let normal = Distribution::Normal(0.0, 1.0);
            let x = Tensor::<4>::random([b, ci, s, s], normal, &device);
            let w_shape = if transposed {
                [ci, co, k, k]
            } else {
                [co, ci, k, k]
            };
            let w = Tensor::<4>::random(w_shape, normal, &device);
            let bias = Tensor::<1>::random([co], normal, &device);
            // Without and with the fused leaky ReLU; the stock path applies
            // burn's leaky_relu after burn's convolution.
            for activation in [None, Some(0.1)] {
                let run = |ours: bool| {
                    let (x, w, bias) = (
                        x.clone().require_grad(),
                        w.clone().require_grad(),
                        bias.clone().require_grad(),
                    );
                    let y = match (ours, transposed) {
                        (true, false) => {
                            conv2d(x.clone(), w.clone(), bias.clone(), stride, pad, activation)
                        }
                        (true, true) => conv_transpose2d(
                            x.clone(),
                            w.clone(),
                            bias.clone(),
                            stride,
                            pad,
                            activation,
                        ),
                        (false, false) => burn_conv2d(
                            x.clone(),
                            w.clone(),
                            Some(bias.clone()),
                            ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1),
                        ),
                        (false, true) => burn_conv_transpose2d(
                            x.clone(),
                            w.clone(),
                            Some(bias.clone()),
                            ConvTransposeOptions::new([stride; 2], [pad; 2], [0, 0], [1, 1], 1),
                        ),
                    };
                    let y = if ours {
                        y
                    } else {
                        stock_activation(y, activation)
                    };
                    // A loss whose gradient differs per output element.
                    let weights = y.clone().detach().sin();
                    let grads = (y.clone() * weights).sum().backward();
                    (
                        y.detach(),
                        x.grad(&grads).unwrap(),
                        w.grad(&grads).unwrap(),
                        bias.grad(&grads).unwrap(),
                    )
                };
                let (y1, dx1, dw1, db1) = run(true);
                let (y2, dx2, dw2, db2) = run(false);
                let case = (b, ci, s, co, k, stride, pad, transposed, activation);
                assert_eq!(y1.dims(), y2.dims(), "{case:?}");
                assert!(max_diff(&y1, &y2) < 1e-4, "{case:?} value");
                assert!(max_diff(&dx1, &dx2) < 1e-4, "{case:?} dx");
                assert!(max_diff(&dw1, &dw2) < 1e-3, "{case:?} dw");
                assert!(max_diff_any(db1, db2) < 1e-3, "{case:?} db");
            }
        }
    }
}

#[cfg(test)]
mod pointwise_tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn avg_pool2_matches_burn_in_value_and_gradient() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([3, 5, 6, 8], Distribution::Normal(0.0, 1.0), &device);
        let run = |ours: bool| {
            let x = x.clone().require_grad();
            let y = if ours {
                avg_pool2(x.clone())
            } else {
                burn::tensor::module::avg_pool2d(
                    x.clone(),
                    burn::tensor::ops::AvgPoolOptions::new([2, 2]),
                )
            };
            let grads = (y.clone() * y.clone().detach().cos()).sum().backward();
            (y.detach(), x.grad(&grads).unwrap())
        };
        let ((y1, g1), (y2, g2)) = (run(true), run(false));
        assert_eq!(y1.dims(), [3, 5, 3, 4]);
        assert!((y1 - y2).abs().max().into_scalar::<f32>() < 1e-6);
        assert!((g1 - g2).abs().max().into_scalar::<f32>() < 1e-6);
    }

    /// The gather op equals burn's select + reshape + swap_dims in value
    /// and gradient, on a real D4 table (repeated indices included).
    #[test]
    fn expand_filters_matches_burn_select_in_value_and_gradient() {
        use crate::group::GroupKind;
        use crate::nn::filter_bank::filter_bank_indices;
        let device = Device::flex().autodiff();
        let group = GroupKind::D4.group();
        for lifting in [true, false] {
            let idx = filter_bank_indices(&group, lifting, 3);
            let (n, len) = (group.order(), idx.len());
            let l = len / n;
            let index = Tensor::<1, Int>::from_data(TensorData::new(idx, [len]), &device);
            let w = Tensor::<3>::random([3, 2, l], Distribution::Normal(0.0, 1.0), &device);
            let run = |ours: bool| {
                let w = w.clone().require_grad();
                let y = if ours {
                    expand_filters(w.clone(), index.clone(), n)
                } else {
                    w.clone()
                        .select(2, index.clone())
                        .reshape([3, 2, n, l])
                        .swap_dims(1, 2)
                };
                let grads = (y.clone() * y.clone().detach().sin()).sum().backward();
                (y.detach(), w.grad(&grads).unwrap())
            };
            let ((y1, g1), (y2, g2)) = (run(true), run(false));
            assert_eq!(y1.dims(), [3, n, 2, l]);
            assert_eq!(y1.into_data(), y2.into_data());
            assert!((g1 - g2).abs().max().into_scalar::<f32>() < 1e-5);
        }
    }
}
