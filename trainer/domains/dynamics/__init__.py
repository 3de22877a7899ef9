"""Continual RL on dynamics task families (docs/continual-rl.md): MuJoCo task envs, SAC replay strategies."""
