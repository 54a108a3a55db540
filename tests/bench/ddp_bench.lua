-- ddp_bench.lua: data-parallel cost on this machine, side by side with PyTorch's gloo.
--   luajit tests/bench/ddp_bench.lua [--iters 8] [--crop 128] [--mb 31] [--runs 3]
-- 1. all-reduce of an --mb MB f32 buffer between 2 local processes (loopback), median of 7,
--    and of a 4 KB one (SyncBatchNorm's size: latency), against torch.distributed (gloo)
--    all_reduce of the same sizes in the same run;
-- 2. PP-LiteSeg-T training steps, same global batch: 1 worker x 4 against 2 workers x 2
--    (--nproc 2), with default flags and with --threads 1; per run the median of the
--    per-iteration batch_cost (first 2 left out); --runs runs interleaved, their median.
local ms = require "moonseg"

local opts = { iters = 8, crop = 128, mb = 31, mode = "main", reps = 7, runs = 3 }
do
  local i = 1
  while i <= #arg do
    local k = arg[i]:match("^%-%-(.+)$")
    if not k or opts[k] == nil then error("unknown argument " .. arg[i]) end
    opts[k] = type(opts[k]) == "number" and tonumber(arg[i + 1]) or arg[i + 1]
    i = i + 2
  end
end
local here = arg[0]:match("^(.*)/[^/]*$") or "."
local src = here .. "/../.."

local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) / 2] or (t[n / 2] + t[n / 2 + 1]) / 2
end

if opts.mode == "allreduce" then -- one rank of part 1 (torchrun-style environment)
  local ddp = require "moonseg.engine.ddp"
  local ctx = ddp.init { timeout = 120 }
  ms.set_num_threads(1)
  local n = math.floor(opts.mb * 1024 * 1024 / 4)
  local t = ms.ones(n)
  ms.dist.all_reduce(t, "avg") -- warm-up: connections, buffers
  local times = {}
  for i = 1, opts.reps do
    ms.dist.barrier()
    local t0 = ms.time()
    ms.dist.all_reduce(t, "avg")
    times[i] = ms.time() - t0
  end
  local small, lat = ms.ones(1024), {}
  for i = 1, 5 * opts.reps do
    ms.dist.barrier()
    local t0 = ms.time()
    for _ = 1, 20 do ms.dist.all_reduce(small, "sum") end
    lat[i] = (ms.time() - t0) / 20
  end
  if ms.dist.get_rank() == 0 then io.stdout:write(string.format("RESULT %.6f SMALL %.7f\n", median(times), median(lat))) end
  ctx:finish()
  os.exit(0)
end

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local s = p:read("*a")
  p:close()
  return s
end
local function port()
  local s = ms.dist.Store.server { host = "127.0.0.1", port = 0 }
  local p = s:port()
  s:stop()
  return p
end

io.stdout:write("uptime: ", sh("uptime"))
-- 1. all-reduce on loopback
local p = port()
local cmd = "luajit " .. arg[0] .. " --mode allreduce --mb " .. opts.mb .. " --reps " .. opts.reps
local out = sh(string.format("RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=%d %s > /dev/null & " ..
  "RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=%d %s; wait", p, cmd, p, cmd))
local t_ms, lat_ms = out:match("RESULT ([%d%.]+) SMALL ([%d%.]+)")
t_ms, lat_ms = tonumber(t_ms), tonumber(lat_ms)
if not t_ms then error("all-reduce run failed:\n" .. out) end
local peer = sh(string.format("/usr/bin/python3 %s/torch_allreduce.py %g %d %d", here, opts.mb, opts.reps, port()))
local t_pt, lat_pt = peer:match("RESULT ([%d%.]+) SMALL ([%d%.]+)")
t_pt, lat_pt = tonumber(t_pt), tonumber(lat_pt)
local bytes = opts.mb * 1024 * 1024
io.stdout:write(string.format("all-reduce %g MB f32, 2 processes, loopback: moonseg %.1f ms (%.2f GB/s algbw), " ..
  "torch %s gloo %s\n", opts.mb, t_ms * 1000, bytes / t_ms / 1e9, peer:match("TORCH ([%w%.%+]+)") or "?",
  t_pt and string.format("%.1f ms (%.2f GB/s); moonseg / torch = %.2f", t_pt * 1000, bytes / t_pt / 1e9, t_ms / t_pt)
    or ("failed:\n" .. peer)))
io.stdout:write(string.format("all-reduce 4 KB f32 (latency): moonseg %.0f us, torch gloo %s\n", lat_ms * 1e6,
  lat_pt and string.format("%.0f us; moonseg / torch = %.2f", lat_pt * 1e6, lat_ms / lat_pt) or "failed"))

-- 2. training steps, same global batch
local tmp = os.tmpname()
os.remove(tmp)
local base = "luajit " .. src .. "/recipes/pp_liteseg.lua --iters " .. opts.iters .. " --crop_size " .. opts.crop ..
  " " .. opts.crop .. " --do_eval false --save_interval 100000 --log_iters 1 --seed 5 --save_dir " .. tmp
local function costs(s)
  local t = {}
  for c in s:gmatch("%[TRAIN%][^\n]*batch_cost: ([%d%.]+)") do t[#t + 1] = tonumber(c) end
  local kept = {}
  for i = 3, #t do kept[#kept + 1] = t[i] end
  return #kept > 0 and median(kept) or nil, s
end
local function pair(threads)
  local th = threads and (" --threads " .. threads) or ""
  local one, s1 = costs(sh(base .. " --batch_size 4" .. th))
  local two, s2 = costs(sh(base .. " --batch_size 2 --nproc 2" .. th .. " --log_dir " .. tmp .. "/log"))
  if not one or not two then error("training runs failed:\n" .. s1 .. "\n" .. s2) end
  return one, two, s2
end
local res = { default = { one = {}, two = {}, ratio = {} }, t1 = { one = {}, two = {}, ratio = {} } }
local last
for r = 1, opts.runs do
  for _, k in ipairs { "default", "t1" } do
    local one, two, s2 = pair(k == "t1" and 1 or nil)
    local e = res[k]
    e.one[r], e.two[r], e.ratio[r] = one, two, two / one
    io.stdout:write(string.format("run %d, %s: 1 worker x 4 %.3f s, 2 workers x 2 %.3f s, ratio %.2f\n", r,
      k == "t1" and "--threads 1" or "default flags", one, two, two / one))
    last = s2
  end
end
for _, k in ipairs { "default", "t1" } do
  local e = res[k]
  io.stdout:write(string.format("PP-LiteSeg-T step, crop %d, global batch 4, %s: 1 worker x 4 %.3f s, " ..
    "2 workers x 2 %.3f s: ratio (2 workers / 1) %.2f (median of %d runs)\n", opts.crop,
    k == "t1" and "--threads 1" or "default flags", median(e.one), median(e.two), median(e.ratio), opts.runs))
end
io.stdout:write((last:match("launch: [^\n]*threads? each[^\n]*") or ""), "\n")
for l in last:gmatch("%[DDP%] %d+ buckets[^\n]*") do io.stdout:write(l, "\n") end
os.execute("rm -rf " .. tmp)
io.stdout:write("uptime: ", sh("uptime"))
