-- test_ocrnet.lua: OCRNet + HRNet_W18 against PaddleSeg's key names and counts and against an
-- independent PyTorch twin (tests/golden/ocrnet_torch.py, golden
-- tests/golden/ocrnet_hrnetw18_golden.lua): eval logits, train-mode logits of both heads, the
-- 1 / 0.4 weighted loss and the gradients of the first and last layers, in f64.
local H = require "harness"
local ms = require "moonseg"
local MG = require "model_golden"
local F = ms.functional

ms.set_num_threads(2)
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local G = dofile(here .. "/../golden/ocrnet_hrnetw18_golden.lua")

local function model(ncls)
  return ms.models.OCRNet { num_classes = ncls or 19, backbone_indices = { 0 },
    backbone = ms.models.backbones.HRNet_W18 {} }
end

H.case("OCRNet-HRNet_W18: 1583 PaddleSeg keys, 12,083,122 parameters", function()
  local m = model()
  local keys = m:state_dict_keys()
  H.eq(#keys, 1583)
  H.eq(#keys, G.keys)
  H.eq(m:num_parameters(), 12083122)
  H.eq(m:num_parameters(), G.params)
  H.eq(MG.keys_digest(keys), G.keys_digest, "same key set as the twin")
  local sd = m:state_dict()
  local expect = {
    ["backbone.conv_layer1_1._conv.weight"] = { 64, 3, 3, 3 },
    ["backbone.la1.bb_layer2_1.conv_down._batch_norm._mean"] = { 256 },
    ["backbone.la1.bb_layer2_4.conv3._conv.weight"] = { 256, 64, 1, 1 },
    ["backbone.tr1.transition_tr1_layer_2._conv.weight"] = { 36, 256, 3, 3 },
    ["backbone.tr2.transition_tr2_layer_3._conv.weight"] = { 72, 36, 3, 3 },
    ["backbone.st2.stage_st2_1.branches_func.bb_st2_1_branch_layer_2_4.conv2._conv.weight"] = { 36, 36, 3, 3 },
    ["backbone.st3.stage_st3_4.fuse_func.residual_st3_4_layer_1_3._conv.weight"] = { 18, 72, 1, 1 },
    ["backbone.st4.stage_st4_3.fuse_func.residual_st4_3_layer_4_1_1._conv.weight"] = { 18, 18, 3, 3 },
    ["backbone.st4.stage_st4_3.fuse_func.residual_st4_3_layer_4_1_3._conv.weight"] = { 144, 18, 3, 3 },
    ["head.conv3x3_ocr._conv.weight"] = { 512, 270, 3, 3 },
    ["head.conv3x3_ocr._conv.bias"] = { 512 },
    ["head.aux_head.0._conv.weight"] = { 270, 270, 1, 1 },
    ["head.aux_head.1.weight"] = { 19, 270, 1, 1 },
    ["head.spatial_ocr.attention_block.f_pixel.1._conv.weight"] = { 256, 256, 1, 1 },
    ["head.spatial_ocr.attention_block.f_up._batch_norm._variance"] = { 512 },
    ["head.spatial_ocr.conv1x1.0._conv.weight"] = { 512, 1024, 1, 1 },
    ["head.cls_head.bias"] = { 19 },
  }
  for k, shape in pairs(expect) do
    H.eq(sd[k] ~= nil, true, "key " .. k)
    H.same_list(sd[k]:size(), shape, k)
  end
  for _, k in ipairs { "backbone.conv_layer1_1._conv.bias", "backbone.tr2.transition_tr2_layer_1._conv.weight" } do
    H.eq(sd[k], nil, "no key " .. k)
  end
  H.raises(function()
    ms.models.OCRNet { num_classes = 2, backbone_indices = { 1 }, backbone = ms.models.backbones.HRNet_W18 {} }
  end, "backbone_indices", "out of range")
end)

H.case("HRNet_W18 alone: one 270-channel map at stride 4; 'same' padding on odd sizes", function()
  local bb = ms.models.backbones.HRNet_W18 {}
  bb:eval()
  H.same_list(bb.feat_channels, { 270 })
  local o = ms.no_grad(function() return bb(ms.randn(1, 3, 64, 96)) end)
  H.eq(#o, 1)
  H.same_list(o[1]:size(), { 1, 270, 16, 24 })
  -- ceil(in / 2) per stride-2 conv, as Paddle's 'same'
  o = ms.no_grad(function() return bb(ms.randn(1, 3, 35, 50)) end)
  H.same_list(o[1]:size(), { 1, 270, 9, 13 })
end)

H.case("matches the PyTorch twin in f64: eval, train (both heads), loss, first/last grads", function()
  local m = model()
  MG.module_to(m, "f64")
  MG.fill_model(m)
  m.head.spatial_ocr.conv1x1:get(2).p = 0
  local x = ms.empty(G.input_shape, { dtype = "f64" })
  MG.fill("input", x)
  m:eval()
  local ev = ms.no_grad(function() return m(x) end)
  H.eq(#ev, 1)
  MG.compare("eval", ev[1], G.eval[1], 1e-10, 1e-10, 1e-10)
  m:train()
  local outs = m(x)
  H.eq(#outs, 2)
  MG.compare("train main", outs[1], G.train[1], 1e-10, 1e-10, 1e-10)
  MG.compare("train aux", outs[2], G.train[2], 1e-10, 1e-10, 1e-10)
  local target = MG.label { G.input_shape[1], G.input_shape[3], G.input_shape[4] }
  local loss = F.cross_entropy(outs[1], target) + F.cross_entropy(outs[2], target) * 0.4
  H.near(loss:item(), G.loss, 1e-12)
  loss:backward()
  local sd = m:state_dict()
  MG.compare("grad first", sd["backbone.conv_layer1_1._conv.weight"].grad, G.grad_first, 1e-9, 1e-9, 1e-9)
  MG.compare("grad last", sd["head.cls_head.weight"].grad, G.grad_last, 1e-9, 1e-9, 1e-9)
end)

H.case("with_cp: the same loss and gradients, BN statistics moved once, less memory held for backward", function()
  -- held: what the graph keeps for backward after the forward (H.held_by). The
  -- peak itself does not drop at these sizes: forward temporaries wait for the Lua collector
  -- (measured 31.0 vs 31.0 MB for SegFormer at 128x128) and oneDNN's weight copies dominate.
  local function run(with_cp)
    local m = ms.models.OCRNet { num_classes = 19, backbone_indices = { 0 },
      backbone = ms.models.backbones.HRNet_W18 { with_cp = with_cp } }
    MG.fill_model(m)
    m.head.spatial_ocr.conv1x1:get(2).p = 0
    local x = ms.empty({ 2, 3, 64, 64 })
    MG.fill("input", x)
    local held, loss = H.held_by(function()
      local outs = m(x)
      local target = MG.label { 2, 64, 64 }
      return F.cross_entropy(outs[1], target) + F.cross_entropy(outs[2], target) * 0.4
    end)
    loss:backward()
    local sd = m:state_dict()
    return loss:item(), sd["backbone.conv_layer1_1._conv.weight"].grad,
      sd["backbone.st3.stage_st3_2.branches_func.bb_st3_2_branch_layer_1_1.conv1._batch_norm._mean"]:clone(),
      held
  end
  local l0, g0, r0, p0 = run(false)
  local l1, g1, r1, p1 = run(true)
    H.near(l1, l0, 1e-6)
  H.eq((g1 - g0):abs():max():item() <= 1e-4 * (1 + g0:abs():max():item()), true, "first-layer grads")
  H.eq((r1 - r0):abs():max():item() <= 1e-6, true, "running mean moved once")
  -- storages made by the forward and alive after it: measured 33.3 -> 22.4 MB (OCRNet, 64x64),
  -- 36.5 -> 17.2 MB (SegFormer, 128x128)
  assert(p1 < p0 * 0.8, string.format("held memory with_cp %.1f MB vs %.1f MB", p1 / 2 ^ 20, p0 / 2 ^ 20))
end)

H.done()
