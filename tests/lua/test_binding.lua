-- test_binding.lua: the FFI boundary: cdef matches the header, ABI check, C errors become Lua errors.
local H = require "harness"
local ms = require "moonseg"
local ffi = require "ffi"

local src = os.getenv("MOONSEG_SOURCE_DIR") or "."

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

H.case("cdef compiled into the library equals the header's CDEF region", function()
  local header = read(src .. "/csrc/include/moonseg.h")
  local b = header:find("/* MS_CDEF_BEGIN */", 1, true)
  local e = header:find("/* MS_CDEF_END */", 1, true)
  assert(b and e, "markers missing from moonseg.h")
  local region = header:sub(b + #"/* MS_CDEF_BEGIN */", e - 1)
  H.eq(ms.lib.cdef_text == region, true, "library built from a different moonseg.h (stale build?)")
end)

H.case("every function declared in the header is exported by the library", function()
  local missing = {}
  for name in ms.lib.cdef_text:gmatch("([%w_]+)%s*%b()%s*;") do
    if name:match("^ms_") then
      local ok = pcall(function() return ms.lib.C[name] end)
      if not ok then missing[#missing + 1] = name end
    end
  end
  H.eq(table.concat(missing, ", "), "", "declared but not exported")
end)

H.case("ABI version in Lua matches the header and the library", function()
  local header = read(src .. "/csrc/include/moonseg.h")
  local v = tonumber(header:match("#define MS_ABI_VERSION (%d+)"))
  H.eq(v, ms.lib.ABI_VERSION)
  H.eq(ms.lib.C.ms_abi_version(), v)
end)

H.case("a stale library is refused with a message saying how to rebuild", function()
  -- Re-run the loader in a child process against a fake ABI expectation.
  local lua_path = package.path:gsub("'", "")
  local cmd = string.format([[luajit -e "package.path='%s'; local f=io.open('%s/lua/moonseg/lib.lua'); local s=f:read('*a'); f:close(); s=s:gsub('local ABI_VERSION = %%d+', 'local ABI_VERSION = 999'); local ok, err = pcall(loadstring(s)); io.write(tostring(err))" 2>&1]],
    lua_path, src)
  local p = io.popen(cmd)
  local msg = p:read("*a")
  p:close()
  assert(msg:find("ABI version", 1, true) and msg:find("rebuild", 1, true), "got: " .. msg)
end)

H.case("C errors become Lua errors naming the op and shapes", function()
  local x = ms.zeros(2, 3)
  H.raises(function() return x:view(4) end, "view", "[4]", "[2, 3]")
  H.raises(function() return x:t():view(6) end, "without a copy")
  H.raises(function() return x:permute(1, 1) end, "permute", "repeated")
  H.raises(function() return x:select(1, 3) end, "select", "out of range")
  H.raises(function() return x:size(0) end, "1-based")
  H.raises(function() return ms.zeros(2, 3, { dtype = "f128" }) end, "unknown dtype", "f128")
  H.raises(function() return ms.zeros(2, { device = "tpu" }) end, "unknown device")
  if not ms.has_cuda() then
    H.raises(function() return ms.zeros(2, { device = "cuda" }) end, "without CUDA")
  end
  H.raises(function() return x:expand(3, 3) end, "expand", "[2, 3]")
  H.raises(function() return ms.tensor({ { 1, 2 }, { 3 } }) end, "ragged")
  H.raises(function() return x:item() end, "item", "6 elements")
end)

H.case("freed tensors raise a clear error instead of crashing", function()
  local x = ms.ones(3)
  local before = ms.memory_stats().allocated
  x:free()
  H.eq(ms.memory_stats().allocated, before - 12)
  H.eq(x:is_freed(), true)
  H.raises(function() return x:size() end, "freed")
  H.eq(tostring(x), "tensor(<freed>)")
  x:free() -- twice is harmless
end)

H.case("finalizers free unreachable tensors", function()
  collectgarbage()
  local before = ms.memory_stats()
  do
    for _ = 1, 100 do local _ = ms.zeros(1000) end
  end
  collectgarbage()
  collectgarbage()
  local after = ms.memory_stats()
  H.eq(after.allocated, before.allocated)
  H.eq(after.storages, before.storages)
end)

H.done()
