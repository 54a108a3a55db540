-- metrics.lua: segmentation evaluation (confusion matrix; PaddleSeg's IoU, Acc, Kappa, Dice).
--
--   local cm = ms.metrics.ConfusionMatrix(19, 255)
--   cm:update(logits, label)    -- logits [N, C, H, W] (argmax taken) or class ids [N, H, W]
--   local m = cm:compute()      -- m.miou, m.acc, m.kappa, m.mdice, m.iou[c], ...
-- Counts are summed over every update (the whole validation set) before any ratio is taken,
-- as PaddleSeg's evaluate() sums intersect/pred/label areas.
local ms = require "moonseg"
local L = require "moonseg.lib"
local T = require "moonseg.tensor"
local C, ctx = L.C, L.ctx

local M = {}

local CM = {}
CM.__index = CM

-- ConfusionMatrix(num_classes, ignore_index = 255)
function M.ConfusionMatrix(num_classes, ignore_index)
  if type(num_classes) ~= "number" or num_classes < 1 or num_classes ~= math.floor(num_classes) then
    error("ConfusionMatrix: num_classes must be a positive integer, got " .. tostring(num_classes), 2)
  end
  local self = setmetatable({ num_classes = num_classes, ignore_index = ignore_index or 255 }, CM)
  self.mat = ms.zeros({ num_classes, num_classes }, { dtype = "i64" })
  return self
end

CM.__tostring = function(self)
  return string.format("ConfusionMatrix(num_classes=%d, ignore_index=%d)", self.num_classes,
    self.ignore_index)
end

-- update(logits_or_pred, label): float scores [N, C, ...] are reduced by argmax over dim 2;
-- integer predictions [N, ...] (or [N, 1, ...]) are 0-based class ids, like the labels. label [N, ...] or
-- [N, 1, ...], any integer dtype. Labels outside [0, C) other than ignore_index are an error.
function CM:update(x, label)
  if not T.is_tensor(x) or not T.is_tensor(label) then
    error("ConfusionMatrix:update: prediction and label must be tensors", 2)
  end
  local pred = x
  local free_pred = false
  if x:is_floating_point() then
    if x:dim() < 2 then error("ConfusionMatrix:update: scores must be [N, C, ...]", 2) end
    if x:size(2) ~= self.num_classes then
      error(string.format("ConfusionMatrix:update: scores have %d classes in dim 2, expected %d",
        x:size(2), self.num_classes), 2)
    end
    -- 0-based class ids like the labels (x:argmax gives 1-based Lua indices)
    L.check(C.ms_reduce_arg(ctx, 2 --[[MS_RED_MAX]], T.handle(x), 1, 0, L.out, L.out + 1), 2)
    T.wrap(L.out[0]):free()
    pred = T.wrap(L.out[1])
    free_pred = true
  end
  if pred:dim() == label:dim() + 1 and pred:dim() >= 2 and pred:size(2) == 1 then pred = pred:squeeze(2) end
  if label:dim() == pred:dim() + 1 and label:dim() >= 2 and label:size(2) == 1 then label = label:squeeze(2) end
  -- the counts follow the predictions' device (a model moved with model:to brings its metrics)
  local dev = label:device_str()
  if self.mat:device_str() ~= dev then self.mat = self.mat:to(dev) end
  L.check(C.ms_confusion_matrix(ctx, T.handle(pred), T.handle(label), self.num_classes,
    self.ignore_index, T.handle(self.mat)), 2)
  if free_pred then pred:free() end
  return self
end

function CM:reset()
  self.mat:zero_()
  return self
end

-- all_reduce(fn): fn(tensor) sums the [C, C] i64 counts across ranks (in place, or returning
-- the summed tensor); call it once, before compute(), on every rank.
function CM:all_reduce(fn)
  if type(fn) ~= "function" then error("ConfusionMatrix:all_reduce: expected a function", 2) end
  local r = fn(self.mat)
  if T.is_tensor(r) and r ~= self.mat then
    local ok = r:dim() == 2 and r:size(1) == self.num_classes and r:size(2) == self.num_classes
    if not ok then error("ConfusionMatrix:all_reduce: the function returned a tensor of another shape", 2) end
    self.mat:copy_(r)
  end
  return self
end

-- The counts as a Lua table of rows (row = label class, column = predicted class).
function CM:matrix() return self.mat:tolist() end

-- PaddleSeg's metrics from intersect / pred / label areas (paddleseg/utils/metrics.py):
-- iou[c] = I / (P + L - I) (0 when the union is empty), miou = mean over all classes;
-- acc = sum(I) / sum(P); precision[c] = I / P, recall[c] = I / L (0 when empty);
-- kappa = (po - pe) / (1 - pe), po = sum(I) / sum(L), pe = sum(P * L) / sum(L)^2;
-- dice[c] = 2I / (P + L) (0 when empty), mdice = mean. With no counted pixel at all, acc
-- and kappa are 0 (PaddleSeg would give nan).
function M.from_areas(intersect, pred_area, label_area)
  local n = #intersect
  local r = { intersect_area = intersect, pred_area = pred_area, label_area = label_area,
    iou = {}, precision = {}, recall = {}, dice = {} }
  local si, sp, sl, spl, siou, sdice = 0, 0, 0, 0, 0, 0
  for c = 1, n do
    local I, P, Lb = intersect[c], pred_area[c], label_area[c]
    local union = P + Lb - I
    r.iou[c] = union == 0 and 0 or I / union
    r.dice[c] = (P + Lb) == 0 and 0 or 2 * I / (P + Lb)
    r.precision[c] = P == 0 and 0 or I / P
    r.recall[c] = Lb == 0 and 0 or I / Lb
    si, sp, sl, spl = si + I, sp + P, sl + Lb, spl + P * Lb
    siou, sdice = siou + r.iou[c], sdice + r.dice[c]
  end
  r.miou, r.mdice = siou / n, sdice / n
  r.acc = sp == 0 and 0 or si / sp
  if sl == 0 then
    r.kappa = 0
  else
    local po, pe = si / sl, spl / (sl * sl)
    r.kappa = pe == 1 and 0 or (po - pe) / (1 - pe)
  end
  r.class_iou, r.class_precision, r.class_recall, r.class_dice = r.iou, r.precision, r.recall, r.dice
  return r
end

function CM:compute()
  local m = self.mat:tolist()
  local n = self.num_classes
  local inter, pa, la = {}, {}, {}
  for c = 1, n do inter[c], pa[c], la[c] = m[c][c], 0, 0 end
  for i = 1, n do
    for j = 1, n do
      la[i] = la[i] + m[i][j]
      pa[j] = pa[j] + m[i][j]
    end
  end
  local r = M.from_areas(inter, pa, la)
  r.confusion = m
  return r
end

-- PaddleSeg's evaluation summary line: "mIoU: 0.7012 Acc: 0.9500 Kappa: 0.9100 Dice: 0.8000".
function M.format(r)
  return string.format("mIoU: %.4f Acc: %.4f Kappa: %.4f Dice: %.4f", r.miou, r.acc, r.kappa, r.mdice)
end

return M
