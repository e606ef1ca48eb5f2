"""Loading the plugin is cheap: Python's packages and torch start only when a
fix localcond is created. Restart files carry the fix's per-atom values."""


import numpy as np

from helpers import System, run_lmp
from localcond.io.lammps_dump import read_dump
from localcond.model.export import save_model
from localcond.model.reference import make_reference_model

# `shell` hands the quoted line to /bin/sh, a child of lmp: $PPID is the LAMMPS process.
COUNT_TORCH = 'shell "grep -c libtorch_cpu /proc/$PPID/maps > {out}"'


def test_torch_loads_only_with_the_fix(tmp_path):
    model = save_model(*make_reference_model(["Li", "PF6"], [1.0, -1.0], 6.0), tmp_path / "ref.pt")
    text = System(model=str(model), steps=0).input_text()
    before_fix, rest = text.split("fix lc ")
    text = (before_fix + COUNT_TORCH.format(out="before.txt") + "\nfix lc " + rest
            + COUNT_TORCH.format(out="after.txt") + "\n")
    proc = run_lmp(tmp_path, text)
    assert "Loaded 1 plugins from" in proc.stdout  # autoloaded by the wheel's lmp
    assert int((tmp_path / "before.txt").read_text()) == 0
    assert int((tmp_path / "after.txt").read_text()) > 0


def test_restart_keeps_values_and_continues(tmp_path):
    """write_restart after a run; read_restart + the same fix: a `run 0` gives the
    values the first run ended with (same positions, same model)."""
    model = save_model(*make_reference_model(["Li", "PF6"], [1.0, -1.0], 6.0), tmp_path / "ref.pt")
    first = tmp_path / "first"
    first.mkdir()
    run_lmp(first, System(model=str(model), steps=20).input_text() + "write_restart state.restart\n")
    second = tmp_path / "second"
    second.mkdir()
    text = "\n".join([
        f"read_restart {first / 'state.restart'}",
        "pair_style lj/cut/coul/cut 8.0",
        "pair_coeff * * 0.1 2.5",
        f"fix lc all localcond 10 {model} types Li PF6",
        "dump d all custom 10 dump.lc id type q x y z f_lc",
        "dump_modify d sort id format float %.17g",
        "run 0",
    ]) + "\n"
    proc = run_lmp(second, text)
    assert "fix localcond lc" in proc.stdout
    last = list(read_dump(first / "dump.lc"))[-1]
    (again,) = list(read_dump(second / "dump.lc"))
    assert again.timestep == last.timestep == 20
    np.testing.assert_allclose(again.columns["f_lc"], last.columns["f_lc"], rtol=1e-12)
