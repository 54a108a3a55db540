-- test_cuda_random.lua: the Philox streams on CUDA equal the CPU's number for number.
package.path = (arg[0]:match("^(.*/)") or "./") .. "?.lua;" .. package.path
local ms = require "moonseg"
local H = require "harness"
local G = require "gpu_common"
G.require_device()

local ffi = require "ffi"

local function gen(seed, offset) return ffi.new("ms_generator", { seed = seed, offset = offset or 0 }) end

H.case("uniform, normal and randint: same numbers, same offsets", function()
  for _, dt in ipairs { "f32", "f64", "f16", "bf16" } do
    for _, n in ipairs { 1, 3, 4, 5, 1001 } do
      local gc, gd = gen(1234, 77), gen(1234, 77)
      G.same(ms.rand({ n }, { dtype = dt, device = G.dev, generator = gd }),
        ms.rand({ n }, { dtype = dt, generator = gc }), 0, dt .. " uniform " .. n)
      H.eq(tonumber(gd.offset), tonumber(gc.offset), "offset after uniform")
      -- normal: log/cos may differ in the last bit of a double between libm and CUDA
      G.same(ms.randn({ n }, { dtype = dt, device = G.dev, generator = gd }),
        ms.randn({ n }, { dtype = dt, generator = gc }), dt == "f64" and 1e-14 or (dt == "f32" and 1e-6 or nil),
        dt .. " normal " .. n)
      H.eq(tonumber(gd.offset), tonumber(gc.offset), "offset after normal")
    end
  end
  for _, dt in ipairs { "i64", "i32", "f32" } do
    local gc, gd = gen(99), gen(99)
    G.same(ms.randint(-50, 1000, { 37 }, { dtype = dt, device = G.dev, generator = gd }),
      ms.randint(-50, 1000, { 37 }, { dtype = dt, generator = gc }), 0, dt .. " randint")
    H.eq(tonumber(gd.offset), tonumber(gc.offset), "offset after randint")
  end
end)

H.case("in-place fills of strided views draw in row-major order", function()
  local gc, gd = gen(5), gen(5)
  local c = ms.zeros({ 6, 8 })
  local d = ms.zeros({ 6, 8 }, { device = G.dev })
  c:t():uniform_(-1, 1, { generator = gc })
  d:t():uniform_(-1, 1, { generator = gd })
  G.same(d, c, 0, "uniform_ into a transposed view")
end)

H.case("dropout: same mask and output", function()
  for _, dt in ipairs { "f32", "f16" } do
    local x = G.rand({ 7, 9 }, dt)
    local gc, gd = gen(42, 3), gen(42, 3)
    local L, T = ms.lib, ms.Tensor
    local function drop(t, g)
      L.check(L.C.ms_dropout(L.ctx, g, T.handle(t), 0.3, L.out, L.out + 1))
      return T.wrap(L.out[0]), T.wrap(L.out[1])
    end
    local oc, mc = drop(x, gc)
    local od, md = drop(G.to_dev(x), gd)
    G.same(od, oc, 0, dt .. " dropout output")
    G.same(md, mc, 0, dt .. " dropout mask")
    H.eq(tonumber(gd.offset), tonumber(gc.offset), "offset after dropout")
  end
end)

H.done()
