"""torch.compile: every network traces into one graph (fullgraph=True), forward and backward, and gives the eager
numbers.  The scans run as registered custom ops under compile (``mamba_sr_archs::chunked_scan_*`` here on CPU,
``mamba_sr_archs::selective_scan_*`` for the Triton kernels, tested in test_triton_scan.py).  The ``aot_eager``
backend runs AOT autograd (the part that needs the custom ops' fake shapes and autograd) without a C++ compile."""
import pytest
import torch

from mamba_sr_archs.archs.mambairv2_arch import MambaIRv2Light
from mamba_sr_archs.archs.mma_arch import MMA
from mamba_sr_archs.archs.mpsi_arch import MPSI

NETS = {
    'MambaIRv2Light': lambda: MambaIRv2Light(upscale=2, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=8,
                                             inner_rank=8, num_tokens=8, d_state=4, mlp_ratio=1., img_range=1.,
                                             upsampler='pixelshuffledirect'),
    'MMA': lambda: MMA(3, 3, num_feat=32, num_block=2, upscale=2, img_range=1.),
    'MPSI': lambda: MPSI(embed_dim=12, depth=[2], num_heads=[2], split_size=[4, 8], upscale=2, drop_path_rate=0.,
                         upsampler='pixelshuffledirect'),
}


@pytest.mark.parametrize('name', sorted(NETS))
def test_network_compiles_in_one_graph_with_eager_numbers(name):
    torch.manual_seed(0)
    net = NETS[name]().eval()   # eval: deterministic routing (MambaIRv2) so eager and compiled runs compare
    x = torch.rand(2, 3, 16, 16)
    y0 = net(x)
    y0.square().mean().backward()
    grads0 = {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    torch._dynamo.reset()
    compiled = torch.compile(net, backend='aot_eager', fullgraph=True)   # a graph break raises here
    y1 = compiled(x)
    y1.square().mean().backward()
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-6)
    grads1 = {k: p.grad for k, p in net.named_parameters() if p.grad is not None}
    assert grads1.keys() == grads0.keys()
    for k in grads0:
        torch.testing.assert_close(grads1[k], grads0[k], rtol=1e-4, atol=1e-6, msg=k)


def test_chunked_scan_custom_op_passes_opcheck():
    u = torch.randn(2, 4, 37, requires_grad=True)
    delta = torch.rand(2, 4, 37, requires_grad=True)
    A = -torch.rand(4, 3, requires_grad=True)
    B = torch.randn(2, 1, 3, 37, requires_grad=True)
    C = torch.randn(2, 2, 3, 37, requires_grad=True)
    torch.library.opcheck(torch.ops.mamba_sr_archs.chunked_scan_fwd.default, (u, delta, A, B, C, 6, True))
