-- model_step.lua: times moonseg's training step of OCRNet-HRNet_W18 or SegFormer-B0 on the CPU,
-- the counterpart of tests/bench/torch_models_peer.py (same arguments, same step, one JSON line).
--
-- A step: forward in train mode, the config's loss (OCRNet: CE(main) + 0.4 CE(aux); SegFormer:
-- CE), zero_grad, backward, optimizer (OCRNet: SGD lr 0.01 momentum 0.9 wd 4e-5; SegFormer:
-- AdamW lr 6e-5 wd 0.01). --warmup steps, then --steps timed steps; step_s is their median.
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" luajit tests/bench/model_step.lua --model ocrnet \
--     --batch 2 --size 512 512 --steps 3 --threads 2 [--with_cp]
local ms = require "moonseg"
local F = ms.functional

local a = { model = "segformer", batch = 2, h = 512, w = 512, steps = 3, warmup = 1, threads = 2 }
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
  else error("model_step.lua: unknown argument " .. tostring(k)) end
  i = i + 1
end

ms.set_num_threads(a.threads)
ms.manual_seed(0)
local m, opt, coef
if a.model == "ocrnet" then
  m = ms.models.OCRNet { num_classes = 19, backbone_indices = { 0 }, backbone = ms.models.backbones.HRNet_W18 { with_cp = a.with_cp } }
  opt = ms.optim.SGD { m, lr = 0.01, momentum = 0.9, weight_decay = 4e-5 }
  coef = { 1, 0.4 }
elseif a.model == "segformer" then
  m = ms.models.SegFormer { num_classes = 19, embedding_dim = 256, backbone = ms.models.backbones.MixVisionTransformer_B0 { with_cp = a.with_cp } }
  opt = ms.optim.AdamW { m, lr = 6e-5, weight_decay = 0.01 }
  coef = { 1 }
else
  error("model_step.lua: --model must be ocrnet or segformer")
end
m:train()
local x = ms.randn(a.batch, 3, a.h, a.w)
local y = ms.randint(0, 19, { a.batch, a.h, a.w })

local cpu = {}
local function step()
  local c0 = os.clock() -- process CPU time: robust to a shared machine when --threads 1
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
local dt = median(times)
print(string.format('{"impl": "moonseg%s", "model": "%s", "params": %d, "step_s": %.4f, "cpu_s": %.4f, "fwd_s": %.4f, "bwd_s": %.4f, ' ..
  '"peak_rss_mb": %.1f, "tensor_peak_mb": %.1f, "batch": %d, "size": [%d, %d], "threads": %d, "steps": %d}',
  a.with_cp and " with_cp" or "", a.model, m:num_parameters(), dt, median(cpu), median(fwd), median(bwd), vmhwm_mb(), ms.memory_stats().peak / 2 ^ 20,
  a.batch, a.h, a.w, a.threads, a.steps))
