-- test_dataset.lua: PaddleSeg file lists (separators, blank lines, CRLF, absolute paths, origins),
-- list-level errors naming file and line, the Cityscapes and optic_disc_seg layouts end to end.
local H = require "harness"
local ms = require "moonseg"
local ffi = require "ffi"
local data = require "moonseg.data"

local tmp = os.tmpname()
os.remove(tmp)
local function sh(cmd) assert(os.execute(cmd) == 0, "command failed: " .. cmd) end
sh("mkdir -p '" .. tmp .. "'")
local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function pixels(shape, fn)
  local t = ms.empty(shape, { dtype = "u8" })
  local p = ffi.cast("uint8_t*", t:data_ptr())
  for i = 0, t:numel() - 1 do p[i] = fn(i) end
  return t
end

H.case("file list parsing: blanks, tabs, CRLF, custom separator, absolute paths, origins", function()
  local root = tmp .. "/lists"
  sh("mkdir -p '" .. root .. "'")
  write_file(root .. "/a.txt", "img/1.png lab/1.png\r\n\n   \n  img/2.png\tlab/2.png  \n" ..
    "/abs/3.png /abs/l3.png\n")
  local ds = data.PaddleSegDataset { dataset_root = root, train_path = root .. "/a.txt" }
  H.eq(ds:size(), 3)
  local im, lb, origin = ds:sample(1)
  H.eq(im, root .. "/img/1.png")
  H.eq(lb, root .. "/lab/1.png")
  H.eq(origin, "a.txt:1")
  im, lb, origin = ds:sample(2)
  H.eq(im, root .. "/img/2.png")
  H.eq(lb, root .. "/lab/2.png")
  H.eq(origin, "a.txt:4", "line numbers count blank lines")
  im, lb = ds:sample(3)
  H.eq(im, "/abs/3.png", "absolute paths are kept")
  H.eq(lb, "/abs/l3.png")
  H.raises(function() ds:sample(4) end, "out of range")
  -- a separator other than blanks: paths may hold spaces
  write_file(root .. "/b.txt", "my img/1.png|my lab/1.png\n")
  ds = data.PaddleSegDataset { dataset_root = root, train_path = root .. "/b.txt", separator = "|" }
  im, lb = ds:sample(1)
  H.eq(im, root .. "/my img/1.png")
  H.eq(lb, root .. "/my lab/1.png")
  -- test lists need no labels
  write_file(root .. "/test_list.txt", "img/1.png\nimg/2.png\n")
  ds = data.PaddleSegDataset { dataset_root = root, mode = "test" }
  H.eq(ds:size(), 2)
  H.eq(select(2, ds:sample(2)), nil)
end)

H.case("file list errors name the list and the line", function()
  local root = tmp .. "/errs"
  sh("mkdir -p '" .. root .. "'")
  local function list(name, text)
    write_file(root .. "/" .. name, text)
    return root .. "/" .. name
  end
  local function open(path, o)
    o = o or {}
    return data.PaddleSegDataset { dataset_root = o.root or root, train_path = path,
      mode = o.mode, test_path = path, separator = o.sep }
  end
  H.raises(function() open(list("empty.txt", "")) end, "empty.txt", "no samples")
  H.raises(function() open(list("blank.txt", "\n  \n\n")) end, "blank.txt", "no samples")
  H.raises(function() open(list("three.txt", "a.png b.png\na.png b.png c.png\n")) end,
    "three.txt line 2", "a.png b.png c.png", "more than 2")
  H.raises(function() open(list("nolabel.txt", "a.png b.png\n\nc.png\n")) end,
    "nolabel.txt line 3", "c.png", "no label")
  H.raises(function() open(list("sep.txt", "a.png|\n"), { sep = "|" }) end, "sep.txt line 1")
  H.raises(function() open(root .. "/absent.txt") end, "absent.txt", "cannot open")
  H.raises(function() open(root) end, root, "read error")
  H.raises(function() open(list("ok.txt", "a.png b.png\n"), { root = tmp .. "/no/such/dir" }) end,
    tmp .. "/no/such/dir", "No such file")
  H.raises(function() open(root .. "/ok.txt", { root = root .. "/ok.txt" }) end, "not a directory")
  H.raises(function() data.PaddleSegDataset {} end, "dataset_root")
end)

