//! The autodiff side of [`SquareConvBackend`], for any inner backend that
//! implements it: each operation records a node on burn's tape whose
//! backward calls the inner backend's gradient kernel. Written once, so a
//! GPU implementation of the extension gets its backward for free.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, AutodiffBackend, Backend, TensorMetadata};

use super::extension::{SquareConv, SquareConvBackend};

/// The three gradients `(dx, dweight, dbias)` of a convolution.
type Triple<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

#[derive(Debug)]
struct SquareConvBackward;

/// What the backward pass of a convolution keeps: the checkpointed input
/// and weight, the output when an activation was fused (its sign is the
/// activation's mask), and the convolution's settings.
type ConvState<B> = (NodeId, NodeId, Option<FloatTensor<B>>, SquareConv);

impl<B: Backend + SquareConvBackend> Backward<B, 3> for SquareConvBackward {
    type State = ConvState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, cp: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, w_state, output, conv) = ops.state;
        let x = cp.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let w = cp.retrieve_node_output::<B::FloatTensorPrimitive>(w_state);
        let need_x = node_x.is_some();
        let output = output.unwrap_or_else(|| grad.clone());
        let (dx, dw, db) = B::square_conv_backward(x, w, output, grad, conv, need_x);
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
        conv: SquareConv,
    ) -> FloatTensor<Self> {
        let prep = SquareConvBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful();
        let run = |x: FloatTensor<Self>, w: FloatTensor<Self>, b: FloatTensor<Self>| {
            let (x, w, b) = (x.into_primitive(), w.into_primitive(), b.into_primitive());
            B::square_conv(x, w, b, conv)
        };
        match prep {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let w_state = prep.checkpoint(&weight);
                let y = run(x, weight, bias);
                // The output shares its buffer with the next layer's input.
                let output = (conv.slope != 1.0).then(|| y.clone());
                let state = (x_state, w_state, output, conv);
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
        conv: SquareConv,
        need_x: bool,
    ) -> Triple<Self> {
        let (dx, dw, db) = B::square_conv_backward(
            x.into_primitive(),
            weight.into_primitive(),
            output.into_primitive(),
            grad.into_primitive(),
            conv,
            need_x,
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
