-- synthetic.lua: the built-in dataset: a deterministic generator that writes a PaddleSeg-format
-- data set (JPEG images, palette PNG labels, train/val lists) into a cache directory, atomically.
--
-- Scenes: a textured, noisy, low-saturation background with several objects of four classes
-- (disc, rectangle, triangle, ring), each class with its own colour family and shape, drawn
-- in sequence so later objects occlude earlier ones; image sizes vary. Colour alone nearly
-- separates the classes and shape settles the rest, so a working model learns it quickly,
-- while a broken one (or a loader that misaligns images and labels) stays far below.
local ffi = require "ffi"
local bit = require "bit"

local S = { VERSION = 1, NUM_CLASSES = 5, CLASS_NAMES = { "background", "disc", "rectangle", "triangle", "ring" } }

-- Deterministic generator (xorshift64*, in doubles-safe 32-bit pieces via the bit library).
local function rng(seed)
  local s = ffi.new("uint64_t[1]", 0x9E3779B97F4A7C15ULL + seed * 0x100000001B3ULL)
  return function()
    local x = s[0]
    x = bit.bxor(x, bit.rshift(x, 12))
    x = bit.bxor(x, bit.lshift(x, 25))
    x = bit.bxor(x, bit.rshift(x, 27))
    s[0] = x
    return tonumber(bit.rshift(x * 0x2545F4914F6CDD1DULL, 11)) / 9007199254740992 -- [0, 1)
  end
end

-- Class colour families (RGB centres); objects jitter around them.
local family = { { 220, 40, 40 }, { 40, 200, 60 }, { 50, 80, 230 }, { 235, 200, 30 } }

local function clamp8(v) return v < 0 and 0 or (v > 255 and 255 or math.floor(v + 0.5)) end

-- Draws one scene into img (u8 HWC) and lab (u8 HW).
local function draw_scene(rand, w, h, img, lab)
  -- Background: two crossed sinusoids over a grey level plus per-pixel noise.
  local g = 90 + rand() * 80
  local fx, fy = 0.02 + rand() * 0.1, 0.02 + rand() * 0.1
  local tint = { rand() * 30 - 15, rand() * 30 - 15, rand() * 30 - 15 }
  for y = 0, h - 1 do
    for x = 0, w - 1 do
      local t = 25 * math.sin(x * fx + y * 0.3 * fy) * math.cos(y * fy)
      local o = (y * w + x) * 3
      for c = 0, 2 do img[o + c] = clamp8(g + t + tint[c + 1] + (rand() - 0.5) * 40) end
      lab[y * w + x] = 0
    end
  end
  local nobj = 3 + math.floor(rand() * 4)
  for _ = 1, nobj do
    local cls = 1 + math.floor(rand() * 4)
    local f = family[cls]
    local col = { f[1] + (rand() - 0.5) * 40, f[2] + (rand() - 0.5) * 40, f[3] + (rand() - 0.5) * 40 }
    local size = math.min(w, h) * (0.12 + rand() * 0.18)
    local cx, cy = rand() * w, rand() * h
    local ang = rand() * math.pi * 2
    local ca, sa = math.cos(ang), math.sin(ang)
    local asp = 0.5 + rand()
    local x0, x1 = math.max(0, math.floor(cx - size * 1.5)), math.min(w - 1, math.ceil(cx + size * 1.5))
    local y0, y1 = math.max(0, math.floor(cy - size * 1.5)), math.min(h - 1, math.ceil(cy + size * 1.5))
    for y = y0, y1 do
      for x = x0, x1 do
        local dx, dy = x - cx, y - cy
        local u, v = dx * ca + dy * sa, -dx * sa + dy * ca -- rotated coordinates
        local inside
        if cls == 1 then
          inside = dx * dx + dy * dy <= size * size
        elseif cls == 2 then
          inside = math.abs(u) <= size * asp and math.abs(v) <= size / asp * 0.8
        elseif cls == 3 then
          -- upward triangle in rotated frame: v in [-size, size], |u| <= (v + size) / 2
          inside = v >= -size and v <= size * 0.8 and math.abs(u) <= (v + size) * 0.6
        else
          local r2 = dx * dx + dy * dy
          inside = r2 <= size * size and r2 >= (size * 0.55) ^ 2
        end
        if inside then
          local o = (y * w + x) * 3
          local shade = 0.85 + 0.3 * (u / (size * 2) + 0.5)
          for c = 0, 2 do img[o + c] = clamp8(col[c + 1] * shade + (rand() - 0.5) * 30) end
          lab[y * w + x] = cls
        end
      end
    end
  end
