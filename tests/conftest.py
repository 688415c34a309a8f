"""Shared test fixtures: where ../shared lives, and a small thread count for the 2-core CI machine."""
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('MAMBA_SR_SHARED', REPO.parent / 'shared'))
GOLDEN = SHARED / 'golden'
DATASETS = SHARED / 'datasets'


def load_golden(name):
    """Load ``../shared/golden/<name>`` (tensors only, weights_only=True)."""
    path = GOLDEN / name
    if not path.is_file():
        pytest.fail(f'golden file missing: {path} (the tests need ../shared beside the repository)')
    return torch.load(path, map_location='cpu', weights_only=True)


@pytest.fixture(scope='session')
def golden_dir():
    return GOLDEN


@pytest.fixture(scope='session')
def datasets_dir():
    return DATASETS
