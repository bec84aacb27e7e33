"""A few raster primitives in numpy, for envs that draw themselves without a window.

Frames are ``uint8[H, W, 3]`` (gymnasium's ``rgb_array``). Coordinates are pixels with
y pointing up, as in gymnasium's classic-control drawings; :func:`canvas` and the
primitives flip to image rows themselves. Everything is a vectorised test over the
shape's bounding box, so a frame costs a few hundred microseconds and needs no pygame.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

Color = tuple[int, int, int]
Point = tuple[float, float]


def canvas(width: int, height: int, color: Color = (255, 255, 255)) -> np.ndarray:
    """A ``[height, width, 3]`` frame filled with ``color``."""
    return np.full((height, width, 3), color, dtype=np.uint8)


def _grid(img: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
    """The pixel centres (x, y-up) of the box [lo, hi] clipped to the frame, and its slices."""
    h, w = img.shape[:2]
    x0, x1 = max(int(np.floor(lo[0])), 0), min(int(np.ceil(hi[0])) + 1, w)
    y0, y1 = max(int(np.floor(lo[1])), 0), min(int(np.ceil(hi[1])) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    xs, ys = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
    rows = slice(h - y1, h - y0)  # y up -> image rows
    return rows, slice(x0, x1), xs[::-1], ys[::-1]


def fill_convex(img: np.ndarray, points: Sequence[Point], color: Color) -> None:
    """Fill a convex polygon (vertices in either winding order) in place."""
    p = np.asarray(points, dtype=np.float64)
    box = _grid(img, p.min(0), p.max(0))
    if box is None:
        return
    rows, cols, xs, ys = box
    edges = np.roll(p, -1, axis=0) - p
    cross = edges[:, 0, None, None] * (ys - p[:, 1, None, None]) - edges[:, 1, None, None] * (xs - p[:, 0, None, None])
    inside = (cross >= 0).all(0) | (cross <= 0).all(0)
    img[rows, cols][inside] = color


def fill_disk(img: np.ndarray, center: Point, radius: float, color: Color) -> None:
    """Fill a disk in place."""
    c = np.asarray(center, dtype=np.float64)
    box = _grid(img, c - radius, c + radius)
    if box is None:
        return
    rows, cols, xs, ys = box
    img[rows, cols][(xs - c[0]) ** 2 + (ys - c[1]) ** 2 <= radius**2] = color


def polyline(img: np.ndarray, points: Sequence[Point], color: Color, width: float = 2.0) -> None:
    """Draw connected segments ``width`` pixels wide in place (each a thin rectangle, the
    joints rounded by a disk)."""
    p = np.asarray(points, dtype=np.float64)
    for a, b in itertools.pairwise(p):
        d = b - a
        length = float(np.hypot(*d))
        if length == 0:
            continue
        n = np.array([-d[1], d[0]]) / length * (width / 2)
        fill_convex(img, [a + n, b + n, b - n, a - n], color)
        fill_disk(img, b, width / 2, color)
