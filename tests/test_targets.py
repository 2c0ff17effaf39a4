"""Target descriptions: shipped targets load; bad ones give one-line errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from dlfusion.errors import DlfusionError
from dlfusion.targets import load_target, shipped_targets

OPT = str(Path(sys.executable).parent / "dlfusion-opt")
MLU100 = Path(__file__).resolve().parents[1] / "dlfusion" / "targets" / "mlu100.toml"


def test_shipped_targets():
    assert {"mlu100", "edge8"} <= set(shipped_targets())
    t = load_target("mlu100")
    assert (t.cores, t.element_bytes, t.macs_per_cycle) == (32, 2, 1024)
    assert t.nram_bytes == 512 * 1024 and t.dram_bandwidth_gbps == 102.4
    assert load_target("edge8").cores == 8


def test_every_number_has_a_comment():
    """Each key of a shipped target sits under a comment (its source); keys
    that share one source share its comment."""
    for name in shipped_targets():
        text = (MLU100.parent / f"{name}.toml").read_text().splitlines()
        for i, line in enumerate(text):
            if "=" in line and not line.startswith(("#", "[", "name", "description")):
                j = i - 1
                while j >= 0 and "=" in text[j] and not text[j].startswith("#"):
                    j -= 1
                assert j >= 0 and text[j].startswith("#"), f"{name}.toml line {i + 1} has no source comment"


def write(tmp_path, text):
    path = tmp_path / "t.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (lambda s: s.replace("cores = 32", "cores = -4"), "must be positive"),
        (lambda s: s.replace("cores = 32", 'cores = "many"'), "[chip] cores must be a int"),
        (lambda s: s.replace("nram_kib = 512", ""), "lacks [core] nram_kib"),
        (lambda s: s + "\n[extra]\nx = 1\n", "unknown section [extra]"),
        (lambda s: s.replace("[dram]", "[dram\n"), "malformed target file"),
    ],
)
def test_malformed_target_files(tmp_path, mutate, expected):
    path = write(tmp_path, mutate(MLU100.read_text()))
    with pytest.raises(DlfusionError) as exc:
        load_target(path)
    assert expected in str(exc.value)
    assert "\n" not in str(exc.value)


def test_unknown_target_name():
    with pytest.raises(DlfusionError, match="unknown target 'nope'; choose one of .*edge8.*mlu100"):
        load_target("nope")


@pytest.mark.parametrize("target", ["nope", "/no/such/file.toml"])
def test_unknown_target_on_the_command_line(tmp_path, target):
    src = tmp_path / "m.mlir"
    src.write_text(
        'func.func @main(%x: tensor<1x4xf32>) -> tensor<1x4xf32> attributes '
        '{nn.input_names = ["x"], nn.output_names = ["y"]} {\n'
        "  %y = nn.relu %x : (tensor<1x4xf32>) -> tensor<1x4xf32>\n"
        "  func.return %y : tensor<1x4xf32>\n}\n"
    )
    out = tmp_path / "out.mlir"
    proc = subprocess.run(
        [OPT, str(src), "-p", f'lower-to-accel{{target="{target}"}}', "-o", str(out)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "target" in lines[0]
    assert not out.exists()
