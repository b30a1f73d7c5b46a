//! A trained run's feature extractor as an ONNX file, computing what
//! `eqae embed` computes for the same run and head, with nothing of eqae
//! needed to run it.
//!
//! The graph is the model in ordinary operators: every group convolution
//! is a `Conv` with its filter bank expanded once; the C12/D12 branches'
//! bilinear rotations are sparse (`Gather` of each output pixel's four
//! source pixels, `Mul` by their weights, `ReduceSum`), never dense `P x P`
//! matrices; the group-linear layers are `Gemm` with their expanded
//! weights; the heads are fixed `Gather`/`MatMul`/`ReduceSum` tables.
//!
//! Input `images` float32 `[N, 1, S, S]`, output `features` float32
//! `[N, F]`, N dynamic. Symbols: B batch, nb branches, P = S*S pixels,
//! n = |H| (grid group), N = |G|, L latent columns, m columns of V.

pub mod graph;
pub mod safetensors;

use std::path::PathBuf;

use anyhow::{bail, Result};
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::{
    type_proto, GraphProto, Message, ModelProto, OperatorSetIdProto, StringStringEntryProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

use crate::config::Config;
use crate::eval::features::{FeatureReader, Head, TrainedHead};
use crate::invariant::GramPart;
use crate::model::{Autoencoder, EquivariantAutoencoder};
use crate::nn::GroupLinear;
use crate::train::run_dir::WeightsInfo;
use graph::{host, host_ints, Graph, OPSET};

/// Name of the graph's input.
pub const INPUT: &str = "images";
/// Name of the graph's output.
pub const OUTPUT: &str = "features";

/// ONNX IR version written: 8 goes with opset 17.
const IR_VERSION: i64 = 8;

/// How images become the network's input, as the file's metadata says it.
pub fn preprocessing(config: &Config) -> String {
    let canvas = crate::data::folder::Canvas::of(&config.data);
    let placing = if canvas.content < canvas.size {
        format!(
            "an image of {s}x{s} is taken as it is; any other is resized to {c}x{c} and centred on a {s}x{s} zero canvas ({p} pixels of zeros on every side)",
            c = canvas.content,
            s = canvas.size,
            p = (canvas.size - canvas.content) / 2
        )
    } else {
        format!(
            "resized to {s}x{s} (an image of that size is taken as it is)",
            s = canvas.size
        )
    };
    format!(
        "grey levels: every sample scaled to [0, 1] (8 or 16 bits), colour as Rec. 709 luma (0.2126 R + 0.7152 G + 0.0722 B), transparency laid over white (grey * alpha + 1 - alpha), rounded to 256 levels; padded to a square with its border's mean grey level; {placing} (triangle filter); values / 255, and an image whose border is bright inverted (1 - value) so the background is dark; float32 [N, 1, {s}, {s}] (scripts/prepare.py does this in NumPy)",
        s = canvas.size
    )
}

/// What the file says about itself (`metadata_props`).
pub struct Description {
    /// The run's name.
    pub run: String,
    /// SHA-256 of the weights the file was made from, when recorded.
    pub weights_sha256: Option<String>,
}

/// The ONNX model of `reader`'s features.
pub fn onnx_model(
    reader: &FeatureReader,
    config: &Config,
    about: &Description,
) -> Result<ModelProto> {
    let mut g = Graph::default();
    let width = match reader.model() {
        Autoencoder::Baseline(m) => baseline_code(&mut g, m),
        Autoencoder::Equivariant(m) => {
            let v = equivariant_embedding(&mut g, m);
            let [n, cols] = [m.group().group().order(), columns(m)];
            head(&mut g, reader, m, &v, (n, cols))?
        }
    };
    g.name_last_output(OUTPUT);
    let s = config.data.image_size;
    let graph = GraphProto {
        name: format!("eqae_{}", config.name),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![value_info(INPUT, &[None, Some(1), Some(s), Some(s)])],
        output: vec![value_info(OUTPUT, &[None, Some(width)])],
        ..Default::default()
    };
    // the group as configs name it (`d12`)
    let group = match reader.model() {
        Autoencoder::Baseline(_) => "none".to_string(),
        Autoencoder::Equivariant(_) => config.model.group.name().to_string(),
    };
    let mut meta = vec![
        ("eqae_version", env!("CARGO_PKG_VERSION").to_string()),
        ("run", about.run.clone()),
        ("model", config.model.kind.name().to_string()),
        ("group", group),
        ("head", reader.head().name().to_string()),
        ("image_size", s.to_string()),
        ("features", width.to_string()),
        ("invariant", invariant(reader.head()).to_string()),
        ("preprocessing", preprocessing(config)),
        (
            "columns",
            "in the order of `eqae embed --head <head>` for the same run".to_string(),
        ),
    ];
    if let Some(sha) = &about.weights_sha256 {
        meta.push(("weights_sha256", sha.clone()));
    }
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
            ..Default::default()
        }],
        producer_name: "eqae".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "{} features of the eqae run {}: input {INPUT} float32 [N, 1, {s}, {s}], output {OUTPUT} float32 [N, {width}]",
            reader.head().label(),
            about.run
        ),
        graph: Some(graph).into(),
        metadata_props: meta
            .into_iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.into(),
                value: v,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

