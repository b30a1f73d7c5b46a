//! Measured equivariance, layer by layer (our `check_equivariance`).
//!
//! For every generator of the grid group H (and of G for the layers over
//! G), compare `layer(t . x)` with `t . layer(x)` and report the relative
//! error. 30-degree elements go through bilinear interpolation and are
//! compared inside the centred disk for images.

use crate::nn::activation;
use burn::tensor::Tensor;

use super::EquivariantAutoencoder;
use crate::group::Group;
use crate::nn::transform::{
    act_on_group_maps, act_on_images, act_on_rows, relative_error, relative_error_in_disk,
};

/// One measured error.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CheckRow {
    /// Which part of the network.
    pub layer: String,
    /// Which group element, e.g. `R^1 M`.
    pub element: String,
    /// Which input (`random` or `blobs`).
    pub input: String,
    /// Relative error `||f(t.x) - t.f(x)|| / ||t.f(x)||`.
    pub error: f64,
    /// Whether the element acts exactly on the grid (error should be ~1e-7).
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
    let mut rows = Vec::new();
    let kind = model.group();
    let (h, g) = (kind.grid_group(), kind.group());
    let enc = &model.encoder;
    let pool = crate::nn::avg_pool2;
    let mut push = |layer: &str, group: &Group, t: usize, error: f64| {
        rows.push(CheckRow {
            layer: layer.to_string(),
            element: group.element_name(t),
            input: input.to_string(),
            error,
            // layers over G permute rows: exact for every element
            exact: group.is_grid_exact(t) || !layer.contains("conv") && !layer.contains("coder"),
        })
    };

    // Layers of the grid network, on the first branch's input.
    let lift = |x: Tensor<4>| pool(activation(enc.lift.forward(x)));
    let mut feature = lift(x.clone());
    for t in report_elements(&h) {
        let err = relative_error(
            &lift(act_on_images(x, &h, t)),
            &act_on_group_maps(&feature, &h, t),
        );
        push("lifting conv + activation + pool", &h, t, err);
    }
    for (k, conv) in enc.stages.iter().enumerate() {
        let layer = |f: Tensor<4>| pool(activation(conv.forward(f)));
        let out = layer(feature.clone());
        for t in report_elements(&h) {
            let err = relative_error(
                &layer(act_on_group_maps(&feature, &h, t)),
                &act_on_group_maps(&out, &h, t),
            );
            push(
                &format!("group conv {} + activation + pool", k + 1),
                &h,
                t,
                err,
            );
        }
        feature = out;
    }
    let collapsed = enc.collapse.forward(feature.clone());
    for t in report_elements(&h) {
        let err = relative_error(
            &enc.collapse.forward(act_on_group_maps(&feature, &h, t)),
            &act_on_group_maps(&collapsed, &h, t),
        );
        push("collapse conv", &h, t, err);
    }

    // Layers over G.
    let v0 = model
        .branches
        .merge_rows(enc.forward(model.branches.split_images(x.clone())));
    for (k, layer) in model.enc_linear.iter().enumerate() {
        let out = layer.forward(v0.clone());
        for t in report_elements(&g) {
            let err = relative_error(
                &layer.forward(act_on_rows(&v0, &g, t)),
                &act_on_rows(&out, &g, t),
            );
            push(&format!("group-linear {}", k + 1), &g, t, err);
        }
    }

    // Whole encoder and decoder.
    let v = model.embed(x.clone());
    let y = model.decode(v.clone());
    for t in report_elements(&g) {
        let err = relative_error(
            &model.embed(act_on_images(x, &g, t)),
            &act_on_rows(&v, &g, t),
        );
        push("encoder: V(t.x) vs lambda(t) V(x)", &g, t, err);
        let lhs = model.decode(act_on_rows(&v, &g, t));
        let rhs = act_on_images(&y, &g, t);
        let err = if g.is_grid_exact(t) {
            relative_error(&lhs, &rhs)
        } else {
            relative_error_in_disk(&lhs, &rhs)
        };
        push("decoder: D(lambda(t) V) vs t.D(V)", &g, t, err);
    }
    if let Some(att) = model.attention() {
        let w = att.weights(v.clone());
        let q = att.invariant(v.clone(), w.clone());
        for t in report_elements(&g) {
            let vt = act_on_rows(&v, &g, t);
            let err = relative_error(&att.invariant(vt.clone(), att.weights(vt)), &q);
            push("attention: Q(lambda(t) V) vs Q(V)", &g, t, err);
        }
    }
    rows
}
