-- models/cnn_layers.lua: PaddleSeg's layers that DeepLabV3+, PSPNet and Xception use
-- (layers.SeparableConvBNReLU, AuxLayer, ASPPModule, PPModule), PaddleSeg's child names.
local ms = require "moonseg"
local nn = ms.nn
local F = ms.functional
local L = require "moonseg.models.layers"

local M = {}

local function resize(x, h, w, align_corners)
  return F.interpolate(x, { size = { h, w } }, "bilinear", align_corners or false)
end
M.resize = resize

-- SeparableConvBNReLU(cin, cout, k, {padding='same', dilation=1, pointwise_bias=true}):
-- `depthwise_conv` (ConvBN, groups = cin, conv with bias as Paddle's default) then
-- `piontwise_conv` (sic, PaddleSeg's spelling: a 1x1 ConvBNReLU).
M.SeparableConvBNReLU = nn.class("SeparableConvBNReLU")
function M.SeparableConvBNReLU:__init(cin, cout, k, o)
  o = o or {}
  self.depthwise_conv = L.ConvBN(cin, cin, k, { padding = o.padding, dilation = o.dilation,
    stride = o.stride, groups = cin })
  self.piontwise_conv = L.ConvBNReLU(cin, cout, 1, { bias = o.pointwise_bias })
end
function M.SeparableConvBNReLU:forward(x) return self.piontwise_conv(self.depthwise_conv(x)) end

-- AuxLayer(cin, inter, cout, dropout_prob=0.1): 3x3 ConvBNReLU, dropout, 1x1 conv (with bias).
M.AuxLayer = nn.class("AuxLayer")
function M.AuxLayer:__init(cin, inter, cout, dropout_prob)
  self.conv_bn_relu = L.ConvBNReLU(cin, inter, 3, { padding = 1 })
  self.dropout = nn.Dropout(dropout_prob or 0.1)
  self.conv = nn.Conv2d(inter, cout, 1)
end
function M.AuxLayer:forward(x) return self.conv(self.dropout(self.conv_bn_relu(x))) end

-- ASPPModule(ratios, cin, cout, align_corners, use_sep_conv, image_pooling): one branch per
-- ratio (1x1 ConvBNReLU for ratio 1, else a 3x3 dilated one, separable when use_sep_conv),
-- an image-pooling branch (global average + 1x1 ConvBNReLU without bias, upsampled), then
-- concat, a 1x1 ConvBNReLU and dropout 0.1.
M.ASPPModule = nn.class("ASPPModule")
function M.ASPPModule:__init(ratios, cin, cout, align_corners, use_sep_conv, image_pooling)
  self.align_corners, self.image_pooling = align_corners or false, image_pooling or false
  self.aspp_blocks = nn.ModuleList()
  for _, r in ipairs(ratios) do
    local k, o = r == 1 and 1 or 3, { dilation = r, padding = r == 1 and 0 or r }
    if use_sep_conv and r > 1 then
      self.aspp_blocks:append(M.SeparableConvBNReLU(cin, cout, k, o))
    else
      self.aspp_blocks:append(L.ConvBNReLU(cin, cout, k, o))
    end
  end
  local n = #ratios
  if self.image_pooling then
    self.global_avg_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), L.ConvBNReLU(cin, cout, 1, { bias = false }))
    n = n + 1
  end
  self.conv_bn_relu = L.ConvBNReLU(cout * n, cout, 1)
  self.dropout = nn.Dropout(0.1)
end
function M.ASPPModule:forward(x)
  local h, w = x:size(3), x:size(4)
  local outs = {}
  for _, b in ipairs(self.aspp_blocks:children()) do outs[#outs + 1] = b(x) end
  if self.image_pooling then
    outs[#outs + 1] = resize(self.global_avg_pool(x), h, w, self.align_corners)
  end
  return self.dropout(self.conv_bn_relu(ms.cat(outs, 2)))
end

-- PPModule(cin, cout, bin_sizes, dim_reduction, align_corners): PSPNet's pyramid pooling;
-- stage i = adaptive average pool to bin_sizes[i] + 1x1 ConvBNReLU to cin/#bins (with
-- reduction); the input and the upsampled stages in reverse order are concatenated, then a
-- 3x3 ConvBNReLU.
M.PPModule = nn.class("PPModule")
function M.PPModule:__init(cin, cout, bin_sizes, dim_reduction, align_corners)
  local inter = dim_reduction and math.floor(cin / #bin_sizes) or cin
  self.align_corners = align_corners or false
  self.stages = nn.ModuleList()
  for _, s in ipairs(bin_sizes) do
    self.stages:append(nn.Sequential(nn.AdaptiveAvgPool2d(s), L.ConvBNReLU(cin, inter, 1)))
  end
  self.conv_bn_relu2 = L.ConvBNReLU(cin + inter * #bin_sizes, cout, 3, { padding = 1 })
end
function M.PPModule:forward(x)
  local h, w = x:size(3), x:size(4)
  local st = self.stages:children()
  local cat = { x }
  for i = #st, 1, -1 do cat[#cat + 1] = resize(st[i](x), h, w, self.align_corners) end
  return self.conv_bn_relu2(ms.cat(cat, 2))
end

-- A copy of the list t (options tables are the caller's; the model keeps its own).
function M.copy_list(t)
  local r = {}
  for i, v in ipairs(t) do r[i] = v end
  return r
end

-- The option checks DeepLabV3P and PSPNet share: num_classes a positive integer, backbone a
-- backbone module, two 1-based backbone_indices (default_indices when absent) naming features
-- it has. Returns the backbone, a copy of the indices and their channel counts. Errors name the
-- model and point at the user's constructor call (level 4: here, __init, the class call).
function M.check_model_args(name, o, default_indices)
  if type(o.num_classes) ~= "number" or o.num_classes < 1 then
    error(name .. ": num_classes must be a positive integer, got " .. tostring(o.num_classes), 4)
  end
  local bb = o.backbone
  if type(bb) ~= "table" or not bb.is_module or not bb.feat_channels then
    error(name .. ": backbone must be a backbone module (e.g. ms.models.backbones.ResNet50_vd{})", 4)
  end
  local indices = M.copy_list(o.backbone_indices or default_indices)
  if #indices ~= 2 then error(name .. ": backbone_indices needs two values", 4) end
  local chs = {}
  for i, idx in ipairs(indices) do
    chs[i] = bb.feat_channels[idx]
    if not chs[i] then error(name .. ": backbone has no feature " .. tostring(idx) .. " (1-based)", 4) end
  end
  return bb, indices, chs
end

return M
