-- unet.lua: train UNet (bilinear upsampling). With no arguments: the built-in synthetic set,
-- a short schedule on small crops, evaluating (mIoU) at the end. With --dataset_root:
-- PaddleSeg's unet_cityscapes_1024x512_160k (batch 4, crop 1024x512, 160k iterations, SGD lr
-- 0.01 poly to 0). --pretrained: whole-model weights (UNet has no separate backbone).
local root = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path

local ms = require "moonseg"
local cnn = require "moonseg.engine.cnn_recipe"

cnn.main({
  prog = "recipes/unet.lua",
  synthetic = { iters = 80, batch_size = 4, learning_rate = 0.05, num_classes = 5, crop_size = { 64, 64 },
    save_interval = 80, do_eval = true, num_workers = 2, log_iters = 10 },
  cityscapes = { iters = 160000, batch_size = 4, learning_rate = 0.01, num_classes = 19,
    crop_size = { 1024, 512 }, save_interval = 1000, do_eval = true, num_workers = 4 },
  spec = function(c, nc)
    return { name = "UNet", args = { num_classes = nc, use_deconv = false, align_corners = false, with_cp = c.with_cp } }
  end,
  pretrained_into = function(model, path) model:load_state_dict(ms.load(path)) end,
  coef = { 1 },
  describe = function() return "UNet" end,
}, arg)
