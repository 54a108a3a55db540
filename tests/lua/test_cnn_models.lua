-- test_cnn_models.lua: DeepLabV3P + ResNet50_vd (OS8, multi-grid 1,2,4, ASPP 1,12,24,36),
-- PSPNet + ResNet50_vd (OS8, aux head) and UNet against PaddleSeg's key and parameter counts
-- and an independent PyTorch twin (tests/golden/cnn_torch.py, golden committed as
-- tests/golden/cnn_models.lua): f64 eval logits, train-mode logits, loss, first/last layer
-- gradients and the updated running mean, on weights from the shared fill formula.
local H = require "harness"
local ms = require "moonseg"
local MG = require "model_golden"

ms.set_num_threads(2)
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local G = dofile(here .. "/../golden/cnn_models.lua")
local M = ms.models

local builders = {
  deeplabv3p = function()
    return M.DeepLabV3P { num_classes = 19, aspp_ratios = { 1, 12, 24, 36 }, aspp_out_channels = 256,
      backbone = M.backbones.ResNet50_vd { output_stride = 8, multi_grid = { 1, 2, 4 } } }
  end,
  pspnet = function()
    return M.PSPNet { num_classes = 19, backbone = M.backbones.ResNet50_vd { output_stride = 8 } }
  end,
  unet = function() return M.UNet { num_classes = 19 } end,
}

local function index_of(list)
  local r = {}
  for i, v in ipairs(list) do r[v] = i end
  return r
end

