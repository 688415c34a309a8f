"""Mamba-based super-resolution networks (MMA, MambaIRv2, MPSI) for BasicSR.

``import mamba_sr_archs`` applies the compatibility layer once and registers every architecture,
model and dataset class of this package into BasicSR's registries.
"""
__version__ = '0.1.0'
