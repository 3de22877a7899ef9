# Build the Omniglot families (scripts/omniglot_families.py's config) and the fixed test episodes.
import sys, dataclasses, torch
from pathlib import Path
from trainer.experiments.demo import omniglot_families_config, build_data, write_eval_episodes
torch.set_num_threads(1)
work = Path("runs/omni-ana")
cfg = omniglot_families_config("../shared/data/omniglot", 400, 32, eval_episodes=int(sys.argv[1]), progress=False)
data = build_data(work, cfg)
print(write_eval_episodes(data, work, cfg))
