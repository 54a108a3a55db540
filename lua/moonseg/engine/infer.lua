-- infer.lua: inference as PaddleSeg does it: whole image, sliding window, flip and multi-scale
-- test-time augmentation, logits resized to the original size.
local ms = require "moonseg"
local F = ms.functional

local M = {}

local function main_logits(model, x)
  local out = model(x)
  return type(out) == "table" and not ms.is_tensor(out) and out[1] or out
end

-- Sliding-window logits of x [1, 3, H, W] with windows crop {w, h} moved by stride {w, h};
-- the image is padded (zeros after normalisation) to at least one window, and overlapping
-- windows are averaged.
function M.slide(model, x, crop, stride)
  local h, w = x:size(3), x:size(4)
  local cw, ch = crop[1], crop[2]
  local sw, sh = stride[1], stride[2]
  if cw > w or ch > h then -- pad bottom/right to the window
    local ph, pw = math.max(ch, h), math.max(cw, w)
    local padded = x:new_zeros(1, x:size(2), ph, pw)
    padded[{ {}, {}, { 1, h }, { 1, w } }] = x
    local full = M.slide(model, padded, crop, stride)
    return full[{ {}, {}, { 1, h }, { 1, w } }]:contiguous()
  end
  local rows = math.max(math.ceil((h - ch) / sh), 0) + 1
  local cols = math.max(math.ceil((w - cw) / sw), 0) + 1
  local sum, count
  for r = 0, rows - 1 do
    for c = 0, cols - 1 do
      local y0, x0 = r * sh, c * sw
      local y1, x1 = math.min(y0 + ch, h), math.min(x0 + cw, w)
      y0, x0 = math.max(y1 - ch, 0), math.max(x1 - cw, 0)
      local win = x[{ {}, {}, { y0 + 1, y1 }, { x0 + 1, x1 } }]:contiguous()
      local logit = main_logits(model, win)
      if not sum then
        sum = logit:new_zeros(1, logit:size(2), h, w)
        count = logit:new_zeros(1, 1, h, w)
      end
      local s = sum[{ {}, {}, { y0 + 1, y1 }, { x0 + 1, x1 } }]
      s:add_(logit)
      local k = count[{ {}, {}, { y0 + 1, y1 }, { x0 + 1, x1 } }]
      k:add_(1)
    end
  end
  return sum / count
end

local function run(model, x, o)
  if o.is_slide then return M.slide(model, x, o.crop_size, o.stride) end
  return main_logits(model, x)
end

-- logits(model, x, {is_slide=, crop_size=, stride=, flip_horizontal=, flip_vertical=,
-- scales={1.0, ...}, size={h, w}}) -> [1, C, h, w] logits at the requested size (x's own when
-- absent). With flips or several scales the softmax outputs are summed, as PaddleSeg's
-- aug_inference does.
function M.logits(model, x, o)
  o = o or {}
  if type(model) == "table" and model.device then x = x:to(model:device()) end -- images come from the host; the model may not be there
  return ms.no_grad(function()
    local h, w = x:size(3), x:size(4)
    local size = o.size or { h, w }
    local scales = o.scales or { 1.0 }
    local aug = #scales > 1 or o.flip_horizontal or o.flip_vertical
    if not aug then
      local l = run(model, x, o)
      if l:size(3) ~= size[1] or l:size(4) ~= size[2] then
        l = F.interpolate(l, { size = size, mode = "bilinear", align_corners = false })
      end
      return l
    end
    local total
    local function add(l, flip_dim)
      if flip_dim then l = l:flip(flip_dim) end
      l = F.interpolate(l, { size = size, mode = "bilinear", align_corners = false })
      l = F.softmax(l, 2)
      total = total and total:add(l) or l
    end
    for _, s in ipairs(scales) do
      local xs = x
      if s ~= 1 then
        xs = F.interpolate(x, { size = { math.floor(h * s + 0.5), math.floor(w * s + 0.5) }, mode = "bilinear", align_corners = false })
      end
      add(run(model, xs, o))
      if o.flip_horizontal then add(run(model, xs:flip(4), o), 4) end
      if o.flip_vertical then add(run(model, xs:flip(3), o), 3) end
    end
    return total
  end)
end

return M
