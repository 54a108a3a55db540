-- test_join.lua: cat / stack / split / chunk values, promotion, empty inputs, errors and gradients.
local ms = require "moonseg"
local H = require "harness"
local gradcheck = require("moonseg.gradcheck").gradcheck

local gen = ms.Generator(7)
local function randn(shape, dtype) return ms.randn(shape, { dtype = dtype or "f64", generator = gen }) end
local function flat(x)
  local buf, n = x:to_f64_buffer()
  local t = {}
  for i = 0, n - 1 do t[i + 1] = buf[i] end
  return t
end

-- Reference cat over nested tables (tolist) along 1-based dim.
local function ref_cat(lists, dim, depth)
  depth = depth or 1
  if depth == dim then
    local r = {}
    for _, l in ipairs(lists) do for _, v in ipairs(l) do r[#r + 1] = v end end
    return r
  end
  local r = {}
  for i = 1, #lists[1] do
    local sub = {}
    for k, l in ipairs(lists) do sub[k] = l[i] end
    r[i] = ref_cat(sub, dim, depth + 1)
  end
  return r
end
local function flatten(t, acc)
  acc = acc or {}
  if type(t) ~= "table" then acc[#acc + 1] = t; return acc end
  for _, v in ipairs(t) do flatten(v, acc) end
  return acc
end

H.case("cat along every dim matches the reference", function()
  local a, b, c = randn { 2, 3, 4 }, randn { 2, 1, 4 }, randn { 2, 2, 4 }
  local y = ms.cat({ a, b, c }, 2)
  H.same_list(y:size(), { 2, 6, 4 })
  H.same_list(flat(y), flatten(ref_cat({ a:tolist(), b:tolist(), c:tolist() }, 2)))
  local p, q = randn { 1, 3, 4 }, randn { 3, 3, 4 }
  H.same_list(flat(ms.cat({ p, q })), flatten(ref_cat({ p:tolist(), q:tolist() }, 1)))
  local r, s = randn { 2, 3, 5 }, randn { 2, 3, 1 }
  local z = ms.cat({ r, s }, -1)
  H.same_list(z:size(), { 2, 3, 6 })
  H.same_list(flat(z), flatten(ref_cat({ r:tolist(), s:tolist() }, 3)))
  H.same_list(flat(ms.cat({ ms.tensor { 1, 2 }, ms.tensor { 3 } })), { 1, 2, 3 })
end)

H.case("non-contiguous inputs", function()
  local a = randn { 4, 3 }:t()          -- [3, 4] transposed view
  local b = randn { 3, 8 }:slice(2, 1, 8, 2)
  local y = ms.cat({ a, b }, 2)
  H.same_list(flat(y), flatten(ref_cat({ a:tolist(), b:tolist() }, 2)))
  local e = randn { 1, 4 }:expand(3, 4)
  H.same_list(flat(ms.cat({ e, a }, 1)), flatten(ref_cat({ e:tolist(), a:tolist() }, 1)))
end)

H.case("dtype promotion as in PyTorch", function()
  local a = ms.tensor({ 1.5, 2.5 }, { dtype = "f32" })
  local b = ms.tensor({ 3, 4 }, { dtype = "f64" })
  local i = ms.tensor({ 5, 6 }, { dtype = "i64" })
  H.eq(ms.cat({ a, b }):type(), "f64")
  local y = ms.cat({ i, a })
  H.eq(y:type(), "f32")
  H.same_list(flat(y), { 5, 6, 1.5, 2.5 })
  H.eq(ms.cat({ i, ms.tensor({ 7 }, { dtype = "i32" }) }):type(), "i64")
  local h = ms.cat({ a:to("f16"), a:to("f16") })
  H.eq(h:type(), "f16")
  H.same_list(flat(h), { 1.5, 2.5, 1.5, 2.5 })
end)

H.case("empty inputs", function()
  local a = randn { 2, 3 }
  local y = ms.cat({ a, ms.empty({ 0 }, { dtype = "f64" }), randn { 2, 0 } }, 2) -- legacy [0] skipped
  H.same_list(y:size(), { 2, 3 })
  H.same_list(flat(y), flat(a))
  H.same_list(ms.cat({ randn { 0, 3 }, randn { 0, 3 } }):size(), { 0, 3 })
  H.same_list(ms.cat({ ms.empty({ 0 }, { dtype = "f64" }) }):size(), { 0 })
end)

H.case("stack, split and chunk", function()
  local a, b = ms.tensor { { 1, 2 }, { 3, 4 } }, ms.tensor { { 5, 6 }, { 7, 8 } }
  local s1 = ms.stack({ a, b })
  H.same_list(s1:size(), { 2, 2, 2 })
  H.same_list(flat(s1), { 1, 2, 3, 4, 5, 6, 7, 8 })
  local s2 = ms.stack({ a, b }, 2)
  H.same_list(flat(s2), { 1, 2, 5, 6, 3, 4, 7, 8 })
  local s3 = ms.stack({ a, b }, -1)
  H.same_list(s3:size(), { 2, 2, 2 })
  H.same_list(flat(s3), { 1, 5, 2, 6, 3, 7, 4, 8 })
  local x = ms.arange(10, { dtype = "f32" }):view(2, 5)
  local parts = x:split(2, 2)
  H.eq(#parts, 3)
  H.same_list(parts[3]:size(), { 2, 1 })
  H.same_list(flat(parts[2]), { 2, 3, 7, 8 })
  local p2 = x:split({ 1, 4 }, -1)
  H.same_list(flat(p2[2]), { 1, 2, 3, 4, 6, 7, 8, 9 })
  local c = x:chunk(3, 2)  -- ceil(5/3) = 2 -> sizes 2, 2, 1
  H.eq(#c, 3)
  H.same_list(flat(c[3]), { 4, 9 })
  H.eq(#ms.arange(4):chunk(3), 2) -- sizes 2, 2 as torch.chunk
  H.raises(function() x:split({ 1, 1 }, 2) end, "split", "sum to 2", "size 5")
end)

H.case("errors name the tensor index and shapes", function()
  H.raises(function() ms.cat({ randn { 2, 3 }, randn { 2, 3 }, randn { 3, 4 } }, 2) end,
    "cat", "tensor 2", "[3, 4]", "[2, 3]")
  H.raises(function() ms.cat({ randn { 2, 3 }, randn { 2, 3, 1 } }) end, "cat", "[2, 3, 1]")
  H.raises(function() ms.cat({ randn { 2 } }, 3) end, "dim 3 out of range")
  H.raises(function() ms.cat({}) end, "cat", "non-empty")
  H.raises(function() ms.cat({ ms.tensor(1), ms.tensor(2) }) end)
  H.raises(function() ms.stack({ randn { 2, 3 }, randn { 3, 2 } }) end, "stack", "[3, 2]", "[2, 3]")
end)

H.case("gradcheck cat along dims 1, 2, 3 and mixed requires_grad", function()
  for d = 1, 3 do
    local sa, sb = { 2, 3, 2 }, { 2, 3, 2 }
    sb[d] = 1
    local a, b = randn(sa):requires_grad_(), randn(sb):requires_grad_()
    gradcheck(function(x, y) return ms.cat({ x, y, x }, d) end, { a, b })
  end
  local a, c = randn { 2, 2 }:requires_grad_(), randn { 2, 3 }
  gradcheck(function(x) return ms.cat({ c, x }, -1) end, { a })
  gradcheck(function(x) return ms.cat({ x, ms.empty({ 0 }, { dtype = "f64" }) }, 1) end, { a })
end)

H.case("gradcheck stack, split and chunk", function()
  local a, b = randn { 2, 3 }:requires_grad_(), randn { 2, 3 }:requires_grad_()
  gradcheck(function(x, y) return ms.stack({ x, y }, 2) end, { a, b })
  gradcheck(function(x) return x:split(2, 2) end, { randn { 2, 5 }:requires_grad_() })
  gradcheck(function(x) return { x:chunk(2, 1)[2] } end, { randn { 3, 2 }:requires_grad_() })
end)

H.case("cat backward casts gradients back to input dtypes", function()
  local a = ms.tensor({ 1, 2 }, { dtype = "f32", requires_grad = true })
  local b = ms.tensor({ 3 }, { dtype = "f64", requires_grad = true })
  local y = ms.cat({ a, b })
  y:backward(ms.tensor({ 10, 20, 30 }, { dtype = "f64" }))
  H.eq(a.grad:type(), "f32")
  H.same_list(flat(a.grad), { 10, 20 })
  H.same_list(flat(b.grad), { 30 })
end)

H.done()
