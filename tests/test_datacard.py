"""The data card (v2) reports the rows of a synthetic table: checks counted from the
rows, the failing system marked, kinisi beside ours, the caveats' numbers, and both
figures (one panel per system)."""

import json
import math
from pathlib import Path

import matplotlib.image
import pytest
from scipy import constants

from localcond.campaign.datacard import window_figure, write_data_card

ROOT = Path(__file__).resolve().parents[1]
NOTES = "Hand-written note: the last line of the card."


def small_grid(tmp_path: Path) -> Path:
    """training/grid.json shrunk to c 0.2, 1.5 × ε 10, 30 and two held-out systems (6 in all)."""
    spec = json.loads((ROOT / "training" / "grid.json").read_text())
    spec["input"] = str(ROOT / "lammps_inputs" / "electrolyte" / "in.electrolyte")
    spec["train"].update(concentrations_mol_per_l=[0.2, 1.5], dielectric_constants=[10, 30])
    spec["heldout"] = [{"conc": 0.6, "eps": 14}, {"conc": 2.0, "eps": 20}]
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(spec))
    return path


def row(name, role, conc, eps, lam, stat, tau_sys, t_mean, delta_halves, passed=True, kinisi=None,
        core_s=1800.0, nbytes=1_000_000, reference=None):
    total = math.hypot(stat, tau_sys)
    lags = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
    return {
        "system": name, "role": role, "grid": "implicit-v2", "replica": 1,
        "concentration_nominal_mol_per_l": conc, "concentration_mol_per_l": conc,
        "dielectric_constant": eps, "bjerrum_length_A": 560.6 / eps, "seeds": [1, 2, 3],
        "pilot_ps": 2500.0, "production_ps": 5000.0, "run_length_rule": "two-stage",
        "plan": {"window_ps": [20.0, 40.0], "production_segments": 2, "wanted_segments": 2,
                 "stride_ps": 50.0},
        "pilot": {"lambda": lam, "stderr": 2 * stat},
        "molar_conductivity": {"value": lam, "stderr": stat, "tau_systematic": tau_sys, "total_error": total,
                               "unit": "S cm^2 mol^-1"},
        "nernst_einstein": {"value": lam / 0.8, "stderr": 10.0},
        "ratio": {"value": 0.8, "stderr": 0.05},
        "relative_error": stat / lam, "relative_total_error": total / lam, "meets_target": True,
        "tau_window_ps": [20.0, 40.0], "next_window_ps": [40.0, 80.0],
        "reference_window": {"tau_window_ps": [100.0, 400.0], "value": reference or lam, "stderr": 2 * stat},
        "diffusion_coefficients": {"1": {"value": 3e-4, "stderr": 1e-5},
                                   "2": {"value": 1e-4, "stderr": 1e-5}},
        "species_share_of_conductivity": {"1": {"value": 0.7, "stderr": 0.05},
                                          "2": {"value": 0.3, "stderr": 0.05}},
        "diffusive_check_passed": passed,
        "diffusive_warnings": [] if passed else ["diffusive check failed: largest z 2.70"],
        "windows": [{"tau_window_ps": [t, 2 * t], "value": lam * (1 + 0.01 * i), "stderr": stat,
                     "largest_z_to_longer": 0.5, "passes": t >= 20}
                    for i, t in enumerate([5.0, 10.0, 20.0, 40.0])],
        "curves": {"lags_ps": lags, "lambda_ratio_form": [lam * t / (t + 5) for t in lags],
                   "lambda_ratio_form_stderr": [0.05 * lam] * len(lags),
                   "logslope_dM2": [None, 1.6, 1.4, 1.2, 1.1, 1.0, 1.0],
                   "logslope_msd": {"1": [None] * len(lags), "2": [None] * len(lags)},
                   "unit": "S cm^2 mol^-1"},
        "halves": {"first": {"value": lam, "stderr": stat},
                   "second": {"value": lam + delta_halves, "stderr": stat},
                   "agree_within_2_sigma": abs(delta_halves) <= 2 * math.sqrt(2) * stat,
                   "second_minus_first": delta_halves},
        "temperature_mean_k": t_mean, "temperature_relative_deviation": t_mean / 298.0 - 1,
        "core_seconds": core_s, "error_method": "block averaging", "kinisi": kinisi,
        "record": {"path": f"implicit-v2/{name}.npz", "n_origins": 100, "stride_ps": 50.0,
                   "lambda_same_origins": lam, "bytes": nbytes},
    }


