-- test_elementwise.lua: binary/unary ops, promotion, in-place, where, operators and their gradients.
local ms = require "moonseg"
local H = require "harness"
local gc = require("moonseg.gradcheck").gradcheck

local rnd = H.rng(7, 0, 1)
-- Random values in [lo, hi) as a flat Lua list.
local function rlist(n, lo, hi) return H.rlist(rnd, n, lo, hi) end
local flat, T = H.flat, H.tensor

local REF = {
  add = function(a, b) return a + b end, sub = function(a, b) return a - b end,
  mul = function(a, b) return a * b end, div = function(a, b) return a / b end,
  pow = function(a, b) return a ^ b end, maximum = math.max, minimum = math.min,
  eq = function(a, b) return a == b end, ne = function(a, b) return a ~= b end,
  lt = function(a, b) return a < b end, le = function(a, b) return a <= b end,
  gt = function(a, b) return a > b end, ge = function(a, b) return a >= b end,
}

H.case("binary values with broadcasting [2,3] op [3] and [2,1] op [1,3], f32 and f64", function()
  for _, dt in ipairs { "f32", "f64" } do
    local av, bv = rlist(6, 0.5, 2), rlist(3, 0.5, 2)
    bv[2] = av[2] -- a tie for eq/maximum
    local a, b = T(av, { 2, 3 }, dt), T(bv, { 3 }, dt)
    for name, f in pairs(REF) do
      local got = flat(a[name](a, b))
      for i = 1, 6 do
        local want = f(av[i], bv[(i - 1) % 3 + 1])
        if type(want) == "boolean" then H.eq(got[i], want, name)
        else H.near(got[i], want, dt == "f32" and 1e-6 or 1e-12, name .. " " .. dt) end
      end
    end
    local c, d = T(av, { 2, 3 }, dt):narrow(2, 1, 1), T(bv, { 1, 3 }, dt)
    local r = c:mul(d)
    H.same_list(r:size(), { 2, 3 })
    local got = flat(r)
    for i = 1, 2 do for j = 1, 3 do H.near(got[(i - 1) * 3 + j], av[(i - 1) * 3 + 1] * bv[j], 1e-6) end end
  end
end)

H.case("scalars on either side and Lua operators", function()
  local x = ms.tensor { 1, 2, 4 }
  H.same_list(flat(2 - x), { 1, 0, -2 })
  H.same_list(flat(x - 2), { -1, 0, 2 })
  H.same_list(flat(8 / x), { 8, 4, 2 })
  H.same_list(flat(x / 2), { 0.5, 1, 2 })
  H.same_list(flat(2 ^ x), { 2, 4, 16 })
  H.same_list(flat(x ^ 2), { 1, 4, 16 })
  H.same_list(flat(-x), { -1, -2, -4 })
  H.same_list(flat(x * x + 1), { 2, 5, 17 })
  H.same_list(flat(3 * x), { 3, 6, 12 })
  H.same_list(flat(x:add(x, 10)), { 11, 22, 44 })
  H.same_list(flat(x:sub(x, 0.5)), { 0.5, 1, 2 })
  H.same_list(flat(x:add(1, 2)), { 3, 4, 6 })
  H.same_list(flat(x:gt(1)), { false, true, true })
  H.same_list(flat(ms.maximum(x, 2)), { 2, 2, 4 })
  H.same_list(flat(ms.minimum(3, x)), { 1, 2, 3 })
end)

