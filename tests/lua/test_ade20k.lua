-- test_ade20k.lua: PaddleSeg's ADE20K layout (ADEChallengeData2016, written here) and the label
-- shift ADE20K needs (reduce_zero_label: 0 -> 255 ignored, c -> c - 1), checked value by value
-- through the loader (one and several workers, train and val), on the generic data set, and
-- from a `type: ADE20K` config whose 150 classes reach the model (test_config_train.lua trains
-- one iteration of PP-LiteSeg on it through recipes/train.lua).
local H = require "harness"
local ms = require "moonseg"
local config = require "moonseg.config"

local Fx = require "config_fixture"

local tmp = os.tmpname()
os.remove(tmp)
local root = tmp .. "/ADEChallengeData2016"
local W, Hh = 12, 8
local raws = Fx.ade20k(root, { w = W, h = Hh })

local function shifted(v)
  if v == 0 or v == 255 then return 255 end
  return v - 1
end

-- labels of batch b (i64 [B, H, W]) against the shifted raw annotations of names.
local function check_batch(labels, names, what)
  local got = H.flat(labels)
  local n = W * Hh
  for j, name in ipairs(names) do
    local raw = raws[name]
    for i = 1, n do
      if got[(j - 1) * n + i] ~= shifted(raw[i]) then
        error(string.format("%s: %s pixel %d: raw %d read as %d, expected %d", what, name, i - 1, raw[i],
          got[(j - 1) * n + i], shifted(raw[i])), 2)
      end
    end
    H.eq(got[(j - 1) * n + 1], 255, name .. ": 0 -> 255")
    H.eq(got[(j - 1) * n + 2], 0, name .. ": 1 -> 0")
    H.eq(got[(j - 1) * n + 3], 149, name .. ": 150 -> 149")
  end
end

H.case("ms.data.ADE20K: ADEChallengeData2016's layout, sorted, 150 classes, train and val", function()
  local ds = ms.data.ADE20K { dataset_root = root, mode = "train" }
  H.eq(ds:size(), 4) H.eq(ds.num_classes, 150) H.eq(ds.ignore_index, 255) H.eq(ds.reduce_zero_label, true)
  for i = 1, 4 do
    local img, lab = ds:sample(i)
    H.eq(img, string.format("%s/images/training/ADE_train_%08d.jpg", root, i))
    H.eq(lab, string.format("%s/annotations/training/ADE_train_%08d.png", root, i))
  end
  local val = ms.data.ADE20K { dataset_root = root, mode = "val" }
  H.eq(val:size(), 2)
  H.eq(select(2, val:sample(2)), root .. "/annotations/validation/ADE_val_00000002.png")
  H.raises(function() ms.data.ADE20K { dataset_root = root, mode = "test" } end, "ADE20K", "train or val", "test")
  H.raises(function() ms.data.ADE20K { dataset_root = tmp .. "/nowhere" } end, "no *.jpg images in",
    tmp .. "/nowhere/images/training")
end)

