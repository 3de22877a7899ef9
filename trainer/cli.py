"""`fewtask-train`: MALTML and its baselines on family episodes.

Each command lives in trainer/experiments/; this file only wires them up.
"""

from __future__ import annotations

from fewtask_data.cli.common import make_app, run

app = make_app("Train and evaluate MALTML (and MAML, FOMAML, Reptile, ANIL, BOIL, baselines) on task families.")

from trainer.core.allocator import keep_freed_memory  # noqa: E402
from trainer.experiments.analyze import analyze_command  # noqa: E402
from trainer.experiments.combine import combine_command  # noqa: E402
from trainer.experiments.continual import continual_command  # noqa: E402
from trainer.experiments.continual_oml import continual_oml_command  # noqa: E402
from trainer.experiments.continual_rl import continual_rl_command  # noqa: E402
from trainer.experiments.demo import demo_command  # noqa: E402
from trainer.experiments.eval import eval_command  # noqa: E402
from trainer.experiments.fit import fit_command  # noqa: E402
from trainer.experiments.navigation import navigation_command  # noqa: E402
from trainer.experiments.navigation_maml import navigation_maml_command  # noqa: E402
from trainer.experiments.sinusoid import sinusoid_command  # noqa: E402
from trainer.experiments.sinusoid_maml import sinusoid_maml_command  # noqa: E402
from trainer.experiments.tune import tune_app  # noqa: E402

app.command("fit")(fit_command)
app.command("eval")(eval_command)
app.command("demo")(demo_command)
app.command("sinusoid")(sinusoid_command)
app.command("sinusoid-maml")(sinusoid_maml_command)
app.command("navigation-maml")(navigation_maml_command)
app.command("continual-oml")(continual_oml_command)
app.command("navigation")(navigation_command)
app.command("continual")(continual_command)
app.add_typer(tune_app, name="tune")
app.command("continual-rl")(continual_rl_command)
app.command("analyze")(analyze_command)
app.command("combine")(combine_command)


def main() -> None:
    keep_freed_memory()
    run(app)


if __name__ == "__main__":  # python -m trainer.cli (e.g. under torchrun -m)
    main()
