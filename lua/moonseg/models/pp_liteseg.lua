-- models/pp_liteseg.lua: PP-LiteSeg (Peng et al. 2022) as PaddleSeg builds it
-- (paddleseg/models/pp_liteseg.py, layers/tensor_fusion.py), with PaddleSeg's state-dict keys.
local ms = require "moonseg"
local nn = ms.nn
local F = ms.functional
local L = require "moonseg.models.layers"
local stdcnet = require "moonseg.models.stdcnet"

local M = {}

local function upsample(x, h, w)
  return F.interpolate(x, { size = { h, w } }, "bilinear", false)
end

-- UAFM_SpAtten(x_ch, y_ch, out_ch, ksize=3): the unified attention fusion module with spatial
-- attention. x (low level) goes through conv_x to y_ch channels, y (high level) is upsampled
-- bilinearly to x's size; the attention is sigmoid(conv_xy_atten(cat(mean_c x, max_c x,
-- mean_c y, max_c y))) and the output conv_out(x * a + y * (_scale - a)). `_scale` is
-- PaddleSeg's non-trainable constant 1 (a parameter with stop_gradient there; a buffer here).
M.UAFM_SpAtten = nn.class("UAFM_SpAtten")
function M.UAFM_SpAtten:__init(x_ch, y_ch, out_ch, ksize)
  ksize = ksize or 3
  self.conv_x = L.ConvBNReLU(x_ch, y_ch, ksize, { padding = math.floor(ksize / 2), bias = false })
  self.conv_out = L.ConvBNReLU(y_ch, out_ch, 3, { padding = 1, bias = false })
  self.conv_xy_atten = nn.Sequential(
    L.ConvBNReLU(4, 2, 3, { padding = 1, bias = false }),
    L.ConvBN(2, 1, 3, { padding = 1, bias = false }))
  self:register_buffer("_scale", ms.ones(1))
end
function M.UAFM_SpAtten:forward(x, y)
  x = self.conv_x(x)
  y = upsample(y, x:size(3), x:size(4))
  local atten = ms.cat({ x:mean(2, true), (x:max(2, true)), y:mean(2, true), (y:max(2, true)) }, 2)
  atten = F.sigmoid(self.conv_xy_atten(atten))
  local out = x * atten + y * (self._scale - atten)
  return self.conv_out(out)
end

