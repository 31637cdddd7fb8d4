"""Checkpoints: atomic on disk, verified on load.

A checkpoint is a folder ``checkpoints/step_<global step>/`` holding

- ``model.safetensors``: every network weight and buffer (value normalisers too);
- ``trainer.pt``: optimizer states, RNG states, the env's state (``env_state_dict``:
  the ``SavableEnv`` protocol of :mod:`fastmarl.envs.api`) and the rollout's
  position (everything an exact resume needs), loaded with ``weights_only=True``;
- optional extra tensor files (``replay.safetensors``: a value-based run's
  replay buffer), saved by ``save_checkpoint(extra=...)`` and read back with
  ``load_extra_tensors``;
- ``manifest.json``: format, step, and the size and SHA-256 of each file.

It is written into a hidden temporary folder and renamed into place with
``os.replace`` only when complete, then ``checkpoints/latest`` (a one-line file,
also replaced atomically) is pointed at it, so a crash at any moment leaves the
previous checkpoint intact. Loading re-hashes every file against the manifest
and raises ``CheckpointError`` naming the broken file. A resume takes the newest
checkpoint that verifies (``newest_valid_checkpoint``), moving the damaged newer ones
aside (``set_aside``: renamed, never deleted), and first removes what killed writes
left behind (``remove_stale_temporaries``); evaluating needs only a valid model file
(``verify_checkpoint(path, only=(MODEL,))``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save
from torch import Tensor

from fastmarl.envs.api import env_state_dict, load_env_state_dict  # noqa: F401 (the loop saves envs with these)

FORMAT = "fastmarl-checkpoint-v1"
MODEL, TRAINER, MANIFEST, LATEST = "model.safetensors", "trainer.pt", "manifest.json", "latest"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or corrupted; the message says which file and what to do."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and ``os.replace``."""
    tmp = temporary_name(path)
    _write_bytes(tmp, text.encode())
    os.replace(tmp, path)


