"""Readable one-line ``repr``s for drift's records: tensors by shape, long text cut, long lists
and dicts counted, so that ``print(edit)`` or a result in a notebook cell fits on a line or two.

Example:
    >>> import torch
    >>> brief(torch.zeros(30, 9)), brief(torch.tensor(0.25)), brief(3.14159265)
    ('Tensor[30, 9]', '0.25', '3.142')
    >>> brief(list(range(10)))
    '[10 items]'
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

TEXT = 60  # characters of a string shown before it is cut
ITEMS = 4  # list or dict entries shown before they are only counted


def brief(value: Any) -> str:
    """``value`` in a few characters (see the module docstring)."""
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return brief(value.item())
        dtype = "" if value.dtype == torch.float32 else f" {str(value.dtype).removeprefix('torch.')}"
        return f"Tensor{list(value.shape)}{dtype}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return repr(value if len(value) <= TEXT else value[: TEXT - 1] + "…")
    if isinstance(value, (list, tuple)):
        if len(value) > ITEMS or any(isinstance(v, (list, tuple, dict)) for v in value):
            return f"[{len(value)} items]"
        inner = ", ".join(brief(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, dict):
        if len(value) > ITEMS:
            return f"{{{len(value)} keys: {', '.join(map(str, list(value)[:ITEMS]))}, …}}"
        return "{" + ", ".join(f"{k}: {brief(v)}" for k, v in value.items()) + "}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return f"{type(value).__name__}(…)"  # a record inside a record: named, not expanded
    return repr(value)


def fields_repr(obj: Any) -> str:
    """``Name(field=brief(value), …)`` of a dataclass instance, fields left at ``None`` omitted."""
    parts = [
        f"{f.name}={brief(getattr(obj, f.name))}"
        for f in dataclasses.fields(obj)
        if f.repr and getattr(obj, f.name) is not None
    ]
    return f"{type(obj).__name__}({', '.join(parts)})"
