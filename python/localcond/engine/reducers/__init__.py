"""Reducers: statistics of λ accumulated during a run, combined exactly across
MPI ranks and across restarts (one implementation for the LAMMPS fix, the ASE
observer and post-run scripts).

Every reducer has ``update(...)``, ``merge(other)`` (exact parallel
combination), ``state()`` / ``from_state()`` (versioned save and load through
:mod:`localcond.engine.reducers.store`) and results computed from its state only.
"""
