-- test_png_decode.lua: the fast PNG path (png_fast.c) against libpng (MOONSEG_PNG_DECODER=libpng)
-- and against the pixels the files were made from: PNGs built here byte by byte (stored deflate
-- blocks, every filter type, all 8-bit colour types, split IDATs) and PNGs libpng wrote; damaged
-- files must give exactly what libpng gives (the same pixels or an error), never a crash.
local H = require "harness"
local ms = require "moonseg"
local ffi = require "ffi"
local bit = require "bit"

ffi.cdef [[ int setenv(const char *name, const char *value, int overwrite);
            int unsetenv(const char *name); ]]

-- ---- a tiny PNG writer -----------------------------------------------------------------------
local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do c = bit.band(c, 1) ~= 0 and bit.bxor(0xEDB88320, bit.rshift(c, 1)) or bit.rshift(c, 1) end
  crc_table[i] = c
end
local function crc32(s)
  local c = -1
  for i = 1, #s do c = bit.bxor(crc_table[bit.band(bit.bxor(c, s:byte(i)), 0xff)], bit.rshift(c, 8)) end
  return bit.bnot(c)
end
local function be32(v)
  return string.char(bit.band(bit.rshift(v, 24), 255), bit.band(bit.rshift(v, 16), 255),
    bit.band(bit.rshift(v, 8), 255), bit.band(v, 255))
