"""Continual regression (MALTML section 4.2): OML on incremental sines, MALTML across
frequency families, their baselines and the Javed & White evaluation (docs/continual.md)."""
