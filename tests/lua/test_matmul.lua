-- test_matmul.lua: matmul/mm/bmm values against a naive f64 reference, layouts, errors, gradients.
local ms = require "moonseg"
local H = require "harness"
local gradcheck = require("moonseg.gradcheck").gradcheck

local gen = ms.Generator(42)
local function randn(shape, dtype) return ms.randn(shape, { dtype = dtype or "f64", generator = gen }) end
local function flat(x)
  local buf, n = x:to_f64_buffer()
  local t = {}
  for i = 0, n - 1 do t[i + 1] = buf[i] end
  return t
end

-- numpy matmul in plain Lua over flat row-major values.
local function ref_matmul(a, b)
  local as, bs = a:size(), b:size()
  local av, bv = flat(a), flat(b)
  local a1, b1 = #as == 1, #bs == 1
  if a1 then as = { 1, as[1] } end
  if b1 then bs = { bs[1], 1 } end
  local n, k, m = as[#as - 1], as[#as], bs[#bs]
  assert(bs[#bs - 1] == k)
  local ab, bb = {}, {}
  for i = 1, #as - 2 do ab[i] = as[i] end
  for i = 1, #bs - 2 do bb[i] = bs[i] end
  local nb = math.max(#ab, #bb)
  local batch = {}
  for i = 1, nb do
    local da = ab[i - (nb - #ab)] or 1
    local db = bb[i - (nb - #bb)] or 1
    batch[i] = math.max(da, db)
  end
  local function offset(bshape, idx) -- flat batch index into an operand's own batch dims
    local off, lead = 0, nb - #bshape
    for i = 1, #bshape do
      off = off * bshape[i] + (bshape[i] == 1 and 0 or idx[i + lead])
    end
    return off
  end
  local res, idx = {}, {}
  local total = 1
  for i = 1, nb do total = total * batch[i] end
  for bi = 0, total - 1 do
    local r = bi
    for i = nb, 1, -1 do idx[i] = r % batch[i]; r = math.floor(r / batch[i]) end
    local oa, ob = offset(ab, idx) * n * k, offset(bb, idx) * k * m
    for i = 0, n - 1 do
      for j = 0, m - 1 do
        local s = 0
        for p = 0, k - 1 do s = s + av[oa + i * k + p + 1] * bv[ob + p * m + j + 1] end
        res[#res + 1] = s
      end
    end
  end
  local shape = {}
  for i = 1, nb do shape[i] = batch[i] end
  if not a1 then shape[#shape + 1] = n end
  if not b1 then shape[#shape + 1] = m end
  return res, shape
end

local function check(a, b, tol)
  local y = ms.matmul(a, b)
  local want, shape = ref_matmul(a, b)
  H.same_list(y:size(), shape, "shape")
  H.near(flat(y), want, tol or 1e-10, "values")
  return y
end

H.case("2-d, 1-d and batched shapes", function()
  check(randn { 3, 4 }, randn { 4, 5 })
  check(randn { 4 }, randn { 4, 5 })
  check(randn { 3, 4 }, randn { 4 })
  local d = check(randn { 4 }, randn { 4 })
  H.eq(d:dim(), 0)
  check(randn { 2, 3, 4 }, randn { 4, 5 })     -- folded into one GEMM
  check(randn { 4 }, randn { 2, 4, 3 })
  check(randn { 2, 3, 4 }, randn { 4 })
  check(randn { 2, 3, 4 }, randn { 2, 4, 5 })
  check(randn { 3, 1, 2, 4 }, randn { 5, 4, 3 }) -- batch broadcast both ways
  check(randn { 3, 4 }, randn { 2, 4, 5 })
end)

H.case("f32 against the f64 reference", function()
  check(randn({ 7, 33 }, "f32"), randn({ 33, 9 }, "f32"), 1e-5)
  check(randn({ 2, 5, 17 }, "f32"), randn({ 17, 3 }, "f32"), 1e-5)
end)

H.case("hand-computed values", function()
  local a = ms.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
  local b = ms.tensor({ { 1, 0 }, { 0, 1 }, { 1, 1 } })
  H.same_list(flat(ms.matmul(a, b)), { 4, 5, 10, 11 })
  H.eq(ms.matmul(ms.tensor { 1, 2, 3 }, ms.tensor { 4, 5, 6 }):item(), 32)
  H.same_list(flat(a:mm(b)), { 4, 5, 10, 11 })
end)

H.case("transposed and strided operands", function()
  local a, b = randn { 5, 3 }, randn { 4, 5 }
  check(a:t(), b:t())                                  -- both through BLAS trans flags
  check(randn { 2, 4, 3 }:transpose(2, 3), randn { 2, 4, 5 })
  check(randn { 3, 4 }, randn { 2, 5, 4 }:transpose(-1, -2))
  check(randn { 6, 8 }:slice(2, 1, 8, 2), randn { 4, 3 }) -- column step 2: copied
  check(randn { 4, 3, 2 }:permute(2, 1, 3), randn { 2, 5 }) -- batch not foldable
  check(randn { 8 }:slice(1, 1, 8, 2), randn { 4, 3 })   -- strided vector
  check(randn { 3, 4 }, randn { 4, 1 }:expand(4, 6))     -- zero stride: copied
  local x = randn { 1, 4 }
  check(x:expand(3, 4), randn { 4, 2 })
end)

H.case("size-1 and empty shapes", function()
  check(randn { 1, 1 }, randn { 1, 1 })
  check(randn { 1, 5 }, randn { 5, 1 })
  local z = ms.matmul(randn { 3, 0 }, randn { 0, 4 })
  H.same_list(z:size(), { 3, 4 })
  H.same_list(flat(z), { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })
  H.same_list(ms.matmul(randn { 0, 3 }, randn { 3, 4 }):size(), { 0, 4 })
  H.same_list(ms.matmul(randn { 2, 0, 3 }, randn { 3, 4 }):size(), { 2, 0, 4 })
  H.same_list(ms.matmul(randn { 0, 2, 3 }, randn { 1, 3, 4 }):size(), { 0, 2, 4 })
end)

H.case("f16 and bf16 compute in f32", function()
  local a, b = randn({ 4, 6 }, "f32"), randn({ 6, 3 }, "f32")
  local want = ref_matmul(a, b)
  for _, dt in ipairs { "f16", "bf16" } do
    local y = ms.matmul(a:to(dt), b:to(dt))
    H.eq(y:type(), dt)
    H.near(flat(y), want, dt == "f16" and 1e-2 or 5e-2, dt)
  end
end)

H.case("GEMMs split over 2 threads (by rows, by columns, across a batch) equal the reference and one thread bit for bit", function()
  local prev = ms.get_num_threads()
  -- each above the 4 MFLOP a split needs
  local shapes = {
    { { 400, 100 }, { 100, 60 } },        -- more rows: split by rows (400 not a multiple of 32)
    { { 40, 120 }, { 120, 500 } },        -- more columns: split by columns
    { { 3, 200, 64 }, { 64, 80 } },       -- a linear layer over a batch: one GEMM of 600 rows
    { { 4, 100, 60 }, { 4, 60, 90 } },    -- batched: the matrices spread over the threads
    { { 1, 120, 200 }, { 1, 200, 100 } }, -- batch 1: that one GEMM split
  }
  for _, dt in ipairs { "f32", "f64" } do
    for _, sh in ipairs(shapes) do
      local a, b = randn(sh[1], dt), randn(sh[2], dt)
      ms.set_num_threads(1)
      local one = ms.matmul(a, b)
      ms.set_num_threads(2)
      local two = ms.matmul(a, b)
      ms.set_num_threads(prev)
      H.eq((one - two):abs():max():item(), 0, dt .. " 1 vs 2 threads")
      local want = ref_matmul(a, b)
      H.near(flat(two), want, dt == "f32" and 1e-4 or 1e-10, dt .. " values")
    end
    -- transposed operands (BLAS reads them as they are) split the same way
    local a, b = randn({ 300, 200 }, dt), randn({ 77, 300 }, dt)
    ms.set_num_threads(2)
    local y = ms.matmul(a:t(), b:t())
    ms.set_num_threads(prev)
    H.near(flat(y), (ref_matmul(a:t():contiguous(), b:t():contiguous())), dt == "f32" and 1e-4 or 1e-10, dt .. " transposed")
  end
end)

H.case("errors name the op and shapes", function()
  H.raises(function() ms.matmul(randn { 2, 3 }, randn { 4, 5 }) end, "matmul", "[2, 3]", "[4, 5]")
  H.raises(function() ms.matmul(randn { 2, 2, 3 }, randn { 3, 3, 1 }) end, "matmul", "[2, 2, 3]", "[3, 3, 1]")
  H.raises(function() ms.matmul(ms.ones({ 2, 2 }, { dtype = "i64" }), ms.ones({ 2, 2 }, { dtype = "i64" })) end,
    "matmul", "i64")
  H.raises(function() ms.matmul(randn({ 2, 2 }, "f32"), randn { 2, 2 }) end, "matmul", "same dtype")
  H.raises(function() ms.matmul(ms.tensor(1, { dtype = "f64" }), randn { 2 }) end, "matmul", "at least 1 dim")
  H.raises(function() randn { 2, 3, 4 }:mm(randn { 4, 2 }) end, "mm", "[2, 3, 4]")
  H.raises(function() randn { 2, 3, 4 }:bmm(randn { 3, 4, 2 }) end, "bmm", "[3, 4, 2]")
end)

local function gc(sa, sb, ta, tb)
  local a = randn(sa):requires_grad_()
  local b = randn(sb):requires_grad_()
  gradcheck(function(x, y)
    if ta then x = x:transpose(-1, -2) end
    if tb then y = y:transpose(-1, -2) end
    return ms.matmul(x, y)
  end, { a, b })
end

H.case("gradcheck matmul (f64)", function()
  gc({ 3, 4 }, { 4, 2 })
  gc({ 4 }, { 4, 3 })
  gc({ 3, 4 }, { 4 })
  gc({ 4 }, { 4 })
  gc({ 2, 3, 4 }, { 4, 5 })         -- folded forward, reshaped backward for b
  gc({ 4 }, { 2, 4, 3 })
  gc({ 2, 1, 3, 4 }, { 3, 4, 2 })   -- broadcast batch dims summed back
  gc({ 4, 3 }, { 2, 5, 4 }, true, true)
  gc({ 2, 3, 4 }, { 2, 4, 2 })
end)

H.case("gradcheck with one operand constant", function()
  local a = randn { 3, 4 }:requires_grad_()
  local b = randn { 2, 4, 2 }
  gradcheck(function(x) return ms.matmul(x, b) end, { a })
  local c = randn { 2, 3, 4 }
  local d = randn { 4, 2 }:requires_grad_()
  gradcheck(function(y) return c:matmul(y) end, { d })
  gradcheck(function(x, y) return x:bmm(y) end, { randn { 2, 3, 4 }:requires_grad_(), randn { 2, 4, 2 }:requires_grad_() })
end)

H.done()
