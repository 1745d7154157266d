"""The model-loading progress bar that `ktx.Model(path, progress=True)` shows.

A bar is drawn only when someone can see it: in a Jupyter kernel, or when stderr is a terminal.
tqdm draws it when importable (its widget in a notebook that has ipywidgets); otherwise a small
text bar, redrawn in place on stderr, does.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional, TextIO


class TextBar:
    """`name  [##########..........]  50%` on one line, redrawn when the percentage changes."""

    def __init__(self, label: str, stream: Optional[TextIO] = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._shown = -1

    def __call__(self, fraction: float) -> None:
        percent = int(round(max(0.0, min(1.0, fraction)) * 100))
        if percent == self._shown:
            return
        self._shown = percent
        filled = self.width * percent // 100
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self.label}  [{bar}] {percent:3d}%")
        self.stream.flush()

    def close(self) -> None:
        if self._shown >= 0:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = -1


class _TqdmBar:
    """tqdm counting percent, updated to absolute fractions."""

    def __init__(self, tqdm_class: Any, label: str) -> None:
        self._bar = tqdm_class(total=100, desc=label, unit="%",
                               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}")
        self._shown = 0

    def __call__(self, fraction: float) -> None:
        percent = int(round(max(0.0, min(1.0, fraction)) * 100))
        if percent > self._shown:
            self._bar.update(percent - self._shown)
            self._shown = percent

    def close(self) -> None:
        self._bar.close()


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where stderr is no terminal, yet a person reads it)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _tqdm_class(notebook: bool) -> Any:
    try:
        if notebook:
            import importlib.util

            # tqdm's notebook bar is an ipywidgets widget; without them it fails when created.
            if importlib.util.find_spec("ipywidgets") is not None:
                from tqdm.notebook import tqdm as bar  # type: ignore[import-untyped, unused-ignore]

                return bar
        from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

        return tqdm
    except ImportError:
        return None


def default_bar(path: str) -> Optional[Callable[[float], None]]:
    """The bar for loading `path`, or None when nobody would see one."""
    notebook = in_notebook()
    if not notebook and not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return None
    label = f"loading {os.path.basename(path)}"
    tqdm_class = _tqdm_class(notebook)
    if tqdm_class is not None:
        return _TqdmBar(tqdm_class, label)
    return TextBar(label)
