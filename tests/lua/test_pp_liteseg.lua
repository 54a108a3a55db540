-- test_pp_liteseg.lua: PP-LiteSeg (STDC1/STDC2) against PaddleSeg's key names and parameter
-- counts, output shapes, state-dict round trips, a forward match with an independent PyTorch
-- implementation (tests/golden/ppliteseg_torch.py, golden committed as
-- tests/golden/ppliteseg_t_forward.lua) and a full train-mode backward.
local H = require "harness"
local MG = require "model_golden"
local ms = require "moonseg"
local F = ms.functional

ms.set_num_threads(2)
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local G = dofile(here .. "/../golden/ppliteseg_t_forward.lua")

local tcase = H.case
H.case = function(name, fn)
  local t = ms.time()
  tcase(name, fn)
  if os.getenv("TIMING") then print(string.format("%6.2fs %s", ms.time() - t, name)) end
end

local function T_model(o)
  o = o or {}
  o.num_classes = o.num_classes or 19
  o.backbone = o.backbone or "STDC1"
  return ms.models.PPLiteSeg(o)
end

local function index_of(list)
  local r = {}
  for i, v in ipairs(list) do r[v] = i end
  return r
end

H.case("PP-LiteSeg-T: 250 PaddleSeg keys, 8,141,600 trainable parameters", function()
  local m = T_model()
  local keys = m:state_dict_keys()
  H.eq(#keys, 250)
  H.eq(#keys, G.keys_T)
  H.eq(m:num_parameters(), 8141600)
  H.eq(m:num_parameters(), G.params_T)
  local idx = index_of(keys)
  local sd = m:state_dict()
  local n_unique = 0
  for _ in pairs(sd) do n_unique = n_unique + 1 end
  H.eq(n_unique, 250, "keys are unique")
  local expect = {
    ["backbone.features.0.conv.weight"] = { 32, 3, 3, 3 },
    ["backbone.features.0.bn.weight"] = { 32 },
    ["backbone.features.0.bn._mean"] = { 32 },
    ["backbone.features.0.bn._variance"] = { 32 },
    ["backbone.features.1.conv.weight"] = { 64, 32, 3, 3 },
    ["backbone.features.2.conv_list.0.conv.weight"] = { 128, 64, 1, 1 },
    ["backbone.features.2.conv_list.1.conv.weight"] = { 64, 128, 3, 3 },
    ["backbone.features.2.conv_list.3.conv.weight"] = { 32, 32, 3, 3 },
    ["backbone.features.2.avd_layer.0.weight"] = { 128, 1, 3, 3 },
    ["backbone.features.2.avd_layer.1._variance"] = { 128 },
    ["backbone.features.3.conv_list.0.conv.weight"] = { 128, 256, 1, 1 },
    ["backbone.features.7.conv_list.3.bn.bias"] = { 128 },
    ["ppseg_head.cm.stages.0.1._conv.weight"] = { 128, 1024, 1, 1 },
    ["ppseg_head.cm.stages.2.1._conv.bias"] = { 128 },
    ["ppseg_head.cm.stages.1.1._batch_norm._mean"] = { 128 },
    ["ppseg_head.cm.conv_out._conv.weight"] = { 128, 128, 3, 3 },
    ["ppseg_head.cm.conv_out._conv.bias"] = { 128 },
    ["ppseg_head.arm_list.0.conv_x._conv.weight"] = { 64, 256, 3, 3 },
    ["ppseg_head.arm_list.0.conv_out._conv.weight"] = { 32, 64, 3, 3 },
    ["ppseg_head.arm_list.1.conv_x._conv.weight"] = { 128, 512, 3, 3 },
    ["ppseg_head.arm_list.2.conv_x._conv.weight"] = { 128, 1024, 3, 3 },
    ["ppseg_head.arm_list.2.conv_out._batch_norm._variance"] = { 128 },
    ["ppseg_head.arm_list.0.conv_xy_atten.0._conv.weight"] = { 2, 4, 3, 3 },
    ["ppseg_head.arm_list.0.conv_xy_atten.1._conv.weight"] = { 1, 2, 3, 3 },
    ["ppseg_head.arm_list.0.conv_xy_atten.1._batch_norm.weight"] = { 1 },
    ["ppseg_head.arm_list.1._scale"] = { 1 },
    ["seg_heads.0.conv._conv.weight"] = { 32, 32, 3, 3 },
    ["seg_heads.1.conv._conv.weight"] = { 64, 64, 3, 3 },
    ["seg_heads.2.conv._batch_norm.bias"] = { 64 },
    ["seg_heads.0.conv_out.weight"] = { 19, 32, 1, 1 },
    ["seg_heads.2.conv_out.weight"] = { 19, 64, 1, 1 },
  }
  for k, shape in pairs(expect) do
    H.eq(idx[k] ~= nil, true, "key " .. k)
    H.same_list(sd[k]:size(), shape, k)
  end
  -- convolutions PaddleSeg builds without a bias, and keys it never has
  for _, k in ipairs { "backbone.features.0.conv.bias", "backbone.features.2.avd_layer.0.bias",
    "ppseg_head.arm_list.0.conv_x._conv.bias", "ppseg_head.arm_list.0.conv_xy_atten.0._conv.bias",
    "seg_heads.0.conv._conv.bias", "seg_heads.0.conv_out.bias", "backbone.conv_last.conv.weight",
    "backbone.x2.0.0.conv.weight" } do
    H.eq(idx[k], nil, "no key " .. k)
  end
  -- _scale is state but not trainable
  local trainable = index_of(m:parameters())
  H.eq(trainable[sd["ppseg_head.arm_list.0._scale"]], nil)
  H.eq(sd["ppseg_head.arm_list.0._scale"]:item(), 1)
end)

H.case("PP-LiteSeg-B (STDC2): 370 keys, 12,366,464 parameters", function()
  -- Both numbers come from tests/golden/ppliteseg_torch.py (a PyTorch PP-LiteSeg written
  -- from PaddleSeg's source, run with Debian's PyTorch 1.13: "B keys 370 params 12366464"),
  -- and agree with counting PaddleSeg's layer arithmetic by hand in Python.
  local m = ms.models.PPLiteSeg { num_classes = 19, backbone = "STDC2" }
  H.eq(#m:state_dict_keys(), 370)
  H.eq(m:num_parameters(), 12366464)
  H.eq(m:num_parameters(), G.params_B)
  local sd = m:state_dict()
  H.same_list(sd["ppseg_head.arm_list.0.conv_x._conv.weight"]:size(), { 96, 256, 3, 3 })
  H.same_list(sd["ppseg_head.arm_list.1.conv_x._conv.weight"]:size(), { 128, 512, 3, 3 })
  H.same_list(sd["seg_heads.0.conv._conv.weight"]:size(), { 64, 64, 3, 3 })
  H.same_list(sd["backbone.features.13.conv_list.0.conv.weight"]:size(), { 512, 1024, 1, 1 })
  H.eq(sd["backbone.features.14.conv_list.0.conv.weight"], nil)
  -- explicit widths override the per-backbone defaults
  local c = ms.models.PPLiteSeg { num_classes = 2, backbone = "STDC2", arm_out_chs = { 32, 64, 128 },
    seg_head_inter_chs = { 32, 64, 64 } }
  H.same_list(c:state_dict()["seg_heads.0.conv_out.weight"]:size(), { 2, 32, 1, 1 })
end)

H.case("backbone init as PaddleSeg: convs N(0, 0.001^2), BN 1/0, head convs N(0, 2/fan_in)", function()
  ms.manual_seed(3)
  local sd = T_model():state_dict()
  local w = sd["backbone.features.3.conv_list.0.conv.weight"]
  H.near((w * w):mean():item() ^ 0.5, 0.001, 0.05)
  H.eq(sd["backbone.features.3.conv_list.0.bn.weight"]:sum():item(), 256 / 2)
  H.eq(sd["backbone.features.3.conv_list.0.bn._variance"]:sum():item(), 256 / 2)
  local hw = sd["ppseg_head.arm_list.2.conv_x._conv.weight"]
  H.near((hw * hw):mean():item() ^ 0.5, math.sqrt(2 / (1024 * 9)), 0.05)
  H.eq(sd["ppseg_head.cm.stages.0.1._conv.bias"]:abs():sum():item(), 0)
end)

H.case("output shapes: train = three logits at input size, eval = { main logits }", function()
  ms.manual_seed(0)
  local m = T_model { num_classes = 7 }
  local x = ms.randn(2, 3, 65, 97)
  local outs = m(x)
  H.eq(#outs, 3)
  for i = 1, 3 do H.same_list(outs[i]:size(), { 2, 7, 65, 97 }, "train head " .. i) end
  m:eval()
  for _, shape in ipairs { { 1, 3, 96, 160 }, { 2, 3, 65, 97 }, { 1, 3, 33, 47 } } do
    local y = ms.no_grad(function() return m(ms.randn(shape)) end)
    H.eq(#y, 1)
    H.same_list(y[1]:size(), { shape[1], 7, shape[3], shape[4] }, "eval " .. table.concat(shape, "x"))
  end
  -- the eval output is seg head 1 (the stride-8 head)
  local x1 = ms.randn(1, 3, 64, 64)
  local y = ms.no_grad(function() return m(x1) end)
  rawset(m, "training", true) -- top module only: every head, batch norms still eval
  local all = ms.no_grad(function() return m(x1) end)
  H.eq((y[1] - all[1]):abs():max():item(), 0)
  H.eq((all[2] - all[1]):abs():max():item() > 0, true)
end)

H.case("forward matches the PyTorch reference (f64 and f32, all three heads)", function()
  -- The golden values were computed in float64 by tests/golden/ppliteseg_torch.py; logits
  -- reach |v| ~ 4. Sample errors are measured as |got - want| / (1 + |want|) (H.near).
  -- f64: the two implementations differ only in summation order, so errors stay at the
  -- 1e-16 level per op: observed 1.2e-15 on samples and 5e-14 relative on the sums; bounds
  -- 1e-12 and 1e-10.
  -- f32: moonseg's f32 path against the f64 reference. f32 rounding (6e-8) accumulated over
  -- ~40 layers with reductions of up to 9,216 terms gives observed sample errors of 3e-6,
  -- 7e-7 relative on the sums of squares and a mean per-logit bias of 7e-8 * absmax on the
  -- sums; the bounds (3e-5, 1e-5, 1e-6) leave 10x room for other conv algorithms (oneDNN /
  -- BLAS blockings, thread counts) and still catch real mistakes, which move logits by 1e-2
  -- or more (align_corners=true or a padding-inclusive skip pool fail by orders of magnitude).
  for _, case in ipairs { { "f64", 1e-12, 1e-10, 1e-10 }, { "f32", 3e-5, 1e-5, 1e-6 } } do
    local dtype, stol, sqtol, sumtol = case[1], case[2], case[3], case[4]
    local m = T_model()
    if dtype == "f64" then MG.module_to(m, "f64") end
    MG.fill_model(m)
    local x = ms.empty(G.input_shape, { dtype = dtype })
    MG.fill("input", x)
    m:eval()
    rawset(m, "training", true)
    local outs = ms.no_grad(function() return m(x) end)
    H.eq(#outs, 3)
    for h = 1, 3 do
      local o, g = outs[h], G.heads[h]
      H.same_list(o:size(), g.shape)
      H.eq(o:type(), dtype)
      local buf, n = o:to_f64_buffer()
      local s, sq = 0, 0
      for i = 0, n - 1 do
        s = s + buf[i]
        sq = sq + buf[i] * buf[i]
      end
      local what = dtype .. " head " .. h
      H.near(sq, g.sumsq, sqtol, what .. " sum of squares")
      if math.abs(s - g.sum) > sumtol * n * g.absmax then
        error(string.format("%s sum: got %.10g, want %.10g", what, s, g.sum))
      end
      for k = 0, 99 do
        local v = buf[(k * 1151 + 17) % n]
        if math.abs(v - g.samples[k + 1]) > stol * (1 + math.abs(g.samples[k + 1])) then
          error(string.format("%s sample %d: got %.10g, want %.10g (tol %g)", what, k, v, g.samples[k + 1], stol))
        end
      end
    end
  end
end)

H.case("state dict round trip through ms.save / ms.load", function()
  local a = T_model()
  MG.fill_model(a)
  local path = os.tmpname()
  ms.save(path, a:state_dict(), { model = "PPLiteSeg-T" })
  ms.manual_seed(42)
  local b = T_model()
  local sd, meta = ms.load(path)
  os.remove(path)
  H.eq(meta.model, "PPLiteSeg-T")
  local n = 0
  for _ in pairs(sd) do n = n + 1 end
  H.eq(n, 250)
  b:load_state_dict(sd)
  local bsd = b:state_dict()
  for k, t in pairs(a:state_dict()) do
    H.eq((t - bsd[k]):abs():max():item(), 0, k)
  end
  a:eval(); b:eval()
  local x = ms.randn(1, 3, 64, 96)
  local ya = ms.no_grad(function() return a(x) end)
  local yb = ms.no_grad(function() return b(x) end)
  H.eq((ya[1] - yb[1]):abs():max():item(), 0)
  -- the model's pretrained option loads the same file format
  ms.save(path, a:state_dict())
  local c = T_model { pretrained = path }
  os.remove(path)
  c:eval()
  local yc = ms.no_grad(function() return c(x) end)
  H.eq((ya[1] - yc[1]):abs():max():item(), 0)
  -- backbone_pretrained: an STDC checkpoint (features.*, plus keys the backbone lacks, as
  -- an ImageNet classifier's) loads into the backbone only
  local stdc_sd = {}
  for k, t in pairs(a.backbone:state_dict()) do stdc_sd[k] = t end
  stdc_sd["linear.weight"] = ms.zeros(1000, 1024)
  stdc_sd["conv_last.conv.weight"] = ms.zeros(1024, 1024, 1, 1)
  ms.save(path, stdc_sd)
  local d = T_model { backbone_pretrained = path }
  local dsd = d:state_dict()
  H.eq((dsd["backbone.features.5.conv_list.2.conv.weight"] - a:state_dict()["backbone.features.5.conv_list.2.conv.weight"]):abs():max():item(), 0)
  H.eq((dsd["backbone.features.7.conv_list.0.bn._variance"] - a:state_dict()["backbone.features.7.conv_list.0.bn._variance"]):abs():max():item(), 0)
  H.eq((dsd["seg_heads.0.conv_out.weight"] - a:state_dict()["seg_heads.0.conv_out.weight"]):abs():max():item() > 0, true)
  ms.save(path, { ["linear.weight"] = ms.zeros(2, 2) })
  H.raises(function() T_model { backbone_pretrained = path } end, "STDCNet", "no key")
  os.remove(path)
  -- a B checkpoint does not load into T
  local sdb = ms.models.PPLiteSeg { num_classes = 19, backbone = "STDC2" }:state_dict()
  H.raises(function() a:load_state_dict(sdb) end, "load_state_dict", "ppseg_head.arm_list.0.conv_x._conv.weight")
end)

H.case("train step: forward, 3-head cross-entropy, backward reach all 8,141,600 parameters", function()
  ms.manual_seed(7)
  local m = T_model()
  m:train()
  -- batch 2: batch norm in training needs more than one value per channel, and the bin-1
  -- SPPM stage pools to 1x1 (PyTorch refuses batch 1 there too; Paddle would divide 0 by eps)
  local x = ms.randn(2, 3, 64, 64)
  local y = ms.randint(0, 19, { 2, 64, 64 })
  local mean_before = m:state_dict()["backbone.features.0.bn._mean"]:clone()
  local outs = m(x)
  local loss = F.cross_entropy(outs[1], y) + F.cross_entropy(outs[2], y) + F.cross_entropy(outs[3], y)
  H.eq(loss:dim(), 0)
  local lv = loss:item()
  H.eq(lv == lv and lv > 0, true, "finite positive loss")
  loss:backward()
  local total = 0
  for _, kv in ipairs(m:named_parameters()) do
    local name, p = kv[1], kv[2]
    if p.grad == nil then error("no grad for " .. name) end
    H.same_list(p.grad:size(), p:size(), name)
    local s = p.grad:abs():sum():item()
    if not (s == s and s < math.huge) then error("non-finite grad for " .. name) end
    total = total + p.grad:numel()
  end
  H.eq(total, 8141600)
  H.eq(m:state_dict()["ppseg_head.arm_list.0._scale"].grad, nil)
  -- a head weight's gradient is not zero
  H.eq(m:state_dict()["seg_heads.0.conv_out.weight"].grad:abs():sum():item() > 0, true)
  -- training updated the running statistics (Paddle momentum 0.9)
  local mean_after = m:state_dict()["backbone.features.0.bn._mean"]
  H.eq((mean_after - mean_before):abs():max():item() > 0, true)
end)

H.case("bad arguments raise clear errors", function()
  H.raises(function() ms.models.PPLiteSeg {} end, "PPLiteSeg", "num_classes")
  H.raises(function() ms.models.PPLiteSeg { num_classes = 2, backbone = "STDC3" } end, "unknown backbone", "STDC3")
  H.raises(function() ms.models.PPLiteSeg { num_classes = 2, arm_type = "UAFM_ChAtten" } end, "arm_type")
  H.raises(function() ms.models.PPLiteSeg { num_classes = 2, arm_out_chs = { 32, 64 } } end, "arm_out_chs")
  local m = T_model { num_classes = 2 }
  m:eval()
  H.raises(function() m(ms.randn(1, 4, 32, 32)) end, "conv2d", "[1, 4, 32, 32]")
end)

H.done()
