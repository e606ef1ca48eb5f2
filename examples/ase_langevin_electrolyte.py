"""Example: ASE Langevin dynamics of the model electrolyte (LAMMPS forces through
ase.calculators.lammpslib) with the local conductivity observed every 10 steps.

    .venv/bin/python examples/ase_langevin_electrolyte.py [MODEL] [--steps N] [--out PREFIX]

The default model is the shipped analytic reference model (a test function,
not a conductivity model). Writes PREFIX.reduce.npz and PREFIX.summary.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.lammpslib import LAMMPSlib
from ase.md.langevin import Langevin
from mpi4py import MPI  # noqa: F401  (loads libmpi for the lammps module)

from localcond.engine.ase import LocalConductivity
from localcond.engine.observer import ConductivityObserver

ROOT = Path(__file__).resolve().parents[1]


def electrolyte(npairs: int, conc_mol_per_l: float, seed: int) -> Atoms:
    """Cations and anions on a jittered lattice at the given salt concentration."""
    box = (npairs / (conc_mol_per_l * 6.02214076e23) * 1e27) ** (1 / 3)
    side = int(np.ceil((2 * npairs) ** (1 / 3)))
    grid = np.array(np.meshgrid(*[np.arange(side)] * 3)).reshape(3, -1).T[: 2 * npairs]
    rng = np.random.default_rng(seed)
    positions = (grid + 0.5 + rng.normal(scale=0.05, size=grid.shape)) * box / side
    atoms = Atoms(["Li", "P"] * npairs, positions=positions, cell=np.eye(3) * box, pbc=True)
    atoms.set_initial_charges([1.0, -1.0] * npairs)
    atoms.set_masses([20.0, 60.0] * npairs)
    return atoms


def lammps_forces(eps: float) -> LAMMPSlib:
    """The pair and long-range interactions of lammps_inputs/electrolyte/in.electrolyte."""
    return LAMMPSlib(
        lmpcmds=[
            "pair_style lj/cut/coul/long 12.0", "pair_modify shift yes",
            f"pair_coeff 1 1 0.5 3.0 {3.0 * 2 ** (1 / 6)}", f"pair_coeff 2 2 0.5 4.5 {4.5 * 2 ** (1 / 6)}",
            f"pair_coeff 1 2 0.5 3.75 {3.75 * 2 ** (1 / 6)}", "kspace_style pppm 1.0e-4", f"dielectric {eps}",
        ],
        lammps_header=["units real", "atom_style charge", "atom_modify map array sort 0 0"],
        atom_types={"Li": 1, "P": 2}, log_file=None, keep_alive=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=str(ROOT / "models" / "reference-cosine-10A.pt"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--npairs", type=int, default=50)
    parser.add_argument("--out", default="ase_electrolyte")
    args = parser.parse_args(argv)

    atoms = electrolyte(args.npairs, 1.0, seed=1)
    calc = LocalConductivity(args.model, species={"Li": "Li", "P": "PF6"}, calculator=lammps_forces(20.0))
    atoms.calc = calc
    observer = ConductivityObserver(atoms, calc, args.out, hist=(-10, 10, 80), tcorr=20)
    dyn = Langevin(atoms, 4 * units.fs, temperature_K=298, friction=1 / (500 * units.fs), fixcm=False,
                   rng=np.random.default_rng(2))
    dyn.attach(observer, interval=10)
    dyn.run(args.steps)
    observer.write()
    summary = observer.summary()
    err = summary["lambda_pred"]["stderr"]
    err_text = f"+- {err:.2g}" if err is not None else "(error needs >= 32 observations)"
    print(f"{observer.calls} observations; mean lambda {summary['lambda_pred']['value']:.4g} {err_text} "
          f"S cm^2/mol; T = {atoms.get_temperature():.0f} K; wrote {args.out}.reduce.npz, "
          f"{args.out}.summary.json")
    return summary


if __name__ == "__main__":
    main()