H.case("the loader shifts ADE20K's labels value by value: 0 -> 255, c -> c-1, 255 stays (1 and 2 workers)", function()
  local ds = ms.data.ADE20K { dataset_root = root, mode = "train" }
  local names = { "ADE_train_00000001", "ADE_train_00000002", "ADE_train_00000003", "ADE_train_00000004" }
  for _, workers in ipairs { 0, 2 } do
    local loader = ms.data.DataLoader(ds, { batch_size = 2, num_workers = workers })
    local _, l1 = loader:next()
    H.same_list(l1:size(), { 2, Hh, W })
    check_batch(l1, { names[1], names[2] }, workers .. " workers")
    local _, l2 = loader:next()
    check_batch(l2, { names[3], names[4] }, workers .. " workers")
    loader:close()
  end
  local val = ms.data.ADE20K { dataset_root = root, mode = "val" }
  local loader = ms.data.DataLoader(val, { batch_size = 1 })
  local _, l = loader:next()
  check_batch(l, { "ADE_val_00000001" }, "val")
  -- the same files read without the shift (an explicit loader option wins over the data set's)
  local plain = ms.data.DataLoader(ds, { batch_size = 1, num_classes = 0, reduce_zero_label = false })
  local _, raw = plain:next()
  H.same_list(H.flat(raw), raws.ADE_train_00000001)
end)

H.case("the shift comes before the augmentations: padding stays ignored, flips move shifted values", function()
  local ds = ms.data.ADE20K { dataset_root = root, mode = "train" }
  local T = ms.data.transforms
  local loader = ms.data.DataLoader(ds, { batch_size = 1, transforms = T.Compose {
    T.Padding { target_size = { W + 4, Hh + 2 } }, T.RandomHorizontalFlip { prob = 1 }, T.Normalize() } })
  local _, l = loader:next()
  H.same_list(l:size(), { 1, Hh + 2, W + 4 })
  local got, raw = H.flat(l), raws.ADE_train_00000001
  for y = 0, Hh + 1 do
    for x = 0, W + 3 do
      -- padded at the bottom-right, then flipped: the padding is at the left
      local sx = (W + 3) - x
      local want = (y < Hh and sx < W) and shifted(raw[y * W + sx + 1]) or 255
      if got[y * (W + 4) + x + 1] ~= want then
        error(string.format("pixel (%d, %d): %d, expected %d", x, y, got[y * (W + 4) + x + 1], want))
      end
    end
  end
end)

H.case("reduce_zero_label on the generic data set; shifted values still checked against num_classes", function()
  local lines = {}
  for i = 1, 2 do
    lines[#lines + 1] = string.format("images/training/ADE_train_%08d.jpg annotations/training/ADE_train_%08d.png", i, i)
  end
  H.write_file(tmp .. "/list.txt", table.concat(lines, "\n") .. "\n")
  local ds = ms.data.PaddleSegDataset { dataset_root = root, train_path = tmp .. "/list.txt", num_classes = 150,
    reduce_zero_label = true }
  H.eq(ds.reduce_zero_label, true)
  local _, l = ms.data.DataLoader(ds, { batch_size = 2 }):next()
  check_batch(l, { "ADE_train_00000001", "ADE_train_00000002" }, "PaddleSegDataset")
  local off = ms.data.PaddleSegDataset { dataset_root = root, train_path = tmp .. "/list.txt", num_classes = 151 }
  H.eq(off.reduce_zero_label, false)
  local _, r = ms.data.DataLoader(off, { batch_size = 1 }):next()
  H.same_list(H.flat(r), raws.ADE_train_00000001, "off by default")
  -- 149 classes: the shifted 149 (raw 150) is out of range, and the error names the file
  local few = ms.data.PaddleSegDataset { dataset_root = root, train_path = tmp .. "/list.txt", num_classes = 149,
    reduce_zero_label = true }
  local loader = ms.data.DataLoader(few, { batch_size = 1 })
  H.raises(function() loader:next() end, "ADE_train_00000001.png", "value 149", "[0, 149)")
  H.raises(function()
    ms.data.PaddleSegDataset { dataset_root = root, train_path = tmp .. "/list.txt", reduce_zero_label = true,
      ignore_index = 0 }
  end, "reduce_zero_label", "ignore_index must be 255")
end)

-- A one-layer model registered the way a new model is (as test_config.lua does), so the config
-- case does not build PP-LiteSeg (recipes/train.lua trains the real one in test_config_train).
config.registry.models.TinyNet = { args = {}, defaults = {} }
ms.models.TinyNet = function(a)
  local m = ms.nn.Conv2d(3, a.num_classes, 1)
  m.num_classes = a.num_classes
  return m
end
local function ade_config()
  return (Fx.ade20k_config(root):gsub("model:\n  type: PPLiteSeg\n  backbone:\n    type: STDC1\n", "model:\n  type: TinyNet\n"))
end

H.case("type: ADE20K in a config: 150 classes reach the model and the losses; bad settings named", function()
  H.write_file(tmp .. "/ade.yml", ade_config())
  local parts = config.build(config.load(tmp .. "/ade.yml"), { iters = 1 }, { warn = function() end })
  H.eq(parts.num_classes, 150) H.eq(parts.ignore_index, 255)
  H.eq(parts.model.num_classes, 150)
  H.eq(parts.train_dataset:size(), 4) H.eq(parts.val_dataset:size(), 2)
  H.eq(parts.train_dataset.reduce_zero_label, true) H.eq(parts.val_dataset.reduce_zero_label, true)
  H.same_list(parts.model.weight:size(), { 150, 3, 1, 1 }, "a 150-way classifier")
  H.eq(#parts.losses.types, 3)
  for _, l in ipairs(parts.losses.types) do H.eq(l.ignore_index, 255) end
  H.write_file(tmp .. "/ade_test.yml", ade_config():gsub("mode: val", "mode: test"))
  H.raises(function() config.build(config.load(tmp .. "/ade_test.yml"), { iters = 1 }, { warn = function() end }) end,
    tmp .. "/ade_test.yml:", "val_dataset.mode", "train and val only")
  H.write_file(tmp .. "/ade_nc.yml", ade_config():gsub("  type: TinyNet\n", "  type: TinyNet\n  num_classes: 151\n", 1))
  H.raises(function() config.build(config.load(tmp .. "/ade_nc.yml"), { iters = 1 }, { warn = function() end }) end,
    "model.num_classes", "151", "150")
  H.write_file(tmp .. "/ade_root.yml", ade_config():gsub("dataset_root: [^\n]*", "dataset_root: " .. tmp .. "/none", 1))
  H.raises(function() config.build(config.load(tmp .. "/ade_root.yml"), { iters = 1 }, { warn = function() end }) end,
    tmp .. "/ade_root.yml:", "train_dataset", "no *.jpg images")
end)

os.execute("rm -rf '" .. tmp .. "'")
H.done()
