"""`fewtask-data`: build, inspect, verify and sample few-task few-shot families.

The top of fewtask_data: typer commands only, each in the module for its job, calling
the library (imported when a command runs, so `--help`, `inspect`, `verify` and
`manifests` start without torch or albumentations). ``common`` holds the plumbing
both CLIs share (``make_app``, ``run``), ``options`` the shared options.
"""

from __future__ import annotations

from fewtask_data.cli import build, dataset, episodes
from fewtask_data.cli.common import make_app, run
from fewtask_data.cli.manifests import manifests_app

app = make_app("Build few-task few-shot families into sharded webdataset archives and sample episodes from them.")
build_app = make_app("Build a family dataset (shards + index.json + manifest.json) from a source.")
app.add_typer(build_app, name="build")
app.command("inspect")(dataset.inspect_command)
app.command("verify")(dataset.verify_command)
app.command("episodes")(episodes.episodes_command)
build_app.command("imagenet-families")(build.imagenet_families_command)
app.add_typer(manifests_app, name="manifests")
build_app.command("omniglot-families")(build.omniglot_families_command)
build_app.command("unsupervised-families")(build.unsupervised_families_command)
build_app.command("navigation-families")(build.navigation_families_command)
build_app.command("continual-sine-families")(build.continual_sine_families_command)
build_app.command("sinusoid-families")(build.sinusoid_families_command)
build_app.command("dynamics-families")(build.dynamics_families_command)


def main() -> None:
    run(app)
