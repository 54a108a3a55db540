-- test_loader.lua: the C batch loader: identical batches for any num_workers, every sample once
-- per epoch, seeded shuffling, drop_last, DistributedSampler sharding, save/seek, bad input
-- raised on the consumer's thread (naming file and list line), skip_bad, thread hygiene.
local H = require "harness"
local ms = require "moonseg"
local ffi = require "ffi"
local data = require "moonseg.data"
local T = data.transforms

ffi.cdef [[ int getpid(void); ]]

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p '" .. tmp .. "'") == 0 or true)

local function sh(cmd) assert(os.execute(cmd) == 0, "command failed: " .. cmd) end
local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end
local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Image of sample id: R = id everywhere (the id is read back from any pixel), G = 8 x + y,
-- B = 3 id + x. Label: (id + x + y) % 5, with 255 on the first column.
local function make_image(w, h, id)
  local t = ms.empty({ h, w, 3 }, { dtype = "u8" })
  local p = ffi.cast("uint8_t*", t:data_ptr())
  for y = 0, h - 1 do
    for x = 0, w - 1 do
      local o = (y * w + x) * 3
      p[o], p[o + 1], p[o + 2] = id % 256, (8 * x + y) % 256, (3 * id + x) % 256
    end
  end
  return t
end
local function make_label(w, h, id, nc)
  local t = ms.empty({ h, w }, { dtype = "u8" })
  local p = ffi.cast("uint8_t*", t:data_ptr())
  for y = 0, h - 1 do
    for x = 0, w - 1 do p[y * w + x] = x == 0 and 255 or (id + x + y) % (nc or 5) end
  end
  return t
end

