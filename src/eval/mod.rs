//! Evaluation of frozen features: probes, the paper's tables, pictures.

pub mod features;
pub mod plots;
pub mod probes;
pub mod table;
