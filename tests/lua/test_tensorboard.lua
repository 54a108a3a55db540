-- test_tensorboard.lua: event files checked twice: TFRecord framing and CRCs re-read in Lua,
-- content read back by TensorBoard's own EventAccumulator (tests/tools/read_tfevents.py).
local ms = require "moonseg"
local H = require "harness"
local bit = require "bit"
local ffi = require "ffi"
local L = ms.lib

-- ---- an independent CRC-32C (bitwise, no table) ----
local function crc32c(s)
  local c = 0xffffffff
  for i = 1, #s do
    c = bit.bxor(c, s:byte(i))
    for _ = 1, 8 do
      if bit.band(c, 1) ~= 0 then c = bit.bxor(bit.rshift(c, 1), 0x82f63b78) else c = bit.rshift(c, 1) end
    end
  end
  return bit.tobit(bit.bnot(c)) % 2 ^ 32
end
local function masked(s)
  local c = crc32c(s)
  local rot = bit.bor(bit.rshift(c, 15), bit.lshift(c, 17)) % 2 ^ 32
  return (rot + 0xa282ead8) % 2 ^ 32
end
local function le(s, i, n)
  local v = 0
  for k = n - 1, 0, -1 do v = v * 256 + s:byte(i + k) end
  return v
end

local function read_all(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Splits a TFRecord file into its records, checking both CRCs of each.
local function records(path)
  local s, pos, out = read_all(path), 1, {}
  while pos <= #s do
    if #s - pos + 1 < 12 then error("truncated record header at byte " .. pos) end
    local n = le(s, pos, 8)
    local head = s:sub(pos, pos + 7)
    H.eq(le(s, pos + 8, 4), masked(head), "length CRC of record " .. (#out + 1))
    local data = s:sub(pos + 12, pos + 11 + n)
    H.eq(#data, n, "record " .. (#out + 1) .. " length")
    H.eq(le(s, pos + 12 + n, 4), masked(data), "data CRC of record " .. (#out + 1))
    out[#out + 1] = data
    pos = pos + 16 + n
  end
  return out
end

-- ---- a small JSON decoder for the reader's output ----
local function json_decode(str)
  local pos = 1
  local function ws() pos = str:find("[^ \t\r\n]", pos) or #str + 1 end
  local val
  local function strv()
    local out = {}
    pos = pos + 1
    while true do
      local ch = str:sub(pos, pos)
      if ch == '"' then pos = pos + 1; break end
      if ch == "\\" then
        local e = str:sub(pos + 1, pos + 1)
        local map = { n = "\n", t = "\t", r = "\r", b = "\b", f = "\f", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }
        if e == "u" then
          out[#out + 1] = string.char(tonumber(str:sub(pos + 2, pos + 5), 16) % 256)
          pos = pos + 6
        else
          out[#out + 1] = map[e]
          pos = pos + 2
        end
      else
        out[#out + 1] = ch
        pos = pos + 1
      end
    end
    return table.concat(out)
  end
  function val()
    ws()
    local ch = str:sub(pos, pos)
    if ch == "{" then
      local t = {}
      pos = pos + 1
      ws()
      if str:sub(pos, pos) == "}" then pos = pos + 1; return t end
      while true do
        ws()
        local k = strv()
        ws(); pos = pos + 1 -- ':'
        t[k] = val()
        ws()
        local d = str:sub(pos, pos)
        pos = pos + 1
        if d == "}" then return t end
      end
    elseif ch == "[" then
      local t = {}
      pos = pos + 1
      ws()
      if str:sub(pos, pos) == "]" then pos = pos + 1; return t end
      while true do
        t[#t + 1] = val()
        ws()
        local d = str:sub(pos, pos)
        pos = pos + 1
        if d == "]" then return t end
      end
    elseif ch == '"' then
      return strv()
    elseif str:sub(pos, pos + 3) == "true" then pos = pos + 4; return true
    elseif str:sub(pos, pos + 4) == "false" then pos = pos + 5; return false
    elseif str:sub(pos, pos + 3) == "null" then pos = pos + 4; return nil
    else
      local num = str:match("^-?[%d.eE+-]+", pos)
      pos = pos + #num
      return tonumber(num)
    end
  end
  return val()
end

local here = debug.getinfo(1, "S").source:sub(2):match("(.*)/") or "."
local tool = here .. "/../tools/read_tfevents.py"

-- Runs TensorBoard's reader on path; fails (never skips) when python3 or tensorboard is missing.
local function tb_read(path)
  local p = io.popen((os.getenv("MOONSEG_TEST_PYTHON") or "python3") .. " '" .. tool .. "' '" .. path .. "' 2>&1; echo \"__rc=$?\"")
  local text = p:read("*a")
  p:close()
  local rc = tonumber(text:match("__rc=(%d+)%s*$"))
  if rc ~= 0 then
    error("reading the event file with TensorBoard failed (rc " .. tostring(rc) .. "). This test needs " ..
      "python3 with the tensorboard package: pip install tensorboard\n" .. text)
  end
  return json_decode(text:gsub("__rc=%d+%s*$", ""))
end

local tmp = os.tmpname()
os.remove(tmp)
local logdir = tmp .. "_tb/run1"
local created = {}

H.case("crc32c: known vectors, C against Lua", function()
  H.eq(crc32c("123456789"), 0xE3069283)
  H.eq(tonumber(L.C.ms_crc32c(0, "123456789", 9)), 0xE3069283)
  H.eq(tonumber(L.C.ms_crc32c(0, string.rep("\0", 32), 32)), 0x8A9136AA)
  H.eq(tonumber(L.C.ms_crc32c(0, string.rep("\255", 32), 32)), 0x62A8AB43)
  H.eq(tonumber(L.C.ms_crc32c(0, "", 0)), 0)
  local g = ms.Generator(5)
  local bytes = ms.randint(0, 256, { 200 }, { generator = g }):tolist()
  local s = string.char(unpack(bytes))
  for _, n in ipairs { 1, 7, 8, 9, 15, 16, 17, 63, 200 } do
    local sub = s:sub(1, n)
    H.eq(tonumber(L.C.ms_crc32c(0, sub, n)), crc32c(sub), "length " .. n)
  end
  -- continuing a CRC over two pieces equals one pass
  local a = L.C.ms_crc32c(0, s, 77)
  H.eq(tonumber(L.C.ms_crc32c(a, s:sub(78), 123)), crc32c(s))
end)

H.case("SummaryWriter: scalars, images and text read back by TensorBoard", function()
  local w = ms.tensorboard.SummaryWriter(logdir)
  created[#created + 1] = w.path
  H.eq(w.path:match("/events%.out%.tfevents%.%d+%.[^/]+$") ~= nil, true, "file name " .. w.path)
  H.eq(w.path:sub(1, #logdir), logdir)
  w:add_scalar("Train/loss", 0.75, 1)
  w:add_scalar("Train/loss", 0.5, 10)
  w:add_scalar("Train/loss", ms.tensor(0.25), 2 ^ 40)
  w:add_scalar("Evaluate/mIoU", 0.125, 10)
  w:add_scalars("Train", { lr = 0.01, ips = 3.5 }, 7)
  local g = ms.Generator(9)
  local rgb = ms.randint(0, 256, { 5, 7, 3 }, { generator = g }):to("u8")
  local gray = ms.randint(0, 256, { 4, 3 }, { generator = g }):to("u8")
  local rgba = ms.randint(0, 256, { 2, 3, 4 }, { generator = g }):to("u8")
  local chw = ms.randint(0, 256, { 3, 2, 5 }, { generator = g }):to("u8")
  local flt = ms.tensor({ { 0, 0.5 }, { 1, 0.2 } }, { dtype = "f32" })
  w:add_image("Eval/rgb", rgb, 10)
  w:add_image("Eval/gray", gray, 11)
  w:add_image("Eval/rgba", rgba, 12)
  w:add_image("Eval/chw", chw, 13, { dataformats = "CHW" })
  w:add_image("Eval/float", flt, 14, { dataformats = "HW" })
  w:add_image("Eval/rgb_t", rgb:permute(2, 1, 3), 15) -- non-contiguous
  w:add_text("Config", "model: pp_liteseg\nlr: 0.01 \"quoted\"", 0)
  w:flush()
  -- visible after flush, before close
  local got = tb_read(w.path)
  H.eq(got.file_version, "brain.Event:2")
  H.eq(got.events, 1 + 6 + 6 + 1)
  local loss = got.scalars["Train/loss"]
  H.eq(#loss, 3)
  H.same_list({ loss[1].step, loss[2].step, loss[3].step }, { 1, 10, 2 ^ 40 })
  H.same_list({ loss[1].value, loss[2].value, loss[3].value }, { 0.75, 0.5, 0.25 })
  H.eq(got.scalars["Evaluate/mIoU"][1].value, 0.125)
  H.eq(got.scalars["Train/lr"][1].step, 7)
  H.near(got.scalars["Train/lr"][1].value, 0.01, 1e-7)
  H.eq(got.scalars["Train/ips"][1].value, 3.5)
  local now = ms.lib.C.ms_wall_time()
  H.eq(math.abs(loss[1].wall_time - now) < 600, true, "wall_time is the current time")
  local function img(tag, t, h, wd, c, step)
    local e = got.images[tag][1]
    H.eq(e.step, step, tag .. " step")
    H.same_list({ e.height, e.width, e.png_height, e.png_width, e.png_channels }, { h, wd, h, wd, c }, tag)
    local want = t:contiguous():reshape(-1):tolist()
    H.same_list(e.pixels, want, tag .. " pixels")
  end
  img("Eval/rgb", rgb, 5, 7, 3, 10)
  img("Eval/gray", gray, 4, 3, 1, 11)
  img("Eval/rgba", rgba, 2, 3, 4, 12)
  img("Eval/chw", chw:permute(2, 3, 1), 2, 5, 3, 13)
  img("Eval/rgb_t", rgb:permute(2, 1, 3), 7, 5, 3, 15)
  local fl = got.images["Eval/float"][1]
  H.same_list(fl.pixels, { 0, 128, 255, 51 })
  H.eq(got.texts["Config"][1].text[1], "model: pp_liteseg\nlr: 0.01 \"quoted\"")
  w:close()
  w:close() -- idempotent
  H.raises(function() w:add_scalar("x", 1, 1) end, "after close")
end)

H.case("framing re-read in Lua: lengths, masked CRCs, first event is file_version", function()
  local w = ms.tensorboard.SummaryWriter(logdir, { filename_suffix = ".lua" })
  created[#created + 1] = w.path
  H.eq(w.path:sub(-4), ".lua")
  for i = 1, 5 do w:add_scalar("s", i * 0.5, i) end
  w:add_image("im", ms.zeros({ 3, 3, 3 }, { dtype = "u8" }), 1)
  w:close()
  local recs = records(w.path)
  H.eq(#recs, 7)
  -- Event: field 1 (wall_time, fixed64) = tag 0x09, then file_version (field 3, bytes) = 0x1a
  H.eq(recs[1]:byte(1), 0x09)
  H.eq(recs[1]:sub(10), "\26\13brain.Event:2")
  -- a scalar event: wall_time, step (0x10 varint), summary (0x2a)
  H.eq(recs[2]:byte(10), 0x10)
  H.eq(recs[2]:byte(11), 1)
  H.eq(recs[2]:byte(12), 0x2a)
  -- a corrupted byte is caught by the independent check
  local s = read_all(w.path)
  local bad = w.path .. ".bad"
  local f = assert(io.open(bad, "wb"))
  f:write(s:sub(1, 20) .. string.char((s:byte(21) + 1) % 256) .. s:sub(22))
  f:close()
  H.raises(function() records(bad) end, "data CRC of record 1")
  os.remove(bad)
end)

H.case("protobuf varints, including large and negative int64 steps", function()
  local v = ms.tensorboard.varint
  H.eq(v(0), "\0")
  H.eq(v(1), "\1")
  H.eq(v(127), "\127")
  H.eq(v(128), "\128\1")
  H.eq(v(300), "\172\2")
  H.eq(v(2 ^ 40), "\128\128\128\128\128\32")
  H.eq(v(-1), string.rep("\255", 9) .. "\1")
end)

H.case("bad input: tags, values, images, log dirs", function()
  local w = ms.tensorboard.SummaryWriter(logdir)
  created[#created + 1] = w.path
  H.raises(function() w:add_scalar("", 1, 1) end, "tag")
  H.raises(function() w:add_scalar("a", "x", 1) end, "add_scalar", "number")
  H.raises(function() w:add_scalar("a", 1, 1.5) end, "step must be an integer")
  H.raises(function() w:add_image("a", ms.zeros({ 2, 2, 2 }, { dtype = "u8" }), 1) end, "1, 3 or 4 channels, got 2")
  H.raises(function() w:add_image("a", ms.zeros({ 2, 2, 3, 1 }, { dtype = "u8" }), 1) end, "[H, W, C]")
  H.raises(function() w:add_image("a", ms.zeros({ 0, 2, 3 }, { dtype = "u8" }), 1) end, "png_encode")
  H.raises(function() w:add_image("a", ms.zeros({ 2, 2 }), 1, { dataformats = "NCHW" }) end, "dataformats")
  w:close()
  -- a log dir below a regular file cannot be created
  local file = tmp .. "_tb/plainfile"
  local f = assert(io.open(file, "wb"))
  f:write("x")
  f:close()
  H.raises(function() ms.tensorboard.SummaryWriter(file .. "/logs") end, "tfevents_create", "plainfile")
  os.remove(file)
  H.raises(function() ms.tensorboard.SummaryWriter("") end, "logdir")
  -- the C writer refuses writes after close and NULL data
  local h = ffi.new("ms_tfevents*[1]")
  L.check(L.C.ms_tfevents_open(tmp .. "_tb/direct.rec", h))
  H.raises(function() L.check(L.C.ms_tfevents_write(h[0], nil, 3)) end, "tfevents_write", "3 bytes")
  L.check(L.C.ms_tfevents_write(h[0], "abc", 3))
  L.check(L.C.ms_tfevents_close(h[0]))
  local recs = records(tmp .. "_tb/direct.rec")
  H.eq(#recs, 1)
  H.eq(recs[1], "abc")
  os.remove(tmp .. "_tb/direct.rec")
end)

for _, p in ipairs(created) do os.remove(p) end
os.remove(logdir)
os.remove(tmp .. "_tb")

H.done()
