-- losses.lua: PaddleSeg's segmentation losses (cross-entropy, OHEM, Dice, mixed, multi-output).
--
-- Each constructor takes an options table and returns a callable loss object:
--   local ce = ms.losses.CrossEntropyLoss { ignore_index = 255 }
--   local loss = ce(logits, label)   -- logits [N, C, ...] float, label [N, ...] / [N, 1, ...] int
-- The averaging rules (and their small EPS terms) are PaddleSeg's, so loss curves match.
local ms = require "moonseg"
local L = require "moonseg.lib"
local T = require "moonseg.tensor"
local ffi = require "ffi"
local C, ctx = L.C, L.ctx
local F = ms.functional

local M = {}

local Loss = {}
Loss.__index = Loss
Loss.__call = function(self, logits, label) return self:forward(logits, label) end
Loss.__tostring = function(self) return self.name .. "(" .. (self.desc or "") .. ")" end

local function new_loss(name, desc, fields)
  fields.name, fields.desc = name, desc
  return setmetatable(fields, Loss)
end

local function opts_arg(opts, name)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(name .. ": options must be a table, got " .. type(opts), 3) end
  return opts
end

-- label as i64 [N, ...] matching logits [N, C, ...] (a [N, 1, ...] label is squeezed).
local function prep_label(name, logits, label)
  if not T.is_tensor(logits) or not T.is_tensor(label) then
    error(name .. ": logits and label must be tensors", 3)
  end
  if not logits:is_floating_point() or logits:dim() < 2 then
    error(name .. ": logits must be float [N, C, ...], got " .. tostring(logits:type()) .. " " ..
      table.concat(logits:size(), "x"), 3)
  end
  if label:dim() == logits:dim() and label:size(2) == 1 then label = label:squeeze(2) end
  local ls, gs = label:size(), logits:size()
  local ok = #ls == #gs - 1 and ls[1] == gs[1]
  for i = 2, #ls do ok = ok and ls[i] == gs[i + 1] end
  if not ok then
    error(string.format("%s: label [%s] does not match logits [%s] (want logits' shape without dim 2)",
      name, table.concat(ls, ", "), table.concat(gs, ", ")), 3)
  end
  if label:type() ~= "i64" then
    if label:is_floating_point() then
      error(name .. ": label must hold integer class ids, got " .. label:type(), 3)
    end
    label = label:to("i64")
  end
  return label
end

-- Per-class counts of label values (ignore_index skipped); errors name a bad value.
local function label_counts(label, num_classes, ignore_index)
  local counts = ms.zeros({ num_classes }, { dtype = "i64", device = label:device_str() })
  L.check(C.ms_label_counts(ctx, T.handle(label), num_classes, ignore_index, T.handle(counts)), 3)
  local list = counts:tolist()
  counts:free()
  return list
end
M.label_counts = label_counts

-- The k-th smallest element (1-based) of a float tensor.
function M.kth_smallest(x, k)
  local v = ffi.new("double[1]")
  L.check(C.ms_kth_smallest(ctx, T.handle(x), k, v), 2)
  return v[0]
end

-- Class weights: a list of numbers or a tensor; cached per dtype and device.
local function weight_arg(w, name)
  if w == nil then return nil end
  if T.is_tensor(w) then w = w:to("f64"):tolist() end
  if type(w) ~= "table" or #w == 0 then
    error(name .. ": weight must be a list of one number per class or a tensor", 3)
  end
  for i, v in ipairs(w) do
    if type(v) ~= "number" then error(name .. ": weight[" .. i .. "] is not a number", 3) end
  end
  return w
end

local function weight_tensor(self, like)
  if not self.weight then return nil end
  self._wt = self._wt or {}
  local dtype, device = like:type(), like:device_str()
  local key = dtype .. "@" .. device
  if not self._wt[key] then self._wt[key] = ms.tensor(self.weight, { dtype = dtype, device = device }) end
  return self._wt[key]
