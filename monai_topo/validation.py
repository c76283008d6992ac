"""Checks of the plain values a user passes (numbers, flags, numpy arrays), with errors that name them.

Every public function and class validates its arguments where the user gave them, through these
helpers, so that a string, ``None``, a bool or a NaN where a number belongs is reported as
``"<name> must be ..., got <value>"`` rather than as a comparison error deep inside, and so that
nothing is silently reinterpreted (``True`` is not the number 1, ``2.5`` workers are not 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np

_NATIVE_KINDS = "biuf"  # numpy dtype kinds torch.from_numpy reads: bool, int, unsigned, float


def check_int(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) in ``[minimum, maximum]``.

    Raises ``TypeError`` for other types (strings, floats, ``None``, bools) and ``ValueError``
    out of range, naming ``name`` and the value.

    Examples
    --------
    >>> from monai_topo.validation import check_int
    >>> check_int(3, "num_workers", minimum=1)
    3
    >>> check_int("2", "num_workers")
    Traceback (most recent call last):
    ...
    TypeError: num_workers must be an integer, got '2' (str).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name} must be an integer {bounds}, got {value}.")
    return value


def check_number(value, name: str, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a ``float`` if it is a finite real number (not a bool) in ``[low, high]``.

    A 0-dimensional numpy array or torch tensor counts as a number. Raises ``TypeError`` for
    other types and ``ValueError`` for NaN, infinities and values out of range.

    Examples
    --------
    >>> from monai_topo.validation import check_number
    >>> check_number(0.5, "threshold", 0, 1)
    0.5
    >>> check_number(float("nan"), "threshold", 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: threshold must be a finite number in [0, 1], got nan.
    """
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()  # a 0-d tensor or array, e.g. a threshold computed with torch
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__}).")
    value = float(value)
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ValueError(f"{name} must be a finite number in {bounds}, got {value!r}.")
    return value


def check_shape(shape, name: str, ndims: Sequence[int], minimum: int = 1) -> tuple[int, ...]:
    """``shape`` as a tuple of ``int`` if it is a sequence of ``ndims`` integers, each ``>= minimum``.

    Examples
    --------
    >>> from monai_topo.validation import check_shape
    >>> check_shape([64, 64], "spatial_shape", (2,))
    (64, 64)
    >>> check_shape((64.5, 64), "spatial_shape", (2,))
    Traceback (most recent call last):
    ...
    TypeError: spatial_shape[0] must be an integer, got 64.5 (float).
    """
    if isinstance(shape, np.ndarray) and shape.ndim == 1:
        shape = shape.tolist()
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
        raise TypeError(f"{name} must be a sequence of {' or '.join(map(str, ndims))} integers, got {shape!r}.")
    if len(shape) not in ndims:
        raise ValueError(f"{name} must hold {' or '.join(map(str, ndims))} integers, got {tuple(shape)}.")
    return tuple(check_int(n, f"{name}[{i}]", minimum=minimum) for i, n in enumerate(shape))


def check_seed(seed, name: str = "seed") -> int | None:
    """``seed`` if it is ``None`` or an integer ``>= 0`` (what :func:`numpy.random.default_rng` takes)."""
    return None if seed is None else check_int(seed, name, minimum=0)


def check_bool(value, name: str) -> bool:
    """``value`` if it is a bool (Python or numpy), else ``TypeError``: ``"no"`` or ``1`` is not a flag.

    Examples
    --------
    >>> from monai_topo.validation import check_bool
    >>> check_bool(True, "to_onehot_y")
    True
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__}).")
    return bool(value)


def native_array(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` in a layout torch can wrap: native byte order and no negative strides (a copy only if needed).

    Arrays from ``np.flip`` or ``[::-1]`` have negative strides, and NIfTI readers may return
    big-endian (``'>f4'``) data; both are valid numpy arrays that ``torch.from_numpy`` refuses.
    Dtypes torch has no counterpart for (object, strings, ``longdouble``, complex) raise ``TypeError``.

    Examples
    --------
    >>> import numpy as np
    >>> from monai_topo.validation import native_array
    >>> a = native_array(np.flip(np.arange(4, dtype=">f4")), "x")
    >>> a.dtype.isnative, a.tolist()
    (True, [3.0, 2.0, 1.0, 0.0])
    """
    if x.dtype.kind not in _NATIVE_KINDS or x.dtype.itemsize > 8:  # > 8: longdouble
        raise TypeError(
            f"{name} must hold real numbers or booleans, got numpy dtype {x.dtype}; "
            "convert it first, e.g. x.astype(numpy.float32)."
        )
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    if any(stride < 0 for stride in x.strides):
        x = x.copy()
    return x
