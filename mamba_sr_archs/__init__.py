"""Mamba-based super-resolution networks (MMA, MambaIRv2, MPSI) for BasicSR.

``import mamba_sr_archs`` applies the compatibility layer once (see :mod:`mamba_sr_archs.compat`)
and registers every architecture, model and dataset class of this package into BasicSR's registries.
The networks themselves are plain ``nn.Module``s (``from mamba_sr_archs.archs import MambaIRv2``)
and import without BasicSR installed; then nothing is registered.
"""
import importlib.util as _util

__version__ = '0.1.0'

HAVE_BASICSR = _util.find_spec('basicsr') is not None

if HAVE_BASICSR:
    from . import compat

    compat.apply()
    from . import data, models  # noqa: F401,E402  (importing registers the classes)

from . import archs  # noqa: F401,E402
