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

/// Keep large buffers in the process heap instead of fresh memory maps.
///
/// A training step allocates and frees tens of megabytes per layer. With
/// glibc's defaults each such buffer is its own mmap: freeing it unmaps
/// (a TLB shootdown on every core) and the next one page-faults in zeroed
/// pages again; in the profile that kernel work was about a tenth of the
/// samples of a CPU training step.
/// Called once at start-up by the binary.
pub fn keep_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before any
    // other thread exists. (A glibc that refuses the value keeps its
    // defaults; nothing else changes.)
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
