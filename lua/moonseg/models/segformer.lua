-- models/segformer.lua: SegFormer's all-MLP decoder (paddleseg/models/segformer.py) over a
-- Mix Transformer backbone, with PaddleSeg's state-dict keys.
local ms = require "moonseg"
local nn = ms.nn
local F = ms.functional
local L = require "moonseg.models.layers"

local M = {}

-- MLP(input_dim, embed_dim): [B, C, H, W] -> tokens [B, HW, C] -> Linear (child `proj`).
M.MLP = nn.class("MLP")
function M.MLP:__init(cin, dim) self.proj = nn.Linear(cin, dim) end
function M.MLP:forward(x) return self.proj(x:flatten(3):transpose(2, 3)) end

-- SegFormer{num_classes, backbone, embedding_dim, align_corners=false}: each stage map goes
-- through its Linear to embedding_dim, is upsampled to stage 1's size, the four are
-- concatenated deep first (c4, c3, c2, c1), fused by a 1x1 ConvBNReLU (no bias), Dropout2D(0.1),
-- a 1x1 classifier, and upsampled to the input. Returns { logits } in train and eval.
M.SegFormer = nn.class("SegFormer")
function M.SegFormer:__init(o)
  assert(o and o.num_classes and o.backbone and o.embedding_dim,
    "SegFormer: num_classes, backbone and embedding_dim are required")
  self.num_classes, self.align_corners = o.num_classes, o.align_corners or false
  self.backbone = o.backbone
  local ch = o.backbone.feat_channels
  local e = o.embedding_dim
  self.linear_c4 = M.MLP(ch[4], e)
  self.linear_c3 = M.MLP(ch[3], e)
  self.linear_c2 = M.MLP(ch[2], e)
  self.linear_c1 = M.MLP(ch[1], e)
  self.dropout = nn.Dropout2d(0.1)
  self.linear_fuse = L.ConvBNReLU(e * 4, e, 1, { bias = false })
  self.linear_pred = nn.Conv2d(e, o.num_classes, 1)
end

function M.SegFormer:forward(x)
  local feats = self.backbone(x)
  local c1 = feats[1]
  local h, w = c1:size(3), c1:size(4)
  local parts = {}
  for i = 4, 1, -1 do
    local c = feats[i]
    local y = self["linear_c" .. i](c):transpose(2, 3):reshape(c:size(1), -1, c:size(3), c:size(4))
    if i > 1 then y = F.interpolate(y, { size = { h, w } }, "bilinear", self.align_corners) end
    parts[#parts + 1] = y
  end
  local logit = self.linear_pred(self.dropout(self.linear_fuse(ms.cat(parts, 2))))
  return { F.interpolate(logit, { size = { x:size(3), x:size(4) } }, "bilinear", self.align_corners) }
end

return M
