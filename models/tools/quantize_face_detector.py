"""Makes models/centerface_int8.onnx from models/centerface_dyn.onnx with
ONNX Runtime's own static quantization: the model is first converted to
opset 13 so that weights can be quantized per channel (per tensor, scores
dropped by up to 0.11); QDQ, int8 weights, uint8 activations, calibrated on
the repository's public-domain fixtures at the sizes the gateway searches
at. Then it prints each face fixture's best score with both models and fails
when the int8 one loses more than 0.05. The output is the same bytes on
every run with these versions.

    python models/tools/quantize_face_detector.py

Needs onnxruntime==1.31.1, onnx, numpy, pillow and sympy (a venv of its own;
the gateway does not need them). A new file needs its printed SHA-256 in
models/manifest.json, and the vision tests (fixtures, evasions, the 40 px
face) passing.
"""

import glob
import hashlib
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import version_converter
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SOURCE = os.path.join(ROOT, "models", "centerface_dyn.onnx")
TARGET = os.path.join(ROOT, "models", "centerface_int8.onnx")
SIDES = (640, 480, 384)
MAX_DROP = 0.05


def prepare(path, side):
    """As the gateway does: RGB 0..255, NCHW, scaled down to `side`, padded to 32."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = min(1.0, side / max(w, h))
    rw, rh = max(1, round(w * s)), max(1, round(h * s))
    im = im.resize((rw, rh), Image.BILINEAR)
    nw, nh = -(-rw // 32) * 32, -(-rh // 32) * 32
    a = np.zeros((1, 3, nh, nw), np.float32)
    a[0, :, :rh, :rw] = np.asarray(im, np.float32).transpose(2, 0, 1)
    return a


FIXTURES = sorted(glob.glob(os.path.join(ROOT, "fixtures", "faces", "*")) + glob.glob(os.path.join(ROOT, "fixtures", "scenes", "*")))


class Fixtures(CalibrationDataReader):
    def __init__(self):
        self.items = iter([{"input.1": prepare(f, side)} for f in FIXTURES for side in SIDES])

    def get_next(self):
        return next(self.items, None)


def main():
    upgraded = TARGET + ".opset13"
    onnx.save(version_converter.convert_version(onnx.load(SOURCE), 13), upgraded)
    pre = TARGET + ".pre"
    quant_pre_process(upgraded, pre, skip_symbolic_shape=True)
    os.remove(upgraded)
    quantize_static(pre, TARGET, Fixtures(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    os.remove(pre)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    float_model = ort.InferenceSession(SOURCE, options, providers=["CPUExecutionProvider"])
    int8_model = ort.InferenceSession(TARGET, options, providers=["CPUExecutionProvider"])
    worst = 0.0
    for path in glob.glob(os.path.join(ROOT, "fixtures", "faces", "*")):
        for side in SIDES:
            x = {"input.1": prepare(path, side)}
            a, b = float(float_model.run(None, x)[0].max()), float(int8_model.run(None, x)[0].max())
            worst = max(worst, a - b)
            print(f"{os.path.basename(path):<24} {side:>4} px  float {a:.3f}  int8 {b:.3f}")
    digest = hashlib.sha256(open(TARGET, "rb").read()).hexdigest()
    print(f"largest score drop {worst:.3f} (at most {MAX_DROP}); sha256 {digest}")
    sys.exit(0 if worst <= MAX_DROP else 1)


if __name__ == "__main__":
    main()
