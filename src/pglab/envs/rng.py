"""Counter-based random numbers for batched environments.

A batched env must give sub-env i the same trajectory whatever the batch size and
whatever its neighbours do, so that ``N`` batched envs and ``N`` single envs with the
same seeds agree exactly. A shared ``torch.Generator`` cannot do that (its stream
depends on how many draws the other envs took). Instead every random number is a
pure function of integer keys — the sub-env's seed, its episode index, the turn, what
the number is for — computed by an integer hash, the approach of counter-based
generators such as Philox: no state, no Python loop over envs, and the same numbers on
CPU and GPU.

The hash is the two-multiply permutation ``[16 21f0aaad 15 735a2d97 15]`` found with
Chris Wellons' hash-prospector (TheIronBorn's improvement on ``lowbias32``). All values
are int64 tensors holding 32-bit unsigned numbers (``0 <= x < 2**32``); both multipliers
are below ``2**31``, so every product stays below ``2**63``: no int64 overflow.
"""

from __future__ import annotations

import numpy as np
import torch

MASK32 = 0xFFFF_FFFF
_TWO32 = float(2**32)


_M1, _M2 = 0x21F0AAAD, 0x735A2D97  # both < 2**31


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with good avalanche (any input bit flips ~half the output bits)."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = (x * _M1) & MASK32
    x = x ^ (x >> 15)
    x = (x * _M2) & MASK32
    return x ^ (x >> 15)


def fold_seed(seed: int) -> int:
    """A Python seed of any size as 32 bits (higher bits folded in by hashing)."""
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed={seed}: seeds must be >= 0")
    out = seed & MASK32
    seed >>= 32
    while seed:
        out = int(hash32(torch.tensor(out ^ (seed & MASK32), dtype=torch.int64)))
        seed >>= 32
    return out


def bits(key: torch.Tensor, *words: torch.Tensor | int) -> torch.Tensor:
    """32 random bits per element: the hash chain of ``key`` and each word.

    Args:
        key: int64 keys, any shape (e.g. per-env seeds ``[N]``).
        words: further keys (ints or tensors broadcastable against ``key``), e.g. the
            episode index, the turn, a purpose constant.
    Returns:
        int64 tensor in [0, 2**32), broadcast shape of all inputs.
    """
    h = hash32(key)
    for w in words:
        if isinstance(w, torch.Tensor):
            h = hash32(h ^ (w & MASK32) ^ 0x9E3779B9)
        else:
            h = hash32(h ^ ((int(w) & MASK32) ^ 0x9E3779B9))
    return h


def draw(key: torch.Tensor, counter: torch.Tensor | int) -> torch.Tensor:
    """32 random bits from an already mixed ``key`` (an output of :func:`bits`) and a small
    counter: one hash, for the hot path (distinct counters give distinct hash inputs, and
    the hash is a bijection)."""
    return hash32(key ^ counter)


def uniform(key: torch.Tensor, *words: torch.Tensor | int) -> torch.Tensor:
    """Uniform float64 numbers in [0, 1) keyed like :func:`bits`."""
    return bits(key, *words).double() / _TWO32


def randint(high: torch.Tensor | int, key: torch.Tensor, *words: torch.Tensor | int) -> torch.Tensor:
    """Integers uniform in [0, high) keyed like :func:`bits` (modulo bias below high / 2**32)."""
    return (bits(key, *words) % high).long()


STREAMS = {"train": 0, "eval": 1}


def env_seeds(seed: int, n: int, stream: str) -> list[int]:
    """Seeds of n sub-envs of run seed ``seed``: well mixed, distinct per stream.

    Drawn from ``numpy.random.SeedSequence(seed, spawn_key=(stream,))`` rather than
    ``seed + i``, so runs with neighbouring seeds share no env seeds (with ``seed + i``
    seeds 0 and 1 would share 15 of 16 training envs), and evaluation envs never share
    a seed with training envs.
    """
    seq = np.random.SeedSequence(seed, spawn_key=(STREAMS[stream],))
    return [int(x) for x in seq.generate_state(n, dtype=np.uint32)]
