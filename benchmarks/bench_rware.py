"""fastmarl's batched RWARE vs the reference ``rware==2.0.0``: env-steps/s side by side, in one run.

    python benchmarks/bench_rware.py                                  # tiny-2ag, tiny-4ag, small-4ag; 1..8192 envs
    python benchmarks/bench_rware.py --envs rware-tiny-2ag-v2 --num-envs 1 64 --seconds 1   # quick look

The protocol (shared with ``bench_lbf.py``) is in ``gridbench.py``: one pinned core, one thread,
fastmarl eager / ``compile=True`` / the reference interleaved per configuration, ratios reported.
Actions: uniform over RWARE's 5. Results go to ``runs/bench/rware-*.{jsonl,md}``.
"""

from __future__ import annotations

from importlib import metadata

import rware  # noqa: F401 (registers the reference's ids)
from gridbench import Family, main

RWARE = Family("rware", "rware 2.0.0", f"rware {metadata.version('rware')}, networkx {metadata.version('networkx')}",
               ("rware-tiny-2ag-v2", "rware-tiny-4ag-v2", "rware-small-4ag-v2"), n_actions=5, compile_warmup=20)

if __name__ == "__main__":
    raise SystemExit(main(RWARE, __doc__))