H.case("type promotion", function()
  local i = ms.tensor({ 1, 2, 3 }, { dtype = "i64" })
  local f = ms.tensor({ 1, 2, 3 }, { dtype = "f32" })
  H.eq((i + f).dtype, "f32")
  H.eq((i + 2).dtype, "i64")
  H.eq((i + 2.5).dtype, "f32")
  H.same_list(flat(i + 2.5), { 3.5, 4.5, 5.5 })
  H.eq((i / i).dtype, "f32", "true division of ints")
  H.same_list(flat(i / 2), { 0.5, 1, 1.5 })
  H.eq(i:eq(2).dtype, "bool")
  H.eq((f:half() + ms.tensor(1.5, { dtype = "f64" })).dtype, "f16", "0-dim does not widen")
  H.eq((f:half() + ms.tensor({ 1.5 }, { dtype = "f64" })).dtype, "f64")
  H.eq((f:half() + f:bfloat16()).dtype, "f32")
  local b = ms.tensor { true, false }
  H.eq((b + 1).dtype, "i64")
  H.eq(ms.logical_and(b, ms.tensor { true, true }).dtype, "bool")
  H.same_list(flat(ms.logical_or(b, ms.tensor { false, false })), { true, false })
  H.same_list(flat(b:logical_not()), { false, true })
  H.eq((i * i).dtype, "i64")
  H.eq(i:pow(2).dtype, "i64")
  H.same_list(flat(i:pow(2)), { 1, 4, 9 })
  H.eq(i:pow(0.5).dtype, "f32")
  H.eq(i:exp().dtype, "f32")
  H.eq(i:neg().dtype, "i64")
  H.eq(i:gt(f).dtype, "bool")
end)

H.case("integer arithmetic is exact in int64", function()
  local big = ms.tensor({ 2 ^ 53 }, { dtype = "i64" })
  local r = (big + 1) + 1
  local ffi = require "ffi"
  local ptr = ffi.cast("int64_t*", r:data_ptr())
  H.eq(ptr[0] == 9007199254740994LL, true, "2^53 + 2 exactly")
  local a = ms.tensor({ 7, -7 }, { dtype = "i32" })
  H.same_list(flat(a:abs()), { 7, 7 })
  H.same_list(flat(a:maximum(ms.tensor({ 0, 0 }, { dtype = "i32" }))), { 7, 0 })
  H.eq(a:clamp(-3, 3).dtype, "i32")
  H.same_list(flat(a:clamp(-3, 3)), { 3, -3 })
  local u = ms.tensor({ 250 }, { dtype = "u8" })
  H.same_list(flat(u + 10), { 4 }, "u8 wraps")
end)

H.case("f16 and bf16 compute through float", function()
  local v = rlist(37, -3, 3)
  for _, dt in ipairs { "f16", "bf16" } do
    local x = ms.tensor(v, { dtype = dt })
    local xv = flat(x) -- the rounded inputs
    local tol = dt == "f16" and 2e-3 or 1.6e-2
    local got = flat(x * x + x)
    for i = 1, #v do H.near(got[i], xv[i] * xv[i] + xv[i], tol, dt) end
    got = flat(x:sigmoid())
    for i = 1, #v do H.near(got[i], 1 / (1 + math.exp(-xv[i])), tol, dt .. " sigmoid") end
    got = flat(x:relu())
    for i = 1, #v do H.eq(got[i], math.max(xv[i], 0)) end
    H.eq(x:gelu().dtype, dt)
  end
end)

