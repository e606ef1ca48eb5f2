"""The data card reports the measured rows and checks the requirements on them."""

import json
from pathlib import Path

from localcond.datacard import write_data_card

ROOT = Path(__file__).resolve().parents[1]


def row(name, role, conc, eps, lam, err, ratio, t_mean, agree=True):
    return {
        "system": name, "role": role, "grid": "implicit-v1", "concentration_mol_per_l": conc,
        "dielectric_constant": eps, "bjerrum_length_A": 560.6 / eps,
        "molar_conductivity": {"value": lam, "stderr": err}, "relative_error": err / lam,
        "nernst_einstein": {"value": lam / ratio, "stderr": 1.0}, "ratio": {"value": ratio, "stderr": 0.01},
        "species_share_of_conductivity": {"1": {"value": 0.6, "stderr": 0.02}},
        "halves": {"agree_within_2_sigma": agree}, "temperature_mean_k": t_mean,
        "temperature_relative_deviation": t_mean / 298 - 1, "core_seconds": 1800.0,
    }


def test_data_card_checks_and_rows(tmp_path):
    rows = [
        row("c0.200_e10_r1", "train", 0.2, 10, 250.0, 20.0, 0.25, 298.5),
        row("c1.500_e30_r1", "train", 1.5, 30, 1000.0, 150.0, 0.85, 298.2, agree=False),
        row("c0.600_e14_r1", "heldout", 0.6, 14, 500.0, 20.0, 0.5, 301.5),
    ]
    table = tmp_path / "systems.json"
    table.write_text(json.dumps({"systems": rows}))
    out = write_data_card(ROOT / "training" / "grid.json", table, tmp_path / "CARD.md", tmp_path / "card.png")
    text = out.read_text()
    assert "train: 2 of 24 systems done; 1 with relative error of Lambda_EH <= 10%" in text
    assert "heldout: 1 of 4 systems done; 1 with relative error of Lambda_EH <= 5%" in text
    assert "Lambda/Lambda_NE spans 0.250 to 0.850; Lambda spans 250 to 1000 S cm^2/mol (x4.0)" in text
    assert "agree within 2 sigma: 2 of 3" in text
    assert "within 1 % of 298 K: 2 of 3" in text
    assert "cost so far: 1.50 core-hours" in text
    assert "| c1.500_e30_r1 | train | 1.500 | 30 | 18.7 | 1e+03 ± 1.5e+02 | 15.0% |" in text
    assert "| c0.600_e14_r1 | 500 ± 20 | not computed | |" in text
    assert (tmp_path / "card.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
