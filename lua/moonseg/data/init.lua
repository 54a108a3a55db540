-- data: data sets (PaddleSeg file lists, Cityscapes layout, the built-in synthetic set), the
-- augmentations and the C batch loader.
local ffi = require "ffi"
local L = require "moonseg.lib"
local Tensor = require "moonseg.tensor"
local C, check = L.C, L.check
local E = require "moonseg.errors" -- a missing root, list or file, a bad label: user errors

local data = {
  transforms = require "moonseg.data.transforms",
  synthetic = require "moonseg.data.synthetic",
}

-- ---- Dataset -------------------------------------------------------------------------------
local Dataset = {}
Dataset.__index = Dataset
data.Dataset = Dataset

local function new_dataset()
  local p = ffi.new("ms_dataset*[1]")
  check(C.ms_dataset_new(p), 3)
  return setmetatable({ _h = ffi.gc(p[0], C.ms_dataset_free) }, Dataset)
end

function Dataset:size() return tonumber(C.ms_dataset_size(self._h)) end
-- sample(i) (1-based) -> image path, label path or nil, origin.
function Dataset:sample(i)
  local n = self:size()
  if i < 1 or i > n then error("Dataset:sample: index " .. i .. " out of range 1.." .. n, 2) end
  local lab = C.ms_dataset_label(self._h, i - 1)
  return ffi.string(C.ms_dataset_image(self._h, i - 1)), lab ~= nil and ffi.string(lab) or nil,
    ffi.string(C.ms_dataset_origin(self._h, i - 1))
end
function Dataset:add(image, label, origin) check(C.ms_dataset_add(self._h, image, label, origin), 2) end