def save_checkpoint(folder: Path, step: int, weights: dict[str, Tensor], trainer: dict[str, Any],
                    info: dict[str, Any] | None = None, keep: int | None = None,
                    extra: dict[str, dict[str, Tensor]] | None = None) -> Path:
    """Write ``folder/step_<step>`` atomically, point ``latest`` at it, keep the newest ``keep``.
    ``extra``: file name (``*.safetensors``) -> tensors, saved in the same folder and manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:012d}"
    final = folder / name
    tmp = folder / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in weights.items()}
    _write_bytes(tmp / MODEL, st_save(tensors, metadata={"format": FORMAT, "step": str(step)}))
    buf = io.BytesIO()
    torch.save(trainer, buf)
    _write_bytes(tmp / TRAINER, buf.getvalue())
    for fname, ts in (extra or {}).items():
        if fname in (MODEL, TRAINER, MANIFEST) or not fname.endswith(".safetensors") or "/" in fname:
            raise ValueError(f"extra checkpoint file {fname!r}: expected a new name ending in .safetensors")
        _write_bytes(tmp / fname, st_save({k: v.detach().contiguous().cpu().clone() for k, v in ts.items()},
                                          metadata={"format": FORMAT, "step": str(step)}))
    files = {f: {"bytes": (tmp / f).stat().st_size, "sha256": _sha256(tmp / f)}
             for f in (MODEL, TRAINER, *(extra or {}))}
    manifest = {"format": FORMAT, "step": step, "files": files, **(info or {})}
    _write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=2).encode())
    if final.exists():  # re-writing the same step (e.g. after a resume): replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(folder / LATEST, name + "\n")
    if keep is not None:
        for old in list_checkpoints(folder)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete-looking checkpoint folders, oldest first (temporary folders excluded)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step_"))


def latest_checkpoint(folder: Path) -> Path:
    """The checkpoint ``latest`` points to (or the newest folder if that file is missing)."""
    pointer = folder / LATEST
    if pointer.is_file():
        target = folder / pointer.read_text().strip()
        if not target.is_dir():
            raise CheckpointError(f"{pointer} points to {target.name}, which does not exist; pass an existing "
                                  f"checkpoint folder explicitly (found: {[p.name for p in list_checkpoints(folder)]})")
        return target
    found = list_checkpoints(folder)
    if not found:
        raise CheckpointError(f"no checkpoint in {folder}: the run was stopped before its first checkpoint; "
                              "start it again (delete its folder or choose another --name)")
    return found[-1]


def newest_valid_checkpoint(folder: Path, only: tuple[str, ...] | None = None
                            ) -> tuple[Path, list[tuple[Path | None, str]]]:
    """The newest checkpoint of ``folder`` that passes ``verify_checkpoint(path, only)``: the one
    ``latest`` points to, else the newest older one; and ``(path, why)`` for each newer one that
    was skipped (path None: a ``latest`` pointing nowhere). CheckpointError when none verifies."""
    found = list_checkpoints(folder)
    problems: list[tuple[Path | None, str]] = []
    try:
        latest = latest_checkpoint(folder)
    except CheckpointError as e:
        if not found:
            raise
        latest = None
        problems.append((None, str(e)))
    candidates = [latest] if latest is not None else []
    candidates += [p for p in reversed(found) if latest is None or p.name < latest.name]
    for path in candidates:
        try:
            verify_checkpoint(path, only)
        except CheckpointError as e:
            problems.append((path, str(e)))
            continue
        return path, problems
    raise CheckpointError(f"no valid checkpoint in {folder}: " + "; ".join(why for _, why in problems))


DAMAGED_PREFIX = "damaged-"  # a damaged checkpoint moved aside by a resume (list_checkpoints skips it)


def set_aside(path: Path) -> Path:
    """Rename the damaged checkpoint ``path`` to ``damaged-<name>`` next to it (a resumed run would
    otherwise write a new checkpoint of the same step over it); returns the new path. Nothing is
    deleted: the user may inspect or remove it."""
    path = Path(path)
    target = path.with_name(DAMAGED_PREFIX + path.name)
    n = 1
    while target.exists():
        target, n = path.with_name(f"{DAMAGED_PREFIX}{path.name}.{n}"), n + 1
    os.replace(path, target)
    return target


# what atomic writes leave when killed: `.tmp-step_<N>-<PID>` (a checkpoint folder) and `.<file>.tmp-<PID>`
# (checkpoints/latest, config.json, meta.json, metrics.csv, eval.csv, learning_curve.png)
_TEMPORARY = re.compile(r"^\.(?:tmp-step_\d+|[\w.-]+\.tmp)-(\d+)$")


def temporary_name(path: Path) -> Path:
    """The temporary file an atomic write of ``path`` goes through (``.<name>.tmp-<PID>``)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary folders and files that an atomic write killed midway left in
    ``folder`` (``.tmp-step_*-PID``, ``.<file>.tmp-PID``), unless process PID still lives (and may
    be writing); return what was removed. Only these names are touched."""
    removed: list[Path] = []
    if not Path(folder).is_dir():
        return removed
    for p in sorted(Path(folder).iterdir()):
        m = _TEMPORARY.match(p.name)
        if m is None or (int(m.group(1)) != os.getpid() and _pid_alive(int(m.group(1)))):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def verify_checkpoint(path: Path, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Check the manifest and every file's size and SHA-256 (or only the files named in
    ``only``, e.g. ``(MODEL,)`` for a policy that needs no trainer state); return the manifest."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete: it has no {MANIFEST} (it was not fully "
                              "written); use an earlier checkpoint")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint {path} is corrupted: {MANIFEST} is not valid JSON ({e}); "
                              "use an earlier checkpoint") from e
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: unknown format {manifest.get('format')!r}, expected {FORMAT!r}")
    for fname, want in manifest["files"].items():
        if only is not None and fname not in only:
            continue
        f = path / fname
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {fname} is missing; use an earlier checkpoint")
        size = f.stat().st_size
        if size != want["bytes"]:
            raise CheckpointError(f"checkpoint {path} is corrupted: {fname} has {size} bytes, the manifest says "
                                  f"{want['bytes']} (truncated or partially written); use an earlier checkpoint")
        digest = _sha256(f)
        if digest != want["sha256"]:
            raise CheckpointError(f"checkpoint {path} is corrupted: {fname} has SHA-256 {digest[:12]}..., the "
                                  f"manifest says {want['sha256'][:12]}...; use an earlier checkpoint")
    return manifest


def load_checkpoint(path: Path, trainer: bool = True,
                    map_location: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict[str, Any] | None, dict]:
    """Verify, then load ``(weights, trainer state or None, manifest)``; with ``trainer=False``
    only the weights are verified (evaluating a policy needs no valid trainer state)."""
    path = Path(path)
    manifest = verify_checkpoint(path, only=None if trainer else (MODEL,))
    weights = load_file(path / MODEL, device=str(map_location))
    state = torch.load(path / TRAINER, map_location=map_location, weights_only=True) if trainer else None
    return weights, state, manifest


def load_extra_tensors(path: Path, fname: str, manifest: dict[str, Any],
                       map_location: str | torch.device = "cpu", what: str = "") -> dict[str, Tensor]:
    """Load the extra tensor file ``fname`` of a checkpoint whose ``manifest`` was verified
    by ``load_checkpoint``; CheckpointError if the checkpoint was saved without it
    (``what`` says what the file holds and why it is needed)."""
    path = Path(path)
    if fname not in manifest.get("files", {}):
        raise CheckpointError(f"checkpoint {path} has no {fname}{' (' + what + ')' if what else ''}; it cannot be "
                              "resumed exactly. Use a checkpoint that has it, or start a new run")
    f = path / fname
    want = manifest["files"][fname]
    if not f.is_file():  # deleted after load_checkpoint's verification
        raise CheckpointError(f"checkpoint {path} is incomplete: {fname} is missing; use an earlier checkpoint")
    if f.stat().st_size != want["bytes"] or _sha256(f) != want["sha256"]:
        raise CheckpointError(f"checkpoint {path} is corrupted: {fname} does not match its size/SHA-256 in the "
                              "manifest; use an earlier checkpoint")
    return load_file(f, device=str(map_location))
