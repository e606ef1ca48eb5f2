"""Unit conversion for conductivities (CODATA 2018 exact constants).

Inside: lengths in Å, times in ps, charges in e, temperatures in K.
Einstein–Helfand: σ = ⟨|ΔM|²⟩ / (6 V k_B T τ) and Λ = σ / c with
c = n_salt / (N_A V). The volume cancels:

    Λ = N_A e² ⟨|ΔM|²⟩ / (6 k_B T τ n_salt)

so Λ [S cm² mol⁻¹] = prefactor(T, n_salt) × ⟨|ΔM|²⟩[e² Å²] / τ[ps].
"""

from __future__ import annotations

AVOGADRO = 6.02214076e23  # 1/mol
ELEMENTARY_CHARGE = 1.602176634e-19  # C
BOLTZMANN = 1.380649e-23  # J/K
ANGSTROM = 1e-10  # m
PICOSECOND = 1e-12  # s
SQUARE_METRE_IN_CM2 = 1e4
LITRE_IN_A3 = 1e27


def molar_conductivity_prefactor(temperature_k: float, n_salt: float) -> float:
    """S cm² mol⁻¹ per (e² Å² / ps) of ⟨|ΔM|²⟩ / τ."""
    si = (AVOGADRO * ELEMENTARY_CHARGE**2 * ANGSTROM**2
          / (6.0 * BOLTZMANN * temperature_k * PICOSECOND * n_salt))  # S m² mol⁻¹
    return si * SQUARE_METRE_IN_CM2


def concentration_mol_per_l(n_salt: float, volume_a3: float) -> float:
    return n_salt / AVOGADRO / (volume_a3 / LITRE_IN_A3)


def diffusion_cm2_per_s(msd_a2: float, tau_ps: float) -> float:
    """D = MSD / (6 τ), converted from Å²/ps to cm²/s."""
    return msd_a2 / (6.0 * tau_ps) * (ANGSTROM**2 / PICOSECOND) * SQUARE_METRE_IN_CM2