-- data.PaddleSegDataset{dataset_root=, mode="train"|"val"|"test", train_path=, val_path=,
-- test_path=, separator=" ", num_classes=, reduce_zero_label=false}: PaddleSeg's Dataset:
-- file lists of "image label" lines relative to dataset_root (optic_disc_seg's layout works as
-- is). reduce_zero_label (MMSegmentation's name): the annotations count classes from 1 and 0
-- is "other" (ADE20K's convention): the loader reads 0 as 255 (ignored) and c as c - 1.
function data.PaddleSegDataset(o)
  if type(o) ~= "table" or not o.dataset_root then error("PaddleSegDataset: dataset_root is required", 2) end
  local mode = o.mode or "train"
  local list = o[mode .. "_path"] or (o.dataset_root .. "/" .. mode .. "_list.txt")
  local ds = new_dataset()
  E.check(C.ms_dataset_add_list(ds._h, o.dataset_root, list, o.separator, mode ~= "test" and 1 or 0))
  ds.num_classes, ds.mode, ds.root = o.num_classes, mode, o.dataset_root
  ds.ignore_index = o.ignore_index or 255
  ds.reduce_zero_label = o.reduce_zero_label and true or false
  if ds.reduce_zero_label and ds.ignore_index ~= 255 then
    error("PaddleSegDataset: reduce_zero_label turns label 0 into 255, so ignore_index must be 255, got " ..
      tostring(ds.ignore_index), 2)
  end
  return ds
end

local function list_dir(dir)
  local p = io.popen("ls -1 '" .. dir:gsub("'", "'\\''") .. "' 2>/dev/null")
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  table.sort(out)
  return out
end

-- data.Cityscapes{dataset_root=, mode="train"|"val"}: leftImg8bit/<mode>/<city>/*_leftImg8bit.png
-- with gtFine/<mode>/<city>/*_gtFine_labelTrainIds.png; 19 classes.
function data.Cityscapes(o)
  local root, mode = o.dataset_root, o.mode or "train"
  local img_dir = root .. "/leftImg8bit/" .. mode
  local cities = list_dir(img_dir)
  if #cities == 0 then E.user("Cityscapes: no city folders in " .. img_dir) end
  local ds = new_dataset()
  for _, city in ipairs(cities) do
    for _, f in ipairs(list_dir(img_dir .. "/" .. city)) do
      local stem = f:match("^(.*)_leftImg8bit%.png$")
      if stem then
        local label = root .. "/gtFine/" .. mode .. "/" .. city .. "/" .. stem .. "_gtFine_labelTrainIds.png"
        local fh = io.open(label, "rb")
        if not fh then E.user("Cityscapes: label " .. label .. " missing for " .. f) end
        fh:close()
        ds:add(img_dir .. "/" .. city .. "/" .. f, label, city .. "/" .. f)
      end
    end
  end
  if ds:size() == 0 then E.user("Cityscapes: no *_leftImg8bit.png files under " .. img_dir) end
  ds.num_classes, ds.mode, ds.root, ds.ignore_index = 19, mode, root, 255
  return ds
end

-- data.ADE20K{dataset_root=, mode="train"|"val"}: PaddleSeg's ADE20K (ADEChallengeData2016):
-- images/{training,validation}/*.jpg with annotations/{training,validation}/*.png of the same
-- name; 150 classes, annotation 0 ignored and c read as c - 1 (reduce_zero_label). Files are
-- taken in name order (PaddleSeg takes os.listdir's order, which the file system decides).
function data.ADE20K(o)
  o = o or {}
  local root, mode = o.dataset_root or "data/ADEChallengeData2016", o.mode or "train"
  local sub = ({ train = "training", val = "validation" })[mode]
  if not sub then E.user("ADE20K: mode must be train or val, got " .. tostring(mode)) end
  local img_dir, lab_dir = root .. "/images/" .. sub, root .. "/annotations/" .. sub
  local ds = new_dataset()
  for _, f in ipairs(list_dir(img_dir)) do
    local stem = f:match("^(.*)%.jpg$")
    if stem then
      local label = lab_dir .. "/" .. stem .. ".png"
      local fh = io.open(label, "rb")
      if not fh then E.user("ADE20K: annotation " .. label .. " missing for " .. img_dir .. "/" .. f) end
      fh:close()
      ds:add(img_dir .. "/" .. f, label, "images/" .. sub .. "/" .. f)
    end
  end
  if ds:size() == 0 then E.user("ADE20K: no *.jpg images in " .. img_dir .. " (expected ADEChallengeData2016's layout)") end
  ds.num_classes, ds.mode, ds.root, ds.ignore_index, ds.reduce_zero_label = 150, mode, root, 255, true
  return ds
end

-- data.Synthetic{mode=, dir=, ...}: the built-in set (generated into the cache on first use).
function data.Synthetic(o)
  o = o or {}
  local root = data.synthetic.ensure(o)
  local ds = data.PaddleSegDataset { dataset_root = root, mode = o.mode or "train",
    num_classes = data.synthetic.NUM_CLASSES }
  return ds
end

-- ---- DataLoader ------------------------------------------------------------------------------
local DataLoader = {}
DataLoader.__index = DataLoader
data.DataLoader = DataLoader

-- DataLoader(dataset, {batch_size=, num_workers=, shuffle=, drop_last=, transforms=Compose,
-- seed=, rank=, world_size=, skip_bad=, num_classes=, ignore_index=, prefetch=,
-- reduce_zero_label= (default: the dataset's)})
setmetatable(DataLoader, { __call = function(_, ds, o)
  o = o or {}
  local cfg = ffi.new("ms_loader_config")
  cfg.batch_size = o.batch_size or 1
  cfg.num_workers = o.num_workers or 0
  cfg.prefetch = o.prefetch or 2
  cfg.shuffle = o.shuffle and 1 or 0
  cfg.drop_last = o.drop_last and 1 or 0
  cfg.rank = o.rank or 0
  cfg.world_size = o.world_size or 1
  cfg.skip_bad = o.skip_bad and 1 or 0
  cfg.num_classes = o.num_classes or ds.num_classes or 0
  cfg.ignore_index = o.ignore_index or ds.ignore_index or 255
  cfg.seed = o.seed or 0
  local rzl = o.reduce_zero_label
  if rzl == nil then rzl = ds.reduce_zero_label end
  cfg.reduce_zero_label = rzl and 1 or 0
  local tf = o.transforms
  local p = ffi.new("ms_loader*[1]")
  check(C.ms_loader_new(L.ctx, ds._h, cfg, tf and tf.ops or nil, tf and tf.n or 0, p), 2)
  return setmetatable({ _h = ffi.gc(p[0], C.ms_loader_free), dataset = ds, transforms = tf,
    batch_size = cfg.batch_size }, DataLoader)
end })

local img_out, lab_out = ffi.new("ms_tensor*[1]"), ffi.new("ms_tensor*[1]")
local ep, ix = ffi.new("int64_t[1]"), ffi.new("int64_t[1]")

-- next() -> images f32 [B,3,H,W], labels i64 [B,H,W] (or nil), epoch (0-based), batch index
-- (0-based); iterates endlessly across epochs. Errors name the sample and its list line.
function DataLoader:next()
  lab_out[0] = nil
  local rc = C.ms_loader_next(self._h, img_out, lab_out, ep, ix)
  -- the arguments were checked by ms_loader_new: an unreadable file or a bad label is the data's
  if rc == C.MS_ERR_IO or rc == C.MS_ERR_INVALID then E.check(rc) end
  check(rc, 2)
  local images = Tensor.wrap(img_out[0])
  local labels = lab_out[0] ~= nil and Tensor.wrap(lab_out[0]) or nil
  return images, labels, tonumber(ep[0]), tonumber(ix[0])
end

-- for images, labels in loader:epoch() do ... end: the batches of the current epoch.
function DataLoader:epoch()
  local e0 = self:position().epoch
  return function()
    local pos = self:position()
    if pos.epoch ~= e0 then return nil end
    return self:next()
  end
end

function DataLoader:batches_per_epoch() return tonumber(C.ms_loader_batches_per_epoch(self._h)) end
function DataLoader:samples_per_epoch() return tonumber(C.ms_loader_samples_per_epoch(self._h)) end
function DataLoader:skipped() return tonumber(C.ms_loader_skipped(self._h)) end
-- {epoch=, batch=}: where the next batch comes from (save it in checkpoints).
function DataLoader:position()
  check(C.ms_loader_position(self._h, ep, ix), 2)
  return { epoch = tonumber(ep[0]), batch = tonumber(ix[0]) }
end
function DataLoader:seek(pos) check(C.ms_loader_seek(self._h, pos.epoch, pos.batch), 2) end
-- Stops and joins the worker threads now.
function DataLoader:close()
  if self._h ~= nil then
    ffi.gc(self._h, nil)
    C.ms_loader_free(self._h)
    self._h = nil
  end
end

return data
