"""The command line: reference-model, info, predict, plugin-path."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from helpers import brute_force_reference

CLI = [sys.executable, "-m", "localcond"]


def run(*args, check=True):
    proc = subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def write_dump(path: Path, frames, positions: str = "x y z"):
    with open(path, "w") as handle:
        for step, L, types, q, x in frames:
            handle.write(f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n{len(types)}\n")
            handle.write("ITEM: BOX BOUNDS pp pp pp\n" + f"0 {L}\n" * 3)
            handle.write(f"ITEM: ATOMS id type q {positions}\n")
            for k in range(len(types)):
                handle.write(f"{k + 1} {types[k]} {q[k]} {float(x[k, 0])!r} {float(x[k, 1])!r} {float(x[k, 2])!r}\n")


def test_reference_model_and_predict(tmp_path):
    run("reference-model", tmp_path / "ref.pt", "--species", "Na:1", "Cl:-1", "--cutoff", 5)
    info = json.loads(run("info", tmp_path / "ref.pt", "--json").stdout)
    assert info["species"] == ["Na", "Cl"] and info["receptive_field"] == 5.0

    rng = np.random.default_rng(1)
    types = np.array([1, 2] * 10)
    q = np.where(types == 1, 1.0, -1.0)
    frames = [(s, 12.0, types, q, rng.random((20, 3)) * 12.0) for s in (0, 10, 20)]
    write_dump(tmp_path / "traj.dump", frames)
    out = run("predict", tmp_path / "ref.pt", tmp_path / "traj.dump", "--types", "Na", "Cl",
              "--out", tmp_path / "pred")
    assert "3 frames, 20 ions" in out.stdout

    result = np.load(tmp_path / "pred.npz")
    np.testing.assert_array_equal(result["timestep"], [0, 10, 20])
    for k, (_, L, _, charges, x) in enumerate(frames):
        expected = brute_force_reference(x, charges, np.eye(3) * L, (True,) * 3, 5.0)
        np.testing.assert_allclose(result["lambda"][k], expected, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(result["frame_mean"][k], expected.mean(), rtol=1e-10)
    csv_lines = (tmp_path / "pred_frames.csv").read_text().splitlines()
    assert csv_lines[1] == "timestep,n_ions,mean_lambda_S_cm2_per_mol"
    assert float(csv_lines[2].split(",")[2]) == result["frame_mean"][0]


def test_predict_errors_are_one_line(tmp_path):
    run("reference-model", tmp_path / "ref.pt", "--species", "Na:1", "Cl:-1", "--cutoff", 5)
    types = np.array([1, 2, 3])
    write_dump(tmp_path / "t.dump", [(0, 10.0, types, np.array([1.0, -1.0, 0.0]), np.eye(3))])
    proc = run("predict", tmp_path / "ref.pt", tmp_path / "t.dump", "--types", "Na", "Cl", check=False)
    assert proc.returncode == 2
    assert "atom types range over 1..3 but 2 species names were given" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = run("predict", tmp_path / "ref.pt", tmp_path / "t.dump", "--types", "Na", "Cl", "NULL",
               "--out", tmp_path / "ok")
    assert proc.returncode == 0

    write_dump(tmp_path / "q.dump", [(0, 10.0, types[:2], np.array([0.5, -1.0]), np.eye(3)[:2])])
    proc = run("predict", tmp_path / "ref.pt", tmp_path / "q.dump", "--types", "Na", "Cl", check=False)
    assert "have charges from 0.5 to 0.5 e, but the model's species Na has charge 1 e" in proc.stderr

    proc = run("reference-model", tmp_path / "x.pt", "--species", "Na", "--cutoff", 5, check=False)
    assert proc.returncode == 2 and "expected NAME:CHARGE" in proc.stderr


def test_plugin_path_holds_the_plugin():
    directory = Path(run("plugin-path").stdout.strip())
    plugin = directory / "localcondplugin.so"
    assert plugin.is_file()
    exported = subprocess.run(["nm", "-D", "--defined-only", str(plugin)], capture_output=True,
                              text=True, check=True).stdout.split()
    assert exported[-1] == "lammpsplugin_init" and exported.count("T") == 1


def test_predict_refuses_duplicate_ids_and_nan_positions(tmp_path):
    run("reference-model", tmp_path / "ref.pt", "--species", "Na:1", "Cl:-1", "--cutoff", 5)
    types, q = np.array([1, 2, 1]), np.array([1.0, -1.0, 1.0])
    x = np.array([[1.0, 1, 1], [2, 2, 2], [5, 5, 5]])
    write_dump(tmp_path / "ok.dump", [(0, 10.0, types, q, x)])
    text = (tmp_path / "ok.dump").read_text()
    (tmp_path / "dup.dump").write_text(text.replace("\n3 1 1.0", "\n2 1 1.0"))
    proc = run("predict", tmp_path / "ref.pt", tmp_path / "dup.dump", "--types", "Na", "Cl", check=False)
    assert proc.returncode == 2 and "atom ID 2 appears more than once" in proc.stderr
    x[2, 1] = np.nan
    write_dump(tmp_path / "nan.dump", [(0, 10.0, types, q, x)])
    proc = run("predict", tmp_path / "ref.pt", tmp_path / "nan.dump", "--types", "Na", "Cl", check=False)
    assert proc.returncode == 2 and "atom 3 has a non-finite position" in proc.stderr


def test_info_summarises_and_json_has_everything(tmp_path):
    """The shipped default model's metadata run to thousands of lines of provenance: info says
    what a user needs in a few lines (what was validated among them); --json keeps all."""
    model = run("default-model").stdout.strip()
    summary = run("info", model).stdout.splitlines()
    assert len(summary) <= 12
    assert any("cation (+1 e), anion (-1 e)" in line for line in summary)
    assert any(line.strip().startswith("validated nothing per ion or per species") for line in summary)
    full = json.loads(run("info", model, "--json").stdout)
    assert full["species"] == ["cation", "anion"]
    assert len(full["training"]["members"]) == len(full["training_systems"]) == 28  # a jackknife over 22 + 6 systems
    # what a LAMMPS input needs for a 45 A receptive field: 45 A plus the run's neighbor skin
    assert any("comm_modify cutoff of at least 45 A plus the run's neighbor skin, 47 with skin 2" in line
               for line in summary)


def test_user_mistakes_give_messages_not_tracebacks(tmp_path):
    """Findings of the second review round: each is one line naming the input."""
    run("reference-model", tmp_path / "ref.pt", "--species", "Na:1", "Cl:-1", "--cutoff", 5)
    rng = np.random.default_rng(2)
    types = np.array([1, 2] * 10)
    frames = [(s, 12.0, types, np.where(types == 1, 1.0, -1.0), rng.random((20, 3)) * 12.0) for s in (0, 10, 20)]
    write_dump(tmp_path / "t.dump", frames)
    proc = run("conductivity", tmp_path / "t.dump", "--timestep-fs", 1, "--temperature-k", 0,
               "--json", tmp_path / "c.json", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--temperature-k: must be a finite number > 0, got 0" in proc.stderr
    (tmp_path / "somedir").mkdir()
    for target, message in ((tmp_path / "somedir", "is a directory"), ("/dev/null", "is not a regular file"),
                            (tmp_path / "missing.reduce.npz", "does not exist")):
        proc = run("reduce", target, "--out", tmp_path / "out", check=False)
        assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    # the same file twice would count as two replicas: an error bar from nothing
    (tmp_path / "a.reduce.npz").write_bytes(b"")
    proc = run("reduce", tmp_path / "a.reduce.npz", tmp_path / "." / "a.reduce.npz", "--out", tmp_path / "o",
               check=False)
    assert proc.returncode != 0 and "is given twice" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_conductivity_needs_the_ion_types_when_atoms_carry_partial_charges(tmp_path):
    """A solvent's partially charged atoms are not ions: without --types they were counted as
    cations and anions (72 mol/L, Lambda 12x too small); now a message asks for the types,
    and a NaN coordinate is named instead of giving Lambda = nan."""
    rng = np.random.default_rng(4)
    types = np.array([1, 2] + [3, 4, 4] * 6)  # an ion pair and six "waters"
    q = np.select([types == 1, types == 2, types == 3], [1.0, -1.0, -0.8], 0.4)
    frames = [(s, 14.0, types, q, rng.random((types.size, 3)) * 14.0) for s in range(0, 60, 10)]
    write_dump(tmp_path / "w.dump", frames, "xu yu zu")
    args = ("--timestep-fs", 1, "--temperature-k", 300, "--json", tmp_path / "c.json")
    proc = run("conductivity", tmp_path / "w.dump", *args, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "type 3: q = -0.8 e" in proc.stderr and "--types" in proc.stderr
    run("conductivity", tmp_path / "w.dump", *args, "--types", "Na", "Cl", "NULL", "NULL")
    assert json.loads((tmp_path / "c.json").read_text())["ions_per_type"] == {"1": 1, "2": 1}
    frames[3][4][1, 2] = np.nan
    write_dump(tmp_path / "nan.dump", frames, "xu yu zu")
    proc = run("conductivity", tmp_path / "nan.dump", *args, "--types", "Na", "Cl", "NULL", "NULL", check=False)
    assert proc.returncode != 0 and "atom 2 has a non-finite position" in proc.stderr


def test_a_full_disk_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    """predict and reduce on a full disk (ENOSPC while writing): a one-line message naming
    what could not be written, exit 2, and no empty output directory left behind (they
    used to raise OSError with a traceback and leave the directory)."""
    import errno
    import os

    import matplotlib.figure

    from localcond.cli import main
    from localcond.engine.reducers.reducer_set import ReducerOptions, ReducerSet
    from localcond.engine.reducers.timeline import Evaluation

    run("reference-model", tmp_path / "ref.pt", "--species", "Na:1", "Cl:-1", "--cutoff", 5)
    rng = np.random.default_rng(2)
    types = np.array([1, 2] * 5)
    write_dump(tmp_path / "t.dump", [(s, 12.0, types, np.where(types == 1, 1.0, -1.0), rng.random((10, 3)) * 12)
                                     for s in (0, 10)])
    red = ReducerSet(ReducerOptions.from_dict({"hist": [-1, 1, 4]}), ["Na", "Cl"], [1.0, -1.0])
    for k in range(20):
        red.observe(Evaluation(10 * k, 0.002, 10, "run"), rng.normal(size=10), types - 1, np.arange(1, 11))
    red.write(str(tmp_path / "run"), {"source": "test"}, {}, "test")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", full)
    code = main(["predict", str(tmp_path / "ref.pt"), str(tmp_path / "t.dump"), "--types", "Na", "Cl",
                 "--out", str(tmp_path / "new" / "deeper" / "pred")])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "pred.npz" in err
    assert not (tmp_path / "new").exists()
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    code = main(["reduce", str(tmp_path / "run.reduce.npz"), "--out", str(tmp_path / "r" / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write the reduction to" in err and "No space left on device" in err
    assert not (tmp_path / "r").exists()


def test_predict_on_molecular_ions_equals_the_ions_only_dump(tmp_path):
    """predict --molecules on an all-atom-like dump: λ at each ion's centre atom equals λ
    on the ions-only dump of the same centres (the model sees the centres only; the
    satellites and the solvent are NULL); a wrong molecule charge is named."""
    from test_conductivity import molecular_dumps

    every, ions = molecular_dumps(tmp_path, n_frames=3)
    run("reference-model", tmp_path / "ref.pt", "--species", "Li:1", "A:-1", "--cutoff", 6)
    run("predict", tmp_path / "ref.pt", ions, "--types", "Li", "A", "--out", tmp_path / "ions")
    run("predict", tmp_path / "ref.pt", every, "--types", "Li", "A", "NULL", "NULL", "NULL", "--molecules",
        "--out", tmp_path / "all")
    a, b = np.load(tmp_path / "ions.npz"), np.load(tmp_path / "all.npz")
    centre = b["evaluated"]
    assert centre.sum() == a["evaluated"].sum() == 20
    np.testing.assert_allclose(b["lambda"][:, centre], a["lambda"], rtol=1e-12)
    assert np.abs(a["lambda"]).max() > 0.1
    proc = run("predict", tmp_path / "ref.pt", every, "--types", "Li", "A", "NULL", "NULL", "NULL",
               "--out", tmp_path / "bad", check=False)
    assert proc.returncode == 2 and "charge" in proc.stderr  # the centre's own +0.5 e is not A's -1
