# diagnosis only: top GPU kernels of compiled TF32 inference (LR 256x256) for the nets named on the command line
import sys, os
sys.path.insert(0, 'scripts')
import torch
import bench_networks_gpu as b
from torch.profiler import profile, ProfilerActivity
for name in sys.argv[1:]:
    cfg = b.apply_mode('tf32-cuda-compile-graph')
    net = b.build_net(name).eval()
    f = torch.compile(net)
    x = torch.rand(1, 3, 256, 256, device='cuda')
    with torch.no_grad():
        for _ in range(3):
            f(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as p:
            for _ in range(3):
                f(x)
            torch.cuda.synchronize()
    print(f'===== {name}: 3 forwards')
    print(p.key_averages().table(sort_by='cuda_time_total', row_limit=30, max_name_column_width=90))
