-- models/pspnet.lua: PSPNet (Zhao et al. 2017) as PaddleSeg builds it (paddleseg/models/pspnet.py):
-- pyramid pooling on the deepest feature and an auxiliary head; PaddleSeg's state-dict keys.
local ms = require "moonseg"
local nn = ms.nn
local CL = require "moonseg.models.cnn_layers"

local M = {}

-- PSPNetHead: PPModule (with dimension reduction), dropout 0.1, 1x1 classifier `conv`; the
-- auxiliary AuxLayer (inter channels cin/4) on the other feature.
M.PSPNetHead = nn.class("PSPNetHead")
function M.PSPNetHead:__init(num_classes, backbone_indices, chs, pp_out, bin_sizes, aux, align_corners)
  self.backbone_indices = backbone_indices
  self.psp_module = CL.PPModule(chs[2], pp_out, bin_sizes, true, align_corners)
  self.dropout = nn.Dropout(0.1)
  self.conv = nn.Conv2d(pp_out, num_classes, 1)
  self.enable_auxiliary_loss = aux
  if aux then self.auxlayer = CL.AuxLayer(chs[1], math.floor(chs[1] / 4), num_classes) end
end
-- PaddleSeg returns the auxiliary logits in eval mode too (and then uses only the first);
-- here they are computed in training only.
function M.PSPNetHead:forward(feats)
  local logits = { self.conv(self.dropout(self.psp_module(feats[self.backbone_indices[2]]))) }
  if self.enable_auxiliary_loss and self.training then
    logits[2] = self.auxlayer(feats[self.backbone_indices[1]])
  end
  return logits
end

-- PSPNet{num_classes=, backbone=module, backbone_indices={3, 4}, pp_out_channels=1024,
-- bin_sizes={1, 2, 3, 6}, enable_auxiliary_loss=true, align_corners=false, pretrained=path}:
-- backbone_indices 1-based (PaddleSeg's (2, 3)): the auxiliary feature, then the PPM input.
-- Training returns { main, aux } at the input size, eval { main }.
M.PSPNet = nn.class("PSPNet")
function M.PSPNet:__init(o)
  o = o or {}
  local chs
  self.backbone, self.backbone_indices, chs = CL.check_model_args("PSPNet", o, { 3, 4 })
  local aux = o.enable_auxiliary_loss
  if aux == nil then aux = true end
  self.num_classes, self.align_corners = o.num_classes, o.align_corners or false
  self.head = M.PSPNetHead(o.num_classes, self.backbone_indices, chs, o.pp_out_channels or 1024,
    CL.copy_list(o.bin_sizes or { 1, 2, 3, 6 }), aux, self.align_corners)
  if o.pretrained then self:load_state_dict(ms.load(o.pretrained)) end
end
function M.PSPNet:forward(x)
  local h, w = x:size(3), x:size(4)
  local logits = self.head(self.backbone(x))
  for i, l in ipairs(logits) do logits[i] = CL.resize(l, h, w, self.align_corners) end
  return logits
end
function M.PSPNet:extra_repr() return "num_classes=" .. self.num_classes end

return M
