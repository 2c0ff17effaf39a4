# lit configuration for dlfusion's FileCheck tests.
#
#   lit tests/filecheck -v        (from the repository root)
#
# The tools (dlfusion-opt, dlfusion-run, filecheck) are taken from the bin/
# directory of the Python that runs lit, so the venv's lit uses the venv's
# tools without activating it. Output/ directories go to build/lit (or to
# $DLFUSION_LIT_OUT), not into the source tree.

import os
import sys

import lit.formats

config.name = "dlfusion"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir", ".onnxtxt"]
config.excludes = ["Inputs", "lit.cfg.py", "README.md", "CMakeLists.txt"]

config.test_source_root = os.path.dirname(os.path.abspath(__file__))
config.test_exec_root = os.environ.get(
    "DLFUSION_LIT_OUT", os.path.join(config.test_source_root, "build", "lit")
)

bin_dir = os.path.dirname(sys.executable)
config.environment["PATH"] = os.pathsep.join(
    [bin_dir, config.environment.get("PATH", os.environ.get("PATH", ""))]
)
for var in ("HOME", "TMPDIR", "DLFUSION_DEBUG"):
    if var in os.environ:
        config.environment[var] = os.environ[var]

config.substitutions.append(("%python", sys.executable))
