"""Episode samplers (``base``: the strategy, family buffers, the registry). The class and
UMTRA samplers register themselves when imported, here."""

from fewtask_data.sampling import classes, umtra  # noqa: F401  (registration)
