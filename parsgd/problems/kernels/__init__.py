"""Objectives: loss and compiled SGD inner loops, one module per problem."""
