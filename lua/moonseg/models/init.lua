-- models: segmentation models with PaddleSeg's names (ms.models.PPLiteSeg{...}, backbones).
local stdcnet = require "moonseg.models.stdcnet"
local pp_liteseg = require "moonseg.models.pp_liteseg"
local mit = require "moonseg.models.mix_transformer"
local hrnet = require "moonseg.models.hrnet"

local models = {
  layers = require "moonseg.models.layers",
  STDCNet = stdcnet.STDCNet,
  STDC1 = stdcnet.STDC1,
  STDC2 = stdcnet.STDC2,
  CatBottleneck = stdcnet.CatBottleneck,
  PPLiteSeg = pp_liteseg.PPLiteSeg,
  PPLiteSegHead = pp_liteseg.PPLiteSegHead,
  PPContextModule = pp_liteseg.PPContextModule,
  UAFM_SpAtten = pp_liteseg.UAFM_SpAtten,
  SegHead = pp_liteseg.SegHead,
  backbones = {},
}
-- One line per model (several branches add here).
models.DeepLabV3P = require("moonseg.models.deeplab").DeepLabV3P
models.PSPNet = require("moonseg.models.pspnet").PSPNet
models.UNet = require("moonseg.models.unet").UNet
models.SegFormer = require("moonseg.models.segformer").SegFormer
models.OCRNet = require("moonseg.models.ocrnet").OCRNet
models.MixVisionTransformer = mit.MixVisionTransformer
models.HRNet = hrnet.HRNet
models.backbones.STDC1 = stdcnet.STDC1
models.backbones.STDC2 = stdcnet.STDC2
models.backbones.ResNet50_vd = require("moonseg.models.resnet_vd").ResNet50_vd
models.backbones.ResNet101_vd = require("moonseg.models.resnet_vd").ResNet101_vd
models.backbones.MixVisionTransformer_B0 = mit.MixVisionTransformer_B0
models.backbones.HRNet_W18 = hrnet.HRNet_W18
models.XceptionDeeplab = require("moonseg.models.xception_deeplab").XceptionDeeplab
models.backbones.Xception41_deeplab = require("moonseg.models.xception_deeplab").Xception41_deeplab
models.backbones.Xception65_deeplab = require("moonseg.models.xception_deeplab").Xception65_deeplab
models.build = require("moonseg.models.registry").build
return models