H.case("non-contiguous, expanded, size-1 and empty inputs", function()
  local v = rlist(12, -1, 1)
  local x = T(v, { 3, 4 }, "f32")
  local xt = x:t() -- [4, 3] transposed
  local got = flat(xt * 2 + xt)
  for i = 1, 4 do for j = 1, 3 do H.near(got[(i - 1) * 3 + j], 3 * flat(x)[(j - 1) * 4 + i], 1e-6) end end
  local s = x:slice(2, 1, 4, 2) -- columns 1 and 3
  got = flat(s:exp())
  local xf = flat(x)
  for i = 1, 3 do
    H.near(got[(i - 1) * 2 + 1], math.exp(xf[(i - 1) * 4 + 1]), 1e-6)
    H.near(got[(i - 1) * 2 + 2], math.exp(xf[(i - 1) * 4 + 3]), 1e-6)
  end
  local e = ms.tensor({ 1, 2, 3 }):reshape { 3, 1 }:expand { 3, 5 }
  local r = e + ms.arange(5):float()
  H.same_list(r:size(), { 3, 5 })
  H.eq(flat(r)[15], 3 + 4)
  local one = ms.tensor({ 5 }) * ms.tensor(2)
  H.same_list(one:size(), { 1 })
  local z = ms.zeros(0, 3) + ms.ones(3)
  H.same_list(z:size(), { 0, 3 })
  H.eq(z:relu():numel(), 0)
  local zz = ms.tensor(3) + ms.tensor(4)
  H.eq(zz:dim(), 0)
  H.eq(zz:item(), 7)
  -- a large contiguous f32 op goes through the threaded fast path
  local big = ms.arange(100003):float()
  local b2 = (big * 0.5 + 1):relu()
  local bf = flat(b2)
  H.eq(bf[100003], 100002 * 0.5 + 1)
  H.eq(bf[1], 1)
end)

-- erf(z) by its Maclaurin series in doubles (accurate for |z| up to ~3)
local function erf_series(z)
  local s, term, n = 0, z, 0
  repeat
    s = s + term / (2 * n + 1)
    n = n + 1
    term = -term * z * z / n
  until math.abs(term) < 1e-18 and n > 5
  return 2 / math.sqrt(math.pi) * s
end

H.case("unary values against Lua math, f32 and f64", function()
  local v = rlist(25, -3, 3)
  v[1], v[2], v[3] = 0, -3, 3
  local function gelu(x) return 0.5 * x * (1 + erf_series(x / math.sqrt(2))) end
  local k = math.sqrt(2 / math.pi)
  local refs = {
    neg = function(x) return -x end, abs = math.abs, exp = math.exp,
    sigmoid = function(x) return 1 / (1 + math.exp(-x)) end,
    tanh = function(x) return (math.exp(2 * x) - 1) / (math.exp(2 * x) + 1) end,
    relu = function(x) return x > 0 and x or 0 end,
    hardswish = function(x) return x * math.min(math.max(x + 3, 0), 6) / 6 end,
    hardsigmoid = function(x) return math.min(math.max(x + 3, 0), 6) / 6 end,
    sign = function(x) return x > 0 and 1 or x < 0 and -1 or 0 end,
    square = function(x) return x * x end, gelu = gelu,
  }
  for _, dt in ipairs { "f32", "f64" } do
    local x = ms.tensor(v, { dtype = dt })
    local xv = flat(x)
    local tol = dt == "f32" and 2e-6 or 1e-12
    for name, f in pairs(refs) do
      local got = flat(x[name](x))
      for i = 1, #v do H.near(got[i], f(xv[i]), tol, name .. " " .. dt .. " at " .. xv[i]) end
    end
    local got = flat(x:gelu("tanh"))
    for i = 1, #v do
      local z = xv[i]
      H.near(got[i], 0.5 * z * (1 + math.tanh(k * (z + 0.044715 * z ^ 3))), tol, "gelu tanh")
    end
    got = flat(x:leaky_relu(0.2))
    for i = 1, #v do H.near(got[i], xv[i] > 0 and xv[i] or 0.2 * xv[i], tol) end
    got = flat(x:clamp(-1, 0.5))
    for i = 1, #v do H.near(got[i], math.min(math.max(xv[i], -1), 0.5), tol) end
    got = flat(x:clamp(nil, 0.5))
    for i = 1, #v do H.near(got[i], math.min(xv[i], 0.5), tol) end
    local p = x:abs() + 0.5
    local pv = flat(p)
    for name, f in pairs { log = math.log, sqrt = math.sqrt, rsqrt = function(z) return 1 / math.sqrt(z) end,
      reciprocal = function(z) return 1 / z end } do
      got = flat(p[name](p))
      for i = 1, #v do H.near(got[i], f(pv[i]), tol, name) end
    end
    got = flat(p:pow(1.5))
    for i = 1, #v do H.near(got[i], pv[i] ^ 1.5, tol) end
  end
  -- known values: GELU(1) = 0.8413447460685429 (erf), 0.8411919906082768 (tanh), from PyTorch
  H.near(ms.tensor({ 1 }, { dtype = "f64" }):gelu():item(), 0.8413447460685429, 1e-14)
  H.near(ms.tensor({ 1 }, { dtype = "f64" }):gelu("tanh"):item(), 0.8411919906082768, 1e-14)
  local nan = ms.tensor({ 0 / 0, 1 }):relu()
  H.eq(flat(nan)[1] ~= flat(nan)[1], true, "relu keeps NaN")
end)

