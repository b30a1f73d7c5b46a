//! Evaluation of frozen features: probes, the paper's tables, pictures.

pub mod features;
pub mod probes;
pub mod table;
