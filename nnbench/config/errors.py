"""`SuiteError`: everything wrong with one suite file, each problem as (key path, message).

Problems are collected (`Problems`) while a suite is checked and raised together, so
one run of `nnbench validate` shows every mistake. What is printed is bounded: each
message is clipped (`messages.clip`), and past `MAX_SHOWN` problems the rest are
counted, not printed, so one mistake never fills more than a screen.
"""

from __future__ import annotations

from nnbench.messages import clip

__all__ = ["MAX_SHOWN", "Problems", "SuiteError"]

MAX_SHOWN = 10  # problems printed per file; the rest are counted


class SuiteError(ValueError):
    """Everything wrong with one suite file; each problem is (key path, message)."""

    def __init__(self, path: str, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        shown = [f"{self.path}: {key}: {clip(msg)}" if key else f"{self.path}: {clip(msg)}"
                 for key, msg in self.problems[:MAX_SHOWN]]
        hidden = len(self.problems) - MAX_SHOWN
        if hidden > 0:
            shown.append(f"{self.path}: ... and {hidden} more problem{'s' if hidden > 1 else ''}"
                         f" (fix the ones above first)")
        return shown


class Problems:
    """Collects (key path, message) pairs, in the order found, without duplicates."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.items: list[tuple[str, str]] = []

    def add(self, key: str, msg: str) -> None:
        if (key, msg) not in self.items:
            self.items.append((key, msg))

    def extend(self, items: list[tuple[str, str]]) -> None:
        for key, msg in items:
            self.add(key, msg)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise SuiteError(self.path, list(self.items))
