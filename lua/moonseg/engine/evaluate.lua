-- evaluate.lua: PaddleSeg's evaluation: whole images at batch 1 (or sliding windows, flips,
-- scales), logits resized to the label, confusion matrix summed over the set, [EVAL] lines.
local ms = require "moonseg"
local infer = require "moonseg.engine.infer"
local log = require "moonseg.engine.log"

local M = {}

local function fmt_list(v)
  local parts = {}
  for i, x in ipairs(v) do parts[i] = string.format("%.4f", x) end
  return "[" .. table.concat(parts, " ") .. "]"
end

-- evaluate(model, dataset, {transforms=, num_classes=, ignore_index=255, num_workers=0,
-- aug={is_slide=, crop_size=, stride=, flip_horizontal=, scales=}, print=true,
-- all_reduce=fn (distributed), rank=, world_size=}) -> metrics table (ms.metrics.compute())
function M.evaluate(model, dataset, o)
  o = o or {}
  local nc = o.num_classes or dataset.num_classes
  if not nc then error("evaluate: num_classes is unknown", 2) end
  local was_training = model.training
  model:eval()
  local loader = ms.data.DataLoader(dataset, { batch_size = 1, num_workers = o.num_workers or 0,
    transforms = o.transforms, num_classes = nc, ignore_index = o.ignore_index or 255,
    rank = o.rank or 0, world_size = o.world_size or 1 })
  local cm = ms.metrics.ConfusionMatrix(nc, o.ignore_index or 255)
  local n = loader:batches_per_epoch()
  local show = o.print ~= false
  if show then log.info(string.format("Start evaluating (total_samples: %d, total_iters: %d)...", dataset:size(), n)) end
  local bar = show and log.progress(n, "") or nil
  local t0 = ms.time()
  -- [distributed] the sampler wraps the set to a multiple of the world size; rank r's i-th
  -- sample is position r + (i - 1) * world of that order, and positions past the set's end
  -- are repeats that would be counted twice: skip them
  local rank, world, total = o.rank or 0, o.world_size or 1, dataset:size()
  for i = 1, n do
    local img, label = loader:next()
    if rank + (i - 1) * world >= total then
      if bar then bar:update(i, "") end
      goto continue
    end
    local logits = infer.logits(model, img, { is_slide = o.aug and o.aug.is_slide,
      crop_size = o.aug and o.aug.crop_size, stride = o.aug and o.aug.stride,
      flip_horizontal = o.aug and o.aug.flip_horizontal, flip_vertical = o.aug and o.aug.flip_vertical,
      scales = o.aug and o.aug.scales, size = { label:size(2), label:size(3) } })
    cm:update(logits, label:to(logits.device))
    if bar then bar:update(i, string.format(" - batch_cost: %.4f", (ms.time() - t0) / i)) end
    ::continue::
  end
  loader:close()
  if o.all_reduce then cm:all_reduce(o.all_reduce) end
  local r = cm:compute()
  r.num_images = dataset:size()
  if show then
    log.info(string.format("[EVAL] #Images: %d mIoU: %.4f Acc: %.4f Kappa: %.4f Dice: %.4f",
      r.num_images, r.miou, r.acc, r.kappa, r.mdice))
    log.info("[EVAL] Class IoU: \n" .. fmt_list(r.iou))
    log.info("[EVAL] Class Precision: \n" .. fmt_list(r.precision))
    log.info("[EVAL] Class Recall: \n" .. fmt_list(r.recall))
  end
  if was_training then model:train() end
  return r
end

return M
