"""Writes reference.safetensors with the Python `safetensors` package (pip install safetensors
numpy), an encoder independent of moonseg; test_serialize.lua checks moonseg reads these values.
Run once and commit the output; rerunning must give the same bytes."""
import numpy as np
from safetensors.numpy import save_file

tensors = {
    "a.f64": (np.arange(6, dtype=np.float64) * 0.5).reshape(2, 3),
    "b.f32": np.array([1.5, -2.0, 3.25], dtype=np.float32),
    "c.f16": np.array([0.5, -1.0], dtype=np.float16),
    "d.i64": np.array([-5, 1 << 40], dtype=np.int64),
    "e.i32": np.array([[7], [-8]], dtype=np.int32),
    "f.u8": np.array([0, 255, 3], dtype=np.uint8),
    "g.bool": np.array([True, False, True]),
    "h.scalar": np.array(7.0, dtype=np.float32),
    "i.empty": np.zeros((0, 3), dtype=np.float32),
}
save_file(tensors, "reference.safetensors", metadata={"format": "np", "note": "made by safetensors"})
