"""Data: manifests, frame decoding, the synthetic world, the feature cache."""
