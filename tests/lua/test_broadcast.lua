-- test_broadcast.lua: sum_to (the backward of broadcasting) and gradients of broadcast binary ops.
local ms = require "moonseg"
local H = require "harness"
local gc = require("moonseg.gradcheck").gradcheck

local function flat(t)
  local r = {}
  local function walk(v) if type(v) == "table" then for _, x in ipairs(v) do walk(x) end else r[#r + 1] = v end end
  walk(t:tolist())
  return r
end
local function rt(shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local v = {}
  for i = 1, n do v[i] = math.sin(i * 1.7) end
  local t = ms.tensor(v, { dtype = "f64" }):reshape(shape):contiguous()
  return t:requires_grad_()
end

H.case("sum_to reduces leading and size-1 dims", function()
  local g = ms.arange(24):double():reshape { 2, 3, 4 } -- g[i][j][k] = 12i + 4j + k (0-based)
  local function ref(keep)
    -- keep[d] true: dim kept; sums over the rest, by brute force
    local r = {}
    for i = 0, 1 do for j = 0, 2 do for k = 0, 3 do
      local key = (keep[1] and i or 0) * 100 + (keep[2] and j or 0) * 10 + (keep[3] and k or 0)
      r[key] = (r[key] or 0) + 12 * i + 4 * j + k
    end end end
    local keys = {}
    for key in pairs(r) do keys[#keys + 1] = key end
    table.sort(keys)
    local out = {}
    for _, key in ipairs(keys) do out[#out + 1] = r[key] end
    return out
  end
  H.same_list(flat(g:sum_to { 4 }), ref { false, false, true })
  H.same_list(flat(g:sum_to { 3, 1 }), ref { false, true, false })
  H.same_list(g:sum_to({ 3, 1 }):size(), { 3, 1 })
  H.same_list(flat(g:sum_to { 2, 1, 4 }), ref { true, false, true })
  H.same_list(flat(g:sum_to { 1, 1 }), { 276 })
  H.eq(g:sum_to({}):dim(), 0)
  H.eq(g:sum_to({}):item(), 276)
  -- same shape: a copy, not an alias
  local c = g:sum_to { 2, 3, 4 }
  H.eq(c:same_storage(g), false)
  H.same_list(flat(c), flat(g))
  -- non-contiguous gradient
  H.same_list(flat(g:transpose(1, 3):sum_to { 1, 3, 2 }), flat(g:sum(3):t()))
  -- f32 and expanded
  local e = ms.ones(3):expand { 5, 3 }
  H.same_list(flat(e:sum_to { 3 }), { 5, 5, 5 })
  H.raises(function() g:sum_to { 3 } end, "sum_to", "[2, 3, 4]", "[3]")
  H.raises(function() g:sum_to { 1, 2, 3, 4 } end, "sum_to", "[2, 3, 4]")
end)

H.case("broadcast binary gradients are summed back to each operand's shape", function()
  local a = rt { 3, 1 }
  local b = rt { 1, 4 }
  local y = a * b
  H.same_list(y:size(), { 3, 4 })
  y:sum():backward()
  H.same_list(a.grad:size(), { 3, 1 })
  H.same_list(b.grad:size(), { 1, 4 })
  local bs = 0
  for _, v in ipairs(flat(b)) do bs = bs + v end
  for i, v in ipairs(flat(a.grad)) do H.near(v, bs, 1e-12, "a.grad " .. i) end
  gc(function(x, z) return x * z end, { rt { 3, 1 }, rt { 1, 4 } })
  gc(function(x, z) return x + z end, { rt { 2, 3, 4 }, rt { 4 } })
  gc(function(x, z) return x - z end, { rt { 2, 1, 4 }, rt { 3, 1 } })
  gc(function(x, z) return x / (z:square() + 1) end, { rt { 5 }, rt { 2, 1 } })
  gc(function(x, z) return x * z end, { rt {}, rt { 2, 3 } })
  gc(function(x) return x:expand { 4, 3 } * 2 end, { rt { 1, 3 } })
end)

H.case("mixed dtypes: the gradient comes back in the operand's dtype", function()
  local a = ms.ones(3, { requires_grad = true }) -- f32
  local b = ms.tensor({ 1, 2, 3 }, { dtype = "f64", requires_grad = true })
  local y = a * b
  H.eq(y.dtype, "f64")
  y:sum():backward()
  H.eq(a.grad.dtype, "f32")
  H.same_list(flat(a.grad), { 1, 2, 3 })
  H.eq(b.grad.dtype, "f64")
end)

H.case("non-broadcastable shapes name both shapes", function()
  H.raises(function() return ms.zeros(2, 3) * ms.zeros(2, 4) end, "mul", "[2, 3]", "[2, 4]")
  H.raises(function() return ms.zeros(5) - ms.zeros(4, 3) end, "sub", "[5]", "[4, 3]")
  H.raises(function() return ms.where(ms.zeros(2):gt(0), ms.zeros(3), ms.zeros(3)) end, "where", "[2]", "[3]")
end)

H.done()
