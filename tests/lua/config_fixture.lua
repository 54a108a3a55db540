-- config_fixture.lua: test helpers for PaddleSeg configs: a small data set in optic_disc_seg's
-- layout (JPEGImages/*.jpg, Annotations/*.png with 0/1 labels, train_list.txt, val_list.txt)
-- and writing config files.
local ms = require "moonseg"
local F = {}

-- optic_disc(root, {train=, val=, size=}) -> root: discs of random place and radius on noise.
function F.optic_disc(root, o)
  o = o or {}
  local size = o.size or 48
  os.execute("mkdir -p '" .. root .. "/JPEGImages' '" .. root .. "/Annotations'")
  local seed = 12345
  local function rand()
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed / 2147483648
  end
  local lists = { train = {}, val = {} }
  local k = 0
  for _, split in ipairs { "train", "val" } do
    for _ = 1, (split == "train" and (o.train or 8) or (o.val or 2)) do
      k = k + 1
      local h, w = size, size + 8
      local cx, cy, r = w * (0.3 + 0.4 * rand()), h * (0.3 + 0.4 * rand()), h * (0.15 + 0.15 * rand())
      local img, lab = {}, {}
      for y = 0, h - 1 do
        for x = 0, w - 1 do
          local inside = (x - cx) ^ 2 + (y - cy) ^ 2 < r * r
          local base = inside and 200 or 60
          for c = 1, 3 do img[#img + 1] = math.max(0, math.min(255, base + (c - 2) * 20 + math.floor(rand() * 40))) end
          lab[#lab + 1] = inside and 1 or 0
        end
      end
      local stem = string.format("N%04d", k)
      ms.image.write_jpeg(root .. "/JPEGImages/" .. stem .. ".jpg", ms.tensor(img, { dtype = "u8" }):view(h, w, 3))
      ms.image.write_png(root .. "/Annotations/" .. stem .. ".png", ms.tensor(lab, { dtype = "u8" }):view(h, w))
      lists[split][#lists[split] + 1] = "JPEGImages/" .. stem .. ".jpg Annotations/" .. stem .. ".png"
    end
  end
  for split, lines in pairs(lists) do
    local f = assert(io.open(root .. "/" .. split .. "_list.txt", "w"))
    f:write(table.concat(lines, "\n"), "\n")
    f:close()
  end
  return root
end

-- ade20k(root, {w=, h=}) -> raws: ADEChallengeData2016's layout under root, four training and
-- two validation images (written out of name order) with annotations in which every value
-- 0..150 and 255 appear, and pixels 0, 1, 2 hold 0, 1, 150; raws[name] = the annotation values.
function F.ade20k(root, o)
  o = o or {}
  local W, H = o.w or 12, o.h or 8
  for _, d in ipairs { "images/training", "images/validation", "annotations/training", "annotations/validation" } do
    os.execute("mkdir -p '" .. root .. "/" .. d .. "'")
  end
  local raws = {}
  local function sample(split, name, k)
    local img, lab = {}, {}
    for i = 1, W * H * 3 do img[i] = (i * 5 + k * 11) % 256 end
    for i = 0, W * H - 1 do
      local x = (i * 7 + k * 13) % 152 -- 0..151; 151 stands for 255
      lab[#lab + 1] = x == 151 and 255 or x
    end
    lab[1], lab[2], lab[3] = 0, 1, 150
    raws[name] = lab
    ms.image.write_jpeg(root .. "/images/" .. split .. "/" .. name .. ".jpg", ms.tensor(img, { dtype = "u8" }):view(H, W, 3))
    ms.image.write_png(root .. "/annotations/" .. split .. "/" .. name .. ".png", ms.tensor(lab, { dtype = "u8" }):view(H, W))
  end
  sample("training", "ADE_train_00000003", 3)
  sample("training", "ADE_train_00000001", 1)
  sample("training", "ADE_train_00000002", 2)
  sample("training", "ADE_train_00000004", 4)
  sample("validation", "ADE_val_00000001", 5)
  sample("validation", "ADE_val_00000002", 6)
  return raws
end

-- A PaddleSeg-schema config on the ADE20K layout at root (PP-LiteSeg, STDC1, 32x32 crops).
function F.ade20k_config(root)
  return ([[
batch_size: 2
iters: 1
train_dataset:
  type: ADE20K
  dataset_root: ROOT
  mode: train
  transforms:
    - type: RandomPaddingCrop
      crop_size: [32, 32]
    - type: Normalize
val_dataset:
  type: ADE20K
  dataset_root: ROOT
  mode: val
  transforms:
    - type: Normalize
optimizer:
  type: sgd
lr_scheduler:
  type: PolynomialDecay
  learning_rate: 0.01
loss:
  types:
    - type: CrossEntropyLoss
  coef: [1, 1, 1]
model:
  type: PPLiteSeg
  backbone:
    type: STDC1
]]):gsub("ROOT", root)
end

function F.write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

-- The optic-disc quick-start settings in PaddleSeg's schema (root, crop: placeholders filled).
function F.quick_start(root, crop)
  return ([[
batch_size: 2
iters: 4
train_dataset:
  type: Dataset
  dataset_root: ROOT
  train_path: ROOT/train_list.txt
  num_classes: 2
  mode: train
  transforms:
    - type: ResizeStepScaling
      min_scale_factor: 0.5
      max_scale_factor: 2.0
      scale_step_size: 0.25
    - type: RandomPaddingCrop
      crop_size: [CROP, CROP]
    - type: RandomHorizontalFlip
    - type: RandomDistort
      brightness_range: 0.5
      contrast_range: 0.5
      saturation_range: 0.5
    - type: Normalize
val_dataset:
  type: Dataset
  dataset_root: ROOT
  val_path: ROOT/val_list.txt
  num_classes: 2
  mode: val
  transforms:
    - type: Normalize
optimizer:
  type: sgd
  momentum: 0.9
  weight_decay: 4.0e-5
lr_scheduler:
  type: PolynomialDecay
  learning_rate: 0.01
  end_lr: 0
  power: 0.9
loss:
  types:
    - type: CrossEntropyLoss
  coef: [1, 1, 1]
model:
  type: PPLiteSeg
  backbone:
    type: STDC2
]]):gsub("ROOT", root):gsub("CROP", tostring(crop or 64))
end

return F
