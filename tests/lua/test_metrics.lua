-- test_metrics.lua: confusion matrix kernel and PaddleSeg's mIoU / Acc / Kappa / Dice figures.
local ms = require "moonseg"
local H = require "harness"
local metrics = ms.metrics

local function i64(list) return ms.tensor(list, { dtype = "i64" }) end

-- Hand example (C = 3, ignore 255). Counted (label, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,2)
-- (2,0) (1,2); the (255, 2) pixel is ignored. Rows are labels:
--   [[1, 1, 0], [0, 2, 1], [1, 0, 1]]
-- intersect [1, 2, 1], pred area [2, 3, 2], label area [2, 3, 2].
local LABEL = { 0, 0, 1, 1, 2, 2, 255, 1 }
local PRED = { 0, 1, 1, 1, 2, 0, 2, 2 }

local function check_hand(r, c)
  H.same_list(r.confusion[1], { 1, 1, 0, c == 4 and 0 or nil })
  H.same_list(r.intersect_area, c == 4 and { 1, 2, 1, 0 } or { 1, 2, 1 })
  H.same_list(r.pred_area, c == 4 and { 2, 3, 2, 0 } or { 2, 3, 2 })
  H.same_list(r.label_area, c == 4 and { 2, 3, 2, 0 } or { 2, 3, 2 })
  H.near(r.iou[1], 1 / 3, 1e-12)
  H.near(r.iou[2], 1 / 2, 1e-12)
  H.near(r.iou[3], 1 / 3, 1e-12)
  H.near(r.acc, 4 / 7, 1e-12)
  H.near(r.precision, c == 4 and { 1 / 2, 2 / 3, 1 / 2, 0 } or { 1 / 2, 2 / 3, 1 / 2 }, 1e-12)
  H.near(r.recall, c == 4 and { 1 / 2, 2 / 3, 1 / 2, 0 } or { 1 / 2, 2 / 3, 1 / 2 }, 1e-12)
  -- po = 4/7, pe = (4 + 9 + 4) / 49 -> kappa = 11/32
  H.near(r.kappa, 11 / 32, 1e-12)
  H.near(r.dice[1], 0.5, 1e-12)
  H.near(r.dice[2], 2 / 3, 1e-12)
  if c == 3 then
    H.near(r.miou, 7 / 18, 1e-12)
    H.near(r.mdice, 5 / 9, 1e-12)
  else
    -- a class absent from both prediction and label counts as IoU 0 / Dice 0 in the means
    H.eq(r.iou[4], 0)
    H.eq(r.dice[4], 0)
    H.near(r.miou, 7 / 24, 1e-12)
    H.near(r.mdice, 5 / 12, 1e-12)
  end
end

H.case("hand-computed confusion matrix and metrics", function()
  local cm = metrics.ConfusionMatrix(3, 255)
  cm:update(i64(PRED):view(1, 2, 4), i64(LABEL):view(1, 2, 4))
  H.same_list(cm:matrix()[2], { 0, 2, 1 })
  H.same_list(cm:matrix()[3], { 1, 0, 1 })
  check_hand(cm:compute(), 3)
  H.eq(metrics.format(cm:compute()), "mIoU: 0.3889 Acc: 0.5714 Kappa: 0.3437 Dice: 0.5556")
  local cm4 = metrics.ConfusionMatrix(4)
  cm4:update(i64(PRED), i64(LABEL))
  check_hand(cm4:compute(), 4)
end)

H.case("update from logits (argmax over dim 2), u8 [N, 1, H, W] labels, accumulation", function()
  -- one-hot scores whose argmax is PRED
  local scores = {}
  for c = 1, 3 do
    scores[c] = {}
    for i, p in ipairs(PRED) do scores[c][i] = (p == c - 1) and 2.5 or -1 end
  end
  local logits = ms.tensor(scores):view(3, 2, 4):unsqueeze(1) -- [1, 3, 2, 4]
  local lab = i64(LABEL):to("u8"):view(1, 1, 2, 4)
  local cm = metrics.ConfusionMatrix(3)
  cm:update(logits, lab)
  check_hand(cm:compute(), 3)
  -- a second identical batch doubles every count; ratios stay
  cm:update(logits:to("f32"), lab)
  local r = cm:compute()
  H.same_list(r.confusion[2], { 0, 4, 2 })
  H.near(r.miou, 7 / 18, 1e-12)
  cm:reset()
  H.same_list(cm:matrix()[1], { 0, 0, 0 })
  -- empty: no NaN
  local e = cm:compute()
  H.eq(e.acc, 0)
  H.eq(e.kappa, 0)
  H.eq(e.miou, 0)
  -- [N, 1, H, W] integer predictions are squeezed too
  cm:update(i64(PRED):view(1, 1, 2, 4), i64(LABEL):view(1, 2, 4))
  check_hand(cm:compute(), 3)
end)

