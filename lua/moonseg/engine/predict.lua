-- predict.lua: PaddleSeg's predict: for each image, pseudo-colour masks (palette PNGs in
-- save_dir/pseudo_color_prediction) and overlays (save_dir/added_prediction, 0.6 image + 0.4 colour).
local ms = require "moonseg"
local infer = require "moonseg.engine.infer"
local log = require "moonseg.engine.log"
local ckpt = require "moonseg.engine.checkpoint"

local M = {}

local function basename(p) return (p:match("([^/]+)$") or p):gsub("%.[^.]*$", "") end

-- Images of a directory (jpg/jpeg/png, sorted), a list file, or a single image.
function M.collect(path)
  local f = io.open(path .. "/.", "rb")
  if f then
    f:close()
    local p = io.popen("ls -1 '" .. path:gsub("'", "'\\''") .. "'")
    local out = {}
    for name in p:lines() do
      if name:lower():match("%.jpe?g$") or name:lower():match("%.png$") then out[#out + 1] = path .. "/" .. name end
    end
    p:close()
    table.sort(out)
    if #out == 0 then require("moonseg.errors").user("predict: no .jpg/.png images in " .. path) end
    return out
  end
  local fh = io.open(path, "rb")
  if not fh then require("moonseg.errors").user("predict: " .. path .. " does not exist") end
  fh:close()
  return { path }
end

-- predict(model, images, {save_dir=, transforms=, num_classes=, aug=})
function M.predict(model, images, o)
  local save_dir = o.save_dir or "output/result"
  ckpt.mkdir(save_dir .. "/pseudo_color_prediction")
  ckpt.mkdir(save_dir .. "/added_prediction")
  local palette = ms.image.pseudo_color_palette(math.max(o.num_classes, 2))
  model:eval()
  local bar = log.progress(#images, "predict")
  for i, path in ipairs(images) do
    local raw = ms.image.read(path)
    local x = o.transforms:apply(raw):unsqueeze(1)
    local logits = infer.logits(model, x, o.aug)
    local pred = logits:argmax(2):squeeze(1):squeeze(1):to(raw.device) -- [H, W], 1-based, on the host
    local ids = (pred - 1):to("u8")
    local stem = basename(path)
    ms.image.write_png(save_dir .. "/pseudo_color_prediction/" .. stem .. ".png", ids, { palette = palette })
    local color = ms.zeros_like(raw, { dtype = "f32" })
    for c = 1, o.num_classes do
      color:add_(pred:eq(c):to("f32"):unsqueeze(3) * color:new_tensor(palette[c]):view(1, 1, 3))
    end
    local added = (raw:to("f32") * 0.6 + color * 0.4):to("u8")
    ms.image.write_jpeg(save_dir .. "/added_prediction/" .. stem .. ".jpg", added, { quality = 95 })
    bar:update(i)
  end
  log.info("Predicted results are saved in " .. save_dir)
end

return M