end
local function chunk(typ, body) return be32(#body) .. typ .. body .. be32(crc32(typ .. body)) end
-- zlib stream of stored blocks (at most 65535 bytes each)
local function zlib_stored(s)
  local parts, a, b = { "\120\1" }, 1, 0
  local pos = 1
  repeat
    local n = math.min(65535, #s - pos + 1)
    local final = pos + n > #s and 1 or 0
    parts[#parts + 1] = string.char(final, bit.band(n, 255), bit.rshift(n, 8),
      bit.band(bit.bnot(n), 255), bit.band(bit.rshift(bit.bnot(n), 8), 255)) .. s:sub(pos, pos + n - 1)
    pos = pos + n
  until pos > #s
  for i = 1, #s do
    a = (a + s:byte(i)) % 65521
    b = (b + a) % 65521
  end
  parts[#parts + 1] = be32(b * 65536 + a)
  return table.concat(parts)
end

local function paeth(a, b, c)
  local p = a + b - c
  local pa, pb, pc = math.abs(p - a), math.abs(p - b), math.abs(p - c)
  if pa <= pb and pa <= pc then return a elseif pb <= pc then return b end
  return c
end
-- Filters row (bytes list) with type f against prev, bpp bytes per pixel.
local function filter_row(f, row, prev, bpp)
  local out = { f }
  for i = 1, #row do
    local a = i > bpp and row[i - bpp] or 0
    local b = prev and prev[i] or 0
    local c = (prev and i > bpp) and prev[i - bpp] or 0
    local pred = f == 0 and 0 or f == 1 and a or f == 2 and b or f == 3 and math.floor((a + b) / 2) or paeth(a, b, c)
    out[#out + 1] = (row[i] - pred) % 256
  end
  return out
end

local CHANS = { [0] = 1, [2] = 3, [3] = 1, [4] = 2, [6] = 4 }
-- rows: list of byte lists; filters(y) -> filter type; o.plte (string), o.trns, o.split (IDATs)
local function make_png(w, h, ct, rows, filters, o)
  o = o or {}
  local raw = {}
  for y = 1, h do
    local fr = filter_row(filters(y), rows[y], rows[y - 1], CHANS[ct])
    raw[y] = string.char(unpack(fr))
  end
  local z = zlib_stored(table.concat(raw))
  local parts = { "\137PNG\r\n\26\n", chunk("IHDR", be32(w) .. be32(h) .. string.char(8, ct, 0, 0, 0)) }
  if o.text then parts[#parts + 1] = chunk("tEXt", "Comment\0hello") end
  if o.plte then parts[#parts + 1] = chunk("PLTE", o.plte) end
  if o.trns then parts[#parts + 1] = chunk("tRNS", o.trns) end
  local k = o.split or 1
  local step = math.ceil(#z / k)
  for i = 1, #z, step do parts[#parts + 1] = chunk("IDAT", z:sub(i, i + step - 1)) end
  parts[#parts + 1] = chunk("IEND", "")
  return table.concat(parts)
end

local seed = 7
local function rnd(n)
  seed = (seed * 1103515245 + 12345) % 2147483648
  return math.floor(seed / 2147483648 * n)
end
-- Smooth-plus-noise rows so every filter predicts something.
local function make_rows(w, h, c)
  local rows = {}
  for y = 1, h do
    local r = {}
    for x = 1, w do
      for k = 1, c do r[#r + 1] = (x * 9 + y * 5 + k * 40 + rnd(24)) % 256 end
    end
    rows[y] = r
  end
  return rows
end

local function decode(bytes, mode, libpng)
  if libpng then ffi.C.setenv("MOONSEG_PNG_DECODER", "libpng", 1) else ffi.C.unsetenv("MOONSEG_PNG_DECODER") end
  local ok, t = pcall(ms.image.decode, bytes, { mode = mode, name = "gen.png" })
  ffi.C.unsetenv("MOONSEG_PNG_DECODER")
  if not ok then return nil, t end
  local s = ffi.string(t:data_ptr(), t:numel() * (t.dtype == "u8" and 1 or 4))
  return s, table.concat(t:size(), "x") .. " " .. t.dtype
end

-- Both paths agree (same bytes and shape, or both fail).
local function same(bytes, mode, what)
  local a, ad = decode(bytes, mode, false)
  local b, bd = decode(bytes, mode, true)
  if (a == nil) ~= (b == nil) then
    error(what .. " (" .. mode .. "): fast path " .. (a and "decoded" or "failed: " .. ad) ..
      ", libpng " .. (b and "decoded" or "failed: " .. bd))
  end
  if a then
    H.eq(ad, bd, what .. " shape")
    H.eq(a == b, true, what .. " pixels differ between the fast path and libpng")
  end
  return a, ad
end

local function expected(rows, ct, mode, plte)
  local out = {}
  for _, r in ipairs(rows) do
    local c = CHANS[ct]
    for i = 1, #r, c do
      if mode == "label" then out[#out + 1] = r[i]
      elseif ct == 3 then
        local k = r[i]
        for j = 1, 3 do out[#out + 1] = plte:byte(3 * k + j) end
      elseif mode == "unchanged" then for j = 0, c - 1 do out[#out + 1] = r[i + j] end
      elseif c <= 2 then for _ = 1, 3 do out[#out + 1] = r[i] end
      else for j = 0, 2 do out[#out + 1] = r[i + j] end end
    end
  end
  return string.char(unpack(out))
end

H.case("every filter type, every 8-bit colour type, both paths equal the source pixels", function()
  local count = 0
  local plte = {}
  for i = 0, 255 do plte[#plte + 1] = string.char(i, 255 - i, (i * 7) % 256) end
  plte = table.concat(plte)
  for _, ct in ipairs { 0, 2, 3, 4, 6 } do
    for _, size in ipairs { { 1, 1 }, { 7, 5 }, { 33, 9 }, { 2, 17 } } do
      local w, h = size[1], size[2]
      local rows = make_rows(w, h, CHANS[ct])
      local patterns = { function(y) return (y - 1) % 5 end, function(y) return (y * 3) % 5 end }
      for f = 0, 4 do patterns[#patterns + 1] = function() return f end end
      for pi, pat in ipairs(patterns) do
        for _, split in ipairs { 1, 3 } do
          local png = make_png(w, h, ct, rows, pat, { plte = ct == 3 and plte or nil, split = split, text = pi == 2 })
          local modes = { "image", "unchanged" }
          if ct == 0 or ct == 3 then modes[3] = "label" end
          for _, mode in ipairs(modes) do
            local got = same(png, mode, ("ct %d %dx%d pattern %d"):format(ct, w, h, pi))
            H.eq(got == expected(rows, ct, mode, plte), true,
              ("ct %d %dx%d pattern %d mode %s: wrong pixels"):format(ct, w, h, pi, mode))
            count = count + 1
          end
        end
      end
    end
  end
  H.eq(count > 300, true)
end)

H.case("PNGs libpng wrote (adaptive filters) decode identically on both paths", function()
  local tmp = os.tmpname()
  for k, sz in ipairs { { 64, 48, 3 }, { 300, 7, 3 }, { 31, 40, 1 }, { 50, 50, 4 }, { 45, 33, 2 }, { 513, 129, 3 } } do
    local t = ms.empty({ sz[2], sz[1], sz[3] }, { dtype = "u8" })
    local p = ffi.cast("uint8_t*", t:data_ptr())
    for i = 0, t:numel() - 1 do p[i] = (math.floor(i / sz[3]) % sz[1] * 3 + math.floor(i / (sz[1] * sz[3])) * 2 + rnd(k * 8)) % 256 end
    ms.image.write_png(tmp, t)
    local f = io.open(tmp, "rb")
    local bytes = f:read("*a")
    f:close()
    for _, mode in ipairs { "image", "unchanged" } do
      local got, desc = same(bytes, mode, "libpng-written " .. k)
      if mode == "unchanged" then
        H.eq(desc, ("%dx%dx%d u8"):format(sz[2], sz[1], sz[3]))
        H.eq(got == ffi.string(p, t:numel()), true, "round trip " .. k)
      end
    end
  end
  -- a palette label with values 0..4 and 255
  local lab = ms.empty({ 20, 30 }, { dtype = "u8" })
  local q = ffi.cast("uint8_t*", lab:data_ptr())
  for i = 0, 599 do q[i] = i % 7 == 0 and 255 or i % 5 end
  ms.image.write_png(tmp, lab, { palette = ms.image.voc_palette(256) })
  local f = io.open(tmp, "rb")
  local bytes = f:read("*a")
  f:close()
  local got = same(bytes, "label", "palette label")
  H.eq(got == ffi.string(q, 600), true)
  same(bytes, "image", "palette as RGB")
  os.remove(tmp)
end)

H.case("damaged files: the fast path is as strict as libpng (same pixels or an error)", function()
  local rows = make_rows(40, 12, 3)
  local png = make_png(40, 12, 2, rows, function(y) return (y - 1) % 5 end, { split = 2, text = true })
  local n = 0
  -- truncation at every 7th byte
  for cut = 1, #png - 1, 7 do
    local a = decode(png:sub(1, cut), "image", false)
    H.eq(a, nil, "truncated at " .. cut .. " decoded")
    n = n + 1
  end
  -- single-byte corruption everywhere (CRCs, lengths, headers, filter bytes, deflate data)
  for pos = 9, #png, 3 do
    for _, x in ipairs { 0x01, 0x80 } do
      local b = png:sub(1, pos - 1) .. string.char(bit.bxor(png:byte(pos), x)) .. png:sub(pos + 1)
      same(b, "image", "byte " .. pos .. " xor " .. x)
      n = n + 1
    end
  end
  -- a bad filter type with a correct CRC
  local raw = {}
  for y = 1, 12 do raw[y] = string.char(y == 6 and 5 or 0) .. string.char(unpack(rows[y])) end
  local z = zlib_stored(table.concat(raw))
  local bad = "\137PNG\r\n\26\n" .. chunk("IHDR", be32(40) .. be32(12) .. string.char(8, 2, 0, 0, 0)) ..
    chunk("IDAT", z) .. chunk("IEND", "")
  local _, err = decode(bad, "image", false)
  H.eq(err ~= nil and err:find("gen.png", 1, true) ~= nil, true, "bad filter type: " .. tostring(err))
  -- too little and too much image data, with valid CRCs
  for _, extra in ipairs { -40, 40 } do
    local zz = zlib_stored((table.concat(raw):gsub("\5", "\0")):sub(1, 12 * 121 + math.min(extra, 0)) .. string.rep("\0", math.max(extra, 0)))
    local f = "\137PNG\r\n\26\n" .. chunk("IHDR", be32(40) .. be32(12) .. string.char(8, 2, 0, 0, 0)) ..
      chunk("IDAT", zz) .. chunk("IEND", "")
    same(f, "image", "image data off by " .. extra)
  end
  -- missing IEND, IDAT before PLTE, palette index without a colour
  local noend = png:sub(1, #png - 12)
  same(noend, "image", "no IEND")
  local prow = {}
  for y = 1, 4 do prow[y] = { 0, 1, 2, 3 } end
  local p3 = make_png(4, 4, 3, prow, function() return 0 end, { plte = string.rep("\9\8\7", 3) })
  same(p3, "image", "index outside the palette")
  same(p3, "label", "index outside the palette, label")
  H.eq(n > 100, true)
end)

H.done()
