"""Builders: each writes one kind of family dataset into an output folder.

Image families go through the generic resumable core (``plan``, ``resume``, ``finalize``,
wired in ``core.build_dataset``) into shards, index.json and manifest.json:

- ``omniglot``: Omniglot alphabet families, augmentation-parameterized (or the embedded glyphs);
- ``imagenet``: ImageNet families from the WordNet hierarchy (or saved definitions);
- ``unsupervised``: UMTRA-style families over an unlabelled image collection.

Procedural families (tasks are parameters) go through ``procedural.write_procedural``
into one procedural manifest.json:

- ``navigation``: 2D navigation crop families (goals inside a crop of the square);
- ``continual_sines``: frequency families of incremental sine problems, with their function pools;
- ``sinusoid``: sinusoid families, a phase each (tasks draw the amplitude).
"""
