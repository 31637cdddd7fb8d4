"""The loop's log history: stored by column, read back as the rows that were logged."""

import io
import math
import tracemalloc

import pytest
import torch

from fastmarl.train.history import History


def rows():
    return [{"step": 1000, "iteration": 1, "time": 0.5, "sps": 1.0e4, "return": -3.5, "done": True},
            {"step": 2000, "iteration": 2, "loss": 0.25, "return": -2.0},
            {"step": 3000, "iteration": 3, "loss": 2, "note": "x", "big": 2**70}]


def test_rows_come_back_as_logged_with_their_types_and_missing_keys():
    h = History(rows())
    assert len(h) == 3 and list(h) == rows() and h == rows()
    assert h[1] == {"step": 2000, "iteration": 2, "loss": 0.25, "return": -2.0}  # no "time", no "done"
    assert type(h[0]["step"]) is int and type(h[0]["done"]) is bool and type(h[0]["sps"]) is float
    assert h[-1]["loss"] == 2.0 and type(h[-1]["loss"]) is float  # a float column stays float
    assert h[-1]["big"] == 2**70 and h[-1]["note"] == "x"  # beyond int64, or not a number: kept as objects
    assert h[1:] == rows()[1:] and h[::2] == [rows()[0], rows()[2]]
    assert h.column("return") == [-3.5, -2.0] and h.column("loss") == [0.25, 2.0]
    assert h.keys()[:4] == ["step", "iteration", "time", "sps"]
    with pytest.raises(IndexError, match="row 3 out of range"):
        h[3]
    with pytest.raises(KeyError, match="no log row has 'lss'"):
        h.column("lss")


def test_an_int_column_that_gets_a_float_becomes_float_exactly():
    h = History([{"x": 3}, {"x": 0.1}, {}])
    assert list(h) == [{"x": 3.0}, {"x": 0.1}, {}]
    h = History([{"x": 2**60}, {"x": 0.5}])  # would lose digits as float64: kept as objects instead
    assert h[0]["x"] == 2**60 and h[1]["x"] == 0.5


def test_values_are_bit_exact_through_a_checkpoint():
    gen = torch.Generator().manual_seed(0)
    vals = (torch.randn(500, generator=gen, dtype=torch.float64) * 1e3).tolist() + [math.inf, -0.0, 5e-324]
    logged = [{"step": i * 100, "return": v} if i % 3 else {"step": i * 100, "loss": v} for i, v in enumerate(vals)]
    h = History(logged)
    buf = io.BytesIO()
    torch.save({"history": h.state_dict()}, buf)
    buf.seek(0)
    back = History.from_state(torch.load(buf, weights_only=True)["history"])
    assert back == logged
    assert [struct_bits(r.get("return", r.get("loss"))) for r in back] == [struct_bits(v) for v in vals]
    assert back.keys() == h.keys()
    back.append({"step": 1, "extra": 1.5})  # a restored history goes on growing
    assert back[-1] == {"step": 1, "extra": 1.5} and len(back) == len(logged) + 1


def struct_bits(x: float) -> bytes:
    import struct
    return struct.pack("<d", x)


def test_older_checkpoints_with_a_list_of_rows_still_load():
    assert History.from_state(rows()) == rows()
    assert len(History.from_state(None)) == 0 and len(History.from_state([])) == 0
    empty = History.from_state(History().state_dict())
    assert len(empty) == 0 and empty.keys() == []


def test_a_damaged_history_state_is_a_clear_error():
    s = History(rows()).state_dict()
    s["columns"]["loss"]["values"] = s["columns"]["loss"]["values"][:1]
    with pytest.raises(ValueError, match="column 'loss' has 1 values for 3 rows"):
        History.from_state(s)
    with pytest.raises(ValueError, match="unknown log history format"):
        History.from_state({"format": "rows"})


def test_much_smaller_than_a_list_of_dicts():
    """20 float keys a row, as a training run logs: the columns hold 9 bytes a value (value and
    presence), a fifth of what the same rows take as dicts of floats (measured with tracemalloc)."""
    row = {f"key_{j}": 0.1 * j + 1e-3 for j in range(20)}

    def allocated(build):
        tracemalloc.start()
        obj = build()
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return size, obj

    dict_bytes, logged = allocated(lambda: [{k: v + i for k, v in row.items()} for i in range(5000)])
    col_bytes, h = allocated(lambda: History(logged))
    assert h.nbytes() == 5000 * 20 * 9 and h == logged
    assert col_bytes < 1.1 * h.nbytes() + 20_000  # the buffers are all it holds
    assert 4 * col_bytes < dict_bytes
