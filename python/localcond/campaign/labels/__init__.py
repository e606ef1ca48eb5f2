"""Ground truth from trajectories: Einstein–Helfand and Nernst–Einstein molar
conductivities with honest errors, and per-ion labels λ_i(t0; τ) (doc/design.md §1)."""
