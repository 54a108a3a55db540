-- test_softmax.lua: softmax / log_softmax values against a naive f64 reference, stability, gradients.
local ms = require "moonseg"
local H = require "harness"
local gradcheck = require("moonseg.gradcheck").gradcheck
local F = ms.functional

local gen = ms.Generator(3)
local function randn(shape, dtype) return ms.randn(shape, { dtype = dtype or "f64", generator = gen }) end
local flat = H.values

-- Naive reference over flat row-major values of shape, along 1-based dim.
local function ref_softmax(x, dim, log)
  local shape, v = x:size(), flat(x)
  if dim < 0 then dim = #shape + dim + 1 end
  local outer, inner = 1, 1
  for i = 1, dim - 1 do outer = outer * shape[i] end
  for i = dim + 1, #shape do inner = inner * shape[i] end
  local d, r = shape[dim], {}
  for o = 0, outer - 1 do
    for j = 0, inner - 1 do
      local mx = -math.huge
      for c = 0, d - 1 do mx = math.max(mx, v[(o * d + c) * inner + j + 1]) end
      local s = 0
      for c = 0, d - 1 do s = s + math.exp(v[(o * d + c) * inner + j + 1] - mx) end
      for c = 0, d - 1 do
        local k = (o * d + c) * inner + j + 1
        r[k] = log and (v[k] - mx - math.log(s)) or math.exp(v[k] - mx) / s
      end
    end
  end
  return r
end

H.case("hand-computed values", function()
  local y = F.softmax(ms.tensor { { 0, math.log(3) } }, 2)
  H.near(flat(y), { 0.25, 0.75 }, 1e-6)
  local l = F.log_softmax(ms.tensor({ 1, 1, 1, 1 }, { dtype = "f64" }), 1)
  H.near(flat(l), { -math.log(4), -math.log(4), -math.log(4), -math.log(4) }, 1e-14)
end)

H.case("every dim of an NCHW tensor, f64 and f32", function()
  for _, dt in ipairs { "f64", "f32" } do
    local x = randn({ 2, 5, 3, 7 }, dt)
    for _, d in ipairs { 1, 2, 3, 4, -1 } do
      for _, log in ipairs { false, true } do
        local y = log and x:log_softmax(d) or x:softmax(d)
        H.near(flat(y), ref_softmax(x, d, log), dt == "f64" and 1e-12 or 2e-6, dt .. " dim " .. d)
      end
    end
  end
end)

H.case("long rows and many positions (vector paths, threads)", function()
  local x = randn({ 3, 1000 }, "f32"):mul_(10)
  H.near(flat(x:softmax(2)), ref_softmax(x, 2), 2e-6)
  local z = randn({ 2, 19, 40, 41 }, "f32")
  H.near(flat(F.log_softmax(z, 2)), ref_softmax(z, 2, true), 2e-6)
end)

H.case("numerically stable for large and -inf inputs", function()
  local y = F.softmax(ms.tensor { 1000, 1001, 1002 }, 1)
  H.near(flat(y), ref_softmax(ms.tensor({ 0, 1, 2 }, { dtype = "f64" }), 1), 1e-6)
  local l = F.log_softmax(ms.tensor({ -1000, 0 }, { dtype = "f32" }), 1)
  H.near(flat(l), { -1000, 0 }, 1e-6)
  local m = F.softmax(ms.tensor { 0, -math.huge, 0 }, 1)
  H.same_list(flat(m), { 0.5, 0, 0.5 })
  local n = F.softmax(ms.tensor({ { 1, 0 / 0 } }), 2)
  H.eq(flat(n)[1] ~= flat(n)[1], true, "nan propagates")
end)

H.case("non-contiguous input, size-1 and empty", function()
  local x = randn { 4, 6 }:t() -- [6, 4] transposed
  H.near(flat(x:softmax(1)), ref_softmax(x:contiguous(), 1), 1e-12)
  local s = randn({ 3, 8 }):slice(2, 1, 8, 3)
  H.near(flat(s:log_softmax(-1)), ref_softmax(s:contiguous(), -1, true), 1e-12)
  H.same_list(flat(F.softmax(randn { 3, 1 }, 2)), { 1, 1, 1 })
  H.same_list(F.softmax(randn { 0, 4 }, 2):size(), { 0, 4 })
  H.near(F.softmax(ms.tensor(2.5), -1):item(), 1, 0)
end)

H.case("f16 and bf16", function()
  local x = randn({ 2, 6, 3 }, "f32")
  for _, dt in ipairs { "f16", "bf16" } do
    local y = x:to(dt):softmax(2)
    H.eq(y:type(), dt)
    H.near(flat(y), ref_softmax(x, 2), dt == "f16" and 2e-3 or 1e-2, dt)
    H.near(flat(x:to(dt):log_softmax(-1)), ref_softmax(x, -1, true), dt == "f16" and 5e-3 or 3e-2, dt)
  end
end)

H.case("errors", function()
  H.raises(function() F.softmax(ms.tensor({ 1, 2 }, { dtype = "i64" }), 1) end, "softmax", "[2] i64")
  H.raises(function() F.softmax(randn { 2, 3 }, 3) end, "dim 3 out of range")
  H.raises(function() F.log_softmax(randn { 2, 3 }) end, "log_softmax", "dim is required")
end)

H.case("gradcheck softmax and log_softmax", function()
  for _, case in ipairs { { { 2, 4, 3, 2 }, 2 }, { { 2, 4, 3, 2 }, -1 }, { { 3, 5 }, 1 }, { { 3, 5 }, 2 }, { { 1, 1 }, 2 } } do
    for _, log in ipairs { false, true } do
      local x = randn(case[1]):requires_grad_()
      gradcheck(function(t) return log and F.log_softmax(t, case[2]) or F.softmax(t, case[2]) end, { x })
    end
  end
  -- through a non-contiguous view
  local x = randn({ 4, 3 }):requires_grad_()
  gradcheck(function(t) return t:t():log_softmax(2) end, { x })
end)

H.done()
