"""Readers and writers of trajectories and results."""
