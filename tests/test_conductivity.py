"""Einstein-Helfand and Nernst-Einstein molar conductivity from trajectories."""

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.constants as sc

from localcond.errors import DumpFormatError, LocalcondError
from localcond.campaign.labels.conductivity import Settings, accumulate, analyse
from synthetic import bound_pairs, brownian, write_dump

T = 298.0
D = 0.05  # Å²/ps = 5e-6 cm²/s


def analytic_lambda(n_pairs: int, d_a2_per_ps: float) -> float:
    """Independent ions: Λ = Λ_NE = N_A e² Σ_i q_i² D / (k_B T n_salt), D in m²/s (SI),
    converted to S cm² mol⁻¹."""
    d_si = d_a2_per_ps * 1e-20 / 1e-12
    return sc.N_A * sc.e**2 * (2 * n_pairs) * d_si / (sc.k * T * n_pairs) * 1e4


def run(path, **kwargs) -> dict:
    settings = Settings(timestep_fs=2.0, temperature_k=T, **kwargs)
    return analyse(accumulate([path] if not isinstance(path, list) else path, settings), settings)


def test_unit_conversion_by_hand(tmp_path):
    """One cation moving +1 Å/ps along x, one anion -1 Å/ps: ΔM = 2τ e·Å, so with
    V = 1000 Å³, σ = |ΔM|²/(6 V k_B T τ) and c = 1/(N_A V), Λ = σ/c (SI, then ×1e4)."""
    times = np.arange(6) * 1.0  # ps
    x = np.zeros((6, 2, 3))
    x[:, 0, 0] = times
    x[:, 1, 0] = -times
    path = write_dump(tmp_path / "hand.dump", (times * 500).astype(int), 10.0, [1, 2], [1.0, -1.0], x)
    summary = run(path, tau_ps=2.0)
    tau_s, volume_m3 = 2e-12, 1000 * 1e-30
    dm2 = (2 * 2.0 * sc.e * 1e-10) ** 2
    sigma = dm2 / (6 * volume_m3 * sc.k * T * tau_s)
    expected = sigma / (1 / (sc.N_A * volume_m3)) * 1e4
    assert summary["molar_conductivity"]["value"] == pytest.approx(expected, rel=1e-12)
    # self part: |Δr|² = τ² per ion
    assert summary["nernst_einstein"]["value"] == pytest.approx(expected / 2, rel=1e-12)
    assert summary["concentration_mol_per_l"] == pytest.approx(1 / sc.N_A / 1e-24, rel=1e-12)


def test_brownian_ions_match_the_analytic_value(tmp_path):
    truth = analytic_lambda(50, D)
    summary = run(brownian(tmp_path / "b.dump", 50, 400, D, 0.5, seed=1), tau_ps=5.0)
    for key in ("molar_conductivity", "nernst_einstein"):
        value, err = summary[key]["value"], summary[key]["stderr"]
        assert abs(value - truth) < 4 * err, (key, value, err, truth)
    assert summary["nernst_einstein"]["stderr"] < 0.05 * truth
    d = summary["diffusion_coefficients"]["1"]
    assert d["value"] == pytest.approx(D * 1e-4, rel=0.1)  # Å²/ps -> cm²/s
    assert summary["diffusive_check"]["warnings"] == []


def test_error_bars_cover_the_truth_at_the_stated_rate(tmp_path):
    """Over 24 seeds, |Λ_EH - truth| < stderr in about 63 % of cases (t with 4 degrees of
    freedom for 5 blocks) and < 2 stderr in about 88 %."""
    truth = analytic_lambda(20, D)
    within1 = within2 = 0
    n = 24
    for seed in range(n):
        s = run(brownian(tmp_path / f"s{seed}.dump", 20, 300, D, 0.5, seed=100 + seed), tau_ps=5.0)
        z = abs(s["molar_conductivity"]["value"] - truth) / s["molar_conductivity"]["stderr"]
        within1 += z < 1
        within2 += z < 2
    assert 0.3 * n <= within1 <= 0.92 * n
    assert within2 >= 0.65 * n