-- A PaddleSeg data set of n samples under dir: images/<i>.png, labels/<i>.png, train.txt.
-- size(i) -> w, h. Sample 3 (when present) has a palette label.
local function make_set(name, n, size)
  local dir = tmp .. "/" .. name
  sh("mkdir -p '" .. dir .. "/images' '" .. dir .. "/labels'")
  local lines = {}
  for i = 0, n - 1 do
    local w, h = size(i)
    ms.image.write_png(dir .. "/images/" .. i .. ".png", make_image(w, h, i))
    local opts = i == 3 and { palette = ms.image.voc_palette(256) } or nil
    ms.image.write_png(dir .. "/labels/" .. i .. ".png", make_label(w, h, i), opts)
    lines[#lines + 1] = "images/" .. i .. ".png labels/" .. i .. ".png"
  end
  write_file(dir .. "/train.txt", table.concat(lines, "\n") .. "\n")
  return dir
end

local function dataset(dir, list)
  return data.PaddleSegDataset { dataset_root = dir, train_path = dir .. "/" .. (list or "train.txt"),
    num_classes = 5 }
end

local function bytes(t, elsize) return ffi.string(t:data_ptr(), t:numel() * elsize) end
-- Sample ids of a batch (R channel of pixel (0, 0) of each image; no transforms).
local function ids(images)
  local s = images:size()
  local p = ffi.cast("float*", images:data_ptr())
  local r = {}
  for b = 0, s[1] - 1 do r[#r + 1] = p[b * s[2] * s[3] * s[4]] end
  return r
end

local UNIFORM = make_set("uniform", 23, function() return 12, 10 end)
local VARIED = make_set("varied", 13, function(i) return 20 + (i % 3) * 5, 14 + (i % 2) * 3 end)

local function chain()
  return T.Compose { T.ResizeStepScaling(0.5, 1.5, 0.25), T.RandomPaddingCrop({ 16, 12 }),
    T.RandomHorizontalFlip(), T.RandomDistort { brightness_range = 0.4, contrast_range = 0.4,
      saturation_range = 0.4 }, T.Normalize() }
end

-- All batches of `epochs` epochs as byte strings.
local function run(ds, o, epochs)
  local ld = data.DataLoader(ds, o)
  local out = {}
  for _ = 1, epochs * ld:batches_per_epoch() do
    local im, lb, e, i = ld:next()
    out[#out + 1] = { im = bytes(im, 4), lb = lb and bytes(lb, 8), e = e, i = i,
      shape = table.concat(im:size(), "x") }
  end
  ld:close()
  return out
end

H.case("batches are identical for num_workers 0, 1, 2, 3", function()
  local ds = dataset(VARIED)
  local ref
  for _, nw in ipairs { 0, 1, 2, 3 } do
    local got = run(ds, { batch_size = 4, num_workers = nw, shuffle = true, seed = 11,
      transforms = chain() }, 3)
    H.eq(#got, 12, "4 batches x 3 epochs")
    H.eq(got[4].shape, "1x3x12x16", "last batch holds the remainder")
    if not ref then
      ref = got
      -- augmentation differs between epochs (sample order and draws)
      H.eq(got[1].im ~= got[5].im, true, "epoch 0 and 1 differ")
    else
      for k = 1, #ref do
        H.eq(got[k].im == ref[k].im, true, "images of batch " .. k .. " with " .. nw .. " workers")
        H.eq(got[k].lb == ref[k].lb, true, "labels of batch " .. k .. " with " .. nw .. " workers")
        H.eq(got[k].e, ref[k].e)
        H.eq(got[k].i, ref[k].i)
      end
    end
  end
end)

H.case("labels: values, ignore pixels and palette indices arrive unchanged", function()
  local ds = dataset(UNIFORM)
  local ld = data.DataLoader(ds, { batch_size = 23, num_workers = 2 })
  local im, lb = ld:next()
  H.eq(table.concat(lb:size(), "x"), "23x10x12")
  H.eq(lb.dtype, "i64")
  local p = ffi.cast("int64_t*", lb:data_ptr())
  local q = ffi.cast("float*", im:data_ptr())
  for id = 0, 22 do
    for y = 0, 9 do
      for x = 0, 11 do
        local want = x == 0 and 255 or (id + x + y) % 5
        local got = tonumber(p[(id * 10 + y) * 12 + x])
        if got ~= want then error(("label of sample %d at (%d, %d): %d, want %d"):format(id, x, y, got, want)) end
        H.eq(q[((id * 3 + 1) * 10 + y) * 12 + x], (8 * x + y) % 256, "G channel")
        H.eq(q[((id * 3 + 2) * 10 + y) * 12 + x], (3 * id + x) % 256, "B channel")
      end
    end
  end
  ld:close()
end)

local function epoch_ids(ld)
  local r = {}
  for _ = 1, ld:batches_per_epoch() do
    for _, v in ipairs(ids(ld:next())) do r[#r + 1] = v end
  end
  return r
end

H.case("every sample once per epoch, a new seeded permutation each epoch", function()
  local ds = dataset(UNIFORM)
  local function epochs(seed, nw)
    local ld = data.DataLoader(ds, { batch_size = 4, shuffle = true, seed = seed, num_workers = nw })
    H.eq(ld:batches_per_epoch(), 6)
    H.eq(ld:samples_per_epoch(), 23)
    local e = { epoch_ids(ld), epoch_ids(ld), epoch_ids(ld) }
    ld:close()
    return e
  end
  local a = epochs(5, 2)
  for k = 1, 3 do
    local seen = {}
    for _, id in ipairs(a[k]) do
      H.eq(seen[id], nil, "sample " .. id .. " twice in epoch " .. k)
      seen[id] = true
    end
    H.eq(#a[k], 23)
  end
  H.eq(table.concat(a[1], ",") ~= table.concat(a[2], ","), true, "epochs 0 and 1 have the same order")
  H.eq(table.concat(a[2], ",") ~= table.concat(a[3], ","), true, "epochs 1 and 2 have the same order")
  local sorted = {}
  for i = 1, 23 do sorted[i] = i - 1 end
  H.eq(table.concat(a[1], ",") ~= table.concat(sorted, ","), true, "shuffle left the order alone")
  local b = epochs(5, 0)
  for k = 1, 3 do H.same_list(b[k], a[k], "same seed, epoch " .. k) end
  local c = epochs(6, 1)
  H.eq(table.concat(c[1], ",") ~= table.concat(a[1], ","), true, "another seed, same order")
  local ld = data.DataLoader(ds, { batch_size = 5 })
  H.same_list(epoch_ids(ld), sorted, "no shuffle keeps the list order")
  H.same_list(epoch_ids(ld), sorted, "no shuffle, second epoch")
end)

H.case("drop_last", function()
  local ds = dataset(UNIFORM)
  for _, nw in ipairs { 0, 2 } do
    local ld = data.DataLoader(ds, { batch_size = 4, drop_last = true, shuffle = true, seed = 1,
      num_workers = nw })
    H.eq(ld:batches_per_epoch(), 5)
    local e = epoch_ids(ld)
    H.eq(#e, 20)
    local seen = {}
    for _, id in ipairs(e) do H.eq(seen[id], nil); seen[id] = true end
    local pos = ld:position()
    H.eq(pos.epoch, 1)
    H.eq(pos.batch, 0)
    ld:close()
    ld = data.DataLoader(ds, { batch_size = 4, drop_last = false, num_workers = nw })
    H.eq(ld:batches_per_epoch(), 6)
    local sizes = {}
    for _ = 1, 6 do sizes[#sizes + 1] = ld:next():size(1) end
    H.same_list(sizes, { 4, 4, 4, 4, 4, 3 })
    ld:close()
  end
  H.raises(function() data.DataLoader(ds, { batch_size = 24, drop_last = true }) end, "no full batch")
  H.raises(function() data.DataLoader(ds, { batch_size = 0 }) end, "batch_size")
  H.raises(function() data.DataLoader(ds, { rank = 2, world_size = 2 }) end, "rank 2")
end)

H.case("sharding follows DistributedSampler: wrap-padded, rank r takes r, r + W, ...", function()
  local ds = dataset(UNIFORM)
  for _, W in ipairs { 2, 3, 4 } do
    for epoch = 0, 1 do
      local full = data.DataLoader(ds, { batch_size = 23, shuffle = true, seed = 9 })
      full:seek { epoch = epoch, batch = 0 }
      local perm = ids(full:next())
      full:close()
      local total = math.ceil(23 / W) * W
      local count = {}
      for r = 0, W - 1 do
        local ld = data.DataLoader(ds, { batch_size = 2, shuffle = true, seed = 9, rank = r,
          world_size = W, num_workers = r % 2 * 2 })
        H.eq(ld:samples_per_epoch(), total / W)
        ld:seek { epoch = epoch, batch = 0 }
        local got = epoch_ids(ld)
        ld:close()
        H.eq(#got, total / W)
        for k = 1, #got do
          H.eq(got[k], perm[((r + (k - 1) * W) % 23) + 1], ("W %d rank %d position %d"):format(W, r, k))
          count[got[k]] = (count[got[k]] or 0) + 1
        end
      end
      local dup = 0
      for id = 0, 22 do
        H.eq(count[id] ~= nil, true, "sample " .. id .. " in no shard")
        dup = dup + count[id] - 1
      end
      H.eq(dup, total - 23, "overlap is only the padding")
    end
  end
end)

H.case("position save and seek give the same following batches (across epochs)", function()
  local ds = dataset(VARIED)
  local o = { batch_size = 3, num_workers = 2, shuffle = true, seed = 3, transforms = chain() }
  local a = data.DataLoader(ds, o)
  H.eq(a:batches_per_epoch(), 5)
  for _ = 1, 3 do a:next() end
  local pos = a:position()
  H.eq(pos.epoch, 0)
  H.eq(pos.batch, 3)
  local want = {}
  for _ = 1, 6 do
    local im, lb, e, i = a:next()
    want[#want + 1] = { bytes(im, 4), bytes(lb, 8), e, i }
  end
  for _, nw in ipairs { 0, 3 } do
    o.num_workers = nw
    local b = data.DataLoader(ds, o)
    b:next() -- consumes something first; seek must discard prefetched batches
    b:seek(pos)
    for k = 1, 6 do
      local im, lb, e, i = b:next()
      H.eq(bytes(im, 4) == want[k][1], true, "images after seek, batch " .. k)
      H.eq(bytes(lb, 8) == want[k][2], true, "labels after seek, batch " .. k)
      H.eq(e, want[k][3])
      H.eq(i, want[k][4])
    end
    b:close()
  end
  -- seeking backwards on the same loader replays too
  a:seek(pos)
  local im = a:next()
  H.eq(bytes(im, 4) == want[1][1], true, "seek back")
  H.raises(function() a:seek { epoch = 0, batch = 5 } end, "out of range")
  H.raises(function() a:seek { epoch = -1, batch = 0 } end, "out of range")
  a:close()
end)

H.case("endless iteration: (epoch, index) run on across epochs", function()
  local ds = dataset(UNIFORM)
  local ld = data.DataLoader(ds, { batch_size = 10, num_workers = 2 })
  H.eq(ld:batches_per_epoch(), 3)
  for k = 0, 10 do
    local im, _, e, i = ld:next()
    H.eq(e, math.floor(k / 3), "epoch of batch " .. k)
    H.eq(i, k % 3, "index of batch " .. k)
    H.eq(im:size(1), k % 3 == 2 and 3 or 10)
  end
  local n = 0
  for _ in ld:epoch() do n = n + 1 end
  H.eq(n, 1, "epoch() runs to the end of the current epoch")
  H.eq(ld:position().epoch, 4)
  n = 0
  for _ in ld:epoch() do n = n + 1 end
  H.eq(n, 3)
  ld:close()
end)

-- ---- bad input ---------------------------------------------------------------------------
-- A three-sample list whose line 2 is broken by spoil(dir) (returning the file to name).
local bad_n = 0
local function bad_set(spoil, opts)
  bad_n = bad_n + 1
  local dir = tmp .. "/bad" .. bad_n
  sh("mkdir -p '" .. dir .. "'")
  local lines = {}
  for i = 0, 2 do
    ms.image.write_png(dir .. "/im" .. i .. ".png", make_image(8, 6, i))
    ms.image.write_png(dir .. "/lb" .. i .. ".png", make_label(8, 6, i))
    lines[i + 1] = "im" .. i .. ".png lb" .. i .. ".png"
  end
  local name = spoil(dir, lines)
  write_file(dir .. "/list.txt", table.concat(lines, "\n") .. "\n")
  return dir, name, opts
end

local function truncate(path, keep)
  local s = read_file(path)
  write_file(path, s:sub(1, keep or math.floor(#s / 2)))
end

local bad_cases = {
  { "missing image file", function(dir, lines) lines[2] = "nothere.png lb1.png"; return dir .. "/nothere.png" end, "cannot open" },
  { "missing label file", function(dir, lines) lines[2] = "im1.png gone.png"; return dir .. "/gone.png" end, "cannot open" },
  { "truncated PNG", function(dir) truncate(dir .. "/im1.png"); return dir .. "/im1.png" end, "PNG" },
  { "corrupt JPEG", function(dir, lines)
    ms.image.write_jpeg(dir .. "/im1.jpg", make_image(64, 48, 1))
    truncate(dir .. "/im1.jpg")
    ms.image.write_png(dir .. "/lb1.png", make_label(64, 48, 1))
    lines[2] = "im1.jpg lb1.png"
    return dir .. "/im1.jpg"
  end, "" },
  { "JPEG with a garbage header", function(dir, lines)
    ms.image.write_jpeg(dir .. "/im1.jpg", make_image(8, 6, 1))
    local s = read_file(dir .. "/im1.jpg")
    write_file(dir .. "/im1.jpg", s:sub(1, 3) .. string.rep("\7", 40) .. s:sub(44))
    lines[2] = "im1.jpg lb1.png"
    return dir .. "/im1.jpg"
  end, "" },
  { "label value >= num_classes", function(dir)
    local lb = make_label(8, 6, 1)
    ffi.cast("uint8_t*", lb:data_ptr())[13] = 7
    ms.image.write_png(dir .. "/lb1.png", lb)
    return dir .. "/lb1.png"
  end, "value 7" },
  { "image/label size mismatch", function(dir)
    ms.image.write_png(dir .. "/lb1.png", make_label(8, 5, 1))
    return dir .. "/lb1.png"
  end, "8x5" },
  { "colour label", function(dir)
    ms.image.write_png(dir .. "/lb1.png", make_image(8, 6, 1))
    return dir .. "/lb1.png"
  end, "single-channel" },
  { "not an image", function(dir) write_file(dir .. "/im1.png", "hello, world"); return dir .. "/im1.png" end, "unknown image format" },
}

for _, bc in ipairs(bad_cases) do
  for _, nw in ipairs { 0, 2 } do
    H.case("bad input: " .. bc[1] .. ", num_workers " .. nw, function()
      local dir, name = bad_set(bc[2])
      local ds = dataset(dir, "list.txt")
      local ld = data.DataLoader(ds, { batch_size = 1, num_workers = nw })
      H.eq(ids(ld:next())[1], 0)
      H.raises(function() ld:next() end, name, "list.txt:2", bc[3])
      H.eq(ids(ld:next())[1], 2, "the position moved past the bad batch")
      -- the next epoch reports it again
      ld:next()
      H.raises(function() ld:next() end, name, "list.txt:2")
      ld:close()
    end)
  end
end

H.case("skip_bad: bad samples are replaced by the next good one and counted", function()
  for _, nw in ipairs { 0, 2 } do
    local dir = make_set("skip" .. nw, 10, function() return 8, 6 end)
    os.remove(dir .. "/images/4.png")
    truncate(dir .. "/images/7.png")
    local ds = dataset(dir)
    local ld = data.DataLoader(ds, { batch_size = 2, num_workers = nw, skip_bad = true })
    local got = epoch_ids(ld)
    H.same_list(got, { 0, 1, 2, 3, 5, 5, 6, 8, 8, 9 }, "workers " .. nw)
    H.eq(ld:skipped(), 2)
    epoch_ids(ld)
    H.eq(ld:skipped(), 4)
    ld:close()
  end
  local dir = make_set("allbad", 2, function() return 8, 6 end)
  os.remove(dir .. "/images/0.png")
  os.remove(dir .. "/images/1.png")
  local ld = data.DataLoader(dataset(dir), { skip_bad = true })
  H.raises(function() ld:next() end, "cannot open")
  ld:close()
end)

H.case("samples of different sizes in one batch without a crop: clear error", function()
  local ds = dataset(VARIED)
  for _, nw in ipairs { 0, 2 } do
    local ld = data.DataLoader(ds, { batch_size = 2, num_workers = nw })
    H.raises(function() ld:next() end, "differ in size", "train.txt:2", "25x17", "20x14")
    ld:close()
  end
  -- with batch_size 1 they pass, at their own sizes
  local ld = data.DataLoader(ds, { batch_size = 1 })
  H.eq(table.concat(ld:next():size(), "x"), "1x3x14x20")
  H.eq(table.concat(ld:next():size(), "x"), "1x3x17x25")
  ld:close()
end)

-- ---- threads -------------------------------------------------------------------------------
local function nthreads()
  local p = io.popen("ls /proc/" .. ffi.C.getpid() .. "/task")
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

H.case("no thread is left behind; early stop and close does not hang", function()
  local ds = dataset(UNIFORM)
  -- warm up OpenMP's pool on this thread (it stays, and is not the loader's)
  local w = data.DataLoader(ds, { batch_size = 4, transforms = chain() })
  w:next()
  w:close()
  local base = nthreads()
  local ld = data.DataLoader(ds, { batch_size = 1, num_workers = 3, prefetch = 1, transforms = chain() })
  H.eq(nthreads(), base + 3, "three worker threads")
  ld:next()
  ld:close() -- workers stuck on a full queue must wake and exit
  ld:close() -- twice is harmless
  H.eq(nthreads(), base, "after close")
  for _ = 1, 3 do
    local l2 = data.DataLoader(ds, { batch_size = 2, num_workers = 2, prefetch = 4 })
    l2:next()
    l2:seek { epoch = 2, batch = 1 }
    l2:next()
    l2 = nil -- never closed: the finalizer joins the workers
  end
  collectgarbage()
  collectgarbage()
  H.eq(nthreads(), base, "after the GC freed unclosed loaders")
  -- stopping without taking anything
  local l3 = data.DataLoader(ds, { batch_size = 1, num_workers = 4, prefetch = 1 })
  l3:close()
  H.eq(nthreads(), base)
end)

sh("rm -rf '" .. tmp .. "'")
H.done()
