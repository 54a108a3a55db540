-- models/hrnet.lua: HRNet (Wang et al. 2019) as PaddleSeg builds it
-- (paddleseg/models/backbones/hrnet.py), with PaddleSeg's sublayer names as state-dict keys.
local ms = require "moonseg"
local nn = ms.nn
local F = ms.functional
local cp = require "moonseg.nn.checkpoint"

local M = {}

-- Paddle's padding='same': out = ceil(in / stride), total padding max((out - 1) * stride + k - in,
-- 0), split floor(total / 2) before and the rest after. On a stride-2 3x3 conv over an even
-- size that is 0 before and 1 after (bottom/right only), not PyTorch's symmetric 1: the
-- windows sit one pixel lower/right and the numbers differ. Returns before, after.
local function same_pad(size, k, stride)
  local out = math.ceil(size / stride)
  local total = math.max((out - 1) * stride + k - size, 0)
  local before = math.floor(total / 2)
  return before, total - before
end

-- Zeros appended below (rows) and right (cols) of x [N, C, H, W].
local function pad_bottom_right(x, rows, cols)
  local n, c, h, w = x:size(1), x:size(2), x:size(3), x:size(4)
  if rows > 0 then x = ms.cat({ x, x:new_zeros({ n, c, rows, w }) }, 3) end
  if cols > 0 then x = ms.cat({ x, x:new_zeros({ n, c, h + rows, cols }) }, 4) end
  return x
end

-- ConvBN / ConvBNReLU with Paddle's 'same' padding and no conv bias (children `_conv`,
-- `_batch_norm`, as PaddleSeg's layers.ConvBN(ReLU) with bias_attr=False).
M.ConvBNAct = nn.class("ConvBNAct")
function M.ConvBNAct:__init(cin, cout, k, stride, relu)
  self.k, self.s, self.relu = k, stride or 1, relu
  self._conv = nn.Conv2d(cin, cout, k, { stride = self.s, bias = false })
  self._batch_norm = nn.BatchNorm2d(cout)
end
function M.ConvBNAct:forward(x)
  local bh, ah = same_pad(x:size(3), self.k, self.s)
  local bw, aw = same_pad(x:size(4), self.k, self.s)
  -- before <= after always: the common part as conv padding, the excess as explicit zeros
  if ah > bh or aw > bw then x = pad_bottom_right(x, ah - bh, aw - bw) end
  local y = self._batch_norm(F.conv2d(x, self._conv.weight, nil, { stride = self.s, padding = { bh, bw } }))
  if self.relu then y = F.relu(y) end
  return y
end
local function ConvBN(cin, cout, k, s) return M.ConvBNAct(cin, cout, k, s, false) end
local function ConvBNReLU(cin, cout, k, s) return M.ConvBNAct(cin, cout, k, s, true) end

-- BottleneckBlock: 1x1 -> 3x3 -> 1x1 (x4 widths) + residual (1x1 ConvBN `conv_down` when
-- downsample), ReLU.
M.BottleneckBlock = nn.class("BottleneckBlock")
function M.BottleneckBlock:__init(cin, filters, downsample, with_cp)
  self.with_cp = with_cp or false
  self.conv1 = ConvBNReLU(cin, filters, 1)
  self.conv2 = ConvBNReLU(filters, filters, 3)
  self.conv3 = ConvBN(filters, filters * 4, 1)
  if downsample then self.conv_down = ConvBN(cin, filters * 4, 1) end
end
function M.BottleneckBlock:_forward(x)
  local r = self.conv_down and self.conv_down(x) or x
  return F.relu(self.conv3(self.conv2(self.conv1(x))) + r)
end
-- with_cp: the block's activations are recomputed in backward (nn/checkpoint.lua), as
-- MMSegmentation checkpoints HRNet's residual blocks.
function M.BottleneckBlock:forward(x)
  if self.with_cp then return cp.run(self, self._forward, self, x) end
  return self:_forward(x)
end

-- BasicBlock: 3x3 ConvBNReLU -> 3x3 ConvBN + identity, ReLU.
M.BasicBlock = nn.class("BasicBlock")
function M.BasicBlock:__init(cin, filters, with_cp)
  self.with_cp = with_cp or false
  self.conv1 = ConvBNReLU(cin, filters, 3)
  self.conv2 = ConvBN(filters, filters, 3)
end
function M.BasicBlock:_forward(x) return F.relu(self.conv2(self.conv1(x)) + x) end
function M.BasicBlock:forward(x)
  if self.with_cp then return cp.run(self, self._forward, self, x) end
  return self:_forward(x)
end

