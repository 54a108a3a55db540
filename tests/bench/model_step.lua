-- model_step.lua: times moonseg's training step of one model on the CPU, the counterpart of
-- tests/bench/torch_models_peer.py (same arguments, same step, one JSON line).
--
-- A step: forward in train mode, the config's loss (the sum of cross-entropies weighted by the
-- config's coefficients, ignore_index 255), zero_grad, backward, the config's optimizer.
-- --warmup steps (left out), then --steps timed steps; step_s is the median wall time, cpu_s the
-- median process CPU time (all threads), tensor_peak_mb the peak of live tensor bytes over the
-- timed steps, peak_rss_mb the process's VmHWM.
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" MOONSEG_LIB=build/libmoonseg.so luajit \
--     tests/bench/model_step.lua --model deeplabv3p --batch 2 --size 512 512 --steps 3 --threads 2 \
--     [--warmup 1] [--with_cp] [--profile]
--
-- --model: one of the names in `models` below (run with --model help to list them).
-- --profile prints, to stderr, the process CPU time per step (os.clock: robust when the machine
-- is shared) of every ms.functional call (outermost only) and of every backward node, by name.
local ms = require "moonseg"
local F = ms.functional
local M = ms.models

local a = { model = "deeplabv3p", batch = 2, h = 512, w = 512, steps = 3, warmup = 1, threads = 2 }
local i = 1
while i <= #arg do
  local k = arg[i]
  if k == "--model" then a.model = arg[i + 1]; i = i + 1
  elseif k == "--batch" then a.batch = tonumber(arg[i + 1]); i = i + 1
  elseif k == "--size" then a.h, a.w = tonumber(arg[i + 1]), tonumber(arg[i + 2]); i = i + 2
  elseif k == "--steps" then a.steps = tonumber(arg[i + 1]); i = i + 1
  elseif k == "--warmup" then a.warmup = tonumber(arg[i + 1]); i = i + 1
  elseif k == "--threads" then a.threads = tonumber(arg[i + 1]); i = i + 1
  elseif k == "--with_cp" then a.with_cp = true
  elseif k == "--profile" then a.profile = true
  else error("model_step.lua: unknown argument " .. tostring(k)) end
  i = i + 1
end

