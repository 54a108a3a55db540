-- cnn_train_step.lua: times one moonseg training step of DeepLabV3P+ResNet50_vd (OS8), PSPNet+
-- ResNet50_vd (OS8) or UNet on the CPU, the counterpart of cnn_torch_step.py (same step, one
-- JSON line): train-mode forward, PaddleSeg's loss coefficients (1; 1 and 0.4 for PSPNet),
-- zero_grad, backward, SGD (lr 0.01, momentum 0.9, weight decay 4e-5).
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" MOONSEG_LIB=build/libmoonseg.so luajit \
--     tests/bench/cnn_train_step.lua --model deeplabv3p --batch 2 --size 512 512 --steps 2 --threads 2 [--with_cp]
local ms = require "moonseg"
local F = ms.functional

local a = { model = "deeplabv3p", batch = 2, h = 512, w = 512, steps = 2, threads = 2, with_cp = false }
local i = 1
while i <= #arg do
  local k = arg[i]
  if k == "--model" then a.model = arg[i + 1]; i = i + 1
  elseif k == "--batch" then a.batch = tonumber(arg[i + 1]); i = i + 1
  elseif k == "--size" then a.h, a.w = tonumber(arg[i + 1]), tonumber(arg[i + 2]); i = i + 2
  elseif k == "--steps" then a.steps = tonumber(arg[i + 1]); i = i + 1
  elseif k == "--threads" then a.threads = tonumber(arg[i + 1]); i = i + 1
  elseif k == "--with_cp" then a.with_cp = true
  else error("cnn_train_step.lua: unknown argument " .. tostring(k)) end
  i = i + 1
end

ms.set_num_threads(a.threads)
ms.manual_seed(0)
local M = ms.models
local m, coefs
if a.model == "deeplabv3p" then
  m = M.DeepLabV3P { num_classes = 19, aspp_ratios = { 1, 12, 24, 36 },
    backbone = M.backbones.ResNet50_vd { output_stride = 8, multi_grid = { 1, 2, 4 }, with_cp = a.with_cp } }
  coefs = { 1 }
elseif a.model == "pspnet" then
  m = M.PSPNet { num_classes = 19, backbone = M.backbones.ResNet50_vd { output_stride = 8, with_cp = a.with_cp } }
  coefs = { 1, 0.4 }
elseif a.model == "unet" then
  m = M.UNet { num_classes = 19, with_cp = a.with_cp }
  coefs = { 1 }
else error("--model deeplabv3p|pspnet|unet") end
m:train()
local opt = ms.optim.SGD { m, lr = 0.01, momentum = 0.9, weight_decay = 4e-5 }
local x = ms.randn(a.batch, 3, a.h, a.w)
local y = ms.randint(0, 19, { a.batch, a.h, a.w })

local function step()
  local outs = m(x)
  local loss
  for k, c in ipairs(coefs) do
    local l = F.cross_entropy(outs[k], y, { ignore_index = 255 }) * c
    loss = loss and loss + l or l
  end
  opt:zero_grad()
  loss:backward()
  opt:step()
end

step() -- warm-up
collectgarbage()
ms.reset_peak_memory()
local times = {}
for s = 1, a.steps do
  local t0 = ms.time()
  step()
  times[s] = ms.time() - t0
end
table.sort(times)
local med = times[math.floor((#times + 1) / 2)]
local function vmhwm()
  local f = io.open("/proc/self/status")
  if not f then return 0 end
  local kb = f:read("*a"):match("VmHWM:%s*(%d+)")
  f:close()
  return tonumber(kb) / 1024
end
print(string.format('{"impl": "moonseg%s", "model": "%s", "step_s": %.4f, "min_s": %.4f, "steps": %d, ' ..
  '"peak_rss_mb": %.1f, "tensor_peak_mb": %.1f, "params": %d}', a.with_cp and "+cp" or "", a.model, med,
  times[1], a.steps, vmhwm(), ms.memory_stats().peak / 2 ^ 20, m:num_parameters()))
