"""Registration into BasicSR's registries without hard-depending on BasicSR.

Arch modules need only torch and ``basicsr.utils.registry`` (any BasicSR 1.3.x/1.4.x tree, forks
included).  Without BasicSR the classes are still plain ``nn.Module``s; registration is skipped.
"""
import logging

from .compat import install_torchvision_shim

logger = logging.getLogger('mamba_sr_archs')

install_torchvision_shim()  # BasicSR 1.4.2's package __init__ imports the removed torchvision module.

try:
    from basicsr.utils import registry as _bsr_registry
except ImportError:  # no BasicSR at all: networks stay usable as plain modules
    _bsr_registry = None


def _register(registry_name, obj, name=None):
    name = name or obj.__name__
    if _bsr_registry is None:
        return obj
    registry = getattr(_bsr_registry, registry_name)
    existing = registry._obj_map.get(name)
    if existing is obj:
        return obj
    if existing is not None and (existing.__module__, existing.__qualname__) == (obj.__module__, obj.__qualname__):
        registry._obj_map[name] = obj  # our own module executed again (importlib.reload): take the new class
        return obj
    if existing is not None:
        # BasicSR asserts on duplicate names; a fork (e.g. the official MambaIR tree) may already own
        # this name.  Keep theirs under the plain name and ours under a prefixed one.
        alias = f'mamba_sr_archs.{name}'
        logger.warning(f"{registry_name}: '{name}' is already registered by {existing.__module__}; "
                       f"this package's class is registered as '{alias}'.")
        if alias not in registry._obj_map:
            registry._do_register(alias, obj)
        return obj
    registry._do_register(name, obj)
    return obj


def register_arch(cls):
    """Class decorator: add ``cls`` to BasicSR's ARCH_REGISTRY (once; safe on re-import)."""
    return _register('ARCH_REGISTRY', cls)


def register_model(cls):
    """Class decorator: add ``cls`` to BasicSR's MODEL_REGISTRY."""
    return _register('MODEL_REGISTRY', cls)


def register_dataset(cls):
    """Class decorator: add ``cls`` to BasicSR's DATASET_REGISTRY."""
    return _register('DATASET_REGISTRY', cls)
