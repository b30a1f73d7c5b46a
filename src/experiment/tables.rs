//! The paper's tables as data: which trained model and head each row
//! reads, and the paper's accuracies beside it.

use serde::Serialize;

use crate::config::Config;
use crate::eval::features::Head;
use crate::group::GroupKind;

/// One of the paper's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PaperTable {
    /// Table 1: augmented (rotated and mirrored) MNIST.
    Mnist,
    /// Table 2: the NDSB 2015 plankton.
    Plankton,
    /// Not in the paper ("table 3"): Table 1's rows on augmented
    /// Fashion-MNIST, the second table this project can fetch data for
    /// (the plankton cannot be fetched here).
    FashionMnist,
}

impl PaperTable {
    /// The table with the paper's number (1 or 2).
    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            1 => Some(PaperTable::Mnist),
            2 => Some(PaperTable::Plankton),
            3 => Some(PaperTable::FashionMnist),
            _ => None,
        }
    }

    /// The paper's number of the table.
    pub fn number(self) -> u8 {
        match self {
            PaperTable::Mnist => 1,
            PaperTable::Plankton => 2,
            PaperTable::FashionMnist => 3,
        }
    }

    /// A title for reports.
    pub fn title(self) -> &'static str {
        match self {
            PaperTable::Mnist => "Table 1 (augmented MNIST",
            PaperTable::Plankton => "Table 2 (Plankton",
            PaperTable::FashionMnist => "Table 3, not in the paper (augmented Fashion-MNIST",
        }
    }

    /// The table's rows, in the paper's order.
    pub fn rows(self) -> Vec<PaperRow> {
        match self {
            PaperTable::Mnist => mnist_rows(),
            PaperTable::Plankton => plankton_rows(),
            PaperTable::FashionMnist => fashion_rows(),
        }
    }
}

/// A paper number the paper does not give.
const NONE: f64 = f64::NAN;

/// One row: the config, the head, its group, the paper's (logistic, MLP).
fn row(config: &'static str, head: Head, group: Option<GroupKind>, paper: (f64, f64)) -> PaperRow {
    PaperRow {
        config,
        head,
        group,
        logistic: paper.0,
        mlp: paper.1,
    }
}

/// Table 1 (augmented MNIST), and the attention models' Q before its
/// compression, chosen on validation (not in the paper;
/// docs/hyperparameters.md).
fn mnist_rows() -> Vec<PaperRow> {
    use GroupKind::{D12, D4};
    vec![
        row("baseline", Head::Code, None, (47.8, 58.3)),
        row("d4_gram", Head::Average, Some(D4), (58.2, 60.8)),
        row("d12_average", Head::Average, Some(D12), (80.7, 82.5)),
        row("d4_attention", Head::Attention, Some(D4), (81.6, 83.8)),
        row("d12_attention", Head::Attention, Some(D12), (72.6, 76.5)),
        row("d4_gram", Head::Gram, Some(D4), (65.2, 67.5)),
        row("d12_gram", Head::Gram, Some(D12), (87.9, 88.8)),
        row("d4_attention", Head::AttentionQ, Some(D4), (NONE, NONE)),
        row("d12_attention", Head::AttentionQ, Some(D12), (NONE, NONE)),
    ]
}

/// Table 2 (Plankton).
fn plankton_rows() -> Vec<PaperRow> {
    use GroupKind::{D12, D4};
    vec![
        row("plankton_baseline", Head::Code, None, (44.3, 53.3)),
        row("plankton_d4_gram", Head::Average, Some(D4), (48.0, 56.1)),
        row("plankton_d12_gram", Head::Average, Some(D12), (53.9, 58.3)),
        row(
            "plankton_d4_attention",
            Head::Attention,
            Some(D4),
            (49.1, 58.0),
        ),
        row(
            "plankton_d12_attention",
            Head::Attention,
            Some(D12),
            (49.5, 57.8),
        ),
        row("plankton_d4_gram", Head::Gram, Some(D4), (55.2, 57.8)),
        row("plankton_d12_gram", Head::Gram, Some(D12), (55.7, 62.2)),
    ]
}

/// Table 3: Table 1's rows on augmented Fashion-MNIST (the paper has no
/// Fashion-MNIST numbers).
fn fashion_rows() -> Vec<PaperRow> {
    use GroupKind::{D12, D4};
    let none = (NONE, NONE);
    vec![
        row("fashion_baseline", Head::Code, None, none),
        row("fashion_d4_gram", Head::Average, Some(D4), none),
        row("fashion_d12_gram", Head::Average, Some(D12), none),
        row("fashion_d4_attention", Head::Attention, Some(D4), none),
        row("fashion_d12_attention", Head::Attention, Some(D12), none),
        row("fashion_d4_gram", Head::Gram, Some(D4), none),
        row("fashion_d12_gram", Head::Gram, Some(D12), none),
        row("fashion_d4_attention", Head::AttentionQ, Some(D4), none),
        row("fashion_d12_attention", Head::AttentionQ, Some(D12), none),
    ]
}

/// One row of a paper table: which config, which head, the paper's numbers.
#[derive(Clone, Debug)]
pub struct PaperRow {
    /// Config file stem in `configs/`.
    pub config: &'static str,
    /// Head read from that run.
    pub head: Head,
    /// Group column.
    pub group: Option<GroupKind>,
    /// Paper's logistic-regression accuracy (%).
    pub logistic: f64,
    /// Paper's neural-network accuracy (%).
    pub mlp: f64,
}

/// Size of a reproduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// 5,000 training and 2,000 test images, 3 epochs: tens of minutes on 2 cores.
    Quick,
    /// The configs as written (all images, their epochs): hours on 2 cores.
    Full,
}

impl Preset {
    /// The preset's name in file names.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Quick => "quick",
            Preset::Full => "full",
        }
    }

    /// Shrink a row's config to the preset's size.
    pub fn apply(self, config: &mut Config) {
        if self == Preset::Quick {
            config.data.train_limit = 5000;
            config.data.test_limit = 2000;
            config.train.epochs = 3;
        }
    }
}