-- A tiny Cityscapes tree: two cities, 64x32 images, labelTrainIds with 0..18 and 255.
local function make_cityscapes(root)
  local n = 0
  for _, city in ipairs { "aachen", "bremen" } do
    for _, mode in ipairs { "train", "val" } do
      sh(("mkdir -p '%s/leftImg8bit/%s/%s' '%s/gtFine/%s/%s'"):format(root, mode, city, root, mode, city))
      for k = 0, 1 do
        local stem = ("%s_%06d_000019"):format(city, k)
        local id = n
        n = n + 1
        ms.image.write_png(("%s/leftImg8bit/%s/%s/%s_leftImg8bit.png"):format(root, mode, city, stem),
          pixels({ 32, 64, 3 }, function(i) return i % 3 == 0 and id or (i * 7) % 256 end))
        ms.image.write_png(("%s/gtFine/%s/%s/%s_gtFine_labelTrainIds.png"):format(root, mode, city, stem),
          pixels({ 32, 64 }, function(i) return i % 20 == 19 and 255 or i % 19 end))
        -- the other gtFine files Cityscapes ships are ignored
        write_file(("%s/gtFine/%s/%s/%s_gtFine_polygons.json"):format(root, mode, city, stem), "{}")
      end
    end
  end
end

H.case("Cityscapes layout", function()
  local root = tmp .. "/cityscapes"
  make_cityscapes(root)
  local ds = data.Cityscapes { dataset_root = root, mode = "train" }
  H.eq(ds:size(), 4)
  H.eq(ds.num_classes, 19)
  local im, lb, origin = ds:sample(3)
  H.eq(im, root .. "/leftImg8bit/train/bremen/bremen_000000_000019_leftImg8bit.png")
  H.eq(lb, root .. "/gtFine/train/bremen/bremen_000000_000019_gtFine_labelTrainIds.png")
  H.eq(origin, "bremen/bremen_000000_000019_leftImg8bit.png")
  H.eq(data.Cityscapes { dataset_root = root, mode = "val" }:size(), 4)
  local T = data.transforms
  local ld = data.DataLoader(ds, { batch_size = 2, num_workers = 2, shuffle = true, seed = 1,
    transforms = T.Compose { T.RandomPaddingCrop({ 32, 16 }), T.Normalize() } })
  local images, labels = ld:next()
  H.eq(table.concat(images:size(), "x"), "2x3x16x32")
  H.eq(table.concat(labels:size(), "x"), "2x16x32")
  local mx = labels:max():item()
  H.eq(mx == 255 or mx <= 18, true)
  ld:close()
  -- a missing label is an error naming it
  os.remove(root .. "/gtFine/train/aachen/aachen_000001_000019_gtFine_labelTrainIds.png")
  H.raises(function() data.Cityscapes { dataset_root = root } end, "aachen_000001_000019_gtFine_labelTrainIds.png")
  H.raises(function() data.Cityscapes { dataset_root = tmp .. "/nothing" } end, "no city folders")
end)

H.case("PaddleSeg optic_disc_seg layout (JPEG images, palette PNG labels)", function()
  local root = tmp .. "/optic_disc_seg"
  sh("mkdir -p '" .. root .. "/JPEGImages' '" .. root .. "/Annotations'")
  local lines = {}
  for i = 1, 5 do
    local name = ("N%04d"):format(i)
    ms.image.write_jpeg(root .. "/JPEGImages/" .. name .. ".jpg",
      pixels({ 24, 40, 3 }, function(k) return (k * 3 + i * 40) % 256 end), { quality = 90 })
    ms.image.write_png(root .. "/Annotations/" .. name .. ".png",
      pixels({ 24, 40 }, function(k) return (k % 40 > 20 and math.floor(k / 40) > 10) and 1 or 0 end),
      { palette = { { 0, 0, 0 }, { 128, 0, 0 } } })
    lines[i] = "JPEGImages/" .. name .. ".jpg Annotations/" .. name .. ".png"
  end
  write_file(root .. "/train_list.txt", table.concat(lines, "\n", 1, 4) .. "\n")
  write_file(root .. "/val_list.txt", lines[5] .. "\n")
  local ds = data.PaddleSegDataset { dataset_root = root, mode = "train", num_classes = 2 }
  H.eq(ds:size(), 4)
  H.eq(data.PaddleSegDataset { dataset_root = root, mode = "val", num_classes = 2 }:size(), 1)
  local ld = data.DataLoader(ds, { batch_size = 4, num_workers = 1 })
  local images, labels = ld:next()
  H.eq(table.concat(images:size(), "x"), "4x3x24x40")
  local p = ffi.cast("int64_t*", labels:data_ptr())
  for k = 0, 24 * 40 - 1 do
    H.eq(tonumber(p[k]), (k % 40 > 20 and math.floor(k / 40) > 10) and 1 or 0, "palette index at " .. k)
  end
  ld:close()
end)

sh("rm -rf '" .. tmp .. "'")
H.done()
