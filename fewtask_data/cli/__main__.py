"""python -m fewtask_data.cli ... (the same as fewtask-data ...)."""

from fewtask_data.cli import main

main()
