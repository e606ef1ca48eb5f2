"""Everyday LAMMPS workflows around fix localcond give the right statistics or a
clear error: runs split off the N-grid, minimize then run, reset_timestep, rerun
of a sparse dump, a changed ion count or timestep, and a model failing on one
rank of a Python driver under mpirun (every rank stops with the message)."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from helpers import MPIRUN, System, run_lmp
from localcond.io.lammps_dump import read_dump
from localcond.campaign.labels.conductivity import Settings, accumulate, analyse
from localcond.model.contract import METADATA_FILE
from localcond.model.export import save_model
from localcond.model.reference import make_reference_model
from localcond.engine.reducers.store import load
from localcond.units import molar_conductivity_prefactor

EH = "eh 6 5 298"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(save_model(*make_reference_model(["Li", "PF6"], [1.0, -1.0], 6.0),
                          tmp_path_factory.mktemp("m") / "ref.pt"))


def base(model, steps, fix_extra, nevery=10, columns="id type q xu yu zu f_lc"):
    text = System(model=model, steps=steps, nevery=nevery, box=26.0, n_per_type=40, fix_extra=fix_extra,
                  deterministic=True).input_text()
    return text.replace("id type q x y z f_lc", columns)


def offline(dump, lag_ps):
    settings = Settings(timestep_fs=2.0, temperature_k=298.0, tau_ps=lag_ps, max_lag_ps=lag_ps)
    return analyse(accumulate([dump], settings), settings)["molar_conductivity"]["value"]


def test_run_split_off_the_grid_equals_one_run(tmp_path, model):
    """run 105 + run 95 (N = 10): the setup evaluation at step 105 enters no statistic
    (it used to enter the time correlations as if 10 steps after step 100)."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    whole.mkdir()
    split.mkdir()
    run_lmp(whole, base(model, 200, f"file red tcorr 4 {EH}"))
    run_lmp(split, base(model, 105, f"file red tcorr 4 {EH}") + "run 95\n")
    a, _ = load(whole / "red.reduce.npz")
    b, _ = load(split / "red.reduce.npz")
    assert a["mean_series"].n[0] == b["mean_series"].n[0] == 21
    for name in a:
        for key, value in a[name].state().items():
            np.testing.assert_allclose(b[name].state()[key], value, rtol=1e-7, atol=1e-9, err_msg=f"{name}/{key}")


def test_minimize_then_run_matches_offline(tmp_path, model):
    """minimize stops off the grid (step 23): live Λ_EH equals `localcond conductivity`
    on the frames dumped every 10 steps afterwards."""
    text = base(model, 200, f"file red {EH}")
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("fix lc"))
    lines.insert(at + 1, "minimize 0 0 23 1000")
    run_lmp(tmp_path, "\n".join(lines) + "\n")
    frames = list(read_dump(tmp_path / "dump.lc"))
    assert frames[0].timestep == 30  # the minimization ended at step 23
    live = json.loads((tmp_path / "red.summary.json").read_text())["einstein_helfand"]
    for lag in (1, 3, 6):
        assert live["molar_conductivity"][lag - 1] == pytest.approx(offline(tmp_path / "dump.lc", lag * 0.02), rel=1e-9)
    assert "time correlations: new history" not in (tmp_path / "log.lammps").read_text()


def collective_m2(dump, lag):
    """Σ over origins of |ΔM|² and the number of origins at this lag (frame spacing), by hand."""
    m = []
    for frame in read_dump(dump):
        q = frame.columns["q"]
        x = np.stack([frame.columns[c] for c in ("xu", "yu", "zu")], axis=1)
        m.append((q[:, None] * x).sum(axis=0))
    m = np.array(m)
    dm = m[lag:] - m[:-lag]
    return (dm**2).sum(), len(dm)