H.case("in-place variants and autograd guards", function()
  local x = ms.tensor { -1, 2, -3 }
  H.eq(x:relu_(), x)
  H.same_list(flat(x), { 0, 2, 0 })
  x:add_(1):mul_(2)
  H.same_list(flat(x), { 2, 6, 2 })
  x:add_(ms.tensor { 1, 1, 1 }, 0.5)
  H.same_list(flat(x), { 2.5, 6.5, 2.5 })
  x:sub_(ms.tensor { 0.5, 0.5, 0.5 })
  H.same_list(flat(x), { 2, 6, 2 })
  x:clamp_(3, 5):div_(ms.tensor(2))
  H.same_list(flat(x), { 1.5, 2.5, 1.5 })
  x:neg_():exp_():log_()
  H.near(flat(x), { -1.5, -2.5, -1.5 }, 1e-6)
  local m = ms.zeros(2, 3)
  m:add_(ms.tensor { 1, 2, 3 }) -- broadcast into the destination
  H.same_list(flat(m), { 1, 2, 3, 1, 2, 3 })
  H.raises(function() ms.zeros(3):add_(ms.zeros(2, 3)) end, "add", "[2, 3]", "[3]")
  local i = ms.tensor({ 1, 2 }, { dtype = "i64" })
  H.raises(function() i:mul_(0.5) end, "mul", "cannot be stored", "i64")
  H.raises(function() i:div_(i) end, "div", "f32", "i64")
  local w = ms.ones(3, { requires_grad = true })
  H.raises(function() w:add_(1) end, "add_", "requires grad")
  H.raises(function() w:relu_() end, "relu_", "requires grad")
  ms.no_grad(function() w:mul_(3) end)
  H.same_list(flat(w), { 3, 3, 3 })
end)

H.case("x.grad accumulates over backward calls and shared inputs", function()
  local x = ms.tensor({ 1, 2 }, { dtype = "f64", requires_grad = true })
  local y = (x * x + x):sum()
  y:backward()
  H.same_list(flat(x.grad), { 3, 5 })
  ;(x * 3):sum():backward()
  H.same_list(flat(x.grad), { 6, 8 })
  local z = x + x
  z:sum():backward()
  H.same_list(flat(x.grad), { 8, 10 })
end)

H.case("where", function()
  local c = ms.tensor { true, false, true }
  local a, b = ms.tensor { 1, 2, 3 }, ms.tensor { 10, 20, 30 }
  H.same_list(flat(ms.where(c, a, b)), { 1, 20, 3 })
  H.same_list(flat(a:where(c, b)), { 1, 20, 3 })
  H.same_list(flat(ms.where(c, a, 0)), { 1, 0, 3 })
  H.same_list(flat(ms.where(c, -1, b)), { -1, 20, -1 })
  local r = ms.where(c:reshape { 3, 1 }, a, ms.tensor(0))
  H.same_list(r:size(), { 3, 3 })
  H.same_list(flat(r), { 1, 2, 3, 0, 0, 0, 1, 2, 3 })
  H.eq(ms.where(c, a:double(), b).dtype, "f64")
  H.raises(function() ms.where(a, a, b) end, "where", "bool", "[3] f32")
  H.raises(function() ms.where(c, a, ms.zeros(2)) end, "where", "[3]", "[2]")
end)

