-- tensorboard.lua: SummaryWriter writing TensorBoard event files (scalars, images, text).
--
--   local w = ms.tensorboard.SummaryWriter("output/log")
--   w:add_scalar("Train/loss", 0.52, 10)
--   w:add_image("Eval/prediction", img_u8_hwc, 10)
--   w:close()
-- Events are protobuf messages (tensorboard/compat/proto/event.proto and summary.proto)
-- encoded here by hand; the C side frames them as TFRecords (length, masked CRC-32C).
local ffi = require "ffi"
local bit = require "bit"
local L = require "moonseg.lib"
local T = require "moonseg.tensor"
local C, ctx = L.C, L.ctx

local M = {}

-- ---- protobuf encoding (wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32) ----
local u64 = ffi.typeof("uint64_t")
local i64 = ffi.typeof("int64_t")

-- Varint of an integer (negative int64 values take the 10-byte two's-complement form).
local function varint(n)
  if type(n) == "number" and n >= 0 and n < 128 then return string.char(n) end
  local v = ffi.cast(u64, ffi.cast(i64, n))
  local bytes = {}
  while v >= 128 do
    bytes[#bytes + 1] = tonumber(v % 128) + 128
    v = v / 128
  end
  bytes[#bytes + 1] = tonumber(v)
  return string.char(unpack(bytes))
end
M.varint = varint

local function key(field, wire) return varint(field * 8 + wire) end
local function f_varint(field, n) return key(field, 0) .. varint(n) end
local function f_bytes(field, s) return key(field, 2) .. varint(#s) .. s end
local dbuf, fbuf = ffi.new("double[1]"), ffi.new("float[1]")
local function f_double(field, x)
  dbuf[0] = x
  return key(field, 1) .. ffi.string(dbuf, 8) -- x86-64 and aarch64 are little-endian, as protobuf
end
local function f_float(field, x)
  fbuf[0] = x
  return key(field, 5) .. ffi.string(fbuf, 4)
end

-- Event {wall_time = 1 (double), step = 2 (int64), file_version = 3, summary = 5}
local function event(wall_time, step, body)
  return f_double(1, wall_time) .. (step ~= 0 and f_varint(2, step) or "") .. body
end
-- Summary {repeated Value value = 1}; Value {tag = 1, simple_value = 2, image = 4,
-- tensor = 8, metadata = 9}
local function summary(values) return f_bytes(5, table.concat(values)) end
local function value(tag, body) return f_bytes(1, f_bytes(1, tag) .. body) end

M._encode = { varint = varint, event = event }

-- ---- SummaryWriter ------------------------------------------------------------------------
local W = {}
W.__index = W

-- SummaryWriter(logdir[, {filename_suffix = ""}]): creates logdir and a new event file in it,
-- events.out.tfevents.<unix time>.<hostname>.<pid>.<n>, starting with the file_version event.
function M.SummaryWriter(logdir, opts)
  if type(logdir) ~= "string" or logdir == "" then
    error("SummaryWriter: logdir must be a non-empty string", 2)
  end
  opts = opts or {}
  local h = ffi.new("ms_tfevents*[1]")
  L.check(C.ms_tfevents_create(logdir, opts.filename_suffix, h), 2)
  local self = setmetatable({ logdir = logdir, _w = h[0] }, W)
  self.path = ffi.string(C.ms_tfevents_path(self._w))
  -- safety net only: close() is the way to finish a file
  self._gc = ffi.gc(ffi.new("char[1]"), function() if self._w ~= nil then C.ms_tfevents_close(self._w) end end)
  self:_write(event(C.ms_wall_time(), 0, f_bytes(3, "brain.Event:2")))
  self:flush()
  return self
end

W.__tostring = function(self) return "SummaryWriter(" .. self.path .. ")" end

function W:_write(bytes)
  if self._w == nil then error("SummaryWriter: used after close()", 3) end
  L.check(C.ms_tfevents_write(self._w, bytes, #bytes), 3)
end

local function check_step(step, fname)
  step = step or 0
  if type(step) ~= "number" or step ~= math.floor(step) then
    error(fname .. ": step must be an integer, got " .. tostring(step), 3)
  end
  return step
end

local function check_tag(tag, fname)
  if type(tag) ~= "string" or tag == "" then error(fname .. ": tag must be a non-empty string", 3) end
end

-- add_scalar(tag, value, step[, wall_time]): value a number or a one-element tensor.
function W:add_scalar(tag, v, step, wall_time)
  check_tag(tag, "add_scalar")
  if T.is_tensor(v) then v = v:item() end
  if type(v) ~= "number" then error("add_scalar: value must be a number, got " .. type(v), 2) end
  step = check_step(step, "add_scalar")
  self:_write(event(wall_time or C.ms_wall_time(), step, summary { value(tag, f_float(2, v)) }))
end

-- add_scalars(main_tag, {name = value, ...}, step): one event per entry, tags main_tag/name.
function W:add_scalars(main_tag, values, step, wall_time)
  local names = {}
  for k in pairs(values) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do self:add_scalar(main_tag .. "/" .. k, values[k], step, wall_time) end
end

-- The image as a contiguous u8 [H, W, C] tensor (C = 1, 3 or 4).
local function hwc_u8(img, fmt)
  fmt = fmt or "HWC"
  local x = img
  if fmt == "CHW" then
    if x:dim() ~= 3 then error("add_image: dataformats CHW needs a 3-d tensor", 3) end
    x = x:permute(2, 3, 1)
  elseif fmt == "HW" then
    if x:dim() ~= 2 then error("add_image: dataformats HW needs a 2-d tensor", 3) end
    x = x:unsqueeze(3)
  elseif fmt == "HWC" then
    if x:dim() == 2 then x = x:unsqueeze(3) end
    if x:dim() ~= 3 then
      error("add_image: expected an [H, W, C] image, got " .. x:dim() .. " dims", 3)
    end
  else
    error("add_image: dataformats must be HWC, CHW or HW, got " .. tostring(fmt), 3)
  end
  local c = x:size(3)
  if c ~= 1 and c ~= 3 and c ~= 4 then
    error("add_image: images need 1, 3 or 4 channels, got " .. c, 3)
  end
  if x:is_floating_point() then
    -- floats are taken as [0, 1] (PyTorch's SummaryWriter convention)
    x = x:mul(255):clamp(0, 255):add(0.5) -- the u8 cast truncates: this rounds
  end
  if x:type() ~= "u8" then x = x:to("u8") end
  return x:contiguous()
end

-- add_image(tag, img, step[, {dataformats = "HWC"}]): img u8 [H, W, C] (C = 1, 3 or 4), or
-- [H, W]; float images are scaled from [0, 1]. Stored PNG-encoded, as TensorBoard expects.
function W:add_image(tag, img, step, opts)
  check_tag(tag, "add_image")
  if not T.is_tensor(img) then error("add_image: img must be a tensor", 2) end
  step = check_step(step, "add_image")
  local x = hwc_u8(img, opts and opts.dataformats)
  local h, w, c = x:size(1), x:size(2), x:size(3)
  local pbuf, pn = ffi.new("uint8_t*[1]"), ffi.new("int64_t[1]")
  L.check(C.ms_png_encode(ctx, T.handle(x), nil, 0, pbuf, pn), 2)
  local png = ffi.string(pbuf[0], pn[0])
  C.ms_buffer_free(pbuf[0])
  -- Image {height = 1, width = 2, colorspace = 3, encoded_image_string = 4}
  local image = f_varint(1, h) .. f_varint(2, w) .. f_varint(3, c) .. f_bytes(4, png)
  self:_write(event(opts and opts.wall_time or C.ms_wall_time(), step,
    summary { value(tag, f_bytes(4, image)) }))
end

-- add_text(tag, text, step): a string tensor summary for TensorBoard's text plugin.
function W:add_text(tag, text, step, wall_time)
  check_tag(tag, "add_text")
  if type(text) ~= "string" then error("add_text: text must be a string", 2) end
  step = check_step(step, "add_text")
  -- metadata = SummaryMetadata {plugin_data = PluginData {plugin_name = "text"}}
  local meta = f_bytes(9, f_bytes(1, f_bytes(1, "text")))
  -- tensor = TensorProto {dtype = DT_STRING (7), tensor_shape = {dim {size 1}}, string_val}
  local shape = f_bytes(2, f_bytes(2, f_varint(1, 1)))
  local tensor = f_bytes(8, f_varint(1, 7) .. shape .. f_bytes(8, text))
  self:_write(event(wall_time or C.ms_wall_time(), step, summary { value(tag, meta .. tensor) }))
end

function W:flush()
  if self._w == nil then return end
  L.check(C.ms_tfevents_flush(self._w), 2)
end

function W:close()
  if self._w == nil then return end
  local w = self._w
  self._w = nil
  L.check(C.ms_tfevents_close(w), 2)
end

return M