def test_reset_timestep_starts_a_new_history(tmp_path, model):
    """run 100; reset_timestep 0; run 100: the configuration at step 100 is counted once,
    no lag spans the reset, and the log says why the history restarted."""
    text = base(model, 100, f"file red {EH}")
    text += "undump d\nreset_timestep 0\ndump d2 all custom 10 dump2.lc id type q xu yu zu\n"
    text += "dump_modify d2 sort id format float %.17g\nrun 100\n"
    run_lmp(tmp_path, text)
    log = (tmp_path / "log.lammps").read_text()
    assert "new history at step 0: the step went back from 100 to 0" in log
    summary = json.loads((tmp_path / "red.summary.json").read_text())
    assert summary["evaluations"] == 21
    live = summary["einstein_helfand"]
    n_salt = 40
    for lag in (1, 2, 6):
        s1, n1 = collective_m2(tmp_path / "dump.lc", lag)
        s2, n2 = collective_m2(tmp_path / "dump2.lc", lag)
        tau = lag * 0.02
        expected = molar_conductivity_prefactor(298.0, n_salt) * (s1 + s2) / (n1 + n2) / tau
        assert live["molar_conductivity"][lag - 1] == pytest.approx(expected, rel=1e-9)


def test_rerun_of_a_sparse_dump_uses_the_true_lag(tmp_path, model):
    """Frames every 40 steps rerun with N = 20: the lag unit is 40 steps (it used to be
    taken as 20, doubling Λ_EH)."""
    first = tmp_path / "md"
    first.mkdir()
    run_lmp(first, base(model, 400, "", nevery=40, columns="id type q x y z ix iy iz xu yu zu f_lc"))
    lines = base(model, 0, "").splitlines()
    keep = lines[: next(i for i, line in enumerate(lines) if line.startswith("velocity"))]
    keep += ["timestep 2.0", f"fix lc all localcond 20 {model} types Li PF6 file red {EH}",
             f"rerun {first / 'dump.lc'} dump x y z ix iy iz box yes"]
    run_lmp(tmp_path, "\n".join(keep) + "\n")
    live = json.loads((tmp_path / "red.summary.json").read_text())["einstein_helfand"]
    assert live["tau_ps"][0] == pytest.approx(0.08)
    for lag in (1, 2, 5):
        assert live["molar_conductivity"][lag - 1] == pytest.approx(offline(first / "dump.lc", lag * 0.08), rel=1e-9)
    assert json.loads((tmp_path / "red.summary.json").read_text())["evaluations"] == 11
    assert (tmp_path / "log.lammps").read_text().count("fix localcond lc: neighbors from") == 1  # not per frame


def test_rerun_of_wrapped_coordinates_without_image_flags_is_refused(tmp_path, model):
    """A dump of x y z read without ix iy iz: the ions that cross the box jump by a box
    length, and Λ_EH came out tens of times too large, exit 0. Now every rank stops
    naming the wrapped coordinates (the same dump read with its image flags is right:
    test_rerun_of_a_sparse_dump_uses_the_true_lag)."""
    first = tmp_path / "md"
    first.mkdir()
    run_lmp(first, base(model, 400, "", nevery=40, columns="id type q x y z ix iy iz f_lc"))
    frames = list(read_dump(first / "dump.lc"))
    images = np.stack([f.columns["ix"] for f in frames])
    assert np.any(images != images[0])  # some ion did cross the box: the case can fail
    lines = base(model, 0, "").splitlines()
    keep = lines[: next(i for i, line in enumerate(lines) if line.startswith("velocity"))]
    keep += ["timestep 2.0", f"fix lc all localcond 20 {model} types Li PF6 file red {EH}",
             f"rerun {first / 'dump.lc'} dump x y z box yes"]
    proc = run_lmp(tmp_path, "\n".join(keep) + "\n", check=False)
    assert proc.returncode != 0
    assert "more than half the box's smallest periodic width (13 A)" in proc.stdout
    assert "wrapped coordinates without image flags" in proc.stdout


