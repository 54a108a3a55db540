-- deeplabv3p.lua: train DeepLabV3+. With no arguments: ResNet50_vd (OS8) on the built-in
-- synthetic set, a short schedule on small crops, evaluating (mIoU) at the end. With
-- --dataset_root: PaddleSeg's deeplabv3p_resnet50_os8_cityscapes_1024x512_80k (batch 2, crop
-- 1024x512, 80k iterations, SGD lr 0.01 poly to 0); --backbone Xception65_deeplab switches to
-- output stride 16 and ASPP rates 1, 6, 12, 18. --pretrained: converted backbone weights.
local root = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path

local ms = require "moonseg"
local cnn = require "moonseg.engine.cnn_recipe"

local backbones = { "ResNet50_vd" }
if ms.models.backbones.Xception65_deeplab then backbones[2] = "Xception65_deeplab" end

cnn.main({
  prog = "recipes/deeplabv3p.lua",
  synthetic = { iters = 40, batch_size = 4, learning_rate = 0.01, num_classes = 5, crop_size = { 64, 64 },
    save_interval = 40, do_eval = true, num_workers = 2, log_iters = 10 },
  cityscapes = { iters = 80000, batch_size = 2, learning_rate = 0.01, num_classes = 19,
    crop_size = { 1024, 512 }, save_interval = 1000, do_eval = true, num_workers = 4 },
  backbones = backbones,
  spec = function(c, nc)
    local xception = c.backbone == "Xception65_deeplab"
    return { name = "DeepLabV3P", args = { num_classes = nc,
      backbone = xception and { name = "Xception65_deeplab", args = { output_stride = 16, with_cp = c.with_cp } }
        or { name = "ResNet50_vd", args = { output_stride = 8, multi_grid = { 1, 2, 4 }, with_cp = c.with_cp } },
      backbone_indices = xception and { 1, 2 } or { 1, 4 },
      aspp_ratios = xception and { 1, 6, 12, 18 } or { 1, 12, 24, 36 },
      aspp_out_channels = 256, align_corners = false } }
  end,
  pretrained_into = cnn.backbone_pretrained,
  coef = { 1 },
  describe = function(c) return "DeepLabV3P + " .. c.backbone end,
}, arg)
