-- models/deeplab.lua: DeepLabV3+ (Chen et al. 2018) as PaddleSeg builds it
-- (paddleseg/models/deeplab.py): ASPP with separable dilated branches on the deep feature, a
-- decoder fusing the low-level feature; PaddleSeg's state-dict keys.
local ms = require "moonseg"
local nn = ms.nn
local L = require "moonseg.models.layers"
local CL = require "moonseg.models.cnn_layers"

local M = {}

-- Decoder(num_classes, cin, align_corners): the low-level feature through a 1x1 ConvBNReLU to
-- 48 channels, the ASPP output upsampled to it, concatenated (304 = 256 + 48), two separable
-- 3x3 ConvBNReLUs and a 1x1 classifier `conv` (with bias).
M.Decoder = nn.class("Decoder")
function M.Decoder:__init(num_classes, cin, align_corners)
  self.align_corners = align_corners or false
  self.conv_bn_relu1 = L.ConvBNReLU(cin, 48, 1)
  self.conv_bn_relu2 = CL.SeparableConvBNReLU(304, 256, 3, { padding = 1 })
  self.conv_bn_relu3 = CL.SeparableConvBNReLU(256, 256, 3, { padding = 1 })
  self.conv = nn.Conv2d(256, num_classes, 1)
end
function M.Decoder:forward(x, low)
  low = self.conv_bn_relu1(low)
  x = CL.resize(x, low:size(3), low:size(4), self.align_corners)
  return self.conv(self.conv_bn_relu3(self.conv_bn_relu2(ms.cat({ x, low }, 2))))
end

M.DeepLabV3PHead = nn.class("DeepLabV3PHead")
function M.DeepLabV3PHead:__init(num_classes, backbone_indices, backbone_channels, aspp_ratios,
                                 aspp_out_channels, align_corners)
  self.backbone_indices = backbone_indices
  self.aspp = CL.ASPPModule(aspp_ratios, backbone_channels[2], aspp_out_channels, align_corners, true, true)
  self.decoder = M.Decoder(num_classes, backbone_channels[1], align_corners)
end
function M.DeepLabV3PHead:forward(feats)
  local low, x = feats[self.backbone_indices[1]], feats[self.backbone_indices[2]]
  return { self.decoder(self.aspp(x), low) }
end

-- DeepLabV3P{num_classes=, backbone=module, backbone_indices={1, 4}, aspp_ratios={1, 6, 12, 18},
-- aspp_out_channels=256, align_corners=false, pretrained=path}. backbone_indices are 1-based
-- (PaddleSeg's (0, 3)): the low-level feature, then the ASPP input. Returns { logits } at the
-- input size. The decoder's 304 input channels are fixed as in PaddleSeg, so
-- aspp_out_channels must stay 256.
M.DeepLabV3P = nn.class("DeepLabV3P")
function M.DeepLabV3P:__init(o)
  o = o or {}
  local chs
  self.backbone, self.backbone_indices, chs = CL.check_model_args("DeepLabV3P", o, { 1, 4 })
  local out_ch = o.aspp_out_channels or 256
  if out_ch ~= 256 then error("DeepLabV3P: the decoder takes 304 = 256 + 48 channels; aspp_out_channels must be 256", 3) end
  self.num_classes, self.align_corners = o.num_classes, o.align_corners or false
  self.head = M.DeepLabV3PHead(o.num_classes, self.backbone_indices, chs,
    CL.copy_list(o.aspp_ratios or { 1, 6, 12, 18 }), out_ch, self.align_corners)
  if o.pretrained then self:load_state_dict(ms.load(o.pretrained)) end
end
function M.DeepLabV3P:forward(x)
  local h, w = x:size(3), x:size(4)
  local logits = self.head(self.backbone(x))
  for i, l in ipairs(logits) do logits[i] = CL.resize(l, h, w, self.align_corners) end
  return logits
end
function M.DeepLabV3P:extra_repr() return "num_classes=" .. self.num_classes end

return M
