"""Data: manifests, frame decoding, video io, the feature cache."""
