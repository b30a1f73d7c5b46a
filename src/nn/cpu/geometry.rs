//! Sizes of one convolution, shared by its forward and backward passes and
//! by the transposed convolution (the same geometry read the other way).

/// Sizes of one convolution (A to Z), all in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    /// Channels of the wide (conv input) side.
    pub ca: usize,
    pub ha: usize,
    pub wa: usize,
    /// Channels of the narrow (conv output) side.
    pub cz: usize,
    pub hz: usize,
    pub wz: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

/// A kernel's size and how it steps over the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Window {
    /// A `kernel x kernel` window moved by `stride`, over an input padded
    /// by `padding` zeros on every side.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        Window {
            kernel,
            stride,
            padding,
        }
    }
}

impl ConvGeometry {
    /// Geometry of a conv2d from `[B, Ca, Ha, Wa]` with `Cz` output channels.
    pub fn conv([batch, ca, ha, wa]: [usize; 4], cz: usize, window: Window) -> Self {
        let Window {
            kernel,
            stride,
            padding,
        } = window;
        let out = |s: usize| (s + 2 * padding - kernel) / stride + 1;
        ConvGeometry {
            batch,
            ca,
            ha,
            wa,
            cz,
            hz: out(ha),
            wz: out(wa),
            kernel,
            stride,
            padding,
        }
    }

    /// Geometry of a transposed conv2d from Z-shaped `[B, Cz, Hz, Wz]` to
    /// `Ca` output channels (no output padding).
    pub fn transposed([batch, cz, hz, wz]: [usize; 4], ca: usize, window: Window) -> Self {
        let Window {
            kernel,
            stride,
            padding,
        } = window;
        let out = |s: usize| (s - 1) * stride + kernel - 2 * padding;
        ConvGeometry {
            batch,
            ca,
            ha: out(hz),
            wa: out(wz),
            cz,
            hz,
            wz,
            kernel,
            stride,
            padding,
        }
    }

    pub(super) fn a_len(&self) -> usize {
        self.ca * self.ha * self.wa
    }

    pub(super) fn p(&self) -> usize {
        self.hz * self.wz
    }

    pub(super) fn k(&self) -> usize {
        self.ca * self.kernel * self.kernel
    }

    /// Images per chunk: enough columns (c * P >= 256) for an efficient
    /// GEMM, few enough that the im2col matrix stays in cache.
    pub(super) fn chunk(&self) -> usize {
        256usize.div_ceil(self.p()).clamp(1, self.batch.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposed_geometry_inverts_the_conv_geometry() {
        let g = ConvGeometry::conv([2, 3, 8, 8], 4, Window::new(2, 2, 0));
        let t = ConvGeometry::transposed([2, 4, g.hz, g.wz], 3, Window::new(2, 2, 0));
        assert_eq!(g, t);
    }
}
