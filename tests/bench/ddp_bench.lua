-- ddp_bench.lua: data-parallel cost on this machine, side by side with PyTorch's gloo.
--   luajit tests/bench/ddp_bench.lua [--iters 8] [--crop 128] [--mb 31] [--runs 3]
-- 1. all-reduce of an --mb MB f32 buffer between 2 local processes, median of 7, and of a
--    4 KB one (SyncBatchNorm's size: latency), over each transport (shared memory, the default
--    on one host, and loopback TCP: MS_COMM_TRANSPORT=tcp), against torch.distributed (gloo)
--    all_reduce of the same sizes in the same run;
-- 2. PP-LiteSeg-T training steps, same global batch: 1 worker x 4 against 2 workers x 2
--    (--nproc 2) over each transport, with default flags and with --threads 1; per run the
--    median of the per-iteration batch_cost (first 2 left out) and the whole run's CPU
--    seconds (user+sys, start-up included); --runs runs interleaved, their median.
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
  if ms.dist.get_rank() == 0 then
    io.stdout:write(string.format("RESULT %.6f SMALL %.7f TRANSPORT %s\n", median(times), median(lat),
      ms.dist.transport()))
  end
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
-- 1. all-reduce between 2 local processes, each transport
local transports = { { env = "MS_COMM_TRANSPORT=auto", label = "default" }, { env = "MS_COMM_TRANSPORT=tcp", label = "tcp" } }
local peer = sh(string.format("/usr/bin/python3 %s/torch_allreduce.py %g %d %d", here, opts.mb, opts.reps, port()))
local t_pt, lat_pt = peer:match("RESULT ([%d%.]+) SMALL ([%d%.]+)")
t_pt, lat_pt = tonumber(t_pt), tonumber(lat_pt)
local bytes = opts.mb * 1024 * 1024
for _, tr in ipairs(transports) do
  local p = port()
  local cmd = tr.env .. " luajit " .. arg[0] .. " --mode allreduce --mb " .. opts.mb .. " --reps " .. opts.reps
  local out = sh(string.format("RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=%d %s > /dev/null & " ..
    "RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=%d %s; wait", p, cmd, p, cmd))
  local t_ms, lat_ms, name = out:match("RESULT ([%d%.]+) SMALL ([%d%.]+) TRANSPORT ([^\n]+)")
  t_ms, lat_ms = tonumber(t_ms), tonumber(lat_ms)
  if not t_ms then error("all-reduce run failed:\n" .. out) end
  io.stdout:write(string.format("all-reduce %g MB f32, 2 processes, %s: moonseg %.1f ms (%.2f GB/s algbw), " ..
    "torch %s gloo %s\n", opts.mb, name, t_ms * 1000, bytes / t_ms / 1e9, peer:match("TORCH ([%w%.%+]+)") or "?",
    t_pt and string.format("%.1f ms (%.2f GB/s); moonseg / torch = %.2f", t_pt * 1000, bytes / t_pt / 1e9,
      t_ms / t_pt) or ("failed:\n" .. peer)))
  io.stdout:write(string.format("all-reduce 4 KB f32 (latency), %s: moonseg %.0f us, torch gloo %s\n", name,
    lat_ms * 1e6, lat_pt and string.format("%.0f us; moonseg / torch = %.2f", lat_pt * 1e6, lat_ms / lat_pt) or "failed"))
end

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
-- Runs cmd under the shell's `times`: returns its output and the children's user and sys seconds.
local function timed_sh(cmd)
  local s = sh("{ " .. cmd .. " ; } 2>&1; times")
  local tl = {}
  for m, sec in s:gmatch("(%d+)m([%d%.]+)s") do tl[#tl + 1] = tonumber(m) * 60 + tonumber(sec) end
  return s, { user = tl[#tl - 1] or 0, sys = tl[#tl] or 0 }
end
local function cpu_str(c) return string.format("%.1f+%.1f s CPU", c.user, c.sys) end
-- 1 x 4, then 2 x 2 over shared memory (default) and over TCP
local function trio(threads)
  local th = threads and (" --threads " .. threads) or ""
  local s1, c1 = timed_sh(base .. " --batch_size 4" .. th)
  local r = { one = costs(s1), cpu_one = c1 }
  for _, tr in ipairs(transports) do
    local s2, c2 = timed_sh(tr.env .. " " .. base .. " --batch_size 2 --nproc 2" .. th .. " --log_dir " .. tmp .. "/log")
    r[tr.label], r["cpu_" .. tr.label], r["out_" .. tr.label] = costs(s2), c2, s2
    if not r.one or not r[tr.label] then error("training runs failed:\n" .. s1 .. "\n" .. s2) end
  end
  return r
end
local res, last = { default = {}, t1 = {} }, nil
for run = 1, opts.runs do
  for _, k in ipairs { "default", "t1" } do
    local r = trio(k == "t1" and 1 or nil)
    res[k][run] = r
    io.stdout:write(string.format("run %d, %s: 1 worker x 4 %.3f s (%s); 2 workers x 2 shared memory " ..
      "%.3f s (%s), ratio %.2f; tcp %.3f s (%s), ratio %.2f\n", run,
      k == "t1" and "--threads 1" or "default flags", r.one, cpu_str(r.cpu_one), r.default, cpu_str(r.cpu_default),
      r.default / r.one, r.tcp, cpu_str(r.cpu_tcp), r.tcp / r.one))
    last = r
  end
end
local function med(k, f)
  local t = {}
  for i, r in ipairs(res[k]) do t[i] = f(r) end
  return median(t)
end
for _, k in ipairs { "default", "t1" } do
  io.stdout:write(string.format("PP-LiteSeg-T step, crop %d, global batch 4, %s: 1 worker x 4 %.3f s; " ..
    "2 workers x 2: shared memory %.3f s, ratio (2 workers / 1) %.2f; tcp %.3f s, ratio %.2f (medians of %d runs)\n",
    opts.crop, k == "t1" and "--threads 1" or "default flags", med(k, function(r) return r.one end),
    med(k, function(r) return r.default end), med(k, function(r) return r.default / r.one end),
    med(k, function(r) return r.tcp end), med(k, function(r) return r.tcp / r.one end), opts.runs))
end
for _, tr in ipairs(transports) do
  local s2 = last["out_" .. tr.label]
  io.stdout:write(tr.label, ": ", (s2:match("launch: [^\n]*threads? each[^\n]*") or ""), "\n")
  for l in s2:gmatch("%[DDP%] rank 0[^\n]*") do io.stdout:write(l, "\n") end
  for l in s2:gmatch("%[DDP%] %d+ buckets[^\n]*") do io.stdout:write(l, "\n") end
end
os.execute("rm -rf " .. tmp)
io.stdout:write("uptime: ", sh("uptime"))
