//! Choosing the compute device: burn's flex CPU backend by default, burn's
//! wgpu backend (Vulkan, Metal, DX12) when built with `--features wgpu`,
//! and the same backend pinned to Vulkan and SPIR-V with `--features vulkan`.

use anyhow::Result;
use burn::tensor::Device;

/// The compute backends eqae can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// burn's flex CPU backend.
    Cpu,
    /// burn's wgpu backend (Vulkan, Metal, DX12); needs `--features wgpu`.
    Wgpu,
    /// burn's wgpu backend pinned to Vulkan with kernels in SPIR-V;
    /// needs `--features vulkan`.
    Vulkan,
}

impl Backend {
    /// The name `--device` takes, and run reports record.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Vulkan => "vulkan",
        }
    }
}

/// The device of a backend, or why this build has none.
pub fn select(backend: Backend) -> Result<Device> {
    match backend {
        Backend::Cpu => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(not(feature = "wgpu"))]
        Backend::Wgpu => anyhow::bail!("--device wgpu: this binary was built without GPU support; rebuild with `cargo build --release --features wgpu`"),
        #[cfg(feature = "vulkan")]
        Backend::Vulkan => Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(not(feature = "vulkan"))]
        Backend::Vulkan => anyhow::bail!("--device vulkan: this binary was built without Vulkan support; rebuild with `cargo build --release --features vulkan`"),
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

/// Memory the machine can still give, in bytes (Linux `MemAvailable`).
pub fn available_bytes() -> Option<f64> {
    let kib = |text: &str, key: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
            .map(|k| k * 1024.0)
    };
    let free = kib(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable:",
    )?;
    // a limit on the address space (`ulimit -v`) binds before the memory
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else
    let limited = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } == 0
        && limit.rlim_cur != libc::RLIM_INFINITY;
    if limited {
        let used = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| kib(&s, "VmSize:"))
            .unwrap_or(0.0);
        return Some(free.min((limit.rlim_cur as f64 - used).max(0.0)));
    }
    Some(free)
}

/// Refuse work that needs more memory than the machine has available,
/// before allocating it: `what` names the setting ("train.batch_size = 64
/// with data.image_size = 256: a training step"), `bytes` the estimate.
pub fn ensure_fits(bytes: f64, what: &str) -> Result<()> {
    if let Some(free) = available_bytes() {
        if bytes > free {
            anyhow::bail!(
                "{what} needs about {:.1} GiB of memory, {:.1} GiB is available; lower it",
                bytes / f64::from(1u32 << 30),
                free / f64::from(1u32 << 30)
            );
        }
    }
    Ok(())
}
