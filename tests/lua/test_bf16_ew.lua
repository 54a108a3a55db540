-- test_bf16_ew.lua: the direct bf16 loops of relu, relu's backward and add (bf16_ew.c) give the
-- same bits as computing in f32 and rounding to bf16 (the chunked half loop's route): ordinary
-- values of every magnitude, signed zeros, infinities, NaN, subnormals; contiguous, strided and
-- broadcast operands.
local H = require "harness"
local ms = require "moonseg"
local F = ms.functional

local INF, NAN = math.huge, 0 / 0
local specials = { -2.5, -0.0, 0.0, 1.5, INF, -INF, NAN, -NAN, 1e-40, -1e-40, 3e38, -3e38, 1e-3, -7.25 }

-- bf16 values: the specials, then random ones over many magnitudes
local function values(n, seed)
  local rnd = H.rng(seed)
  local v = {}
  for i = 1, n do
    v[i] = specials[i] or (rnd() - 0.5) * 10 ^ math.floor(rnd() * 12 - 6)
  end
  return v
end

local function bits(t)
  local r = {}
  for i, v in ipairs(H.values(t:to("f64"))) do r[i] = string.format("%a", v) end
  return r
end

local function same_bits(a, b, what)
  H.eq(a:type(), b:type(), what .. " dtype")
  local x, y = bits(a), bits(b)
  H.eq(#x, #y, what .. " size")
  for i = 1, #x do H.eq(x[i], y[i], what .. " [" .. i .. "]") end
end

local function bf(v, shape) return ms.tensor(v, { dtype = "f32" }):view(shape):to("bf16") end

H.case("bf16 relu: the f32 result's bits, contiguous and strided", function()
  local x = bf(values(6 * 50, 1), { 6, 50 })
  same_bits(F.relu(x), F.relu(x:to("f32")):to("bf16"), "contiguous")
  local xt = x:t()
  same_bits(F.relu(xt), F.relu(xt:to("f32")):to("bf16"), "transposed")
end)

H.case("bf16 relu backward: the f32 gradient's bits", function()
  local x = bf(values(6 * 50, 2), { 6, 50 })
  local g = bf(values(6 * 50, 3), { 6, 50 })
  local xb = x:clone():requires_grad_()
  F.relu(xb):backward(g)
  local xf = x:to("f32"):requires_grad_()
  F.relu(xf):backward(g:to("f32"))
  same_bits(xb.grad, xf.grad:to("bf16"), "grad")
  local xs = x:t():clone():requires_grad_() -- strided gradient operand
  F.relu(xs):backward(g:t())
  local xsf = x:t():to("f32"):requires_grad_()
  F.relu(xsf):backward(g:t():to("f32"))
  same_bits(xs.grad, xsf.grad:to("bf16"), "strided grad")
end)

H.case("bf16 add: the f32 sum rounded to nearest even", function()
  local a = bf(values(6 * 50, 4), { 6, 50 })
  local b = bf(values(6 * 50, 5), { 6, 50 })
  same_bits(a + b, (a:to("f32") + b:to("f32")):to("bf16"), "contiguous")
  same_bits(a:t() + b:t(), (a:t():to("f32") + b:t():to("f32")):to("bf16"), "strided")
  local row = b[{ { 1, 1 }, {} }] -- [1, 50], broadcast over rows
  same_bits(a + row, (a:to("f32") + row:to("f32")):to("bf16"), "broadcast")
  -- ties round to even: 1 + 2^-8 lies halfway between bf16 neighbours 1 and 1 + 2^-7
  local one, tie = bf({ 1, 1 + 2 ^ -7 }, { 2 }), bf({ 2 ^ -8, 2 ^ -8 }, { 2 })
  H.same_list(H.values((one + tie):to("f64")), { 1, 1 + 2 ^ -6 }, "ties to even")
end)

H.done()