def test_a_file_prefix_is_never_overwritten_by_another_fix(tmp_path, model):
    """Two fixes with one prefix, or unfix then a new fix with the same prefix: the
    first fix's files used to be overwritten without a word. Both are refused; a
    redefinition that carries the statistics on through a restart is not."""
    two = tmp_path / "two"
    two.mkdir()
    text = base(model, 20, "file red") + f"fix lc2 all localcond 10 {model} types Li PF6 file red\nrun 10\n"
    proc = run_lmp(two, text, check=False)
    assert proc.returncode != 0 and "file prefix 'red' is already used by another fix localcond" in proc.stdout
    again = tmp_path / "again"
    again.mkdir()
    text = base(model, 20, "file red") + "undump d\nthermo_style one\nunfix lc\n"
    text += f"fix lc2 all localcond 10 {model} types Li PF6 file red\nrun 10\n"
    proc = run_lmp(again, text, check=False)
    assert proc.returncode != 0
    assert "an earlier fix localcond in this process wrote 'red.reduce.npz'" in proc.stdout
    assert json.loads((again / "red.summary.json").read_text())["evaluations"] == 3  # the first fix's, intact
    restarted = tmp_path / "restarted"
    restarted.mkdir()
    text = base(model, 20, f"file red {EH}") + "write_restart r.restart\nclear\nread_restart r.restart\n"
    text += (f"dielectric 10\nfix nve all nve\nfix lc all localcond 10 {model} types Li PF6 file red {EH}\n"
             "timestep 2.0\nrun 20\n")
    run_lmp(restarted, text)
    assert json.loads((restarted / "red.summary.json").read_text())["evaluations"] == 5


def test_changed_ion_count_is_named(tmp_path, model):
    text = base(model, 20, "tcorr 3") + "group gone id 1\ndelete_atoms group gone\nrun 20\n"
    proc = run_lmp(tmp_path, text, check=False)
    assert proc.returncode != 0
    assert "the number of ions in the group changed at step 20 (per species Li 40, PF6 40 -> Li 39, PF6 40)" \
        in proc.stdout


def test_new_timestep_with_the_same_n_is_refused(tmp_path, model):
    proc = run_lmp(tmp_path, base(model, 20, EH) + "timestep 1.0\nrun 40\n", check=False)
    assert proc.returncode != 0
    assert "new history at step 20: the timestep changed from 2 fs to 1 fs" in proc.stdout
    assert "correlations were accumulated at lags of 0.02 ps; they cannot be mixed" in proc.stdout


class NanForAnions(torch.nn.Module):
    def forward(self, species: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor,
                n_local: int) -> torch.Tensor:
        out = torch.zeros(n_local, dtype=edge_vec.dtype)
        return torch.where(species[:n_local] == 1, torch.full_like(out, float("nan")), out)


DRIVER = r"""
import sys
from mpi4py import MPI
from localcond.engine.plugin import lammps
rank = MPI.COMM_WORLD.rank
lmp = lammps(cmdargs=["-log", "none", "-screen", "none"])
try:
    lmp.commands_string(open(sys.argv[1]).read())
    open(f"rank{rank}.txt", "w").write("finished without error")
except Exception as exc:
    open(f"rank{rank}.txt", "w").write(str(exc))
    sys.exit(3)
"""


