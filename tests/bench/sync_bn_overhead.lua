-- sync_bn_overhead.lua: SyncBatchNorm's CPU cost per layer over plain BatchNorm2d (forward +
-- backward, 1 thread), in one process with a stand-in 2-rank group (the gather duplicates this
-- rank's packet, the all-reduce doubles): what the statistics exchange costs outside the
-- communicator. The peer is BatchNorm2d on the same input in the same run (PyTorch's
-- SyncBatchNorm needs a process group, so it is compared through ddp_bench.lua instead).
--   luajit tests/bench/sync_bn_overhead.lua [C] [reps]
local ms = require "moonseg"
local nn, dist = ms.nn, require "moonseg.dist"
ms.set_num_threads(1)
dist.is_initialized = function() return true end
dist.get_world_size = function() return 2 end
dist.all_gather_into_tensor = function(t)
  local o = ms.zeros(2, t:numel(), { dtype = "f64" })
  o:select(1, 1):copy_(t); o:select(1, 2):copy_(t)
  return o
end
dist.all_reduce = function(t) t:mul_(2) return t end
local C, reps = tonumber(arg[1] or 64), tonumber(arg[2] or 500)
local x = ms.randn(2, C, 16, 16):requires_grad_()
local function bench(m)
  local best = math.huge
  for _ = 1, 3 do
    local t0 = os.clock()
    for _ = 1, reps do
      local y = m:forward(x)
      y:sum():backward()
      x.grad = nil
    end
    best = math.min(best, (os.clock() - t0) / reps)
  end
  return best
end
local bn, sbn = nn.BatchNorm2d(C), nn.SyncBatchNorm(C)
bn:train(); sbn:train()
local tb, ts = bench(bn), bench(sbn)
print(string.format("C=%d x[2,%d,16,16]: BatchNorm %.1f us, SyncBatchNorm %.1f us (fwd+bwd, CPU), overhead %.1f us/layer, x48 = %.2f ms",
  C, C, tb * 1e6, ts * 1e6, (ts - tb) * 1e6, (ts - tb) * 48e3))
