-- test_cuda_elementwise.lua: binary, scalar, unary, unary backward, where and axpy on CUDA vs CPU.
package.path = (arg[0]:match("^(.*/)") or "./") .. "?.lua;" .. package.path
local ms = require "moonseg"
local H = require "harness"
local G = require "gpu_common"
G.require_device()

local T, L = ms.Tensor, ms.lib
local C, ctx = L.C, L.ctx
ms.manual_seed(11)

local floats = { "f32", "f64", "f16", "bf16" }
local binops = { "add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge",
  "logical_and", "logical_or" }
local function bin(op_index, a, b)
  return T.take(C.ms_binary(ctx, op_index, T.handle(a), T.handle(b), L.out))
end
local function bin_scalar(op_index, a, s, rev)
  return T.take(C.ms_binary_scalar(ctx, op_index, T.handle(a), s, rev and 1 or 0, L.out))
end
local function un(op_index, x, p0, p1)
  return T.take(C.ms_unary(ctx, op_index, T.handle(x), p0 or 0, p1 or 0, L.out))
end
local function un_bwd(op_index, g, x, y, p0, p1)
  return T.take(C.ms_unary_backward(ctx, op_index, T.handle(g), x and T.handle(x) or nil,
    y and T.handle(y) or nil, p0 or 0, p1 or 0, L.out))
end

-- Shapes: same, broadcast both ways, 0-dim, size-1 and odd sizes.
local pairs_of_shapes = { { { 3, 5 }, { 3, 5 } }, { { 4, 1, 7 }, { 3, 1 } }, { { 2, 3 }, {} },
  { { 1 }, { 5, 1, 1 } }, { { 0, 3 }, { 1, 3 } }, { { 129, 65 }, { 65 } } }

H.case("binary ops, float dtypes, broadcasting", function()
  for _, dt in ipairs(floats) do
    for k, name in ipairs(binops) do
      for _, sh in ipairs(pairs_of_shapes) do
        local a, b = G.rand(sh[1], dt, -3, 3), G.rand(sh[2], dt, -3, 3)
        if name == "pow" then a = a:abs():add(0.1) end
        if name == "eq" or name == "ne" then b = ms.where(G.rand(sh[2], "f32"):gt(0), b, b:mul(0):add(1)) end
        G.same(bin(k - 1, G.to_dev(a), G.to_dev(b)), bin(k - 1, a, b), nil, dt .. " " .. name)
      end
    end
  end
end)

H.case("binary ops on non-contiguous and mixed dtypes", function()
  local a = G.rand({ 6, 8 }, "f32"):t()
  local b = G.rand({ 8, 12 }, "f32"):slice(2, 1, 12, 2)
  for k, name in ipairs(binops) do
    G.same(bin(k - 1, G.to_dev(a), G.to_dev(b)), bin(k - 1, a, b), nil, "strided " .. name)
  end
  local i = ms.randint(-5, 6, { 8, 6 }, { dtype = "i64" })
  local h = G.rand({ 6 }, "f16")
  for k, name in ipairs(binops) do
    if name ~= "sub" then
      local bi = ms.randint(-5, 6, { 6 }, { dtype = "i32" })
      if name == "pow" then bi = bi:abs() end
      G.same(bin(k - 1, G.to_dev(i), G.to_dev(bi)), bin(k - 1, i, bi), 0, "i64/i32 " .. name)
      G.same(bin(k - 1, G.to_dev(i), G.to_dev(h)), bin(k - 1, i, h), nil, "i64/f16 " .. name)
    end
  end
  local bl = G.rand({ 5 }, "f32"):gt(0)
  G.same(bin(13, G.to_dev(bl), G.to_dev(bl:logical_not())), bin(13, bl, bl:logical_not()), 0, "bool and")
end)

H.case("scalar ops both ways", function()
  for _, dt in ipairs { "f32", "f64", "f16", "bf16", "i64", "i32", "u8" } do
    local a = dt:match("^i") and ms.randint(-9, 10, { 7, 3 }, { dtype = dt }) or
        dt == "u8" and ms.randint(0, 200, { 7, 3 }, { dtype = dt }) or G.rand({ 7, 3 }, dt)
    for k, name in ipairs(binops) do
      for _, s in ipairs { 2, 0.1, -1.5 } do
        for _, rev in ipairs { false, true } do
          local skip = (name == "pow" and (not rev and s < 0 and not dt:match("^[fb]")))
          if not skip then
            local ok_c, c = pcall(bin_scalar, k - 1, a, s, rev)
            if ok_c then
              G.same(bin_scalar(k - 1, G.to_dev(a), s, rev), c, nil, dt .. " " .. name .. " " .. s ..
                (rev and " reversed" or ""))
            else
              H.raises(function() bin_scalar(k - 1, G.to_dev(a), s, rev) end, name)
            end
          end
        end
      end
    end
  end
end)

