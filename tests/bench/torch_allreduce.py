"""torch_allreduce.py MB REPS PORT: the PyTorch peer of ddp_bench.lua's all-reduce: 2 local
processes, gloo, all_reduce of an MB MB float32 tensor; prints the median seconds of REPS, and
the median latency of a 4 KB all_reduce (20 back to back, 5 * REPS times)."""
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run(rank, mb, reps, port, q):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    t = torch.ones(int(mb * 1024 * 1024 / 4))
    dist.all_reduce(t)  # warm-up
    times = []
    for _ in range(reps):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(t)
        times.append(time.perf_counter() - t0)
    small, lat = torch.ones(1024), []
    for _ in range(5 * reps):
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(20):
            dist.all_reduce(small)
        lat.append((time.perf_counter() - t0) / 20)
    if rank == 0:
        q.put((statistics.median(times), statistics.median(lat)))
    dist.destroy_process_group()


if __name__ == "__main__":
    mb, reps, port = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=run, args=(r, mb, reps, port, q)) for r in range(2)]
    for p in procs:
        p.start()
    res = q.get()
    for p in procs:
        p.join()
    print("TORCH", torch.__version__)
    print("RESULT %.6f SMALL %.7f" % res)
