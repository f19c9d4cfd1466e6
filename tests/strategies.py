"""Shared hypothesis strategies and numpy helpers for the tests of `siit._core`."""

import math

import numpy as np
from hypothesis import strategies as st

INT_DTYPES = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)


def unravel(flat, sizes) -> np.ndarray:
    """Flat indices into the identifier space of `sizes` -> codes (len(flat), L), int64.

    Flat order is lexicographic order of the identifiers."""
    flat = np.asarray(flat, dtype=np.int64).reshape(-1)
    if len(sizes) == 0:
        return np.zeros((len(flat), 0), dtype=np.int64)
    return np.stack(np.unravel_index(flat, tuple(sizes)), axis=1).astype(np.int64)


def all_identifiers(sizes) -> np.ndarray:
    """Every identifier of the space `sizes`, in lexicographic order (one empty row if L = 0)."""
    return unravel(np.arange(math.prod(sizes)), sizes)


def layouts(a: np.ndarray) -> dict[str, np.ndarray]:
    """`a` (integer, any ndim) in every integer dtype that holds its values, in Fortran order
    and as a strided (non-contiguous) view: the same values in other memory layouts."""
    out = {}
    for dtype in INT_DTYPES:
        info = np.iinfo(dtype)
        if a.size == 0 or (a.min() >= info.min and a.max() <= info.max):
            out[np.dtype(dtype).name] = a.astype(dtype)
    out["fortran"] = np.asfortranarray(a)
    buffer = np.full(tuple(2 * d + 1 for d in a.shape), 7, dtype=a.dtype)
    view = buffer[tuple(slice(1, None, 2) for _ in a.shape)]
    view[...] = a
    out["strided"] = view
    return out


@st.composite
def codebook_sizes(draw, max_levels: int = 4, max_size: int = 6) -> tuple[int, ...]:
    """L in 1..max_levels codebook sizes, each in 1..max_size."""
    return tuple(draw(st.lists(st.integers(1, max_size), min_size=1, max_size=max_levels)))


@st.composite
def identifier_sets(draw, max_levels: int = 4, max_size: int = 6, max_items: int = 40):
    """(codes (n, L) int64 of distinct identifiers in random item order, codebook sizes)."""
    sizes = draw(codebook_sizes(max_levels, max_size))
    capacity = math.prod(sizes)
    flat = draw(
        st.lists(
            st.integers(0, capacity - 1),
            min_size=1,
            max_size=min(capacity, max_items),
            unique=True,
        )
    )
    return unravel(flat, sizes), sizes
