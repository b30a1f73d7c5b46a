//! A small builder of ONNX graphs over the `onnx-protobuf` messages: named
//! constants (initializers), one node per call, the names made unique.
//! Only the operators the exporter needs, at opset [`OPSET`].
//!
//! Every tensor's first axis is the batch, left dynamic: reshapes write
//! `-1` there and fixed sizes elsewhere.

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{AttributeProto, NodeProto, TensorProto};

use crate::nn::PlainConv;
use crate::nn::LEAKY_SLOPE;

/// The ONNX operator set the files use: 17 is read by ONNX Runtime,
/// onnx2torch and the browser runtimes alike.
pub const OPSET: i64 = 17;

/// Nodes and constants of one graph.
#[derive(Default)]
pub struct Graph {
    /// The nodes, in an order where every input is made before it is used.
    pub nodes: Vec<NodeProto>,
    /// The constants (weights and index tables).
    pub initializers: Vec<TensorProto>,
    count: usize,
}

fn attribute(name: &str, kind: AttributeType) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: kind.into(),
        ..Default::default()
    }
}

/// An integer attribute.
fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        i: value,
        ..attribute(name, AttributeType::INT)
    }
}

/// An integer-list attribute.
fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: values.to_vec(),
        ..attribute(name, AttributeType::INTS)
    }
}

/// A float attribute.
fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        f: value,
        ..attribute(name, AttributeType::FLOAT)
    }
}

fn dims(shape: &[usize]) -> Vec<i64> {
    shape.iter().map(|&d| d as i64).collect()
}

impl Graph {
    /// A fresh name from a hint.
    fn fresh(&mut self, hint: &str) -> String {
        self.count += 1;
        format!("{hint}_{}", self.count)
    }

    /// A float32 constant of `shape` (row-major `data`).
    pub fn floats(&mut self, hint: &str, shape: &[usize], data: Vec<f32>) -> String {
        let bytes = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.constant(hint, shape, (DataType::FLOAT, data.len()), bytes)
    }

    /// An int64 constant of `shape`.
    pub fn int64s(&mut self, hint: &str, shape: &[usize], data: Vec<i64>) -> String {
        let bytes = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.constant(hint, shape, (DataType::INT64, data.len()), bytes)
    }

    /// A constant of `len` values of type `kind`, little-endian `bytes`.
    fn constant(
        &mut self,
        hint: &str,
        shape: &[usize],
        (kind, len): (DataType, usize),
        bytes: Vec<u8>,
    ) -> String {
        assert_eq!(shape.iter().product::<usize>(), len, "{hint}");
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims(shape),
            data_type: kind as i32,
            raw_data: bytes,
            ..Default::default()
        });
        name
    }

    /// One node with one output; returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.nodes.push(NodeProto {
            name: format!("{out}_node"),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute: attributes,
            ..Default::default()
        });
        out
    }

    /// Rename the output of the last node (the graph's output gets its
    /// documented name).
    pub fn name_last_output(&mut self, name: &str) {
        let node = self.nodes.last_mut().expect("a node");
        node.output[0] = name.to_string();
    }

    /// `x` reshaped to `[-1, rest...]` (the batch first).
    pub fn reshape(&mut self, x: &str, rest: &[usize]) -> String {
        let mut shape = vec![-1i64];
        shape.extend(dims(rest));
        let len = shape.len();
        let shape = self.int64s("shape", &[len], shape);
        self.node("Reshape", &[x, &shape], vec![])
    }

    /// `x` gathered along `axis` at `indices`.
    pub fn gather(&mut self, x: &str, indices: Vec<i64>, axis: i64) -> String {
        let len = indices.len();
        let idx = self.int64s("indices", &[len], indices);
        self.node("Gather", &[x, &idx], vec![int("axis", axis)])
    }

    /// Axes permuted.
    pub fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.node("Transpose", &[x], vec![ints("perm", perm)])
    }

    /// Sum over `axes`, reshaped to `[-1, rest...]`. (The reduction keeps
    /// its axes and a `Reshape` drops them: onnx2torch ignores `keepdims = 0`.)
    pub fn reduce_sum(&mut self, x: &str, axes: &[i64], rest: &[usize]) -> String {
        let axes = self.int64s("axes", &[axes.len()], axes.to_vec());
        let sum = self.node("ReduceSum", &[x, &axes], vec![int("keepdims", 1)]);
        self.reshape(&sum, rest)
    }

    /// Mean over `axes`, reshaped to `[-1, rest...]` (at opset 17 the axes
    /// are an attribute).
    pub fn reduce_mean(&mut self, x: &str, axes: &[i64], rest: &[usize]) -> String {
        let mean = self.node(
            "ReduceMean",
            &[x],
            vec![ints("axes", axes), int("keepdims", 1)],
        );
        self.reshape(&mean, rest)
    }

    /// Elementwise product (with broadcasting).
    pub fn mul(&mut self, a: &str, b: &str) -> String {
        self.node("Mul", &[a, b], vec![])
    }

    /// Batched matrix product.
    pub fn matmul(&mut self, a: &str, b: &str) -> String {
        self.node("MatMul", &[a, b], vec![])
    }

    /// `x W + b` for `x [B, K]`, `W [K, M]` (row-major) and `b [M]`.
    pub fn linear(&mut self, x: &str, (k, m): (usize, usize), w: Vec<f32>, b: Vec<f32>) -> String {
        let w = self.floats("weight", &[k, m], w);
        let b = self.floats("bias", &[m], b);
        self.node("Gemm", &[x, &w, &b], vec![])
    }

    /// The models' activation, leaky ReLU.
    pub fn activation(&mut self, x: &str) -> String {
        self.node("LeakyRelu", &[x], vec![float("alpha", LEAKY_SLOPE)])
    }

    /// 2x2 average pooling, stride 2.
    pub fn avg_pool2(&mut self, x: &str) -> String {
        self.node(
            "AveragePool",
            &[x],
            vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
        )
    }

    /// Softmax over `axis`.
    pub fn softmax(&mut self, x: &str, axis: i64) -> String {
        self.node("Softmax", &[x], vec![int("axis", axis)])
    }

    /// Concatenation along `axis`.
    pub fn concat(&mut self, xs: &[String], axis: i64) -> String {
        let inputs: Vec<&str> = xs.iter().map(String::as_str).collect();
        self.node("Concat", &inputs, vec![int("axis", axis)])
    }

    /// An ordinary convolution with the given weights (host copies).
    pub fn conv(&mut self, x: &str, conv: &PlainConv) -> String {
        let shape = conv.weight.dims();
        let w = self.floats("conv_weight", &shape, host(&conv.weight));
        let b = self.floats("conv_bias", &[shape[0]], host(&conv.bias));
        let (p, s, k) = (conv.padding as i64, conv.stride as i64, shape[2] as i64);
        self.node(
            "Conv",
            &[x, &w, &b],
            vec![
                ints("kernel_shape", &[k, k]),
                ints("pads", &[p, p, p, p]),
                ints("strides", &[s, s]),
            ],
        )
    }
}

/// A float tensor's values, row-major.
pub fn host<const D: usize>(t: &burn::tensor::Tensor<D>) -> Vec<f32> {
    crate::nn::transform::to_vec(t)
}

/// An integer tensor's values.
pub fn host_ints(t: &burn::tensor::Tensor<1, burn::tensor::Int>) -> Vec<i64> {
    t.to_data().iter::<i64>().collect()
}
