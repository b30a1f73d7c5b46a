//! Every invariant head against every group element, and Gram features
//! against a direct computation.

use burn::tensor::{Distribution, Tensor, TensorData};
use eqae::group::GroupKind;
use eqae::invariant::{average_pooling, GramElements, GramPooling};
use eqae::nn::field::{check_equivariance, relative_error, Field};
use eqae::nn::transform::to_vec;

mod common;
use common::device;

const EXACT: f64 = 1e-5;

fn random_v(n: usize, m: usize) -> Tensor<3> {
    Tensor::random([3, n, m], Distribution::Normal(0.0, 1.0), &device())
}

#[test]
fn average_pooling_is_invariant_for_every_element() {
    for kind in GroupKind::ALL {
        let g = kind.group();
        let v = random_v(g.order(), 6);
        let all: Vec<usize> = (0..g.order()).collect();
        let fields = (Field::Rows, Field::Invariant);
        for m in check_equivariance(average_pooling, &v, fields, &g, &all) {
            assert!(
                m.exact && m.error < EXACT,
                "{kind} {}: {}",
                g.element_name(m.element),
                m.error
            );
        }
    }
}

#[test]
fn gram_pooling_is_invariant_for_every_element() {
    for kind in GroupKind::ALL {
        let g = kind.group();
        for band in [0, 2] {
            let head = GramPooling::new(g.clone(), (0..g.order()).collect(), band, true);
            let v = random_v(g.order(), 5);
            assert_eq!(head.features(v.clone()).dims()[1], head.feature_count(5));
            let all: Vec<usize> = (0..g.order()).collect();
            let fields = (Field::Rows, Field::Invariant);
            for m in check_equivariance(|v| head.features(v), &v, fields, &g, &all) {
                assert!(
                    m.exact && m.error < EXACT,
                    "{kind} band {band} {}: {}",
                    g.element_name(m.element),
                    m.error
                );
            }
        }
    }
}

#[test]
fn left_regular_gram_features_would_not_be_invariant() {
    // Sanity check that the test above can fail: <u_i, lambda(R) u_j> is
    // not invariant in the non-abelian D4.
    let g = GroupKind::D4.group();
    let v = random_v(8, 3);
    let r = g.rotation(1);
    let lam = |v: &Tensor<3>| {
        let vr = Field::Rows.act(v, &g, r);
        v.clone().swap_dims(1, 2).matmul(vr)
    };
    let m = g.mirror().unwrap();
    let err = relative_error(&lam(&Field::Rows.act(&v, &g, m)), &lam(&v));
    assert!(err > 0.1, "{err}");
}

#[test]
fn gram_features_match_a_direct_computation() {
    let g = GroupKind::C4.group();
    // V[g, c] for 4 rows, 2 columns
    let rows = [[1.0f32, 2.0], [3.0, -1.0], [0.5, 4.0], [-2.0, 1.0]];
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let v = Tensor::<3>::from_data(TensorData::new(flat, [1, 4, 2]), &device());
    let h = g.rotation(1);
    let head = GramPooling::new(g.clone(), vec![0, h], 0, false);
    let got = to_vec(&head.features(v));
    // identity: upper triangle of V^T V
    let dot = |i: usize, j: usize, shift: usize| -> f32 {
        (0..4).map(|k| rows[k][i] * rows[(k + shift) % 4][j]).sum()
    };
    let mut want = vec![dot(0, 0, 0), dot(0, 1, 0), dot(1, 1, 0)];
    // h = R: q_ij = sum_g V[g, i] V[g + 1, j], all four entries (not an involution)
    want.extend([dot(0, 0, 1), dot(0, 1, 1), dot(1, 0, 1), dot(1, 1, 1)]);
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-5, "{got:?} vs {want:?}");
    }
}

#[test]
fn element_names_parse_and_errors_are_clear() {
    let d4 = GroupKind::D4.group();
    let parse = |names: &[&str]| GramElements::from_names(names).unwrap();
    assert_eq!(
        parse(&["e", "R^1", "M"]).resolve(&d4).unwrap(),
        vec![0, 1, 4]
    );
    // R is R^1, and a repeated element counts once
    assert_eq!(
        parse(&["R", "R^1", "R^3 M"]).resolve(&d4).unwrap(),
        vec![1, 7]
    );
    assert_eq!(parse(&[]).resolve(&d4).unwrap(), vec![0, 1, 4]);
    assert_eq!(parse(&["all"]).resolve(&d4).unwrap().len(), 8);
    let c4 = GroupKind::C4.group();
    assert_eq!(parse(&[]).resolve(&c4).unwrap(), vec![0, 1]);
    let err = parse(&["M"]).resolve(&c4).unwrap_err().to_string();
    assert!(err.contains("'M' is not an element"), "{err}");
    let err = parse(&["R^4"]).resolve(&c4).unwrap_err().to_string();
    assert!(err.contains("'R^4' is not an element"), "{err}");
    let err = GramElements::from_names(&["x"]).unwrap_err().to_string();
    assert!(err.contains("'x' is not a group element"), "{err}");
    // every element's name reads back as itself
    let d12 = GroupKind::D12.group();
    for a in 0..d12.order() {
        let e: eqae::group::Element = d12.element_name(a).parse().unwrap();
        assert_eq!(d12.find(e).unwrap(), a);
    }
}

/// Both heads of an attention model (its code, and Q before the
/// compression), image to features through `extract`, for every element
/// that maps the pixel grid onto itself, in every group.
#[test]
fn attention_heads_are_invariant_from_the_image_on() {
    use eqae::config::{Config, ModelKind};
    use eqae::data::Dataset;
    use eqae::eval::features::{extract, Head};
    use eqae::group::action::transform_square;
    use eqae::model::Autoencoder;

    let size = 16;
    for kind in GroupKind::ALL {
        let mut config = Config::default();
        config.model.kind = ModelKind::Attention;
        config.model.group = kind;
        config.model.channels = vec![2, 2];
        config.model.latent = 4;
        config.model.group_linear = vec![4];
        config.model.code = 6;
        config.data.image_size = size;
        let d = device();
        d.seed(5);
        let model = Autoencoder::new(&config.model, size, &d);
        let g = kind.group();
        let exact: Vec<usize> = (0..g.order()).filter(|&t| g.is_grid_exact(t)).collect();
        let upright: Vec<f32> = common::blob_images(3, size, 4)
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .unwrap();
        let mut images = Vec::new();
        for &t in &exact {
            for img in upright.chunks(size * size) {
                images.extend(transform_square(img, size, &g, t));
            }
        }
        let data = Dataset {
            pixels: images.into(),
            size,
            labels: vec![0; exact.len() * 3],
            class_names: vec!["blob".into()],
            file_names: None,
        };
        for (head, width) in [(Head::Attention, 6), (Head::AttentionQ, g.order() * 4)] {
            let f = extract(&model, &config, head, &data, &d, true).unwrap();
            assert_eq!(f.ncols(), width, "{kind} {head:?}");
            let scale = f.iter().fold(0.0f32, |a, v| a.max(v.abs())).max(1e-12);
            for (k, &t) in exact.iter().enumerate().skip(1) {
                for i in 0..3 {
                    let worst = f
                        .row(i)
                        .iter()
                        .zip(f.row(k * 3 + i).iter())
                        .fold(0.0f32, |a, (x, y)| a.max((x - y).abs() / scale));
                    assert!(
                        (worst as f64) < EXACT,
                        "{kind} {head:?} under {}: {worst:e}",
                        g.element_name(t)
                    );
                }
            }
        }
    }
}
