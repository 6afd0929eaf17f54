"""Generators seeded by what a draw is FOR, never carried through a run: nothing to save, nothing to restore.

A generator derived from (run seed, step, sample position, ...) gives the same numbers whether the run was
resumed, sharded over 2 processes or batched differently, which is what makes resume and multi-process runs exact.
Each derivation below is frozen: results in docs/ were drawn with them, and changing one changes those numbers.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

_MASK_STREAM = 0x6D61736B  # "mask": a word of its own, so mask draws never share a stream with other seeded RNGs


def torch_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on `device` at a 63-bit seed."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def mask_generator(seed: int, step: int, position: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The K training masks of one sample: a pure function of (run seed, optimizer step, GLOBAL batch position),
    so 1 process x batch 4 and 2 processes x batch 2 draw the same masks for the same sample."""
    words = np.random.SeedSequence([seed, _MASK_STREAM, step, position]).generate_state(2, dtype=np.uint32)
    return torch_generator(int(words[0]) << 31 ^ int(words[1]), device)  # 63 bits: fits manual_seed's range


def sample_generator(seed: int, sample_id: str, rho: float) -> torch.Generator:
    """An evaluation method's draws for one sample at one ratio: independent of batch size, order and eval.limit."""
    digest = hashlib.sha256(f"{seed}|{sample_id}|{rho!r}".encode()).hexdigest()
    return torch_generator(int(digest[:15], 16))


def fit_step_rng(seed: int, step: int, stream: int) -> tuple[torch.Generator, np.random.Generator]:
    """(torch, numpy) generators of one environment-fit step's draws on `stream`: a resumed fit draws the same."""
    digest = hashlib.sha256(f"fit|{seed}|{step}|{stream}".encode()).digest()
    value = int.from_bytes(digest[:8], "little") & (2**63 - 1)
    return torch_generator(value), np.random.default_rng(value)
