//! Choosing the compute device: burn's flex CPU backend by default, burn's
//! wgpu backend (Vulkan, Metal, DX12) when built with `--features wgpu`.

use anyhow::{bail, Result};
use burn::tensor::Device;

/// The device named on the command line (`cpu` or `wgpu`).
pub fn select(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" | "gpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(not(feature = "wgpu"))]
        "wgpu" | "gpu" => bail!("--device {name}: this binary was built without GPU support; rebuild with `cargo build --release --features wgpu`"),
        other => bail!("--device {other}: unknown device (expected cpu or wgpu)"),
    }
}
