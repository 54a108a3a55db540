-- transforms.lua: PaddleSeg's per-sample augmentations (names and arguments as paddleseg.transforms) over the C pipeline.
--
--   local T = require "moonseg.data.transforms"
--   local tf = T.Compose { T.ResizeStepScaling(0.125, 1.5, 0.125), T.RandomPaddingCrop({1024, 512}),
--                          T.RandomHorizontalFlip(), T.RandomDistort { brightness_range = 0.4 },
--                          T.Normalize() }
--   local img, label = tf:apply(img_u8_hwc, label_u8_hw, { seed = 1, epoch = 0, index = 17 })
--
-- Images are u8 (or f32) [H, W, 3] RGB, labels u8 [H, W] (255 = ignore). The result is an f32
-- [3, H', W'] image (normalised when Normalize is last, as it must be) and a u8 label. Every
-- random choice comes from Philox keyed by (seed, epoch, index): a sample's augmentation is the
-- same whichever thread or worker computes it. compose.ops / compose.n are the C op array that
-- loader threads pass to ms_transform_apply.
local ffi = require "ffi"
local L = require "moonseg.lib"
local Tensor = require "moonseg.tensor"
local C, ctx, check, out = L.C, L.ctx, L.check, L.out

local T = {}

local K = {
  ResizeStepScaling = 0, RandomPaddingCrop = 1, RandomHorizontalFlip = 2, RandomVerticalFlip = 3,
  RandomDistort = 4, Resize = 5, Normalize = 6, RandomScaleAspect = 7, Padding = 8,
  AdjustBrightness = 9, AdjustContrast = 10, AdjustSaturation = 11, AdjustHue = 12,
  AdjustSharpness = 13,
}
T.kinds = K

local Op = {}
Op.__index = Op
Op.__tostring = function(o)
  local parts = {}
  for i = 1, #o.args do parts[i] = tostring(o.args[i]) end
  return o.name .. "(" .. table.concat(parts, ", ") .. ")"
end

local function op(name, p, shown)
  return setmetatable({ name = name, kind = K[name], p = p, args = shown or p }, Op)
end

-- Arguments given positionally or as one table of names: f(a, b) or f{a_name = a, b_name = b}.
local function args(names, defaults, ...)
  local first = ...
  local named = false
  if select("#", ...) == 1 and type(first) == "table" then
    -- a table without list items is the named form ({} means all defaults)
    if #first == 0 and not Tensor.is_tensor(first) then named = true end
    for _, n in ipairs(names) do if first[n] ~= nil then named = true end end
    for k in pairs(first) do
      if type(k) == "string" then
        local known = false
        for _, n in ipairs(names) do if n == k then known = true end end
        if not known then error("unknown argument '" .. k .. "' (expected " .. table.concat(names, ", ") .. ")", 3) end
        named = true
      end
    end
  end
  local r, pos = {}, { ... } -- indexed, not select(i, ...): see tensor.lua's split_opts
  for i, n in ipairs(names) do
    local v
    if named then v = first[n] else v = pos[i] end
    if v == nil then v = defaults[i] end
    r[n] = v
  end
  return r
end

local function fail(name, msg) error(name .. ": " .. msg, 3) end

local function number(name, what, v, lo, hi)
  if type(v) ~= "number" or v ~= v then fail(name, what .. " must be a number, got " .. tostring(v)) end
  if (lo and v < lo) or (hi and v > hi) then
    fail(name, string.format("%s must be in [%s, %s], got %s", what, tostring(lo or "-inf"), tostring(hi or "inf"), tostring(v)))
  end
  return v
end

local function size_pair(name, what, v)
  if type(v) == "number" then v = { v, v } end
  if type(v) ~= "table" or #v ~= 2 then
    fail(name, what .. " must be {W, H} (or one number), got " .. tostring(v))
  end
  for i = 1, 2 do
    local s = v[i]
    if type(s) ~= "number" or s ~= math.floor(s) or s < 1 or s > 65536 then
      fail(name, string.format("%s must hold integers in [1, 65536], got {%s, %s}", what, tostring(v[1]), tostring(v[2])))
    end
  end
  return v[1], v[2]
