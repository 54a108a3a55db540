-- models/stdcnet.lua: the STDC backbone (STDC1 / STDC2) as PaddleSeg builds it
-- (paddleseg/models/backbones/stdcnet.py), with PaddleSeg's parameter names.
local ms = require "moonseg"
local nn = ms.nn
local L = require "moonseg.models.layers"

local M = {}

-- CatBottleneck(cin, cout, block_num=4, stride=1): conv_list[1] is a 1x1 ConvBNRelu to
-- cout/2; the following 3x3 ConvBNRelus halve the width (the last keeps it) and all outputs
-- are concatenated (cout channels in all). Stride 2: a depthwise 3x3 stride-2 conv + BN
-- (`avd_layer`) after the first conv, and the first output goes through a 3x3 stride-2
-- average pool that excludes padding (`skip`, Paddle's exclusive=True).
M.CatBottleneck = nn.class("CatBottleneck")
function M.CatBottleneck:__init(cin, cout, block_num, stride)
  block_num, stride = block_num or 3, stride or 1
  assert(block_num > 1, "CatBottleneck: block number should be larger than 1")
  self.stride = stride
  self.conv_list = nn.ModuleList()
  if stride == 2 then
    local h = cout / 2
    self.avd_layer = nn.Sequential(
      nn.Conv2d(h, h, 3, { stride = 2, padding = 1, groups = h, bias = false }),
      nn.BatchNorm2d(h))
    self.skip = nn.AvgPool2d(3, 2, 1, { exclusive = true })
  end
  for idx = 0, block_num - 1 do
    local m
    if idx == 0 then
      m = L.ConvBNRelu(cin, cout / 2, 1)
    elseif idx == 1 and block_num == 2 then
      m = L.ConvBNRelu(cout / 2, cout / 2)
    elseif idx == 1 then
      m = L.ConvBNRelu(cout / 2, cout / 4)
    elseif idx < block_num - 1 then
      m = L.ConvBNRelu(cout / 2 ^ idx, cout / 2 ^ (idx + 1))
    else
      m = L.ConvBNRelu(cout / 2 ^ idx, cout / 2 ^ idx)
    end
    self.conv_list:append(m)
  end
end
function M.CatBottleneck:forward(x)
  local convs = self.conv_list:children()
  local out1 = convs[1](x)
  local outs, out = {}, nil
  for i = 2, #convs do
    if i == 2 then
      out = convs[i](self.stride == 2 and self.avd_layer(out1) or out1)
    else
      out = convs[i](out)
    end
    outs[#outs + 1] = out
  end
  if self.stride == 2 then out1 = self.skip(out1) end
  table.insert(outs, 1, out1)
  return ms.cat(outs, 2)
end

-- STDCNet{base=64, layers={4,5,3}, block_num=4, use_conv_last=false, pretrained=path}:
-- features.0/1 are stride-2 ConvBNRelus (3 -> base/2 -> base), then the CatBottleneck stages. forward returns
-- the features at strides 2, 4, 8, 16, 32 ({feat2, ..., feat32}).
-- PaddleSeg always builds `conv_last` (1x1 ConvBNRelu to 1024) but uses it only with
-- use_conv_last; PP-LiteSeg never does, so it is built only when asked for here (its weights
-- in PaddleSeg checkpoints are dropped by recipes/tools/convert_pdparams.py).
M.STDCNet = nn.class("STDCNet")
function M.STDCNet:__init(o)
  o = o or {}
  local base, layers, block_num = o.base or 64, o.layers or { 4, 5, 3 }, o.block_num or 4
  self.use_conv_last = o.use_conv_last or false
  self.feat_channels = { base / 2, base, base * 4, base * 8, base * 16 }
  local feats = { L.ConvBNRelu(3, base / 2, 3, 2), L.ConvBNRelu(base / 2, base, 3, 2) }
  -- stage boundaries (inclusive 1-based indices into features) of x2, x4, x8, x16, x32
  self.bounds = { 1, 2 }
  for i, n in ipairs(layers) do
    for j = 1, n do
      local blk
      if i == 1 and j == 1 then
        blk = M.CatBottleneck(base, base * 4, block_num, 2)
      elseif j == 1 then
        blk = M.CatBottleneck(base * 2 ^ i, base * 2 ^ (i + 1), block_num, 2)
      else
        blk = M.CatBottleneck(base * 2 ^ (i + 1), base * 2 ^ (i + 1), block_num, 1)
      end
      feats[#feats + 1] = blk
    end
    self.bounds[#self.bounds + 1] = #feats
  end
  self.features = nn.Sequential(unpack(feats))
  if self.use_conv_last then
    local c = base * 16
    self.conv_last = L.ConvBNRelu(c, math.max(1024, c), 1, 1)
  end
  -- STDCNet.init_weight: convolutions ~ N(0, 0.001^2), batch norms weight 1 and bias 0.
  ms.no_grad(function()
    for _, m in ipairs(self:modules()) do
      if m.__class == nn.Conv2d then m.weight:normal_(0, 0.001) end
    end
  end)
  if o.pretrained then self:load_pretrained(o.pretrained) end
end

-- load_pretrained(path.safetensors): as PaddleSeg's load_pretrained_model, keys this network
-- has are loaded and others (an ImageNet checkpoint's classifier, conv_last) are skipped;
-- a checkpoint that matches none of them, or a mis-shaped key, is an error.
function M.STDCNet:load_pretrained(path)
  local sd = ms.load(path)
  local own, use, n = self:state_dict(), {}, 0
  for k, v in pairs(sd) do
    if own[k] then use[k], n = v, n + 1 end
  end
  if n == 0 then error("STDCNet: no key of " .. path .. " matches the backbone (features.*)", 3) end
  self:load_state_dict(use, false)
end
function M.STDCNet:forward(x)
  local feats, outs, start = self.features:children(), {}, 1
  for _, b in ipairs(self.bounds) do
    for k = start, b do x = feats[k](x) end
    start = b + 1
    outs[#outs + 1] = x
  end
  if self.use_conv_last then outs[5] = self.conv_last(outs[5]) end
  return outs
end

function M.STDC1(o)
  o = o or {}
  o.base, o.layers = 64, { 2, 2, 2 }
  return M.STDCNet(o)
end
function M.STDC2(o)
  o = o or {}
  o.base, o.layers = 64, { 4, 5, 3 }
  return M.STDCNet(o)
end

return M
