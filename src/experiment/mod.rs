//! Experiments above training and evaluation: the one evaluation of a
//! trained head ([`pipeline`]), the paper's tables ([`tables`]),
//! reproducing them end to end over seeds ([`reproduce`]), evaluating
//! trained runs as they are ([`evaluate`]), the equivariance check and
//! the invariance over the circle ([`check`]), the training-step
//! benchmark ([`bench`]), keeping a table's
//! evaluated rows so that it resumes ([`row_cache`]), the invariance and
//! attention studies ([`invariance`], [`pose`]), hyperparameter studies
//! on the validation split ([`tune`]), and the one report writer the
//! tables and evaluations use ([`report`]).

pub mod bench;
pub mod check;
pub mod evaluate;
pub mod invariance;
pub mod pipeline;
pub mod pose;
pub mod report;
pub mod reproduce;
pub mod row_cache;
pub mod tables;
pub mod tune;

pub use evaluate::{evaluate_runs, Evaluation};
pub use report::RowResult;
pub use reproduce::{reproduce, TableOptions};
pub use tables::{PaperTable, Preset};
