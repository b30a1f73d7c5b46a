"""Run an ONNX file exported by `eqae export` in ONNX Runtime and measure it.

    python onnx_check.py MODEL.onnx IMAGES.npy FEATURES.npy

IMAGES.npy holds the model inputs float32 [N, 1, S, S]; FEATURES.npy what
`eqae embed` wrote for the same images and head. Prints one JSON object:
- checked: onnx.checker.check_model(full_check=True) passed;
- metadata: the file's metadata_props;
- shape: the output's shape;
- row_difference: over rows, the largest max|ort - eqae| / max|eqae| of a row;
- orbit_difference: over images and the 8 elements of D4 (quarter turns,
  mirror images), the largest ||f(g x) - f(x)|| / ||f(x)||, in ONNX Runtime.
"""

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    model_path, images_path, features_path = sys.argv[1:4]
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    extractor = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    images = np.load(images_path).astype(np.float32)
    expected = np.load(features_path)

    def features(x):
        return extractor.run(["features"], {"images": np.ascontiguousarray(x)})[0]

    got = features(images)
    scale = np.maximum(np.abs(expected).max(axis=1), 1e-12)
    row_difference = float((np.abs(got - expected).max(axis=1) / scale).max())

    orbit = 0.0
    norm = np.maximum(np.linalg.norm(got, axis=1), 1e-12)
    for mirror in (False, True):
        for k in range(4):
            x = np.rot90(images, k, axes=(2, 3))
            if mirror:
                x = np.flip(x, axis=3)
            diff = np.linalg.norm(features(x) - got, axis=1) / norm
            orbit = max(orbit, float(diff.max()))

    print(
        json.dumps(
            {
                "checked": True,
                "metadata": {p.key: p.value for p in model.metadata_props},
                "shape": list(got.shape),
                "row_difference": row_difference,
                "orbit_difference": orbit,
            }
        )
    )


if __name__ == "__main__":
    main()