H.case("errors name the op, shapes and dtypes", function()
  H.raises(function() return ms.zeros(2, 3) + ms.zeros(4) end, "add", "[2, 3]", "[4]")
  H.raises(function() return ms.zeros(2, 3):mul(ms.zeros(3, 2)) end, "mul", "[2, 3]", "[3, 2]")
  H.raises(function() return ms.tensor({ 1 }, { dtype = "i64" }):gelu() end, "gelu", "i64")
  H.raises(function() return ms.tensor({ true }):neg() end, "neg", "bool")
  H.raises(function() return ms.tensor { true } - ms.tensor { false } end, "sub", "bool")
  H.raises(function() return ms.tensor({ 2 }, { dtype = "i64" }):pow(-1) end, "pow", "negative")
  H.raises(function() return ms.zeros(2):add("x") end, "add", "string")
  H.raises(function() return ms.zeros(2):gelu("fast") end, "gelu", "approximate")
  H.raises(function() return ms.zeros(2):clamp() end, "clamp")
end)

-- ---- gradients (f64 finite differences) ----------------------------------------------------
local function rt(shape, lo, hi)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return T(rlist(n, lo or -1, hi or 1), shape, "f64", true)
end

H.case("gradcheck binary ops with broadcasting", function()
  local shapes = { { { 2, 3 }, { 2, 3 } }, { { 2, 3 }, { 3 } }, { { 2, 1, 3 }, { 4, 1 } }, { {}, { 3 } } }
  for _, name in ipairs { "add", "sub", "mul", "div", "maximum", "minimum" } do
    for _, sh in ipairs(shapes) do
      local a = rt(sh[1], 0.5, 2)
      local b = rt(sh[2], 0.5, 2)
      if name == "div" then b = rt(sh[2], 1, 2) end
      gc(function(x, y) return x[name](x, y) end, { a, b })
    end
  end
  for _, sh in ipairs(shapes) do
    gc(function(x, y) return x:pow(y) end, { rt(sh[1], 0.5, 2), rt(sh[2], -1, 1) })
  end
  gc(function(x, y) return x:add(y, 2.5) end, { rt { 2, 3 }, rt { 3 } })
  gc(function(x, y) return x:sub(y, -1.5) end, { rt { 2, 3 }, rt { 2, 1 } })
  -- one operand without grad
  local nog = T(rlist(3, 1, 2), { 3 }, "f64")
  gc(function(x) return x * nog / nog:sqrt() end, { rt { 2, 3 } })
  -- maximum with exact ties shares the gradient
  local t1 = ms.tensor({ 1, 2, 3 }, { dtype = "f64", requires_grad = true })
  local t2 = ms.tensor({ 1, 0, 5 }, { dtype = "f64", requires_grad = true })
  ms.maximum(t1, t2):sum():backward()
  H.same_list(flat(t1.grad), { 0.5, 1, 0 })
  H.same_list(flat(t2.grad), { 0.5, 0, 1 })
end)

H.case("gradcheck scalar operands on both sides", function()
  gc(function(x) return 2 - x end, { rt { 3, 2 } })
  gc(function(x) return 3 / x end, { rt({ 3, 2 }, 1, 2) })
  gc(function(x) return x / 3 + 1 end, { rt { 3, 2 } })
  gc(function(x) return 2 ^ x end, { rt { 3 } })
  gc(function(x) return x ^ 3 end, { rt { 3 } })
  gc(function(x) return x:pow(2.5) end, { rt({ 4 }, 0.5, 2) })
  gc(function(x) return ms.maximum(x, 0.2) * ms.minimum(0.5, x) end, { rt { 5 } })
  gc(function(x) return -x * x end, { rt { 4 } })
end)

