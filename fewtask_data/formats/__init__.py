"""File formats: the manifest, the procedural manifest kind, tars, the image codec, shards and their index, HDF5 episode files, verification."""
