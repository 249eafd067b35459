"""Backends: how a run's workers are started and joined (serial, processes, mpi)."""