KINISI = {"value": 760.0, "stderr": 30.0, "n_parts": 4, "start_ps": 20.0, "max_lag_ps": 60.0,
          "combination": "plain mean of per-segment fits; stderr = scatter / sqrt(n)"}
ROWS = [
    # meets the 10 % target: total √(20² + 15²) = 25 of 300; halves +10 (agree)
    # reference slope over 100-400 ps 250 ± 40: z = 50 / √(25² + 40²) = 1.06
    row("c0.200_e10_r1", "train", 0.2, 10, 300.0, 20.0, 15.0, 298.5, +10.0, core_s=1800.0, nbytes=2_000_000,
        reference=250.0),
    # misses it (200 of 1500), fails the diffusive check; halves −500 > 2·√2·160 (disagree), T 1.04 % high
    row("c1.500_e30_r1", "train", 1.5, 30, 1500.0, 160.0, 120.0, 301.1, -500.0, passed=False,
        core_s=3600.0, nbytes=3_000_000),
    # held out: 25 of 800 = 3.1 % ≤ 5 %; kinisi beside it
    row("c0.600_e14_r1", "heldout", 0.6, 14, 800.0, 20.0, 15.0, 297.0, +5.0, kinisi=KINISI,
        core_s=5400.0, nbytes=500_000),
]


@pytest.fixture
def card(tmp_path):
    table = tmp_path / "systems.json"
    table.write_text(json.dumps({"grid": "implicit-v2", "systems": ROWS}))
    (tmp_path / "data_card_notes.md").write_text(NOTES + "\n")
    out = write_data_card(small_grid(tmp_path), table, tmp_path / "CARD.md", tmp_path / "card.png")
    return tmp_path, out.read_text()


def line_starting(text: str, prefix: str) -> str:
    (line,) = [x for x in text.splitlines() if x.startswith(prefix)]
    return line


def test_checks_count_from_rows(card):
    _, text = card
    assert "- 3 of 6 systems done; pending: c0.200_e30_r1, c1.500_e10_r1, c2.000_e20_r1" in text
    assert "train: 2 of 4 done; 1 of 2 meet the total-error target" in text
    assert "heldout: 1 of 2 done; 1 of 1 meet the total-error target" in text
    assert "diffusive check passed: 2 of 3; FAILED (marked, must not be used): c1.500_e30_r1" in text
    assert "agree within 2σ: 2 of 3; second − first: 2 of 3 positive" in text
    assert "within 1 % of 298 K: 2 of 3" in text
    assert "Λ spans 300 to 1500 S cm²/mol (×5.0)" in text
    assert "cost: 3.00 core-hours" in text  # 1800 + 3600 + 5400 s
    assert "training records: 5.50 MB in 3 files" in text
    # the 100-400 ps slope, ε ≤ 14 and ε > 14 apart: z = 50 / √(25² + 40²) for c0.200_e10_r1,
    # 0 where the reference is the system's Λ (c0.600_e14_r1, c1.500_e30_r1)
    z = 50.0 / math.hypot(math.hypot(20.0, 15.0), 40.0)
    assert (f"(ε ≤ 14): within 2 combined σ for 2 of 2 (z: c0.200_e10_r1 +{z:.1f}, c0.600_e14_r1 +0.0)"
            in text)
    assert "(ε > 14): within 2 combined σ for 1 of 1 (z: c1.500_e30_r1 +0.0)" in text


def test_failing_system_marked_with_its_warning(card):
    _, text = card
    failing = line_starting(text, "| c1.500_e30_r1")
    assert "FAILED" in failing
    assert "1500 ± 160 ± 120" in failing
    assert "FAILED" not in line_starting(text, "| c0.200_e10_r1")
    note = line_starting(text, "- [w1] `c1.500_e30_r1`")
    assert "diffusive check failed: largest z 2.70" in note


def test_kinisi_beside_ours(card):
    _, text = card
    ours_total = math.hypot(20.0, 15.0)
    z = (760.0 - 800.0) / math.sqrt(ours_total ** 2 + 30.0 ** 2)
    line = line_starting(text, "| c0.600_e14_r1 | 800 ± 25 |")
    assert line.rstrip(" |").endswith(f"{z:+.2f}")
    assert "| 4 | 20–60 |" in line
    # a fit without the corrected sample count is marked, and the mark explained
    assert "760 ± 30 † |" in line and "† fitted before kinisi's sample count was corrected" in text
    from localcond.campaign.datacard import _kinisi_line
    from localcond.campaign.labels.kinisi_check import SAMPLES_COUNTED_OVER
    corrected = {**ROWS[-1], "kinisi": {**KINISI, "samples_counted_over": SAMPLES_COUNTED_OVER}}
    assert "†" not in _kinisi_line(corrected)


