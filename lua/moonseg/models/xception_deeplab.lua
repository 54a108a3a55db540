-- models/xception_deeplab.lua: the Xception backbone of DeepLabV3+ as PaddleSeg builds it
-- (paddleseg/models/backbones/xception_deeplab.py): entry, middle and exit flows of separable
-- blocks; PaddleSeg's state-dict keys, slashes included
-- (`xception_65/entry_flow/block1._conv1._conv1.weight`).
--
-- Paddle's choices kept because they change numbers or keys:
-- * every batch norm has epsilon 1e-3 and momentum 0.99 (Paddle's meaning: the running value's
--   weight), not the 1e-5 / 0.9 of the other backbones; no convolution has a bias;
-- * a separable conv is depthwise conv, BN, [ReLU], pointwise conv, BN, [ReLU] (`_conv1`,
--   `_bn1`, `_conv2`, `_bn2`), padded symmetrically by (k // 2) * dilation, also at stride 2
--   (not 'same');
-- * blocks other than the last apply ReLU *before* each separable conv (ReLU on the block's
--   input too; the skip takes the input before that ReLU); the last exit block
--   (activation_fn_in_separable_conv) applies ReLU after each BN instead and has no skip;
-- * every entry-flow block downsamples by 2 in its third separable conv and its 1x1 `_short`
--   whatever output_stride says (PaddleSeg passes its initial stride 2, not the checked one);
--   output_stride only decides whether exit block 1 downsamples (only for 32), so 8 and 16
--   build the same 1/16 network; the middle flow is never dilated and exit block 2 always
--   has dilation 2.
local ms = require "moonseg"
local nn = ms.nn
local F = ms.functional
local cp = require "moonseg.nn.checkpoint"
local pretrained = require "moonseg.models.pretrained"

local M = {}

local function bn(c) return nn.BatchNorm2d(c, { momentum = 0.99, epsilon = 1e-3 }) end

-- ConvBNLayer(cin, cout, k, stride, padding, relu): `_conv` (no bias) and `_bn`.
M.ConvBNLayer = nn.class("ConvBNLayer")
function M.ConvBNLayer:__init(cin, cout, k, stride, padding, relu)
  self._conv = nn.Conv2d(cin, cout, k, { stride = stride, padding = padding, bias = false })
  self._bn = bn(cout)
  self.relu = relu or false
end
function M.ConvBNLayer:forward(x)
  local y = self._bn(self._conv(x))
  return self.relu and F.relu(y) or y
end

-- Separate_Conv(cin, cout, stride, k, dilation, relu): depthwise `_conv1` + `_bn1` (+ReLU),
-- pointwise `_conv2` + `_bn2` (+ReLU).
M.Separate_Conv = nn.class("Separate_Conv")
function M.Separate_Conv:__init(cin, cout, stride, k, dilation, relu)
  self._conv1 = nn.Conv2d(cin, cin, k, { stride = stride, groups = cin, padding = math.floor(k / 2) * dilation,
    dilation = dilation, bias = false })
  self._bn1 = bn(cin)
  self._conv2 = nn.Conv2d(cin, cout, 1, { bias = false })
  self._bn2 = bn(cout)
  self.relu = relu or false
end
function M.Separate_Conv:forward(x)
  local y = self._bn1(self._conv1(x))
  if self.relu then y = F.relu(y) end
  y = self._bn2(self._conv2(y))
  return self.relu and F.relu(y) or y
end

-- Xception_Block(cin, couts[3], strides[3], {dilation=1, skip_conv=true, has_skip=true,
-- activation_fn_in_separable_conv=false, with_cp=false}): three 3x3 separable convs; the
-- output adds the input (skip_conv=false) or `_short`, a strided 1x1 ConvBN (no ReLU), of it.
M.Xception_Block = nn.class("Xception_Block")
function M.Xception_Block:__init(cin, couts, strides, o)
  o = o or {}
  local d = o.dilation or 1
  self.has_skip = o.has_skip ~= false
  self.skip_conv = o.skip_conv ~= false
  self.act_in_sep = o.activation_fn_in_separable_conv or false
  self._conv1 = M.Separate_Conv(cin, couts[1], strides[1], 3, d, self.act_in_sep)
  self._conv2 = M.Separate_Conv(couts[1], couts[2], strides[2], 3, d, self.act_in_sep)
  self._conv3 = M.Separate_Conv(couts[2], couts[3], strides[3], 3, d, self.act_in_sep)
  if self.has_skip and self.skip_conv then
    self._short = M.ConvBNLayer(cin, couts[3], 1, strides[3], 0, false)
  end
  self.with_cp = o.with_cp or false
end
function M.Xception_Block:_forward(x)
  local y
  if self.act_in_sep then
    y = self._conv3(self._conv2(self._conv1(x)))
  else
    y = self._conv3(F.relu(self._conv2(F.relu(self._conv1(F.relu(x))))))
  end
  if not self.has_skip then return y end
  return y + (self.skip_conv and self._short(x) or x)
end
function M.Xception_Block:forward(x)
  if self.with_cp then return cp.run(self, self._forward, self, x) end
  return self:_forward(x)
end

-- entry-flow channels and middle-flow depth per variant (PaddleSeg's gen_bottleneck_params)
local variants = {
  xception_41 = { entry = { 128, 256, 728 }, middle = 8 },
  xception_65 = { entry = { 128, 256, 728 }, middle = 16 },
}

-- XceptionDeeplab{backbone='xception_65', in_channels=3, output_stride=16, pretrained=path,
-- with_cp=false}: forward returns { entry block 1's output (128 channels, 1/4), the exit
-- flow's (2048 channels, 1/16) }, so DeepLabV3P takes backbone_indices = {1, 2} (PaddleSeg's
-- [0, 1]). Blocks are children `<backbone>/entry_flow/block<i>`,
-- `<backbone>/middle_flow/block<i>`, `_exit_flow_1`, `_exit_flow_2`.
M.XceptionDeeplab = nn.class("XceptionDeeplab")
function M.XceptionDeeplab:__init(o)
  o = o or {}
  local name = o.backbone or "xception_65"
  local v = variants[name]
  if not v then error("XceptionDeeplab: backbone must be xception_41 or xception_65, got " .. tostring(name), 3) end
  local os_ = o.output_stride or 16
  if os_ ~= 8 and os_ ~= 16 and os_ ~= 32 then
    error("XceptionDeeplab: output_stride must be 8, 16 or 32, got " .. tostring(os_), 3)
  end
  self.backbone, self.output_stride, self.with_cp = name, os_, o.with_cp or false
  self.feat_channels = { 128, 2048 }
  self._conv1 = M.ConvBNLayer(o.in_channels or 3, 32, 3, 2, 1, true)
  self._conv2 = M.ConvBNLayer(32, 64, 3, 1, 1, true)
  local s, entry, middle = 2, {}, {}
  for i, c in ipairs(v.entry) do
    -- the block itself always has strides {1, 1, 2}; s only tracks what the check allows
    if s * 2 <= os_ then s = s * 2 end
    entry[i] = self:add_module(name .. "/entry_flow/block" .. i,
      M.Xception_Block(i == 1 and 64 or v.entry[i - 1], { c, c, c }, { 1, 1, 2 }, { with_cp = self.with_cp }))
  end
  for i = 1, v.middle do
    middle[i] = self:add_module(name .. "/middle_flow/block" .. i,
      M.Xception_Block(728, { 728, 728, 728 }, { 1, 1, 1 }, { skip_conv = false, with_cp = self.with_cp }))
  end
  local stride = s * 2 <= os_ and 2 or 1
  self._exit_flow_1 = M.Xception_Block(728, { 728, 1024, 1024 }, { 1, 1, stride }, { with_cp = self.with_cp })
  self._exit_flow_2 = M.Xception_Block(1024, { 1536, 1536, 2048 }, { 1, 1, 1 }, { dilation = 2, has_skip = false,
    activation_fn_in_separable_conv = true, with_cp = self.with_cp })
  rawset(self, "entry_flow", entry) -- plain lists: the blocks are registered by name above
  rawset(self, "middle_flow", middle)
  if o.pretrained then pretrained.load_matching(self, o.pretrained, "XceptionDeeplab") end
end
function M.XceptionDeeplab:forward(x)
  x = self._conv2(self._conv1(x))
  local low
  for i, blk in ipairs(self.entry_flow) do
    x = blk(x)
    if i == 1 then low = x end
  end
  for _, blk in ipairs(self.middle_flow) do x = blk(x) end
  return { low, self._exit_flow_2(self._exit_flow_1(x)) }
end
function M.XceptionDeeplab:extra_repr()
  return string.format("backbone=%s, output_stride=%d", self.backbone, self.output_stride)
end

local function variant(name)
  return function(o)
    local c = {}
    for k, val in pairs(o or {}) do c[k] = val end
    c.backbone = name
    return M.XceptionDeeplab(c)
  end
end
M.Xception41_deeplab = variant("xception_41")
M.Xception65_deeplab = variant("xception_65")

return M
