"""The loop's log rows, stored by column.

A training run logs one row per log interval (by default one per iteration): a dict of about 20
numbers (step, time, steps/s, returns, losses, ...). Kept as a list of dicts, a day-long run holds
hundreds of thousands of them (about 900 bytes each, Python objects) and copies them into every
checkpoint. ``History`` keeps the same rows as one typed array per key (8 bytes a value, 1 byte of
presence mask), about fifteen times smaller, and reads back as a sequence of dicts:

    h = History()
    h.append({"step": 1000, "return": -3.5})
    h.append({"step": 2000, "loss": 0.25})
    h[-1] == {"step": 2000, "loss": 0.25}        # keys a row did not have are absent, as logged
    h.column("return") -> [-3.5]                  # the rows that have the key

Values keep their Python type: ints (``step``, ``iteration``) come back as ints, bools as bools,
floats bit-exact (float64). A value of any other type (a string, say) goes into a plain list column.
``state_dict()`` is tensors and plain containers (it loads with ``torch.load(weights_only=True)``);
``History.from_state(x)`` also accepts the list of dicts that checkpoints held before.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import Any, overload

import torch

_INT, _FLOAT, _BOOL, _OBJECT = "int", "float", "bool", "object"


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return _BOOL
    if isinstance(v, int):
        return _INT if -(2**63) <= v < 2**63 else _OBJECT
    if isinstance(v, float):
        return _FLOAT
    return _OBJECT


class _Column:
    """One key's values over all rows: a typed array (or a list), and which rows have the key."""

    __slots__ = ("kind", "values", "present")

    def __init__(self, kind: str, n_before: int):
        self.kind = kind
        self.values: array | list = self._empty(kind, n_before)
        self.present = bytearray(n_before)

    @staticmethod
    def _empty(kind: str, n: int) -> array | list:
        if kind == _FLOAT:
            return array("d", bytes(8 * n))
        if kind in (_INT, _BOOL):
            return array("q", bytes(8 * n))
        return [None] * n

    def widen(self, kind: str) -> None:
        """Make room for a value of ``kind`` (int -> float; anything mixed -> object)."""
        if kind == self.kind:
            return
        if {kind, self.kind} <= {_INT, _FLOAT} and not any(abs(v) > 2**53 for v in self.values):
            new_kind = _FLOAT
        else:
            new_kind = _OBJECT
        if new_kind == self.kind:
            return
        old = [self._get(i) for i in range(len(self.present))]
        self.kind, self.values = new_kind, self._empty(new_kind, 0)
        for v in old:
            self.values.append(0.0 if v is None and new_kind == _FLOAT else v)

    def _get(self, i: int) -> Any:
        v = self.values[i]
        if not self.present[i]:
            return None
        return bool(v) if self.kind == _BOOL else v

    def push(self, v: Any, here: bool) -> None:
        if not here:
            self.values.append(None if self.kind == _OBJECT else 0)
        elif self.kind == _BOOL:
            self.values.append(int(v))
        else:
            self.values.append(v)
        self.present.append(1 if here else 0)


class History(Sequence):
    """Log rows by column; a read-only sequence of dicts plus ``append`` (see the module docstring)."""

    def __init__(self, rows: Sequence[dict[str, Any]] = ()):
        self._n = 0
        self._cols: dict[str, _Column] = {}
        for row in rows:
            self.append(row)

    # -- writing ---------------------------------------------------------------------------
    def append(self, row: dict[str, Any]) -> None:
        for k, v in row.items():
            kind = _kind(v)
            col = self._cols.get(k)
            if col is None:
                col = self._cols[k] = _Column(kind, self._n)
            elif kind != col.kind:
                col.widen(kind)
        for k, col in self._cols.items():
            here = k in row
            col.push(row[k] if here else None, here)
        self._n += 1

    # -- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def _row(self, i: int) -> dict[str, Any]:
        return {k: c._get(i) for k, c in self._cols.items() if c.present[i]}

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._row(j) for j in range(*i.indices(self._n))]
        j = i + self._n if i < 0 else i
        if not 0 <= j < self._n:
            raise IndexError(f"history row {i} out of range ({self._n} rows)")
        return self._row(j)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self._row(i) for i in range(self._n))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (History, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"History({self._n} rows, keys={list(self._cols)})"

    def keys(self) -> list[str]:
        """Every key any row had, in order of first appearance."""
        return list(self._cols)

    def column(self, key: str) -> list[Any]:
        """The values of ``key`` in the rows that have it (in row order)."""
        c = self._cols.get(key)
        if c is None:
            raise KeyError(f"no log row has {key!r}; keys: {', '.join(self._cols)}")
        return [c._get(i) for i in range(self._n) if c.present[i]]

    def to_list(self) -> list[dict[str, Any]]:
        """Every row as a plain dict (for JSON)."""
        return list(self)

    def nbytes(self) -> int:
        """Bytes held by the columns' buffers (object columns counted at 8 bytes a slot)."""
        return sum(len(c.present) + (c.values.itemsize * len(c.values) if isinstance(c.values, array)
                                     else 8 * len(c.values)) for c in self._cols.values())

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        cols: dict[str, Any] = {}
        for k, c in self._cols.items():
            present = torch.frombuffer(bytearray(c.present), dtype=torch.uint8).bool() if self._n else \
                torch.zeros(0, dtype=torch.bool)
            if c.kind == _OBJECT:
                values: Any = list(c.values)
            elif self._n:
                values = torch.frombuffer(bytearray(c.values.tobytes()),
                                          dtype=torch.float64 if c.kind == _FLOAT else torch.int64)
            else:
                values = torch.zeros(0, dtype=torch.float64 if c.kind == _FLOAT else torch.int64)
            cols[k] = {"kind": c.kind, "values": values, "present": present}
        return {"format": "columns", "rows": self._n, "columns": cols}

    @classmethod
    def from_state(cls, state: dict[str, Any] | Sequence[dict[str, Any]] | None) -> History:
        """A history from ``state_dict()``'s output, or from a list of row dicts (older checkpoints)."""
        if not state:
            return cls()
        if not isinstance(state, dict):
            return cls(list(state))
        if state.get("format") != "columns":
            raise ValueError(f"unknown log history format {state.get('format')!r} (expected 'columns')")
        h = cls()
        n = int(state["rows"])
        for k, s in state["columns"].items():
            kind = s["kind"]
            if kind not in (_INT, _FLOAT, _BOOL, _OBJECT):
                raise ValueError(f"log history column {k!r} has unknown kind {kind!r}")
            present = s["present"]
            if len(present) != n or len(s["values"]) != n:
                raise ValueError(f"log history column {k!r} has {len(s['values'])} values for {n} rows")
            c = _Column(kind, 0)
            if kind == _OBJECT:
                c.values = list(s["values"])
            else:
                c.values = array("d" if kind == _FLOAT else "q",
                                 s["values"].contiguous().numpy().tobytes())
            c.present = bytearray(present.to(torch.uint8).contiguous().numpy().tobytes())
            h._cols[k] = c
        h._n = n
        return h
