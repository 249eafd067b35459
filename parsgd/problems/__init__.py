"""Problems: the Problem base, the objective.kind registry, optima and compiled kernels."""
