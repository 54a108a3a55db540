-- models/mix_transformer.lua: the Mix Transformer encoder of SegFormer (Xie et al. 2021) as
-- PaddleSeg builds it (paddleseg/models/backbones/mix_transformer.py), PaddleSeg's keys.
local ms = require "moonseg"
local nn = ms.nn
local F = ms.functional
local cp = require "moonseg.nn.checkpoint"

local M = {}

-- PaddleSeg's init for the convolutions of this file: N(0, 2 / fan_out), fan_out =
-- k*k*out/groups; biases zero. Linear and LayerNorm keep nn's transformer init.
local function conv(cin, cout, k, o)
  local c = nn.Conv2d(cin, cout, k, o)
  local fan_out = k * k * cout / (o.groups or 1)
  ms.no_grad(function() c.weight:copy_(ms.randn(c.weight:size()) * math.sqrt(2 / fan_out)) end)
  return c
end

-- [B, N, C] tokens <-> [B, C, H, W] maps.
local function to_map(x, h, w) return x:transpose(2, 3):reshape(x:size(1), x:size(3), h, w) end
local function to_tokens(x) return x:flatten(3):transpose(2, 3) end

-- DWConv(dim): the 3x3 depthwise convolution of the Mix-FFN (child `dwconv`).
M.DWConv = nn.class("DWConv")
function M.DWConv:__init(dim)
  self.dim = dim
  self.dwconv = conv(dim, dim, 3, { padding = 1, groups = dim })
end
function M.DWConv:forward(x, h, w) return to_tokens(self.dwconv(to_map(x, h, w))) end

-- Mlp: fc1 -> depthwise 3x3 -> exact GELU -> fc2 (dropout p = 0 in every MiT config).
M.Mlp = nn.class("Mlp")
function M.Mlp:__init(cin, hidden, drop)
  self.fc1 = nn.Linear(cin, hidden)
  self.dwconv = M.DWConv(hidden)
  self.fc2 = nn.Linear(hidden, cin)
  self.drop = drop or 0
end
function M.Mlp:forward(x, h, w)
  x = F.gelu(self.dwconv(self.fc1(x), h, w))
  x = F.dropout(x, self.drop, self.training)
  return F.dropout(self.fc2(x), self.drop, self.training)
end

-- Attention with spatial reduction: keys/values come from the map shrunk by a
-- sr_ratio x sr_ratio stride-sr_ratio conv and a LayerNorm. Paddle quirk kept: that `norm` is
-- a plain nn.LayerNorm (eps 1e-5), not the block's norm_layer (eps 1e-6 in B0..B5).
M.Attention = nn.class("Attention")
function M.Attention:__init(dim, num_heads, qkv_bias, sr_ratio, attn_drop, proj_drop)
  assert(dim % num_heads == 0, "Attention: dim must be divisible by num_heads")
  self.dim, self.num_heads, self.sr_ratio = dim, num_heads, sr_ratio
  self.scale = (dim / num_heads) ^ -0.5
  self.q = nn.Linear(dim, dim, { bias = qkv_bias })
  self.kv = nn.Linear(dim, dim * 2, { bias = qkv_bias })
  self.proj = nn.Linear(dim, dim)
  self.attn_drop, self.proj_drop = attn_drop or 0, proj_drop or 0
  if sr_ratio > 1 then
    self.sr = conv(dim, dim, sr_ratio, { stride = sr_ratio })
    self.norm = nn.LayerNorm(dim)
  end
end
function M.Attention:forward(x, h, w)
  local B, N, C = x:size(1), x:size(2), self.dim
  local nh = self.num_heads
  local d = C / nh
  local q = self.q(x):reshape(B, N, nh, d):permute(1, 3, 2, 4)
  local src = x
  if self.sr_ratio > 1 then
    src = self.norm(to_tokens(self.sr(to_map(x, h, w))))
  end
  local kv = self.kv(src):reshape(B, -1, 2, nh, d):permute(3, 1, 4, 2, 5)
  local k, v = kv:select(1, 1), kv:select(1, 2)
  local attn = F.softmax(ms.matmul(q, k:transpose(3, 4)) * self.scale, -1)
  attn = F.dropout(attn, self.attn_drop, self.training)
  local y = ms.matmul(attn, v):permute(1, 3, 2, 4):reshape(B, N, C)
  return F.dropout(self.proj(y), self.proj_drop, self.training)
end

-- Block: pre-norm attention and Mix-FFN, each residual through DropPath.
M.Block = nn.class("Block")
function M.Block:__init(dim, num_heads, mlp_ratio, qkv_bias, drop, attn_drop, drop_path, eps, sr_ratio, with_cp)
  self.with_cp = with_cp or false
  self.norm1 = nn.LayerNorm(dim, { epsilon = eps })
  self.attn = M.Attention(dim, num_heads, qkv_bias, sr_ratio, attn_drop, drop)
  self.drop_path = nn.DropPath(drop_path)
  self.norm2 = nn.LayerNorm(dim, { epsilon = eps })
  self.mlp = M.Mlp(dim, math.floor(dim * mlp_ratio), drop)
