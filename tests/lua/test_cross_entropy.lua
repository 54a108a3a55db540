-- test_cross_entropy.lua: cross_entropy against a naive f64 reference: weights, ignore_index,
-- reductions, 2-d and 4-d logits, errors and gradients.
local ms = require "moonseg"
local H = require "harness"
local gradcheck = require("moonseg.gradcheck").gradcheck
local F = ms.functional

local gen = ms.Generator(11)
local function randn(shape, dtype) return ms.randn(shape, { dtype = dtype or "f64", generator = gen }) end
local flat = H.values
local function itensor(list, shape) return ms.tensor(list, { dtype = "i64" }):view(shape) end

-- Reference: per-position losses (nil where ignored) and the reduced value.
local function ref_ce(logits, target, opts)
  opts = opts or {}
  local shape, x, t = logits:size(), flat(logits), flat(target)
  local w = opts.weight and flat(opts.weight)
  local ign = opts.ignore_index or 255
  local n, c, s = shape[1], shape[2], 1
  for i = 3, #shape do s = s * shape[i] end
  local per, lsum, wsum = {}, 0, 0
  for i = 0, n - 1 do
    for j = 0, s - 1 do
      local tv = t[i * s + j + 1]
      local k = i * s + j + 1
      if tv == ign then
        per[k] = 0
      else
        local mx = -math.huge
        for cc = 0, c - 1 do mx = math.max(mx, x[(i * c + cc) * s + j + 1]) end
        local z = 0
        for cc = 0, c - 1 do z = z + math.exp(x[(i * c + cc) * s + j + 1] - mx) end
        local wt = w and w[tv + 1] or 1
        per[k] = wt * (mx + math.log(z) - x[(i * c + tv) * s + j + 1])
        lsum, wsum = lsum + per[k], wsum + wt
      end
    end
  end
  local red = opts.reduction or "mean"
  if red == "none" then return per end
  if red == "sum" then return lsum end
  return wsum ~= 0 and lsum / wsum or 0
end

local function check(logits, target, opts, tol)
  local got = F.cross_entropy(logits, target, opts)
  local want = ref_ce(logits, target, opts)
  if type(want) == "table" then
    H.same_list(got:size(), target:size(), "shape")
    H.near(flat(got), want, tol or 1e-12)
  else
    H.eq(got:dim(), 0, "reduced loss is 0-d")
    H.near(got:item(), want, tol or 1e-12)
  end
  return got
end

H.case("hand-computed value", function()
  -- logits {1, 2, 3} twice, targets 0 and 2: lse = 3.40760596; losses 2.40760596, 0.40760596.
  local l = ms.tensor({ { 1, 2, 3 }, { 1, 2, 3 } }, { dtype = "f64" })
  local t = itensor({ 0, 2 }, { 2 })
  H.near(F.cross_entropy(l, t):item(), 1.40760596444438, 1e-12)
  H.near(flat(F.cross_entropy(l, t, { reduction = "none" })), { 2.40760596444438, 0.40760596444438 }, 1e-12)
end)

H.case("2-d and 4-d logits, all reductions, f64 and f32", function()
  for _, dt in ipairs { "f64", "f32" } do
    local tol = dt == "f64" and 1e-12 or 2e-6
    local l2 = randn({ 6, 5 }, dt)
    local t2 = itensor({ 0, 4, 2, 255, 1, 3 }, { 6 })
    local l4 = randn({ 2, 4, 3, 5 }, dt)
    local t4 = ms.randint(0, 4, { 2, 3, 5 }, { generator = gen })
    t4[{ 1, 2, 3 }] = 255
    t4[{ 2, 1, 1 }] = 255
    for _, red in ipairs { "mean", "sum", "none" } do
      check(l2, t2, { reduction = red }, tol)
      check(l4, t4, { reduction = red }, tol)
    end
  end
end)

H.case("class weights and a custom ignore_index", function()
  local w = ms.tensor({ 0.5, 2, 1, 0.25 }, { dtype = "f64" })
  local l4 = randn { 3, 4, 2, 3 }
  local t4 = ms.randint(0, 4, { 3, 2, 3 }, { generator = gen })
  for _, red in ipairs { "mean", "sum", "none" } do
    check(l4, t4, { weight = w, reduction = red })
    check(l4, t4, { weight = w, reduction = red, ignore_index = 1 })
    check(l4, t4, { weight = w, reduction = red, ignore_index = -100 })
  end
  -- f32 logits with f64 weights: weights are converted
  check(l4:to("f32"), t4, { weight = w, ignore_index = 0 }, 2e-6)
end)

H.case("all targets ignored: mean is 0, gradient 0", function()
  local l = randn({ 2, 3 }):requires_grad_()
  local t = itensor({ 255, 255 }, { 2 })
  local loss = F.cross_entropy(l, t)
  H.eq(loss:item(), 0)
  loss:backward()
  H.same_list(flat(l.grad), { 0, 0, 0, 0, 0, 0 })
end)

