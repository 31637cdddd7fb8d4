#!/usr/bin/env bash
# Create benchmarks/.venv-benchmarl with BenchMARL, for benchmarks/bench_training.py.
#
# Usage:  bash benchmarks/setup_benchmarl.sh          # idempotent, skips if set up
#         FORCE=1 bash benchmarks/setup_benchmarl.sh  # reinstall into the venv
#         PYTHON=python3.11 bash benchmarks/setup_benchmarl.sh
#
# torch is installed first and on its own (so pip takes the CPU wheel), then
# BenchMARL with a constraint file that pins torch: otherwise pip would pull
# the newest torchrl/tensordict, which require a newer torch. The set below was
# checked to install and run together on Python 3.11 / CPU: torchrl 0.11.1 and
# tensordict 0.11.0 accept torch 2.13.0. BenchMARL's PettingZoo tasks import
# `pettingzoo.mpe`, which PettingZoo removed after 1.25.0 (MPE moved to mpe2),
# hence the pettingzoo pin; pygame is what pettingzoo.mpe imports for rendering.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/benchmarks/.venv-benchmarl"
PY="${PYTHON:-python3}"

TORCH_PIN="torch==2.13.0"
PINS=(
  "benchmarl==1.5.2"
  "torchrl==0.11.1"
  "tensordict==0.11.0"
  "pettingzoo==1.25.0"
  "pygame==2.6.1"
)

STAMP="$VENV/.benchmarl-installed"
WANT="$TORCH_PIN ${PINS[*]}"

print_versions() {
  "$VENV/bin/python" - <<'PYEOF'
from importlib.metadata import version
for pkg in ("torch", "benchmarl", "torchrl", "tensordict", "pettingzoo", "hydra-core", "numpy"):
    try:
        print(f"{pkg}=={version(pkg)}")
    except Exception as exc:  # noqa: BLE001
        print(f"{pkg}: NOT INSTALLED ({exc})")
PYEOF
}

check_imports() {
  "$VENV/bin/python" -c "import torch, torchrl, tensordict, benchmarl; from pettingzoo.mpe import simple_spread_v3" \
    >/dev/null 2>&1
}

if [[ "${FORCE:-0}" != "1" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] && check_imports; then
  echo "benchmarl venv already set up at $VENV"
  print_versions
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "creating venv $VENV with $PY"
  "$PY" -m venv "$VENV"
fi

CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "$TORCH_PIN" > "$CONSTRAINTS"

PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --quiet --upgrade pip
"${PIP[@]}" install --quiet "$TORCH_PIN"
"${PIP[@]}" install --quiet -c "$CONSTRAINTS" "${PINS[@]}"

if ! check_imports; then
  echo "ERROR: benchmarl venv imports failed" >&2
  "$VENV/bin/python" -c "import torch, torchrl, tensordict, benchmarl; from pettingzoo.mpe import simple_spread_v3"
  exit 1
fi

echo "$WANT" > "$STAMP"
echo "benchmarl venv ready at $VENV"
print_versions
