"""An image file as `eqae embed` reads it, in NumPy and Pillow, for use
with an exported model (`eqae export`) outside eqae. The same rules as the
ONNX file's `preprocessing` metadata and `src/data/folder.rs`:

1. grey levels: every sample scaled to [0, 1] (8 and 16 bits alike), colour
   read as Rec. 709 luma (0.2126 R + 0.7152 G + 0.0722 B), a transparent
   pixel laid over white (grey * alpha + 1 - alpha), rounded to 256 levels;
2. padded to a square with the mean grey level of the image's border;
3. placed on the canvas: an image of the canvas size is taken as it is; any
   other is resized to `content x content` (triangle filter) and centred on
   a zero canvas of `size x size`;
4. values / 255, inverted (1 - value) when the border's mean is above 127,
   so that the background is dark.

Resizing is the one step where Pillow and eqae can differ (their bilinear
filters round differently); images that need no resizing give eqae's input
exactly.

    from prepare import prepare
    x = np.stack([prepare(p) for p in paths])   # float32 [N, 1, 32, 32]
"""

import numpy as np
from PIL import Image

LUMA = np.array([0.2126, 0.7152, 0.0722])


def grey_levels(img):
    """Grey levels 0..255 (uint8, [H, W]) of any Pillow image."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.asarray(img, np.float64) / 65535.0
        alpha = 1.0
    elif img.mode in ("L", "1"):
        grey = np.asarray(img.convert("L"), np.float64) / 255.0
        alpha = 1.0
    elif img.mode == "LA":
        a = np.asarray(img, np.float64) / 255.0
        grey, alpha = a[..., 0], a[..., 1]
    else:
        a = np.asarray(img.convert("RGBA"), np.float64) / 255.0
        rgb, alpha = a[..., :3], a[..., 3]
        grey = rgb @ LUMA
    v = grey * alpha + (1.0 - alpha)
    return np.clip(np.floor(v * 255.0 + 0.5), 0, 255).astype(np.uint8)


def prepare(path, content=28, size=32):
    """One image file as eqae's MNIST-style runs read it (content 28 on a
    32x32 canvas): float32 [1, size, size]. For runs of other data sets,
    content = size = the run's data.image_size."""
    g = grey_levels(Image.open(path))
    h, w = g.shape
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]]).astype(np.float64)
    background = int(np.floor(border.mean() + 0.5))
    if (h, w) == (size, size):
        target, pad = size, 0
    else:
        target, pad = content, (size - content) // 2
    side = max(h, w)
    square = np.full((side, side), background, np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    square[top:top + h, left:left + w] = g
    if side != target:
        square = np.asarray(
            Image.fromarray(square).resize((target, target), Image.BILINEAR), np.uint8
        )
    x = square.astype(np.float32) / 255
    if background > 127:
        x = 1 - x
    return np.pad(x, pad)[None]
