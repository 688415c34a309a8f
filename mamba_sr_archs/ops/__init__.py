"""Selective scan and causal depthwise conv1d: one API, backends picked at run time.

``selective_scan`` has exactly the signature and semantics of mamba_ssm's ``selective_scan_fn`` (plus ``backend=``);
``causal_conv1d`` those of causal_conv1d's ``causal_conv1d_fn``.  Networks call only these two.
"""
from .selective_scan import (selective_scan, selective_scan_ref, selective_scan_torch, available_backends,  # noqa: F401
                             last_backend)
from .causal_conv1d import causal_conv1d  # noqa: F401
