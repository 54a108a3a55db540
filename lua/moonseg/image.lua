-- image.lua: PNG/JPEG reading and writing (ms.image), and PaddleSeg's pseudo-colour palette.
local ffi = require "ffi"
local bit = require "bit"
local L = require "moonseg.lib"
local T = require "moonseg.tensor"
local C, ctx, out = L.C, L.ctx, L.out

local M = {}

-- "image": u8 [H, W, 3] RGB; "label": [H, W] palette indices / gray values (u8, i32 for
-- 16-bit); "unchanged": [H, W, C] with the file's own channels (u8, i32 for 16-bit).
local modes = { image = 0, rgb = 0, label = 1, unchanged = 2 }

local function mode_arg(opts, fname)
  if opts ~= nil and type(opts) ~= "table" then
    error(fname .. ": options must be a table like {mode = \"label\"}, got " .. type(opts), 3)
  end
  local m = opts and opts.mode or "image"
  local code = modes[m]
  if code == nil then
    error(fname .. ": unknown mode '" .. tostring(m) .. "' (image, label, unchanged)", 3)
  end
  return code
end

-- ms.image.read(path[, {mode = "image"|"label"|"unchanged"}]) -> Tensor
function M.read(path, opts)
  if type(path) ~= "string" then error("image.read: path must be a string, got " .. type(path), 2) end
  return T.take(C.ms_image_read(ctx, path, mode_arg(opts, "image.read"), out), 2)
end

-- ms.image.decode(bytes[, {mode =, name = "for error messages"}]): a file's bytes as a Lua string.
function M.decode(bytes, opts)
  if type(bytes) ~= "string" then error("image.decode: bytes must be a string, got " .. type(bytes), 2) end
  local mode = mode_arg(opts, "image.decode")
  local name = opts and opts.name or "<memory>"
  return T.take(C.ms_image_decode(ctx, bytes, #bytes, mode, name, out), 2)
end

-- Accepts {{r, g, b}, ...} or a flat {r, g, b, r, g, b, ...}; returns a uint8_t[] and a count.
local function palette_arg(p)
  if type(p) ~= "table" then error("image.write_png: palette must be a table of {r, g, b}", 3) end
  local flat = {}
  if type(p[1]) == "table" then
    for i, c in ipairs(p) do
      if type(c) ~= "table" or #c ~= 3 then
        error("image.write_png: palette entry " .. i .. " is not an {r, g, b} triple", 3)
      end
      for k = 1, 3 do flat[#flat + 1] = c[k] end
    end
  else
    for i = 1, #p do flat[i] = p[i] end
    if #flat % 3 ~= 0 then
      error("image.write_png: a flat palette needs a multiple of 3 values, got " .. #flat, 3)
    end
  end
  local n = #flat / 3
  if n < 1 or n > 256 then error("image.write_png: palette needs 1..256 colours, got " .. n, 3) end
  local buf = ffi.new("uint8_t[?]", #flat)
  for i, v in ipairs(flat) do
    if type(v) ~= "number" or v < 0 or v > 255 or v ~= math.floor(v) then
      error("image.write_png: palette value " .. tostring(v) .. " is not an integer in 0..255", 3)
    end
    buf[i - 1] = v
  end
  return buf, n
end

-- ms.image.write_png(path, t[, {palette = {{r, g, b}, ...}}]): t u8 [H, W] / [H, W, C]
-- (C = 1..4), or i32/i64 for 16-bit samples; a palette makes a palette PNG of u8 indices.
function M.write_png(path, t, opts)
  if type(path) ~= "string" then error("image.write_png: path must be a string", 2) end
  if not T.is_tensor(t) then error("image.write_png: expected a tensor, got " .. type(t), 2) end
  local pal, n = nil, 0
  if opts and opts.palette then pal, n = palette_arg(opts.palette) end
  L.check(C.ms_png_write(ctx, path, T.handle(t), pal, n), 2)
end

local subsamplings = { ["4:4:4"] = 444, ["4:2:2"] = 422, ["4:2:0"] = 420 }

-- ms.image.write_jpeg(path, t[, {quality = 95, subsampling = "4:2:0"}]): t u8 [H, W] or [H, W, 3].
function M.write_jpeg(path, t, opts)
  if type(path) ~= "string" then error("image.write_jpeg: path must be a string", 2) end
  if not T.is_tensor(t) then error("image.write_jpeg: expected a tensor, got " .. type(t), 2) end
  opts = opts or {}
  local sub = subsamplings[opts.subsampling or "4:2:0"]
  if not sub then
    error("image.write_jpeg: subsampling must be \"4:4:4\", \"4:2:2\" or \"4:2:0\", got " ..
      tostring(opts.subsampling), 2)
  end
  L.check(C.ms_jpeg_write(ctx, path, T.handle(t), opts.quality or 95, sub), 2)
end

-- The PASCAL VOC colour map: class i's colour interleaves the bits of i over R, G, B
-- from the most significant bit down. Returns n {r, g, b} triples (class 0 is black).
function M.voc_palette(n)
  local pal = {}
  for i = 0, n - 1 do
    local r, g, b, lab, j = 0, 0, 0, i, 0
    while lab > 0 do
      r = bit.bor(r, bit.lshift(bit.band(lab, 1), 7 - j))
      g = bit.bor(g, bit.lshift(bit.band(bit.rshift(lab, 1), 1), 7 - j))
      b = bit.bor(b, bit.lshift(bit.band(bit.rshift(lab, 2), 1), 7 - j))
      j = j + 1
      lab = bit.rshift(lab, 3)
    end
    pal[i + 1] = { r, g, b }
  end
  return pal
end

-- PaddleSeg's get_color_map_list(n), which get_pseudo_color_map puts on prediction
-- PNGs: the VOC colour map without its first (black) entry, so class 0 is (128, 0, 0).
function M.pseudo_color_palette(n)
  n = n or 256
  local voc = M.voc_palette(n + 1)
  table.remove(voc, 1)
  return voc
end

return M