end

local function default_cache_dir()
  local env = os.getenv("MOONSEG_CACHE")
  if env and env ~= "" then return env end
  local xdg = os.getenv("XDG_CACHE_HOME")
  if xdg and xdg ~= "" then return xdg .. "/moonseg" end
  return (os.getenv("HOME") or "/tmp") .. "/.cache/moonseg"
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == 0 or ok == true
end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- ms.data.synthetic.ensure{dir=, train=, val=, seed=, min_size=, max_size=} -> dataset root.
-- Generates into a temporary sibling directory and renames it into place when complete, so
-- a half-written data set is never seen (a "complete" marker is checked too).
function S.ensure(opts)
  opts = opts or {}
  local ms = require "moonseg"
  local ntrain, nval = opts.train or 160, opts.val or 40
  local lo, hi = opts.min_size or 160, opts.max_size or 256
  local seed = opts.seed or 2024
  local name = string.format("synthetic_v%d_%d_%d_%d_%d_%d", S.VERSION, ntrain, nval, lo, hi, seed)
  local base = opts.dir or default_cache_dir()
  local root = base .. "/" .. name
  if exists(root .. "/complete") then return root end
  if not sh("mkdir -p " .. quote(base)) then error("synthetic: cannot create cache directory " .. base, 2) end
  local tmp = string.format("%s.tmp.%d.%d", root, math.floor(ms.time() * 1e6) % 1000000000, math.random(1e9))
  if not sh("mkdir -p " .. quote(tmp .. "/images") .. " " .. quote(tmp .. "/labels")) then
    error("synthetic: cannot create " .. tmp, 2)
  end
  local palette = ms.image.pseudo_color_palette(S.NUM_CLASSES)
  local lists = { train = {}, val = {} }
  local idx = 0
  for _, split in ipairs { "train", "val" } do
    local n = split == "train" and ntrain or nval
    for i = 1, n do
      idx = idx + 1
      local rand = rng(seed * 100003 + idx)
      local w = lo + math.floor(rand() * (hi - lo + 1))
      local h = lo + math.floor(rand() * (hi - lo + 1))
      local img = ffi.new("uint8_t[?]", w * h * 3)
      local lab = ffi.new("uint8_t[?]", w * h)
      draw_scene(rand, w, h, img, lab)
      local it = ms.lib.C
      local shp = ffi.new("int64_t[3]", h, w, 3)
      local ti = ms.Tensor.take(it.ms_from_host(ms.lib.ctx, img, w * h * 3, shp, 3, 6, 0, 0, ms.lib.out))
      local tl = ms.Tensor.take(it.ms_from_host(ms.lib.ctx, lab, w * h, shp, 2, 6, 0, 0, ms.lib.out))
      local stem = string.format("%s_%04d", split, i)
      ms.image.write_jpeg(tmp .. "/images/" .. stem .. ".jpg", ti, { quality = 92 })
      ms.image.write_png(tmp .. "/labels/" .. stem .. ".png", tl, { palette = palette })
      ti:free()
      tl:free()
      lists[split][i] = "images/" .. stem .. ".jpg labels/" .. stem .. ".png"
    end
  end
  for split, lines in pairs(lists) do
    local f = assert(io.open(tmp .. "/" .. split .. "_list.txt", "w"))
    f:write(table.concat(lines, "\n"), "\n")
    f:close()
  end
  local f = assert(io.open(tmp .. "/labels.txt", "w"))
  f:write(table.concat(S.CLASS_NAMES, "\n"), "\n")
  f:close()
  f = assert(io.open(tmp .. "/complete", "w"))
  f:write("moonseg synthetic data set v" .. S.VERSION .. "\n")
  f:close()
  -- rename(2) of a directory is atomic; if another process finished first, keep theirs.
  local ok = os.rename(tmp, root)
  if not ok then
    sh("rm -rf " .. quote(tmp))
    if not exists(root .. "/complete") then error("synthetic: could not move the data set into " .. root, 2) end
  end
  return root
end

S.draw_scene = draw_scene
S.rng = rng
return S
