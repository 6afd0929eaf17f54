"""A shuffled, sharded, resumable order over n samples.

The global order is an endless stream: epoch 0's permutation, then epoch 1's, ... each drawn from (seed, epoch)
alone, so any process can rebuild it. A global batch is `batch_size * world_size` consecutive items of the stream;
rank r takes the r-th slice, so ranks never share an item and, over an epoch, together cover every item once.
A sample (one group of K masks) therefore stays on one process.

The state is two ints, (epoch, position in that epoch's permutation): restoring it continues at the next unseen
item, with no replay and no skip. The position counts global items, so it stays valid if the world size changes.
"""

from __future__ import annotations

import numpy as np

from scorerl.errors import CheckpointError


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of epoch `epoch`: a pure function of (n, seed, epoch)."""
    # SeedSequence mixes both words, so (seed, epoch) and (seed + 1, epoch - 1) give unrelated orders.
    return np.random.default_rng([seed, epoch]).permutation(n)


class ResumableSampler:
    def __init__(self, n: int, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if n < 1:
            raise ValueError(f"ResumableSampler needs at least one item, got n={n}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.n, self.seed, self.rank, self.world_size, self.shuffle = n, seed, rank, world_size, shuffle
        self.epoch = 0
        self.position = 0  # global items of this epoch already handed out (to all ranks)
        self._order = self._make_order(0)

    def _make_order(self, epoch: int) -> np.ndarray:
        return epoch_permutation(self.n, self.seed, epoch) if self.shuffle else np.arange(self.n)

    def _take(self, count: int) -> list[int]:
        """The next `count` items of the global stream, crossing into the next epoch when this one runs out."""
        out: list[int] = []
        while count > 0:
            if self.position == self.n:
                self.epoch += 1
                self.position = 0
                self._order = self._make_order(self.epoch)
            chunk = self._order[self.position : self.position + count]
            out += chunk.tolist()
            self.position += len(chunk)
            count -= len(chunk)
        return out

    def next_batch(self, batch_size: int) -> list[int]:
        """This rank's `batch_size` indices of the next global batch (every rank must call with the same size)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        global_batch = self._take(batch_size * self.world_size)
        return global_batch[self.rank * batch_size : (self.rank + 1) * batch_size]

    def state_dict(self) -> dict:
        # n and seed travel along only to catch a resume onto a different data set.
        return {"epoch": int(self.epoch), "position": int(self.position), "n": self.n, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("n", self.n) != self.n or state.get("seed", self.seed) != self.seed:
            raise CheckpointError(
                f"sampler state is for n={state.get('n')}, seed={state.get('seed')}, but this run has "
                f"n={self.n}, seed={self.seed}: the data set or seed changed since the checkpoint"
            )
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position <= self.n:
            raise CheckpointError(f"sampler state out of range: epoch={epoch}, position={position}, n={self.n}")
        self.epoch, self.position = epoch, position
        self._order = self._make_order(epoch)
