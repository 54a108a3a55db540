-- resize_bench.lua: moonseg bilinear resize, f32 vs bf16 (the half kernels of csrc/cpu/resize.c),
-- forward and forward+backward, the two dtypes interleaved rep by rep. Peer: torch_resize.py.
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" MOONSEG_LIB=build/libmoonseg.so \
--     luajit tests/bench/resize_bench.lua [--threads 2] [--reps 7] [--size 512]
-- Prints RESULT moonseg <dtype> fwd_ms fwdbwd_ms fwdbwd_cpu_ms (medians).
local ms = require "moonseg"
local F = ms.functional

local opts = { threads = 2, reps = 7, size = 512 }
local i = 1
while arg[i] do
  local k = arg[i]:match("^%-%-(.+)$")
  if not k or opts[k] == nil then error("unknown argument " .. arg[i]) end
  opts[k] = tonumber(arg[i + 1])
  i = i + 2
end
ms.set_num_threads(opts.threads)

local function median(t)
  local s = {}
  for k, v in ipairs(t) do s[k] = v end
  table.sort(s)
  return s[math.floor((#s + 1) / 2)]
end

local dts = { "f32", "bf16" }
local io_ = {}
ms.manual_seed(0)
for _, dt in ipairs(dts) do
  io_[dt] = {
    x = ms.randn({ 4, 19, 128, 128 }):to(dt),
    g = ms.randn({ 4, 19, opts.size, opts.size }):to(dt),
  }
end
local rs = { size = { opts.size, opts.size }, mode = "bilinear", align_corners = false }

local t = {}
for _, dt in ipairs(dts) do t[dt] = { fwd = {}, fb = {}, cpu = {} } end
for rep = 0, opts.reps do -- rep 0 is the warm-up
  for _, dt in ipairs(dts) do
    local d = io_[dt]
    local t0 = ms.time()
    local y = ms.no_grad(function() return F.interpolate(d.x, rs) end)
    local t1 = ms.time()
    y:free()
    local x = d.x:detach():requires_grad_()
    local c0, t2 = os.clock(), ms.time()
    y = F.interpolate(x, rs)
    y:backward(d.g)
    local t3, c1 = ms.time(), os.clock()
    y:free()
    x.grad:free()
    if rep > 0 then
      table.insert(t[dt].fwd, (t1 - t0) * 1e3)
      table.insert(t[dt].fb, (t3 - t2) * 1e3)
      table.insert(t[dt].cpu, (c1 - c0) * 1e3)
    end
  end
end
print(string.format("moonseg bilinear [4,19,128,128] -> %dx%d, %d threads, median of %d (ms)",
  opts.size, opts.size, opts.threads, opts.reps))
for _, dt in ipairs(dts) do
  print(string.format("RESULT moonseg %s %.2f %.2f %.2f", dt, median(t[dt].fwd), median(t[dt].fb),
    median(t[dt].cpu)))
end
