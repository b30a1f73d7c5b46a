//! The run's trainable weights as safetensors (through burn-store), for
//! users who fine-tune in another framework. Names are the module paths;
//! [`TENSORS`] says what each kind is, and is written into the file's
//! metadata too.

use anyhow::{Context, Result};
use burn::store::{ModuleSnapshot, SafetensorsStore};

use crate::model::Autoencoder;

/// What the tensors are, by the end of their names.
pub const TENSORS: &str = "\
Only trained tensors are stored. \
*.bank.weight [Co, Ci, Nin*k*k]: base filter of a group convolution (Nin = 1 for the lifting layer, |H| otherwise); the filter bank is it gathered by the fixed table of filter_bank_indices (src/nn/filter_bank.rs) and reshaped to [Co*|H|, Ci*Nin, k, k], output channel c*|H| + r (the expanded banks are the Conv weights of the ONNX file). \
*.bank.bias [Co]: one bias per channel, shared by its |H| copies. \
enc_linear.*/dec_linear.*.weight [|G|, Ci*Co]: base weight of a group-linear layer, slice a = W[a] stored (c, c'), out[g] = sum_h W[h^-1 g] V[h]; its bias [Co] is shared over the group. \
decoder.*.up: transposed group convolutions (bank as above, bias [Co]). \
attention.logits: a group-linear layer to one column; attention.compress/expand: plain linear maps [in, out]. \
Baseline: enc_convs.*/dec_convs.* [out, in, k, k], dec_ups.* [in, out, 2, 2], enc_linear/dec_linear [in, out].";

/// The model's tensors as safetensors bytes, with `metadata` beside
/// the description of the tensors.
pub fn to_bytes(model: &Autoencoder, metadata: &[(&str, String)]) -> Result<Vec<u8>> {
    let mut store = SafetensorsStore::from_bytes(None)
        .skip_enum_variants(true)
        .metadata("tensors", TENSORS);
    for (k, v) in metadata {
        store = store.metadata(*k, v.clone());
    }
    model
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot collect the weights")?;
    store
        .get_bytes()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot write safetensors")
}
