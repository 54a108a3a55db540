-- test_serialize.lua: safetensors: a file written by the Python reference reads back exactly;
-- round trips of every dtype; malformed, truncated and overlapping files rejected; atomic writes.
local H = require "harness"
local ms = require "moonseg"
local ffi = require "ffi"

local src = os.getenv("MOONSEG_SOURCE_DIR") or "."
local tmpdir = os.tmpname()
os.remove(tmpdir)
os.execute("mkdir -p " .. tmpdir)

local read, write, exists = H.read_file, H.write_file, H.exists

H.case("reads a file written by the Python safetensors package", function()
  local t, meta = ms.load(src .. "/tests/data/reference.safetensors")
  H.eq(meta.format, "np")
  H.eq(meta.note, "made by safetensors")
  H.eq(t["a.f64"].dtype, "f64")
  H.same_list(t["a.f64"]:tolist()[2], { 1.5, 2, 2.5 })
  H.same_list(t["b.f32"]:tolist(), { 1.5, -2, 3.25 })
  H.eq(t["c.f16"].dtype, "f16")
  H.same_list(t["c.f16"]:tolist(), { 0.5, -1 })
  H.same_list(t["d.i64"]:tolist(), { -5, 2 ^ 40 })
  H.same_list(t["e.i32"]:size(), { 2, 1 })
  H.eq(t["e.i32"]:tolist()[2][1], -8)
  H.same_list(t["f.u8"]:tolist(), { 0, 255, 3 })
  H.same_list(t["g.bool"]:tolist(), { true, false, true })
  H.eq(t["h.scalar"]:dim(), 0)
  H.eq(t["h.scalar"]:item(), 7)
  H.same_list(t["i.empty"]:size(), { 0, 3 })
end)

H.case("round trip of every dtype, 0-dim, empty and strided tensors with metadata", function()
  local path = tmpdir .. "/rt.safetensors"
  local src_t = {
    f64 = ms.tensor({ 1.25, -3 }, { dtype = "f64" }),
    f32 = ms.arange(12, { dtype = "f32" }):view(3, 4):t(), -- non-contiguous
    f16 = ms.tensor({ 0.1, 65504 }, { dtype = "f16" }),
    bf16 = ms.tensor({ 3.5, -1e30 }, { dtype = "bf16" }),
    i64 = ms.tensor({ -(2 ^ 53), 2 ^ 53 }, { dtype = "i64" }),
    i32 = ms.tensor({ -7 }, { dtype = "i32" }),
    u8 = ms.tensor({ 200 }, { dtype = "u8" }),
    bool = ms.tensor({ false, true }),
    scalar = ms.tensor(2.5),
    empty = ms.zeros(0, 4),
  }
  ms.save(path, src_t, { epoch = 3, name = "quote\" and \\ backslash\n" })
  local back, meta = ms.load(path)
  H.eq(meta.epoch, "3")
  H.eq(meta.name, "quote\" and \\ backslash\n")
  for k, v in pairs(src_t) do
    H.eq(back[k].dtype, v.dtype, k)
    H.same_list(back[k]:size(), v:size(), k)
    local a, b = back[k]:to("f64"):reshape(-1):tolist(), v:to("f64"):reshape(-1):tolist()
    if v:dim() == 0 then a, b = { back[k]:item() }, { v:item() } end
    H.same_list(a, b, k)
  end
  -- The data section starts 8-byte aligned.
  local bytes = read(path)
  local hlen = 0
  for i = 8, 1, -1 do hlen = hlen * 256 + bytes:byte(i) end
  H.eq(hlen % 8, 0)
end)

-- Builds a file from a header string and a data string.
local function file(header, data)
  local n = #header
  local len = {}
  for i = 1, 8 do len[i] = string.char(n % 256); n = math.floor(n / 256) end
  return table.concat(len) .. header .. (data or "")
end

H.case("malformed files are rejected with messages naming the file and the fault", function()
  local p = tmpdir .. "/bad.safetensors"
  local function expect(content, ...)
    write(p, content)
    H.raises(function() ms.load(p) end, p, ...)
  end
  expect("", "too short")
  expect("\255\255\255\255\0\0\0\0{}", "header length")
  expect(file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}', ""), "not valid JSON")
  expect(file('[]'), "start with '{'")
  expect(file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', "1234"), "truncated")
  expect(file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', "12345678"), "trailing bytes")
  expect(file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', "12345678"), "overlap")
  expect(file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', "12345678"), "gap")
  expect(file('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', "12345678"), "need 12")
  expect(file('{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}', "12345678"), "C64", "does not support")
  expect(file('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', "1234"), "bad dimension")
  expect(file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', "12345678"), "duplicate")
  expect(file('{"__metadata__":{"k":1}}'), "not a string")
  H.raises(function() ms.load(tmpdir .. "/nope.safetensors") end, "nope.safetensors", "cannot open")
end)

H.case("random corruptions never crash the reader", function()
  local good = read(src .. "/tests/data/reference.safetensors")
  local seed = 7
  local function rnd(n)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed % n
  end
  local st = ffi.new("ms_safetensors*[1]")
  local ok_count, err_count = 0, 0
  for _ = 1, 3000 do
    local b = { good:byte(1, -1) }
    for _ = 1, 1 + rnd(4) do b[1 + rnd(#b)] = rnd(256) end
    local cut = rnd(10) == 0 and rnd(#b) or #b
    local s = string.char(unpack(b, 1, cut))
    if ms.lib.C.ms_safetensors_parse(s, #s, "fuzz", st) == 0 then
      local n = ms.lib.C.ms_safetensors_count(st[0])
      for i = 0, n - 1 do
        assert(ms.lib.C.ms_safetensors_get(ms.lib.ctx, st[0], i, ms.lib.out) == 0)
        ms.lib.C.ms_tensor_free(ms.lib.out[0])
      end
      ms.lib.C.ms_safetensors_close(st[0])
      ok_count = ok_count + 1
    else
      err_count = err_count + 1
    end
  end
  assert(err_count > 1000, "most corruptions should be caught, got " .. err_count)
end)

H.case("saving is atomic: a failed save leaves the old file and no temporary", function()
  local p = tmpdir .. "/atomic.safetensors"
  ms.save(p, { w = ms.ones(2) })
  local before = read(p)
  local dead = ms.ones(1)
  dead:free()
  H.raises(function() ms.save(p, { w = ms.zeros(2), x = dead }) end, "freed")
  H.eq(read(p), before)
  H.raises(function() ms.save(tmpdir .. "/no/such/dir/x.safetensors", { w = ms.ones(1) }) end, "cannot write", "no/such/dir")
  H.raises(function() ms.save(p, { [1] = ms.ones(1) }) end, "not a string")
  local p2 = io.popen("ls " .. tmpdir)
  local listing = p2:read("*a")
  p2:close()
  assert(not listing:find("tmp", 1, true), "temporary left behind: " .. listing)
end)

os.execute("rm -rf " .. tmpdir)
H.done()
