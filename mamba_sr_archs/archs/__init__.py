"""Network definitions (plain ``nn.Module``s); importing registers them into BasicSR's ARCH_REGISTRY
when BasicSR is importable."""
from .mamba_layer import Mamba  # noqa: F401
from .mambairv2_arch import MambaIRv2, MambaIRv2Light  # noqa: F401
from .mma_arch import MMA  # noqa: F401
from .mpsi_arch import MPSI  # noqa: F401
