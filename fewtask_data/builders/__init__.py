"""Builders: the generic resumable core (``plan``, ``resume``, ``finalize``, wired in
``core.build_dataset``) and one module per dataset (``omniglot``, ``imagenet``,
``unsupervised``)."""
