-- train_step.lua: times moonseg's PP-LiteSeg training step on the CPU, the counterpart of
-- ../../../shared/bench/torch_ppliteseg.py (same arguments, same step, one JSON line).
--
-- A step: forward in train mode (three logits at input size), the sum of three
-- cross-entropies (coefficient 1, ignore_index 255, mean), zero_grad, backward, and SGD
-- (lr 0.01, momentum 0.9, weight decay 5e-4), as the PyTorch peer does. Two warm-up steps,
-- then --steps timed steps; step_s is their median (the peer prints the mean; --stat mean
-- prints the mean too), cpu_s the same statistic of the process CPU time per step.
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" MOONSEG_LIB=build-perf/libmoonseg.so \
--     luajit tests/bench/train_step.lua --batch 2 --size 256 256 --steps 5 --threads 2 [--stdc2]
--
-- --channels_last is accepted and ignored (moonseg's CPU convs pick their own blocked
-- layouts through oneDNN; activations stay NCHW). --profile prints per-op forward times
-- (wrapping ms.functional and Tensor methods) and backward times to stderr after the timed
-- steps; --profile_cpu the same in process CPU time (os.clock: steadier on a loaded machine
-- with --threads 1).
local ms = require "moonseg"
local F = ms.functional

local a = { batch = 2, h = 256, w = 256, steps = 5, threads = 2, stdc2 = false, stat = "median" }
local i = 1
while i <= #arg do
  local k = arg[i]
  if k == "--batch" then a.batch = tonumber(arg[i + 1]); i = i + 1
  elseif k == "--size" then a.h, a.w = tonumber(arg[i + 1]), tonumber(arg[i + 2]); i = i + 2
  elseif k == "--steps" then a.steps = tonumber(arg[i + 1]); i = i + 1
  elseif k == "--threads" then a.threads = tonumber(arg[i + 1]); i = i + 1
  elseif k == "--stat" then a.stat = arg[i + 1]; i = i + 1
  elseif k == "--stdc2" then a.stdc2 = true
  elseif k == "--channels_last" then a.channels_last = true
  elseif k == "--profile" then a.profile = true
  elseif k == "--profile_cpu" then a.profile, a.profile_cpu = true, true
  elseif k == "--precision" then a.precision = arg[i + 1]; i = i + 1
  elseif k == "--amp_level" then a.amp_level = arg[i + 1]; i = i + 1
  elseif k == "--device" then
    if arg[i + 1] ~= "cpu" then error("train_step.lua: only --device cpu is supported") end
    i = i + 1
  else error("train_step.lua: unknown argument " .. tostring(k)) end
  i = i + 1
end

-- --precision bf16|fp16 [--amp_level O1|O2]: the training engine's mixed precision (autocast
-- around forward and loss; fp16 with the dynamic GradScaler, as moonseg trains it).
local half = ({ bf16 = "bf16", fp16 = "f16", fp32 = false })[a.precision or "fp32"]
if half == nil then error("train_step.lua: --precision must be fp32, bf16 or fp16") end
ms.set_num_threads(a.threads)
ms.manual_seed(0)
local m = ms.models.PPLiteSeg { num_classes = 19, backbone = a.stdc2 and "STDC2" or "STDC1" }
m:train()
local nparams = m:num_parameters()
local opt = ms.optim.SGD { m, lr = 0.01, momentum = 0.9, weight_decay = 5e-4 }
local scaler = half == "f16" and ms.amp.GradScaler {} or nil
if half and a.amp_level == "O2" then ms.amp.decorate(m, opt, half) end
local x = ms.randn(a.batch, 3, a.h, a.w)
local y = ms.randint(0, 19, { a.batch, a.h, a.w })

local prof
local pclock = a.profile_cpu and os.clock or ms.time
if a.profile then
  prof = {}
  local function wrap(tbl, name, label)
    local f = tbl[name]
    if type(f) ~= "function" then return end
    tbl[name] = function(...)
      local t0 = pclock()
      local r1, r2, r3 = f(...)
      local e = prof[label] or { 0, 0 }
      e[1], e[2] = e[1] + pclock() - t0, e[2] + 1
      prof[label] = e
      return r1, r2, r3
    end
  end
  for _, n in ipairs { "interpolate", "relu", "sigmoid", "cross_entropy", "batch_norm", "conv2d",
    "adaptive_avg_pool2d", "avg_pool2d" } do wrap(F, n, "F." .. n) end
  wrap(ms, "cat", "cat") -- T.to (casts) also counts inside the F.* ops that call it
  local T = ms.Tensor
  if type(T) == "table" then
    for _, n in ipairs { "mean", "max", "__add", "__mul", "__sub", "add", "mul", "sub", "to" } do
      wrap(T, n, "T." .. n)
    end
    local mt = getmetatable(x)
    for _, n in ipairs { "__add", "__mul", "__sub" } do wrap(mt, n, "mt." .. n) end
  end
