"""Molecular ions in fix localcond ('molecules yes'): a small all-atom-like system —
one-atom cations, three-atom anions (a centre of +0.5 e and two satellites of
−0.75 e, bonded), neutral two-atom solvent molecules — on 1 and 2 ranks. The
fix's λ on the ions' centre atoms equals `localcond predict --molecules` on the
dumped frames, and its live Einstein–Helfand numbers equal `localcond
conductivity --molecules`; wrong molecular input is refused by name."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import run_lmp
from localcond.campaign.labels.conductivity import Settings, accumulate, analyse
from localcond.engine.predict import predict_dump
from localcond.io.lammps_dump import read_dump
from localcond.model.export import save_model
from localcond.model.reference import make_reference_model

BOX, SPACING = 30.0, 7.5
TYPES = ["Li", "A", "NULL", "NULL", "NULL"]


def data_file(path, seed: int = 0, n_ions: int = 10, n_solvent: int = 20, satellite_type: int = 3,
              satellite_charge: float = -0.75) -> None:
    """atom_style full: molecules on a lattice of SPACING (cations, anions, solvent)."""
    rng = np.random.default_rng(seed)
    sites = np.array(np.meshgrid(*[np.arange(4)] * 3)).reshape(3, -1).T * SPACING + 2.0
    rng.shuffle(sites)
    atoms, bonds = [], []
    mol = 0
    for k in range(2 * n_ions + n_solvent):
        mol += 1
        x = sites[k]
        if k < n_ions:
            atoms.append((mol, 1, 1.0, x))
        elif k < 2 * n_ions:
            axis = rng.normal(size=3)
            axis *= 1.2 / np.linalg.norm(axis)
            first = len(atoms) + 1
            atoms += [(mol, 2, 0.5, x), (mol, satellite_type, satellite_charge, x + axis),
                      (mol, satellite_type, satellite_charge, x - axis)]
            bonds += [(1, first, first + 1), (1, first, first + 2)]
        else:
            first = len(atoms) + 1
            atoms += [(mol, 4, 0.4, x), (mol, 5, -0.4, x + np.array([1.0, 0.0, 0.0]))]
            bonds.append((2, first, first + 1))
    lines = ["molecular ions test", "", f"{len(atoms)} atoms", f"{len(bonds)} bonds", "5 atom types",
             "2 bond types", "", f"0 {BOX} xlo xhi", f"0 {BOX} ylo yhi", f"0 {BOX} zlo zhi", "", "Masses", ""]
    lines += [f"{t} {m}" for t, m in zip(range(1, 6), (7.0, 31.0, 19.0, 16.0, 1.0))]
    lines += ["", "Atoms # full", ""]
    lines += [f"{i} {m} {t} {q} {x[0]:.6f} {x[1]:.6f} {x[2]:.6f}" for i, (m, t, q, x) in enumerate(atoms, start=1)]
    lines += ["", "Bonds", ""] + [f"{k} {t} {a} {b}" for k, (t, a, b) in enumerate(bonds, start=1)]
    path.write_text("\n".join(lines) + "\n")


def input_text(model: str, fix_extra: str = "", steps: int = 200) -> str:
    return f"""units real
atom_style full
boundary p p p
read_data data.lmp
pair_style lj/cut/coul/cut 8.0
pair_coeff * * 0.1 2.5
dielectric 10
bond_style harmonic
bond_coeff 1 300.0 1.2
bond_coeff 2 300.0 1.0
special_bonds lj/coul 0.0 0.0 0.0
comm_modify cutoff 12.0
velocity all create 300 4928 loop geom
fix nve all nve
fix lc all localcond 10 {model} types {' '.join(TYPES)} molecules yes {fix_extra}
dump d all custom 10 dump.lc id mol type q xu yu zu f_lc
dump_modify d sort id format float %.17g
timestep 1.0
run {steps}
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(save_model(*make_reference_model(["Li", "A"], [1.0, -1.0], 9.0),
                          tmp_path_factory.mktemp("m") / "ref.pt"))


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [1, 2])
def test_fix_equals_the_offline_tools_on_molecular_ions(tmp_path, model, nprocs):
    data_file(tmp_path / "data.lmp")
    run_lmp(tmp_path, input_text(model, "file red eh 6 5 298"), nprocs=nprocs)
    frames = list(read_dump(tmp_path / "dump.lc"))
    offline = predict_dump(model, tmp_path / "dump.lc", TYPES, molecules=True)
    centres = offline.evaluated
    assert centres.sum() == 20 and len(frames) == len(offline.timesteps) == 21
    for k, frame in enumerate(frames):
        fix = frame.columns["f_lc"][np.argsort(frame.ids)]
        np.testing.assert_allclose(fix[centres], offline.lam[k][centres], rtol=1e-9, atol=1e-9)
        assert np.all(fix[~centres] == 0.0)
    assert np.abs(offline.lam[:, centres]).max() > 0.1
    live = json.loads((tmp_path / "red.summary.json").read_text())["einstein_helfand"]
    for lag in (1, 3, 6):
        tau = lag * 10 * 1.0 / 1000
        settings = Settings(timestep_fs=1.0, temperature_k=298.0, tau_ps=tau, max_lag_ps=tau,
                            ion_types=(1, 2), molecules=True)
        expected = analyse(accumulate([tmp_path / "dump.lc"], settings), settings)["molar_conductivity"]["value"]
        assert live["molar_conductivity"][lag - 1] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("case, message", [
    ("atom_style", "'molecules yes' needs molecule IDs"),
    ("two centres", "molecule 11 holds 3 atoms of mapped types"),
    ("split", "molecule 11 carries -1 e but none of its atoms is of a mapped type"),
    ("charge", "molecular ions centred on atoms of type 2"),
])
def test_bad_molecular_input_is_refused(tmp_path, model, case, message):
    if case == "atom_style":
        text = input_text(model, steps=0).replace("read_data data.lmp", "region b block 0 20 0 20 0 20\n"
                                                  "create_box 5 b\ncreate_atoms 1 random 5 1 b\nmass * 1.0\n")
        text = text.replace("atom_style full", "atom_style charge")
        for line in ("bond_style harmonic", "bond_coeff 1 300.0 1.2", "bond_coeff 2 300.0 1.0",
                     "special_bonds lj/coul 0.0 0.0 0.0"):
            text = text.replace(line + "\n", "")
    else:
        data_file(tmp_path / "data.lmp", satellite_charge=-0.5 if case == "charge" else -0.75)
        text = input_text(model, steps=0)
        if case == "two centres":
            text = text.replace(f"types {' '.join(TYPES)}", "types Li A A NULL NULL")
        if case == "split":
            text = text.replace(f"types {' '.join(TYPES)}", "types Li NULL NULL NULL NULL")
    proc = run_lmp(tmp_path, text, check=False, timeout=120)
    assert proc.returncode != 0 and message in proc.stdout, proc.stdout[-2000:]


