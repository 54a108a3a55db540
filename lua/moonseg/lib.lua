-- lib.lua: loads libmoonseg through the FFI, checks its ABI, and reads the API from the library itself.
local ffi = require "ffi"

local ABI_VERSION = 4 -- must equal MS_ABI_VERSION in csrc/include/moonseg.h (a test checks)

local L = { ABI_VERSION = ABI_VERSION }

local function source_dir()
  local src = debug.getinfo(1, "S").source
  return src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or "."
end

local function candidates()
  local list = {}
  local env = os.getenv("MOONSEG_LIB")
  if env and env ~= "" then list[#list + 1] = env end
  local here = source_dir() -- .../lua/moonseg
  list[#list + 1] = here .. "/../../build/libmoonseg.so" -- running from the source tree
  for pat in package.cpath:gmatch("[^;]+") do
    local dir = pat:match("^(.*)/%?%.so$")
    if dir then list[#list + 1] = dir .. "/libmoonseg.so" end
  end
  list[#list + 1] = "moonseg" -- the system's library path
  return list
end

local function load_library()
  local tried = {}
  for _, path in ipairs(candidates()) do
    local f = path:find("/") and io.open(path, "rb")
    if f then f:close() end
    if f or not path:find("/") then
      local ok, lib = pcall(ffi.load, path)
      if ok then return lib, path end
      tried[#tried + 1] = path .. " (" .. tostring(lib) .. ")"
    else
      tried[#tried + 1] = path .. " (not found)"
    end
  end
  error("moonseg: cannot load libmoonseg.so. Build it from the source tree with\n" ..
        "  cmake -S . -B build && cmake --build build -j\n" ..
        "or set MOONSEG_LIB to its path. Tried:\n  " .. table.concat(tried, "\n  "), 0)
end

local C, path = load_library()
L.C, L.path = C, path

ffi.cdef [[
int ms_abi_version(void);
const char *ms_cdef(void);
]]
local abi = C.ms_abi_version()
if abi ~= ABI_VERSION then
  error(string.format("moonseg: %s has ABI version %d but these Lua files expect %d: the library " ..
    "is stale; rebuild it (cmake --build build) or point MOONSEG_LIB at a matching build", path,
    abi, ABI_VERSION), 0)
end
L.cdef_text = ffi.string(C.ms_cdef())
ffi.cdef(L.cdef_text)

-- Raises the library's last error as a Lua error at the caller's caller.
function L.check(status, level)
  if status ~= 0 then error(ffi.string(C.ms_last_error()), (level or 2) + 1) end
end

L.ctx = ffi.gc((function()
  local p = ffi.new("ms_context*[1]")
  L.check(C.ms_context_new(p))
  return p[0]
end)(), C.ms_context_free)

-- Scratch out-pointers; read right after each call (calls are synchronous).
L.out = ffi.new("ms_tensor*[4]")

L.dtypes = { f64 = 0, f32 = 1, f16 = 2, bf16 = 3, i64 = 4, i32 = 5, u8 = 6, bool = 7 }
L.dtype_names = { [0] = "f64", "f32", "f16", "bf16", "i64", "i32", "u8", "bool" }
L.dtype_ctypes = { [0] = "double", "float", "uint16_t", "uint16_t", "int64_t", "int32_t", "uint8_t", "uint8_t" }
-- Aliases a PyTorch user would type.
for alias, name in pairs { float64 = "f64", double = "f64", float32 = "f32", float = "f32",
  float16 = "f16", half = "f16", bfloat16 = "bf16", int64 = "i64", long = "i64", int32 = "i32",
  int = "i32", uint8 = "u8", byte = "u8" } do
  L.dtypes[alias] = L.dtypes[name]
end

return L
