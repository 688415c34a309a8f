"""Every work-around that makes BasicSR 1.4.2 run on today's stack, each with the reason.

Applied once by ``import mamba_sr_archs``.  Nothing here edits BasicSR's files.
"""
import sys
import types


def install_torchvision_shim():
    """torchvision 0.17 removed ``torchvision.transforms.functional_tensor``; BasicSR 1.4.2 imports
    ``rgb_to_grayscale`` from it in ``basicsr/data/degradations.py``, which ``import basicsr`` (and so
    even ``from basicsr.utils.registry import ...``) reaches.  Alias the old module name to the new one.
    Must run before any basicsr import; cheap and idempotent."""
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401  (old torchvision: nothing to do)
        return
    except ImportError:
        pass
    try:
        from torchvision.transforms import functional as F
    except ImportError:  # no torchvision: basicsr cannot be imported anyway
        return
    shim = types.ModuleType(name)
    shim.rgb_to_grayscale = F.rgb_to_grayscale
    sys.modules[name] = shim
