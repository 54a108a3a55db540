-- models/resnet_vd.lua: ResNet-vd backbones (ResNet50_vd, ResNet101_vd) as PaddleSeg builds
-- them (paddleseg/models/backbones/resnet_vd.py): deep stem, average-pool shortcuts, dilated
-- last stages for output stride 8/16, multi-grid; PaddleSeg's state-dict keys.
local ms = require "moonseg"
local nn = ms.nn
local F = ms.functional
local cp = require "moonseg.nn.checkpoint"
local pretrained = require "moonseg.models.pretrained"

local M = {}

-- ConvBNLayer(cin, cout, k, {stride, dilation, groups, is_vd_mode, act}): `_conv` (no bias,
-- padding (k-1)/2, or the dilation when dilated) and `_batch_norm`; in vd mode a 2x2/2
-- average pool first (ceil mode, padding excluded as Paddle's default exclusive=True).
M.ConvBNLayer = nn.class("ConvBNLayer")
function M.ConvBNLayer:__init(cin, cout, k, o)
  o = o or {}
  local dilation = o.dilation or 1
  if dilation ~= 1 and k ~= 3 then
    error("ConvBNLayer: when the dilation isn't 1, the kernel_size should be 3", 3)
  end
  self.is_vd_mode, self.act = o.is_vd_mode or false, o.act
  if self.is_vd_mode then self._pool2d_avg = nn.AvgPool2d(2, 2, 0, { ceil_mode = true, exclusive = true }) end
  self._conv = nn.Conv2d(cin, cout, k, { stride = o.stride or 1,
    padding = dilation == 1 and math.floor((k - 1) / 2) or dilation, dilation = dilation,
    groups = o.groups or 1, bias = false })
  self._batch_norm = nn.BatchNorm2d(cout)
end
function M.ConvBNLayer:forward(x)
  if self.is_vd_mode then x = self._pool2d_avg(x) end
  local y = self._batch_norm(self._conv(x))
  if self.act == "relu" then y = F.relu(y) end
  return y
end

-- BottleneckBlock(cin, cout, stride, shortcut, if_first, dilation, with_cp): 1x1 -> 3x3
-- (strided, dilated) -> 1x1 to 4*cout, plus the identity or `short` (vd-mode 1x1 when the
-- block downsamples and is not the first block of the network).
M.BottleneckBlock = nn.class("BottleneckBlock")
function M.BottleneckBlock:__init(cin, cout, stride, shortcut, if_first, dilation, with_cp)
  self.conv0 = M.ConvBNLayer(cin, cout, 1, { act = "relu" })
  self.conv1 = M.ConvBNLayer(cout, cout, 3, { stride = stride, dilation = dilation, act = "relu" })
  self.conv2 = M.ConvBNLayer(cout, cout * 4, 1)
  self.shortcut = shortcut
  if not shortcut then
    self.short = M.ConvBNLayer(cin, cout * 4, 1, { is_vd_mode = not (if_first or stride == 1) })
  end
  self.with_cp = with_cp or false
end
function M.BottleneckBlock:_forward(x)
  local y = self.conv2(self.conv1(self.conv0(x)))
  local short = self.shortcut and x or self.short(x)
  return F.relu(short + y)
end
function M.BottleneckBlock:forward(x)
  if self.with_cp then return cp.run(self, self._forward, self, x) end
  return self:_forward(x)
end

local depths = { [50] = { 3, 4, 6, 3 }, [101] = { 3, 4, 23, 3 }, [152] = { 3, 8, 36, 3 } }

-- ResNet_vd{layers=50, output_stride=8, multi_grid={1,1,1}, in_channels=3, pretrained=path,
-- with_cp=false}: forward returns the four stage outputs (strides 4, 8, 16, 32 divided by the
-- dilation), feat_channels {256, 512, 1024, 2048}. Blocks are children bb_<stage>_<i>.
M.ResNet_vd = nn.class("ResNet_vd")
function M.ResNet_vd:__init(o)
  o = o or {}
  local layers = o.layers or 50
  local depth = depths[layers]
  if not depth then
    error("ResNet_vd: supported layers are 50, 101, 152 (bottleneck), got " .. tostring(layers), 3)
  end
  local os_ = o.output_stride or 8
  local dil = ({ [8] = { [2] = 2, [3] = 4 }, [16] = { [3] = 2 }, [32] = {} })[os_]
  if not dil then error("ResNet_vd: output_stride must be 8, 16 or 32, got " .. tostring(os_), 3) end
  local mg = o.multi_grid or { 1, 1, 1 }
  if #mg ~= depth[4] then
    error(string.format("ResNet_vd: multi_grid needs %d values (the last stage's blocks), got %d", depth[4], #mg), 3)
  end
  self.layers, self.output_stride, self.multi_grid = layers, os_, mg
  self.with_cp = o.with_cp or false
  local num_channels, num_filters = { 64, 256, 512, 1024 }, { 64, 128, 256, 512 }
  self.feat_channels = { 256, 512, 1024, 2048 }
  self.conv1_1 = M.ConvBNLayer(o.in_channels or 3, 32, 3, { stride = 2, act = "relu" })
  self.conv1_2 = M.ConvBNLayer(32, 32, 3, { act = "relu" })
  self.conv1_3 = M.ConvBNLayer(32, 64, 3, { act = "relu" })
  self.pool2d_max = nn.MaxPool2d(3, 2, 1)
  local stages = {}
  for b = 0, 3 do
    local list, shortcut = {}, false
    for i = 0, depth[b + 1] - 1 do
      local d = dil[b] or 1
      if b == 3 then d = d * mg[i + 1] end
      local blk = M.BottleneckBlock(i == 0 and num_channels[b + 1] or num_filters[b + 1] * 4,
        num_filters[b + 1], (i == 0 and b ~= 0 and d == 1) and 2 or 1, shortcut,
        b == 0 and i == 0, d, self.with_cp)
      self:add_module(string.format("bb_%d_%d", b, i), blk)
      list[#list + 1] = blk
      shortcut = true
    end
    stages[#stages + 1] = list
  end
  rawset(self, "stage_list", stages) -- plain list: the blocks are registered as bb_* above
  if o.pretrained then pretrained.load_matching(self, o.pretrained, "ResNet_vd") end
end
function M.ResNet_vd:forward(x)
  local y = self.pool2d_max(self.conv1_3(self.conv1_2(self.conv1_1(x))))
  local feats = {}
  for _, stage in ipairs(self.stage_list) do
    for _, blk in ipairs(stage) do y = blk(y) end
    feats[#feats + 1] = y
  end
  return feats
end
function M.ResNet_vd:extra_repr()
  return string.format("layers=%d, output_stride=%d", self.layers, self.output_stride)
end

local function variant(layers)
  return function(o)
    o = o or {}
    local c = {}
    for k, v in pairs(o) do c[k] = v end
    c.layers = layers
    return M.ResNet_vd(c)
  end
end
M.ResNet50_vd = variant(50)
M.ResNet101_vd = variant(101)

return M
