"""localcond: local molar conductivity of ions from their static environment.

Importing this package is cheap: torch is imported only by the modules that
evaluate models (``localcond.engine.runtime``, ``localcond.model``), so the LAMMPS
entry point (``localcond.engine.plugin.plugin_dir``) stays fast.
"""

__version__ = "0.1.0"
