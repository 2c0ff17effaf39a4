"""What every dlfusion command shares: one-line errors, exit codes, output
files that appear only when complete, and `--input-shape` parsing."""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence

from xdsl.utils.exceptions import ArgSpecParseError, DiagnosticException, ParseError

from dlfusion.errors import DlfusionError


class AtomicOutput:
    """A text file written next to `path` and renamed onto it by `commit()`.

    xDSL's driver closes its output stream whether or not the run succeeded,
    so `close()` only flushes; the tool commits on success or discards.
    """

    def __init__(self, path: str, mode: str = "w"):
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        fd, self._tmp = tempfile.mkstemp(prefix=".dlfusion-", dir=directory)
        self._file = os.fdopen(fd, mode)

    def write(self, text) -> int:
        return self._file.write(text)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def commit(self) -> None:
        self._file.close()
        # mkstemp creates 0600; give the file the permissions open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._tmp, 0o666 & ~umask)
        os.replace(self._tmp, self.path)

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)


def parse_input_shapes(specs: Sequence[str] | None) -> dict[str, list[int]]:
    """`["x=1x3x224x224", ...]` -> {"x": [1, 3, 224, 224]}."""
    shapes: dict[str, list[int]] = {}
    for spec in specs or []:
        name, sep, dims = spec.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            shape = [int(d) for d in dims.lower().split("x")]
            if any(d < 1 for d in shape):
                raise ValueError
        except ValueError:
            raise DlfusionError(
                f"bad --input-shape '{spec}'",
                hint="write it as NAME=DxDx..., e.g. input=1x3x224x224",
            ) from None
        shapes[name] = shape
    return shapes


def describe_error(exc: BaseException) -> str:
    """The one-line message a user sees for `exc`."""
    if isinstance(exc, DlfusionError):
        return str(exc)
    if isinstance(exc, ParseError):
        loc = exc.span.get_location()
        return f"{loc.file}:{loc.line}:{loc.col}: error: {' '.join(exc.msg.split())}"
    if isinstance(exc, ArgSpecParseError):
        lines = [l.strip() for l in str(exc).splitlines() if l.strip()]
        return "bad pass pipeline: " + (lines[-1] if lines else "") + (
            f" (in '{lines[1]}')" if len(lines) > 2 else ""
        )
    if isinstance(exc, DiagnosticException):
        first = next((l.strip() for l in str(exc).splitlines() if l.strip()), type(exc).__name__)
        return f"error: {first}"
    if isinstance(exc, ValueError) and str(exc).startswith("Unrecognized passes"):
        return f"error: {exc}; run with --help to list the available passes"
    if isinstance(exc, ValueError) and "Unrecognized file extension" in str(exc):
        return f"error: {exc}; use .mlir, .onnx, .onnxtxt or .s (an accel-asm listing), or choose one with -f"
    if isinstance(exc, OSError) and exc.filename:
        return f"error: cannot open '{exc.filename}': {exc.strerror}"
    if isinstance(exc, ValueError):
        return f"error: {' '.join(str(exc).split())}"
    return f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"


def run_cli(tool: str, body: Callable[[], None], cleanup: Callable[[], None]) -> int:
    """Run `body`; on failure call `cleanup` and print one line on stderr.

    Set DLFUSION_DEBUG=1 to see the traceback as well.
    """
    try:
        body()
        return 0
    except SystemExit as exc:  # argparse
        cleanup()
        return int(exc.code or 0) if isinstance(exc.code, int) else 1
    except (Exception, ArgSpecParseError) as exc:  # noqa: BLE001
        cleanup()
        if os.environ.get("DLFUSION_DEBUG"):
            traceback.print_exc()
        print(f"{tool}: {describe_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        cleanup()
        return 130
