"""``fastmarl export RUN_DIR --format onnx [--out DIR]``: a run's actors as ONNX graphs (one per group)
and a manifest, to run the policy without PyTorch; see :mod:`fastmarl.train.export`."""

from __future__ import annotations

import argparse
import json
import sys

from fastmarl.config import ConfigError
from fastmarl.train.checkpoint import CheckpointError
from fastmarl.train.export import DEFAULT_OPSET, FORMATS, ExportError, export_run


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastmarl export", description="Write one ONNX actor per group of a run "
                                "(observation in; action logits, Q-values or mean action out) and manifest.json.")
    p.add_argument("run", metavar="RUN_DIR", help="a run directory (runs/NAME)")
    p.add_argument("--format", default="onnx", help=f"export format: {', '.join(FORMATS)} (default onnx)")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/export)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint folder (default: the newest whose model verifies)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        manifest = export_run(args.run, args.out, args.format, args.checkpoint, args.opset)
    except (ConfigError, CheckpointError, ExportError) as e:
        print(f"fastmarl export: error: {e}", file=sys.stderr)
        return 2
    groups = json.loads(manifest.read_text())["groups"]
    for name, g in groups.items():
        err = g["max_abs_error_vs_torch"]
        check = f", max |onnxruntime - torch| {err:.1e}" if err is not None else ""
        print(f"{manifest.parent / g['file']}: group {name!r}, {len(g['agents'])} agents, "
              f"{' + '.join(g['inputs'])} -> {' + '.join(g['outputs'])}{check}")
    print(f"{manifest}")
    return 0
