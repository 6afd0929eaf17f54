"""Progress bars for long work: a tqdm bar with rate and ETA, showing a few metrics; off except on the main process."""

from __future__ import annotations

from typing import Any, Iterable

import torch
from tqdm.auto import tqdm


class ProgressBar:
    """A tqdm bar at `step/total` showing a few metrics; disabled off the main process."""

    def __init__(
        self,
        total: int,
        initial: int = 0,
        keys: Iterable[str] = ("reward", "loss"),
        disable: bool = False,
        desc: str = "train",
        **tqdm_kwargs: Any,
    ) -> None:
        self.keys = list(keys)
        self.bar = tqdm(total=total, initial=initial, disable=disable, desc=desc, dynamic_ncols=True, **tqdm_kwargs)

    def update(self, step: int, metrics: dict[str, Any] | None = None) -> None:
        """Move to `step` finished steps and show the chosen metrics."""
        if metrics:
            shown = {k: f"{_number(metrics[k]):.4g}" for k in self.keys if k in metrics}
            self.bar.set_postfix(shown, refresh=False)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _number(value: Any) -> float:
    return value.item() if torch.is_tensor(value) else float(value)