H.case("non-contiguous logits and targets (NHWC permuted to NCHW)", function()
  local nhwc = randn { 2, 3, 4, 5 }
  local logits = nhwc:permute(1, 4, 2, 3) -- [2, 5, 3, 4] view
  local t = ms.randint(0, 5, { 2, 4, 3 }, { generator = gen }):transpose(2, 3)
  check(logits, t, {})
  check(logits, t, { reduction = "none" })
end)

H.case("f16 and bf16 logits", function()
  local l = randn({ 2, 5, 3 }, "f32")
  local t = ms.randint(0, 5, { 2, 3 }, { generator = gen })
  local want = ref_ce(l, t, {})
  for _, dt in ipairs { "f16", "bf16" } do
    local got = F.cross_entropy(l:to(dt), t)
    H.eq(got:type(), dt)
    H.near(got:item(), want, dt == "f16" and 3e-3 or 2e-2, dt)
  end
end)

H.case("empty batch", function()
  local loss = F.cross_entropy(randn { 0, 3 }, ms.zeros({ 0 }, { dtype = "i64" }))
  H.eq(loss:item(), 0)
  H.same_list(F.cross_entropy(randn { 0, 3 }, ms.zeros({ 0 }, { dtype = "i64" }), { reduction = "none" }):size(), { 0 })
end)

H.case("errors name the value, position, shapes and dtypes", function()
  local l = randn { 2, 3, 2, 2 }
  local t = ms.zeros({ 2, 2, 2 }, { dtype = "i64" })
  t[{ 2, 1, 2 }] = 7
  H.raises(function() F.cross_entropy(l, t) end, "cross_entropy", "target value 7", "[1, 0, 1]", "[0, 3)")
  t[{ 2, 1, 2 }] = -1
  H.raises(function() F.cross_entropy(l, t) end, "target value -1")
  H.raises(function() F.cross_entropy(l, ms.zeros({ 2, 2, 2 }, { dtype = "i32" })) end,
    "cross_entropy", "target", "i64", "[2, 2, 2] i32")
  H.raises(function() F.cross_entropy(l, ms.zeros({ 2, 2, 3 }, { dtype = "i64" })) end,
    "cross_entropy", "[2, 2, 3] i64", "[2, 3, 2, 2] f64")
  H.raises(function() F.cross_entropy(l, ms.zeros({ 2, 2, 2 }, { dtype = "i64" }), { weight = ms.ones(4) }) end,
    "cross_entropy", "weight", "[4] f32")
  H.raises(function() F.cross_entropy(l, ms.zeros({ 2, 2, 2 }, { dtype = "i64" }), { reduction = "avg" }) end,
    "reduction", "avg")
  H.raises(function() F.cross_entropy(ms.ones({ 2, 3 }, { dtype = "i64" }), ms.zeros({ 2 }, { dtype = "i64" })) end,
    "cross_entropy", "logits", "i64")
end)

H.case("gradcheck cross_entropy w.r.t. logits", function()
  local w = ms.tensor({ 0.5, 2, 1, 0.25 }, { dtype = "f64" })
  local t2 = itensor({ 0, 3, 255, 1, 2 }, { 5 })
  local t4 = ms.randint(0, 4, { 2, 3, 2 }, { generator = gen })
  t4[{ 1, 2, 1 }] = 255
  local t4b = ms.randint(0, 4, { 2, 3, 2 }, { generator = gen })
  t4b[{ 2, 1, 2 }] = 2
  local cases = {
    { { 5, 4 }, t2, {} },
    { { 5, 4 }, t2, { weight = w, reduction = "sum" } },
    { { 5, 4 }, t2, { reduction = "none" } },
    { { 2, 4, 3, 2 }, t4, {} },
    { { 2, 4, 3, 2 }, t4, { weight = w } },
    { { 2, 4, 3, 2 }, t4, { weight = w, reduction = "none" } },
    { { 2, 4, 3, 2 }, t4b, { ignore_index = 2, reduction = "sum" } },
  }
  for _, cs in ipairs(cases) do
    local l = randn(cs[1]):requires_grad_()
    gradcheck(function(x) return F.cross_entropy(x, cs[2], cs[3]) end, { l })
  end
  -- composed with a permute (NHWC logits viewed as NCHW)
  local nhwc = randn({ 2, 3, 2, 4 }):requires_grad_()
  gradcheck(function(x) return F.cross_entropy(x:permute(1, 4, 2, 3), t4) end, { nhwc })
end)

H.case("f32 backward matches f64", function()
  local l = randn({ 2, 4, 3, 5 })
  local t = ms.randint(0, 4, { 2, 3, 5 }, { generator = gen })
  local a = l:clone():requires_grad_()
  local b = l:to("f32"):requires_grad_()
  F.cross_entropy(a, t):backward()
  F.cross_entropy(b, t):backward()
  H.near(flat(b.grad), flat(a.grad), 1e-6)
end)

H.done()