-- PPContextModule(cin, inter, cout, bin_sizes): the simple pyramid pooling module (SPPM):
-- per bin, adaptive average pool + 1x1 ConvBNReLU (with bias, Paddle's default), upsampled
-- back and summed; then a 3x3 ConvBNReLU (with bias).
M.PPContextModule = nn.class("PPContextModule")
function M.PPContextModule:__init(cin, inter, cout, bin_sizes)
  self.bin_sizes = bin_sizes
  self.stages = nn.ModuleList()
  for _, s in ipairs(bin_sizes) do
    self.stages:append(nn.Sequential(nn.AdaptiveAvgPool2d(s), L.ConvBNReLU(cin, inter, 1)))
  end
  self.conv_out = L.ConvBNReLU(inter, cout, 3, { padding = 1 })
end
function M.PPContextModule:forward(input)
  local h, w = input:size(3), input:size(4)
  local out
  for _, stage in ipairs(self.stages:children()) do
    local x = upsample(stage(input), h, w)
    out = out and out + x or x
  end
  return self.conv_out(out)
end

-- SegHead(in, mid, n_classes): 3x3 ConvBNReLU (no bias) then a 1x1 conv (no bias).
M.SegHead = nn.class("SegHead")
function M.SegHead:__init(cin, mid, ncls)
  self.conv = L.ConvBNReLU(cin, mid, 3, { padding = 1, bias = false })
  self.conv_out = nn.Conv2d(mid, ncls, 1, { bias = false })
end
function M.SegHead:forward(x) return self.conv_out(self.conv(x)) end

-- PPLiteSegHead: the SPPM on the deepest feature, then UAFMs from deep to shallow.
M.PPLiteSegHead = nn.class("PPLiteSegHead")
function M.PPLiteSegHead:__init(backbone_out_chs, arm_out_chs, cm_bin_sizes, cm_out_ch, ksize)
  local n = #backbone_out_chs
  self.cm = M.PPContextModule(backbone_out_chs[n], cm_out_ch, cm_out_ch, cm_bin_sizes)
  self.arm_list = nn.ModuleList()
  for i = 1, n do
    local high_ch = i == n and cm_out_ch or arm_out_chs[i + 1]
    self.arm_list:append(M.UAFM_SpAtten(backbone_out_chs[i], high_ch, arm_out_chs[i], ksize))
  end
end
function M.PPLiteSegHead:forward(feats)
  local high = self.cm(feats[#feats])
  local arms, outs = self.arm_list:children(), {}
  for i = #feats, 1, -1 do
    high = arms[i](feats[i], high)
    outs[i] = high
  end
  return outs
end

-- Widths per backbone: STDC1 takes PP-LiteSeg-T's head, STDC2 PaddleSeg's defaults (B).
local head_widths = {
  STDC1 = { arm_out_chs = { 32, 64, 128 }, seg_head_inter_chs = { 32, 64, 64 } },
  STDC2 = { arm_out_chs = { 64, 96, 128 }, seg_head_inter_chs = { 64, 64, 64 } },
}

local function copy_list(t)
  local r = {}
  for i, v in ipairs(t) do r[i] = v end
  return r
end

-- PPLiteSeg{num_classes=, backbone="STDC1"|"STDC2"|module, backbone_indices={3, 4, 5},
--           cm_bin_sizes={1, 2, 4}, cm_out_ch=128, arm_out_chs=, seg_head_inter_chs=,
--           arm_type="UAFM_SpAtten", resize_mode="bilinear", pretrained=path.safetensors,
--           backbone_pretrained=path.safetensors (an STDC checkpoint, keys features.*)}
-- backbone_indices are 1-based (PaddleSeg's [2, 3, 4]). A backbone module must return its
-- features as a list and carry feat_channels. In training mode forward returns the three
-- logits at input size, in eval mode { main logits }.
M.PPLiteSeg = nn.class("PPLiteSeg")
function M.PPLiteSeg:__init(o)
  o = o or {}
  if type(o.num_classes) ~= "number" or o.num_classes < 1 then
    error("PPLiteSeg: num_classes must be a positive integer, got " .. tostring(o.num_classes), 3)
  end
  if (o.arm_type or "UAFM_SpAtten") ~= "UAFM_SpAtten" then
    error("PPLiteSeg: only arm_type 'UAFM_SpAtten' is implemented, got '" .. tostring(o.arm_type) .. "'", 3)
  end
  if (o.resize_mode or "bilinear") ~= "bilinear" then
    error("PPLiteSeg: only resize_mode 'bilinear' is implemented, got '" .. tostring(o.resize_mode) .. "'", 3)
  end
  local bb = o.backbone or "STDC1"
  local widths = head_widths[type(bb) == "string" and bb or "STDC2"]
  if type(bb) == "string" then
    if not stdcnet[bb] then error("PPLiteSeg: unknown backbone '" .. bb .. "' (STDC1 or STDC2)", 3) end
    bb = stdcnet[bb] { pretrained = o.backbone_pretrained }
  end
  self.backbone = bb
  self.backbone_indices = copy_list(o.backbone_indices or { 3, 4, 5 })
  local arm_out_chs = copy_list(o.arm_out_chs or widths.arm_out_chs)
  local inter_chs = copy_list(o.seg_head_inter_chs or widths.seg_head_inter_chs)
  local n = #self.backbone_indices
  if #arm_out_chs == 1 then for i = 2, n do arm_out_chs[i] = arm_out_chs[1] end end
  if #inter_chs == 1 then for i = 2, n do inter_chs[i] = inter_chs[1] end end
  if n < 2 or #arm_out_chs ~= n or #inter_chs ~= n then
    error(string.format("PPLiteSeg: backbone_indices (%d), arm_out_chs (%d) and seg_head_inter_chs (%d) " ..
      "must have the same length >= 2", n, #arm_out_chs, #inter_chs), 3)
  end
  local out_chs = {}
  for i, idx in ipairs(self.backbone_indices) do
    out_chs[i] = bb.feat_channels[idx]
    if not out_chs[i] then error("PPLiteSeg: backbone has no feature " .. idx, 3) end
  end
  self.num_classes = o.num_classes
  self.ppseg_head = M.PPLiteSegHead(out_chs, arm_out_chs, o.cm_bin_sizes or { 1, 2, 4 },
    o.cm_out_ch or 128, 3)
  self.seg_heads = nn.ModuleList()
  for i = 1, n do self.seg_heads:append(M.SegHead(arm_out_chs[i], inter_chs[i], o.num_classes)) end
  if o.pretrained then
    local sd = ms.load(o.pretrained)
    self:load_state_dict(sd)
  end
end

function M.PPLiteSeg:forward(x)
  local h, w = x:size(3), x:size(4)
  local feats = self.backbone(x)
  local sel = {}
  for i, idx in ipairs(self.backbone_indices) do sel[i] = feats[idx] end
  local heads = self.ppseg_head(sel)
  local seg = self.seg_heads:children()
  if self.training then
    local logits = {}
    for i = 1, #heads do logits[i] = upsample(seg[i](heads[i]), h, w) end
    return logits
  end
  return { upsample(seg[1](heads[1]), h, w) }
end

function M.PPLiteSeg:extra_repr() return "num_classes=" .. self.num_classes end

return M
