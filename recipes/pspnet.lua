-- pspnet.lua: train PSPNet + ResNet50_vd (OS8, auxiliary head, loss coefficients 1 and 0.4).
-- With no arguments: the built-in synthetic set, a short schedule on small crops, evaluating
-- (mIoU) at the end. With --dataset_root: PaddleSeg's pspnet_resnet50_os8_cityscapes_1024x512_80k
-- (batch 2, crop 1024x512, 80k iterations, SGD lr 0.01 poly to 1e-5). --pretrained: converted
-- ResNet50_vd weights.
local root = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path

local cnn = require "moonseg.engine.cnn_recipe"

cnn.main({
  prog = "recipes/pspnet.lua",
  synthetic = { iters = 40, batch_size = 4, learning_rate = 0.01, num_classes = 5, crop_size = { 64, 64 },
    save_interval = 40, do_eval = true, num_workers = 2, log_iters = 10 },
  cityscapes = { iters = 80000, batch_size = 2, learning_rate = 0.01, num_classes = 19,
    crop_size = { 1024, 512 }, save_interval = 1000, do_eval = true, num_workers = 4 },
  backbones = { "ResNet50_vd" },
  spec = function(c, nc)
    return { name = "PSPNet", args = { num_classes = nc, enable_auxiliary_loss = true, align_corners = false,
      backbone = { name = "ResNet50_vd", args = { output_stride = 8, with_cp = c.with_cp } } } }
  end,
  pretrained_into = cnn.backbone_pretrained,
  coef = { 1, 0.4 },
  end_lr = 1e-5,
  describe = function() return "PSPNet + ResNet50_vd" end,
}, arg)
