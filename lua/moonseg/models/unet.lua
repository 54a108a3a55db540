-- models/unet.lua: U-Net (Ronneberger et al. 2015) as PaddleSeg builds it
-- (paddleseg/models/unet.py, use_deconv=false: bilinear upsampling); PaddleSeg's keys.
local ms = require "moonseg"
local nn = ms.nn
local L = require "moonseg.models.layers"
local CL = require "moonseg.models.cnn_layers"
local cp = require "moonseg.nn.checkpoint"

local M = {}

-- A Sequential whose forward is checkpointed when with_cp (the conv blocks of the UNet).
local CpSequential = nn.class("Sequential", nn.Sequential)
local function cp_seq(with_cp, ...)
  local s = CpSequential(...)
  rawset(s, "with_cp", with_cp)
  return s
end
function CpSequential:forward(x)
  if self.with_cp then return cp.run(self, nn.Sequential.forward, self, x) end
  return nn.Sequential.forward(self, x)
end

-- Encoder: `double_conv` (two 3x3 ConvBNReLUs to 64) and four `down_sample_list` stages
-- (2x2 max pool, two 3x3 ConvBNReLUs); returns the deepest map and the four shortcuts.
M.Encoder = nn.class("Encoder")
function M.Encoder:__init(cin, with_cp)
  self.double_conv = cp_seq(with_cp, L.ConvBNReLU(cin, 64, 3), L.ConvBNReLU(64, 64, 3))
  self.down_sample_list = nn.ModuleList()
  for _, c in ipairs { { 64, 128 }, { 128, 256 }, { 256, 512 }, { 512, 512 } } do
    self.down_sample_list:append(cp_seq(with_cp, nn.MaxPool2d(2, 2), L.ConvBNReLU(c[1], c[2], 3),
      L.ConvBNReLU(c[2], c[2], 3)))
  end
end
function M.Encoder:forward(x)
  local shorts = {}
  x = self.double_conv(x)
  for _, d in ipairs(self.down_sample_list:children()) do
    shorts[#shorts + 1] = x
    x = d(x)
  end
  return x, shorts
end

-- UpSampling(cin, cout, align_corners): bilinear upsampling to the shortcut's size, concat
-- (2 * cin channels) and `double_conv`.
M.UpSampling = nn.class("UpSampling")
function M.UpSampling:__init(cin, cout, align_corners, with_cp)
  self.align_corners = align_corners or false
  self.double_conv = cp_seq(with_cp, L.ConvBNReLU(cin * 2, cout, 3), L.ConvBNReLU(cout, cout, 3))
end
function M.UpSampling:forward(x, short)
  x = CL.resize(x, short:size(3), short:size(4), self.align_corners)
  return self.double_conv(ms.cat({ x, short }, 2))
end

M.Decoder = nn.class("Decoder")
function M.Decoder:__init(align_corners, with_cp)
  self.up_sample_list = nn.ModuleList()
  for _, c in ipairs { { 512, 256 }, { 256, 128 }, { 128, 64 }, { 64, 64 } } do
    self.up_sample_list:append(M.UpSampling(c[1], c[2], align_corners, with_cp))
  end
end
function M.Decoder:forward(x, shorts)
  for i, up in ipairs(self.up_sample_list:children()) do x = up(x, shorts[#shorts - i + 1]) end
  return x
end

-- UNet{num_classes=, align_corners=false, use_deconv=false, in_channels=3, pretrained=path,
-- with_cp=false}. Returns { logits }. PaddleSeg assigns the classifier twice
-- (`self.cls = self.conv = Conv2D(64, num_classes, 3, padding=1)`), so its state dicts carry
-- both cls.* and conv.*: the state dict here lists the same tensors under both names
-- (parameters counted once).
M.UNet = nn.class("UNet")
function M.UNet:__init(o)
  o = o or {}
  if type(o.num_classes) ~= "number" or o.num_classes < 1 then
    error("UNet: num_classes must be a positive integer, got " .. tostring(o.num_classes), 3)
  end
  if o.use_deconv then error("UNet: use_deconv=true (transposed convolution) is not implemented", 3) end
  self.num_classes, self.align_corners = o.num_classes, o.align_corners or false
  self.encode = M.Encoder(o.in_channels or 3, o.with_cp)
  self.decode = M.Decoder(self.align_corners, o.with_cp)
  self.cls = nn.Conv2d(64, o.num_classes, 3, { padding = 1 })
  if o.pretrained then self:load_state_dict(ms.load(o.pretrained)) end
end
function M.UNet:forward(x)
  local y, shorts = self.encode(x)
  return { self.cls(self.decode(y, shorts)) }
end
function M.UNet:state_dict_keys()
  local keys = nn.Module.state_dict_keys(self)
  keys[#keys + 1], keys[#keys + 2] = "conv.weight", "conv.bias"
  return keys
end
function M.UNet:state_dict()
  local sd = nn.Module.state_dict(self)
  sd["conv.weight"], sd["conv.bias"] = self.cls.weight, self.cls.bias
  return sd
end
function M.UNet:extra_repr() return "num_classes=" .. self.num_classes end

return M