@pytest.mark.mpi
def test_model_failure_on_one_rank_stops_a_python_driver_on_every_rank(tmp_path):
    """Anions only in rank 0's half of the box: the model fails there alone; both ranks
    of `mpirun -np 2 python driver.py` get the exception within seconds."""
    module, metadata = make_reference_model(["Li", "PF6"], [1.0, -1.0], 6.0)
    path = tmp_path / "nan.pt"
    torch.jit.save(torch.jit.script(NanForAnions()), str(path), _extra_files={METADATA_FILE: metadata.to_json()})
    text = System(model=str(path), steps=20, box=26.0, n_per_type=20).input_text()
    text = text.replace("create_box 2 box", "processors 2 1 1\ncreate_box 2 box\nregion left block 1 12 INF INF INF INF")
    text = text.replace("create_atoms 2 random 20 4929 box", "create_atoms 2 random 20 4929 left")
    (tmp_path / "in.lammps").write_text(text)
    (tmp_path / "driver.py").write_text(DRIVER)
    start = time.monotonic()
    proc = subprocess.run([MPIRUN, "-np", "2", sys.executable, "driver.py", "in.lammps"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert time.monotonic() - start < 60
    assert proc.returncode != 0, proc.stdout + proc.stderr
    for rank in (0, 1):  # each rank's own exception text
        line = (tmp_path / f"rank{rank}.txt").read_text()
        assert "model evaluation failed at step 0" in line and "non-finite value(s)" in line
        assert "(MPI rank 0 of 2)" in line


@pytest.mark.mpi
def test_species_swapped_between_runs_start_a_new_history(tmp_path, model):
    """Two atoms swap types (and charges) between runs, the counts per species unchanged:
    the setup's re-evaluation of the same step sees different λ, so the time correlation
    starts a new history instead of pairing an ion with its old species."""
    text = base(model, 20, "tcorr 3") + "\n".join([
        "set atom 1 type 2", "set atom 1 charge -1.0", "set atom 41 type 1", "set atom 41 charge 1.0",
        "run 20"]) + "\n"
    run_lmp(tmp_path, text, nprocs=2)
    assert "new history at step 20: the atoms moved since the last evaluation" in (tmp_path / "log.lammps").read_text()


@pytest.mark.mpi
def test_species_swapped_during_a_run_stops_every_rank(tmp_path, model):
    """fix atom/swap changes types during the run: the rank following a changed ion
    notices, and under mpirun every rank stops with its message instead of waiting in a
    collective."""
    text = base(model, 10, "tcorr 3").replace("run 10", "fix mc all atom/swap 10 5 29494 100000.0 types 1 2\nrun 40")
    proc = run_lmp(tmp_path, text, nprocs=2, check=False, timeout=120)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "the species of atom ID" in proc.stdout and "changed during the run" in proc.stdout


READ_ON_RANK_0 = r"""
import json, sys
from mpi4py import MPI
from localcond.engine.plugin import lammps
rank = MPI.COMM_WORLD.rank
lmp = lammps(cmdargs=["-log", "none", "-screen", "none"])
lmp.commands_string(open(sys.argv[1]).read())
if rank == 0:  # LAMMPS's library reads a fix's global vector wherever it is asked
    values = [lmp.extract_fix("lc", 0, 1, k) for k in range(9)]
lmp.command("run 10")  # collective: the ranks must not be waiting for each other
if rank == 0:
    json.dump(values, open("vector.json", "w"))
"""


@pytest.mark.mpi
def test_global_vector_read_on_one_rank_of_a_python_driver(tmp_path, model):
    """The global vector is computed when first read after an evaluation; from values
    every rank holds (the moments of λ are all-reduced each evaluation), so a driver
    reading f_lc on rank 0 alone neither hangs nor gets that rank's share only."""
    text = base(model, 40, "hist -3 3 6").replace("thermo_style custom step temp f_lc[1] f_lc[2]",
                                                  "thermo_style custom step temp")
    (tmp_path / "in.lammps").write_text(text)
    (tmp_path / "driver.py").write_text(READ_ON_RANK_0)
    proc = subprocess.run([MPIRUN, "-np", "2", sys.executable, "driver.py", "in.lammps"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    values = json.loads((tmp_path / "vector.json").read_text())
    frames = [f for f in read_dump(tmp_path / "dump.lc") if f.timestep <= 40]
    lam = np.array([f.columns["f_lc"] for f in frames])  # [evaluation, atom], both ranks' atoms
    assert len(frames) == 5
    assert values[0] == pytest.approx(lam[-1].mean(), rel=1e-12)  # group mean at step 40
    assert values[1] == lam.shape[1]
    assert values[2] == pytest.approx(lam.mean(axis=1).mean(), rel=1e-12)  # running Λ_pred
    assert values[4] == pytest.approx(lam.std(), rel=1e-10)  # std of λ over ions and evaluations