local unops = { "neg", "abs", "exp", "log", "sqrt", "rsqrt", "sigmoid", "tanh", "relu", "leaky_relu", "gelu",
  "hardswish", "clamp", "pow", "sign", "reciprocal", "square", "logical_not", "hardsigmoid" }
local params = { leaky_relu = { 0.1, 0 }, clamp = { -0.5, 0.75 }, pow = { 2.5, 0 } }

H.case("unary ops and their backward, float dtypes", function()
  for _, dt in ipairs(floats) do
    for k, name in ipairs(unops) do
      local x = G.rand({ 5, 9, 3 }, dt, -4, 4)
      if name == "log" or name == "sqrt" or name == "rsqrt" or name == "pow" then x = x:abs():add(0.05) end
      local p = params[name] or { 0, 0 }
      local xd = G.to_dev(x)
      G.same(un(k - 1, xd, p[1], p[2]), un(k - 1, x, p[1], p[2]), nil, dt .. " " .. name)
      local xs = x:permute(3, 1, 2)
      G.same(un(k - 1, G.to_dev(xs), p[1], p[2]), un(k - 1, xs, p[1], p[2]), nil, dt .. " strided " .. name)
      if name == "gelu" then
        G.same(un(k - 1, xd, 1, 0), un(k - 1, x, 1, 0), nil, dt .. " gelu tanh")
      end
      if name ~= "logical_not" then
        local g = G.rand({ 5, 9, 3 }, dt)
        local y = un(k - 1, x, p[1], p[2])
        local want = un_bwd(k - 1, g, x, y, p[1], p[2])
        local got = un_bwd(k - 1, G.to_dev(g), xd, G.to_dev(y), p[1], p[2])
        G.same(got, want, dt == "f32" and 1e-5 or nil, dt .. " " .. name .. " backward")
      end
    end
  end
end)

H.case("unary ops on integer tensors", function()
  local x = ms.randint(-6, 7, { 4, 5 }, { dtype = "i64" })
  for k, name in ipairs(unops) do
    local p = params[name] or { 0, 0 }
    local ok, c = pcall(un, k - 1, x, p[1], p[2])
    if ok then
      G.same(un(k - 1, G.to_dev(x), p[1], p[2]), c, nil, "i64 " .. name)
    else
      H.raises(function() un(k - 1, G.to_dev(x), p[1], p[2]) end, name)
    end
  end
end)

H.case("where and axpy_", function()
  local cond = G.rand({ 4, 1, 6 }, "f32"):gt(0)
  for _, dt in ipairs(floats) do
    local a, b = G.rand({ 3, 6 }, dt), G.rand({ 4, 3, 1 }, dt)
    G.same(ms.where(G.to_dev(cond), G.to_dev(a), G.to_dev(b)), ms.where(cond, a, b), 0, dt .. " where")
    local dst = G.rand({ 4, 3, 6 }, dt)
    local dd = G.to_dev(dst)
    L.check(C.ms_axpy_(ctx, T.handle(dd), -0.375, T.handle(G.to_dev(a))))
    L.check(C.ms_axpy_(ctx, T.handle(dst), -0.375, T.handle(a)))
    G.same(dd, dst, nil, dt .. " axpy_")
  end
  local ai, bf, c5 = ms.randint(0, 9, { 5 }, { dtype = "i64" }), G.rand({ 5 }, "f32"), G.rand({ 5 }, "f32"):gt(0)
  G.same(ms.where(G.to_dev(c5), G.to_dev(ai), G.to_dev(bf)), ms.where(c5, ai, bf), 0, "mixed where")
end)

H.case("Lua methods and autograd run on the device", function()
  local x = G.rand({ 3, 4 }, "f32")
  local xc = x:clone()
  xc.requires_grad = true
  local xd = G.to_dev(x:clone())
  xd.requires_grad = true
  local y = xd:mul(3):sigmoid():add(xd:relu()):sum()
  y:backward()
  xc:mul(3):sigmoid():add(xc:relu()):sum():backward()
  G.same(xd.grad, xc.grad, 1e-5, "grad through mul, sigmoid, relu, add, sum")
end)

H.done()