def test_bound_neutral_pairs_do_not_conduct(tmp_path):
    path = bound_pairs(tmp_path / "p.dump", 40, 400, D, 0.5, seed=3)
    s = run(path, tau_ps=20.0)
    ne = s["nernst_einstein"]["value"]
    assert ne == pytest.approx(analytic_lambda(40, D), rel=0.15)
    assert abs(s["molar_conductivity"]["value"]) < 0.02 * ne
    assert s["ratio"]["value"] < 0.02


def test_replicas_and_slope_form(tmp_path):
    paths = [brownian(tmp_path / f"r{k}.dump", 30, 200, D, 0.5, seed=k) for k in range(3)]
    s = run(paths, tau_window_ps=(2.0, 10.0), error="replicas")
    assert s["form"] == "slope" and s["n_replicas"] == 3
    assert "3 independent replicas" in s["error_method"]
    truth = analytic_lambda(30, D)
    assert abs(s["molar_conductivity"]["value"] - truth) < 4 * s["molar_conductivity"]["stderr"]


def test_cli_writes_the_required_keys(tmp_path):
    path = brownian(tmp_path / "c.dump", 20, 200, D, 0.5, seed=5)
    out = tmp_path / "c.json"
    proc = subprocess.run([sys.executable, "-m", "localcond", "conductivity", str(path),
                           "--timestep-fs", "2", "--temperature-k", "298", "--json", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    for key in ("molar_conductivity", "nernst_einstein", "ratio", "tau_window_ps", "n_frames", "n_ions",
                "concentration_mol_per_l", "window_rule", "windows", "curves"):
        assert key in data
    lam = data["molar_conductivity"]
    assert lam["unit"] == "S cm^2 mol^-1" and data["form"] == "slope"
    assert lam["total_error"] == pytest.approx((lam["stderr"] ** 2 + lam["tau_systematic"] ** 2) ** 0.5)
    assert data["tau_chosen"] == "automatic (window rule)" and data["n_frames"] == 200
    assert "tau-systematic" in proc.stdout


def _frames_text(tmp_path):
    path = brownian(tmp_path / "ok.dump", 3, 6, D, 0.5, seed=0)
    return path.read_text().split("ITEM: TIMESTEP\n")[1:]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda f: f[:2], "2 frame(s); a conductivity needs"),
        (lambda f: f[:3] + [f[1]] + f[4:], "frames out of order (step 250 after 500)"),
        (lambda f: f[:4] + [f[5]], "frames are not equally spaced"),
        (lambda f: f[:2] + [f[2].replace("0 40.0\n", "0 41.0\n", 1)] + f[3:], "box volume changed"),
        (lambda f: f[:2] + [f[2].replace("\n1 1 1 ", "\n9 1 1 ")] + f[3:], "the ions (IDs or types) differ"),
        (lambda f: [x.replace("id type q", "id type charge") for x in f], "no 'q' column"),
        (lambda f: [x.replace("xu yu zu", "x y z") for x in f], "no position columns (xu yu zu, or x y z with ix iy iz)"),
        (lambda f: f[:5] + [f[5][: len(f[5]) // 2]], "frame 5"),
    ],
)
def test_bad_trajectories_name_file_and_frame(tmp_path, mutate, message):
    frames = mutate(_frames_text(tmp_path))
    bad = tmp_path / "bad.dump"
    bad.write_text("".join("ITEM: TIMESTEP\n" + f for f in frames))
    with pytest.raises(DumpFormatError) as info:
        run(bad, tau_ps=0.5)
    assert str(bad) in str(info.value)
    assert message in str(info.value)


def test_tau_longer_than_the_trajectory(tmp_path):
    path = brownian(tmp_path / "short.dump", 3, 10, D, 0.5, seed=0)
    with pytest.raises(LocalcondError, match="tau 20 ps is not shorter than the trajectory \\(4.5 ps"):
        run(path, tau_ps=20.0)


def test_types_select_the_ions_of_an_all_atom_input(tmp_path):
    """Brownian ions (types 2, 3) among partially charged 'water' atoms (type 1, ±0.4 e)
    that also move: with --types NULL Na Cl only the ions count (concentration and Λ of
    the ions alone, Λ = Λ_NE of independent ions); without it, a message asks for the types
    (the water's atoms used to count as ions)."""
    rng = np.random.default_rng(8)
    n_ion, n_water, n_frames = 20, 40, 300
    steps = rng.normal(scale=np.sqrt(2 * D * 0.5), size=(n_frames - 1, n_ion + n_water, 3))
    x = np.concatenate([rng.random((1, n_ion + n_water, 3)) * 40.0, steps]).cumsum(axis=0)
    types = np.concatenate([np.full(n_water, 1), np.repeat([2, 3], n_ion // 2)])
    charges = np.concatenate([np.tile([0.4, -0.4], n_water // 2), np.repeat([1.0, -1.0], n_ion // 2)])
    path = write_dump(tmp_path / "aa.dump", np.arange(n_frames) * 250, 40.0, types, charges, x)
    out = tmp_path / "aa.json"
    proc = subprocess.run([sys.executable, "-m", "localcond", "conductivity", str(path), "--timestep-fs", "2",
                           "--temperature-k", "298", "--types", "NULL", "Na", "Cl", "--json", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["n_ions"] == n_ion and data["ions_per_type"] == {"2": 10, "3": 10}
    assert data["concentration_mol_per_l"] == pytest.approx(10 / sc.N_A / (40.0**3 * 1e-27), rel=1e-9)
    truth = analytic_lambda(10, D)
    assert abs(data["nernst_einstein"]["value"] - truth) < 0.1 * truth
    # without the types, the water's partially charged atoms would count as ions: refused
    settings = Settings(timestep_fs=2.0, temperature_k=T)
    with pytest.raises(DumpFormatError, match=r"partial charges \(type 1: q = -0.4 e, type 1: q = 0.4 e\)"):
        accumulate([path], settings)


def test_wrapped_positions_with_image_flags_equal_unwrapped_ones(tmp_path):
    """A dump of x y z ix iy iz (LAMMPS's wrapped positions with image flags) gives the
    same Λ as the xu yu zu of the same trajectory; x y z alone is refused for transport."""
    unwrapped = brownian(tmp_path / "u.dump", n_pairs=20, n_frames=60, d_a2_per_ps=2.0, frame_ps=1.0, seed=3,
                         box=15.0)
    text = unwrapped.read_text().splitlines()
    out, wrapped_only = [], []
    for line in text:
        words = line.split()
        if line.startswith("ITEM: ATOMS"):
            out.append("ITEM: ATOMS id type q x y z ix iy iz")
            wrapped_only.append("ITEM: ATOMS id type q x y z")
        elif len(words) == 6 and not line.startswith("ITEM"):
            x = np.array([float(w) for w in words[3:]])
            image = np.floor(x / 15.0)
            inside = x - image * 15.0
            out.append(" ".join(words[:3] + [repr(float(v)) for v in inside] + [str(int(i)) for i in image]))
            wrapped_only.append(" ".join(words[:3] + [repr(float(v)) for v in inside]))
        else:
            out.append(line)
            wrapped_only.append(line)
    crossed = sum(any(w != "0" for w in line.split()[6:]) for line in out if line[:1].isdigit())
    assert crossed > 0  # some ions left the box: the image flags matter
    (tmp_path / "w.dump").write_text("\n".join(out) + "\n")
    (tmp_path / "x.dump").write_text("\n".join(wrapped_only) + "\n")
    settings = Settings(timestep_fs=2.0, temperature_k=298.0, tau_ps=4.0, max_lag_ps=4.0)
    a = analyse(accumulate([unwrapped], settings), settings)["molar_conductivity"]["value"]
    b = analyse(accumulate([tmp_path / "w.dump"], settings), settings)["molar_conductivity"]["value"]
    assert b == pytest.approx(a, rel=1e-9)
    with pytest.raises(DumpFormatError, match="xu yu zu, or x y z with ix iy iz"):
        accumulate([tmp_path / "x.dump"], settings)


def molecular_dumps(tmp_path, n_pairs=10, n_frames=40, box=20.0):
    """The same Brownian ions written twice: as an all-atom-like dump (cations one atom,
    anions a centre of +0.5 e with two satellites of −0.75 e turning around it, neutral
    two-atom solvent molecules) with a mol column, and as an ions-only dump of the
    cations and the anion centres with charges ±1."""
    rng = np.random.default_rng(8)
    centres = (rng.random((1, 2 * n_pairs, 3)) * box
               + rng.normal(scale=0.6, size=(n_frames, 2 * n_pairs, 3)).cumsum(axis=0))
    solvent = rng.random((n_frames, 2 * n_pairs, 3)) * box
    steps = np.arange(n_frames) * 500
    lines_all, lines_ions = [], []
    for k, step in enumerate(steps):
        rows, ions = [], []
        atom = 1
        for i in range(2 * n_pairs):
            x = centres[k, i]
            if i < n_pairs:  # cation: atom type 1, its own molecule
                rows.append((atom, i + 1, 1, 1.0, *x))
                ions.append((atom, 1, 1.0, *x))
                atom += 1
            else:  # anion: centre type 2, satellites type 3
                rows.append((atom, i + 1, 2, 0.5, *x))
                ions.append((atom, 2, -1.0, *x))
                axis = rng.normal(size=3)
                axis *= 1.5 / np.linalg.norm(axis)
                rows.append((atom + 1, i + 1, 3, -0.75, *(x + axis)))
                rows.append((atom + 2, i + 1, 3, -0.75, *(x - axis)))
                atom += 3
        for j in range(2 * n_pairs):  # solvent molecules, neutral
            rows.append((atom, 100 + j, 4, 0.4, *solvent[k, j]))
            rows.append((atom + 1, 100 + j, 5, -0.4, *(solvent[k, j] + 1.0)))
            atom += 2
        head = f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n{{n}}\nITEM: BOX BOUNDS pp pp pp\n" + f"0 {box}\n" * 3
        lines_all.append(head.format(n=len(rows)) + "ITEM: ATOMS id mol type q xu yu zu\n"
                         + "".join(f"{a} {m} {t} {q} {float(x)!r} {float(y)!r} {float(z)!r}\n" for a, m, t, q, x, y, z in rows))
        lines_ions.append(head.format(n=len(ions)) + "ITEM: ATOMS id type q xu yu zu\n"
                          + "".join(f"{a} {t} {q} {float(x)!r} {float(y)!r} {float(z)!r}\n" for a, t, q, x, y, z in ions))
    (tmp_path / "all.dump").write_text("".join(lines_all))
    (tmp_path / "ions.dump").write_text("".join(lines_ions))
    return tmp_path / "all.dump", tmp_path / "ions.dump"


def test_molecular_ions_from_the_mol_column_equal_an_ions_only_dump(tmp_path):
    """--types Li A NULL NULL NULL --molecules: the anion is its centre atom carrying its
    molecule's total charge (−1 = 0.5 − 2 × 0.75); the solvent and the satellites enter
    nothing. Λ equals that of the ions-only dump of the same ions, exactly."""
    every, ions = molecular_dumps(tmp_path)
    settings = Settings(timestep_fs=2.0, temperature_k=298.0, tau_ps=4.0, max_lag_ps=4.0)
    reference = analyse(accumulate([ions], settings), settings)["molar_conductivity"]["value"]
    molecular = Settings(timestep_fs=2.0, temperature_k=298.0, tau_ps=4.0, max_lag_ps=4.0, ion_types=(1, 2),
                         molecules=True)
    result = analyse(accumulate([every], molecular), molecular)
    assert result["molar_conductivity"]["value"] == pytest.approx(reference, rel=1e-9)
    with pytest.raises(DumpFormatError, match="partial charges"):  # without --types: refused
        accumulate([every], settings)


@pytest.mark.parametrize("types, message", [
    ((1, 2, 3), "molecule 11 holds two atoms of ion types"),
    ((1,), "molecule 11 carries -1 e but none of its atoms is of an ion type"),
    ((1, 4), "total charge 0 e: not an ion"),
])
def test_bad_molecular_input_is_named(tmp_path, types, message):
    every, _ = molecular_dumps(tmp_path, n_frames=4)
    settings = Settings(timestep_fs=2.0, temperature_k=298.0, tau_ps=2.0, max_lag_ps=2.0, ion_types=types,
                        molecules=True)
    with pytest.raises(DumpFormatError, match=message):
        accumulate([every], settings)


def test_molecules_need_the_mol_column(tmp_path):
    _, ions = molecular_dumps(tmp_path, n_frames=4)
    settings = Settings(timestep_fs=2.0, temperature_k=298.0, tau_ps=2.0, max_lag_ps=2.0, ion_types=(1, 2),
                        molecules=True)
    with pytest.raises(DumpFormatError, match="no 'mol' column"):
        accumulate([ions], settings)
