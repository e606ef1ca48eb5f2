"""A user's own all-atom input (lammps_inputs/water_nacl: SPC/E water + NaCl,
PPPM, SHAKE, water types NULL) runs with every keyword of fix localcond, the
solvent gets no λ, and `localcond conductivity --types NULL NULL Na Cl` counts
only the ions."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import run_lmp
from localcond.io.lammps_dump import read_dump
from localcond.model.export import save_model
from localcond.model.reference import make_reference_model

INPUT = Path(__file__).resolve().parents[1] / "lammps_inputs" / "water_nacl"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("water_nacl")
    for name in ("in.water_nacl", "water.mol"):
        shutil.copy(INPUT / name, directory / name)
    model = save_model(*make_reference_model(["Na", "Cl"], [1.0, -1.0], 8.0), directory / "nacl.pt")
    text = (directory / "in.water_nacl").read_text()
    text = text.replace("variable        steps index 400", "variable        steps index 200")
    anchor = "dump_modify     d sort id\n"
    assert anchor in text
    text = text.replace(anchor, anchor + "dump            ionsonly ions custom 10 dump.ions id type q xu yu zu\n"
                        "dump_modify     ionsonly sort id\n")
    run_lmp(directory, f"variable model string {model}\n" + text)
    return directory


def test_every_keyword_runs_and_only_ions_get_lambda(run_dir):
    log = (run_dir / "log.lammps").read_text()
    assert "neighbors from its own binning" in log and "the system has bonds" in log
    frames = list(read_dump(run_dir / "dump.water"))
    assert len(frames) == 21
    for frame in frames:
        ions = np.isin(frame.types, (3, 4))
        assert ions.sum() == 8
        assert np.all(frame.columns["f_lc"][~ions] == 0.0)  # water: no λ
    # an ion without another within the 8 Å cutoff has λ = 0 under the reference model; most have one
    assert np.mean([np.mean(f.columns["f_lc"][np.isin(f.types, (3, 4))] != 0.0) for f in frames]) > 0.5
    summary = json.loads((run_dir / "water.summary.json").read_text())
    assert summary["evaluations"] == 21
    assert summary["species"]["Na"]["count"] == summary["species"]["Cl"]["count"] == 4 * 21
    assert summary["einstein_helfand"]["n_salt"] == 4
    assert set(summary) >= {"time_correlation", "einstein_helfand", "lambda_pred"}


def conductivity(run_dir: Path, dump: str, *types: str) -> dict:
    out = run_dir / f"{dump}.json"
    type_args = ["--types", *types] if types else []
    proc = subprocess.run(
        [sys.executable, "-m", "localcond", "conductivity", str(run_dir / dump), *type_args,
         "--timestep-fs", "2", "--temperature-k", "298", "--tau-window-ps", "0.04", "0.12", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def test_conductivity_counts_only_the_ions(run_dir):
    """The dump with the water and `--types NULL NULL Na Cl` gives what a dump of the
    ions alone (LAMMPS's own group, every charged atom an ion) gives from the same run."""
    result = conductivity(run_dir, "dump.water", "NULL", "NULL", "Na", "Cl")
    ions_only = conductivity(run_dir, "dump.ions")
    for key in ("molar_conductivity", "nernst_einstein"):
        assert result[key]["value"] == pytest.approx(ions_only[key]["value"], rel=1e-12)
        assert result[key]["stderr"] == pytest.approx(ions_only[key]["stderr"], rel=1e-12)
    assert result["molar_conductivity"]["value"] != 0.0
    assert result["n_ions"] == 8
    volume = np.prod(np.diag(next(iter(read_dump(run_dir / "dump.water"))).cell))
    assert result["concentration_mol_per_l"] == pytest.approx(4 / 6.02214076e23 / (volume * 1e-27), rel=1e-9)
