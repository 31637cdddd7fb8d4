"""fastmarl's batched LBF vs the reference ``lbforaging==2.0.0``: env-steps/s side by side, in one run.

    python benchmarks/bench_lbf.py                                   # 3 tasks; 1, 64, 1024, 8192 envs
    python benchmarks/bench_lbf.py --envs Foraging-8x8-2p-2f-coop-v3 --num-envs 1 64 --seconds 1   # quick look

The protocol (shared with ``bench_rware.py``) is in ``gridbench.py``: one pinned core, one thread,
fastmarl eager / ``compile=True`` / the reference interleaved per configuration, ratios reported.
Actions: uniform over LBF's 6; the compiled env warms up for 60 steps, past an auto-reset (episodes
are at most 50 steps). Results go to ``runs/bench/lbf-*.{jsonl,md}``.
"""

from __future__ import annotations

from importlib import metadata

import lbforaging  # noqa: F401 (registers the reference's ids)
from gridbench import Family, main

LBF = Family("lbf", "lbforaging 2.0.0", f"lbforaging {metadata.version('lbforaging')}",
             ("Foraging-8x8-2p-2f-coop-v3", "Foraging-2s-10x10-3p-3f-v3", "Foraging-15x15-4p-3f-v3"),
             n_actions=6, compile_warmup=60)

if __name__ == "__main__":
    raise SystemExit(main(LBF, __doc__))
