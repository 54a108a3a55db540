-- test_xception.lua: DeepLabV3P + Xception65_deeplab (OS16, ASPP 1,6,12,18): PaddleSeg's key and
-- parameter counts (and the PyTorch twin's, tests/golden/xception_deeplab.lua), key names and
-- shapes, the backbone's Paddle quirks (strides, dilation, padding, BN epsilon/momentum), bad
-- arguments. The numerical comparison with the twin is test_xception_golden.lua (heavy).
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

H.case("PaddleSeg's counts at 19 classes and key names; built by name from the registry", function()
  local m = build { output_stride = 16 }
  H.eq(m:num_parameters(), 41057299, "params (PaddleSeg's)")
  H.eq(#m:state_dict_keys(), 745, "keys (PaddleSeg's)")
  H.eq(m:num_parameters(), G.params, "params (twin)")
  H.eq(#m:state_dict_keys(), G.keys, "keys (twin)")
  local sd = m:state_dict()
  local expect = {
    ["backbone._conv1._conv.weight"] = { 32, 3, 3, 3 },
    ["backbone._conv2._bn._variance"] = { 64 },
    ["backbone.xception_65/entry_flow/block1._conv1._conv1.weight"] = { 64, 1, 3, 3 },
    ["backbone.xception_65/entry_flow/block1._conv1._conv2.weight"] = { 128, 64, 1, 1 },
    ["backbone.xception_65/entry_flow/block1._short._conv.weight"] = { 128, 64, 1, 1 },
    ["backbone.xception_65/entry_flow/block3._short._bn._mean"] = { 728 },
    ["backbone.xception_65/middle_flow/block16._conv3._bn2._variance"] = { 728 },
    ["backbone._exit_flow_1._short._conv.weight"] = { 1024, 728, 1, 1 },
    ["backbone._exit_flow_1._conv2._conv2.weight"] = { 1024, 728, 1, 1 },
    ["backbone._exit_flow_2._conv1._conv1.weight"] = { 1024, 1, 3, 3 },
    ["backbone._exit_flow_2._conv3._conv2.weight"] = { 2048, 1536, 1, 1 },
    ["head.aspp.aspp_blocks.0._conv.weight"] = { 256, 2048, 1, 1 },
    ["head.decoder.conv_bn_relu1._conv.weight"] = { 48, 128, 1, 1 },
    ["head.decoder.conv.weight"] = { 19, 256, 1, 1 },
  }
  for k, shape in pairs(expect) do
    H.eq(sd[k] ~= nil, true, "key " .. k)
    H.same_list(sd[k]:size(), shape, k)
  end
  for _, k in ipairs { "backbone._conv1._conv.bias", "backbone.xception_65/middle_flow/block1._short._conv.weight",
    "backbone._exit_flow_2._short._conv.weight", "backbone.xception_65/middle_flow/block17._conv1._conv1.weight",
    "backbone._exit_flow_1._conv1._conv1.bias" } do
    H.eq(sd[k], nil, "no key " .. k)
  end
  -- the spec the recipes and checkpoints use builds the same network
  local b = M.build { name = "DeepLabV3P", args = { num_classes = 19, backbone_indices = { 1, 2 },
    backbone = { name = "Xception65_deeplab", args = { output_stride = 16 } } } }
  H.eq(b:num_parameters(), 41057299)
  H.eq(#b:state_dict_keys(), 745)
end)

H.case("backbone alone: features, strides, dilations, padding, BN settings; bad arguments", function()
  local bb = M.backbones.Xception65_deeplab {}
  H.same_list(bb.feat_channels, { 128, 2048 })
  local e3 = bb["xception_65/entry_flow/block3"]
  H.eq(e3._conv3._conv1.stride, 2)
  H.eq(e3._short._conv.stride, 2)
  H.eq(e3._short._conv.padding, 0)
  H.eq(bb._exit_flow_1._conv3._conv1.stride, 1)
  H.eq(bb._exit_flow_2._conv2._conv1.dilation, 2)
  H.eq(bb._exit_flow_2._conv2._conv1.padding, 2)
  H.eq(bb["xception_65/middle_flow/block7"]._conv2._conv1.dilation, 1)
  H.eq(bb._conv1._bn.epsilon, 1e-3)
  H.eq(bb._exit_flow_2._conv3._bn2.momentum, 0.99)
  bb:eval()
  local f = ms.no_grad(function() return bb(ms.randn(1, 3, 66, 50)) end)
  H.same_list(f[1]:size(), { 1, 128, 17, 13 })
  H.same_list(f[2]:size(), { 1, 2048, 5, 4 })
  -- PaddleSeg's quirk: the entry flow always downsamples 3 times, so OS8 builds the OS16 net
  -- (checked on Xception41, the same flows with 8 middle blocks, to build faster)
  local b8 = M.backbones.Xception41_deeplab { output_stride = 8 }
  H.eq(b8["xception_41/entry_flow/block3"]._conv3._conv1.stride, 2)
  H.eq(b8._exit_flow_1._conv3._conv1.stride, 1)
  H.eq(b8["xception_41/middle_flow/block8"] ~= nil, true)
  H.eq(b8["xception_41/middle_flow/block9"], nil)
  local b32 = M.backbones.Xception41_deeplab { output_stride = 32 }
  H.eq(b32._exit_flow_1._conv3._conv1.stride, 2)
  H.eq(b32._exit_flow_1._short._conv.stride, 2)
  H.raises(function() M.backbones.Xception65_deeplab { output_stride = 4 } end, "output_stride")
  H.raises(function() M.XceptionDeeplab { backbone = "xception_99" } end, "xception_65")
  H.raises(function() M.DeepLabV3P { num_classes = 19, backbone = bb } end, "no feature 4")
end)

H.case("a PaddleSeg config (type: Xception65_deeplab, backbone_indices: [0, 1]) builds the model", function()
  local config = require "moonseg.config"
  local Fx = require "config_fixture"
  local tmp = os.tmpname()
  os.remove(tmp)
  local data = Fx.optic_disc(tmp .. "/optic", { train = 2, val = 1, size = 32 })
  local text = Fx.quick_start(data, 32):gsub("loss:\n.*$", "") .. [[
loss:
  types:
    - type: CrossEntropyLoss
  coef: [1]
model:
  type: DeepLabV3P
  backbone:
    type: Xception65_deeplab
    output_stride: 16
  backbone_indices: [0, 1]
  aspp_ratios: [1, 6, 12, 18]
  aspp_out_channels: 256
  align_corners: False
]]
  local p = config.build(config.load(Fx.write(tmp .. "/x.yml", text)), { iters = 2 }, { warn = function() end })
  os.execute("rm -rf '" .. tmp .. "'")
  H.same_list(p.model.backbone_indices, { 1, 2 })
  H.eq(p.model.backbone.backbone, "xception_65")
  -- 41,057,299 at 19 classes less the classifier's 17 x 257 (2 classes here)
  H.eq(p.model:num_parameters(), 41057299 - 17 * 257)
end)

H.done()