/// The model's bytes as written to a `.onnx` file.
pub fn to_bytes(model: &ModelProto) -> Result<Vec<u8>> {
    Ok(model.write_to_bytes()?)
}

/// Whether a head's features are invariant to the group.
fn invariant(head: Head) -> &'static str {
    match head {
        Head::Average | Head::Gram | Head::Attention | Head::AttentionQ => "yes",
        Head::Code | Head::V => "no",
    }
}

/// A float32 tensor's name, type and shape (`None`: the dynamic batch `N`).
fn value_info(name: &str, shape: &[Option<usize>]) -> ValueInfoProto {
    let dim = shape
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v as i64),
                None => dimension::Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: DataType::FLOAT as i32,
        shape: Some(TensorShapeProto {
            dim,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        type_: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

/// Columns m of V: the last group-linear layer's, or the grid network's L.
fn columns(m: &EquivariantAutoencoder) -> usize {
    match m.encoder_group_linear().last() {
        Some(layer) => layer.bias.dims()[0],
        None => {
            let (_, collapse) = m.grid_encoder().plain();
            collapse.weight.dims()[0] / m.grid_encoder().order()
        }
    }
}

/// Conv, activation, pool for each stage.
fn conv_stages(g: &mut Graph, mut h: String, convs: &[crate::nn::PlainConv]) -> String {
    for conv in convs {
        let c = g.conv(&h, conv);
        let a = g.activation(&c);
        h = g.avg_pool2(&a);
    }
    h
}

/// The baseline's code; returns its width.
///
/// # Shapes
/// `[B, 1, S, S] -> [B, C, s, s] -> [B, C*s*s] -> [B, D]`
fn baseline_code(g: &mut Graph, m: &crate::model::BaselineAutoencoder) -> usize {
    let (convs, linear) = m.plain_encoder();
    let h = conv_stages(g, INPUT.into(), &convs);
    let [k, d] = linear.weight.dims();
    let flat = g.reshape(&h, &[k]);
    let bias = match &linear.bias {
        Some(b) => host(&b.val()),
        None => vec![0.0; d],
    };
    g.linear(&flat, (k, d), host(&linear.weight.val()), bias);
    d
}

/// The equivariant embedding V; returns its name.
///
/// # Shapes
/// `[B, 1, S, S] -> [B*nb, 1, S, S] -> [B*nb, n*L, 1, 1] -> [B, N, L] -> [B, N, m]`
fn equivariant_embedding(g: &mut Graph, m: &EquivariantAutoencoder) -> String {
    let branches = m.branches();
    let nb = branches.count();
    let (stages, collapse) = m.grid_encoder().plain();
    let mut x = INPUT.to_string();
    if let Some((sources, weights, k)) = branches.input_taps() {
        let taps = weights.dims()[1];
        let p = taps / (nb * k);
        let s = (p as f64).sqrt().round() as usize;
        // # Shapes: [B, P] -gather-> [B, nb*P*K] -weigh-> -sum taps-> [B, nb*P] -> [B*nb, 1, S, S]
        let flat = g.reshape(&x, &[p]);
        let gathered = g.gather(&flat, host_ints(&sources), 1);
        let w = g.floats("branch_weights", &[1, taps], host(&weights));
        let weighted = g.mul(&gathered, &w);
        let per_tap = g.reshape(&weighted, &[nb * p, k]);
        x = g.reduce_sum(&per_tap, &[2], &[1, s, s]);
    }
    let h = conv_stages(g, x, &stages);
    let collapsed = g.conv(&h, &collapse);
    let n = m.grid_encoder().order();
    let l = collapse.weight.dims()[0] / n;
    // # Shapes: [B*nb, L*n, 1, 1] -> [B*nb, L, n] -> [B*nb, n, L] -> [B, nb*n, L] -> [B, N, L]
    let lhn = g.reshape(&collapsed, &[l, n]);
    let rows = g.transpose(&lhn, &[0, 2, 1]);
    let merged = g.reshape(&rows, &[nb * n, l]);
    let order = host_ints(&branches.row_order());
    let mut v = if order.iter().enumerate().all(|(i, &r)| r == i as i64) {
        merged
    } else {
        g.gather(&merged, order, 1)
    };
    let layers = m.encoder_group_linear();
    for (i, layer) in layers.iter().enumerate() {
        v = group_linear(g, &v, layer, nb * n);
        if i + 1 < layers.len() {
            v = g.activation(&v);
        }
    }
    v
}

/// A group-linear layer: one `Gemm` with the expanded weight.
///
/// # Shapes
/// `[B, N, Ci] -> [B, N*Ci] -> [B, N*Co] -> [B, N, Co]`
fn group_linear(g: &mut Graph, v: &str, layer: &GroupLinear, n: usize) -> String {
    let w = layer.expanded_weight();
    let [rows, cols] = w.dims();
    let co = cols / n;
    let bias = host(&layer.bias.val());
    // the bias is shared by the group: column (g, c') gets b[c']
    let tiled: Vec<f32> = (0..n).flat_map(|_| bias.iter().copied()).collect();
    let flat = g.reshape(v, &[rows]);
    let out = g.linear(&flat, (rows, cols), host(&w), tiled);
    g.reshape(&out, &[n, co])
}

/// The head over V `[B, N, m]`; returns the number of features.
fn head(
    g: &mut Graph,
    reader: &FeatureReader,
    m: &EquivariantAutoencoder,
    v: &str,
    (n, cols): (usize, usize),
) -> Result<usize> {
    Ok(match reader.head() {
        Head::Average => {
            // # Shapes: [B, N, m] -> [B, m]
            g.reduce_mean(v, &[1], &[cols]);
            cols
        }
        Head::V => {
            g.reshape(v, &[n * cols]);
            n * cols
        }
        Head::Gram => {
            let Some(gram) = reader.gram() else {
                bail!("the Gram head has no tables")
            };
            let vt = g.transpose(v, &[0, 2, 1]);
            let mut parts = Vec::new();
            let mut width = 0;
            for part in gram.parts(cols) {
                parts.push(match part {
                    GramPart::Products { perm, kept } => {
                        // # Shapes: rho(h) V [B, N, m]; V^T rho(h) V [B, m, m] -> [B, m*m] -> [B, kept]
                        width += kept.len();
                        let vh = g.gather(v, perm.iter().map(|&i| i as i64).collect(), 1);
                        let q = g.matmul(&vt, &vh);
                        let flat = g.reshape(&q, &[cols * cols]);
                        g.gather(&flat, kept, 1)
                    }
                    GramPart::Autocorrelation { perm } => {
                        // # Shapes: sum_g V[g, i] V[perm g, i] -> [B, m]
                        width += cols;
                        let vr = g.gather(v, perm.iter().map(|&i| i as i64).collect(), 1);
                        let prod = g.mul(v, &vr);
                        g.reduce_sum(&prod, &[1], &[cols])
                    }
                });
            }
            g.concat(&parts, 1);
            width
        }
        Head::Attention | Head::AttentionQ => {
            let Some(att) = m.attention() else {
                bail!("the model has no attention block")
            };
            // weights: # Shapes: [B, N, m] -> [B, N, 1] -> [B, N] -softmax-> [B, N]
            let logits = group_linear(g, v, att.logits_layer(), n);
            let logits = g.reshape(&logits, &[n]);
            let w = g.softmax(&logits, 1);
            // Q: # Shapes: [B, N*N, m] -> [B, N(t), N(g), m] * w [B, N, 1, 1] -sum t-> [B, N, m]
            let rows = g.gather(v, host_ints(&att.invariant_table()), 1);
            let rows = g.reshape(&rows, &[n, n, cols]);
            let w = g.reshape(&w, &[n, 1, 1]);
            let weighted = g.mul(&rows, &w);
            let flat = g.reduce_sum(&weighted, &[1], &[n * cols]);
            match (reader.head(), att.compression()) {
                (Head::Attention, Some(lin)) => {
                    let [k, d] = lin.weight.dims();
                    let bias = match &lin.bias {
                        Some(b) => host(&b.val()),
                        None => vec![0.0; d],
                    };
                    g.linear(&flat, (k, d), host(&lin.weight.val()), bias);
                    d
                }
                _ => n * cols,
            }
        }
        Head::Code => bail!("the code head belongs to the baseline"),
    })
}

/// What `eqae export` writes.
pub struct ExportRequest {
    /// The trained run.
    pub run: PathBuf,
    /// Its head (None: the model's first, as for `eqae embed`).
    pub head: Option<Head>,
    /// The `.onnx` file.
    pub out: PathBuf,
    /// Also the trained weights as `<out>.safetensors`.
    pub safetensors: bool,
}

/// Export the run's head as ONNX (and its weights), both published
/// together, and say what was written.
pub fn export_run(request: &ExportRequest) -> Result<()> {
    // export is fixed linear algebra on the host: always the CPU
    let device = crate::device::select(crate::device::Backend::Cpu)?;
    let TrainedHead {
        run,
        config,
        model,
        reader,
    } = TrainedHead::load(&request.run, request.head, &device)?;
    crate::atomic::check_output(&request.out, "onnx", "--out")?;
    let tensors = request.out.with_extension("safetensors");
    if request.safetensors {
        crate::atomic::check_writable(&tensors, "--safetensors")?;
    }
    // what a killed export left
    crate::atomic::remove_stale(&request.out);
    crate::atomic::remove_stale(&tensors);
    let head = reader.head();
    let weights_sha256 = WeightsInfo::read(&run.model())?.and_then(|i| i.sha256);
    let about = Description {
        run: config.name.clone(),
        weights_sha256: weights_sha256.clone(),
    };
    let onnx = onnx_model(&reader, &config, &about)?;
    let features = onnx.graph.output[0]
        .type_
        .tensor_type()
        .shape
        .dim
        .last()
        .map(|d| d.dim_value())
        .unwrap_or(0);
    let bytes = to_bytes(&onnx)?;
    let weights = if request.safetensors {
        let meta = [
            ("run", config.name.clone()),
            ("model", config.model.kind.name().to_string()),
            ("eqae_version", env!("CARGO_PKG_VERSION").to_string()),
            ("weights_sha256", weights_sha256.unwrap_or_default()),
        ];
        Some(safetensors::to_bytes(&model, &meta)?)
    } else {
        None
    };
    // the pair is published together: never a new model beside old weights
    let mut files: Vec<(&std::path::Path, &[u8])> = vec![(&request.out, &bytes)];
    if let Some(w) = &weights {
        files.push((&tensors, w));
    }
    crate::atomic::write_together(&files)?;
    println!(
        "wrote {} ({} head, {:.1} MiB): input images float32 [N, 1, {s}, {s}], output features float32 [N, {features}]",
        request.out.display(),
        head.name(),
        bytes.len() as f64 / (1 << 20) as f64,
        s = config.data.image_size,
    );
    if let Some(w) = &weights {
        println!(
            "wrote {} ({:.1} MiB, the trained weights; names explained in its metadata)",
            tensors.display(),
            w.len() as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}