end

local function triple(name, what, v)
  if type(v) == "number" then v = { v, v, v } end
  if type(v) ~= "table" or #v ~= 3 then fail(name, what .. " must hold 3 numbers (R, G, B)") end
  for i = 1, 3 do number(name, what, v[i]) end
  return v
end

local function pads(name, a)
  local ip = triple(name, "im_padding_value", a.im_padding_value)
  for i = 1, 3 do number(name, "im_padding_value", ip[i], 0, 255) end
  local lp = number(name, "label_padding_value", a.label_padding_value, 0, 255)
  if lp ~= math.floor(lp) then fail(name, "label_padding_value must be an integer, got " .. lp) end
  return ip, lp
end

function T.ResizeStepScaling(...)
  local n = "ResizeStepScaling"
  local a = args({ "min_scale_factor", "max_scale_factor", "scale_step_size" }, { 0.75, 1.25, 0.25 }, ...)
  number(n, "min_scale_factor", a.min_scale_factor)
  number(n, "max_scale_factor", a.max_scale_factor)
  number(n, "scale_step_size", a.scale_step_size, 0)
  if a.min_scale_factor <= 0 then fail(n, "min_scale_factor must be > 0, got " .. a.min_scale_factor) end
  if a.min_scale_factor > a.max_scale_factor then
    fail(n, string.format("min_scale_factor must be less than max_scale_factor, but they are %g and %g",
      a.min_scale_factor, a.max_scale_factor))
  end
  return op(n, { a.min_scale_factor, a.max_scale_factor, a.scale_step_size })
end

function T.RandomPaddingCrop(...)
  local n = "RandomPaddingCrop"
  local a = args({ "crop_size", "im_padding_value", "label_padding_value" }, { { 512, 512 }, 127.5, 255 }, ...)
  local w, h = size_pair(n, "crop_size", a.crop_size)
  local ip, lp = pads(n, a)
  return op(n, { w, h, ip[1], ip[2], ip[3], lp }, { "{" .. w .. ", " .. h .. "}" })
end

function T.Padding(...)
  local n = "Padding"
  local a = args({ "target_size", "im_padding_value", "label_padding_value" }, { nil, 127.5, 255 }, ...)
  local w, h = size_pair(n, "target_size", a.target_size)
  local ip, lp = pads(n, a)
  return op(n, { w, h, ip[1], ip[2], ip[3], lp }, { "{" .. w .. ", " .. h .. "}" })
end

function T.RandomHorizontalFlip(...)
  local a = args({ "prob" }, { 0.5 }, ...)
  return op("RandomHorizontalFlip", { number("RandomHorizontalFlip", "prob", a.prob, 0, 1) })
end

function T.RandomVerticalFlip(...)
  local a = args({ "prob" }, { 0.1 }, ...)
  return op("RandomVerticalFlip", { number("RandomVerticalFlip", "prob", a.prob, 0, 1) })
end

local distort_names = { "brightness_range", "brightness_prob", "contrast_range", "contrast_prob",
  "saturation_range", "saturation_prob", "hue_range", "hue_prob", "sharpness_range", "sharpness_prob" }
function T.RandomDistort(...)
  local n = "RandomDistort"
  local a = args(distort_names, { 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 18, 0.5, 0.5, 0 }, ...)
  local p = {}
  for i, k in ipairs(distort_names) do
    p[i] = number(n, k, a[k], 0, i % 2 == 0 and 1 or nil)
  end
  return op(n, p)
end

