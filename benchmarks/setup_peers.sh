#!/usr/bin/env bash
# Create benchmarks/.venv-peers with the peer MPE implementations used by
# benchmarks/peers/peer_bench.py: mpe2 (PettingZoo), VMAS (torch), JaxMARL (jax).
#
# Usage:  bash benchmarks/setup_peers.sh          # idempotent, skips if set up
#         FORCE=1 bash benchmarks/setup_peers.sh  # reinstall into the venv
#         PYTHON=python3.11 bash benchmarks/setup_peers.sh
#
# Versions below are a set checked to install and run together on
# Python 3.11 / CPU (jaxmarl 0.2.0 only requires jax>=0.4.25, flax, chex,
# gymnax; mpe2 pulls pettingzoo).  jax is pinned to 0.6.2 rather than the
# newest release on purpose: on this CPU the JaxMARL MPE step loop runs
# ~1.6x faster with jax/jaxlib 0.6.2 than with 0.7.x-0.10.x (0.4.38/0.5.3 are
# close to 0.6.2), and a peer should be measured at its best.  torch is installed first and on its own so
# that pip picks the local CPU wheel (never a CUDA build).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/benchmarks/.venv-peers"
PY="${PYTHON:-python3}"

TORCH_PIN="torch==2.13.0"
PEER_PINS=(
  "vmas==1.5.2"
  "mpe2==1.1.1"
  "pettingzoo==1.27.0"
  "jaxmarl==0.2.0"
  "jax==0.6.2"
  "jaxlib==0.6.2"
  "flax==0.11.2"
  "chex==0.1.90"
  "gymnax==1.0.1"
  "numpy==2.4.6"
)

STAMP="$VENV/.peers-installed"
WANT="$TORCH_PIN ${PEER_PINS[*]}"

print_versions() {
  "$VENV/bin/python" - <<'EOF'
from importlib.metadata import version
for pkg in ("torch", "vmas", "mpe2", "pettingzoo", "jaxmarl", "jax", "jaxlib",
            "flax", "chex", "gymnax", "numpy"):
    try:
        print(f"{pkg}=={version(pkg)}")
    except Exception as exc:  # noqa: BLE001
        print(f"{pkg}: NOT INSTALLED ({exc})")
EOF
}

check_imports() {
  JAX_PLATFORMS=cpu "$VENV/bin/python" -c "import torch, vmas, mpe2, jax, jaxmarl" >/dev/null 2>&1
}

if [[ "${FORCE:-0}" != "1" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] && check_imports; then
  echo "peers venv already set up at $VENV"
  print_versions
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "creating venv $VENV with $PY"
  "$PY" -m venv "$VENV"
fi

PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --quiet --upgrade pip
# torch first (CPU wheel from the local wheel dir configured for pip)
"${PIP[@]}" install --quiet "$TORCH_PIN"
# peers; keep the torch pin so nothing upgrades it
"${PIP[@]}" install --quiet "$TORCH_PIN" "${PEER_PINS[@]}"

if ! check_imports; then
  echo "ERROR: peers venv imports failed" >&2
  JAX_PLATFORMS=cpu "$VENV/bin/python" -c "import torch, vmas, mpe2, jax, jaxmarl"
  exit 1
fi

echo "$WANT" > "$STAMP"
echo "peers venv ready at $VENV"
print_versions
