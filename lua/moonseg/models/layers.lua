-- models/layers.lua: PaddleSeg's building blocks (ConvBNReLU, ConvBN, STDC's ConvBNRelu) with
-- PaddleSeg's attribute names, so state-dict keys match PaddleSeg checkpoints.
local ms = require "moonseg"
local nn = ms.nn
local F = ms.functional

local layers = {}

-- Paddle's Conv2D pads 'same' by default in these blocks: k // 2 for odd kernels at stride 1.
local function conv_opts(k, o)
  local p = o.padding
  if p == nil or p == "same" then p = math.floor(k / 2) end
  return { stride = o.stride or 1, padding = p, dilation = o.dilation or 1,
    groups = o.groups or 1, bias = o.bias }
end

-- ConvBNReLU(cin, cout, k, {stride=1, padding='same', groups=1, bias=true}): PaddleSeg's
-- layers.ConvBNReLU; children `_conv` and `_batch_norm` (the ReLU has no parameters). As in
-- Paddle the convolution has a bias unless bias = false (Paddle's bias_attr=False).
layers.ConvBNReLU = nn.class("ConvBNReLU")
function layers.ConvBNReLU:__init(cin, cout, k, o)
  o = o or {}
  self._conv = nn.Conv2d(cin, cout, k, conv_opts(k, o))
  self._batch_norm = nn.BatchNorm2d(cout)
end
function layers.ConvBNReLU:forward(x) return F.relu(self._batch_norm(self._conv(x))) end

-- ConvBN: ConvBNReLU without the activation (PaddleSeg's layers.ConvBN).
layers.ConvBN = nn.class("ConvBN")
function layers.ConvBN:__init(cin, cout, k, o)
  o = o or {}
  self._conv = nn.Conv2d(cin, cout, k, conv_opts(k, o))
  self._batch_norm = nn.BatchNorm2d(cout)
end
function layers.ConvBN:forward(x) return self._batch_norm(self._conv(x)) end

-- ConvBNRelu(cin, cout, k=3, stride=1): the STDC backbone's own block, children `conv`
-- (no bias, padding k // 2) and `bn`.
layers.ConvBNRelu = nn.class("ConvBNRelu")
function layers.ConvBNRelu:__init(cin, cout, k, stride)
  k = k or 3
  self.conv = nn.Conv2d(cin, cout, k, { stride = stride or 1, padding = math.floor(k / 2), bias = false })
  self.bn = nn.BatchNorm2d(cout)
end
function layers.ConvBNRelu:forward(x) return F.relu(self.bn(self.conv(x))) end

return layers
