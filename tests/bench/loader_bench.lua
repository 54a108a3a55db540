-- loader_bench.lua: input-pipeline benchmark: PNG decode and PaddleSeg's Cityscapes train chain
-- through the C loader, on generated 2048x1024 photo-like PNGs (~2 MB each) with labels.
--
--   luajit tests/bench/loader_bench.lua DIR [images] [repeats]
--
-- DIR gets <k>.png images, <k>_label.png labels (the layout cv2_loader_peer.py and
-- pil_loader_peer.py read) and list.txt, made once. Prints one JSON line per measurement:
-- decode ms/image (fast path and libpng), loader images/s with 1 worker and with one worker
-- per core; the median of `repeats` runs each. RandomDistort runs brightness, contrast and
-- saturation (range 0.4, p 0.5 each) and no hue, like the two Python peers.
local ffi = require "ffi"
local ms = require "moonseg"
local data = require "moonseg.data"
local T = data.transforms

ffi.cdef [[ int setenv(const char *name, const char *value, int overwrite);
            int unsetenv(const char *name); long sysconf(int name); ]]

local dir = arg[1] or "/tmp/ms_loader_bench"
local nimg = tonumber(arg[2]) or 24
local repeats = tonumber(arg[3]) or 3
local W, H, NFILES = 2048, 1024, 8
local function ms_wall() return tonumber(ms.lib.C.ms_wall_time()) end

-- Deterministic 32-bit LCG.
local seed = 12345
local function rnd()
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
end

-- A photo-like image: smooth gradients and blobs, a few flat shapes with soft texture, and
-- sensor-like noise of a few levels (what makes real photos compress to ~1/3 in PNG).
local function make_pair(k)
  local img = ms.empty({ H, W, 3 }, { dtype = "u8" })
  local lab = ms.empty({ H, W }, { dtype = "u8" })
  local p, q = ffi.cast("uint8_t*", img:data_ptr()), ffi.cast("uint8_t*", lab:data_ptr())
  local shapes = {}
  for s = 1, 14 do
    shapes[s] = { x = rnd() * W, y = rnd() * H, r = 40 + rnd() * 260, c = math.floor(rnd() * 19),
      col = { rnd() * 255, rnd() * 255, rnd() * 255 }, rect = rnd() < 0.5 }
  end
  local f1, f2 = 0.002 + 0.004 * rnd(), 0.003 + 0.004 * rnd()
  local noise = ffi.new("int8_t[4096]")
  for i = 0, 4095 do noise[i] = math.floor(rnd() * 7) - 3 end
  local ni = k * 977
  for y = 0, H - 1 do
    local sy = math.sin(y * f2)
    for x = 0, W - 1 do
      local base = 90 + 60 * math.sin(x * f1 + k) * sy + y * 0.05
      local r, g, b, c = base + 20, base, base - 15 + x * 0.02, y > H * 0.7 and 0 or 10
      for s = 1, #shapes do
        local sh = shapes[s]
        local dx, dy = x - sh.x, y - sh.y
        local inside = sh.rect and (math.abs(dx) < sh.r and math.abs(dy) < sh.r * 0.6)
          or (not sh.rect and dx * dx + dy * dy < sh.r * sh.r)
        if inside then
          local t = 0.85 + 0.15 * math.sin((x + y) * 0.05)
          r, g, b, c = sh.col[1] * t, sh.col[2] * t, sh.col[3] * t, sh.c
        end
      end
      local o = (y * W + x) * 3
      ni = (ni + 1237) % 4093
      local n1, n2, n3 = noise[ni], noise[(ni + 1) % 4096], noise[(ni + 2) % 4096]
      p[o] = math.max(0, math.min(255, r + n1))
      p[o + 1] = math.max(0, math.min(255, g + n2))
      p[o + 2] = math.max(0, math.min(255, b + n3))
      q[y * W + x] = (x < 8 or y < 8) and 255 or c
    end
  end
  return img, lab
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function ensure_inputs()
  os.execute("mkdir -p '" .. dir .. "'")
  if exists(dir .. "/list.txt") then return end
  local lines = {}
  for k = 0, NFILES - 1 do
    local name = ("%03d"):format(k)
    if not exists(dir .. "/" .. name .. "_label.png") then
      local img, lab = make_pair(k)
      ms.image.write_png(dir .. "/" .. name .. ".png", img)
      ms.image.write_png(dir .. "/" .. name .. "_label.png", lab)
    end
    lines[#lines + 1] = name .. ".png " .. name .. "_label.png"
  end
  local f = assert(io.open(dir .. "/list.txt.tmp", "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  os.rename(dir .. "/list.txt.tmp", dir .. "/list.txt")
end

local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) / 2] or (t[n / 2] + t[n / 2 + 1]) / 2
end

local function decode_ms(which)
  if which == "libpng" then ffi.C.setenv("MOONSEG_PNG_DECODER", "libpng", 1)
  else ffi.C.unsetenv("MOONSEG_PNG_DECODER") end
  local runs = {}
  for _ = 1, repeats do
    local t0 = ms_wall()
    for k = 0, NFILES - 1 do ms.image.read(("%s/%03d.png"):format(dir, k)):free() end
    runs[#runs + 1] = (ms_wall() - t0) * 1000 / NFILES
  end
  ffi.C.unsetenv("MOONSEG_PNG_DECODER")
  return median(runs)
end

local function chain()
  return T.Compose { T.ResizeStepScaling(0.125, 1.5, 0.125), T.RandomPaddingCrop({ 1024, 512 }),
    T.RandomHorizontalFlip(), T.RandomDistort { brightness_range = 0.4, contrast_range = 0.4,
      saturation_range = 0.4, hue_prob = 0 }, T.Normalize() }
end

local function loader_ips(workers)
  local ds = data.PaddleSegDataset { dataset_root = dir, train_path = dir .. "/list.txt",
    num_classes = 19 }
  local runs = {}
  for r = 1, repeats do
    local ld = data.DataLoader(ds, { batch_size = 2, num_workers = workers, shuffle = true,
      seed = r, transforms = chain() })
    local a, b = ld:next() -- warm-up: workers running, queue filling
    a:free(); b:free()
    local t0 = ms_wall()
    for _ = 1, nimg / 2 do
      local im, lb = ld:next()
      im:free(); lb:free()
    end
    runs[#runs + 1] = nimg / (ms_wall() - t0)
    ld:close()
  end
  return median(runs)
end

ensure_inputs()
local cores = tonumber(ffi.C.sysconf(84)) -- _SC_NPROCESSORS_ONLN
local sz = 0
for k = 0, NFILES - 1 do
  local f = io.open(("%s/%03d.png"):format(dir, k), "rb")
  sz = sz + f:seek("end")
  f:close()
end
print(('{"what": "inputs", "files": %d, "mean_png_mb": %.2f}'):format(NFILES, sz / NFILES / 1e6))
print(('{"what": "decode", "fast_ms": %.1f, "libpng_ms": %.1f}'):format(decode_ms("fast"), decode_ms("libpng")))
print(('{"what": "loader", "workers": 1, "images_per_s": %.2f}'):format(loader_ips(1)))
print(('{"what": "loader", "workers": %d, "images_per_s": %.2f}'):format(cores, loader_ips(cores)))