def test_caveats_compute_free_diffusion(card):
    _, text = card
    for mass in (20.0, 60.0):
        kg = mass / 1000.0 / constants.Avogadro
        d0 = constants.Boltzmann * 298.0 * 500e-15 / kg * 1e4  # m²/s → cm²/s
        assert f"{d0:.2e} cm²/s" in text
    assert "6.19e-04 cm²/s" in text and "2.06e-04 cm²/s" in text


def test_notes_appended_and_no_temporary_files(card):
    tmp_path, text = card
    assert text.rstrip().endswith(NOTES)
    assert not list(tmp_path.glob("*.tmp"))


def test_both_figures_are_images_of_the_expected_size(card):
    tmp_path, text = card
    assert "(card.png)" in text and "(card_windows.png)" in text
    overview = matplotlib.image.imread(tmp_path / "card.png")
    assert overview.shape[:2] == (480, 1200)  # 10 × 4 in at 120 dpi
    windows = matplotlib.image.imread(tmp_path / "card_windows.png")
    # 3 columns (c 0.2, 1.5, and at least 3 for the legend) × 3 rows (ε 10, ε 30, held out);
    # panels 3.0 × 2.3 in plus 0.5 in of legend, at 80 dpi
    assert windows.shape[:2] == (round(80 * (3 * 2.3 + 0.5)), 80 * 3 * 3)


def test_one_panel_per_system_in_its_place():
    fig, panels = window_figure(ROWS)
    assert len(panels) == len(ROWS)
    titles = [ax.get_title() for ax in panels]
    assert titles == ["c0.200_e10_r1", "c1.500_e30_r1 FAILED", "c0.600_e14_r1 (held out)"]
    places = [(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start) for ax in panels]
    assert places == [(0, 0), (1, 1), (2, 0)]  # rows ε 10, ε 30, held out; columns c 0.2, 1.5
    assert panels[0].get_xscale() == "log"
    assert "Λ (S cm²/mol)" in panels[0].get_ylabel() and "τ (ps)" in panels[0].get_xlabel()


def test_replica_section_states_calibration_and_the_systems_that_moved():
    """The card's replica section from a replica table: the rms z and whether the errors
    are calibrated, and one table row per system whose long-lag check added a systematic,
    with its total error before and after."""
    from localcond.campaign.datacard import replica_section
    from localcond.campaign.replicas import error_calibration

    rows = [{"system": f"s{k}", "production_ps": 5000.0, "z_replica_vs_card": z, "card": {"total_error": 20.0},
             "long_lag_check": {"systematic": 0.0, "total_error": 20.0}} for k, z in enumerate([0.5, -1.2, 0.9])]
    rows[1]["long_lag_check"] = {"systematic": 149.0, "total_error": 150.3, "window_ps": [3.0, 6.0], "z": 2.3,
                                 "window": {"value": 1483.0, "stderr": 19.0}, "long": {"value": 1649.0, "stderr": 69.0}}
    text = "\n".join(replica_section({"command": "localcond replicas r.json", "systems": rows,
                                      "calibration": error_calibration(rows)}))
    assert f"rms z = {math.sqrt((0.25 + 1.44 + 0.81) / 3):.2f}" in text and "Errors calibrated: yes" in text
    assert "| s1 | 3–6 | 1483 ± 19 | 1649 ± 69 | +2.30 | 149 | 20 → 150 |" in text
    assert "| s0 |" not in text and "1 of 3 systems gain one" in text


def test_another_table_has_its_own_companions(tmp_path):
    """A table systems_X.json beside the grid's systems.json takes data_card_notes_X.md (and
    no other table's notes or replicas), and the card says how to remake it."""
    table = tmp_path / "systems_x.json"
    table.write_text(json.dumps({"grid": "implicit-v2", "systems": ROWS}))
    (tmp_path / "data_card_notes.md").write_text("the other table's note\n")
    (tmp_path / "replica_systems.json").write_text("not this table's replicas: never read")
    (tmp_path / "data_card_notes_x.md").write_text(NOTES + "\n")
    grid = small_grid(tmp_path)
    text = write_data_card(grid, table, tmp_path / "CARD.md", None).read_text()
    assert NOTES in text and "the other table's note" not in text
    assert f"--table {table}" in text and f"localcond data-card --grid {grid} --table {table}" in text
