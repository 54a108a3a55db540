-- test_xception_golden.lua: DeepLabV3P + Xception65_deeplab (OS16, ASPP 1,6,12,18) against an
-- independent PyTorch twin (tests/golden/xception_torch.py, golden committed as
-- tests/golden/xception_deeplab.lua): f64 eval logits, train-mode logits, loss, first/last
-- layer gradients and an updated running mean on weights from the shared fill formula; then the
-- same step with with_cp: equal loss, gradients and running statistics (moved once).
-- Heavy (~40 s CPU: two 41M-parameter models in f64).
local H = require "harness"
local ms = require "moonseg"
local MG = require "model_golden"

ms.set_num_threads(2)
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local G = dofile(here .. "/../golden/xception_deeplab.lua").deeplabv3p_xception65
local M = ms.models

local function build(o)
  return M.DeepLabV3P { num_classes = 19, backbone = M.backbones.Xception65_deeplab(o), backbone_indices = { 1, 2 },
    aspp_ratios = { 1, 6, 12, 18 }, aspp_out_channels = 256 }
end

-- Relative closeness of sums and samples to the twin's (both f64).
local function match(t, g, tol, what)
  H.same_list(t:size(), g.shape, what .. " shape")
  local v = H.values(t)
  local s, sq = 0, 0
  for i = 1, #v do s, sq = s + v[i], sq + v[i] * v[i] end
  local scale = math.sqrt(g.sumsq / #v)
  H.near(s / #v, g.sum / #v, tol * scale, what .. " mean")
  H.near(sq, g.sumsq, tol * g.sumsq, what .. " sumsq")
  for k, want in ipairs(g.samples) do
    H.near(v[(((k - 1) * 1151 + 17) % #v) + 1], want, tol * scale, what .. " sample " .. k)
  end
end

local function filled_f64(o)
  local m = build(o)
  MG.module_to(m, "f64")
  MG.fill_model(m)
  local x = ms.empty(G.input_shape, { dtype = "f64" })
  MG.fill("input", x)
  local label = MG.label_every11({ G.input_shape[1], G.input_shape[3], G.input_shape[4] }, 19)
  return m, x, label
end

local function train_step(m, x, label)
  m:train()
  for _, mod in ipairs(m:modules()) do
    if mod.__class == ms.nn.Dropout then rawset(mod, "training", false) end
  end
  local outs = m(x)
  local loss = ms.losses.CrossEntropyLoss { ignore_index = 255 }(outs[1], label)
  loss:backward()
  return outs, loss
end

H.case("f64 eval logits, train logits, loss, gradients, running mean = PyTorch twin; with_cp equal", function()
  local m, x, label = filled_f64 {}
  m:eval()
  local outs = ms.no_grad(function() return m(x) end)
  H.eq(#outs, 1)
  match(outs[1], G.eval[1], 1e-9, "eval")
  local loss
  outs, loss = train_step(m, x, label)
  H.eq(#outs, 1)
  match(outs[1], G.train[1], 1e-9, "train")
  H.near(loss:item(), G.loss, 1e-10 * G.loss)
  local sd = m:state_dict()
  for k, gg in pairs(G.grads) do match(sd[k].grad, gg, 1e-8, "grad " .. k) end
  H.eq(G.grads["backbone._conv1._conv.weight"] ~= nil, true)
  match(sd[G.bn_mean.key], G.bn_mean.value, 1e-10, "running mean")

  -- with_cp: the same step recomputing each block in backward gives the same loss, gradients
  -- and running statistics (moved once, not twice)
  local c = filled_f64 { with_cp = true }
  H.eq(c.backbone["xception_65/middle_flow/block3"].with_cp, true)
  local _, closs = train_step(c, x, label)
  H.near(closs:item(), loss:item(), 1e-12 * loss:item())
  local csd = c:state_dict()
  for _, k in ipairs { "backbone._conv1._conv.weight", "backbone.xception_65/middle_flow/block9._conv2._conv2.weight",
    "backbone._exit_flow_2._conv3._bn2.weight", "head.decoder.conv.weight" } do
    local a, b = H.values(sd[k].grad), H.values(csd[k].grad)
    for i = 1, #a, math.max(1, math.floor(#a / 997)) do H.near(b[i], a[i], 1e-10 * (1 + math.abs(a[i])), "with_cp grad " .. k) end
  end
  for _, k in ipairs { "backbone.xception_65/middle_flow/block9._conv2._bn2._mean",
    "backbone._exit_flow_1._short._bn._variance" } do
    local a, b = H.values(sd[k]), H.values(csd[k])
    for i = 1, #a do H.near(b[i], a[i], 1e-12 * (1 + math.abs(a[i])), "with_cp running stat " .. k) end
  end

  -- a second step of each: tensor bytes the graph holds after the forward, and the step's peak
  -- above that baseline (gradients exist already), drop with with_cp
  local function step_memory(model)
    H.settle_memory()
    ms.reset_peak_memory()
    local base = ms.memory_stats().allocated
    local held, l = H.held_by(function() return ms.losses.CrossEntropyLoss { ignore_index = 255 }(model(x)[1], label) end)
    l:backward()
    return held, ms.memory_stats().peak - base
  end
  local held0, peak0 = step_memory(m)
  local held1, peak1 = step_memory(c)
  H.eq(held1 < 0.5 * held0, true, string.format("held after forward %d with_cp vs %d without", held1, held0))
  H.eq(peak1 < peak0, true, string.format("peak %d with_cp vs %d without", peak1, peak0))
  print(string.format("Xception65 DeepLabV3P f64 %s: held after forward %.1f MB without, %.1f MB with_cp; " ..
    "step peak above that %.1f / %.1f MB", table.concat(G.input_shape, "x"), held0 / 2 ^ 20, held1 / 2 ^ 20,
    peak0 / 2 ^ 20, peak1 / 2 ^ 20))
end)

H.done()