end
function M.Block:_forward(x, h, w)
  x = x + self.drop_path(self.attn(self.norm1(x), h, w))
  return x + self.drop_path(self.mlp(self.norm2(x), h, w))
end
-- with_cp: the encoder layer is recomputed in backward (nn/checkpoint.lua rewinds the
-- generator, so the DropPath masks of the recompute are the first forward's).
function M.Block:forward(x, h, w)
  if self.with_cp then return cp.run(self, self._forward, self, x, h, w) end
  return self:_forward(x, h, w)
end

-- OverlapPatchEmbed: conv k x k / stride, padding k // 2, then LayerNorm. Paddle quirk kept:
-- this norm is a plain nn.LayerNorm (eps 1e-5) whatever the backbone's norm_layer.
M.OverlapPatchEmbed = nn.class("OverlapPatchEmbed")
function M.OverlapPatchEmbed:__init(patch_size, stride, cin, dim)
  self.proj = conv(cin, dim, patch_size, { stride = stride, padding = math.floor(patch_size / 2) })
  self.norm = nn.LayerNorm(dim)
end
function M.OverlapPatchEmbed:forward(x)
  x = self.proj(x)
  local h, w = x:size(3), x:size(4)
  return self.norm(to_tokens(x)), h, w
end

-- MixVisionTransformer{embed_dims, num_heads, mlp_ratios, qkv_bias, drop_rate, attn_drop_rate,
-- drop_path_rate, depths, sr_ratios, epsilon (the blocks' and stage norms' LayerNorm eps),
-- in_channels, with_cp}: returns the four stage maps [B, embed_dims[i], H/4..H/32, ...]
-- (feat_channels).
M.MixVisionTransformer = nn.class("MixVisionTransformer")
function M.MixVisionTransformer:__init(o)
  o = o or {}
  local dims = o.embed_dims or { 64, 128, 256, 512 }
  local heads = o.num_heads or { 1, 2, 4, 8 }
  local ratios = o.mlp_ratios or { 4, 4, 4, 4 }
  local depths = o.depths or { 3, 4, 6, 3 }
  local srs = o.sr_ratios or { 8, 4, 2, 1 }
  local eps = o.epsilon or 1e-5
  local dpr_max = o.drop_path_rate or 0
  self.feat_channels = { dims[1], dims[2], dims[3], dims[4] }
  self.depths = depths
  local total = depths[1] + depths[2] + depths[3] + depths[4]
  local cin = o.in_channels or 3
  local patch = { { 7, 4 }, { 3, 2 }, { 3, 2 }, { 3, 2 } }
  local cur = 0
  for s = 1, 4 do
    self["patch_embed" .. s] = M.OverlapPatchEmbed(patch[s][1], patch[s][2], s == 1 and cin or dims[s - 1], dims[s])
    local blocks = nn.ModuleList()
    for i = 1, depths[s] do
      -- drop path rates rise linearly from 0 to drop_path_rate over all blocks (linspace)
      local p = total > 1 and dpr_max * (cur + i - 1) / (total - 1) or 0
      blocks:append(M.Block(dims[s], heads[s], ratios[s], o.qkv_bias or false, o.drop_rate or 0,
        o.attn_drop_rate or 0, p, eps, srs[s], o.with_cp))
    end
    self["block" .. s] = blocks
    self["norm" .. s] = nn.LayerNorm(dims[s], { epsilon = eps })
    cur = cur + depths[s]
  end
end
function M.MixVisionTransformer:forward(x)
  local outs = {}
  for s = 1, 4 do
    local h, w
    x, h, w = self["patch_embed" .. s](x)
    for _, blk in ipairs(self["block" .. s]:children()) do x = blk(x, h, w) end
    x = self["norm" .. s](x)
    x = x:reshape(x:size(1), h, w, self.feat_channels[s]):permute(1, 4, 2, 3)
    outs[s] = x
  end
  return outs
end

-- MixVisionTransformer_B0{...}: PaddleSeg's B0 (dims 32-64-160-256, 2 blocks per stage,
-- qkv bias, LayerNorm eps 1e-6, drop path 0.1); any field may be overridden.
function M.MixVisionTransformer_B0(o)
  local cfg = { embed_dims = { 32, 64, 160, 256 }, num_heads = { 1, 2, 5, 8 }, mlp_ratios = { 4, 4, 4, 4 },
    qkv_bias = true, epsilon = 1e-6, depths = { 2, 2, 2, 2 }, sr_ratios = { 8, 4, 2, 1 },
    drop_rate = 0, drop_path_rate = 0.1 }
  for k, v in pairs(o or {}) do cfg[k] = v end
  return M.MixVisionTransformer(cfg)
end

return M
