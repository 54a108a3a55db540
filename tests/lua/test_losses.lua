-- test_losses.lua: PaddleSeg losses (CE, OHEM CE, Dice, Mixed, multi-output) against Lua references.
local ms = require "moonseg"
local H = require "harness"
local gradcheck = require("moonseg.gradcheck").gradcheck
local losses = ms.losses

local gen = ms.Generator(7)
local function randn(shape, dtype)
  return ms.randn(shape, { dtype = dtype or "f64", generator = gen })
end
local function leaf(t) return t:requires_grad_(true) end
-- labels in [0, c) with about a fifth set to ignore (255)
local function labels(shape, c, ignore_frac)
  local u = ms.rand(shape, { dtype = "f64", generator = gen }):tolist()
  local flat = {}
  local function walk(v) if type(v) == "table" then for _, e in ipairs(v) do walk(e) end else flat[#flat + 1] = v end end
  walk(u)
  local out = {}
  for i, v in ipairs(flat) do
    if v < (ignore_frac or 0.2) then out[i] = 255 else out[i] = math.floor((v - (ignore_frac or 0.2)) /
      (1 - (ignore_frac or 0.2)) * c) % c end
  end
  return ms.tensor(out, { dtype = "i64" }):view(shape)
end

-- logits [N, C, S...] -> z[n][c][s] with s the flat spatial index; label -> y[n][s]
local function unpack_nc(logits, label)
  local sz = logits:size()
  local n, c = sz[1], sz[2]
  local s = logits:numel() / (n * c)
  local buf = logits:contiguous():to("f64"):reshape(-1):tolist()
  local lb = label:contiguous():to("i64"):reshape(-1):tolist()
  local z, y = {}, {}
  for i = 1, n do
    z[i], y[i] = {}, {}
    for k = 1, c do
      z[i][k] = {}
      for j = 1, s do z[i][k][j] = buf[((i - 1) * c + (k - 1)) * s + j] end
    end
    for j = 1, s do y[i][j] = lb[(i - 1) * s + j] end
  end
  return z, y, n, c, s
end

local function softmax_at(z, i, j, c)
  local m = -math.huge
  for k = 1, c do m = math.max(m, z[i][k][j]) end
  local sum = 0
  for k = 1, c do sum = sum + math.exp(z[i][k][j] - m) end
  local p = {}
  for k = 1, c do p[k] = math.exp(z[i][k][j] - m) / sum end
  return p
end

-- PaddleSeg CrossEntropyLoss: sum w_y nll / (sum mask w_y + 1e-8 numel)
local function ref_ce(logits, label, opts)
  opts = opts or {}
  local ig = opts.ignore_index or 255
  local z, y, n, c, s = unpack_nc(logits, label)
  local num, den = 0, 0
  for i = 1, n do
    for j = 1, s do
      local t = y[i][j]
      if t ~= ig then
        local w = opts.weight and opts.weight[t + 1] or 1
        num = num - w * math.log(softmax_at(z, i, j, c)[t + 1])
        den = den + w
      elseif opts.avg_non_ignore == false then
        den = den + 1
      end
    end
  end
  return num / (den + 1e-8 * n * s)
end

-- PaddleSeg OhemCrossEntropyLoss
local function ref_ohem(logits, label, thresh, min_kept, ig)
  local z, y, n, c, s = unpack_nc(logits, label)
  local probs, all = {}, {}
  local num_valid = 0
  for i = 1, n do
    probs[i] = {}
    for j = 1, s do
      local t = y[i][j]
      if t ~= ig then
        num_valid = num_valid + 1
        probs[i][j] = softmax_at(z, i, j, c)[t + 1]
      else
        probs[i][j] = 2
      end
      all[#all + 1] = probs[i][j]
    end
  end
  local threshold = nil
  if min_kept < num_valid and num_valid > 0 then
    threshold = thresh
    if min_kept > 0 then
      table.sort(all)
      local v = all[math.min(#all, min_kept)]
      if v > thresh then threshold = v end
    end
  end
  local num, kept = 0, 0
  for i = 1, n do
    for j = 1, s do
      local t = y[i][j]
      if t ~= ig and (threshold == nil or probs[i][j] < threshold) then
        kept = kept + 1
        num = num - math.log(softmax_at(z, i, j, c)[t + 1])
      end
    end
  end
  return num / (kept + 1e-5 * n * s), kept
end

-- PaddleSeg DiceLoss (smooth, eps 1e-8, per-sample then mean over the batch, weighted class mean)
local function ref_dice(logits, label, smooth, ig, weight)
  local z, y, n, c, s = unpack_nc(logits, label)
  local total = 0
  for k = 1, c do
    local dk = 0
    for i = 1, n do
      local inter, card = 0, 0
      for j = 1, s do
        if y[i][j] ~= ig then
          local p = softmax_at(z, i, j, c)[k]
          local oh = (y[i][j] == k - 1) and 1 or 0
          inter = inter + p * oh
          card = card + p + oh
        end
      end
      dk = dk + 1 - (2 * inter + smooth) / (card + smooth + 1e-8)
    end
    total = total + (weight and weight[k] or 1) * dk / n
  end
  return total / c
end

H.case("CrossEntropyLoss values (ignore, weights, avg_non_ignore, label layouts)", function()
  local x = randn { 2, 4, 3, 5 }
  local y = labels({ 2, 3, 5 }, 4)
  H.near(losses.CrossEntropyLoss()(x, y):item(), ref_ce(x, y), 1e-10)
  local w = { 0.5, 2, 1, 3 }
  H.near(losses.CrossEntropyLoss { weight = w }(x, y):item(), ref_ce(x, y, { weight = w }), 1e-10)
  H.near(losses.CrossEntropyLoss { weight = ms.tensor(w) }(x, y):item(), ref_ce(x, y, { weight = w }), 1e-10)
  H.near(losses.CrossEntropyLoss { avg_non_ignore = false }(x, y):item(),
    ref_ce(x, y, { avg_non_ignore = false }), 1e-10)
  H.near(losses.CrossEntropyLoss { avg_non_ignore = false, weight = w }(x, y):item(),
    ref_ce(x, y, { avg_non_ignore = false, weight = w }), 1e-10)
  -- a [N, 1, H, W] u8 label, and a custom ignore index
  local yu8 = ms.where(y:eq(255), 0, y):to("u8"):unsqueeze(2)
  local y0 = ms.where(y:eq(255), 0, y)
  H.near(losses.CrossEntropyLoss { ignore_index = 0 }(x, yu8):item(),
    ref_ce(x, y0, { ignore_index = 0 }), 1e-10)
  -- without ignored pixels and weights it is the plain mean (up to PaddleSeg's EPS)
  local yf = labels({ 2, 3, 5 }, 4, 0)
  H.near(losses.CrossEntropyLoss()(x, yf):item(), ms.functional.cross_entropy(x, yf):item(), 1e-7)
end)

H.case("CrossEntropyLoss edge cases: all ignored, non-contiguous, [N, C] input, f32", function()
  local x = randn { 2, 3, 2, 2 }
  local y = ms.full({ 2, 2, 2 }, 255, { dtype = "i64" })
  H.eq(losses.CrossEntropyLoss()(x, y):item(), 0)
  -- logits built as a permuted view
  local xp = randn { 2, 2, 2, 3 }:permute(1, 4, 2, 3)
  H.eq(xp:is_contiguous(), false)
  local y2 = labels({ 2, 2, 2 }, 3)
  H.near(losses.CrossEntropyLoss()(xp, y2):item(), ref_ce(xp, y2), 1e-10)
  -- plain classification shapes [N, C] with [N]
  local x2 = randn { 5, 3 }
  local y3 = ms.tensor({ 0, 2, 1, 255, 2 }, { dtype = "i64" })
  H.near(losses.CrossEntropyLoss()(x2, y3):item(), ref_ce(x2:view(5, 3, 1), y3:view(5, 1)), 1e-10)
  -- f32 agrees with f64
  local x32 = x:to("f32")
  local y4 = labels({ 2, 2, 2 }, 3)
  H.near(losses.CrossEntropyLoss()(x32, y4):item(), ref_ce(x, y4), 1e-5)
end)

H.case("CrossEntropyLoss errors name the problem", function()
  local x = randn { 1, 3, 2, 2 }
  H.raises(function() losses.CrossEntropyLoss()(x, ms.tensor({ { { 0, 1 }, { 3, 1 } } }, { dtype = "i64" })) end,
    "label value 3", "[0, 3)")
  H.raises(function() losses.CrossEntropyLoss()(x, ms.zeros({ 1, 2, 3 }, { dtype = "i64" })) end,
    "CrossEntropyLoss", "does not match logits")
  H.raises(function() losses.CrossEntropyLoss { weight = { 1, 2 } }(x, ms.zeros({ 1, 2, 2 }, { dtype = "i64" })) end,
    "2 class weights for 3 classes")
  H.raises(function() losses.CrossEntropyLoss()(x, ms.zeros({ 1, 2, 2 })) end, "integer class ids")
end)

H.case("gradcheck CrossEntropyLoss", function()
  local y = labels({ 2, 3, 2 }, 3)
  for _, opts in ipairs { {}, { weight = { 0.3, 1.5, 2 } }, { avg_non_ignore = false } } do
    local x = leaf(randn { 2, 3, 3, 2 })
    local loss = losses.CrossEntropyLoss(opts)
    gradcheck(function(t) return loss(t, y) end, { x })
  end
end)

H.case("OhemCrossEntropyLoss values: thresh binds, k-th binds, min_kept >= valid, min_kept 0", function()
  local x = randn({ 2, 3, 4, 5 }):mul(2)
  local y = labels({ 2, 4, 5 }, 3)
  local nvalid = y:ne(255):sum():item()
  for _, case in ipairs { { 0.7, 5 }, { 0.05, 12 }, { 0.7, nvalid }, { 0.7, nvalid - 1 }, { 0.5, 0 },
    { 0.9, 1 }, { 1.0, 3 } } do
    local thresh, min_kept = case[1], case[2]
    local got = losses.OhemCrossEntropyLoss { thresh = thresh, min_kept = min_kept }(x, y):item()
    local want, kept = ref_ohem(x, y, thresh, min_kept, 255)
    H.near(got, want, 1e-10, string.format("thresh %g min_kept %d (kept %d)", thresh, min_kept, kept))
  end
  -- the selection really drops pixels: with a tiny thresh and min_kept 5, 4 pixels remain
  local _, kept = ref_ohem(x, y, 1e-9, 5, 255)
  H.eq(kept, 4)
  local kl, n = losses.ohem_select(x, y, 1e-9, 5, 255)
  H.eq(n, 4)
  H.eq(kl:ne(255):sum():item(), 4)
  -- f32 logits
  H.near(losses.OhemCrossEntropyLoss { min_kept = 7 }(x:to("f32"), y):item(), ref_ohem(x, y, 0.7, 7, 255), 1e-5)
end)

H.case("gradcheck OhemCrossEntropyLoss", function()
  local y = labels({ 2, 3, 3 }, 3)
  for _, case in ipairs { { 0.7, 4 }, { 0.01, 6 }, { 0.7, 100 } } do
    local x = leaf(randn { 2, 3, 3, 3 })
    local loss = losses.OhemCrossEntropyLoss { thresh = case[1], min_kept = case[2] }
    gradcheck(function(t) return loss(t, y) end, { x })
  end
end)

H.case("DiceLoss values (smooth, ignore, weight, 3-d logits)", function()
  local x = randn { 2, 3, 4, 3 }
  local y = labels({ 2, 4, 3 }, 3)
  H.near(losses.DiceLoss()(x, y):item(), ref_dice(x, y, 1, 255), 1e-10)
  H.near(losses.DiceLoss { smooth = 0 }(x, y):item(), ref_dice(x, y, 0, 255), 1e-10)
  H.near(losses.DiceLoss { weight = { 1, 0.5, 2 } }(x, y):item(), ref_dice(x, y, 1, 255, { 1, 0.5, 2 }), 1e-10)
  local x3 = randn { 3, 2, 7 }
  local y3 = labels({ 3, 7 }, 2)
  H.near(losses.DiceLoss()(x3, y3):item(), ref_dice(x3, y3, 1, 255), 1e-10)
  -- a hand case: one pixel, two classes, equal logits (p = 0.5 each), label 0, smooth 0:
  -- class 0: 1 - 2*0.5/1.5 = 1/3, class 1: 1 - 0/0.5 = 1 -> (1/3 + 1)/2 = 2/3
  local xh = ms.zeros({ 1, 2, 1, 1 }, { dtype = "f64" })
  H.near(losses.DiceLoss { smooth = 0 }(xh, ms.zeros({ 1, 1, 1 }, { dtype = "i64" })):item(), 2 / 3, 1e-7)
  H.near(losses.DiceLoss()(x:to("f32"), y):item(), ref_dice(x, y, 1, 255), 1e-5)
end)

H.case("gradcheck DiceLoss", function()
  local y = labels({ 2, 3, 2 }, 3)
  for _, opts in ipairs { {}, { smooth = 0 }, { weight = { 2, 1, 0.5 } } } do
    local x = leaf(randn { 2, 3, 3, 2 })
    local loss = losses.DiceLoss(opts)
    gradcheck(function(t) return loss(t, y) end, { x })
  end
end)

H.case("MixedLoss sums weighted terms and returns them", function()
  local x = randn { 2, 3, 3, 3 }
  local y = labels({ 2, 3, 3 }, 3)
  local ce, dice = losses.CrossEntropyLoss(), losses.DiceLoss()
  local mixed = losses.MixedLoss { losses = { ce, dice }, coef = { 0.8, 0.2 } }
  local total, terms = mixed(x, y)
  H.eq(#terms, 2)
  H.near(terms[1]:item(), 0.8 * ref_ce(x, y), 1e-10)
  H.near(terms[2]:item(), 0.2 * ref_dice(x, y, 1, 255), 1e-10)
  H.near(total:item(), 0.8 * ref_ce(x, y) + 0.2 * ref_dice(x, y, 1, 255), 1e-10)
  H.raises(function() losses.MixedLoss { losses = { ce }, coef = { 1, 2 } } end, "1 and 2")
  local xg = leaf(randn { 2, 3, 3, 3 })
  gradcheck(function(t) return (mixed(t, y)) end, { xg })
end)

H.case("multi_output applies per-output coefficients (PaddleSeg types + coef)", function()
  local y = labels({ 2, 3, 3 }, 3)
  local outs = { randn { 2, 3, 3, 3 }, randn { 2, 3, 3, 3 }, randn { 2, 3, 3, 3 } }
  local ce = losses.CrossEntropyLoss()
  local total, terms = losses.multi_output(ce, { 1, 0.4, 0.4 }, outs, y)
  H.eq(#terms, 3)
  local want = ref_ce(outs[1], y) + 0.4 * ref_ce(outs[2], y) + 0.4 * ref_ce(outs[3], y)
  H.near(total:item(), want, 1e-10)
  -- per-output losses, one of them mixed (its terms are listed separately)
  local mixed = losses.MixedLoss { losses = { ce, losses.DiceLoss() }, coef = { 1, 0.5 } }
  total, terms = losses.multi_output({ mixed, ce }, { 2, 0.5 }, { outs[1], outs[2] }, y)
  H.eq(#terms, 3)
  H.near(total:item(), 2 * (ref_ce(outs[1], y) + 0.5 * ref_dice(outs[1], y, 1, 255)) +
    0.5 * ref_ce(outs[2], y), 1e-10)
  H.raises(function() losses.multi_output({ ce, ce }, { 1, 1 }, outs, y) end, "2 losses for 3 model outputs")
  H.raises(function() losses.multi_output(ce, { 1, 1 }, outs, y) end, "2 coefficients for 3")
  local a, b = leaf(randn { 1, 3, 2, 2 }), leaf(randn { 1, 3, 2, 2 })
  local y2 = labels({ 1, 2, 2 }, 3)
  gradcheck(function(p, q) return (losses.multi_output(ce, { 1, 0.4 }, { p, q }, y2)) end, { a, b })
end)

H.case("f16 / bf16 logits agree with the f64 reference within half precision", function()
  local x = randn { 2, 3, 4, 5 }
  local y = labels({ 2, 4, 5 }, 3)
  for _, dt in ipairs { "f16", "bf16" } do
    local xh = x:to(dt)
    local xr = xh:to("f64") -- the same rounded inputs for the reference
    local tol = dt == "f16" and 3e-3 or 2e-2
    local ce = losses.CrossEntropyLoss()(xh, y)
    H.eq(ce:type(), dt)
    H.near(ce:item(), ref_ce(xr, y), tol, dt .. " CE")
    H.near(losses.DiceLoss()(xh, y):item(), ref_dice(xr, y, 1, 255), tol, dt .. " Dice")
    H.near(losses.OhemCrossEntropyLoss { thresh = 0.9, min_kept = 5 }(xh, y):item(),
      ref_ohem(xr, y, 0.9, 5, 255), tol, dt .. " OHEM")
  end
end)

H.case("kth_smallest matches sorting; rejects NaN and bad k", function()
  local x = randn { 37 }
  local v = x:tolist()
  table.sort(v)
  for _, k in ipairs { 1, 2, 19, 36, 37 } do H.eq(losses.kth_smallest(x, k), v[k]) end
  local d = ms.tensor { 3, 1, 3, 3, 2, 1 }
  H.eq(losses.kth_smallest(d, 3), 2)
  H.eq(losses.kth_smallest(d, 4), 3)
  -- a non-contiguous f32 view
  local m = randn({ 4, 5 }, "f32"):t()
  H.eq(m:is_contiguous(), false)
  local mv = m:contiguous():reshape(-1):tolist()
  table.sort(mv)
  for _, k in ipairs { 1, 7, 20 } do H.eq(losses.kth_smallest(m, k), mv[k]) end
  H.raises(function() losses.kth_smallest(x, 0) end, "kth_smallest", "k = 0", "[37] f64")
  H.raises(function() losses.kth_smallest(x, 38) end, "outside [1, 37]")
  H.raises(function() losses.kth_smallest(ms.tensor { 1, 0 / 0 }, 1) end, "NaN")
  H.raises(function() losses.kth_smallest(ms.zeros({ 3 }, { dtype = "i64" }), 1) end, "kth_smallest")
end)

H.case("label_counts counts classes and names bad values", function()
  local y = ms.tensor({ 0, 2, 2, 255, 1, 2 }, { dtype = "i64" })
  H.same_list(losses.label_counts(y, 3, 255), { 1, 1, 3 })
  H.same_list(losses.label_counts(y:to("i32"), 3, 255), { 1, 1, 3 })
  H.raises(function() losses.label_counts(y, 2, 255) end, "label value 2", "flat index 1")
  H.raises(function() losses.label_counts(ms.tensor({ -1 }, { dtype = "i64" }), 2, 255) end, "label value -1")
end)

H.done()
