"""BasicSR model classes (importing registers them)."""
from .sr_model import MambaIRv2LightModel, MambaIRv2Model, MambaSRModel, MMAModel, MPSIModel, NonFiniteLossError  # noqa: F401