end

if prof then
  local A = require "moonseg.autograd"
  local record = A.record
  A.record = function(name, inputs, outputs, backward, saved)
    local label = "bwd." .. name
    local function timed(...)
      local t0 = pclock()
      local r = { backward(...) }
      local e = prof[label] or { 0, 0 }
      e[1], e[2] = e[1] + pclock() - t0, e[2] + 1
      prof[label] = e
      return unpack(r, 1, table.maxn(r))
    end
    return record(name, inputs, outputs, timed, saved)
  end
end

local function fwd()
  local outs = m(x)
  local loss
  for k = 1, #outs do
    local l = F.cross_entropy(outs[k], y, { ignore_index = 255 })
    loss = loss and loss + l or l
  end
  return outs, loss
end
local function forward()
  if half then return ms.autocast(half, fwd) end
  return fwd()
end
local function backward(loss)
  if scaler then scaler:scale(loss):backward() else loss:backward() end
end
local function opt_step()
  if scaler then
    scaler:step(opt)
    scaler:update()
  else
    opt:step()
  end
end

local function step()
  local _, loss = forward()
  opt:zero_grad()
  backward(loss)
  opt_step()
  return loss
end

local function now() return ms.time() end

step(); step()
collectgarbage()
ms.reset_peak_memory()
local function minflt()
  local f = io.open("/proc/self/stat")
  if not f then return 0 end
  local st = f:read("*a")
  f:close()
  -- fields after the ")" of the command name: state ppid pgrp session tty tpgid flags minflt
  local rest = st:match("%)%s+(.*)$")
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  return tonumber(fields[8]) or 0
end
local flt0 = minflt()
local times, cpus, phases = {}, {}, { fwd = {}, bwd = {}, opt = {} }
for _ = 1, a.steps do
  local c0 = os.clock() -- process CPU time (all threads): steadier than wall time under load
  local t0 = now()
  local outs, loss = forward()
  local t1 = now()
  opt:zero_grad()
  backward(loss)
  local t2 = now()
  opt_step()
  local t3 = now()
  times[#times + 1] = t3 - t0
  cpus[#cpus + 1] = os.clock() - c0
  table.insert(phases.fwd, t1 - t0); table.insert(phases.bwd, t2 - t1); table.insert(phases.opt, t3 - t2)
  outs, loss = nil, nil
end

local function stat(v)
  local s = {}
  for k, t in ipairs(v) do s[k] = t end
  table.sort(s)
  if a.stat == "mean" then
    local sum = 0
    for _, t in ipairs(s) do sum = sum + t end
    return sum / #s
  elseif a.stat == "min" then return s[1] end
  local n = #s
  return n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2
end

local function vmhwm_mb()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  local kb = s:match("VmHWM:%s*(%d+)")
  return kb and tonumber(kb) / 1024 or nil
end

local faults = (minflt() - flt0) / a.steps
local dt = stat(times)
local mem = ms.memory_stats()
print(string.format('{"impl": "moonseg", "params": %d, "step_s": %.4f, "img_per_s": %.2f, ' ..
  '"cpu_s": %.4f, "fwd_s": %.4f, "bwd_s": %.4f, "opt_s": %.4f, "peak_rss_mb": %.1f, "tensor_peak_mb": %.1f, "minflt_per_step": %d, ' ..
  '"batch": %d, "size": [%d, %d], "threads": %d, "steps": %d, "stat": "%s", "precision": "%s%s"}',
  nparams, dt, a.batch / dt, stat(cpus), stat(phases.fwd), stat(phases.bwd), stat(phases.opt),
  vmhwm_mb() or -1, mem.peak / 2 ^ 20, faults, a.batch, a.h, a.w, a.threads, a.steps, a.stat,
  a.precision or "fp32", half and (" " .. (a.amp_level or "O1")) or ""))

if prof then
  local rows = {}
  for k, e in pairs(prof) do rows[#rows + 1] = { k, e[1], e[2] } end
  table.sort(rows, function(p, q) return p[2] > q[2] end)
  local nsteps = a.steps + 2
  for _, r in ipairs(rows) do
    io.stderr:write(string.format("%-28s %8.2f ms/step %6d calls/step\n", r[1], 1e3 * r[2] / nsteps,
      r[3] / nsteps))
  end
end
