-- test_image.lua: PNG/JPEG decoding and writing (ms.image): round trips, PIL-made fixtures, bad files.
local H = require "harness"
local ms = require "moonseg"
local img = ms.image

local function source_dir()
  local env = os.getenv("MOONSEG_SOURCE_DIR")
  if env and env ~= "" then return env end
  local src = debug.getinfo(1, "S").source:sub(2)
  return (src:match("^(.*)/tests/lua/[^/]*$") or "../..")
end
local DATA = source_dir() .. "/tests/data/"
local expected = dofile(DATA .. "image_fixtures_expected.lua")

-- A private scratch directory, removed at the end.
local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute("mkdir -p '" .. TMP .. "'") == 0 or true)
local function tmp(name) return TMP .. "/" .. name end

local read_bytes, write_bytes, exists = H.read_file, H.write_file, H.exists
local function dir_entries(path)
  local p = io.popen("ls -A '" .. path .. "'")
  local list = {}
  for l in p:lines() do list[#list + 1] = l end
  p:close()
  return list
end

-- Nested table builders: grid(h, w, f) -> {{f(y, x)}}, f may return a number or a table (channels).
local function grid(h, w, f)
  local t = {}
  for y = 1, h do
    t[y] = {}
    for x = 1, w do t[y][x] = f(y, x) end
  end
  return t
end

local function deep_eq(a, b, path)
  path = path or ""
  if type(b) == "table" then
    H.eq(type(a), "table", "shape at " .. path)
    H.eq(#a, #b, "length at " .. path)
    for i = 1, #b do deep_eq(a[i], b[i], path .. "[" .. i .. "]") end
  else
    H.eq(a, b, "value at " .. path)
  end
end

-- Largest |a - b| over nested tables of equal shape.
local function max_diff(a, b)
  if type(b) ~= "table" then return math.abs(a - b) end
  H.eq(#a, #b, "length")
  local m = 0
  for i = 1, #b do m = math.max(m, max_diff(a[i], b[i])) end
  return m
end

-- ---- PNG round trips (written by us, read back) ----------------------------------------
H.case("png gray u8 round trip in all modes", function()
  local v = grid(5, 7, function(y, x) return (y * 37 + x * 11) % 256 end)
  img.write_png(tmp("g.png"), ms.tensor(v, { dtype = "u8" }))
  local lab = img.read(tmp("g.png"), { mode = "label" })
  H.eq(lab.dtype, "u8")
  H.same_list(lab.shape, { 5, 7 })
  deep_eq(lab:tolist(), v)
  local rgb = img.read(tmp("g.png"))
  H.same_list(rgb.shape, { 5, 7, 3 })
  deep_eq(rgb:tolist(), grid(5, 7, function(y, x) local g = v[y][x]; return { g, g, g } end))
  local un = img.read(tmp("g.png"), { mode = "unchanged" })
  H.same_list(un.shape, { 5, 7, 1 })
  deep_eq(un:tolist(), grid(5, 7, function(y, x) return { v[y][x] } end))
end)

H.case("png RGB, RGBA and gray+alpha round trips", function()
  local rgb = grid(4, 6, function(y, x) return { (y * 50 + x) % 256, (x * 40) % 256, (y * x * 13) % 256 } end)
  img.write_png(tmp("rgb.png"), ms.tensor(rgb, { dtype = "u8" }))
  deep_eq(img.read(tmp("rgb.png")):tolist(), rgb)
  deep_eq(img.read(tmp("rgb.png"), { mode = "unchanged" }):tolist(), rgb)

  local rgba = grid(3, 5, function(y, x) return { x * 50, y * 60, 255 - x, (x * y * 17) % 256 } end)
  img.write_png(tmp("rgba.png"), ms.tensor(rgba, { dtype = "u8" }))
  local un = img.read(tmp("rgba.png"), { mode = "unchanged" })
  H.same_list(un.shape, { 3, 5, 4 })
  deep_eq(un:tolist(), rgba)
  deep_eq(img.read(tmp("rgba.png")):tolist(),
    grid(3, 5, function(y, x) local p = rgba[y][x]; return { p[1], p[2], p[3] } end))

  local ga = grid(2, 3, function(y, x) return { y * 100 + x, 255 - x * 7 } end)
  img.write_png(tmp("ga.png"), ms.tensor(ga, { dtype = "u8" }))
  deep_eq(img.read(tmp("ga.png"), { mode = "unchanged" }):tolist(), ga)
  deep_eq(img.read(tmp("ga.png")):tolist(),
    grid(2, 3, function(y, x) local g = ga[y][x][1]; return { g, g, g } end))
  H.raises(function() img.read(tmp("ga.png"), { mode = "label" }) end, tmp("ga.png"), "gray+alpha")
  H.raises(function() img.read(tmp("rgb.png"), { mode = "label" }) end, tmp("rgb.png"),
    "single-channel", "RGB")
end)

H.case("png palette: label mode gives indices, image mode colours", function()
  local idx = grid(4, 9, function(y, x) return (x * 3 + y) % 12 end)
  idx[1][1] = 255 -- the usual ignore index
  local pal = {}
  for i = 1, 256 do pal[i] = { (i * 7) % 256, 255 - (i % 200), (i * 53) % 256 } end
  img.write_png(tmp("p.png"), ms.tensor(idx, { dtype = "u8" }), { palette = pal })
  local lab = img.read(tmp("p.png"), { mode = "label" })
  H.eq(lab.dtype, "u8")
  deep_eq(lab:tolist(), idx)
  deep_eq(img.read(tmp("p.png")):tolist(), grid(4, 9, function(y, x) return pal[idx[y][x] + 1] end))
  deep_eq(img.read(tmp("p.png"), { mode = "unchanged" }):tolist(),
    grid(4, 9, function(y, x) return pal[idx[y][x] + 1] end))
  -- a flat palette {r, g, b, ...} and a short palette work too
  img.write_png(tmp("p2.png"), ms.tensor({ { 0, 1 }, { 1, 0 } }, { dtype = "u8" }),
    { palette = { 9, 8, 7, 6, 5, 4 } })
  deep_eq(img.read(tmp("p2.png")):tolist(), { { { 9, 8, 7 }, { 6, 5, 4 } }, { { 6, 5, 4 }, { 9, 8, 7 } } })
  deep_eq(img.read(tmp("p2.png"), { mode = "label" }):tolist(), { { 0, 1 }, { 1, 0 } })
end)

H.case("png 16-bit: label values as i32, image mode scaled to 8 bits", function()
  local v = { { 0, 1, 255, 256, 1000 }, { 32767, 40000, 65280, 65534, 65535 } }
  img.write_png(tmp("g16.png"), ms.tensor(v, { dtype = "i32" }))
  local lab = img.read(tmp("g16.png"), { mode = "label" })
  H.eq(lab.dtype, "i32")
  deep_eq(lab:tolist(), v)
  -- 8-bit value = round(v * 255 / 65535) (none of these sits on a .5 tie)
  local want = grid(2, 5, function(y, x)
    local g = math.floor(v[y][x] * 255 / 65535 + 0.5)
    return { g, g, g }
  end)
  deep_eq(img.read(tmp("g16.png")):tolist(), want)
  -- 16-bit RGB from i64 through unchanged mode
  local c = grid(2, 3, function(y, x) return { y * 20000 + x, 65535 - x * 999, x * y * 4097 } end)
  img.write_png(tmp("c16.png"), ms.tensor(c, { dtype = "i64" }))
  local un = img.read(tmp("c16.png"), { mode = "unchanged" })
  H.eq(un.dtype, "i32")
  H.same_list(un.shape, { 2, 3, 3 })
  deep_eq(un:tolist(), c)
end)

H.case("png write of non-contiguous views and size-1 images", function()
  local v = grid(3, 4, function(y, x) return y * 10 + x end)
  local t = ms.tensor(v, { dtype = "u8" }):t() -- [4, 3], transposed strides
  img.write_png(tmp("t.png"), t)
  deep_eq(img.read(tmp("t.png"), { mode = "label" }):tolist(), grid(4, 3, function(y, x) return v[x][y] end))
  img.write_png(tmp("one.png"), ms.tensor({ { 42 } }, { dtype = "u8" }))
  deep_eq(img.read(tmp("one.png")):tolist(), { { { 42, 42, 42 } } })
end)

-- ---- decoding files made by PIL (an independent encoder) ----------------------------------
H.case("PIL palette PNGs read as indices (PIL's P mode) and as colours", function()
  local lab = img.read(DATA .. "pil_palette.png", { mode = "label" })
  H.eq(lab.dtype, "u8")
  deep_eq(lab:tolist(), expected.palette_indices)
  deep_eq(img.read(DATA .. "pil_palette.png"):tolist(), expected.palette_rgb)
  deep_eq(img.read(DATA .. "pil_palette4.png", { mode = "label" }):tolist(), expected.palette4_indices)
end)

H.case("PIL 2-bit palette PNG with tRNS: indices, RGB, or RGBA when unchanged", function()
  local f = DATA .. "pil_palette_trns.png"
  deep_eq(img.read(f, { mode = "label" }):tolist(), { { 0, 1, 2 } })
  local rgba = expected.palette_trns_rgba
  deep_eq(img.read(f, { mode = "unchanged" }):tolist(), rgba)
  deep_eq(img.read(f):tolist(), { { { 10, 20, 30 }, { 40, 50, 60 }, { 70, 80, 90 } } })
end)

H.case("PIL 16-bit gray, RGBA and 1-bit PNGs", function()
  local g = img.read(DATA .. "pil_gray16.png", { mode = "label" })
  H.eq(g.dtype, "i32")
  deep_eq(g:tolist(), expected.gray16)
  deep_eq(img.read(DATA .. "pil_rgba.png", { mode = "unchanged" }):tolist(), expected.rgba)
  local rgb = img.read(DATA .. "pil_rgba.png")
  H.same_list(rgb.shape, { 2, 3, 3 })
  deep_eq(rgb:tolist(), grid(2, 3, function(y, x) local p = expected.rgba[y][x]; return { p[1], p[2], p[3] } end))
  deep_eq(img.read(DATA .. "pil_bits1.png", { mode = "label" }):tolist(), expected.bits1)
  deep_eq(img.read(DATA .. "pil_bits1.png"):tolist(),
    grid(2, 9, function(y, x) local b = expected.bits1[y][x] * 255; return { b, b, b } end))
end)

H.case("PIL JPEGs decode as PIL decodes them", function()
  local g = img.read(DATA .. "pil_gray.jpg")
  H.same_list(g.shape, { 8, 8, 3 })
  local gl = g:tolist()
  -- gray JPEG in image mode: three equal channels, PIL's values (same libjpeg-turbo: exact;
  -- 1 allowed for another IDCT build)
  local d = 0
  for y = 1, 8 do
    for x = 1, 8 do
      local p = gl[y][x]
      H.eq(p[1], p[2], "channels equal")
      H.eq(p[1], p[3], "channels equal")
      d = math.max(d, math.abs(p[1] - expected.gray_jpeg[y][x]))
    end
  end
  H.eq(d <= 1, true, "gray JPEG differs from PIL by " .. d)
  H.eq(max_diff(img.read(DATA .. "pil_gray.jpg", { mode = "label" }):tolist(), expected.gray_jpeg) <= 1, true)
  H.same_list(img.read(DATA .. "pil_gray.jpg", { mode = "unchanged" }).shape, { 8, 8, 1 })
  local rgb = img.read(DATA .. "pil_rgb.jpg")
  H.same_list(rgb.shape, { 6, 8, 3 })
  local rd = max_diff(rgb:tolist(), expected.rgb_jpeg)
  H.eq(rd <= 1, true, "RGB JPEG differs from PIL by " .. rd)
  H.raises(function() img.read(DATA .. "pil_rgb.jpg", { mode = "label" }) end, "pil_rgb.jpg", "color JPEG")
end)

-- ---- JPEG round trips ----------------------------------------------------------------------
H.case("jpeg RGB round trip at quality 95 on a smooth image", function()
  local h, w = 24, 32
  local v = grid(h, w, function(y, x)
    return { math.floor(128 + 100 * math.sin(x / 6)), math.floor(y * 6 + x * 2),
             math.floor(200 - 3 * x - 2 * y) }
  end)
  for _, sub in ipairs { "4:4:4", "4:2:0" } do
    img.write_jpeg(tmp("rgb.jpg"), ms.tensor(v, { dtype = "u8" }), { quality = 95, subsampling = sub })
    local r = img.read(tmp("rgb.jpg"))
    H.same_list(r.shape, { h, w, 3 })
    local got = r:tolist()
    local maxd, sum = 0, 0
    for y = 1, h do
      for x = 1, w do
        for c = 1, 3 do
          local dd = math.abs(got[y][x][c] - v[y][x][c])
          maxd, sum = math.max(maxd, dd), sum + dd
        end
      end
    end
    H.eq(maxd <= 12, true, sub .. " max difference " .. maxd)
    H.eq(sum / (h * w * 3) < 2, true, sub .. " mean difference " .. sum / (h * w * 3))
  end
end)

H.case("jpeg gray written by us reads as 3 equal channels", function()
  local v = grid(16, 16, function(y, x) return 60 + 4 * x + 3 * y end)
  img.write_jpeg(tmp("g.jpg"), ms.tensor(v, { dtype = "u8" }), { quality = 95 })
  local r = img.read(tmp("g.jpg")):tolist()
  local maxd = 0
  for y = 1, 16 do
    for x = 1, 16 do
      H.eq(r[y][x][1], r[y][x][2])
      H.eq(r[y][x][1], r[y][x][3])
      maxd = math.max(maxd, math.abs(r[y][x][1] - v[y][x]))
    end
  end
  H.eq(maxd <= 4, true, "max difference " .. maxd)
  -- [H, W, 1] input works the same
  img.write_jpeg(tmp("g1.jpg"), ms.tensor(v, { dtype = "u8" }):unsqueeze(-1), { quality = 95 })
  H.same_list(img.read(tmp("g1.jpg"), { mode = "unchanged" }).shape, { 16, 16, 1 })
end)

H.case("decode from memory matches read, sniffing content not extension", function()
  for _, f in ipairs { "pil_palette.png", "pil_rgb.jpg", "pil_gray16.png" } do
    local bytes = read_bytes(DATA .. f)
    for _, mode in ipairs { "image", "unchanged" } do
      deep_eq(img.decode(bytes, { mode = mode }):tolist(), img.read(DATA .. f, { mode = mode }):tolist())
    end
  end
  -- a JPEG named .png is still read as a JPEG
  write_bytes(tmp("really_a_jpeg.png"), read_bytes(DATA .. "pil_gray.jpg"))
  H.same_list(img.read(tmp("really_a_jpeg.png")).shape, { 8, 8, 3 })
end)

-- ---- bad files: an error naming the file, never a crash -------------------------------------
H.case("missing, empty, text, truncated and corrupt files", function()
  H.raises(function() img.read(tmp("nope.png")) end, "image_read", tmp("nope.png"), "No such file")
  H.raises(function() img.read(TMP) end, TMP, "directory")
  write_bytes(tmp("empty.png"), "")
  H.raises(function() img.read(tmp("empty.png")) end, tmp("empty.png"), "empty file")
  write_bytes(tmp("text.png"), "hello, this is not an image\n")
  H.raises(function() img.read(tmp("text.png")) end, tmp("text.png"), "unknown image format", "68 65 6c")
  local png = read_bytes(DATA .. "pil_palette.png")
  write_bytes(tmp("half.png"), png:sub(1, math.floor(#png / 2)))
  H.raises(function() img.read(tmp("half.png"), { mode = "label" }) end, tmp("half.png"), "PNG", "libpng")
  -- flip bytes in the middle (PLTE/IDAT): CRC or zlib error
  local bad = png:sub(1, 100) .. string.char(png:byte(101) ~= 0 and 0 or 1) .. png:sub(102)
  write_bytes(tmp("crc.png"), bad)
  H.raises(function() img.read(tmp("crc.png")) end, tmp("crc.png"), "corrupt or truncated PNG")
  write_bytes(tmp("sig.png"), png:sub(1, 8)) -- signature only
  H.raises(function() img.read(tmp("sig.png")) end, tmp("sig.png"), "PNG")
  local jpg = read_bytes(DATA .. "pil_rgb.jpg")
  write_bytes(tmp("half.jpg"), jpg:sub(1, math.floor(#jpg / 2)))
  H.raises(function() img.read(tmp("half.jpg")) end, tmp("half.jpg"), "JPEG", "libjpeg")
  write_bytes(tmp("head.jpg"), jpg:sub(1, 3) .. string.rep("\0", 40))
  H.raises(function() img.read(tmp("head.jpg")) end, tmp("head.jpg"), "JPEG")
  H.raises(function() img.decode("") end, "<memory>", "empty")
  H.raises(function() img.decode(png:sub(1, 40), { name = "item 7" }) end, "item 7")
end)

H.case("random corruptions of PNG and JPEG bytes never crash", function()
  local seed = 12345
  local function rand(n) -- small LCG, deterministic
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed % n
  end
  local ok, failed = 0, 0
  for _, f in ipairs { "pil_palette.png", "pil_rgba.png", "pil_gray16.png", "pil_rgb.jpg", "pil_gray.jpg" } do
    local src = read_bytes(DATA .. f)
    for _ = 1, 120 do
      local b = { src:byte(1, -1) }
      local kind = rand(3)
      if kind == 0 then -- flip a few bytes past the signature
        for _ = 1, 1 + rand(4) do
          local i = 9 + rand(#b - 8)
          b[i] = rand(256)
        end
      elseif kind == 1 then -- truncate
        for i = #b, 9 + rand(#b - 8), -1 do b[i] = nil end
      else -- overwrite a run with 0xff
        local i = 9 + rand(#b - 8)
        for j = i, math.min(#b, i + rand(16)) do b[j] = 255 end
      end
      local s = string.char(unpack(b))
      for _, mode in ipairs { "image", "label", "unchanged" } do
        local good, r = pcall(img.decode, s, { mode = mode, name = "fuzz" })
        if good then
          -- a decoded corruption is still a well-formed HWC/HW u8 image
          H.eq(r:type() == "u8" or r:type() == "i32", true, "decoded dtype " .. r:type())
          H.eq(r:dim() >= 2 and r:size(1) > 0 and r:size(2) > 0, true, "decoded shape")
          ok = ok + 1
        else
          -- a rejected one names the input, never a bare library message
          if not tostring(r):find("fuzz", 1, true) then error("decode error does not name the input: " .. tostring(r)) end
          failed = failed + 1
        end
      end
    end
  end
  H.eq(failed > 0, true, "some corruptions must be detected")
  H.eq(ok > 0, true, "some corruptions (e.g. in pixel data) still decode")
end)

-- ---- writing: argument errors, failed writes leave nothing behind ----------------------------
H.case("failed writes leave no file at the target and no temporary", function()
  local dir = tmp("w")
  os.execute("mkdir -p '" .. dir .. "'")
  local u8 = ms.tensor({ { 1, 2 }, { 3, 4 } }, { dtype = "u8" })
  H.raises(function() img.write_png(dir .. "/f.png", ms.tensor({ { 1.5 } })) end, "png_write", "f32")
  H.raises(function() img.write_png(dir .. "/f.png", u8, { palette = { { 1, 2, 3 } } }) end,
    "png_write", "index 1", "palette of 1")
  H.raises(function() img.write_png(dir .. "/f.png", ms.tensor({ { 70000 } }, { dtype = "i32" })) end,
    "png_write", "70000")
  H.raises(function() img.write_png(dir .. "/f.png", ms.zeros(2, 2, 5, { dtype = "u8" })) end, "png_write", "C in 1..4")
  H.raises(function() img.write_png(dir .. "/f.png", ms.zeros(0, 3, { dtype = "u8" })) end, "png_write")
  H.raises(function() img.write_jpeg(dir .. "/f.jpg", ms.zeros(2, 2, 4, { dtype = "u8" })) end, "jpeg_write", "[2, 2, 4]")
  H.raises(function() img.write_jpeg(dir .. "/f.jpg", u8, { quality = 0 }) end, "jpeg_write", "quality")
  H.raises(function() img.write_jpeg(dir .. "/f.jpg", u8, { subsampling = "4:1:1" }) end, "subsampling")
  H.raises(function() img.write_png(dir .. "/no/such/dir/f.png", u8) end, "png_write", "f.png")
  H.raises(function() img.write_jpeg(dir .. "/no/such/dir/f.jpg", u8) end, "jpeg_write", "f.jpg")
  H.eq(#dir_entries(dir), 0, "nothing written: " .. table.concat(dir_entries(dir), " "))
  -- a failed write over an existing file leaves the old file intact
  img.write_png(dir .. "/keep.png", u8)
  H.raises(function() img.write_png(dir .. "/keep.png", u8, { palette = { { 0, 0, 0 } } }) end, "palette")
  deep_eq(img.read(dir .. "/keep.png", { mode = "label" }):tolist(), { { 1, 2 }, { 3, 4 } })
  H.same_list(dir_entries(dir), { "keep.png" })
  os.remove(dir .. "/keep.png")
  os.remove(dir)
end)

H.case("Lua argument errors", function()
  H.raises(function() img.read(DATA .. "pil_rgba.png", { mode = "colour" }) end, "unknown mode", "colour")
  H.raises(function() img.read(42) end, "path must be a string")
  H.raises(function() img.decode(nil) end, "bytes must be a string")
  H.raises(function() img.write_png(tmp("x.png"), {}) end, "expected a tensor")
  H.raises(function() img.write_png(tmp("x.png"), ms.zeros(1, 1, { dtype = "u8" }), { palette = { { 1, 2 } } }) end,
    "palette entry 1")
  H.raises(function() img.write_png(tmp("x.png"), ms.zeros(1, 1, { dtype = "u8" }), { palette = { 1, 2, 300 } } ) end,
    "300")
end)

-- ---- palettes -------------------------------------------------------------------------------
H.case("VOC and PaddleSeg pseudo-colour palettes", function()
  local voc = img.voc_palette(21)
  H.eq(#voc, 21)
  -- the published PASCAL VOC class colours
  deep_eq(voc[1], { 0, 0, 0 })        -- background
  deep_eq(voc[2], { 128, 0, 0 })      -- aeroplane
  deep_eq(voc[4], { 128, 128, 0 })    -- bird
  deep_eq(voc[16], { 192, 128, 128 }) -- person
  deep_eq(voc[21], { 0, 64, 128 })    -- tvmonitor
  -- PaddleSeg's get_color_map_list drops the black entry: class 0 is (128, 0, 0)
  local p = img.pseudo_color_palette(256)
  H.eq(#p, 256)
  deep_eq(p[1], { 128, 0, 0 })
  deep_eq(p[15], { 192, 128, 128 })
  deep_eq(p[256], { 0, 0, 32 }) -- VOC colour of 256 = octal 400
  -- a pseudo-colour prediction PNG as PaddleSeg writes it, read back both ways
  local pred = ms.tensor({ { 0, 1, 2 }, { 14, 255, 0 } }, { dtype = "u8" })
  img.write_png(tmp("pred.png"), pred, { palette = p })
  deep_eq(img.read(tmp("pred.png"), { mode = "label" }):tolist(), { { 0, 1, 2 }, { 14, 255, 0 } })
  deep_eq(img.read(tmp("pred.png")):tolist()[2][1], { 192, 128, 128 })
end)

os.execute("rm -rf '" .. TMP .. "'")
H.done()
