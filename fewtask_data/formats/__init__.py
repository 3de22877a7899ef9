"""File formats: the manifest, tars, the image codec, shards and their index, HDF5 episode files, verification."""