-- Layer1: num_blocks bottlenecks named bb_<name>_<i>.
M.Layer1 = nn.class("Layer1")
function M.Layer1:__init(cin, filters, nblocks, name, with_cp)
  self.names = {}
  for i = 1, nblocks do
    local n = string.format("bb_%s_%d", name, i)
    self:add_module(n, M.BottleneckBlock(i == 1 and cin or filters * 4, filters, i == 1, with_cp))
    self.names[i] = n
  end
end
function M.Layer1:forward(x)
  for _, n in ipairs(self.names) do x = self._modules[n](x) end
  return x
end

-- TransitionLayer: per output branch, the input as is (same width), a 3x3 ConvBNReLU (new
-- width), or a stride-2 3x3 ConvBNReLU from the last input (new branch); transition_<name>_layer_<i>.
M.TransitionLayer = nn.class("TransitionLayer")
function M.TransitionLayer:__init(cin, cout, name)
  self.convs = {}
  for i = 1, #cout do
    local n = string.format("transition_%s_layer_%d", name, i)
    if i <= #cin then
      if cin[i] ~= cout[i] then self.convs[i] = self:add_module(n, ConvBNReLU(cin[i], cout[i], 3)) end
    else
      self.convs[i] = self:add_module(n, ConvBNReLU(cin[#cin], cout[i], 3, 2))
    end
  end
  self.nout = #cout
end
function M.TransitionLayer:forward(xs)
  local outs = {}
  for i = 1, self.nout do
    local c = self.convs[i]
    if c == nil then outs[i] = xs[i]
    elseif i <= #xs then outs[i] = c(xs[i])
    else outs[i] = c(xs[#xs]) end
  end
  return outs
end

-- Branches: per branch, num_blocks BasicBlocks named bb_<name>_branch_layer_<i>_<j>.
M.Branches = nn.class("Branches")
function M.Branches:__init(nblocks, cin, cout, name, with_cp)
  self.lists = {}
  for i = 1, #cout do
    self.lists[i] = {}
    for j = 1, nblocks[i] do
      local n = string.format("bb_%s_branch_layer_%d_%d", name, i, j)
      self.lists[i][j] = self:add_module(n, M.BasicBlock(j == 1 and cin[i] or cout[i], cout[i], with_cp))
    end
  end
end
function M.Branches:forward(xs)
  local outs = {}
  for i, x in ipairs(xs) do
    for _, b in ipairs(self.lists[i]) do x = b(x) end
    outs[i] = x
  end
  return outs
end

-- FuseLayers: output i sums every branch j brought to its resolution: j > i by a 1x1 ConvBN
-- and bilinear upsampling, j < i by i - j stride-2 3x3 convs (ConvBNReLU at branch j's width,
-- the last a ConvBN at branch i's), then ReLU.
M.FuseLayers = nn.class("FuseLayers")
function M.FuseLayers:__init(cin, cout, name, align_corners)
  self.align_corners = align_corners
  self.nin, self.funcs = #cin, {}
  for i = 1, #cin do
    self.funcs[i] = {}
    for j = 1, #cin do
      if j > i then
        self.funcs[i][j] = { self:add_module(string.format("residual_%s_layer_%d_%d", name, i, j),
          ConvBN(cin[j], cout[i], 1)) }
      elseif j < i then
        local chain, pre = {}, cin[j]
        for k = 1, i - j do
          local n = string.format("residual_%s_layer_%d_%d_%d", name, i, j, k)
          if k == i - j then
            chain[k] = self:add_module(n, ConvBN(pre, cout[i], 3, 2))
            pre = cout[i]
          else
            chain[k] = self:add_module(n, ConvBNReLU(pre, cout[j], 3, 2))
            pre = cout[j]
          end
        end
        self.funcs[i][j] = chain
      end
    end
  end
end
function M.FuseLayers:forward(xs)
  local outs = {}
  for i = 1, self.nin do
    local r = xs[i]
    local h, w = r:size(3), r:size(4)
    for j = 1, self.nin do
      if j > i then
        local y = self.funcs[i][j][1](xs[j])
        r = r + F.interpolate(y, { size = { h, w } }, "bilinear", self.align_corners)
      elseif j < i then
        local y = xs[j]
        for _, c in ipairs(self.funcs[i][j]) do y = c(y) end
        r = r + y
      end
    end
    outs[i] = F.relu(r)
  end
  return outs
end

M.HighResolutionModule = nn.class("HighResolutionModule")
function M.HighResolutionModule:__init(ch, nblocks, filters, name, align_corners, with_cp)
  self.branches_func = M.Branches(nblocks, ch, filters, name, with_cp)
  self.fuse_func = M.FuseLayers(filters, filters, name, align_corners)
end
function M.HighResolutionModule:forward(xs) return self.fuse_func(self.branches_func(xs)) end

-- Stage: num_modules HighResolutionModules named stage_<name>_<i>.
M.Stage = nn.class("Stage")
function M.Stage:__init(ch, nmodules, nblocks, filters, name, align_corners, with_cp)
  self.mods = {}
  for i = 1, nmodules do
    self.mods[i] = self:add_module(string.format("stage_%s_%d", name, i),
      M.HighResolutionModule(ch, nblocks, filters, name .. "_" .. i, align_corners, with_cp))
  end
end
function M.Stage:forward(xs)
  for _, m in ipairs(self.mods) do xs = m(xs) end
  return xs
end

-- HRNet{stageK_num_modules, stageK_num_blocks, stageK_num_channels (K = 1..4), in_channels=3,
-- align_corners=false, with_cp=false}: returns { cat(branch 1, the others upsampled to it) },
-- feat_channels { sum of stage 4's widths }. Only padding_same = true (PaddleSeg's default) and has_se =
-- false are built. Convolutions are initialised N(0, 0.001^2), batch norms 1 / 0 (PaddleSeg).
M.HRNet = nn.class("HRNet")
function M.HRNet:__init(o)
  o = o or {}
  if o.has_se or o.use_psa or o.padding_same == false then
    error("HRNet: has_se, use_psa and padding_same = false are not implemented", 2)
  end
  local ac = o.align_corners or false
  local wcp = o.with_cp or false
  self.align_corners = ac
  local c1 = o.stage1_num_channels or { 64 }
  local c2 = o.stage2_num_channels or { 18, 36 }
  local c3 = o.stage3_num_channels or { 18, 36, 72 }
  local c4 = o.stage4_num_channels or { 18, 36, 72, 144 }
  local sum = 0
  for _, c in ipairs(c4) do sum = sum + c end
  self.feat_channels = { sum }
  self.conv_layer1_1 = ConvBNReLU(o.in_channels or 3, 64, 3, 2)
  self.conv_layer1_2 = ConvBNReLU(64, 64, 3, 2)
  self.la1 = M.Layer1(64, c1[1], (o.stage1_num_blocks or { 4 })[1], "layer2", wcp)
  self.tr1 = M.TransitionLayer({ c1[1] * 4 }, c2, "tr1")
  self.st2 = M.Stage(c2, o.stage2_num_modules or 1, o.stage2_num_blocks or { 4, 4 }, c2, "st2", ac, wcp)
  self.tr2 = M.TransitionLayer(c2, c3, "tr2")
  self.st3 = M.Stage(c3, o.stage3_num_modules or 4, o.stage3_num_blocks or { 4, 4, 4 }, c3, "st3", ac, wcp)
  self.tr3 = M.TransitionLayer(c3, c4, "tr3")
  self.st4 = M.Stage(c4, o.stage4_num_modules or 3, o.stage4_num_blocks or { 4, 4, 4, 4 }, c4, "st4", ac, wcp)
  ms.no_grad(function()
    for _, m in ipairs(self:modules()) do
      if m.__class == nn.Conv2d then m.weight:copy_(ms.randn(m.weight:size()) * 0.001) end
    end
  end)
end
function M.HRNet:forward(x)
  local la1 = self.la1(self.conv_layer1_2(self.conv_layer1_1(x)))
  local st4 = self.st4(self.tr3(self.st3(self.tr2(self.st2(self.tr1({ la1 }))))))
  local h, w = st4[1]:size(3), st4[1]:size(4)
  local parts = { st4[1] }
  for i = 2, #st4 do
    parts[i] = F.interpolate(st4[i], { size = { h, w } }, "bilinear", self.align_corners)
  end
  return { ms.cat(parts, 2) }
end

-- HRNet_W18{...}: PaddleSeg's W18 (1/1/4/3 modules, 4 blocks per branch, widths 18-36-72-144).
function M.HRNet_W18(o)
  local cfg = { stage1_num_modules = 1, stage1_num_blocks = { 4 }, stage1_num_channels = { 64 },
    stage2_num_modules = 1, stage2_num_blocks = { 4, 4 }, stage2_num_channels = { 18, 36 },
    stage3_num_modules = 4, stage3_num_blocks = { 4, 4, 4 }, stage3_num_channels = { 18, 36, 72 },
    stage4_num_modules = 3, stage4_num_blocks = { 4, 4, 4, 4 }, stage4_num_channels = { 18, 36, 72, 144 } }
  for k, v in pairs(o or {}) do cfg[k] = v end
  return M.HRNet(cfg)
end

return M