H.case("non-contiguous inputs and a large parallel update match a Lua count", function()
  local cm = metrics.ConfusionMatrix(3)
  local p = i64(PRED):view(2, 4):t()  -- [4, 2] non-contiguous
  local l = i64(LABEL):view(2, 4):t()
  H.eq(p:is_contiguous(), false)
  cm:update(p, l)
  check_hand(cm:compute(), 3)

  local gen = ms.Generator(3)
  local n, c = 70001, 5
  local pred = ms.randint(0, c, { n }, { generator = gen }):to("i64")
  local lab = ms.randint(0, c + 1, { n }, { generator = gen }):to("i64")
  lab = ms.where(lab:eq(c), 255, lab)
  local big = metrics.ConfusionMatrix(c)
  big:update(pred, lab)
  local pl, ll = pred:tolist(), lab:tolist()
  local want = {}
  for i = 1, c do want[i] = {} for j = 1, c do want[i][j] = 0 end end
  for i = 1, n do
    if ll[i] ~= 255 then want[ll[i] + 1][pl[i] + 1] = want[ll[i] + 1][pl[i] + 1] + 1 end
  end
  local got = big:matrix()
  for i = 1, c do H.same_list(got[i], want[i], "row " .. i) end
  -- i32 / u8 inputs give the same counts
  local b2 = metrics.ConfusionMatrix(c)
  b2:update(pred:to("i32"), lab:to("u8"))
  for i = 1, c do H.same_list(b2:matrix()[i], want[i], "i32/u8 row " .. i) end
end)

H.case("all_reduce hook sums counts across ranks", function()
  local cm = metrics.ConfusionMatrix(3)
  cm:update(i64(PRED), i64(LABEL))
  -- a fake 2-rank all-reduce: in place
  cm:all_reduce(function(t) t:mul_(2) end)
  H.same_list(cm:matrix()[2], { 0, 4, 2 })
  -- returning a new tensor works too
  cm:all_reduce(function(t) return t:add(1) end)
  H.same_list(cm:matrix()[1], { 3, 3, 1 })
  H.raises(function() cm:all_reduce(function() return ms.zeros({ 2, 2 }, { dtype = "i64" }) end) end,
    "another shape")
end)

H.case("bad inputs raise errors naming values and shapes", function()
  local cm = metrics.ConfusionMatrix(3)
  H.raises(function() cm:update(i64 { 0, 1 }, i64 { 1, 7 }) end, "label value 7", "flat index 1", "[0, 3)")
  H.raises(function() cm:update(i64 { 0, 1 }, i64 { 1, -2 }) end, "label value -2")
  H.raises(function() cm:update(i64 { 0, 5 }, i64 { 1, 1 }) end, "prediction 5", "[2] i64")
  H.raises(function() cm:update(i64 { 0, 1, 2 }, i64 { 1, 1 }) end, "[3] i64", "[2] i64", "same shape")
  H.raises(function() cm:update(i64 { 0, 1 }, ms.tensor { 1, 1 }) end, "label", "f32")
  H.raises(function() cm:update(ms.zeros(1, 4, 2), i64 { 0, 1 }:view(1, 2)) end, "4 classes", "expected 3")
  H.raises(function() metrics.ConfusionMatrix(0) end, "positive integer")
  -- a failed update adds nothing
  H.same_list(cm:matrix()[2], { 0, 0, 0 })
  -- the C entry point rejects a wrong accumulator
  local L = ms.lib
  local acc = ms.zeros({ 3, 2 }, { dtype = "i64" })
  H.raises(function()
    local z = i64 { 0 }
    L.check(L.C.ms_confusion_matrix(L.ctx, ms.Tensor.handle(z), ms.Tensor.handle(z), 3, 255,
      ms.Tensor.handle(acc)))
  end, "confusion_matrix", "[3, 2] i64")
end)

H.case("from_areas: PaddleSeg's formulas on given areas", function()
  local r = metrics.from_areas({ 5, 0, 3 }, { 6, 1, 4 }, { 7, 0, 3 })
  H.near(r.iou, { 5 / 8, 0, 3 / 4 }, 1e-12)
  H.near(r.acc, 8 / 11, 1e-12)
  H.near(r.recall, { 5 / 7, 0, 1 }, 1e-12)
  H.near(r.precision, { 5 / 6, 0, 3 / 4 }, 1e-12)
  local po, pe = 8 / 10, (42 + 0 + 12) / 100
  H.near(r.kappa, (po - pe) / (1 - pe), 1e-12)
end)

H.done()
