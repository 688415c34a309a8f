"""Selective scan and causal depthwise conv1d: one API, backends picked at run time.

``selective_scan`` has exactly the signature and semantics of mamba_ssm's ``selective_scan_fn``;
``causal_conv1d`` those of causal_conv1d's ``causal_conv1d_fn``.  Networks call only these two.
"""
from .selective_scan import selective_scan, selective_scan_ref, available_backends, last_backend  # noqa: F401
from .causal_conv1d import causal_conv1d  # noqa: F401
