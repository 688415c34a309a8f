"""Datasets registered into BasicSR's DATASET_REGISTRY (importing this package registers them)."""
from . import imagenet_sr_dataset  # noqa: F401