H.case("PaddleSeg's counts at 19 classes: params / state-dict keys", function()
  -- The issue's figures (PaddleSeg's own), which the PyTorch twin reproduces too.
  local want = { deeplabv3p = { 26723395, 360 }, pspnet = { 67863942, 315 }, unet = { 13406227, 112 } }
  for name, b in pairs(builders) do
    local m = b()
    H.eq(m:num_parameters(), want[name][1], name .. " params")
    H.eq(#m:state_dict_keys(), want[name][2], name .. " keys")
    H.eq(m:num_parameters(), G[name].params, name .. " params (twin)")
    H.eq(#m:state_dict_keys(), G[name].keys, name .. " keys (twin)")
  end
end)

H.case("key names and shapes (PaddleSeg's spellings, bias only where Paddle has one)", function()
  local sd = builders.deeplabv3p():state_dict()
  local expect = {
    ["backbone.conv1_1._conv.weight"] = { 32, 3, 3, 3 },
    ["backbone.conv1_3._batch_norm._variance"] = { 64 },
    ["backbone.bb_0_0.short._conv.weight"] = { 256, 64, 1, 1 },
    ["backbone.bb_1_0.short._conv.weight"] = { 512, 256, 1, 1 },
    ["backbone.bb_3_2.conv1._conv.weight"] = { 512, 512, 3, 3 },
    ["backbone.bb_3_2.conv2._batch_norm._mean"] = { 2048 },
    ["head.aspp.aspp_blocks.0._conv.weight"] = { 256, 2048, 1, 1 },
    ["head.aspp.aspp_blocks.0._conv.bias"] = { 256 },
    ["head.aspp.aspp_blocks.1.depthwise_conv._conv.weight"] = { 2048, 1, 3, 3 },
    ["head.aspp.aspp_blocks.3.piontwise_conv._batch_norm._variance"] = { 256 },
    ["head.aspp.global_avg_pool.1._conv.weight"] = { 256, 2048, 1, 1 },
    ["head.aspp.conv_bn_relu._conv.weight"] = { 256, 1280, 1, 1 },
    ["head.decoder.conv_bn_relu1._conv.weight"] = { 48, 256, 1, 1 },
    ["head.decoder.conv_bn_relu2.depthwise_conv._conv.weight"] = { 304, 1, 3, 3 },
    ["head.decoder.conv.weight"] = { 19, 256, 1, 1 },
    ["head.decoder.conv.bias"] = { 19 },
  }
  for k, shape in pairs(expect) do
    H.eq(sd[k] ~= nil, true, "key " .. k)
    H.same_list(sd[k]:size(), shape, k)
  end
  for _, k in ipairs { "backbone.conv1_1._conv.bias", "backbone.bb_0_1.short._conv.weight",
    "head.aspp.global_avg_pool.1._conv.bias" } do
    H.eq(sd[k], nil, "no key " .. k)
  end
  local psp = builders.pspnet():state_dict()
  H.same_list(psp["head.psp_module.stages.3.1._conv.weight"]:size(), { 512, 2048, 1, 1 })
  H.same_list(psp["head.psp_module.conv_bn_relu2._conv.weight"]:size(), { 1024, 4096, 3, 3 })
  H.same_list(psp["head.auxlayer.conv_bn_relu._conv.weight"]:size(), { 256, 1024, 3, 3 })
  H.same_list(psp["head.auxlayer.conv.weight"]:size(), { 19, 256, 1, 1 })
  local unet = builders.unet()
  local usd = unet:state_dict()
  H.eq(usd["conv.weight"], usd["cls.weight"], "UNet's conv is an alias of cls")
  H.same_list(usd["decode.up_sample_list.0.double_conv.0._conv.weight"]:size(), { 256, 1024, 3, 3 })
  H.same_list(usd["encode.down_sample_list.3.2._batch_norm._mean"]:size(), { 512 })
  -- the alias loads strictly and counts once
  local sd2 = {}
  for k, v in pairs(usd) do sd2[k] = v:clone() end
  unet:load_state_dict(sd2)
  H.eq(index_of(unet:parameters())[usd["conv.weight"]] ~= nil, true)
end)

H.case("backbones alone: ResNet50_vd features, strides and dilations; bad arguments", function()
  local bb = M.backbones.ResNet50_vd { output_stride = 8, multi_grid = { 1, 2, 4 } }
  H.same_list(bb.feat_channels, { 256, 512, 1024, 2048 })
  H.eq(bb.bb_3_0.conv1._conv.dilation, 4)
  H.eq(bb.bb_3_1.conv1._conv.dilation, 8)
  H.eq(bb.bb_3_2.conv1._conv.dilation, 16)
  H.eq(bb.bb_2_0.conv1._conv.stride, 1)
  bb:eval()
  local f = ms.no_grad(function() return bb(ms.randn(1, 3, 66, 50)) end)
  H.same_list(f[1]:size(), { 1, 256, 17, 13 })
  H.same_list(f[2]:size(), { 1, 512, 9, 7 })
  H.same_list(f[4]:size(), { 1, 2048, 9, 7 })
  local b16 = M.backbones.ResNet50_vd { output_stride = 16 }
  b16:eval()
  local g = ms.no_grad(function() return b16(ms.randn(1, 3, 64, 64)) end)
  H.same_list(g[3]:size(), { 1, 1024, 4, 4 })
  H.same_list(g[4]:size(), { 1, 2048, 4, 4 })
  H.raises(function() M.backbones.ResNet50_vd { output_stride = 4 } end, "output_stride")
  H.raises(function() M.backbones.ResNet50_vd { multi_grid = { 1, 2 } } end, "multi_grid")
  H.raises(function() M.DeepLabV3P { num_classes = 19, backbone = "ResNet50_vd" } end, "backbone must be")
  H.raises(function() M.PSPNet { num_classes = 0, backbone = bb } end, "num_classes")
  H.raises(function() M.DeepLabV3P { num_classes = 2, backbone = bb, backbone_indices = { 1, 5 } } end, "no feature 5")
  H.raises(function() M.UNet { num_classes = 2, use_deconv = true } end, "use_deconv")
end)

-- Relative closeness of sums and samples to the twin's (both f64).
local function match(t, g, tol, what)
  H.same_list(t:size(), g.shape, what .. " shape")
  local v = H.values(t)
  local s, sq, scale = 0, 0, 0
  for i = 1, #v do s, sq = s + v[i], sq + v[i] * v[i] end
  scale = math.sqrt(g.sumsq / #v)
  H.near(s / #v, g.sum / #v, tol * scale, what .. " mean")
  H.near(sq, g.sumsq, tol * g.sumsq, what .. " sumsq")
  for k, want in ipairs(g.samples) do
    H.near(v[(((k - 1) * 1151 + 17) % #v) + 1], want, tol * scale, what .. " sample " .. k)
  end
end

local function twin_case(name, first_key)
  H.case(name .. ": f64 eval logits, train logits, loss, gradients, running mean = PyTorch twin", function()
    local g = G[name]
    ms.manual_seed(0)
    local m = builders[name]()
    MG.module_to(m, "f64")
    MG.fill_model(m)
    local x = ms.empty(g.input_shape, { dtype = "f64" })
    MG.fill("input", x)
    m:eval()
    local outs = ms.no_grad(function() return m(x) end)
    H.eq(#outs, #g.eval)
    for i, o in ipairs(outs) do match(o, g.eval[i], 1e-9, name .. " eval " .. i) end
    m:train()
    for _, mod in ipairs(m:modules()) do
      if mod.__class == ms.nn.Dropout then rawset(mod, "training", false) end
    end
    local label = MG.label_every11({ g.input_shape[1], g.input_shape[3], g.input_shape[4] }, 19)
    local ce = ms.losses.CrossEntropyLoss { ignore_index = 255 }
    outs = m(x)
    H.eq(#outs, #g.train)
    local loss
    for i, o in ipairs(outs) do
      match(o, g.train[i], 1e-9, name .. " train " .. i)
      local l = ce(o, label) * g.coefs[i]
      loss = loss and loss + l or l
    end
    H.near(loss:item(), g.loss, 1e-10 * g.loss)
    loss:backward()
    local sd = m:state_dict()
    for k, gg in pairs(g.grads) do match(sd[k].grad, gg, 1e-8, name .. " grad " .. k) end
    H.eq(g.grads[first_key] ~= nil, true)
    match(sd[g.bn_mean.key], g.bn_mean.value, 1e-10, name .. " running mean")
  end)
end
twin_case("deeplabv3p", "backbone.conv1_1._conv.weight")
twin_case("pspnet", "backbone.conv1_1._conv.weight")
twin_case("unet", "encode.double_conv.0._conv.weight")

H.done()