EXAMPLE = Path(__file__).resolve().parents[1] / "lammps_inputs" / "lipf6_water"


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [1, 2])
def test_the_lipf6_in_water_example_equals_the_offline_tools(tmp_path, nprocs):
    """lammps_inputs/lipf6_water (seven-atom PF6 in SPC/E water, PPPM, SHAKE, every keyword):
    λ only on Li and P, equal to `predict --molecules` on the dump; live Λ_EH equal to
    `conductivity --molecules` at the same lags."""
    for name in ("in.lipf6_water", "pf6.mol", "water.mol"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    model = save_model(*make_reference_model(["Li", "PF6"], [1.0, -1.0], 8.0), tmp_path / "lipf6.pt")
    text = (tmp_path / "in.lipf6_water").read_text().replace("variable        steps index 400",
                                                           "variable        steps index 120")
    run_lmp(tmp_path, f"variable model string {model}\n" + text, nprocs=nprocs)
    types = ["NULL", "NULL", "Li", "PF6", "NULL"]
    offline = predict_dump(model, tmp_path / "dump.lipf6", types, molecules=True)
    frames = list(read_dump(tmp_path / "dump.lipf6"))
    centres = offline.evaluated
    assert centres.sum() == 8 and np.all(np.isin(offline.types[centres], (3, 4)))
    for k, frame in enumerate(frames):
        fix = frame.columns["f_lc"][np.argsort(frame.ids)]
        np.testing.assert_allclose(fix, np.where(centres, offline.lam[k], 0.0), rtol=1e-9, atol=1e-12)
    assert np.abs(offline.lam[:, centres]).max() > 0.01
    live = json.loads((tmp_path / "lipf6.summary.json").read_text())
    assert live["species"]["PF6"]["count"] == 4 * len(frames)
    for lag in (1, 4):
        tau = lag * 10 * 2.0 / 1000
        settings = Settings(timestep_fs=2.0, temperature_k=298.0, tau_ps=tau, max_lag_ps=tau,
                            ion_types=(3, 4), molecules=True)
        expected = analyse(accumulate([tmp_path / "dump.lipf6"], settings), settings)["molar_conductivity"]["value"]
        assert live["einstein_helfand"]["molar_conductivity"][lag - 1] == pytest.approx(expected, rel=1e-9)


def test_a_model_trains_on_molecular_dumps_end_to_end(tmp_path):
    """The user's path for an own electrolyte: two production dumps with molecular anions and
    solvent → `localcond dataset --molecules` → `localcond train` (labels mode, tiny) →
    `localcond predict --molecules` gives λ on the ions' centres only, finite, from the
    trained model."""
    import subprocess
    import sys

    from test_conductivity import molecular_dumps

    dumps = []
    for k in range(2):
        part = tmp_path / f"part{k}"
        part.mkdir()
        every, _ = molecular_dumps(part, n_frames=60)
        dumps.append(str(every))
    types = ["Li", "A", "NULL", "NULL", "NULL"]

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "localcond", *map(str, args)], capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    cli("dataset", *dumps, "--types", *types, "--molecules", "--timestep-fs", "2", "--temperature-k", "298",
        "--window-ps", "2", "4", "--max-origins", "30", "--out", tmp_path / "set" / "mine.npz")
    from localcond.campaign.dataset import read_record

    assert read_record(tmp_path / "set" / "mine.npz")["metadata"]["diffusive_check_passed"] is None  # user window
    config = {"records": [str(tmp_path / "set" / "*.npz")], "out": str(tmp_path / "run"),
              "model": {"family": "power-spectrum", "cutoff": 6.0, "hidden": [8]}, "mode": "labels",
              "ensemble": 1, "epochs": 3, "patience": 3, "steps_per_epoch": 5, "batch_frames": 2, "seed": 0}
    (tmp_path / "config.json").write_text(json.dumps(config))
    cli("train", tmp_path / "config.json")
    cli("predict", tmp_path / "run" / "model.pt", dumps[0], "--types", *types, "--molecules", "--out",
        tmp_path / "pred")
    pred = np.load(tmp_path / "pred.npz")
    centres = pred["evaluated"]
    assert centres.sum() == 20 and np.all(np.isin(pred["type"][centres], (1, 2)))
    assert np.all(np.isfinite(pred["lambda"])) and np.all(pred["lambda"][:, ~centres] == 0.0)
    assert np.ptp(pred["lambda"][:, centres]) > 0  # a trained field, not a constant