local interps = { NEAREST = 0, LINEAR = 1 }
function T.Resize(...)
  local n = "Resize"
  local a = args({ "target_size", "interp" }, { { 512, 512 }, "LINEAR" }, ...)
  local w, h = size_pair(n, "target_size", a.target_size)
  local code = interps[a.interp]
  if code == nil then
    fail(n, "interp must be 'NEAREST' or 'LINEAR' (CUBIC, AREA, LANCZOS4, RANDOM are not supported), got " .. tostring(a.interp))
  end
  return op(n, { w, h, code }, { "{" .. w .. ", " .. h .. "}", a.interp })
end

function T.Normalize(...)
  local n = "Normalize"
  local a = args({ "mean", "std" }, { { 0.5, 0.5, 0.5 }, { 0.5, 0.5, 0.5 } }, ...)
  local m, s = triple(n, "mean", a.mean), triple(n, "std", a.std)
  for i = 1, 3 do if s[i] == 0 then fail(n, "std is invalid (a zero entry)") end end
  return op(n, { m[1], m[2], m[3], s[1], s[2], s[3] },
    { "{" .. table.concat(m, ", ") .. "}", "{" .. table.concat(s, ", ") .. "}" })
end

function T.RandomScaleAspect(...)
  local n = "RandomScaleAspect"
  local a = args({ "min_scale", "aspect_ratio" }, { 0.5, 0.33 }, ...)
  return op(n, { number(n, "min_scale", a.min_scale, 0, 1), number(n, "aspect_ratio", a.aspect_ratio, 0) })
end

-- Deterministic colour adjustments (PIL ImageEnhance factors; hue: delta on PIL's 0..255 HSV hue).
for _, name in ipairs { "AdjustBrightness", "AdjustContrast", "AdjustSaturation", "AdjustHue", "AdjustSharpness" } do
  T[name] = function(f) return op(name, { number(name, "factor", f) }) end
end

-- ---- Compose ----------------------------------------------------------------------------
local Compose = {}
Compose.__index = Compose
Compose.__tostring = function(c)
  local parts = {}
  for i, o in ipairs(c.transforms) do parts[i] = "  " .. tostring(o) end
  return "Compose(\n" .. table.concat(parts, ",\n") .. "\n)"
end

function T.Compose(transforms)
  if type(transforms) ~= "table" then error("Compose: transforms must be a list", 2) end
  local n = #transforms
  local ops = ffi.new("ms_transform[?]", math.max(n, 1))
  for i, o in ipairs(transforms) do
    if getmetatable(o) ~= Op then error("Compose: element " .. i .. " is not a transform", 2) end
    if o.kind == K.Normalize and i ~= n then
      error("Compose: Normalize (element " .. i .. " of " .. n .. ") must be the last transform", 2)
    end
    ops[i - 1].kind = o.kind
    for j = 1, #o.p do ops[i - 1].p[j - 1] = o.p[j] end
  end
  return setmetatable({ transforms = transforms, ops = ops, n = n }, Compose)
end

local function u64(name, v)
  v = v or 0
  if type(v) ~= "number" or v < 0 or v ~= math.floor(v) then
    error("Compose:apply: " .. name .. " must be a non-negative integer, got " .. tostring(v), 3)
  end
  return v
end

-- img u8/f32 [H, W, 3], label u8 [H, W] or nil -> f32 [3, H', W'], u8 [H', W'] (or nil).
function Compose:apply(img, label, opts)
  opts = opts or {}
  if not Tensor.is_tensor(img) then error("Compose:apply: image must be a tensor", 2) end
  if label ~= nil and not Tensor.is_tensor(label) then error("Compose:apply: label must be a tensor or nil", 2) end
  local seed, epoch, index = u64("seed", opts.seed), u64("epoch", opts.epoch), u64("index", opts.index)
  local lh = label and Tensor.handle(label) or nil
  out[0], out[1] = nil, nil
  check(C.ms_transform_apply(ctx, self.ops, self.n, seed, epoch, index, Tensor.handle(img), lh,
    out, out + 1), 2)
  local li = out[1]
  local im = Tensor.wrap(out[0])
  if label then return im, Tensor.wrap(li) end
  return im
end
Compose.__call = Compose.apply

return T
