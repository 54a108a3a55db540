-- gpu_common.lua: shared helpers of the GPU tests: the skip rule, value reads, CPU-vs-device checks.
-- MOONSEG_GPU_TEST_DEVICE=cpu runs every comparison CPU against CPU (checks the tests themselves
-- on machines without a GPU).
local ms = require "moonseg"
local ffi = require "ffi"
local H = require "harness"

local G = { dev = os.getenv("MOONSEG_GPU_TEST_DEVICE") or "cuda" }
local L, C = ms.lib, ms.lib.C

-- Exits 0 with a clear line when there is no device to test on.
function G.require_device()
  if G.dev == "cpu" then return end
  if not ms.cuda.is_available() then
    print("skipped: no CUDA device (" .. (ms.has_cuda() and "moonseg has the CUDA backend, " ..
      ms.cuda.device_count() .. " devices visible" or "moonseg was built without CUDA") .. ")")
    os.exit(0)
  end
end

-- All values of t (any device, any dtype) as a flat Lua array of numbers.
function G.values(t)
  local n = t:numel()
  local buf = ffi.new("double[?]", math.max(n, 1))
  L.check(C.ms_read_f64(L.ctx, ms.Tensor.handle(t), buf, n))
  local v = {}
  for i = 1, n do v[i] = buf[i - 1] end
  return v
end

G.tol = { f64 = 1e-12, f32 = 2e-6, f16 = 2e-3, bf16 = 1.6e-2, i64 = 0, i32 = 0, u8 = 0, bool = 0 }

-- Device result d must equal the CPU result c: same shape and dtype, values within tol
-- (relative to 1 + |c|), NaN where the CPU has NaN, infinities equal.
function G.same(d, c, tol, what)
  what = what or "value"
  H.eq(d.device == "cpu" and "cpu" or d.device:match("^cuda") and "cuda", G.dev == "cpu" and "cpu" or "cuda",
    what .. ": result device")
  H.eq(d:type(), c:type(), what .. ": dtype")
  H.same_list(d:size(), c:size(), what .. ": shape")
  tol = tol or G.tol[c:type()] or 0
  local dv, cv = G.values(d), G.values(c)
  for i = 1, #cv do
    local a, b = dv[i], cv[i]
    local ok
    if b ~= b then ok = a ~= a
    elseif b == math.huge or b == -math.huge then ok = a == b
    else ok = math.abs(a - b) <= tol * (1 + math.abs(b)) end
    if not ok then
      error(string.format("%s: element %d is %.17g on %s, %.17g on the CPU (tol %g)", what, i, a, G.dev,
        b, tol), 2)
    end
  end
end

-- A CPU tensor of shape with values from the default generator, in dtype.
function G.rand(shape, dtype, lo, hi)
  lo, hi = lo or -2, hi or 2
  local t = ms.rand(shape, { dtype = "f64" }):mul(hi - lo):add(lo)
  return t:to(dtype or "f32")
end

function G.to_dev(t) return t:to(G.dev) end

return G
