//! Measured equivariance of a model, block by block, on the production
//! path (the same fused stage functions the encoder runs), with
//! [`check_equivariance`]: for each reported element `t`, compare
//! `block(t . x)` with `t . block(x)` in the fields the block declares.
//! Whether an element must be exact is decided by the element and the
//! fields (see [`crate::nn::field::Measured`]), not by the block's name.

use burn::tensor::Tensor;

use super::gcnn::GcnnEncoder;
use super::EquivariantAutoencoder;
use crate::group::Group;
use crate::nn::field::{check_equivariance, Field, Measured};
use crate::nn::{GroupConv, GroupLinear, LiftingConv};

/// One measured error.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CheckRow {
    /// Which part of the network.
    pub layer: String,
    /// Which group element, e.g. `R^1 M`.
    pub element: String,
    /// Which input (`random` or `shapes`).
    pub input: String,
    /// Relative error `||f(t.x) - t.f(x)|| / ||t.f(x)||`.
    pub error: f64,
    /// Whether the element acts exactly (error should be ~1e-7).
    pub exact: bool,
}

/// The elements worth reporting: generators, plus the quarter turn for
/// groups with 30-degree rotations.
pub fn report_elements(g: &Group) -> Vec<usize> {
    let mut els = g.generators();
    if g.n > 4 {
        els.push(g.rotation(g.n / 4));
        if let Some(m) = g.mirror() {
            els.push(g.compose(g.rotation(g.n / 4), m));
        }
    }
    els
}

/// Check every block of `model` on input images `x` (`[B, 1, S, S]`).
pub fn check_model(model: &EquivariantAutoencoder, x: &Tensor<4>, input: &str) -> Vec<CheckRow> {
    let kind = model.group();
    let (h, g) = (kind.grid_group(), kind.group());
    let mut rows = Vec::new();
    let mut push = |layer: String, group: &Group, measured: Vec<Measured>| {
        rows.extend(measured.into_iter().map(|m| CheckRow {
            layer: layer.clone(),
            element: group.element_name(m.element),
            input: input.to_string(),
            error: m.error,
            exact: m.exact,
        }))
    };

    // The grid network's stages, over H, on the first branch's input.
    let enc: &GcnnEncoder = model.grid_encoder();
    let (hs, gs) = (report_elements(&h), report_elements(&g));
    push(
        "lifting conv + activation + pool".into(),
        &h,
        check_equivariance(|x| enc.lift_stage(x), x, LiftingConv::FIELDS, &h, &hs),
    );
    let mut feature = enc.lift_stage(x.clone());
    for k in 0..enc.group_stages() {
        push(
            format!("group conv {} + activation + pool", k + 1),
            &h,
            check_equivariance(
                |f| enc.group_stage(k, f),
                &feature,
                GroupConv::FIELDS,
                &h,
                &hs,
            ),
        );
        feature = enc.group_stage(k, feature);
    }
    push(
        "collapse conv".into(),
        &h,
        check_equivariance(|f| enc.collapse(f), &feature, GroupConv::FIELDS, &h, &hs),
    );

    // The group-linear layers, over G.
    let v0 = model.spatial_embed(x.clone());
    for (k, layer) in model.encoder_group_linear().iter().enumerate() {
        push(
            format!("group-linear {}", k + 1),
            &g,
            check_equivariance(|v| layer.forward(v), &v0, GroupLinear::FIELDS, &g, &gs),
        );
    }

    // The whole encoder and decoder, and the attention's invariant.
    let (image, rows_g) = EquivariantAutoencoder::FIELDS;
    push(
        "encoder: V(t.x) vs lambda(t) V(x)".into(),
        &g,
        check_equivariance(|x| model.embed(x), x, (image, rows_g), &g, &gs),
    );
    let v = model.embed(x.clone());
    push(
        "decoder: D(lambda(t) V) vs t.D(V)".into(),
        &g,
        check_equivariance(|v| model.decode(v), &v, (rows_g, image), &g, &gs),
    );
    if let Some(att) = model.attention() {
        let q = |v: Tensor<3>| att.invariant(v.clone(), att.weights(v));
        push(
            "attention: Q(lambda(t) V) vs Q(V)".into(),
            &g,
            check_equivariance(q, &v, (Field::Rows, Field::Invariant), &g, &gs),
        );
    }
    rows
}