end

local function check_weight_len(self, c)
  if self.weight and #self.weight ~= c then
    error(string.format("%s: %d class weights for %d classes", self.name, #self.weight, c), 3)
  end
end

-- [distributed] M.denominator_sync (set by data-parallel training, engine/ddp.lua) turns a
-- rank's loss denominator (its weighted count of valid pixels) into the global batch's divided
-- by the world size: averaging the ranks' gradients then gives the mean over the valid pixels
-- of the whole global batch, as one process with the global batch would (not a mean of
-- per-rank means, which weights pixels by how many valid ones their rank holds). Every rank
-- must compute the same losses in the same order (a collective per call).
M.denominator_sync = nil
local function global_denominator(d)
  if M.denominator_sync then d = M.denominator_sync(d) end
  if d == 0 then d = 1 end
  return d
end

-- ---- CrossEntropyLoss ----------------------------------------------------------------------
-- CrossEntropyLoss{weight = nil, ignore_index = 255, avg_non_ignore = true}
-- PaddleSeg: loss = sum_p w[y_p] * nll_p / (sum_p mask_p * w[y_p] + EPS * numel), EPS = 1e-8,
-- where mask_p = (y_p ~= ignore_index) with avg_non_ignore (the default), else 1 for every
-- pixel (ignored pixels then count with weight 1 in the denominator; without class weights
-- that is the mean over all pixels). All pixels ignored gives 0.
function M.CrossEntropyLoss(opts)
  opts = opts_arg(opts, "CrossEntropyLoss")
  local self = new_loss("CrossEntropyLoss", "", {
    weight = weight_arg(opts.weight, "CrossEntropyLoss"),
    ignore_index = opts.ignore_index or 255,
    avg_non_ignore = opts.avg_non_ignore ~= false,
    EPS = 1e-8,
  })
  self.desc = "ignore_index=" .. self.ignore_index .. ", avg_non_ignore=" ..
    tostring(self.avg_non_ignore) .. (self.weight and ", weight=[...]" or "")
  return self
end

function Loss:_ce_forward(logits, label)
  local lbl = prep_label(self.name, logits, label)
  local c = logits:size(2)
  check_weight_len(self, c)
  local ig = self.ignore_index
  local counts = label_counts(lbl, c, ig)
  local numel, valid, wsum = lbl:numel(), 0, 0
  for k = 1, c do
    valid = valid + counts[k]
    wsum = wsum + counts[k] * (self.weight and self.weight[k] or 1)
  end
  local denom = wsum
  if not self.avg_non_ignore then denom = denom + (numel - valid) end
  denom = global_denominator(denom + self.EPS * numel)
  local s = F.cross_entropy(logits, lbl, { weight = weight_tensor(self, logits),
    ignore_index = ig, reduction = "sum" })
  return s:div(denom)
end

-- ---- OhemCrossEntropyLoss ------------------------------------------------------------------
-- OhemCrossEntropyLoss{thresh = 0.7, min_kept = 10000, ignore_index = 255}
-- PaddleSeg's online hard example mining: p = softmax probability of the true class; when
-- min_kept < #valid pixels, threshold = max(thresh, the min_kept-th smallest p) and only
-- pixels with p < threshold (strictly) are kept. loss = sum of their CE / (kept + 1e-5 * numel).
function M.OhemCrossEntropyLoss(opts)
  opts = opts_arg(opts, "OhemCrossEntropyLoss")
  local self = new_loss("OhemCrossEntropyLoss", "", {
    thresh = opts.thresh or 0.7,
    min_kept = opts.min_kept or 10000,
    ignore_index = opts.ignore_index or 255,
    EPS = 1e-5,
  })
  if type(self.min_kept) ~= "number" or self.min_kept < 0 or self.min_kept ~= math.floor(self.min_kept) then
    error("OhemCrossEntropyLoss: min_kept must be an integer >= 0, got " .. tostring(self.min_kept), 2)
  end
  self.desc = string.format("thresh=%g, min_kept=%d, ignore_index=%d", self.thresh, self.min_kept,
    self.ignore_index)
  self.forward = M._ohem_forward
  return self
end

-- The label with every pixel OHEM drops set to ignore_index, and the kept count.
function M.ohem_select(logits, lbl, thresh, min_kept, ig)
  local c = logits:size(2)
  local counts = label_counts(lbl, c, ig)
  local numel, num_valid = lbl:numel(), 0
  for k = 1, c do num_valid = num_valid + counts[k] end
  if not (min_kept < num_valid and num_valid > 0) then return lbl, num_valid end
  return ms.no_grad(function()
    local valid = lbl:ne(ig)
    local nll = F.cross_entropy(logits:detach(), lbl, { ignore_index = ig, reduction = "none" })
    local p = ms.where(valid, nll:neg():exp(), 2) -- ignored pixels sort after every valid one
    local threshold = thresh
    if min_kept > 0 then
      local v = M.kth_smallest(p, math.min(numel, min_kept))
      if v > thresh then threshold = v end
    end
    local kept = p:lt(threshold):logical_and(valid)
    local n_kept = kept:sum():item()
    return ms.where(kept, lbl, ig), n_kept
  end)
end

function M._ohem_forward(self, logits, label)
  local lbl = prep_label(self.name, logits, label)
  local kept_label, n_kept = M.ohem_select(logits, lbl, self.thresh, self.min_kept, self.ignore_index)
  local s = F.cross_entropy(logits, kept_label, { ignore_index = self.ignore_index, reduction = "sum" })
  local denom = global_denominator(n_kept + self.EPS * lbl:numel())
  return s:div(denom)
end

-- ---- DiceLoss ------------------------------------------------------------------------------
-- DiceLoss{smooth = 1, ignore_index = 255, weight = nil}
-- PaddleSeg: P = softmax(logits) and one-hot labels, both zeroed at ignored pixels; per sample n
-- and class c, d = 1 - (2 * sum(P * Y) + smooth) / (sum(P + Y) + smooth + 1e-8); the loss is
-- sum_c w_c * mean_n d[n, c] / C.
function M.DiceLoss(opts)
  opts = opts_arg(opts, "DiceLoss")
  local self = new_loss("DiceLoss", "", {
    smooth = opts.smooth or 1,
    ignore_index = opts.ignore_index or 255,
    weight = weight_arg(opts.weight, "DiceLoss"),
    eps = 1e-8,
  })
  self.desc = string.format("smooth=%g, ignore_index=%d", self.smooth, self.ignore_index)
  self.forward = M._dice_forward
  return self
end

function M._dice_forward(self, logits, label)
  local lbl = prep_label(self.name, logits, label)
  local n, c = logits:size(1), logits:size(2)
  check_weight_len(self, c)
  local dt = logits:type()
  label_counts(lbl, c, self.ignore_index) -- validates the label values
  local valid = lbl:ne(self.ignore_index)
  local mask = valid:to(dt):unsqueeze(2) -- [N, 1, ...]
  local clean = ms.where(valid, lbl, 0)
  local cshape = { 1, c }
  for _ = 3, logits:dim() do cshape[#cshape + 1] = 1 end
  local classes = ms.arange(0, c, 1, { dtype = "i64", device = logits:device_str() }):view(cshape)
  local onehot = clean:unsqueeze(2):eq(classes):to(dt):mul(mask) -- [N, C, ...]
  local prob = F.softmax(logits, 2):mul(mask)
  local pf, yf = prob:reshape(n, c, -1), onehot:reshape(n, c, -1)
  local inter = pf:mul(yf):sum(3)  -- [N, C]
  local card = pf:add(yf):sum(3)   -- [N, C]
  local ratio = inter:mul(2):add(self.smooth):div(card:add(self.smooth + self.eps))
  local per_class = ratio:neg():add(1):mean(1) -- [C]
  if self.weight then per_class = per_class:mul(weight_tensor(self, logits)) end
  return per_class:sum():div(c)
end

-- ---- MixedLoss -----------------------------------------------------------------------------
-- MixedLoss{losses = {l1, l2, ...}, coef = {c1, c2, ...}}: loss(logits, label) returns
-- sum_i c_i * l_i(logits, label) and, second, the list of the c_i * l_i terms (PaddleSeg's
-- MixedLoss returns that list; its trainer sums it).
function M.MixedLoss(opts)
  opts = opts_arg(opts, "MixedLoss")
  local losses, coef = opts.losses, opts.coef
  if type(losses) ~= "table" or #losses == 0 then error("MixedLoss: losses must be a non-empty list", 2) end
  if type(coef) ~= "table" then error("MixedLoss: coef must be a list of numbers", 2) end
  if #losses ~= #coef then
    error(string.format("MixedLoss: the length of losses should equal coef, but they are %d and %d",
      #losses, #coef), 2)
  end
  local names = {}
  for i, l in ipairs(losses) do
    if type(l) ~= "function" and not (type(l) == "table" and getmetatable(l) and getmetatable(l).__call) then
      error("MixedLoss: losses[" .. i .. "] is not callable", 2)
    end
    if type(coef[i]) ~= "number" then error("MixedLoss: coef[" .. i .. "] is not a number", 2) end
    names[i] = tostring(type(l) == "table" and l.name or "fn") .. "*" .. coef[i]
  end
  local self = new_loss("MixedLoss", table.concat(names, " + "), { losses = losses, coef = coef,
    is_mixed = true })
  self.forward = M._mixed_forward
  return self
end

function M._mixed_forward(self, logits, label)
  local terms, total = {}, nil
  for i, l in ipairs(self.losses) do
    local v = l(logits, label)
    terms[i] = v:mul(self.coef[i])
    total = total and total:add(terms[i]) or terms[i]
  end
  return total, terms
end

Loss.forward = Loss._ce_forward

-- multi_output(losses, coefs, logits_list, label) -> total, terms
-- PaddleSeg's loss config {types = [...], coef = [...]}: output i of the model gets loss i
-- (or the one loss given for all) times coef i; a MixedLoss contributes each of its terms
-- times coef i. Returns the summed loss and the list of terms (for logging).
function M.multi_output(losses, coefs, logits_list, label)
  if T.is_tensor(logits_list) then logits_list = { logits_list } end
  if type(logits_list) ~= "table" or #logits_list == 0 then
    error("multi_output: logits_list must be a non-empty list of tensors", 2)
  end
  local n = #logits_list
  local list = losses
  if type(losses) == "function" or (type(losses) == "table" and getmetatable(losses) == Loss) then
    list = {}
    for i = 1, n do list[i] = losses end
  end
  if type(list) ~= "table" or #list ~= n then
    error(string.format("multi_output: %d losses for %d model outputs (the numbers must match)",
      type(list) == "table" and #list or 0, n), 2)
  end
  coefs = coefs or {}
  if type(coefs) == "number" then coefs = { coefs } end
  if #coefs ~= 0 and #coefs ~= n then
    error(string.format("multi_output: %d coefficients for %d model outputs", #coefs, n), 2)
  end
  local terms, total = {}, nil
  local function add(t)
    terms[#terms + 1] = t
    total = total and total:add(t) or t
  end
  for i = 1, n do
    local l, k = list[i], coefs[i] or 1
    if type(l) == "table" and l.is_mixed then
      local _, parts = l(logits_list[i], label)
      for _, p in ipairs(parts) do add(p:mul(k)) end
    else
      add(l(logits_list[i], label):mul(k))
    end
  end
  return total, terms
end

return M
