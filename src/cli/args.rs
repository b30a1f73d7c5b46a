//! Arguments shared by several subcommands, and the command-line spelling
//! of library enums (clap stays in `cli`; the library knows nothing of it).

use anyhow::Result;
use burn::tensor::Device;
use clap::{Args, ValueEnum};

use crate::device::Backend;
use crate::eval::features::Head;
use crate::experiment::Preset;
use crate::group::resample::Resampling;

/// `--device`, the same for every subcommand (the CPU by default).
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// The compute device.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

impl Default for DeviceArgs {
    fn default() -> Self {
        DeviceArgs {
            device: DeviceArg::Cpu,
        }
    }
}

/// The compute devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// burn's flex CPU backend.
    #[value(alias = "flex")]
    Cpu,
    /// burn's wgpu backend (Vulkan, Metal, DX12); needs a build with --features wgpu.
    #[value(alias = "gpu")]
    Wgpu,
    /// burn's wgpu backend pinned to Vulkan, kernels in SPIR-V (tensor
    /// cores where the GPU has them); needs a build with --features vulkan.
    Vulkan,
}

impl From<DeviceArg> for Backend {
    fn from(arg: DeviceArg) -> Backend {
        match arg {
            DeviceArg::Cpu => Backend::Cpu,
            DeviceArg::Wgpu => Backend::Wgpu,
            DeviceArg::Vulkan => Backend::Vulkan,
        }
    }
}

impl DeviceArgs {
    /// The backend named.
    pub fn backend(&self) -> Backend {
        self.device.into()
    }

    /// The device named.
    pub fn select(&self) -> Result<Device> {
        crate::device::select(self.backend())
    }
}

/// Which features to read (see [`Head`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HeadArg {
    /// The baseline's code (not invariant).
    Code,
    /// Average pooling over the rows of V.
    Average,
    /// Gram pooling (plus rotation autocorrelations).
    Gram,
    /// The equivariant attention model's invariant code.
    Attention,
    /// The attention model's invariant Q, before its compression to the code.
    AttentionQ,
    /// The raw equivariant embedding V, flattened row-major (not invariant).
    V,
}

impl From<HeadArg> for Head {
    fn from(h: HeadArg) -> Head {
        match h {
            HeadArg::Code => Head::Code,
            HeadArg::Average => Head::Average,
            HeadArg::Gram => Head::Gram,
            HeadArg::Attention => Head::Attention,
            HeadArg::AttentionQ => Head::AttentionQ,
            HeadArg::V => Head::V,
        }
    }
}

/// Size of a table reproduction (see [`Preset`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    /// 5,000 training and 2,000 test images, 3 epochs: tens of minutes on 2 cores.
    Quick,
    /// The configs as written (all images, their epochs): hours on 2 cores.
    Full,
}

impl From<PresetArg> for Preset {
    fn from(p: PresetArg) -> Preset {
        match p {
            PresetArg::Quick => Preset::Quick,
            PresetArg::Full => Preset::Full,
        }
    }
}

/// `--resample`: a resampling method by the name configs use.
pub fn resampling_parser() -> impl clap::builder::TypedValueParser<Value = Resampling> {
    use clap::builder::TypedValueParser;
    let names = Resampling::ALL.map(Resampling::name);
    clap::builder::PossibleValuesParser::new(names)
        .map(|name| Resampling::from_name(&name).expect("one of the names listed"))
}

/// Most angles a study measures (a step of 0.25 degrees).
pub const MAX_ANGLES: f64 = 1440.0;

/// An angle step in degrees (`--rotations`, `--angles`) that gives at
/// least two angles over the circle (at most 180) and at most
/// [`MAX_ANGLES`] (at least 0.25).
pub fn parse_angle_step(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    let least = 360.0 / MAX_ANGLES;
    if (least..=180.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{s} degrees: a step must be from {least} (at most {MAX_ANGLES} angles) to 180 (at least two angles, 0 and the step)"
        ))
    }
}
