-- models/ocrnet.lua: OCRNet (Yuan et al. 2020) as PaddleSeg builds it (paddleseg/models/ocrnet.py):
-- object-contextual representations over a backbone, with PaddleSeg's state-dict keys.
local ms = require "moonseg"
local nn = ms.nn
local F = ms.functional
local L = require "moonseg.models.layers"

local M = {}

-- SpatialGatherBlock: object region features = softmax over pixels of the soft regions
-- [N, K, HW] times the pixel features [N, HW, C] -> [N, C, K, 1]. No parameters.
local function spatial_gather(pixels, regions, c, k)
  local n = pixels:size(1)
  local p = pixels:reshape(n, c, -1):transpose(2, 3)
  local r = F.softmax(regions:reshape(n, k, -1), 3)
  return ms.matmul(r, p):transpose(2, 3):unsqueeze(4)
end

-- ObjectAttentionBlock(in, key): query from the pixels (two 1x1 ConvBNReLU, f_pixel), key
-- (f_object) and value (f_down) from the object features, softmax(q k / sqrt(key)) v, f_up.
-- The 1x1 ConvBNReLUs have conv biases (Paddle's default bias_attr).
M.ObjectAttentionBlock = nn.class("ObjectAttentionBlock")
function M.ObjectAttentionBlock:__init(cin, key)
  self.key_channels = key
  self.f_pixel = nn.Sequential(L.ConvBNReLU(cin, key, 1), L.ConvBNReLU(key, key, 1))
  self.f_object = nn.Sequential(L.ConvBNReLU(cin, key, 1), L.ConvBNReLU(key, key, 1))
  self.f_down = L.ConvBNReLU(cin, key, 1)
  self.f_up = L.ConvBNReLU(key, cin, 1)
end
function M.ObjectAttentionBlock:forward(x, proxy)
  local n, kc = x:size(1), self.key_channels
  local q = self.f_pixel(x):reshape(n, kc, -1):transpose(2, 3)
  local k = self.f_object(proxy):reshape(n, kc, -1)
  local v = self.f_down(proxy):reshape(n, kc, -1):transpose(2, 3)
  local sim = F.softmax(ms.matmul(q, k) * kc ^ -0.5, -1)
  local ctx = ms.matmul(sim, v):transpose(2, 3):reshape(n, kc, x:size(3), x:size(4))
  return self.f_up(ctx)
end

-- SpatialOCRModule: cat(context, pixels) -> 1x1 ConvBNReLU -> Dropout2D(0.1).
M.SpatialOCRModule = nn.class("SpatialOCRModule")
function M.SpatialOCRModule:__init(cin, key, cout, dropout_rate)
  self.attention_block = M.ObjectAttentionBlock(cin, key)
  self.conv1x1 = nn.Sequential(L.ConvBNReLU(2 * cin, cout, 1), nn.Dropout2d(dropout_rate or 0.1))
end
function M.SpatialOCRModule:forward(pixels, regions)
  local ctx = self.attention_block(pixels, regions)
  return self.conv1x1(ms.cat({ ctx, pixels }, 2))
end

-- OCRHead(num_classes, in_channels, mid=512, key=256): soft regions from the shallow feature
-- (aux_head), pixels from the deep one (conv3x3_ocr), OCR, 1x1 classifier. Returns
-- { logit, soft_regions }. Convs initialised N(0, 0.001^2), BN 1 / 0 (PaddleSeg's init_weight).
M.OCRHead = nn.class("OCRHead")
function M.OCRHead:__init(ncls, in_channels, mid, key)
  mid, key = mid or 512, key or 256
  self.num_classes, self.mid = ncls, mid
  self.spatial_ocr = M.SpatialOCRModule(mid, key, mid)
  local n = #in_channels
  self.indices = n > 1 and { n - 1, n } or { n, n }
  self.conv3x3_ocr = L.ConvBNReLU(in_channels[self.indices[2]], mid, 3, { padding = 1 })
  self.cls_head = nn.Conv2d(mid, ncls, 1)
  local cs = in_channels[self.indices[1]]
  self.aux_head = nn.Sequential(L.ConvBNReLU(cs, cs, 1), nn.Conv2d(cs, ncls, 1))
  ms.no_grad(function()
    for _, m in ipairs(self:modules()) do
      if m.__class == nn.Conv2d then m.weight:copy_(ms.randn(m.weight:size()) * 0.001) end
    end
  end)
end
function M.OCRHead:forward(feats)
  local shallow, deep = feats[self.indices[1]], feats[self.indices[2]]
  local soft = self.aux_head(shallow)
  local pixels = self.conv3x3_ocr(deep)
  local objects = spatial_gather(pixels, soft, self.mid, self.num_classes)
  return { self.cls_head(self.spatial_ocr(pixels, objects)), soft }
end

-- OCRNet{num_classes, backbone, backbone_indices, ocr_mid_channels=512, ocr_key_channels=256,
-- align_corners=false}: backbone_indices are 0-based as in PaddleSeg's configs ({0} for
-- HRNet_W18). Train: { main, aux } at input size; eval: { main }.
M.OCRNet = nn.class("OCRNet")
function M.OCRNet:__init(o)
  assert(o and o.num_classes and o.backbone and o.backbone_indices,
    "OCRNet: num_classes, backbone and backbone_indices are required")
  self.backbone = o.backbone
  self.backbone_indices = o.backbone_indices
  self.align_corners = o.align_corners or false
  local in_ch = {}
  for i, idx in ipairs(o.backbone_indices) do
    local c = o.backbone.feat_channels[idx + 1]
    if c == nil then
      error(string.format("OCRNet: backbone_indices[%d] = %d is out of range for a backbone with %d outputs (0-based)",
        i, idx, #o.backbone.feat_channels), 2)
    end
    in_ch[i] = c
  end
  self.head = M.OCRHead(o.num_classes, in_ch, o.ocr_mid_channels, o.ocr_key_channels)
end
function M.OCRNet:forward(x)
  local all = self.backbone(x)
  local feats = {}
  for i, idx in ipairs(self.backbone_indices) do feats[i] = all[idx + 1] end
  local logits = self.head(feats)
  if not self.training then logits = { logits[1] } end
  for i, l in ipairs(logits) do
    logits[i] = F.interpolate(l, { size = { x:size(3), x:size(4) } }, "bilinear", self.align_corners)
  end
  return logits
end

return M