-- The configs (PaddleSeg's Cityscapes settings, 19 classes): model, loss coefficients, optimizer.
local function sgd(m, wd) return ms.optim.SGD { m, lr = 0.01, momentum = 0.9, weight_decay = wd or 4e-5 } end
local models = {
  unet = function(cp) local m = M.UNet { num_classes = 19, with_cp = cp }; return m, { 1 }, sgd(m) end,
  deeplabv3p = function(cp)
    local m = M.DeepLabV3P { num_classes = 19, aspp_ratios = { 1, 12, 24, 36 },
      backbone = M.backbones.ResNet50_vd { output_stride = 8, multi_grid = { 1, 2, 4 }, with_cp = cp } }
    return m, { 1 }, sgd(m)
  end,
  -- DeepLabV3P + Xception65_deeplab (OS16, ASPP 1/6/12/18; its features are {1/4, 1/16})
  deeplabv3p_xception = function(cp)
    local m = M.DeepLabV3P { num_classes = 19, aspp_ratios = { 1, 6, 12, 18 }, backbone_indices = { 1, 2 },
      backbone = M.backbones.Xception65_deeplab { output_stride = 16, with_cp = cp } }
    return m, { 1 }, sgd(m)
  end,
  pspnet = function(cp)
    local m = M.PSPNet { num_classes = 19, backbone = M.backbones.ResNet50_vd { output_stride = 8, with_cp = cp } }
    return m, { 1, 0.4 }, sgd(m)
  end,
  ocrnet = function(cp)
    local m = M.OCRNet { num_classes = 19, backbone_indices = { 0 }, backbone = M.backbones.HRNet_W18 { with_cp = cp } }
    return m, { 1, 0.4 }, sgd(m)
  end,
  segformer = function(cp)
    local m = M.SegFormer { num_classes = 19, embedding_dim = 256,
      backbone = M.backbones.MixVisionTransformer_B0 { with_cp = cp } }
    return m, { 1 }, ms.optim.AdamW { m, lr = 6e-5, weight_decay = 0.01 }
  end,
  ppliteseg = function(cp)
    if cp then error("model_step.lua: PP-LiteSeg has no with_cp") end
    local m = M.PPLiteSeg { num_classes = 19, backbone = "STDC1" }
    return m, { 1, 1, 1 }, sgd(m, 5e-4)
  end,
}
if not models[a.model] then
  local names = {}
  for n in pairs(models) do names[#names + 1] = n end
  table.sort(names)
  error("model_step.lua: --model must be one of " .. table.concat(names, ", "))
end

ms.set_num_threads(a.threads)
ms.manual_seed(0)
local m, coef, opt = models[a.model](a.with_cp or false)
m:train()
local x = ms.randn(a.batch, 3, a.h, a.w)
local y = ms.randint(0, 19, { a.batch, a.h, a.w })

local prof
if a.profile then
  prof = {}
  local depth = 0
  local function add(label, dt)
    local e = prof[label] or { 0, 0 }
    e[1], e[2] = e[1] + dt, e[2] + 1
    prof[label] = e
  end
  -- forward: every ms.functional entry, timed only when not called from another one
  for name, f in pairs(F) do
    if type(f) == "function" then
      F[name] = function(...)
        depth = depth + 1
        local t0 = os.clock()
        local r = { f(...) }
        depth = depth - 1
        if depth == 0 then add("F." .. name, os.clock() - t0) end
        return unpack(r, 1, table.maxn(r))
      end
    end
  end
  -- backward: every node, by the name it was recorded under
  local A = require "moonseg.autograd"
  local record = A.record
  A.record = function(name, inputs, outputs, backward, saved)
    return record(name, inputs, outputs, function(...)
      local t0 = os.clock()
      local r = { backward(...) }
      add("bwd." .. name, os.clock() - t0)
      return unpack(r, 1, table.maxn(r))
    end, saved)
  end
end

local cpu = {}
local function step()
  local c0 = os.clock() -- process CPU time (all threads)
  local t0 = ms.time()
  local outs = m(x)
  local loss
  for k = 1, #outs do
    local l = F.cross_entropy(outs[k], y, { ignore_index = 255 }) * coef[k]
    loss = loss and loss + l or l
  end
  local t1 = ms.time()
  opt:zero_grad()
  loss:backward()
  local t2 = ms.time()
  opt:step()
  cpu[#cpu + 1] = os.clock() - c0
  return ms.time() - t0, t1 - t0, t2 - t1
end

for _ = 1, a.warmup do step() end
collectgarbage()
ms.reset_peak_memory()
cpu = {}
if prof then for k in pairs(prof) do prof[k] = nil end end
local times, fwd, bwd = {}, {}, {}
for s = 1, a.steps do times[s], fwd[s], bwd[s] = step() end
local function median(v)
  table.sort(v)
  local n = #v
  return n % 2 == 1 and v[(n + 1) / 2] or (v[n / 2] + v[n / 2 + 1]) / 2
end
local function vmhwm_mb()
  local f = io.open("/proc/self/status")
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)")) / 1024
end
print(string.format('{"impl": "moonseg%s", "model": "%s", "params": %d, "step_s": %.4f, "cpu_s": %.4f, "fwd_s": %.4f, ' ..
  '"bwd_s": %.4f, "peak_rss_mb": %.1f, "tensor_peak_mb": %.1f, "batch": %d, "size": [%d, %d], "threads": %d, ' ..
  '"warmup": %d, "steps": %d}', a.with_cp and " with_cp" or "", a.model, m:num_parameters(), median(times), median(cpu),
  median(fwd), median(bwd), vmhwm_mb(), ms.memory_stats().peak / 2 ^ 20, a.batch, a.h, a.w, a.threads, a.warmup, a.steps))

if prof then
  local rows, total = {}, 0
  for k, e in pairs(prof) do
    rows[#rows + 1] = { k, e[1], e[2] }
    total = total + e[1]
  end
  table.sort(rows, function(p, q) return p[2] > q[2] end)
  io.stderr:write(string.format("# moonseg %s: per-op CPU time per step (sum %.3f s)\n", a.model, total / a.steps))
  for _, r in ipairs(rows) do
    io.stderr:write(string.format("%-32s %9.1f ms/step %6d calls/step\n", r[1], 1e3 * r[2] / a.steps, r[3] / a.steps))
  end
end
