"""`fewtask-data`: build, inspect, verify and sample few-task few-shot families.

Each command lives in the module that owns its job; this file only wires them up.
"""

from __future__ import annotations

from fewtask_data.cliutil import make_app, run

app = make_app("Build few-task few-shot families into sharded webdataset archives and sample episodes from them.")
build_app = make_app("Build a family dataset (shards + index.json + manifest.json) from a source.")
app.add_typer(build_app, name="build")

from fewtask_data import hdf5, manifest, shards  # noqa: E402

app.command("inspect")(manifest.inspect_command)
app.command("verify")(shards.verify_command)
app.command("episodes")(hdf5.episodes_command)

from fewtask_data.imagenet_build import imagenet_families_command  # noqa: E402
from fewtask_data.manifests_api import manifests_app  # noqa: E402

build_app.command("imagenet-families")(imagenet_families_command)
app.add_typer(manifests_app, name="manifests")

from fewtask_data.omniglot_build import omniglot_families_command  # noqa: E402

build_app.command("omniglot-families")(omniglot_families_command)

from fewtask_data.unsupervised_build import unsupervised_families_command  # noqa: E402

build_app.command("unsupervised-families")(unsupervised_families_command)


def main() -> None:
    run(app)
