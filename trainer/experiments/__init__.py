"""The `fewtask-train` commands, one module each; trainer/cli.py wires them up."""