H.case("gradcheck unary ops", function()
  -- values kept away from kinks (0 for relu/abs, +-3 for hard*, clamp bounds)
  local function away(shape)
    local x = rt(shape, 0.1, 2.5)
    local sgn = ms.tensor({ 1, -1, 1, -1, 1, -1 }, { dtype = "f64" }):reshape(shape)
    return ms.no_grad(function() return (x * sgn):detach():requires_grad_() end)
  end
  for _, name in ipairs { "neg", "abs", "exp", "sigmoid", "tanh", "relu", "hardswish", "hardsigmoid",
    "square", "sign" } do
    gc(function(x) return x[name](x) end, { away { 2, 3 } })
  end
  for _, name in ipairs { "log", "sqrt", "rsqrt", "reciprocal" } do
    gc(function(x) return x[name](x) end, { rt({ 2, 3 }, 0.5, 2) })
  end
  gc(function(x) return x:leaky_relu(0.1) end, { away { 2, 3 } })
  gc(function(x) return x:gelu() end, { rt({ 2, 3 }, -3, 3) })
  gc(function(x) return x:gelu("tanh") end, { rt({ 2, 3 }, -3, 3) })
  gc(function(x) return x:clamp(-0.55, 0.45) end, { away { 2, 3 } })
  gc(function(x) return x:clamp(nil, 0.45) end, { away { 2, 3 } })
  gc(function(x) return ms.functional.relu(x) + ms.functional.sigmoid(x) end, { away { 6 } })
  -- a transposed input
  gc(function(x) return x:t():tanh() end, { rt { 2, 3 } })
end)

H.case("gradcheck where", function()
  local c = ms.tensor({ true, false, true, false, false, true }):reshape { 2, 3 }
  gc(function(a, b) return ms.where(c, a, b) end, { rt { 2, 3 }, rt { 3 } })
  gc(function(a) return ms.where(c, a, 0) end, { rt { 2, 1 } })
  gc(function(b) return ms.where(c, 1.5, b) end, { rt {} })
end)

H.case("exact gelu in f32 and its gradient keep their relative accuracy into the negative tail", function()
  -- erfc by its series (z < 2.5) or its continued fraction (z >= 2.5), in doubles
  local erfc
  function erfc(z)
    if z < 0 then return 2 - erfc(-z) end
    if z < 2.5 then return 1 - erf_series(z) end
    local f = z -- z + 1/2 / (z + 1 / (z + 3/2 / (z + ...))), from 60 levels down
    for k = 60, 1, -1 do f = z + (k / 2) / f end
    return math.exp(-z * z) / math.sqrt(math.pi) / f
  end
  local function gelu(x) return 0.5 * x * erfc(-x / math.sqrt(2)) end
  local function dgelu(x) return 0.5 * erfc(-x / math.sqrt(2)) + x * math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi) end
  local v = {}
  for k = 0, 480 do v[#v + 1] = -12 + k * 0.05 end
  local x = ms.tensor(v, { dtype = "f32" }):requires_grad_()
  local y = x:gelu()
  y:backward(ms.ones(#v))
  local xv, yv, gv = x:detach():tolist(), y:detach():tolist(), x.grad:tolist()
  for i = 1, #v do
    local z = xv[i]
    local want, dwant = gelu(z), dgelu(z)
    -- f32 rounding near 1 + erf and the product; in the tail (gelu down to -1e-32 at -12) a
    -- relative bound: 1 + erff(z / sqrt 2) would round to 0 there and fail it
    local tol = z < -3 and 2e-5 * math.abs(want) or 3e-7 * (1 + math.abs(want))
    if not (math.abs(yv[i] - want) <= tol) then
      error(string.format("gelu(%.2f) = %.9g, want %.9g", z, yv[i], want))
    end
    local dtol = z < -3 and 2e-5 * math.abs(dwant) or 3e-7 * (1 + math.abs(dwant))
    if not (math.abs(gv[i] - dwant) <= dtol) then
      error(string.format("gelu'(%.2f) = %.9g, want %.9g", z, gv[i], dwant))
    end
  end
end)

H.done()
