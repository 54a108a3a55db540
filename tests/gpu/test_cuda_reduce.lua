-- test_cuda_reduce.lua: sum, mean, prod, max, min over dims and sum_to on CUDA vs CPU.
package.path = (arg[0]:match("^(.*/)") or "./") .. "?.lua;" .. package.path
local ms = require "moonseg"
local H = require "harness"
local G = require "gpu_common"
G.require_device()

local T, L = ms.Tensor, ms.lib
local C, ctx = L.C, L.ctx
local ffi = require "ffi"
ms.manual_seed(5)

local ops = { sum = 0, mean = 1, max = 2, min = 3, prod = 5 }
local function reduce(op, x, dims, keepdim)
  local d = ffi.new("int[?]", math.max(#dims, 1))
  for i, v in ipairs(dims) do d[i - 1] = v end
  return T.take(C.ms_reduce(ctx, op, T.handle(x), d, #dims, keepdim and 1 or 0, 0, L.out))
end

local dim_sets = { {}, { 0 }, { 1 }, { 2 }, { 0, 2 }, { 1, 2 }, { -1 }, { 0, 1, 2 } }

H.case("float reductions over dim sets, keepdim, strided input", function()
  for _, dt in ipairs { "f32", "f64", "f16", "bf16" } do
    for _, shape in ipairs { { 4, 5, 6 }, { 3, 1, 2100 }, { 2500, 3, 1 }, { 1, 1, 1 }, { 0, 3, 2 } } do
      local x = G.rand(shape, dt, 0.5, 1.5)
      for name, op in pairs(ops) do
        for _, dims in ipairs(dim_sets) do
          for _, keep in ipairs { false, true } do
            if not ((name == "max" or name == "min") and x:numel() == 0) then
              local tol = name == "prod" and 1e-4 or (dt == "f32" and 1e-5 or nil)
              G.same(reduce(op, G.to_dev(x), dims, keep), reduce(op, x, dims, keep), tol,
                string.format("%s %s over {%s} of %s", dt, name, table.concat(dims, ","),
                  table.concat(shape, "x")))
            end
          end
        end
      end
    end
    local xs = G.rand({ 6, 7, 8 }, dt):permute(3, 1, 2)
    G.same(reduce(0, G.to_dev(xs), { 1 }, false), reduce(0, xs, { 1 }, false), 1e-5, dt .. " strided sum")
  end
end)

H.case("NaN propagates through max and min", function()
  local x = ms.tensor({ { 1, 0 / 0, 3 }, { 4, 5, 6 } })
  G.same(reduce(2, G.to_dev(x), { 1 }, false), reduce(2, x, { 1 }, false), 0, "max")
  G.same(reduce(3, G.to_dev(x), {}, false), reduce(3, x, {}, false), 0, "min")
end)

H.case("integer reductions are exact", function()
  local x = ms.randint(-1000, 1000, { 7, 300 }, { dtype = "i32" })
  for _, op in ipairs { 0, 2, 3 } do
    for _, dims in ipairs { {}, { 0 }, { 1 } } do
      G.same(reduce(op, G.to_dev(x), dims, false), reduce(op, x, dims, false), 0, "i32 op " .. op)
    end
  end
  local b = G.rand({ 9, 4 }, "f32"):gt(0)
  G.same(reduce(0, G.to_dev(b), { 0 }, false), reduce(0, b, { 0 }, false), 0, "bool sum")
end)

H.case("sum_to, the backward of broadcasting", function()
  for _, case in ipairs { { { 8, 3, 5 }, { 3, 1 } }, { { 2, 4 }, { 4 } }, { { 2, 4 }, { 2, 4 } }, { { 3, 2 }, {} },
    { { 5000, 2 }, { 1, 2 } } } do
    local g = G.rand(case[1], "f32")
    local s, nd = T.shape_arg(case[2])
    local want = T.take(C.ms_sum_to(ctx, T.handle(g), s, nd, L.out))
    local got = T.take(C.ms_sum_to(ctx, T.handle(G.to_dev(g)), s, nd, L.out))
    G.same(got, want, 1e-5, "sum_to " .. table.concat(case[1], "x") .. " -> " .. table.concat(case[2], "x"))
  end
end)

H.case("Lua reductions and what is not ported", function()
  local x = G.rand({ 3, 4 }, "f32")
  G.same(G.to_dev(x):sum(2), x:sum(2), 1e-6, "x:sum(2)")
  G.same(G.to_dev(x):mean(), x:mean(), 1e-6, "x:mean()")
  if G.dev ~= "cpu" then
    H.raises(function() G.to_dev(x):var(1) end, "var: not supported on cuda:", "(no kernel in the cuda backend)")
  end
end)

H.done()
