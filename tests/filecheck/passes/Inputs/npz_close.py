"""npz_close.py A.npz B.npz RTOL: exit 1 unless both archives hold the same
arrays with max |a - b| <= RTOL * max |a| (used by lit RUN lines)."""

import sys

import numpy as np

a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
rtol = float(sys.argv[3])
if sorted(a.files) != sorted(b.files):
    sys.exit(f"different outputs: {sorted(a.files)} vs {sorted(b.files)}")
for name in a.files:
    x, y = a[name], b[name]
    if x.shape != y.shape:
        sys.exit(f"{name}: shapes {x.shape} and {y.shape} differ")
    err, scale = float(np.max(np.abs(x - y))), float(np.max(np.abs(x)))
    if not err <= rtol * scale:
        sys.exit(f"{name}: max abs error {err:.3g} > {rtol} * max |ref| {scale:.3g}")
    print(f"{name}: max abs error {err:.3g}, max |ref| {scale:.3g}")
