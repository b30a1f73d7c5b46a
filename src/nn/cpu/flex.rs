//! The flex (CPU) backend's side of [`SquareConvBackend`]: tensors in,
//! contiguous `f32` slices to the kernels of this folder, tensors out.

use burn::backend::flex::FlexTensor;
use burn::backend::{Flex, TensorMetadata};
use burn::tensor::{DType, TensorData};

use super::geometry::{ConvGeometry, Window};
use super::{conv, gather, pointwise};
use crate::nn::extension::{SquareConv, SquareConvBackend};

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

/// The geometry of `conv2d(x, weight)` (weight `[Cz, Ca, k, k]`), or with
/// `transposed` of `conv_transpose2d(x, weight)` (weight `[Cz, Ca, k, k]`
/// too: the transposed convolution reads the same weight the other way).
fn geometry(
    x: &FlexTensor,
    w: &FlexTensor,
    stride: usize,
    padding: usize,
    transposed: bool,
) -> ConvGeometry {
    let [b, cx, hx, wx] = dims4(x);
    let [cz, ca, k, k2] = dims4(w);
    let c_in = if transposed { cz } else { ca };
    assert!(
        k == k2 && c_in == cx,
        "weight {:?} for input {:?}",
        w.shape(),
        x.shape()
    );
    let window = Window::new(k, stride, padding);
    if transposed {
        ConvGeometry::transposed([b, cz, hx, wx], ca, window)
    } else {
        ConvGeometry::conv([b, ca, hx, wx], cz, window)
    }
}

fn conv_forward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    stride: usize,
    padding: usize,
    slope: f32,
) -> FlexTensor {
    let (x, w, bias) = (contiguous(x), contiguous(weight), contiguous(bias));
    let g = geometry(&x, &w, stride, padding, false);
    let z = conv::forward(&g, slice(&x), slice(&w), Some(slice(&bias)), slope);
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
    let g = geometry(&x, &w, stride, padding, false);
    let grads = conv::backward(
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
    let g = geometry(&x, &w, stride, padding, true);
    let mut y = conv::backward(&g, None, Some(slice(&w)), slice(&x), false)
        .a
        .expect("transposed convolution output");
    let plane = g.ha * g.wa;
    pointwise::bias_and_activation_par(&mut y, Some(slice(&bias)), g.ca, plane, slope);
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
    let g = geometry(&x, &w, stride, padding, true);
    // The transposed conv's input gradient is the plain conv of its
    // output gradient; its weight gradient is the conv's with the roles
    // of input (here: grad) and output gradient (here: x) swapped.
    let dx = if need_x {
        conv::forward(&g, slice(&grad), slice(&w), None, 1.0)
    } else {
        vec![0.0; g.batch * g.cz * g.hz * g.wz]
    };
    let dw = conv::backward(&g, Some(slice(&grad)), None, slice(&x), false)
        .w
        .expect("weight gradient");
    let db = pointwise::channel_sums(slice(&grad), g.batch, g.ca);
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
        conv: SquareConv,
    ) -> FlexTensor {
        let SquareConv {
            stride,
            padding,
            slope,
            ..
        } = conv;
        if conv.transposed {
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
        conv: SquareConv,
        need_x: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let SquareConv {
            stride,
            padding,
            slope,
            transposed,
        } = conv;
        let grad = if slope == 1.0 {
            grad
        } else {
            // The gradient before the fused activation.
            let (y, grad) = (contiguous(output), contiguous(grad));
            let pre = pointwise::leaky_relu_backward(slice(&grad), slice(&y), slope);
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
        let out = pointwise::par_map(slice(&x), move |v| pointwise::leaky_relu(v, slope));
        tensor(out, x.shape())
    }

    fn leaky_relu_fused_backward(x: FlexTensor, grad: FlexTensor, slope: f32) -> FlexTensor {
        let (x, grad) = (contiguous(x), contiguous(grad));
        let out = pointwise::leaky_relu_backward(slice(&grad), slice(&x), slope);
        tensor(out, x.shape())
    }

    fn expand_filters(weight: FlexTensor, index: FlexTensor, n: usize) -> FlexTensor {
        let w = contiguous(weight);
        let s = w.shape();
        let (co, ci, l) = (s[0], s[1], s[2]);
        let index = gather_table(&index, l);
        let m = index.len() / n;
        tensor(
            gather::expand(slice(&w), co, ci, l, &index, n),
            [co, n, ci, m],
        )
    }

    fn expand_filters_backward(grad: FlexTensor, index: FlexTensor, base_len: usize) -> FlexTensor {
        let grad = contiguous(grad);
        let [co, n, ci, m] = dims4(&grad);
        let index = gather_table(&index, base_len);
        assert_eq!(index.len(), n * m, "filter table of the wrong length");
        let dw = gather::expand_backward(slice(&grad), [co, n, ci, m], &index, base_len);
        tensor(dw, [co, ci, base_len])
    }

    fn avg_pool2_fused(x: FlexTensor) -> FlexTensor {
        let x = contiguous(x);
        let [b, c, h, w] = dims4(&x);
        tensor(
            pointwise::avg_pool2(slice(&x), b * c, h, w),
            [b, c, h / 2, w / 2],
        )
    }

    fn avg_pool2_fused_backward(grad: FlexTensor) -> FlexTensor {
        let grad = contiguous(grad);
        let [b, c, ho, wo] = dims4(&grad);
        let dx = pointwise::avg_pool2_backward(slice(&grad), b * c, ho, wo);
        tensor(dx, [b, c, 2 * ho, 2 * wo])
    }
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
