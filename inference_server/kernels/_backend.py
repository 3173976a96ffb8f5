"""Choosing an implementation from the inputs, without importing torch or triton eagerly.

The base install has neither torch nor triton. Every public kernel calls
:func:`resolve` with its array inputs: numpy arrays go to the CPU (numba)
path, torch CUDA tensors to the Triton path, torch CPU tensors to the CPU
path unless the caller explicitly asks for ``backend="triton"`` (which then
needs ``TRITON_INTERPRET=1``: that is how the Triton kernels are tested
without a GPU).
"""

from __future__ import annotations

import sys
from typing import Any, Literal

import numpy as np

Backend = Literal["auto", "reference", "cpu", "triton"]
BACKENDS: tuple[str, ...] = ("auto", "reference", "cpu", "triton")


def is_torch(x: Any) -> bool:
    """True for a torch tensor; never imports torch (if it is not loaded, x cannot be one)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_cuda(x: Any) -> bool:
    return is_torch(x) and bool(x.is_cuda)


def resolve(backend: str, *arrays: Any) -> str:
    """The implementation to run: ``reference``, ``cpu`` or ``triton``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    return "triton" if any(is_cuda(a) for a in arrays) else "cpu"


def to_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """A numpy view/copy of an array-like or torch tensor (any device)."""
    if is_torch(x):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    return arr if dtype is None else arr.astype(dtype, copy=False)


def first_torch(*arrays: Any) -> Any:
    """The first torch tensor among the inputs (its device and type decide the output's), or None."""
    for a in arrays:
        if is_torch(a):
            return a
    return None


def like(x: np.ndarray, template: Any) -> Any:
    """``x`` as a torch tensor on ``template``'s device when ``template`` is a tensor, else unchanged."""
    if template is None:
        return x
    import torch

    return torch.from_numpy(np.ascontiguousarray(x)).to(template.device)


def as_torch(x: Any, device: Any = None) -> Any:
    """``x`` as a torch tensor (kept on its device when it already is one).

    For the Triton path with non-tensor inputs: CUDA when there is one, else the CPU (which
    only works under ``TRITON_INTERPRET=1``).
    """
    import torch

    if isinstance(x, torch.Tensor):
        return x if device is None else x.to(device)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.as_tensor(np.ascontiguousarray(x), device=device)
