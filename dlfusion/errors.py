"""User-facing errors: one line that says what is wrong, where, and what to do."""

from __future__ import annotations


class DlfusionError(Exception):
    """An error caused by the user's input (model, IR, options, data).

    The command-line tools print `str(error)` as one line on stderr and exit
    with code 1; they never show a traceback for it.
    """

    def __init__(self, message: str, where: str | None = None, hint: str | None = None):
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"; {self.hint}"
        return " ".join(text.split())
